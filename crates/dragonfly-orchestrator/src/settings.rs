//! How a node runs: its settings, their defaults, and the errors of a bad
//! combination.

use std::path::PathBuf;
use std::time::Duration;

use dragonfly_engine::{DEFAULT_BUDGET_BYTES, Limits, ReuseMode};

/// Jobs asked for per lease request.
pub const DEFAULT_BULK_SIZE: usize = 20;
/// Wait between lease requests while the server has no jobs.
pub const DEFAULT_LOAD_DURATION: Duration = Duration::from_secs(60);
/// The server's lease (job timeout).
pub const DEFAULT_LEASE_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest distribution download, bytes.
pub const DEFAULT_MAX_SCAN_SIZE: u64 = 128_000_000;
/// Time allowed after shutdown starts to finish held jobs.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(90);
/// Interval of the one-line summary in the log.
pub const DEFAULT_SUMMARY_INTERVAL: Duration = Duration::from_secs(60);
/// Retries of a failed download (transient errors only).
pub const DEFAULT_DOWNLOAD_RETRIES: u32 = 2;

/// Memory the process itself takes besides downloads and inflated files:
/// code, compiled rules, one yara-x scanner per thread and group, buffers.
pub const MEMORY_OVERHEAD: u64 = 64 << 20;

/// The default number of scanning threads: the available parallelism, or 1.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How a node runs; the binary fills it from its configuration.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// Scanning threads (the rayon pool's size).
    pub threads: usize,
    /// Jobs asked for per lease request.
    pub bulk_size: usize,
    /// Wait between lease requests while the server has no jobs.
    pub load_duration: Duration,
    /// The server's lease (job timeout): the node never holds more work
    /// than it expects to finish well within it.
    pub lease_timeout: Duration,
    /// Largest distribution download, bytes.
    pub max_scan_size: u64,
    /// The most memory the node may use, bytes (none: no ceiling). Each
    /// scanning thread may hold one inflated file of up to
    /// `limits.max_file_bytes`, the process and its rules take about
    /// [`MEMORY_OVERHEAD`]; the distributions held and downloading get what
    /// is left, between an eighth and a quarter of the limit. A download
    /// that cannot fit is a failure naming the sizes.
    pub memory_limit: Option<u64>,
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
    /// Whether scan results are reused by content.
    pub scan_reuse: ReuseMode,
    /// Memory for results kept by content, bytes (per rule set; counted
    /// in the memory limit's split when reuse is on); also the size of the
    /// store under `cache_dir`.
    pub cache_size: u64,
    /// Directory of the store that keeps results across restarts (none:
    /// in memory only).
    pub cache_dir: Option<PathBuf>,
    /// Whether results are shared with the fleet through the server's
    /// scan cache when it has one (and reuse is not off).
    pub scan_cache: bool,
    /// Scan-cache requests a second this node makes at most (the server
    /// takes 10 from the whole fleet); beyond, files are scanned.
    pub scan_cache_rate: u32,
}

/// Default of [`NodeSettings::scan_cache_rate`]: half the server's limit.
pub const DEFAULT_SCAN_CACHE_RATE: u32 = 5;

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            threads: default_threads(),
            bulk_size: DEFAULT_BULK_SIZE,
            load_duration: DEFAULT_LOAD_DURATION,
            lease_timeout: DEFAULT_LEASE_TIMEOUT,
            max_scan_size: DEFAULT_MAX_SCAN_SIZE,
            memory_limit: None,
            limits: Limits::default(),
            scan_timeout: dragonfly_engine::DEFAULT_TIMEOUT,
            grace_period: DEFAULT_GRACE_PERIOD,
            summary_interval: DEFAULT_SUMMARY_INTERVAL,
            rules_cache_dir: None,
            download_retries: DEFAULT_DOWNLOAD_RETRIES,
            scan_reuse: ReuseMode::default(),
            cache_size: DEFAULT_BUDGET_BYTES as u64,
            cache_dir: None,
            scan_cache: true,
            scan_cache_rate: DEFAULT_SCAN_CACHE_RATE,
        }
    }
}

impl NodeSettings {
    /// Bytes the node's held and in-flight downloads may take: three per
    /// thread plus one at the largest size, and under a memory limit what
    /// is left of it once every thread holds its largest inflated file and
    /// the process its overhead and result cache, between an eighth and a quarter of the
    /// limit: more held downloads would not make one thread faster, only
    /// wait longer.
    pub fn download_budget(&self) -> u64 {
        let by_size = self.max_scan_size.saturating_mul(3 * self.threads as u64 + 1);
        let Some(limit) = self.memory_limit else { return by_size };
        let inflated = self.limits.max_file_bytes.saturating_mul(self.threads as u64);
        let cache = match self.scan_reuse {
            ReuseMode::Off => 0,
            // Files held back for a scan-cache lookup, per thread.
            _ if self.scan_cache => {
                self.cache_size
                    + (dragonfly_engine::SHARED_BATCH_BYTES as u64).saturating_mul(self.threads as u64)
            }
            _ => self.cache_size,
        };
        let left = limit.saturating_sub(inflated).saturating_sub(MEMORY_OVERHEAD).saturating_sub(cache);
        by_size.min(left.clamp(limit / 8, limit / 4))
    }

    /// The largest download the node takes: `max_scan_size`, unless the
    /// whole download budget is smaller.
    pub fn download_cap(&self) -> u64 {
        self.max_scan_size.min(self.download_budget()).max(1)
    }

    /// Checks the values a node cannot run with.
    pub(crate) fn validate(&self) -> Result<(), NodeError> {
        let counts = [
            ("threads", self.threads as u64),
            ("bulk_size", self.bulk_size as u64),
            ("max_scan_size", self.max_scan_size),
        ];
        let durations = [
            ("load_duration", self.load_duration),
            ("lease_timeout", self.lease_timeout),
            ("summary_interval", self.summary_interval),
        ];
        let zero = counts.iter().find(|(_, n)| *n == 0).map(|(name, _)| *name);
        let zero = zero.or_else(|| durations.iter().find(|(_, d)| d.is_zero()).map(|(name, _)| *name));
        match zero {
            Some(setting) => Err(NodeError::Zero { setting }),
            None => Ok(()),
        }
    }
}

/// Occurs when a node cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Occurs when a count or duration that must be positive is zero.
    #[error("invalid node setting: `{setting}` must be more than 0")]
    Zero {
        /// The field of [`NodeSettings`].
        setting: &'static str,
    },
    /// Occurs when a thread could not be started.
    #[error("can not start a thread: {0}")]
    Thread(#[from] std::io::Error),
    /// Occurs when the scanning pool could not be built.
    #[error("can not build the scanning pool: {0}")]
    Pool(#[from] rayon::ThreadPoolBuildError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_get_what_inflated_files_and_the_process_leave() {
        let mib = |n: u64| n << 20;
        let settings = NodeSettings { threads: 1, max_scan_size: 128_000_000, ..NodeSettings::default() };
        assert_eq!(settings.download_budget(), 4 * 128_000_000, "no limit: three per thread plus one");
        // Production: 512 MiB, one thread: 512 - 128 - 64 = 320, at most a
        // quarter; a distribution of the largest size still fits.
        let production = NodeSettings { memory_limit: Some(mib(512)), ..settings.clone() };
        assert_eq!(production.download_budget(), mib(128));
        assert_eq!(production.download_cap(), 128_000_000);
        // Two threads: 512 - 2 x 128 - 64 = 192, at most a quarter.
        let two = NodeSettings { threads: 2, ..production.clone() };
        assert_eq!(two.download_budget(), mib(128));
        // A large machine: 8 GiB, 4 threads: 8192 - 512 - 64, a quarter.
        let large = NodeSettings { threads: 4, memory_limit: Some(mib(8192)), ..settings.clone() };
        assert_eq!(large.download_budget(), 13 * 128_000_000, "three per thread plus one");
        let bound = two.limits.max_file_bytes * 2 + MEMORY_OVERHEAD + two.download_budget();
        assert!(bound <= mib(512), "files, process and downloads fit the limit");
        // Eight threads at 512 MiB leave nothing: an eighth still downloads.
        let eight = NodeSettings { threads: 8, ..production };
        assert_eq!(eight.download_budget(), mib(64));
        let tight = NodeSettings { memory_limit: Some(mib(100)), ..settings };
        assert_eq!(tight.download_cap(), mib(100) / 8, "a download never waits for room it cannot get");
    }
}
