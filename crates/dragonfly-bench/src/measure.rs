//! The four measurements: flattening, the engine limit, the node end to end
//! and the naive baseline.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use dragonfly_engine::{DistributionReport, Engine, File, RuleSet};
use dragonfly_testkit::server::FakeServer;
use rayon::prelude::*;
use serde::Serialize;

use crate::corpus::Package;
use crate::procfs;

/// Rule names matched per package name.
pub type Verdicts = BTreeMap<String, BTreeSet<String>>;

/// One distribution, flattened in memory.
#[derive(Debug, Clone)]
pub struct FlatDistribution {
    /// Index of its package in the corpus.
    pub package: usize,
    /// Its file name.
    pub source: String,
    /// The files any rule applies to.
    pub files: Vec<File>,
}

/// Step 2: decompression and flattening alone.
#[derive(Debug, Clone, Serialize)]
pub struct FlattenRun {
    /// Wall time, seconds.
    pub secs: f64,
    /// Archive bytes read.
    pub bytes_in: u64,
    /// File bytes produced (files some rule applies to).
    pub bytes_out: u64,
    /// Files produced.
    pub files: u64,
    /// Files left out because no rule applies to them.
    pub files_filtered: u64,
    /// Distributions that could not be flattened, with the reason.
    pub failures: Vec<String>,
}

/// Flattens every distribution on this thread, as the node does (files no
/// rule applies to are left out). Returns the timing and the files.
pub fn flatten_all(corpus: &[Package], engine: &Engine) -> (FlattenRun, Vec<FlatDistribution>) {
    let rules = engine.rules();
    let keep = |path: &str| rules.applies_to(path);
    let mut run = FlattenRun {
        secs: 0.0,
        bytes_in: 0,
        bytes_out: 0,
        files: 0,
        files_filtered: 0,
        failures: Vec::new(),
    };
    let mut out = Vec::new();
    let started = Instant::now();
    for (package, p) in corpus.iter().enumerate() {
        for dist in &p.distributions {
            run.bytes_in += dist.bytes.len() as u64;
            match dragonfly_flatten::flatten_filtered(&dist.bytes, engine.limits(), &keep) {
                Ok(flat) => {
                    run.files += flat.files.len() as u64;
                    run.files_filtered += flat.skipped.filtered;
                    run.bytes_out += flat.files.iter().map(|f| f.data.len() as u64).sum::<u64>();
                    out.push(FlatDistribution { package, source: dist.filename.clone(), files: flat.files });
                }
                Err(err) => run.failures.push(format!("{}: {err}", dist.filename)),
            }
        }
    }
    run.secs = started.elapsed().as_secs_f64();
    (run, out)
}

/// Step 1: the engine alone over files already in memory.
#[derive(Debug, Clone, Serialize)]
pub struct EngineRun {
    /// Threads of the rayon pool.
    pub threads: usize,
    /// Best wall time over the repetitions, seconds.
    pub secs: f64,
    /// Repetitions made (more for small corpora).
    pub repetitions: usize,
    /// Files scanned per repetition.
    pub files: u64,
    /// File bytes scanned per repetition.
    pub bytes: u64,
    /// Files whose scan failed (timeouts), plus archives that could not be read.
    pub file_errors: u64,
    /// What matched, per package.
    #[serde(skip)]
    pub verdicts: Verdicts,
}

/// What a timed engine run scans.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// Files already flattened in memory, through `Engine::scan_files`:
    /// the engine limit.
    Flat(&'a [FlatDistribution]),
    /// The archives in memory, through `Engine::scan_archive`: flattening
    /// and scanning, everything the node does but the network.
    Archives(&'a [Package]),
}

/// Scans the whole input once per pool size in `threads`, in rounds that
/// alternate the pools (so that both see the same machine), at least three
/// times and until 6 s have passed (at most 9 rounds); keeps each pool's best
/// time.
pub fn engine_runs(
    engine: &Engine,
    corpus: &[Package],
    input: Input<'_>,
    threads: &[usize],
) -> Result<Vec<EngineRun>> {
    let mut pools = Vec::with_capacity(threads.len());
    for &n in threads {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(move |i| format!("bench-{n}-{i}"))
            .build()
            .context("can not build the thread pool")?;
        pools.push(pool);
    }
    let archives: Vec<(usize, &crate::corpus::Distribution)> = match input {
        Input::Archives(packages) => packages
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.distributions.iter().map(move |d| (i, d)))
            .collect(),
        Input::Flat(_) => Vec::new(),
    };
    let mut best = vec![f64::INFINITY; pools.len()];
    let mut last: Vec<Vec<(usize, DistributionReport)>> = vec![Vec::new(); pools.len()];
    let (mut rounds, mut total) = (0, 0.0);
    while rounds < 3 || (rounds < 9 && total < 6.0) {
        for (k, pool) in pools.iter().enumerate() {
            let (secs, reports) = match input {
                Input::Flat(inputs) => {
                    // Copied before the clock starts: scan_files takes ownership.
                    let copy: Vec<FlatDistribution> = inputs.to_vec();
                    let started = Instant::now();
                    let reports: Vec<_> = pool.install(|| {
                        copy.into_par_iter()
                            .map(|d| (d.package, engine.scan_files(&d.source, d.files)))
                            .collect()
                    });
                    (started.elapsed().as_secs_f64(), reports)
                }
                Input::Archives(_) => {
                    let started = Instant::now();
                    let reports: Vec<_> = pool.install(|| {
                        archives
                            .par_iter()
                            .map(|(i, d)| (*i, engine.scan_archive(&d.filename, &d.bytes)))
                            .collect()
                    });
                    (started.elapsed().as_secs_f64(), reports)
                }
            };
            best[k] = best[k].min(secs);
            total += secs;
            last[k] = reports;
        }
        rounds += 1;
    }
    let mut runs = Vec::with_capacity(pools.len());
    for (k, reports) in last.into_iter().enumerate() {
        let mut verdicts = empty_verdicts(corpus);
        let (mut files, mut bytes, mut file_errors) = (0, 0, 0);
        for (package, report) in &reports {
            files += report.files_scanned;
            bytes += report.bytes_scanned;
            file_errors += report.file_errors.len() as u64 + u64::from(report.error.is_some());
            let names = report.files.iter().flat_map(|f| &f.matches).map(|m| m.name.clone());
            verdicts.entry(corpus[*package].name.clone()).or_default().extend(names);
        }
        runs.push(EngineRun {
            threads: threads[k],
            secs: best[k],
            repetitions: rounds,
            files,
            bytes,
            file_errors,
            verdicts,
        });
    }
    Ok(runs)
}

fn empty_verdicts(corpus: &[Package]) -> Verdicts {
    corpus.iter().map(|p| (p.name.clone(), BTreeSet::new())).collect()
}

/// How the node is run.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The `dragonfly-client` binary.
    pub binary: PathBuf,
    /// `DRAGONFLY_THREADS`.
    pub threads: usize,
    /// `DRAGONFLY_BULK_SIZE`.
    pub bulk_size: usize,
    /// `DRAGONFLY_MAX_SCAN_SIZE`.
    pub max_scan_size: u64,
    /// Longest wait for the queue to drain.
    pub timeout: Duration,
    /// Where the node's log goes.
    pub log_path: PathBuf,
    /// More settings (`DRAGONFLY_MEMORY_LIMIT` for the memory section).
    pub extra_env: Vec<(String, String)>,
}

/// Step 3: the node binary against the fake server.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRun {
    /// From spawn to the last result delivered, seconds.
    pub secs_total: f64,
    /// From the first lease to the last result delivered, seconds.
    pub secs_working: f64,
    /// From spawn to the first lease (start-up, rule compilation), seconds.
    pub secs_startup: f64,
    /// CPU time of the node process (user + system), seconds.
    pub cpu_secs: f64,
    /// CPU time over `secs_total`, in percent of one core.
    pub cpu_percent: f64,
    /// Peak resident memory (`VmHWM`), bytes.
    pub peak_rss_bytes: u64,
    /// Results the server recorded.
    pub results: usize,
    /// Results answered with 200.
    pub results_ok: usize,
    /// Failure results (`reason`), as `name version: reason`.
    pub failures: Vec<String>,
    /// Leases handed out (more than the packages when jobs were leased again).
    pub leases: u64,
    /// How the node exited after SIGTERM.
    pub exit: String,
    /// What matched, per package.
    #[serde(skip)]
    pub verdicts: Verdicts,
}

/// Runs the node until the server is drained, then stops it with SIGTERM.
pub fn node_run(server: &FakeServer, corpus: &[Package], options: &NodeOptions) -> Result<NodeRun> {
    let workdir = tempfile::tempdir().context("can not create a working directory for the node")?;
    let log = std::fs::File::create(&options.log_path)
        .with_context(|| format!("can not create {}", options.log_path.display()))?;
    let mut command = Command::new(&options.binary);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("DRAGONFLY_") {
            command.env_remove(key);
        }
    }
    command
        .arg("run")
        .current_dir(workdir.path())
        .env("DRAGONFLY_BASE_URL", server.url())
        .env("DRAGONFLY_AUTH_MODE", "none")
        .env("DRAGONFLY_ALLOW_PRIVATE_DOWNLOADS", "true")
        .env("DRAGONFLY_THREADS", options.threads.to_string())
        .env("DRAGONFLY_BULK_SIZE", options.bulk_size.to_string())
        .env("DRAGONFLY_MAX_SCAN_SIZE", options.max_scan_size.to_string())
        .env("DRAGONFLY_LOAD_DURATION", "1")
        .env("DRAGONFLY_SUMMARY_INTERVAL", "3600")
        .envs(options.extra_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let log_hint = format!("node log: {}", options.log_path.display());

    // A server may have served a run before: only what comes after counts.
    let (leases_before, results_before) = (server.stats().leases, server.results().len());
    let started = Instant::now();
    let mut child = command.spawn().with_context(|| format!("can not start {}", options.binary.display()))?;
    let pid = child.id();
    let mut first_lease = None;
    let drained_at = loop {
        if first_lease.is_none() && server.stats().leases > leases_before {
            first_lease = Some(started.elapsed());
        }
        if server.is_drained() {
            break started.elapsed();
        }
        if let Some(status) = child.try_wait()? {
            bail!("the node exited early with {status}; {log_hint}");
        }
        if started.elapsed() > options.timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the queue was not drained within {:?}; {log_hint}", options.timeout);
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    // Read before SIGTERM: /proc/<pid> is gone once the node exits.
    let usage = procfs::usage(pid).unwrap_or_default();
    let exit = stop(&mut child)?;
    if !exit.success() {
        bail!("the node exited with {exit} after SIGTERM; {log_hint}");
    }

    let first_lease = first_lease.unwrap_or(drained_at);
    let cpu_secs = usage.cpu_ticks as f64 / procfs::clock_ticks_per_second() as f64;
    let secs_total = drained_at.as_secs_f64();
    let mut run = NodeRun {
        secs_total,
        secs_working: (drained_at - first_lease).as_secs_f64(),
        secs_startup: first_lease.as_secs_f64(),
        cpu_secs,
        cpu_percent: 100.0 * cpu_secs / secs_total.max(1e-9),
        peak_rss_bytes: usage.peak_rss_bytes,
        results: 0,
        results_ok: 0,
        failures: Vec::new(),
        leases: server.stats().leases - leases_before,
        exit: exit.to_string(),
        verdicts: empty_verdicts(corpus),
    };
    for result in server.results().into_iter().skip(results_before) {
        run.results += 1;
        if result.status == 200 {
            run.results_ok += 1;
        }
        if let Some(reason) = result.body.get("reason").and_then(|r| r.as_str()) {
            run.failures.push(format!("{} {}: {reason}", result.name, result.version));
            continue;
        }
        let rules = result.body.get("rules_matched").and_then(|r| r.as_array()).cloned().unwrap_or_default();
        run.verdicts
            .entry(result.name.clone())
            .or_default()
            .extend(rules.iter().filter_map(|r| r.as_str()).map(str::to_owned));
    }
    Ok(run)
}

/// SIGTERM, then up to 60 s for a graceful exit, then SIGKILL.
fn stop(child: &mut std::process::Child) -> Result<std::process::ExitStatus> {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status();
    if !sent.is_ok_and(|s| s.success()) {
        let _ = child.kill();
        return Ok(child.wait()?);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    child.wait()?;
    bail!("the node did not exit within 60 s of SIGTERM")
}

/// Step 4: a straightforward client.
#[derive(Debug, Clone, Serialize)]
pub struct NaiveRun {
    /// Wall time, seconds.
    pub secs: f64,
    /// Packages processed.
    pub packages: usize,
    /// Files scanned (every extracted file).
    pub files: u64,
    /// Bytes of the files scanned.
    pub bytes: u64,
    /// Packages that could not be processed, with the reason.
    pub failures: Vec<String>,
    /// What matched, per package.
    #[serde(skip)]
    pub verdicts: Verdicts,
}

/// One package as the naive client sees it: `(file name, URL)` pairs.
pub type Job = (String, Vec<(String, String)>);

/// One package at a time: download each distribution with a plain GET,
/// write it to a temporary directory, extract it there, walk the tree and
/// scan file by file with one scanner; the `filetype` filter is applied to
/// the matches afterwards.
pub fn naive_run(rules: &RuleSet, jobs: &[Job], max_download: u64) -> Result<NaiveRun> {
    let info: HashMap<&str, &dragonfly_engine::RuleInfo> =
        rules.rules().iter().map(|r| (r.name.as_str(), r)).collect();
    let mut scanner = yara_x::Scanner::new(rules.yara());
    scanner.set_timeout(dragonfly_engine::DEFAULT_TIMEOUT);
    let mut run = NaiveRun {
        secs: 0.0,
        packages: 0,
        files: 0,
        bytes: 0,
        failures: Vec::new(),
        verdicts: BTreeMap::new(),
    };
    let started = Instant::now();
    for (name, distributions) in jobs {
        let matched = run.verdicts.entry(name.clone()).or_default();
        let outcome = naive_package(&mut scanner, &info, distributions, max_download, matched);
        match outcome {
            Ok((files, bytes)) => {
                run.files += files;
                run.bytes += bytes;
            }
            Err(err) => run.failures.push(format!("{name}: {err:#}")),
        }
        run.packages += 1;
    }
    run.secs = started.elapsed().as_secs_f64();
    Ok(run)
}

fn naive_package(
    scanner: &mut yara_x::Scanner<'_>,
    info: &HashMap<&str, &dragonfly_engine::RuleInfo>,
    distributions: &[(String, String)],
    max_download: u64,
    matched: &mut BTreeSet<String>,
) -> Result<(u64, u64)> {
    let temp = tempfile::tempdir()?;
    let (mut files, mut bytes) = (0, 0);
    for (index, (filename, url)) in distributions.iter().enumerate() {
        let archive = temp.path().join(filename);
        let response = ureq::get(url).call().with_context(|| format!("GET {url}"))?;
        let mut body = response.into_body().into_with_config().limit(max_download).reader();
        let mut out = BufWriter::new(std::fs::File::create(&archive)?);
        std::io::copy(&mut body, &mut out)?;
        out.flush()?;
        drop(out);
        let root = temp.path().join(format!("x{index}"));
        std::fs::create_dir(&root)?;
        extract(&archive, filename, &root).with_context(|| format!("can not extract {filename}"))?;
        let mut paths = Vec::new();
        crate::corpus::collect(&root, &mut paths)?;
        for path in paths {
            let relative = path.strip_prefix(&root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
            let results = match scanner.scan_file(&path) {
                Ok(results) => results,
                // A timeout loses the file's matches, as in the node.
                Err(yara_x::errors::ScanError::Timeout) => continue,
                Err(err) => bail!("can not scan {relative}: {err}"),
            };
            files += 1;
            bytes += std::fs::metadata(&path).map_or(0, |m| m.len());
            for rule in results.matching_rules() {
                if let Some(info) = info.get(rule.identifier())
                    && info.applies_to(&relative)
                {
                    matched.insert(info.name.clone());
                }
            }
        }
    }
    Ok((files, bytes))
}

/// Extracts an archive by its file name's suffix.
fn extract(archive: &Path, filename: &str, into: &Path) -> Result<()> {
    let lower = filename.to_ascii_lowercase();
    let file = BufReader::new(std::fs::File::open(archive)?);
    let untar = |reader: Box<dyn Read>| -> Result<()> { Ok(tar::Archive::new(reader).unpack(into)?) };
    if [".whl", ".zip", ".egg"].iter().any(|s| lower.ends_with(s)) {
        zip::ZipArchive::new(file)?.extract(into)?;
        Ok(())
    } else if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
        untar(Box::new(flate2::read::MultiGzDecoder::new(file)))
    } else if lower.ends_with(".tar.bz2") || lower.ends_with(".tbz2") {
        untar(Box::new(bzip2::read::MultiBzDecoder::new(file)))
    } else if lower.ends_with(".tar.xz") || lower.ends_with(".txz") {
        untar(Box::new(lzma_rust2::XzReader::new(file, true)))
    } else if lower.ends_with(".tar") {
        untar(Box::new(file))
    } else {
        bail!("unknown archive type")
    }
}

/// Packages whose matched rules differ between two runs.
pub fn disagreements(a: &Verdicts, b: &Verdicts) -> Vec<String> {
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let empty = BTreeSet::new();
    names
        .into_iter()
        .filter(|name| a.get(*name).unwrap_or(&empty) != b.get(*name).unwrap_or(&empty))
        .map(|name| name.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use dragonfly_testkit::server::ServerConfig;

    use super::*;
    use crate::corpus::{Size, generated};
    use crate::rules::{bench_sources, sources_hash};

    #[test]
    fn engine_and_naive_client_agree_on_the_tiny_corpus() {
        let corpus = generated(Size::Tiny);
        let sources = bench_sources();
        let rules =
            Arc::new(RuleSet::compile(sources_hash(&sources), sources.iter().map(|(n, s)| (n, s))).unwrap());
        let engine = Engine::new(Arc::clone(&rules));

        let (flat, inputs) = flatten_all(&corpus, &engine);
        assert!(flat.failures.is_empty(), "{:?}", flat.failures);
        assert_eq!(inputs.len(), corpus.len());
        assert!(flat.bytes_out > flat.bytes_in, "{flat:?}");

        let runs = engine_runs(&engine, &corpus, Input::Flat(&inputs), &[1, 2]).unwrap();
        let (one, two) = (&runs[0], &runs[1]);
        assert_eq!((one.files, one.bytes), (flat.files, flat.bytes_out));
        assert_eq!(one.verdicts, two.verdicts);
        assert!(one.repetitions >= 3);
        // Flattening inside the engine finds the same files and verdicts.
        let archive = &engine_runs(&engine, &corpus, Input::Archives(&corpus), &[2]).unwrap()[0];
        assert_eq!((archive.files, archive.bytes, archive.file_errors), (one.files, one.bytes, 0));
        assert_eq!(archive.verdicts, one.verdicts);
        // The corpus holds one malicious release, found by the bundled rules.
        let flagged: Vec<&String> =
            one.verdicts.iter().filter(|(_, r)| !r.is_empty()).map(|(n, _)| n).collect();
        assert_eq!(flagged, ["bench-small-00012"]);

        let server = FakeServer::start(ServerConfig::default()).unwrap();
        let jobs: Vec<Job> = corpus
            .iter()
            .map(|p| {
                let urls = server.add_fixture(p);
                let names = p.distributions.iter().map(|d| d.filename.clone());
                (p.name.clone(), names.zip(urls).collect())
            })
            .collect();
        let naive = naive_run(&rules, &jobs, 1 << 30).unwrap();
        assert!(naive.failures.is_empty(), "{:?}", naive.failures);
        assert_eq!(naive.packages, corpus.len());
        assert!(naive.files >= one.files);
        assert_eq!(disagreements(&naive.verdicts, &one.verdicts), Vec::<String>::new());
    }

    #[test]
    fn disagreements_name_the_packages_that_differ() {
        let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let a: Verdicts = [("p".into(), set(&["r1"])), ("q".into(), set(&[]))].into();
        let b: Verdicts =
            [("p".into(), set(&["r1"])), ("q".into(), set(&["r2"])), ("z".into(), set(&[]))].into();
        assert_eq!(disagreements(&a, &b), ["q"]);
        assert!(disagreements(&a, &a).is_empty());
    }
}
