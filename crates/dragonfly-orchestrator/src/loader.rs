//! The loader: leases jobs while the node has room, and fetches new rules
//! before the jobs that name them are scanned.

use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use dragonfly_api::Backoff;

use crate::capacity::Capacity;
use crate::job::Leased;
use crate::node::Handles;
use crate::rules::Rules;

pub(crate) struct Loader<'a> {
    pub(crate) node: Handles<'a>,
    pub(crate) rules: &'a Rules<'a>,
    pub(crate) capacity: &'a Capacity<'a>,
    pub(crate) pending: Sender<Leased>,
}

impl Loader<'_> {
    pub(crate) fn run(self) {
        let retry = Backoff::new(
            Duration::from_millis(500),
            self.node.settings.load_duration.max(Duration::from_secs(1)),
        );
        let mut failures = 0u32;
        while !self.node.shutdown.is_triggered() {
            if !self.rules.ensure(None) {
                // No rules yet: nothing can be scanned; `ensure` backs off.
                self.node.shutdown.sleep(Duration::from_secs(1));
                continue;
            }
            let batch = self.capacity.to_lease(self.capacity.held());
            if batch == 0 {
                self.capacity.wait_for_room(Duration::from_millis(500));
                continue;
            }
            match self.node.client.lease_jobs(batch as usize) {
                Ok(jobs) if jobs.is_empty() => {
                    failures = 0;
                    log::debug!("no jobs; next request in {:?}", self.node.settings.load_duration);
                    self.node.shutdown.sleep(self.node.settings.load_duration);
                }
                Ok(mut jobs) => {
                    failures = 0;
                    self.node.stats.jobs_leased(jobs.len() as u64);
                    log::debug!("leased {} jobs", jobs.len());
                    if jobs.len() > batch as usize {
                        // Held past the cap they could not be finished in
                        // time: the server leases them again later.
                        log::warn!("asked for {batch} jobs, got {}; leaving the rest to expire", jobs.len());
                        jobs.truncate(batch as usize);
                    }
                    // A job held already takes over the new lease instead.
                    let leased_at = Instant::now();
                    jobs.retain(|job| self.capacity.take_on(job, leased_at));
                    // New rules are fetched here, off the scanning threads,
                    // before the jobs that name them are scanned.
                    let mut hashes: Vec<&str> = jobs.iter().map(|j| j.hash.as_str()).collect();
                    hashes.sort_unstable();
                    hashes.dedup();
                    for hash in hashes {
                        self.rules.ensure(Some(hash));
                    }
                    for job in jobs {
                        if let Err(err) = self.pending.send(Leased { job, leased_at }) {
                            // No downloader is left (they only stop at exit).
                            self.capacity.drop_job(&err.0.job);
                        }
                    }
                }
                Err(err) => {
                    failures += 1;
                    let wait = retry.after(failures, err.retry_after());
                    log::warn!("can not lease jobs: {err}; retrying in {wait:?}");
                    self.node.shutdown.sleep(wait);
                }
            }
        }
        log::debug!("loader stopped");
    }
}
