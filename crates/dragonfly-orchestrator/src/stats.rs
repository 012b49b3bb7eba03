//! Counters the node keeps while it runs: each stage records events, the
//! summary line and the metrics read a [`StatsSnapshot`].

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use dragonfly_engine::{AnomalyKind, DistributionReport, ReuseCounts};

use crate::failure::FailureKind;

/// Upper bounds (seconds) of the scan-time histogram buckets.
pub const SCAN_SECONDS_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Live counters, shared by every thread of a node. Stages record events
/// with its methods; readers take a [`StatsSnapshot`].
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    jobs_leased: AtomicU64,
    jobs_succeeded: AtomicU64,
    /// Indexed like [`FailureKind::ALL`].
    jobs_failed: [AtomicU64; FailureKind::ALL.len()],
    results_delivered: AtomicU64,
    results_dropped: AtomicU64,
    results_retried: AtomicU64,
    results_pending: AtomicU64,
    jobs_held: AtomicU64,
    files_scanned: AtomicU64,
    files_skipped: AtomicU64,
    bytes_scanned: AtomicU64,
    bytes_downloaded: AtomicU64,
    scan_micros: AtomicU64,
    /// Per bucket of [`SCAN_SECONDS_BUCKETS`], then one more for larger
    /// values; not cumulative.
    scan_buckets: [AtomicU64; SCAN_SECONDS_BUCKETS.len() + 1],
    rule_loads: AtomicU64,
    rule_failures: AtomicU64,
    rule_compile_micros: AtomicU64,
    rule_hash: Mutex<Option<String>>,
    /// Indexed like [`AnomalyKind::ALL`].
    anomalies: [AtomicU64; AnomalyKind::ALL.len()],
    reuse: Mutex<ReuseCounts>,
}

/// The counters at one moment, as plain numbers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsSnapshot {
    /// Time since the node started.
    pub uptime: Duration,
    /// Jobs leased from the server.
    pub jobs_leased: u64,
    /// Jobs scanned completely (success results produced).
    pub jobs_succeeded: u64,
    /// Jobs that produced a failure result, by cause (every kind, in
    /// [`FailureKind::ALL`] order).
    pub jobs_failed: Vec<(FailureKind, u64)>,
    /// Results the server accepted.
    pub results_delivered: u64,
    /// Results the server refused for good (404/409/invalid).
    pub results_dropped: u64,
    /// Result submissions retried after a transient error.
    pub results_retried: u64,
    /// Results waiting to be delivered.
    pub results_pending: u64,
    /// Jobs held: leased and not yet reported.
    pub jobs_held: u64,
    /// Archive constructs readers disagree on, by kind (every kind, in
    /// [`AnomalyKind::ALL`] order).
    pub anomalies: Vec<(AnomalyKind, u64)>,
    /// What result reuse did.
    pub reuse: ReuseCounts,
    /// Files scanned.
    pub files_scanned: u64,
    /// Files skipped because no rule applies to them.
    pub files_skipped: u64,
    /// Bytes of file content scanned.
    pub bytes_scanned: u64,
    /// Bytes of distributions downloaded.
    pub bytes_downloaded: u64,
    /// Sum of per-distribution scan times.
    pub scan_time: Duration,
    /// Distributions scanned per bucket of [`SCAN_SECONDS_BUCKETS`], then
    /// one more for larger values; not cumulative.
    pub scan_buckets: Vec<u64>,
    /// Rule sets compiled or loaded from the cache.
    pub rule_loads: u64,
    /// Rule set fetches or compilations that failed.
    pub rule_failures: u64,
    /// Time spent compiling (or loading) the current rules.
    pub rule_compile_time: Duration,
    /// Hash of the rules in use, once loaded.
    pub rule_hash: Option<String>,
}

impl StatsSnapshot {
    /// Jobs reported as failures, of every cause.
    pub fn jobs_failed_total(&self) -> u64 {
        self.jobs_failed.iter().map(|(_, n)| n).sum()
    }

    /// Jobs that failed for `kind`.
    pub fn failed(&self, kind: FailureKind) -> u64 {
        self.jobs_failed.iter().find(|(k, _)| *k == kind).map_or(0, |(_, n)| *n)
    }

    /// One line for the log: jobs, files, bytes, throughput, queue depth.
    pub fn summary(&self) -> String {
        let secs = self.uptime.as_secs_f64().max(1e-3);
        let mb = |n: u64| n as f64 / 1e6;
        let (done, failed) = (self.jobs_succeeded, self.jobs_failed_total());
        format!(
            "jobs: {done} ok, {failed} failed, {} held, {} results pending; files: {} scanned, {} skipped; \
             {:.1} MB downloaded, {:.1} MB scanned; {:.2} jobs/s, {:.1} MB/s scanned",
            self.jobs_held,
            self.results_pending,
            self.files_scanned,
            self.files_skipped,
            mb(self.bytes_downloaded),
            mb(self.bytes_scanned),
            (done + failed) as f64 / secs,
            mb(self.bytes_scanned) / secs,
        )
    }
}

impl Default for Stats {
    fn default() -> Self {
        let zero = || AtomicU64::new(0);
        Stats {
            started: Instant::now(),
            jobs_leased: zero(),
            jobs_succeeded: zero(),
            jobs_failed: std::array::from_fn(|_| zero()),
            results_delivered: zero(),
            results_dropped: zero(),
            results_retried: zero(),
            results_pending: zero(),
            jobs_held: zero(),
            files_scanned: zero(),
            files_skipped: zero(),
            bytes_scanned: zero(),
            bytes_downloaded: zero(),
            scan_micros: zero(),
            scan_buckets: std::array::from_fn(|_| zero()),
            rule_loads: zero(),
            rule_failures: zero(),
            rule_compile_micros: zero(),
            rule_hash: Mutex::new(None),
            anomalies: std::array::from_fn(|_| zero()),
            reuse: Mutex::default(),
        }
    }
}

impl Stats {
    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |counter: &AtomicU64| counter.load(Relaxed);
        StatsSnapshot {
            uptime: self.started.elapsed(),
            jobs_leased: get(&self.jobs_leased),
            jobs_succeeded: get(&self.jobs_succeeded),
            jobs_failed: FailureKind::ALL.iter().zip(&self.jobs_failed).map(|(k, n)| (*k, get(n))).collect(),
            results_delivered: get(&self.results_delivered),
            results_dropped: get(&self.results_dropped),
            results_retried: get(&self.results_retried),
            results_pending: get(&self.results_pending),
            jobs_held: get(&self.jobs_held),
            anomalies: AnomalyKind::ALL.iter().zip(&self.anomalies).map(|(k, n)| (*k, get(n))).collect(),
            reuse: *self.reuse.lock().unwrap_or_else(|e| e.into_inner()),
            files_scanned: get(&self.files_scanned),
            files_skipped: get(&self.files_skipped),
            bytes_scanned: get(&self.bytes_scanned),
            bytes_downloaded: get(&self.bytes_downloaded),
            scan_time: Duration::from_micros(get(&self.scan_micros)),
            scan_buckets: self.scan_buckets.iter().map(get).collect(),
            rule_loads: get(&self.rule_loads),
            rule_failures: get(&self.rule_failures),
            rule_compile_time: Duration::from_micros(get(&self.rule_compile_micros)),
            rule_hash: self.rule_hash(),
        }
    }

    /// The hash of the rules in use.
    pub fn rule_hash(&self) -> Option<String> {
        self.rule_hash.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Jobs leased from the server (a job leased again counts again).
    pub fn jobs_leased(&self, n: u64) {
        self.jobs_leased.fetch_add(n, Relaxed);
    }

    /// The number of jobs held now.
    pub fn set_jobs_held(&self, n: u64) {
        self.jobs_held.store(n, Relaxed);
    }

    /// A job was scanned completely.
    pub fn job_succeeded(&self) {
        self.jobs_succeeded.fetch_add(1, Relaxed);
    }

    /// A job produced a failure result.
    pub fn job_failed(&self, kind: FailureKind) {
        let index = FailureKind::ALL.iter().position(|&k| k == kind).unwrap_or_default();
        self.jobs_failed[index].fetch_add(1, Relaxed);
    }

    /// A result is waiting for the sender.
    pub fn result_queued(&self) {
        self.results_pending.fetch_add(1, Relaxed);
    }

    /// The server accepted a result.
    pub fn result_delivered(&self) {
        self.results_delivered.fetch_add(1, Relaxed);
        self.results_pending.fetch_sub(1, Relaxed);
    }

    /// The server refused a result for good.
    pub fn result_dropped(&self) {
        self.results_dropped.fetch_add(1, Relaxed);
        self.results_pending.fetch_sub(1, Relaxed);
    }

    /// A submission failed and will be retried.
    pub fn result_retried(&self) {
        self.results_retried.fetch_add(1, Relaxed);
    }

    /// Bytes of a distribution downloaded.
    pub fn downloaded(&self, bytes: u64) {
        self.bytes_downloaded.fetch_add(bytes, Relaxed);
    }

    /// A distribution was scanned in `elapsed`.
    pub fn distribution_scanned(&self, report: &DistributionReport, elapsed: Duration) {
        self.files_scanned.fetch_add(report.files_scanned, Relaxed);
        self.files_skipped.fetch_add(report.files_skipped, Relaxed);
        self.bytes_scanned.fetch_add(report.bytes_scanned, Relaxed);
        for anomaly in &report.anomalies {
            if let Some(index) = AnomalyKind::ALL.iter().position(|&k| k == anomaly.kind) {
                self.anomalies[index].fetch_add(1, Relaxed);
            }
        }
        self.reuse.lock().unwrap_or_else(|e| e.into_inner()).add(&report.reuse);
        let secs = elapsed.as_secs_f64();
        let bucket =
            SCAN_SECONDS_BUCKETS.iter().position(|&b| secs <= b).unwrap_or(SCAN_SECONDS_BUCKETS.len());
        self.scan_buckets[bucket].fetch_add(1, Relaxed);
        self.scan_micros.fetch_add(elapsed.as_micros() as u64, Relaxed);
    }

    /// Rules with `hash` are in use, compiled or loaded in `elapsed`.
    pub fn rules_loaded(&self, hash: &str, elapsed: Duration) {
        self.rule_loads.fetch_add(1, Relaxed);
        self.rule_compile_micros.store(elapsed.as_micros() as u64, Relaxed);
        *self.rule_hash.lock().unwrap_or_else(|e| e.into_inner()) = Some(hash.to_owned());
    }

    /// Fetching or compiling rules failed.
    pub fn rules_failed(&self) {
        self.rule_failures.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_show_in_the_snapshot() {
        let stats = Stats::default();
        let report = DistributionReport {
            files_scanned: 3,
            files_skipped: 2,
            bytes_scanned: 40,
            ..Default::default()
        };
        stats.distribution_scanned(&report, Duration::from_millis(5));
        stats.distribution_scanned(&report, Duration::from_millis(50));
        stats.distribution_scanned(&report, Duration::from_secs(60));
        stats.jobs_leased(3);
        stats.set_jobs_held(1);
        stats.job_failed(FailureKind::Archive);
        stats.job_failed(FailureKind::Archive);
        stats.job_succeeded();
        for _ in 0..3 {
            stats.result_queued();
        }
        stats.result_delivered();
        stats.result_dropped();
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.scan_buckets, [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(snapshot.scan_time, Duration::from_micros(60_055_000));
        assert_eq!((snapshot.files_scanned, snapshot.files_skipped, snapshot.bytes_scanned), (9, 6, 120));
        assert_eq!((snapshot.failed(FailureKind::Archive), snapshot.jobs_failed_total()), (2, 2));
        assert_eq!(snapshot.jobs_failed.len(), FailureKind::ALL.len());
        assert_eq!((snapshot.jobs_held, snapshot.results_pending), (1, 1));
        assert_eq!((snapshot.results_delivered, snapshot.results_dropped), (1, 1));
        assert!(snapshot.summary().starts_with("jobs: 1 ok, 2 failed, 1 held, 1 results pending"));
    }
}
