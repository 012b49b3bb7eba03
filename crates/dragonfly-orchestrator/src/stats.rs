//! Counters the node keeps while it runs, for the periodic summary and for
//! metrics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

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
    /// Sum of per-job scan time, microseconds.
    pub scan_micros: AtomicU64,
    /// Rule sets compiled (or loaded from the cache).
    pub rule_loads: AtomicU64,
    /// Rule set fetches or compilations that failed.
    pub rule_failures: AtomicU64,
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

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub(crate) fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Relaxed);
    }
}
