//! The node: loader, downloaders, scanning pool and sender, wired together.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use dragonfly_api::{Client, ErrorKind, Job, JobResult};
use dragonfly_engine::{DistributionReport, Engine, Limits, Outcome, PackageReport};

use crate::rules::Rules;
use crate::shutdown::Shutdown;
use crate::stats::Stats;

/// How a distribution error caused by a panic starts.
const INTERNAL_ERROR: &str = "internal error";

/// How a node runs; the binary fills it from its configuration.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// Scanning threads (the rayon pool's size).
    pub threads: usize,
    /// Jobs asked for per lease request.
    pub bulk_size: usize,
    /// Wait between lease requests while the server has no jobs.
    pub load_duration: Duration,
    /// How long an idle worker or the sender blocks on its queue before
    /// polling again.
    pub wait_duration: Duration,
    /// The server's lease (job timeout): the node never holds more work
    /// than it expects to finish well within it.
    pub lease_timeout: Duration,
    /// Largest distribution download, bytes.
    pub max_scan_size: u64,
    /// Archive limits.
    pub limits: Limits,
    /// Per-file scan timeout.
    pub scan_timeout: Duration,
    /// Time allowed after shutdown starts to finish held jobs and deliver
    /// their results.
    pub grace_period: Duration,
    /// Interval of the one-line summary in the log.
    pub summary_interval: Duration,
    /// Directory caching compiled rules by hash.
    pub rules_cache_dir: Option<PathBuf>,
    /// Retries of a failed download (transient errors only).
    pub download_retries: u32,
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            bulk_size: 20,
            load_duration: Duration::from_secs(60),
            wait_duration: Duration::from_secs(10),
            lease_timeout: Duration::from_secs(120),
            max_scan_size: 128_000_000,
            limits: Limits::default(),
            scan_timeout: dragonfly_engine::DEFAULT_TIMEOUT,
            grace_period: Duration::from_secs(90),
            summary_interval: Duration::from_secs(60),
            rules_cache_dir: None,
            download_retries: 2,
        }
    }
}

/// Occurs when a node cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A setting is out of range.
    #[error("invalid node setting: {0}")]
    Settings(String),
    /// A thread could not be started.
    #[error("can not start a thread: {0}")]
    Thread(#[from] std::io::Error),
    /// The scanning pool could not be built.
    #[error("can not build the scanning pool: {0}")]
    Pool(#[from] rayon::ThreadPoolBuildError),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Results delivered (or refused for good by the server).
    pub results_finished: u64,
    /// Jobs still held when the grace period ran out (0 on a clean stop).
    pub jobs_abandoned: u64,
}

/// A scanning node. Create it with a client and settings, keep a
/// [`Shutdown`] handle and the [`Stats`], then call [`Node::run`].
pub struct Node {
    client: Client,
    settings: NodeSettings,
    stats: Arc<Stats>,
    shutdown: Shutdown,
}

/// A leased job on its way through the node.
struct Work {
    job: Job,
    leased_at: Instant,
}

/// A job whose distributions are being scanned, one unit of work each.
struct JobState {
    work: Work,
    /// The rules every distribution of this job is scanned with: the ones
    /// current when its first distribution was scanned.
    engine: OnceLock<Option<Engine>>,
    reports: Mutex<Vec<Option<DistributionReport>>>,
    remaining: AtomicUsize,
    started: Instant,
}

/// One downloaded distribution (or the reason it could not be).
struct Loaded {
    job: Arc<JobState>,
    index: usize,
    url: String,
    bytes: Result<Vec<u8>, String>,
    reserved: u64,
}

impl Node {
    /// A node that will talk to the server through `client`.
    pub fn new(client: Client, settings: NodeSettings) -> Node {
        Node { client, settings, stats: Arc::new(Stats::default()), shutdown: Shutdown::new() }
    }

    /// The node's live counters.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// A handle that stops the node when triggered.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Runs until shutdown is triggered and held jobs are finished and
    /// reported (or the grace period runs out).
    pub fn run(self) -> Result<RunSummary, NodeError> {
        let s = &self.settings;
        if s.threads == 0 || s.bulk_size == 0 || s.max_scan_size == 0 {
            return Err(NodeError::Settings(
                "threads, bulk_size and max_scan_size must be at least 1".into(),
            ));
        }
        if s.load_duration.is_zero() || s.wait_duration.is_zero() || s.summary_interval.is_zero() {
            return Err(NodeError::Settings(
                "load_duration, wait_duration and summary_interval must be more than 0".into(),
            ));
        }
        let pool = Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(s.threads)
                .thread_name(|i| format!("scan-{i}"))
                .build()?,
        );
        let rules = Arc::new(Rules::new(
            self.client.clone(),
            s.limits.clone(),
            s.scan_timeout,
            s.rules_cache_dir.clone(),
            Arc::clone(&self.stats),
            Arc::clone(&pool),
        ));
        let shared = Arc::new(Shared {
            client: self.client.clone(),
            settings: self.settings.clone(),
            stats: Arc::clone(&self.stats),
            shutdown: self.shutdown.clone(),
            rules,
            budget: ByteBudget::new(s.max_scan_size.saturating_mul(3 * s.threads as u64 + 1)),
            delivery_blocked: AtomicBool::new(false),
            avg_job_secs: Mutex::new(None),
            room: Signal::default(),
        });

        let (pending_tx, pending_rx) = crossbeam_channel::unbounded::<Work>();
        let (ready_tx, ready_rx) = crossbeam_channel::bounded::<Loaded>(s.threads);
        let (result_tx, result_rx) = crossbeam_channel::unbounded::<JobResult>();

        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        let spawn =
            |name: String, f: Box<dyn FnOnce() + Send>| std::thread::Builder::new().name(name).spawn(f);
        {
            let shared = Arc::clone(&shared);
            threads.push(spawn("loader".into(), Box::new(move || shared.load(pending_tx)))?);
        }
        for i in 0..(2 * s.threads).clamp(2, 16) {
            let (shared, rx, tx, results) =
                (Arc::clone(&shared), pending_rx.clone(), ready_tx.clone(), result_tx.clone());
            threads
                .push(spawn(format!("download-{i}"), Box::new(move || shared.download(rx, tx, &results)))?);
        }
        drop((pending_rx, ready_tx));
        for i in 0..s.threads {
            let (shared, pool, rx, tx) =
                (Arc::clone(&shared), Arc::clone(&pool), ready_rx.clone(), result_tx.clone());
            threads.push(spawn(format!("worker-{i}"), Box::new(move || shared.scan(&pool, rx, tx)))?);
        }
        drop((ready_rx, result_tx));
        let sender = {
            let shared = Arc::clone(&shared);
            spawn("sender".into(), Box::new(move || shared.send(result_rx)))?
        };

        // The calling thread logs a summary now and then until shutdown.
        while !self.shutdown.sleep(s.summary_interval) {
            log::info!("{}", self.stats.summary());
        }
        log::info!(
            "shutting down: finishing {} held jobs (grace period {:?})",
            self.stats.jobs_held.load(Ordering::Relaxed),
            s.grace_period
        );
        let deadline = Instant::now() + s.grace_period;
        while !sender.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let abandoned = self.stats.jobs_held.load(Ordering::Relaxed);
        if sender.is_finished() {
            for thread in threads {
                let _ = thread.join();
            }
            let _ = sender.join();
        } else {
            log::warn!(
                "grace period over with {abandoned} jobs unfinished; the server will lease them again"
            );
        }
        log::info!("{}", self.stats.summary());
        Ok(RunSummary {
            results_finished: self.stats.results_delivered.load(Ordering::Relaxed)
                + self.stats.results_dropped.load(Ordering::Relaxed),
            jobs_abandoned: abandoned,
        })
    }
}

/// State shared by the node's threads.
struct Shared {
    client: Client,
    settings: NodeSettings,
    stats: Arc<Stats>,
    shutdown: Shutdown,
    rules: Arc<Rules>,
    budget: ByteBudget,
    /// Set while several results in a row could not be delivered: the
    /// loader stops leasing.
    delivery_blocked: AtomicBool,
    /// Moving average of a job's time from lease to result.
    avg_job_secs: Mutex<Option<f64>>,
    /// Signalled when a job is finished, so the loader can lease at once.
    room: Signal,
}

impl Shared {
    /// How many jobs the node may hold: enough to keep every thread busy,
    /// few enough to finish within half the server's lease.
    fn max_held(&self) -> u64 {
        let avg = *self.avg_job_secs.lock().unwrap_or_else(|e| e.into_inner());
        held_limit(self.settings.threads, self.settings.bulk_size, self.settings.lease_timeout, avg)
    }

    fn load(&self, pending: Sender<Work>) {
        let mut failures = 0u32;
        while !self.shutdown.is_triggered() {
            if !self.rules.ensure(None) {
                // No rules yet: nothing can be scanned; `ensure` backs off.
                self.shutdown.sleep(Duration::from_secs(1));
                continue;
            }
            let held = self.stats.jobs_held.load(Ordering::Relaxed);
            let max_held = self.max_held();
            let room = max_held.saturating_sub(held);
            // Lease in batches (half the cap free), but never let threads idle.
            let worth_asking = room > 0 && (room * 2 >= max_held || held < 2 * self.settings.threads as u64);
            if !worth_asking || self.delivery_blocked.load(Ordering::Relaxed) {
                self.room.wait(Duration::from_millis(500));
                continue;
            }
            let batch = room.min(self.settings.bulk_size as u64) as usize;
            match self.client.lease_jobs(batch) {
                Ok(jobs) if jobs.is_empty() => {
                    failures = 0;
                    log::debug!("no jobs; next request in {:?}", self.settings.load_duration);
                    self.shutdown.sleep(self.settings.load_duration);
                }
                Ok(jobs) => {
                    failures = 0;
                    let n = jobs.len() as u64;
                    Stats::add(&self.stats.jobs_leased, n);
                    Stats::add(&self.stats.jobs_held, n);
                    log::debug!("leased {n} jobs");
                    let leased_at = Instant::now();
                    // New rules are fetched here, off the scanning threads,
                    // before the jobs that name them are scanned.
                    let mut hashes: Vec<&str> = jobs.iter().map(|j| j.hash.as_str()).collect();
                    hashes.sort_unstable();
                    hashes.dedup();
                    for hash in hashes {
                        self.rules.ensure(Some(hash));
                    }
                    for job in jobs {
                        if pending.send(Work { job, leased_at }).is_err() {
                            // No downloader is left (they only stop at exit).
                            Stats::sub(&self.stats.jobs_held, 1);
                        }
                    }
                }
                Err(err) => {
                    failures += 1;
                    let wait = backoff(failures, err.retry_after())
                        .min(self.settings.load_duration.max(Duration::from_secs(1)));
                    log::warn!("can not lease jobs: {err}; retrying in {wait:?}");
                    self.shutdown.sleep(wait);
                }
            }
        }
        log::debug!("loader stopped");
    }

    fn download(&self, pending: Receiver<Work>, ready: Sender<Loaded>, results: &Sender<JobResult>) {
        for work in pending {
            let n = work.job.distributions.len();
            if n == 0 {
                Stats::add(&self.stats.jobs_failed, 1);
                Stats::add(&self.stats.failed_download, 1);
                self.send_result(results, JobResult::failure(&work.job, "the job lists no distributions"));
                continue;
            }
            let job = Arc::new(JobState {
                work,
                engine: OnceLock::new(),
                reports: Mutex::new(vec![None; n]),
                remaining: AtomicUsize::new(n),
                started: Instant::now(),
            });
            for (index, url) in job.work.job.distributions.iter().enumerate() {
                // Reserve the worst case while downloading, keep what arrived.
                let max = self.settings.max_scan_size;
                self.budget.acquire(max);
                let bytes = catch_unwind(AssertUnwindSafe(|| self.download_one(&job.work.job, url)))
                    .unwrap_or_else(|panic| {
                        Err(format!("{INTERNAL_ERROR} while downloading: {}", panic_message(&*panic)))
                    });
                let reserved = bytes.as_ref().map_or(0, |b| (b.len() as u64).min(max));
                self.budget.release(max - reserved);
                let loaded = Loaded { job: Arc::clone(&job), index, url: url.clone(), bytes, reserved };
                if ready.send(loaded).is_err() {
                    self.budget.release(reserved);
                    return;
                }
            }
        }
    }

    fn download_one(&self, job: &Job, url: &str) -> Result<Vec<u8>, String> {
        let mut attempt = 0;
        loop {
            match self.client.download(url, self.settings.max_scan_size) {
                Ok(bytes) => {
                    Stats::add(&self.stats.bytes_downloaded, bytes.len() as u64);
                    return Ok(bytes);
                }
                Err(err) if err.is_transient() && attempt < self.settings.download_retries => {
                    attempt += 1;
                    let wait = backoff(attempt, err.retry_after()).min(Duration::from_secs(10));
                    log::warn!(
                        "{}=={}: download of {url} failed ({err}), retry {attempt} in {wait:?}",
                        job.name,
                        job.version
                    );
                    std::thread::sleep(wait);
                }
                Err(err) if err.kind() == ErrorKind::TooLarge => {
                    return Err(format!(
                        "download too large: over the {} byte limit (DRAGONFLY_MAX_SCAN_SIZE)",
                        self.settings.max_scan_size
                    ));
                }
                Err(err) => return Err(format!("download failed: {err}")),
            }
        }
    }

    fn scan(&self, pool: &rayon::ThreadPool, ready: Receiver<Loaded>, results: Sender<JobResult>) {
        loop {
            let loaded = match ready.recv_timeout(self.settings.wait_duration) {
                Ok(loaded) => loaded,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let Loaded { job, index, url, bytes, reserved } = loaded;
            let report = self.scan_distribution(pool, &job, &url, bytes);
            self.budget.release(reserved);
            job.reports.lock().unwrap_or_else(|e| e.into_inner())[index] = Some(report);
            if job.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                let result =
                    catch_unwind(AssertUnwindSafe(|| self.finish_job(&job))).unwrap_or_else(|panic| {
                        let reason = format!("{INTERNAL_ERROR} while reporting: {}", panic_message(&*panic));
                        Stats::add(&self.stats.jobs_failed, 1);
                        Stats::add(&self.stats.failed_internal, 1);
                        JobResult::failure(&job.work.job, reason)
                    });
                self.send_result(&results, result);
            }
        }
    }

    fn scan_distribution(
        &self,
        pool: &rayon::ThreadPool,
        job: &JobState,
        url: &str,
        bytes: Result<Vec<u8>, String>,
    ) -> DistributionReport {
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(message) => return DistributionReport::failed(url, message),
        };
        let Some(engine) = job.engine.get_or_init(|| self.rules.current()) else {
            return DistributionReport::failed(url, "no rules loaded");
        };
        let started = Instant::now();
        let scanned = catch_unwind(AssertUnwindSafe(|| pool.install(|| engine.scan_archive(url, &bytes))));
        self.stats.observe_scan(started.elapsed());
        scanned.unwrap_or_else(|panic| {
            let message = panic_message(&*panic);
            log::error!("{}=={}: scan of {url} panicked: {message}", job.work.job.name, job.work.job.version);
            DistributionReport::failed(url, format!("{INTERNAL_ERROR} while scanning: {message}"))
        })
    }

    /// Builds the job's result once its last distribution is scanned.
    fn finish_job(&self, job: &JobState) -> JobResult {
        let distributions = std::mem::take(&mut *job.reports.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            .flatten()
            .collect();
        let commit = match job.engine.get() {
            Some(Some(engine)) => engine.rules().hash().to_owned(),
            _ => String::new(),
        };
        let report = PackageReport {
            name: job.work.job.name.clone(),
            version: job.work.job.version.clone(),
            commit,
            distributions,
        };
        let secs = job.work.leased_at.elapsed().as_secs_f64();
        let mut avg = self.avg_job_secs.lock().unwrap_or_else(|e| e.into_inner());
        *avg = Some(avg.map_or(secs, |a| 0.8 * a + 0.2 * secs));
        drop(avg);
        log::debug!(
            "{}=={}: scanned in {:?}",
            job.work.job.name,
            job.work.job.version,
            job.started.elapsed()
        );
        self.record(&job.work.job, &report)
    }

    fn send_result(&self, results: &Sender<JobResult>, result: JobResult) {
        Stats::add(&self.stats.results_pending, 1);
        // The sender outlives every producer, so this only fails at exit.
        let _ = results.send(result);
    }

    /// Counts a finished scan and turns it into the result to report.
    fn record(&self, job: &Job, report: &PackageReport) -> JobResult {
        for dist in &report.distributions {
            Stats::add(&self.stats.files_scanned, dist.files_scanned);
            Stats::add(&self.stats.files_skipped, dist.files_skipped);
            Stats::add(&self.stats.bytes_scanned, dist.bytes_scanned);
        }
        match report.outcome() {
            Outcome::Success(verdict) => {
                Stats::add(&self.stats.jobs_succeeded, 1);
                log::info!(
                    "{}=={}: score {} rules [{}] (rules {})",
                    job.name,
                    job.version,
                    verdict.score,
                    verdict.rules_matched.join(", "),
                    verdict.commit
                );
                JobResult::success(
                    job,
                    verdict.score,
                    verdict.inspector_url,
                    verdict.rules_matched,
                    verdict.commit,
                )
            }
            Outcome::Failure(failed) => {
                let errors: Vec<&str> =
                    report.distributions.iter().filter_map(|d| d.error.as_deref()).collect();
                let counter = if errors.iter().any(|e| e.starts_with(INTERNAL_ERROR)) {
                    &self.stats.failed_internal
                } else if errors.iter().any(|e| e.starts_with("download")) {
                    &self.stats.failed_download
                } else if !errors.is_empty() {
                    &self.stats.failed_archive
                } else {
                    &self.stats.failed_scan
                };
                Stats::add(counter, 1);
                Stats::add(&self.stats.jobs_failed, 1);
                log::warn!("{}=={}: not scanned: {}", job.name, job.version, failed.reason);
                JobResult::failure(job, failed.reason)
            }
        }
    }

    fn send(&self, results: Receiver<JobResult>) {
        let mut queue: VecDeque<JobResult> = VecDeque::new();
        let mut failures = 0u32;
        loop {
            // Take everything that is ready, waiting only when idle.
            loop {
                let next = if queue.is_empty() {
                    match results.recv_timeout(self.settings.wait_duration) {
                        Ok(r) => Some(r),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                } else {
                    results.try_recv().ok()
                };
                match next {
                    Some(r) => queue.push_back(r),
                    None => break,
                }
            }
            let Some(result) = queue.front() else { continue };
            let label = format!("{}=={}", result.name(), result.version());
            match self.client.submit(result) {
                Ok(()) => {
                    failures = 0;
                    self.delivery_blocked.store(false, Ordering::Relaxed);
                    Stats::add(&self.stats.results_delivered, 1);
                    log::debug!("{label}: result delivered");
                    self.finish_result(&mut queue);
                }
                // A failed login is retried too: results are never dropped
                // for a problem on this side.
                Err(err) if err.is_transient() || err.kind() == ErrorKind::Auth => {
                    failures += 1;
                    Stats::add(&self.stats.results_retried, 1);
                    // One result the server keeps refusing must not hold up
                    // the others: try the next one first. Only when a whole
                    // round failed does the node back off, and it stops
                    // leasing only when that round had several results: one
                    // result failing alone may be one the server refuses, and
                    // the cap on held jobs still bounds what the node takes
                    // on meanwhile.
                    queue.rotate_left(1);
                    if (failures as usize) < queue.len() {
                        log::warn!("{label}: can not deliver result ({err}); trying the next one");
                        continue;
                    }
                    self.delivery_blocked.store(queue.len() > 1, Ordering::Relaxed);
                    let rounds = failures / queue.len().max(1) as u32;
                    let wait = backoff(rounds, err.retry_after()).min(Duration::from_secs(60));
                    log::warn!(
                        "{label}: can not deliver result ({err}); retry in {wait:?}, {} waiting",
                        queue.len()
                    );
                    std::thread::sleep(wait);
                }
                Err(err) => {
                    failures = 0;
                    self.delivery_blocked.store(false, Ordering::Relaxed);
                    Stats::add(&self.stats.results_dropped, 1);
                    match err.kind() {
                        ErrorKind::NotFound | ErrorKind::Conflict => {
                            log::warn!("{label}: server no longer wants this result ({err}); dropped")
                        }
                        _ => log::error!("{label}: result refused ({err}); dropped"),
                    }
                    self.finish_result(&mut queue);
                }
            }
        }
    }

    fn finish_result(&self, queue: &mut VecDeque<JobResult>) {
        queue.pop_front();
        Stats::sub(&self.stats.results_pending, 1);
        Stats::sub(&self.stats.jobs_held, 1);
        self.room.notify();
    }
}

/// The most jobs a node should hold: `bulk_size` (at least one per thread)
/// until job times are known, then what `threads` can finish within half
/// the lease at the average job time, never fewer than one per thread.
fn held_limit(threads: usize, bulk_size: usize, lease: Duration, avg_job_secs: Option<f64>) -> u64 {
    let threads = threads as u64;
    let cap = (bulk_size as u64).max(threads);
    match avg_job_secs {
        None => cap,
        Some(avg) => {
            let fit = (threads as f64 * lease.as_secs_f64() * 0.5 / avg.max(1e-3)) as u64;
            fit.clamp(threads, cap)
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Exponential backoff with jitter: 0.5 s, 1 s, 2 s, ... (×0.5-1), or the
/// server's `Retry-After` when it gave one. Callers cap it.
fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    retry_after.unwrap_or_else(|| {
        dragonfly_api::backoff_delay(attempt, Duration::from_millis(500), Duration::MAX, fastrand::f64())
    })
}

/// A wake-up call between threads: `wait` returns after `notify` or a
/// timeout, whichever comes first.
#[derive(Default)]
struct Signal {
    flag: Mutex<bool>,
    cvar: Condvar,
}

impl Signal {
    fn notify(&self) {
        *self.flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cvar.notify_all();
    }

    fn wait(&self, timeout: Duration) {
        let flag = self.flag.lock().unwrap_or_else(|e| e.into_inner());
        let (mut flag, _) =
            self.cvar.wait_timeout_while(flag, timeout, |set| !*set).unwrap_or_else(|e| e.into_inner());
        *flag = false;
    }
}

/// A counting budget of bytes held in memory by downloads.
struct ByteBudget {
    available: Mutex<u64>,
    freed: Condvar,
}

impl ByteBudget {
    fn new(total: u64) -> Self {
        ByteBudget { available: Mutex::new(total), freed: Condvar::new() }
    }

    fn acquire(&self, n: u64) {
        let mut available = self.available.lock().unwrap_or_else(|e| e.into_inner());
        while *available < n {
            available = self.freed.wait(available).unwrap_or_else(|e| e.into_inner());
        }
        *available -= n;
    }

    fn release(&self, n: u64) {
        *self.available.lock().unwrap_or_else(|e| e.into_inner()) += n;
        self.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        assert_eq!(backoff(3, Some(Duration::from_secs(7))), Duration::from_secs(7));
        let first = backoff(1, None);
        assert!(first >= Duration::from_millis(250) && first <= Duration::from_millis(500), "{first:?}");
        let tenth = backoff(10, None);
        assert!(tenth >= Duration::from_millis(500 * 512 / 2), "{tenth:?}");
    }

    #[test]
    fn held_jobs_fit_in_the_lease() {
        let lease = Duration::from_secs(120);
        assert_eq!(held_limit(2, 20, lease, None), 20);
        assert_eq!(held_limit(4, 2, lease, None), 4, "at least one job per thread");
        assert_eq!(held_limit(2, 20, lease, Some(0.5)), 20, "fast jobs: a full bulk");
        assert_eq!(held_limit(2, 20, lease, Some(20.0)), 6, "2 threads x 60 s / 20 s");
        assert_eq!(held_limit(2, 20, lease, Some(300.0)), 2, "slow jobs: one per thread");
    }

    #[test]
    fn byte_budget_blocks_until_released() {
        let budget = Arc::new(ByteBudget::new(10));
        budget.acquire(8);
        let other = Arc::clone(&budget);
        let waiter = std::thread::spawn(move || {
            other.acquire(5);
            true
        });
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished());
        budget.release(8);
        assert!(waiter.join().unwrap());
    }
}
