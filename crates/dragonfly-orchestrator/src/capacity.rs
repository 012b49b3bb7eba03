//! The jobs the node holds and how many more it may take: shared by the
//! loader (which leases), the scanning stage (which measures jobs) and the
//! sender (which frees room, reports stuck deliveries and sends each result
//! with the job's latest lease).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dragonfly_api::Job;

use crate::stats::Stats;
use crate::sync::Signal;

/// A held job's current lease: what its result must echo, and when it began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    pub(crate) attempt: Option<u32>,
    pub(crate) assignment_id: Option<String>,
    pub(crate) leased_at: Instant,
}

/// The node's room for more jobs.
#[derive(Debug)]
pub(crate) struct Capacity<'a> {
    /// Where the number of held jobs is shown.
    stats: &'a Stats,
    threads: usize,
    bulk_size: usize,
    lease: Duration,
    /// Moving average of a job's time from lease to result, seconds.
    avg_job_secs: Mutex<Option<f64>>,
    /// Moving average of a job's time from its first download to its
    /// result, seconds.
    avg_work_secs: Mutex<Option<f64>>,
    /// Set while several results in a row could not be delivered.
    delivery_blocked: AtomicBool,
    /// Signalled when a job is finished, so the loader can lease at once.
    room: Signal,
    /// Jobs leased and not yet reported, by (name, version).
    held: Mutex<HashMap<(String, String), Lease>>,
}

impl<'a> Capacity<'a> {
    pub(crate) fn new(stats: &'a Stats, threads: usize, bulk_size: usize, lease: Duration) -> Self {
        Capacity {
            stats,
            threads,
            bulk_size,
            lease,
            avg_job_secs: Mutex::new(None),
            avg_work_secs: Mutex::new(None),
            delivery_blocked: AtomicBool::new(false),
            room: Signal::default(),
            held: Mutex::new(HashMap::new()),
        }
    }

    fn held_jobs(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Lease>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Jobs held now.
    pub(crate) fn held(&self) -> u64 {
        self.held_jobs().len() as u64
    }

    /// Takes on a leased job; false when the node holds it already (the
    /// server leased it again, as its lease ran out): the held job then
    /// takes over the new lease and is scanned and reported once.
    pub(crate) fn take_on(&self, job: &Job, leased_at: Instant) -> bool {
        let lease = Lease { attempt: job.attempt, assignment_id: job.assignment_id.clone(), leased_at };
        let key = (job.name.clone(), job.version.clone());
        let mut held = self.held_jobs();
        match held.get_mut(&key) {
            Some(current) => {
                log::info!(
                    package = job.name.as_str(), version = job.version.as_str();
                    "leased again (attempt {:?}) while held: its result goes with the new lease", job.attempt
                );
                *current = lease;
                false
            }
            None => {
                held.insert(key, lease);
                self.stats.set_jobs_held(held.len() as u64);
                true
            }
        }
    }

    /// The current lease of a held job.
    pub(crate) fn lease_of(&self, name: &str, version: &str) -> Option<Lease> {
        self.held_jobs().get(&(name.to_owned(), version.to_owned())).cloned()
    }

    /// The held jobs, as `name==version`, sorted.
    pub(crate) fn held_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.held_jobs().keys().map(|(n, v)| format!("{n}=={v}")).collect();
        names.sort();
        names
    }

    /// How many jobs to lease now, holding `held`: none while deliveries
    /// are stuck or less than half the cap is free (unless threads would
    /// idle), otherwise up to a bulk.
    pub(crate) fn to_lease(&self, held: u64) -> u64 {
        if self.delivery_blocked.load(Ordering::Relaxed) {
            return 0;
        }
        let avg = *self.avg_job_secs.lock().unwrap_or_else(|e| e.into_inner());
        let max_held = held_limit(self.threads, self.bulk_size, self.lease, avg);
        let room = max_held.saturating_sub(held);
        let worth_asking = room > 0 && (room * 2 >= max_held || held < 2 * self.threads as u64);
        if worth_asking { room.min(self.bulk_size as u64) } else { 0 }
    }

    /// Waits until room may have been freed, or `timeout`.
    pub(crate) fn wait_for_room(&self, timeout: Duration) {
        self.room.wait(timeout);
    }

    /// How long a job takes from its first download to its result, once
    /// measured.
    pub(crate) fn expected_job_time(&self) -> Option<Duration> {
        let avg = *self.avg_work_secs.lock().unwrap_or_else(|e| e.into_inner());
        avg.map(Duration::from_secs_f64)
    }

    /// A job took `since_lease` from lease to result, `working` of it from
    /// its first download on.
    pub(crate) fn job_measured(&self, since_lease: Duration, working: Duration) {
        for (avg, secs) in [(&self.avg_job_secs, since_lease), (&self.avg_work_secs, working)] {
            let secs = secs.as_secs_f64();
            let mut avg = avg.lock().unwrap_or_else(|e| e.into_inner());
            *avg = Some(avg.map_or(secs, |a| 0.8 * a + 0.2 * secs));
        }
    }

    /// A result left the node: its job is no longer held.
    pub(crate) fn result_done(&self, name: &str, version: &str) {
        self.release(name, version);
        self.room.notify();
    }

    /// When a held job's current lease began.
    pub(crate) fn leased_at(&self, name: &str, version: &str) -> Option<Instant> {
        self.lease_of(name, version).map(|lease| lease.leased_at)
    }

    /// A leased job the node will not work on (it is stopping).
    pub(crate) fn drop_job(&self, job: &Job) {
        self.release(&job.name, &job.version);
    }

    fn release(&self, name: &str, version: &str) {
        let mut held = self.held_jobs();
        held.remove(&(name.to_owned(), version.to_owned()));
        self.stats.set_jobs_held(held.len() as u64);
    }

    /// Whether results can be delivered (the sender's view).
    pub(crate) fn set_delivery_blocked(&self, blocked: bool) {
        self.delivery_blocked.store(blocked, Ordering::Relaxed);
    }
}

/// The most jobs a node should hold: one per thread until job times are
/// known, then what `threads` can finish within half the lease at the
/// average job time, never fewer than one per thread nor more than
/// `bulk_size` (or the threads, if more).
fn held_limit(threads: usize, bulk_size: usize, lease: Duration, avg_job_secs: Option<f64>) -> u64 {
    let threads = threads as u64;
    let cap = (bulk_size as u64).max(threads);
    match avg_job_secs {
        None => threads,
        Some(avg) => {
            let fit = (threads as f64 * lease.as_secs_f64() * 0.5 / avg.max(1e-3)) as u64;
            fit.clamp(threads, cap)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_jobs_fit_in_the_lease() {
        let lease = Duration::from_secs(120);
        assert_eq!(held_limit(2, 20, lease, None), 2, "one per thread until jobs are measured");
        assert_eq!(held_limit(4, 2, lease, Some(1.0)), 4, "at least one job per thread");
        assert_eq!(held_limit(2, 20, lease, Some(0.5)), 20, "fast jobs: a full bulk");
        assert_eq!(held_limit(2, 20, lease, Some(20.0)), 6, "2 threads x 60 s / 20 s");
        assert_eq!(held_limit(2, 20, lease, Some(300.0)), 2, "slow jobs: one per thread");
    }

    #[test]
    fn leases_in_batches_and_not_while_deliveries_are_stuck() {
        let stats = Stats::default();
        let capacity = Capacity::new(&stats, 2, 20, Duration::from_secs(120));
        assert_eq!(capacity.to_lease(0), 2, "one per thread until jobs are measured");
        capacity.job_measured(Duration::from_secs(1), Duration::from_secs(1));
        assert_eq!(capacity.to_lease(0), 20);
        assert_eq!(capacity.to_lease(9), 11, "half the cap free");
        assert_eq!(capacity.to_lease(15), 0, "wait for a batch to be worth it");
        for _ in 0..40 {
            capacity.job_measured(Duration::from_secs(20), Duration::from_secs(5));
        }
        assert_eq!(capacity.to_lease(3), 3, "6 fit in half the lease, threads would idle");
        capacity.set_delivery_blocked(true);
        assert_eq!(capacity.to_lease(0), 0);
    }

    fn job(attempt: u32) -> Job {
        Job {
            name: "a".into(),
            version: "1".into(),
            distributions: vec![],
            hash: "h".into(),
            attempt: Some(attempt),
            assignment_id: Some(format!("id-{attempt}")),
        }
    }

    #[test]
    fn a_job_leased_again_while_held_takes_over_the_new_lease() {
        let stats = Stats::default();
        let capacity = Capacity::new(&stats, 1, 20, Duration::from_secs(120));
        let now = Instant::now();
        assert!(capacity.take_on(&job(1), now));
        assert!(!capacity.take_on(&job(2), now + Duration::from_secs(1)), "held already: not scanned twice");
        assert_eq!((capacity.held(), stats.snapshot().jobs_held), (1, 1));
        let lease = capacity.lease_of("a", "1").unwrap();
        assert_eq!((lease.attempt, lease.assignment_id.as_deref()), (Some(2), Some("id-2")));
        assert_eq!(capacity.leased_at("a", "1"), Some(now + Duration::from_secs(1)));
        assert_eq!(capacity.held_names(), ["a==1"]);
        capacity.result_done("a", "1");
        assert_eq!(capacity.held(), 0);
        assert!(capacity.take_on(&job(3), now), "reported: a new lease is new work");
    }
}
