//! How a node runs: its settings, their defaults, and the errors of a bad
//! combination.

use std::path::PathBuf;
use std::time::Duration;

use dragonfly_engine::Limits;

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
    /// The most memory the node may use, bytes (none: no ceiling). The
    /// distributions held and downloading take at most half of it; a
    /// download that cannot fit is a failure.
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
}

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
        }
    }
}

impl NodeSettings {
    /// Bytes the node's held and in-flight downloads may take: three per
    /// thread plus one at the largest size, within half the memory limit.
    pub(crate) fn download_budget(&self) -> u64 {
        let by_size = self.max_scan_size.saturating_mul(3 * self.threads as u64 + 1);
        self.memory_limit.map_or(by_size, |limit| by_size.min(limit / 2))
    }

    /// The largest download the node takes: `max_scan_size`, unless the
    /// whole download budget is smaller.
    pub(crate) fn download_cap(&self) -> u64 {
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
    fn downloads_fit_in_half_the_memory_limit() {
        let settings = NodeSettings { threads: 1, max_scan_size: 128_000_000, ..NodeSettings::default() };
        assert_eq!(settings.download_budget(), 4 * 128_000_000, "no limit: three per thread plus one");
        let limited = NodeSettings { memory_limit: Some(448 << 20), ..settings.clone() };
        assert_eq!(limited.download_budget(), 224 << 20);
        assert_eq!(limited.download_cap(), 128_000_000);
        let tight = NodeSettings { memory_limit: Some(100 << 20), ..settings };
        assert_eq!(tight.download_cap(), 50 << 20, "a download never waits for room it cannot get");
    }
}
