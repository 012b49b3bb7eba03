//! How much work the node may hold: shared by the loader (which leases),
//! the scanning stage (which measures jobs) and the sender (which frees
//! room and reports stuck deliveries).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::sync::Signal;

/// The node's room for more jobs.
#[derive(Debug)]
pub(crate) struct Capacity {
    threads: usize,
    bulk_size: usize,
    lease: Duration,
    /// Moving average of a job's time from lease to result, seconds.
    avg_job_secs: Mutex<Option<f64>>,
    /// Set while several results in a row could not be delivered.
    delivery_blocked: AtomicBool,
    /// Signalled when a job is finished, so the loader can lease at once.
    room: Signal,
}

impl Capacity {
    pub(crate) fn new(threads: usize, bulk_size: usize, lease: Duration) -> Self {
        Capacity {
            threads,
            bulk_size,
            lease,
            avg_job_secs: Mutex::new(None),
            delivery_blocked: AtomicBool::new(false),
            room: Signal::default(),
        }
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

    /// A job took `secs` from lease to result.
    pub(crate) fn job_measured(&self, secs: f64) {
        let mut avg = self.avg_job_secs.lock().unwrap_or_else(|e| e.into_inner());
        *avg = Some(avg.map_or(secs, |a| 0.8 * a + 0.2 * secs));
    }

    /// A result left the node: its job's room is free.
    pub(crate) fn result_done(&self) {
        self.room.notify();
    }

    /// Whether results can be delivered (the sender's view).
    pub(crate) fn set_delivery_blocked(&self, blocked: bool) {
        self.delivery_blocked.store(blocked, Ordering::Relaxed);
    }
}

/// The most jobs a node should hold: `bulk_size` (at least one per thread)
/// until job times are known, then what `threads` can finish within half
/// the lease at the average job time, never fewer than one per thread.
fn held_limit(threads: usize, bulk_size: usize, lease: Duration, avg_job_secs: Option<f64>) -> u64 {
    let threads = threads as u64;
    let cap = (bulk_size as u64).max(threads);
    match avg_job_secs {
        None => cap,
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
        assert_eq!(held_limit(2, 20, lease, None), 20);
        assert_eq!(held_limit(4, 2, lease, None), 4, "at least one job per thread");
        assert_eq!(held_limit(2, 20, lease, Some(0.5)), 20, "fast jobs: a full bulk");
        assert_eq!(held_limit(2, 20, lease, Some(20.0)), 6, "2 threads x 60 s / 20 s");
        assert_eq!(held_limit(2, 20, lease, Some(300.0)), 2, "slow jobs: one per thread");
    }

    #[test]
    fn leases_in_batches_and_not_while_deliveries_are_stuck() {
        let capacity = Capacity::new(2, 20, Duration::from_secs(120));
        assert_eq!(capacity.to_lease(0), 20);
        assert_eq!(capacity.to_lease(9), 11, "half the cap free");
        assert_eq!(capacity.to_lease(15), 0, "wait for a batch to be worth it");
        capacity.job_measured(20.0);
        assert_eq!(capacity.to_lease(3), 3, "6 fit in half the lease, threads would idle");
        capacity.set_delivery_blocked(true);
        assert_eq!(capacity.to_lease(0), 0);
    }
}
