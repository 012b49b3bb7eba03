//! Counters the node keeps while it runs, for the periodic summary and for
//! metrics.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Upper bounds (seconds) of the scan-time histogram buckets.
pub const SCAN_SECONDS_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Live counters, shared by every thread of a node.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    /// Jobs leased from the server.
    pub jobs_leased: AtomicU64,
    /// Jobs scanned completely (success results produced).
    pub jobs_succeeded: AtomicU64,
    /// Jobs that produced a failure result.
    pub jobs_failed: AtomicU64,
    /// Jobs whose failure came from a download error.
    pub failed_download: AtomicU64,
    /// Jobs whose failure came from the archive (format, corruption, limits).
    pub failed_archive: AtomicU64,
    /// Jobs whose failure came from a scan timeout or scan error.
    pub failed_scan: AtomicU64,
    /// Jobs whose scan panicked.
    pub failed_internal: AtomicU64,
    /// Results delivered to the server.
    pub results_delivered: AtomicU64,
    /// Results the server refused for good (404/409/invalid).
    pub results_dropped: AtomicU64,
    /// Result submissions retried after a transient error.
    pub results_retried: AtomicU64,
    /// Results waiting to be delivered.
    pub results_pending: AtomicU64,
    /// Jobs held by the node: leased and not yet reported.
    pub jobs_held: AtomicU64,
    /// Files scanned.
    pub files_scanned: AtomicU64,
    /// Files skipped because no rule applies to them.
    pub files_skipped: AtomicU64,
    /// Bytes of file content scanned.
    pub bytes_scanned: AtomicU64,
    /// Bytes of distributions downloaded.
    pub bytes_downloaded: AtomicU64,
    /// Sum of per-distribution scan time, microseconds.
    pub scan_micros: AtomicU64,
    /// Rule sets compiled (or loaded from the cache).
    pub rule_loads: AtomicU64,
    /// Rule set fetches or compilations that failed.
    pub rule_failures: AtomicU64,
    /// Time spent compiling (or loading) the current rules, microseconds.
    pub rule_compile_micros: AtomicU64,
    /// Hash of the rules in use, once loaded.
    pub rule_hash: Mutex<Option<String>>,
    /// Distributions scanned, per scan-time bucket ([`SCAN_SECONDS_BUCKETS`],
    /// then one more for larger values); not cumulative.
    pub scan_seconds_buckets: [AtomicU64; SCAN_SECONDS_BUCKETS.len() + 1],
}

impl Default for Stats {
    fn default() -> Self {
        let zero = || AtomicU64::new(0);
        Stats {
            started: Instant::now(),
            jobs_leased: zero(),
            jobs_succeeded: zero(),
            jobs_failed: zero(),
            failed_download: zero(),
            failed_archive: zero(),
            failed_scan: zero(),
            failed_internal: zero(),
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
            rule_loads: zero(),
            rule_failures: zero(),
            rule_compile_micros: zero(),
            rule_hash: Mutex::new(None),
            scan_seconds_buckets: std::array::from_fn(|_| zero()),
        }
    }
}

impl Stats {
    /// One line for the log: jobs, files, bytes, throughput, queue depth.
    pub fn summary(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let mb = |n: u64| n as f64 / 1e6;
        let done = self.jobs_succeeded.load(Relaxed);
        let failed = self.jobs_failed.load(Relaxed);
        format!(
            "jobs: {done} ok, {failed} failed, {} held, {} results pending; files: {} scanned, {} skipped; \
             {:.1} MB downloaded, {:.1} MB scanned; {:.2} jobs/s, {:.1} MB/s scanned",
            self.jobs_held.load(Relaxed),
            self.results_pending.load(Relaxed),
            self.files_scanned.load(Relaxed),
            self.files_skipped.load(Relaxed),
            mb(self.bytes_downloaded.load(Relaxed)),
            mb(self.bytes_scanned.load(Relaxed)),
            (done + failed) as f64 / secs,
            mb(self.bytes_scanned.load(Relaxed)) / secs,
        )
    }

    /// Records one distribution's scan time.
    pub fn observe_scan(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let bucket =
            SCAN_SECONDS_BUCKETS.iter().position(|&b| secs <= b).unwrap_or(SCAN_SECONDS_BUCKETS.len());
        self.scan_seconds_buckets[bucket].fetch_add(1, Relaxed);
        self.scan_micros.fetch_add(elapsed.as_micros() as u64, Relaxed);
    }

    /// The hash of the rules in use.
    pub fn rule_hash(&self) -> Option<String> {
        self.rule_hash.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Seconds since the node started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub(crate) fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_times_land_in_their_buckets() {
        let stats = Stats::default();
        stats.observe_scan(Duration::from_millis(5));
        stats.observe_scan(Duration::from_millis(50));
        stats.observe_scan(Duration::from_secs(60));
        let counts: Vec<u64> = stats.scan_seconds_buckets.iter().map(|b| b.load(Relaxed)).collect();
        assert_eq!(counts, [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(stats.scan_micros.load(Relaxed), 60_055_000);
    }
}
