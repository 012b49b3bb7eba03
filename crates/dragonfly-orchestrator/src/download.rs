//! Downloaders: fetch each leased job's distributions into memory, within
//! the download budget, so that downloads overlap scanning.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use dragonfly_api::{Backoff, ErrorKind, Job, JobResult};

use crate::capacity::Capacity;
use crate::failure::{DownloadError, FailureReason, Problem, Stage};
use crate::job::{Downloaded, JobState, Leased, hand_over, panic_message};
use crate::node::Handles;
use crate::sync::Budget;

/// Waits between retries of a failed download.
const RETRY: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));

pub(crate) struct Downloader<'a> {
    pub(crate) node: Handles<'a>,
    /// Bytes of downloads held or in flight.
    pub(crate) budget: &'a Budget,
    pub(crate) capacity: &'a Capacity<'a>,
    pub(crate) pending: Receiver<Leased>,
    pub(crate) ready: Sender<Downloaded>,
    /// For jobs that need no scan (no distributions).
    pub(crate) results: Sender<JobResult>,
}

impl Downloader<'_> {
    pub(crate) fn run(self) {
        for leased in &self.pending {
            if self.node.shutdown.is_past(self.node.settings.grace_period) {
                // Abandoned: the job stays counted as held.
                continue;
            }
            if leased.job.distributions.is_empty() {
                hand_over(
                    self.node.stats,
                    &self.results,
                    &leased.job,
                    Err(FailureReason::NoDistributions),
                    None,
                );
                continue;
            }
            if let Some(expected) = self.capacity.expected_job_time() {
                let lease = self.node.settings.lease_timeout;
                // The job's newest lease: it may have been leased again.
                let job = &leased.job;
                let since = self.capacity.leased_at(&job.name, &job.version).unwrap_or(leased.leased_at);
                if since.elapsed() + expected > lease {
                    // Its result would come after the lease: the server
                    // would refuse it and lease the job again anyway.
                    log::warn!(
                        package = leased.job.name.as_str(), version = leased.job.version.as_str();
                        "not started: {expected:?} of work would end after the {lease:?} lease"
                    );
                    self.capacity.drop_job(&leased.job);
                    continue;
                }
            }
            // Files are started until nine tenths of the newest lease, so
            // that the result still reaches the server within it.
            let lease = self.node.settings.lease_timeout;
            let since =
                self.capacity.leased_at(&leased.job.name, &leased.job.version).unwrap_or(leased.leased_at);
            let deadline = since + lease.mul_f64(0.9);
            let job = Arc::new(JobState::new(leased, deadline));
            // Every distribution of a job at once, each within the budget.
            let sent = std::thread::scope(|scope| {
                let (this, job) = (&self, &job);
                let downloads: Vec<_> = job
                    .job
                    .distributions
                    .iter()
                    .enumerate()
                    .map(|(index, url)| scope.spawn(move || this.fetch(job, index, url)))
                    .collect();
                downloads.into_iter().all(|download| download.join().unwrap_or(false))
            });
            if !sent {
                return;
            }
        }
    }

    /// Downloads one distribution (reserving the worst case in the budget,
    /// keeping what arrived) and hands it on; false when scanning is gone.
    fn fetch(&self, job: &Arc<JobState>, index: usize, url: &str) -> bool {
        let max = self.node.settings.download_cap();
        self.budget.acquire(max);
        if self.node.shutdown.is_past(self.node.settings.grace_period) {
            // Abandoned: nothing is downloaded after the grace period.
            self.budget.release(max);
            return false;
        }
        let bytes = catch_unwind(AssertUnwindSafe(|| self.download(&job.job, url))).unwrap_or_else(|panic| {
            Err(Problem::Internal {
                url: url.to_owned(),
                stage: Stage::Download,
                message: panic_message(&*panic),
            })
        });
        let reserved = bytes.as_ref().map_or(0, |b| (b.len() as u64).min(max));
        self.budget.release(max - reserved);
        let downloaded = Downloaded { job: Arc::clone(job), index, url: url.to_owned(), bytes, reserved };
        if self.ready.send(downloaded).is_err() {
            self.budget.release(reserved);
            return false;
        }
        true
    }

    fn download(&self, job: &Job, url: &str) -> Result<Vec<u8>, Problem> {
        let mut attempt = 0;
        loop {
            let cap = self.node.settings.download_cap();
            let error = match self.node.client.download(url, cap) {
                Ok(bytes) => {
                    self.node.stats.downloaded(bytes.len() as u64);
                    return Ok(bytes);
                }
                Err(err) if err.is_transient() && attempt < self.node.settings.download_retries => {
                    attempt += 1;
                    let wait = RETRY.after(attempt, err.retry_after());
                    log::warn!(
                        package = job.name.as_str(), version = job.version.as_str();
                        "download of {url} failed ({err}), retry {attempt} in {wait:?}"
                    );
                    // A shutdown ends the wait: the job is finished now or never.
                    self.node.shutdown.sleep(wait);
                    continue;
                }
                Err(err) if err.kind() == ErrorKind::TooLarge => DownloadError::TooLarge { limit: cap },
                Err(err) => DownloadError::Failed(err),
            };
            return Err(Problem::Download { url: url.to_owned(), error });
        }
    }
}
