//! The memory section: the node's peak RSS on the corpus at 1 and N
//! threads, and on the worst-case queue under a memory limit.

use serde::Serialize;

use crate::Archives;
use crate::measure::NodeRun;

/// What the worst-case queue holds.
#[derive(Debug, Clone, Serialize)]
pub struct QueueInfo {
    /// Packages queued.
    pub packages: usize,
    /// Bytes of archives.
    pub archive_bytes: u64,
    /// The largest archive, bytes.
    pub largest_archive_bytes: u64,
}

impl QueueInfo {
    /// Describes `queue`.
    pub fn of(queue: &[Archives]) -> QueueInfo {
        let sizes = || queue.iter().flat_map(|(_, _, files)| files.iter().map(|(_, b)| b.len() as u64));
        QueueInfo {
            packages: queue.len(),
            archive_bytes: sizes().sum(),
            largest_archive_bytes: sizes().max().unwrap_or(0),
        }
    }
}

/// The worst-case run.
#[derive(Debug, Clone, Serialize)]
pub struct WorstRun {
    /// The queue.
    pub queue: QueueInfo,
    /// `DRAGONFLY_MEMORY_LIMIT`, bytes.
    pub memory_limit_bytes: u64,
    /// `DRAGONFLY_THREADS`.
    pub threads: usize,
    /// Peak resident memory of the node, bytes.
    pub peak_rss_bytes: u64,
    /// Peak RSS over the limit (must be below 1).
    pub rss_vs_limit: f64,
    /// Results the server recorded.
    pub results: usize,
    /// Results answered with 200.
    pub results_ok: usize,
    /// Failure results, as `name version: reason` (the bomb's is expected).
    pub failures: Vec<String>,
    /// From spawn to the last result, seconds.
    pub secs_total: f64,
}

/// The memory section of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// Peak RSS of the node on the corpus, 1 thread, bytes.
    pub corpus_1_thread_peak_rss_bytes: u64,
    /// Its time from first lease to last result, seconds.
    pub corpus_1_thread_secs: f64,
    /// Threads of the N-thread run.
    pub threads: usize,
    /// Peak RSS of the node on the corpus, N threads, bytes.
    pub corpus_n_threads_peak_rss_bytes: u64,
    /// Its time from first lease to last result, seconds.
    pub corpus_n_threads_secs: f64,
    /// The worst-case queue under the memory limit.
    pub worst: WorstRun,
}

impl Memory {
    /// The section from the node runs.
    pub fn new(
        one: &NodeRun,
        n: &NodeRun,
        threads: usize,
        queue: QueueInfo,
        worst: NodeRun,
        memory_limit_bytes: u64,
        worst_threads: usize,
    ) -> Memory {
        Memory {
            corpus_1_thread_peak_rss_bytes: one.peak_rss_bytes,
            corpus_1_thread_secs: one.secs_working,
            threads,
            corpus_n_threads_peak_rss_bytes: n.peak_rss_bytes,
            corpus_n_threads_secs: n.secs_working,
            worst: WorstRun {
                queue,
                memory_limit_bytes,
                threads: worst_threads,
                peak_rss_bytes: worst.peak_rss_bytes,
                rss_vs_limit: worst.peak_rss_bytes as f64 / memory_limit_bytes.max(1) as f64,
                results: worst.results,
                results_ok: worst.results_ok,
                failures: worst.failures,
                secs_total: worst.secs_total,
            },
        }
    }

    /// The section as lines of the printed table.
    pub fn lines(&self) -> String {
        let mib = |bytes: u64| bytes as f64 / f64::from(1u32 << 20);
        let w = &self.worst;
        let mut out = format!(
            "\nmemory: node peak RSS on the corpus {:.0} MiB at 1 thread ({:.3} s), {:.0} MiB at {} threads ({:.3} s)\n",
            mib(self.corpus_1_thread_peak_rss_bytes),
            self.corpus_1_thread_secs,
            mib(self.corpus_n_threads_peak_rss_bytes),
            self.threads,
            self.corpus_n_threads_secs,
        );
        out.push_str(&format!(
            "memory: worst-case queue ({} packages, {:.0} MB of archives, largest {:.0} MB), {} threads, \
             limit {:.0} MiB: peak RSS {:.0} MiB ({:.2} of the limit), {}/{} results in {:.1} s\n",
            w.queue.packages,
            w.queue.archive_bytes as f64 / 1e6,
            w.queue.largest_archive_bytes as f64 / 1e6,
            w.threads,
            mib(w.memory_limit_bytes),
            mib(w.peak_rss_bytes),
            w.rss_vs_limit,
            w.results_ok,
            w.queue.packages,
            w.secs_total,
        ));
        for failure in &w.failures {
            out.push_str(&format!("memory: worst-case failure result: {failure}\n"));
        }
        out
    }
}
