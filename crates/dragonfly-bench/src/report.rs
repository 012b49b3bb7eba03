//! The results: ratios against the targets, a text table and JSON.

use std::fmt::Write as _;

use serde::Serialize;

use crate::measure::{EngineRun, FlattenRun, NaiveRun, NodeRun};

/// Target: node MB/s over the engine limit on the same threads.
pub const TARGET_NODE_VS_ENGINE: f64 = 0.8;
/// Target: node packages/s over the naive baseline.
pub const TARGET_NODE_VS_NAIVE: f64 = 8.0;
/// Target: engine MB/s on N threads over 1 thread (for N = 2).
pub const TARGET_SPEEDUP: f64 = 1.8;

/// Distributions the node may hold in memory at once: its download budget
/// is `3 × threads + 1` times `DRAGONFLY_MAX_SCAN_SIZE` (threads scanning,
/// a ready queue of `threads`, and downloads in flight).
pub fn node_memory_slots(threads: usize) -> u64 {
    3 * threads as u64 + 1
}

/// The inputs.
#[derive(Debug, Clone, Serialize)]
pub struct CorpusInfo {
    /// `generated (tiny|quick|default)` or the folder given.
    pub source: String,
    /// Releases.
    pub packages: usize,
    /// Distribution files.
    pub distributions: usize,
    /// Sum of the archive sizes, bytes.
    pub archive_bytes: u64,
    /// Largest archive, bytes.
    pub largest_archive_bytes: u64,
}

/// The bench rules.
#[derive(Debug, Clone, Serialize)]
pub struct RulesInfo {
    /// Rule-set hash given to the fake server.
    pub hash: String,
    /// Rule files.
    pub sources: usize,
    /// Rules.
    pub rules: usize,
    /// Rules without `filetype` (they apply to every file).
    pub unrestricted: usize,
    /// Rule groups by file type compiled besides the whole set.
    pub groups: usize,
    /// Size of the serialized compiled rules (whole set and groups), bytes.
    pub compiled_bytes: u64,
    /// Compilation time in this process, seconds.
    pub compile_secs: f64,
}

/// Settings the node ran with.
#[derive(Debug, Clone, Serialize)]
pub struct NodeSettingsInfo {
    /// `DRAGONFLY_THREADS`.
    pub threads: usize,
    /// `DRAGONFLY_BULK_SIZE`.
    pub bulk_size: usize,
    /// `DRAGONFLY_MAX_SCAN_SIZE`, bytes.
    pub max_scan_size: u64,
}

/// The ratios of the issue, each with its target.
#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    /// Node MB/s scanned (first lease to last result) / engine MB/s on N threads.
    pub node_vs_engine: f64,
    /// Node packages/s / naive packages/s.
    pub node_vs_naive: f64,
    /// Node MB/s / in-memory flatten and scan MB/s on N threads (no target:
    /// what the network and the orchestration cost).
    pub node_vs_archive: f64,
    /// Engine MB/s on N threads / on 1 thread.
    pub threads_speedup: f64,
    /// `(3 × threads + 1) × max_scan_size + compiled rules`, bytes.
    pub rss_bound_bytes: u64,
    /// Node peak RSS / that bound.
    pub rss_vs_bound: f64,
}

/// Packages whose matched rules differ between two steps (both should be empty).
#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    /// Node results vs the engine limit run.
    pub node_vs_engine: Vec<String>,
    /// Naive baseline vs the engine limit run.
    pub naive_vs_engine: Vec<String>,
}

/// Everything one run measured; written as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The command line.
    pub command: String,
    /// `release` or `debug` (the bench binary's build).
    pub build: &'static str,
    /// Threads of the N-thread runs and of the node.
    pub threads: usize,
    /// Where the node and the naive client downloaded from (`cdn` or `testkit`).
    pub downloads: String,
    /// The inputs.
    pub corpus: CorpusInfo,
    /// The rules.
    pub rules: RulesInfo,
    /// Step 2.
    pub flatten: FlattenRun,
    /// Step 1, one thread.
    pub engine_1: EngineRun,
    /// Step 1, N threads.
    pub engine_n: EngineRun,
    /// Flattening and scanning archives already in memory
    /// (`Engine::scan_archive`), 1 thread: the node without the network.
    pub archive_1: EngineRun,
    /// The same on N threads.
    pub archive_n: EngineRun,
    /// The node's settings.
    pub node_settings: NodeSettingsInfo,
    /// Step 3.
    pub node: NodeRun,
    /// Step 4.
    pub naive: NaiveRun,
    /// The ratios of the issue.
    pub ratios: Ratios,
    /// Cross-checks of the verdicts.
    pub agreement: Agreement,
    /// Peak memory on the corpus and on the worst-case queue.
    pub memory: crate::memory::Memory,
    /// Result reuse on a stream of consecutive releases.
    pub reuse: crate::reuse::Reuse,
}

/// MB (10^6 bytes) per second.
pub fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs.max(1e-9)
}

/// Items per second.
pub fn per_s(count: u64, secs: f64) -> f64 {
    count as f64 / secs.max(1e-9)
}

/// `a / b`, or 0 when `b` is 0.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// Computes the ratios from the measurements; `runs` are the engine limit
/// on 1 and N threads and the in-memory flatten + scan on N threads.
pub fn ratios(
    packages: usize,
    runs: [&EngineRun; 3],
    node: &NodeRun,
    naive: &NaiveRun,
    settings: &NodeSettingsInfo,
    compiled_rules: u64,
) -> Ratios {
    let [engine_1, engine_n, archive_n] = runs;
    let engine_n_mb = mb_per_s(engine_n.bytes, engine_n.secs);
    let node_mb = mb_per_s(engine_n.bytes, node.secs_working);
    let node_packages = per_s(packages as u64, node.secs_working);
    let naive_packages = per_s(naive.packages as u64, naive.secs);
    let bound = node_memory_slots(settings.threads)
        .saturating_mul(settings.max_scan_size)
        .saturating_add(compiled_rules);
    Ratios {
        node_vs_engine: ratio(node_mb, engine_n_mb),
        node_vs_naive: ratio(node_packages, naive_packages),
        node_vs_archive: ratio(node_mb, mb_per_s(archive_n.bytes, archive_n.secs)),
        threads_speedup: ratio(engine_n_mb, mb_per_s(engine_1.bytes, engine_1.secs)),
        rss_bound_bytes: bound,
        rss_vs_bound: ratio(node.peak_rss_bytes as f64, bound as f64),
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// The report as a text table followed by the ratios.
pub fn table(report: &Report) -> String {
    let r = report;
    let packages = r.corpus.packages as u64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "corpus: {}: {} packages, {} distributions, {:.1} MB of archives, {} files / {:.1} MB scanned\n\
         rules: {} rules in {} files ({} without filetype), compiled with {} groups by file type {:.2} MB in {:.2} s; {} threads; {} build; downloads from {}\n",
        r.corpus.source,
        r.corpus.packages,
        r.corpus.distributions,
        mb(r.corpus.archive_bytes),
        r.engine_1.files,
        mb(r.engine_1.bytes),
        r.rules.rules,
        r.rules.sources,
        r.rules.unrestricted,
        r.rules.groups,
        mb(r.rules.compiled_bytes),
        r.rules.compile_secs,
        r.threads,
        r.build,
        r.downloads,
    );
    let _ = writeln!(out, "| step | time s | packages/s | MB/s | files/s | notes |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---|");
    // One row of the step table: label, time, then rates of packages, bytes
    // and files over that time, then notes.
    let mut row = |label: String, secs: f64, packages: u64, bytes: u64, files: u64, notes: String| {
        let _ = writeln!(
            out,
            "| {label} | {secs:.3} | {:.1} | {:.1} | {:.0} | {notes} |",
            per_s(packages, secs),
            mb_per_s(bytes, secs),
            per_s(files, secs),
        );
    };
    let threads = |n: usize| format!("{n} thread{}", if n == 1 { "" } else { "s" });
    for run in [&r.engine_1, &r.engine_n] {
        row(
            format!("engine limit, {}", threads(run.threads)),
            run.secs,
            packages,
            run.bytes,
            run.files,
            format!("best of {}", run.repetitions),
        );
    }
    let f = &r.flatten;
    row(
        "flattening, 1 thread".into(),
        f.secs,
        packages,
        f.bytes_out,
        f.files,
        format!("MB/s out; in {:.1} MB/s", mb_per_s(f.bytes_in, f.secs)),
    );
    for run in [&r.archive_1, &r.archive_n] {
        row(
            format!("flatten + scan in memory, {}", threads(run.threads)),
            run.secs,
            packages,
            run.bytes,
            run.files,
            format!("best of {}; the node minus the network", run.repetitions),
        );
    }
    let n = &r.node;
    row(
        format!("node end to end, {}", threads(r.node_settings.threads)),
        n.secs_working,
        packages,
        r.engine_1.bytes,
        r.engine_1.files,
        format!(
            "downloaded {:.1} MB/s; CPU {:.0} %; peak RSS {:.0} MB; +{:.2} s start-up",
            mb_per_s(r.corpus.archive_bytes, n.secs_working),
            n.cpu_percent,
            mb(n.peak_rss_bytes),
            n.secs_startup
        ),
    );
    let v = &r.naive;
    row(
        "naive baseline, 1 thread".into(),
        v.secs,
        v.packages as u64,
        v.bytes,
        v.files,
        "every extracted file scanned from disk".into(),
    );
    let q = &r.ratios;
    let _ = writeln!(out, "\n| ratio | value | target | |\n|---|---:|---|---|");
    // One ratio row: `met` is `None` for a diagnostic without a target.
    let mut ratio = |label: String, value: String, target: String, met: Option<bool>| {
        let _ = writeln!(out, "| {label} | {value} | {target} | {} |", met.map_or("", verdict));
    };
    let threads = r.threads;
    ratio(
        format!("node / engine limit ({threads} threads), MB/s"),
        format!("{:.3}", q.node_vs_engine),
        format!(">= {TARGET_NODE_VS_ENGINE}"),
        Some(q.node_vs_engine >= TARGET_NODE_VS_ENGINE),
    );
    ratio(
        "node / naive, packages/s".into(),
        format!("{:.1}", q.node_vs_naive),
        format!(">= {TARGET_NODE_VS_NAIVE}"),
        Some(q.node_vs_naive >= TARGET_NODE_VS_NAIVE),
    );
    ratio(
        format!("engine {threads} threads / 1 thread, MB/s"),
        format!("{:.3}", q.threads_speedup),
        format!(">= {TARGET_SPEEDUP} (2 threads)"),
        Some(q.threads_speedup >= TARGET_SPEEDUP),
    );
    ratio(
        format!("node / flatten + scan in memory ({threads} threads), MB/s"),
        format!("{:.3}", q.node_vs_archive),
        "(diagnostic)".into(),
        None,
    );
    ratio(
        "node peak RSS / bound".into(),
        format!("{:.3}", q.rss_vs_bound),
        "< 1".into(),
        Some(q.rss_vs_bound < 1.0),
    );
    let _ = writeln!(
        out,
        "\npeak RSS {:.0} MB; bound {:.0} MB = ({} x {} threads + 1) x {:.0} MB max scan size + {:.1} MB compiled rules",
        mb(n.peak_rss_bytes),
        mb(q.rss_bound_bytes),
        3,
        r.node_settings.threads,
        mb(r.node_settings.max_scan_size),
        mb(r.rules.compiled_bytes),
    );
    let _ = writeln!(
        out,
        "node: {} results, {} answered 200, {} failures, {} leases; {:.2} s from spawn, CPU {:.2} s",
        n.results,
        n.results_ok,
        n.failures.len(),
        n.leases,
        n.secs_total,
        n.cpu_secs,
    );
    let a = &r.agreement;
    let _ = writeln!(
        out,
        "verdicts: node and engine differ on {} packages, naive and engine on {}",
        a.node_vs_engine.len(),
        a.naive_vs_engine.len()
    );
    out.push_str(&r.memory.lines());
    out.push_str(&r.reuse.lines());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_follow_the_definitions() {
        let engine = |threads, secs| EngineRun {
            threads,
            secs,
            repetitions: 1,
            files: 10,
            bytes: 100_000_000,
            file_errors: 0,
            verdicts: Default::default(),
        };
        let node = NodeRun {
            secs_total: 1.5,
            secs_working: 1.25,
            secs_startup: 0.25,
            cpu_secs: 2.0,
            cpu_percent: 133.0,
            peak_rss_bytes: 150_000_000,
            results: 10,
            results_ok: 10,
            failures: Vec::new(),
            leases: 10,
            exit: "exit status: 0".into(),
            verdicts: Default::default(),
        };
        let naive = NaiveRun {
            secs: 10.0,
            packages: 10,
            files: 10,
            bytes: 100_000_000,
            failures: Vec::new(),
            verdicts: Default::default(),
        };
        let settings = NodeSettingsInfo { threads: 2, bulk_size: 20, max_scan_size: 100_000_000 };
        let q = ratios(
            10,
            [&engine(1, 2.0), &engine(2, 1.0), &engine(2, 1.6)],
            &node,
            &naive,
            &settings,
            1_000_000,
        );
        // Engine: 50 and 100 MB/s; node: 80 MB/s, 8 packages/s; naive: 1 package/s.
        assert!((q.threads_speedup - 2.0).abs() < 1e-9);
        assert!((q.node_vs_engine - 0.8).abs() < 1e-9);
        assert!((q.node_vs_naive - 8.0).abs() < 1e-9);
        assert!((q.node_vs_archive - 80.0 / 62.5).abs() < 1e-9);
        assert_eq!(q.rss_bound_bytes, 7 * 100_000_000 + 1_000_000);
        assert!((q.rss_vs_bound - 150.0 / 701.0).abs() < 1e-9);
    }

    #[test]
    fn rates_never_divide_by_zero() {
        assert!(mb_per_s(1_000_000, 0.0).is_finite());
        assert_eq!(ratio(1.0, 0.0), 0.0);
        assert_eq!(per_s(10, 2.0), 5.0);
    }
}
