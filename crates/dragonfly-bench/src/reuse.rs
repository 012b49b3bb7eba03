//! The reuse section: a stream of consecutive releases through the engine
//! (one thread, in memory) and the node, with result reuse off, observe and
//! reuse.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use dragonfly_engine::{DistributionReport, Engine, ReuseCache, ReuseCounts, ReuseMode, RuleSet};
use dragonfly_testkit::server::FakeServer;
use serde::Serialize;
use serde_json::Value;

use crate::corpus::Package;

/// Rounds of the in-memory runs; the best time of each mode is kept.
const ROUNDS: usize = 3;

/// The modes, in the order they are run.
const MODES: [ReuseMode; 3] = [ReuseMode::Off, ReuseMode::Observe, ReuseMode::Reuse];

/// The release stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamInfo {
    /// Where it came from: `generated` or the `--corpus` folder.
    pub source: String,
    /// Projects.
    pub projects: usize,
    /// Releases in all.
    pub releases: usize,
    /// Bytes of archives.
    pub archive_bytes: u64,
}

impl StreamInfo {
    /// Describes `stream`.
    pub fn of(source: String, stream: &[Package]) -> StreamInfo {
        let names: std::collections::BTreeSet<&str> = stream.iter().map(|p| p.name.as_str()).collect();
        StreamInfo {
            source,
            projects: names.len(),
            releases: stream.len(),
            archive_bytes: stream.iter().flat_map(|p| &p.distributions).map(|d| d.bytes.len() as u64).sum(),
        }
    }
}

/// `packages` as a stream: by project, oldest release first (PEP 440).
pub fn in_release_order(mut packages: Vec<Package>) -> Vec<Package> {
    let version = |p: &Package| p.version.parse::<pep440_rs::Version>().ok();
    packages.sort_by(|a, b| {
        a.name.to_lowercase().cmp(&b.name.to_lowercase()).then_with(|| version(a).cmp(&version(b)))
    });
    packages
}

/// One mode in memory: the later releases (every release but each
/// project's first) after the first ones filled the cache.
#[derive(Debug, Clone, Serialize)]
pub struct EngineReuse {
    /// `off`, `observe` or `reuse`.
    pub mode: String,
    /// Best time over the later releases, one thread, seconds.
    pub secs_later: f64,
    /// What reuse did over the later releases (last round).
    pub counts: ReuseCounts,
}

/// One mode on the node: the whole stream.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReuse {
    /// `off`, `observe`, `reuse`, or `reuse, after restart` (with a
    /// store its first run filled).
    pub mode: String,
    /// CPU time of the node process, seconds.
    pub cpu_secs: f64,
    /// From first lease to last result, seconds.
    pub secs_working: f64,
    /// Packages per second over `secs_working`.
    pub packages_per_sec: f64,
    /// Results answered 200.
    pub results_ok: usize,
    /// Summed from the `scan_reuse` of the results.
    pub counts: ReuseCounts,
}

/// Files whose results came from the cache, of those looked up.
fn hit_ratio(counts: &ReuseCounts) -> f64 {
    counts.reused_files as f64 / counts.candidate_files.max(1) as f64
}

/// The section of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Reuse {
    /// The stream.
    pub stream: StreamInfo,
    /// In memory, per mode.
    pub engine: Vec<EngineReuse>,
    /// The node, per mode.
    pub node: Vec<NodeReuse>,
    /// Later releases in memory: reuse time / off time (target <= 0.5).
    pub later_reuse_vs_off: f64,
    /// Node CPU: reuse / off over the whole stream.
    pub node_cpu_reuse_vs_off: f64,
    /// Releases whose verdict (score, rules) differs from `off`, as
    /// `mode name version`.
    pub disagreements: Vec<String>,
}

/// Runs the in-memory part: each mode over the later releases, after the
/// first release of each project has filled a fresh cache.
pub fn engine_runs(rules: &Arc<RuleSet>, stream: &[Package]) -> Result<Vec<EngineReuse>> {
    let pool =
        rayon::ThreadPoolBuilder::new().num_threads(1).build().context("can not build a 1-thread pool")?;
    // `stream` is in release order: each project's first release comes first.
    let mut seen = std::collections::HashSet::new();
    let (first, later): (Vec<&Package>, Vec<&Package>) =
        stream.iter().partition(|p| seen.insert(p.name.to_lowercase()));
    let scan = |engine: &Engine, packages: &[&Package]| -> Vec<DistributionReport> {
        packages
            .iter()
            .flat_map(|p| &p.distributions)
            .map(|d| engine.scan_archive(&d.filename, &d.bytes))
            .collect()
    };
    let mut out = Vec::new();
    for mode in MODES {
        let mut best = f64::INFINITY;
        let mut counts = ReuseCounts::default();
        for _ in 0..ROUNDS {
            let cache = (mode != ReuseMode::Off)
                .then(|| Arc::new(ReuseCache::new(mode, dragonfly_engine::DEFAULT_BUDGET_BYTES)));
            let engine = Engine::new(Arc::clone(rules)).with_reuse(cache);
            pool.install(|| scan(&engine, &first));
            let started = Instant::now();
            let reports = pool.install(|| scan(&engine, &later));
            best = best.min(started.elapsed().as_secs_f64());
            let mut sum = ReuseCounts::default();
            for report in &reports {
                sum.add(&report.reuse);
            }
            counts = sum;
        }
        out.push(EngineReuse { mode: mode.as_str().to_owned(), secs_later: best, counts });
    }
    Ok(out)
}

/// What one node run gave: the mode's numbers and each release's verdict.
pub struct NodeOutcome {
    /// The numbers.
    pub run: NodeReuse,
    /// `(name, version)` -> `(score, rules_matched)`.
    pub verdicts: BTreeMap<(String, String), Value>,
}

/// Reads a node run over the stream from the server's results (those
/// after the first `from`).
pub fn node_outcome(
    mode: &str,
    server: &FakeServer,
    from: usize,
    run: &crate::measure::NodeRun,
) -> NodeOutcome {
    let mut sum = ReuseCounts::default();
    let mut verdicts = BTreeMap::new();
    for result in server.results().into_iter().skip(from) {
        let body = &result.body;
        verdicts.insert(
            (result.name.clone(), result.version.clone()),
            serde_json::json!([body["score"], body["rules_matched"], body["reason"]]),
        );
        let reuse = &body["scan_reuse"];
        let n = |key: &str| reuse[key].as_u64().unwrap_or(0);
        sum.add(&ReuseCounts {
            candidate_files: n("candidate_files"),
            reused_files: n("reused_files"),
            reused_bytes: n("reused_bytes"),
            validated_files: n("validated_files"),
            mismatched_files: n("mismatched_files"),
            ..ReuseCounts::default()
        });
    }
    let packages = verdicts.len();
    NodeOutcome {
        run: NodeReuse {
            mode: mode.to_owned(),
            cpu_secs: run.cpu_secs,
            secs_working: run.secs_working,
            packages_per_sec: packages as f64 / run.secs_working.max(1e-9),
            results_ok: run.results_ok,
            counts: sum,
        },
        verdicts,
    }
}

/// The modes, for the caller's node runs.
pub fn modes() -> [ReuseMode; 3] {
    MODES
}

impl Reuse {
    /// The section from its runs; `nodes` in [`modes`] order.
    pub fn new(stream: StreamInfo, engine: Vec<EngineReuse>, nodes: Vec<NodeOutcome>) -> Reuse {
        let engine_secs =
            |mode: &str| engine.iter().find(|e| e.mode == mode).map_or(f64::NAN, |e| e.secs_later);
        let node_cpu =
            |mode: &str| nodes.iter().find(|n| n.run.mode == mode).map_or(f64::NAN, |n| n.run.cpu_secs);
        let mut disagreements = Vec::new();
        if let Some(off) = nodes.first() {
            for other in &nodes[1..] {
                for (key, verdict) in &other.verdicts {
                    if off.verdicts.get(key) != Some(verdict) {
                        disagreements.push(format!("{} {} {}", other.run.mode, key.0, key.1));
                    }
                }
                if other.verdicts.len() != off.verdicts.len() {
                    disagreements.push(format!(
                        "{}: {} results, off: {}",
                        other.run.mode,
                        other.verdicts.len(),
                        off.verdicts.len()
                    ));
                }
            }
        }
        Reuse {
            later_reuse_vs_off: engine_secs("reuse") / engine_secs("off"),
            node_cpu_reuse_vs_off: node_cpu("reuse") / node_cpu("off"),
            stream,
            engine,
            node: nodes.into_iter().map(|n| n.run).collect(),
            disagreements,
        }
    }

    /// Mismatched audits in any run.
    pub fn mismatches(&self) -> u64 {
        let engine = self.engine.iter().map(|e| e.counts.mismatched_files);
        engine.chain(self.node.iter().map(|n| n.counts.mismatched_files)).sum()
    }

    /// The section as lines of the printed table.
    pub fn lines(&self) -> String {
        let s = &self.stream;
        let mut out = format!(
            "\nreuse: release stream {}: {} projects, {} releases, {:.1} MB of archives\n",
            s.source,
            s.projects,
            s.releases,
            s.archive_bytes as f64 / 1e6
        );
        out.push_str(
            "\n| reuse | later releases in memory, 1 thread, s | hit ratio | reused MB | not decompressed |\n",
        );
        out.push_str("|---|---:|---:|---:|---:|\n");
        for e in &self.engine {
            out.push_str(&format!(
                "| {} | {:.3} | {:.2} | {:.1} | {} |\n",
                e.mode,
                e.secs_later,
                hit_ratio(&e.counts),
                e.counts.reused_bytes as f64 / 1e6,
                e.counts.unextracted_files
            ));
        }
        out.push_str(
            "\n| reuse | node CPU s | node packages/s | hit ratio | reused MB | audits | mismatches |\n",
        );
        out.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
        for n in &self.node {
            out.push_str(&format!(
                "| {} | {:.2} | {:.1} | {:.2} | {:.1} | {} | {} |\n",
                n.mode,
                n.cpu_secs,
                n.packages_per_sec,
                hit_ratio(&n.counts),
                n.counts.reused_bytes as f64 / 1e6,
                n.counts.validated_files,
                n.counts.mismatched_files,
            ));
        }
        let met = |ok: bool| if ok { "met" } else { "MISSED" };
        out.push_str(&format!(
            "\nreuse: later releases in memory, reuse / off: {:.3} (target <= 0.5: {}); node CPU reuse / off: {:.3}; verdicts differing from off: {}\n",
            self.later_reuse_vs_off,
            met(self.later_reuse_vs_off <= 0.5),
            self.node_cpu_reuse_vs_off,
            self.disagreements.len()
        ));
        out
    }
}
