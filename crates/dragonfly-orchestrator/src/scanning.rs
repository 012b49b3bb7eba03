//! The scanning stage: hands each downloaded distribution to the rayon
//! pool (at most one per thread at a time; large wheels are scanned
//! file-parallel on the same pool, sdists file by file as they are read)
//! and finishes a job when its last distribution is scanned.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use dragonfly_api::JobResult;
use dragonfly_engine::DistributionReport;

use crate::capacity::Capacity;
use crate::failure::{FailureReason, Problem, Stage};
use crate::job::{Downloaded, JobState, hand_over, panic_message};
use crate::node::Handles;
use crate::rules::Rules;
use crate::sync::Budget;

pub(crate) struct Scanning<'a> {
    pub(crate) node: Handles<'a>,
    pub(crate) pool: &'a rayon::ThreadPool,
    pub(crate) rules: &'a Rules<'a>,
    pub(crate) capacity: &'a Capacity<'a>,
    /// Where downloaded bytes are given back once scanned.
    pub(crate) budget: &'a Budget,
    pub(crate) ready: Receiver<Downloaded>,
    pub(crate) results: Sender<JobResult>,
}

impl Scanning<'_> {
    pub(crate) fn run(self) {
        // One distribution per thread at a time, so that downloads wait in
        // their channel (and budget) rather than in the pool's queue.
        let slots = Budget::new(self.node.settings.threads as u64);
        let (this, slots) = (&self, &slots);
        self.pool.in_place_scope(|scope| {
            for downloaded in &this.ready {
                if this.node.shutdown.is_past(this.node.settings.grace_period) {
                    // Abandoned: the job stays counted as held.
                    this.budget.release(downloaded.reserved);
                    continue;
                }
                slots.acquire(1);
                scope.spawn(move |_| {
                    // Given back even if the task panics.
                    let _slot = Slot(slots);
                    this.scan(downloaded);
                });
            }
        });
    }

    fn scan(&self, downloaded: Downloaded) {
        let Downloaded { job, index, url, bytes, reserved } = downloaded;
        let outcome = match bytes {
            Err(problem) => Err(problem),
            Ok(bytes) => self.scan_distribution(&job, url, &bytes),
        };
        self.budget.release(reserved);
        if job.record(index, outcome) {
            self.finish(&job);
        }
    }

    fn scan_distribution(
        &self,
        job: &JobState,
        url: String,
        bytes: &[u8],
    ) -> Result<DistributionReport, Problem> {
        let Some(engine) = job.engine(self.rules) else {
            return Err(Problem::NoRules { url });
        };
        let started = Instant::now();
        match catch_unwind(AssertUnwindSafe(|| engine.scan_archive(&url, bytes))) {
            Ok(report) => {
                self.node.stats.distribution_scanned(&report, started.elapsed());
                for anomaly in &report.anomalies {
                    log::info!(
                        package = job.job.name.as_str(), version = job.job.version.as_str();
                        "archive anomaly in {url}: {anomaly}"
                    );
                }
                Ok(report)
            }
            Err(panic) => {
                let message = panic_message(&*panic);
                log::error!(
                    package = job.job.name.as_str(), version = job.job.version.as_str();
                    "scan of {url} panicked: {message}"
                );
                Err(Problem::Internal { url, stage: Stage::Scan, message })
            }
        }
    }

    /// Builds and hands over the job's result once its last distribution
    /// is scanned.
    fn finish(&self, job: &JobState) {
        let outcome = catch_unwind(AssertUnwindSafe(|| job.outcome()))
            .unwrap_or_else(|panic| Err(FailureReason::Internal { message: panic_message(&*panic) }));
        let leased_at = self.capacity.leased_at(&job.job.name, &job.job.version).unwrap_or(job.leased_at);
        self.capacity.job_measured(leased_at.elapsed(), job.started.elapsed());
        log::debug!(
            package = job.job.name.as_str(), version = job.job.version.as_str();
            "scanned in {:?}", job.started.elapsed()
        );
        hand_over(self.node.stats, &self.results, &job.job, outcome, job.reuse_mode());
    }
}

/// One scanning slot, given back when dropped.
struct Slot<'a>(&'a Budget);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.release(1);
    }
}
