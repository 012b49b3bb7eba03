//! `dragonfly-bench`: throughput of the Dragonfly node, measured in one run
//! on one set of inputs:
//!
//! 1. the engine limit: files already flattened in memory, scanned on a
//!    1-thread and an N-thread rayon pool;
//! 2. flattening alone (decompression included), on one thread;
//! 3. the real node binary end to end against the test kit's fake control
//!    server on loopback;
//! 4. a naive baseline: one package at a time, downloaded, written to a
//!    temporary directory, extracted there and scanned file by file with one
//!    yara-x scanner.
//!
//! It prints a table and the ratios of the targets, and writes the same as
//! JSON (`target/bench/bench.json`). Run it through `cargo xtask bench`; see
//! `docs/benchmarks.md`.

mod corpus;
mod files;
mod measure;
mod memory;
mod procfs;
mod report;
mod reuse;
mod rules;
mod worst;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use dragonfly_engine::{Engine, RuleSet};
use dragonfly_testkit::server::{Distribution, FakeServer, ServerConfig};

use crate::corpus::{Package, Size};
use crate::files::FileServer;
use crate::measure::{Input, NodeOptions};
use crate::report::{Agreement, CorpusInfo, NodeSettingsInfo, Report, RulesInfo};

/// Throughput benchmark of the Dragonfly node (engine limit, flattening,
/// node end to end, naive baseline).
#[derive(Debug, Parser)]
#[command(name = "dragonfly-bench", version)]
struct Args {
    /// A few small packages: seconds even in a debug build (CI).
    #[arg(long, conflicts_with_all = ["quick", "corpus"])]
    tiny: bool,
    /// A smaller generated corpus.
    #[arg(long, conflicts_with = "corpus")]
    quick: bool,
    /// A folder of real distribution files (wheel/sdist names), read
    /// recursively, instead of the generated corpus.
    #[arg(long, value_name = "DIR")]
    corpus: Option<PathBuf>,
    /// Threads of the N-thread engine run and of the node [default: available parallelism].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// `DRAGONFLY_BULK_SIZE` of the node.
    #[arg(long, value_name = "N", default_value_t = dragonfly_orchestrator::DEFAULT_BULK_SIZE)]
    bulk_size: usize,
    /// The `dragonfly-client` binary [default: next to this one].
    #[arg(long, value_name = "PATH")]
    node: Option<PathBuf>,
    /// Where the distribution files are served from: `cdn`, a keep-alive
    /// static file server in this process; or `testkit`, the fake control
    /// server itself (tiny_http; see docs/benchmarks.md for why it is not
    /// the default).
    #[arg(long, value_enum, default_value_t = Downloads::Cdn)]
    downloads: Downloads,
    /// `DRAGONFLY_MEMORY_LIMIT` of the node runs on the corpus (the
    /// worst-case queue always runs with 512MiB).
    #[arg(long, value_name = "SIZE")]
    memory_limit: Option<String>,
    /// The JSON report [default: $CARGO_TARGET_DIR/bench/bench.json, else target/bench/bench.json].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Where the distribution files are served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Downloads {
    /// A static file server in this process (keep-alive, `TCP_NODELAY`).
    Cdn,
    /// The test kit's fake control server.
    Testkit,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("dragonfly-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The target directory: `$CARGO_TARGET_DIR`, else the one this binary was
/// built into, else `./target`.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().ok();
    let profile_dir = exe.as_deref().and_then(Path::parent);
    match profile_dir.and_then(|p| Some((p.file_name()?.to_str()?, p.parent()?))) {
        Some(("debug" | "release", target)) => target.to_path_buf(),
        _ => PathBuf::from("target"),
    }
}

fn step(message: &str) {
    eprintln!("bench: {message}");
}

fn run(args: Args) -> Result<()> {
    let build = if cfg!(debug_assertions) { "debug" } else { "release" };
    let threads = args
        .threads
        .map(usize::from)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let node_binary = match &args.node {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("dragonfly-client"),
    };
    if !node_binary.is_file() {
        bail!(
            "no node binary at {} (build it with `cargo build -p dragonfly-client`, or use `cargo xtask bench`)",
            node_binary.display()
        );
    }
    if build == "debug" && !args.tiny {
        step("warning: this is a debug build; numbers are only meaningful in release (cargo xtask bench)");
    }
    let out_path = args.out.clone().unwrap_or_else(|| target_dir().join("bench").join("bench.json"));
    let out_dir = out_path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&out_dir).with_context(|| format!("can not create {}", out_dir.display()))?;

    // Inputs.
    let started = Instant::now();
    let (mut corpus, source) = match &args.corpus {
        Some(dir) => (corpus::from_dir(dir)?, dir.display().to_string()),
        None => {
            let size = if args.tiny {
                Size::Tiny
            } else if args.quick {
                Size::Quick
            } else {
                Size::Default
            };
            (corpus::generated(size), format!("generated ({})", size.name()))
        }
    };
    let distributions: Vec<&corpus::Distribution> = corpus.iter().flat_map(|p| &p.distributions).collect();
    let corpus_info = CorpusInfo {
        source,
        packages: corpus.len(),
        distributions: distributions.len(),
        archive_bytes: distributions.iter().map(|d| d.bytes.len() as u64).sum(),
        largest_archive_bytes: distributions.iter().map(|d| d.bytes.len() as u64).max().unwrap_or(0),
    };
    step(&format!(
        "corpus {}: {} packages, {:.1} MB of archives ({:.1} s)",
        corpus_info.source,
        corpus_info.packages,
        corpus_info.archive_bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    ));

    // Rules.
    let sources = rules::bench_sources();
    let hash = rules::sources_hash(&sources);
    let started = Instant::now();
    let rule_set = RuleSet::compile(hash.clone(), sources.iter().map(|(n, s)| (n, s)))
        .context("the bench rules do not compile")?;
    let compile_secs = started.elapsed().as_secs_f64();
    let rules_info = RulesInfo {
        hash: hash.clone(),
        sources: sources.len(),
        rules: rule_set.rules().len(),
        unrestricted: rule_set.rules().iter().filter(|r| !r.private && r.filetypes.is_none()).count(),
        groups: rule_set.group_count(),
        compiled_bytes: rule_set.serialize().map_or(0, |b| b.len() as u64),
        compile_secs,
    };
    let rule_set = Arc::new(rule_set);
    let engine = Engine::new(Arc::clone(&rule_set));

    // Steps 2 and 1.
    step("flattening");
    let (flatten, inputs) = measure::flatten_all(&corpus, &engine);
    let pools = if threads == 1 { vec![1] } else { vec![1, threads] };
    step(&format!("engine limit, {pools:?} threads"));
    let runs = measure::engine_runs(&engine, &corpus, Input::Flat(&inputs), &pools)?;
    let (engine_1, engine_n) = (runs[0].clone(), runs[runs.len() - 1].clone());
    drop(inputs);
    step(&format!("flattening and scanning archives in memory, {pools:?} threads"));
    let runs = measure::engine_runs(&engine, &corpus, Input::Archives(&corpus), &pools)?;
    let (archive_1, archive_n) = (runs[0].clone(), runs[runs.len() - 1].clone());

    // Steps 3 and 4 share one fake control server and one file server. The
    // archives move there: nothing else needs them.
    let server =
        FakeServer::start(ServerConfig::default()).context("can not start the fake control server")?;
    server.set_rules(&hash, sources.iter().cloned().collect::<BTreeMap<_, _>>());
    let archives = corpus_archives(&mut corpus);
    let archives_again = if threads > 1 { archives.clone() } else { Vec::new() };
    let (jobs, file_server) = queue(&server, archives, args.downloads)?;
    let node_settings = NodeSettingsInfo {
        threads,
        bulk_size: args.bulk_size,
        max_scan_size: dragonfly_orchestrator::DEFAULT_MAX_SCAN_SIZE
            .max(corpus_info.largest_archive_bytes + 1),
    };
    let node_options = NodeOptions {
        binary: node_binary,
        threads,
        bulk_size: args.bulk_size,
        max_scan_size: node_settings.max_scan_size,
        timeout: Duration::from_secs(120 + (corpus_info.archive_bytes + engine_1.bytes) / 1_000_000),
        log_path: out_dir.join("node.log"),
        extra_env: args
            .memory_limit
            .iter()
            .map(|limit| ("DRAGONFLY_MEMORY_LIMIT".to_owned(), limit.clone()))
            .collect(),
    };
    step(&format!("node end to end, {threads} threads (log: {})", node_options.log_path.display()));
    let node = measure::node_run(&server, &corpus, &node_options)?;
    step("naive baseline");
    let naive = measure::naive_run(&rule_set, &jobs, node_settings.max_scan_size)?;
    drop((server, file_server));

    // The memory section: the corpus again on one thread, then the
    // worst-case queue under a memory limit.
    let node_1 = if threads > 1 {
        step("memory: node end to end, 1 thread");
        let server =
            FakeServer::start(ServerConfig::default()).context("can not start the fake control server")?;
        server.set_rules(&hash, sources.iter().cloned().collect::<BTreeMap<_, _>>());
        let (_, file_server) = queue(&server, archives_again, args.downloads)?;
        let options =
            NodeOptions { threads: 1, log_path: out_dir.join("node-1.log"), ..node_options.clone() };
        let run = measure::node_run(&server, &corpus, &options)?;
        drop((server, file_server));
        run
    } else {
        node.clone()
    };
    let scale = if args.tiny { 32 } else { 1 };
    step(&format!("memory: worst-case queue (scale 1/{scale}), {WORST_THREADS} threads, {WORST_LIMIT}"));
    let worst_queue = worst::queue(scale);
    let worst_info = memory::QueueInfo::of(&worst_queue);
    let server =
        FakeServer::start(ServerConfig::default()).context("can not start the fake control server")?;
    server.set_rules(&hash, sources.iter().cloned().collect::<BTreeMap<_, _>>());
    let (_, file_server) = queue(&server, worst_queue, args.downloads)?;
    let options = NodeOptions {
        threads: WORST_THREADS,
        max_scan_size: dragonfly_orchestrator::DEFAULT_MAX_SCAN_SIZE,
        timeout: Duration::from_secs(900),
        log_path: out_dir.join("node-worst.log"),
        extra_env: vec![("DRAGONFLY_MEMORY_LIMIT".into(), WORST_LIMIT.into())],
        ..node_options.clone()
    };
    let worst_run = measure::node_run(&server, &[], &options)?;
    drop((server, file_server));
    let memory =
        memory::Memory::new(&node_1, &node, threads, worst_info, worst_run, WORST_LIMIT_BYTES, WORST_THREADS);

    // The reuse section: consecutive releases, reuse off, observe, reuse.
    let (stream, stream_source) = match &args.corpus {
        // Real files: the corpus again, each project's releases in order.
        Some(dir) => (reuse::in_release_order(corpus::from_dir(dir)?), dir.display().to_string()),
        None => {
            let (projects, releases) = if args.tiny {
                (2, 3)
            } else if args.quick {
                (3, 5)
            } else {
                (4, 8)
            };
            let stream = dragonfly_testkit::fixtures::release_stream(projects, releases);
            (
                stream,
                format!("generated ({projects} projects x {releases} releases, an sdist and a wheel each)"),
            )
        }
    };
    step(&format!("reuse: release stream {stream_source}, in memory"));
    let stream_info = reuse::StreamInfo::of(stream_source, &stream);
    let engine_reuse = reuse::engine_runs(&rule_set, &stream)?;
    let stream_server = |scan_cache: bool| -> Result<FakeServer> {
        let server = FakeServer::start(ServerConfig { scan_cache, ..ServerConfig::default() })
            .context("can not start the fake control server")?;
        server.set_rules(&hash, sources.iter().cloned().collect::<BTreeMap<_, _>>());
        Ok(server)
    };
    // Queues the stream on `server` and runs a node over it with `env`; the
    // run, and how many results the server had before it.
    let run_stream =
        |server: &FakeServer, env: &[(&str, String)], log: &str| -> Result<(measure::NodeRun, usize)> {
            let before = server.results().len();
            let (_, file_server) = queue(server, archives_of(&stream), args.downloads)?;
            let mut extra_env = node_options.extra_env.clone();
            extra_env.extend(env.iter().map(|(key, value)| ((*key).into(), value.into())));
            let options = NodeOptions { log_path: out_dir.join(log), extra_env, ..node_options.clone() };
            let run = measure::node_run(server, &stream, &options)?;
            drop(file_server);
            Ok((run, before))
        };
    let mut node_reuse = Vec::new();
    for mode in reuse::modes() {
        step(&format!("reuse: node end to end, {threads} threads, DRAGONFLY_SCAN_REUSE={mode}"));
        let server = stream_server(false)?;
        let env = [("DRAGONFLY_SCAN_REUSE", mode.to_string())];
        let (run, _) = run_stream(&server, &env, &format!("node-reuse-{mode}.log"))?;
        node_reuse.push(reuse::node_outcome(mode.as_str(), &server, 0, &run));
    }
    // With the store: a first run fills it, the restarted node is measured.
    let cache_dir = tempfile::tempdir().context("can not create a cache directory")?;
    for round in ["reuse, store filled", "reuse, after restart"] {
        step(&format!("reuse: node end to end, {threads} threads, DRAGONFLY_CACHE_DIR ({round})"));
        let server = stream_server(false)?;
        let env = [
            ("DRAGONFLY_SCAN_REUSE", "reuse".to_owned()),
            ("DRAGONFLY_CACHE_DIR", cache_dir.path().display().to_string()),
        ];
        let (run, _) = run_stream(&server, &env, "node-reuse-store.log")?;
        if round.ends_with("restart") {
            node_reuse.push(reuse::node_outcome(round, &server, 0, &run));
        }
    }
    // The fleet: a first node fills the server's scan cache (at the real
    // server's 10 requests/s), a second one with nothing kept is measured.
    let server = stream_server(true)?;
    for round in ["reuse, fleet filled", "reuse, second node, fleet"] {
        step(&format!("reuse: node end to end, {threads} threads, the server's scan cache ({round})"));
        let env = [("DRAGONFLY_SCAN_REUSE", "reuse".to_owned())];
        let (run, before) = run_stream(&server, &env, "node-reuse-fleet.log")?;
        if round.ends_with("fleet") {
            node_reuse.push(reuse::node_outcome(round, &server, before, &run));
        }
    }
    drop(server);
    let reuse = reuse::Reuse::new(stream_info, engine_reuse, node_reuse);

    let ratios = report::ratios(
        corpus.len(),
        [&engine_1, &engine_n, &archive_n],
        &node,
        &naive,
        &node_settings,
        rules_info.compiled_bytes,
    );
    let agreement = Agreement {
        node_vs_engine: measure::disagreements(&node.verdicts, &engine_1.verdicts),
        naive_vs_engine: measure::disagreements(&naive.verdicts, &engine_1.verdicts),
    };
    let report = Report {
        command: std::iter::once("dragonfly-bench".to_owned())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        build,
        threads,
        downloads: format!("{:?}", args.downloads).to_lowercase(),
        corpus: corpus_info,
        rules: rules_info,
        flatten,
        engine_1,
        engine_n,
        archive_1,
        archive_n,
        node_settings,
        node,
        naive,
        ratios,
        agreement,
        memory,
        reuse,
    };
    println!("{}", report::table(&report));
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(&out_path, json + "\n")
        .with_context(|| format!("can not write {}", out_path.display()))?;
    println!("JSON report: {}", out_path.display());
    check(&report, args.corpus.is_some())
}

/// A release's archives: `(name, version, [(file name, bytes)])`.
type Archives = (String, String, Vec<(String, Vec<u8>)>);

/// The memory limit of the worst-case run: production's container.
const WORST_LIMIT: &str = "512MiB";
const WORST_LIMIT_BYTES: u64 = 512 << 20;
/// Threads of the worst-case run.
const WORST_THREADS: usize = 2;

/// Copies of the corpus's archives.
fn archives_of(corpus: &[Package]) -> Vec<Archives> {
    corpus
        .iter()
        .map(|p| {
            let files = p.distributions.iter().map(|d| (d.filename.clone(), d.bytes.clone())).collect();
            (p.name.clone(), p.version.clone(), files)
        })
        .collect()
}

/// Takes the archives out of the corpus.
fn corpus_archives(corpus: &mut [Package]) -> Vec<Archives> {
    corpus
        .iter_mut()
        .map(|p| {
            let files =
                p.distributions.iter_mut().map(|d| (d.filename.clone(), std::mem::take(&mut d.bytes)));
            (p.name.clone(), p.version.clone(), files.collect())
        })
        .collect()
}

/// Queues every package on the fake control server, its files served by
/// `downloads`; returns what the naive client needs, and the file server.
fn queue(
    server: &FakeServer,
    packages: Vec<Archives>,
    downloads: Downloads,
) -> Result<(Vec<measure::Job>, Option<FileServer>)> {
    let mut jobs = Vec::with_capacity(packages.len());
    if downloads == Downloads::Testkit {
        for (name, version, files) in packages {
            let filenames: Vec<String> = files.iter().map(|(f, _)| f.clone()).collect();
            let distributions =
                files.into_iter().map(|(filename, bytes)| Distribution { filename, bytes }).collect();
            let urls = server.add_package(&name, &version, distributions);
            jobs.push((name, filenames.into_iter().zip(urls).collect()));
        }
        return Ok((jobs, None));
    }
    let mut paths = HashMap::new();
    let mut layout = Vec::with_capacity(packages.len());
    for (index, (name, version, files)) in packages.into_iter().enumerate() {
        let mut entries = Vec::with_capacity(files.len());
        for (filename, bytes) in files {
            let path = format!("/packages/{index:05}/{}", files::encode_segment(&filename));
            paths.insert(path.clone(), Arc::new(bytes));
            entries.push((filename, path));
        }
        layout.push((name, version, entries));
    }
    let file_server = FileServer::start(paths).context("can not start the file server")?;
    for (name, version, entries) in layout {
        let urls: Vec<(String, String)> = entries
            .into_iter()
            .map(|(filename, path)| (filename, format!("{}{path}", file_server.url())))
            .collect();
        server.add_job(&name, &version, urls.iter().map(|(_, url)| url.clone()).collect());
        jobs.push((name, urls));
    }
    Ok((jobs, Some(file_server)))
}

/// Fails the run when the node missed results, and, on the generated
/// corpus (which is all valid), on any failure or disagreement.
fn check(report: &Report, real_corpus: bool) -> Result<()> {
    let node = &report.node;
    if node.results != report.corpus.packages || node.results_ok != node.results {
        bail!(
            "the node delivered {} results ({} answered 200) for {} packages",
            node.results,
            node.results_ok,
            report.corpus.packages
        );
    }
    let mut problems = Vec::new();
    for failure in node.failures.iter().map(|f| format!("node: {f}")) {
        problems.push(failure);
    }
    problems.extend(report.flatten.failures.iter().map(|f| format!("flatten: {f}")));
    problems.extend(report.naive.failures.iter().map(|f| format!("naive: {f}")));
    if report.engine_1.file_errors > 0 {
        problems.push(format!("engine: {} files failed to scan", report.engine_1.file_errors));
    }
    let agreement = &report.agreement;
    problems.extend(agreement.node_vs_engine.iter().map(|p| format!("node and engine disagree on {p}")));
    problems.extend(agreement.naive_vs_engine.iter().map(|p| format!("naive and engine disagree on {p}")));
    for problem in problems.iter().take(20) {
        step(&format!("warning: {problem}"));
    }
    if !problems.is_empty() && !real_corpus {
        bail!("{} problems on the generated corpus (see the warnings above)", problems.len());
    }
    // The worst-case queue is generated whatever the corpus: every job gets
    // a result, and the node stays below its memory limit.
    let worst = &report.memory.worst;
    if worst.results != worst.queue.packages || worst.results_ok != worst.results {
        bail!(
            "worst-case queue: {} results ({} answered 200) for {} packages",
            worst.results,
            worst.results_ok,
            worst.queue.packages
        );
    }
    // Reuse never changes a verdict, and every audit agrees.
    let reuse = &report.reuse;
    if !reuse.disagreements.is_empty() || reuse.mismatches() > 0 {
        bail!(
            "reuse: {} verdicts differ from reuse off ({}), {} audit mismatches",
            reuse.disagreements.len(),
            reuse.disagreements.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
            reuse.mismatches()
        );
    }
    let expected = reuse.stream.releases;
    if let Some(node) = reuse.node.iter().find(|n| n.results_ok != expected) {
        bail!("reuse: the node ({}) delivered {} of {expected} results", node.mode, node.results_ok);
    }
    if worst.peak_rss_bytes >= worst.memory_limit_bytes {
        bail!(
            "worst-case queue: peak RSS {} bytes is not below the {} byte memory limit",
            worst.peak_rss_bytes,
            worst.memory_limit_bytes
        );
    }
    Ok(())
}
