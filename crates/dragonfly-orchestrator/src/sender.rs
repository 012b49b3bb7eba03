//! The sender: reports results as they come, several at a time, so that one
//! stalled or refused result never holds back the others. Transient errors
//! are retried with backoff while the node runs; 404/409 are logged and
//! dropped. Stops at the end of the grace period.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::Receiver;
use dragonfly_api::{Backoff, ErrorKind, JobResult};

use crate::capacity::Capacity;
use crate::node::Handles;

/// Results delivered at the same time.
const DELIVERIES: usize = 4;
/// Waits between attempts at one result.
const RETRY: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));

pub(crate) struct ResultSender<'a> {
    pub(crate) node: Handles<'a>,
    pub(crate) capacity: &'a Capacity<'a>,
    pub(crate) results: Receiver<JobResult>,
}

impl ResultSender<'_> {
    pub(crate) fn run(self) {
        // Deliveries retrying right now: when several are, the server is
        // in trouble and the loader stops leasing.
        let failing = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for i in 0..DELIVERIES {
                let (this, failing) = (&self, &failing);
                let spawned = std::thread::Builder::new()
                    .name(format!("sender-{i}"))
                    .spawn_scoped(scope, move || this.deliver_all(failing));
                if let Err(err) = spawned {
                    log::error!("can not start a sender thread: {err}");
                    break;
                }
            }
        });
        let left = self.results.len();
        if left > 0 {
            log::warn!("grace period over: {left} results not delivered");
        }
    }

    fn deliver_all(&self, failing: &AtomicUsize) {
        while !self.past_deadline() {
            let Ok(result) = self.results.recv() else { return };
            self.deliver(result, failing);
        }
    }

    /// Submits `result` until the server takes or refuses it for good, or
    /// the grace period ends.
    fn deliver(&self, mut result: JobResult, failing: &AtomicUsize) {
        let (package, version) = (result.name().to_owned(), result.version().to_owned());
        let (package, version) = (package.as_str(), version.as_str());
        let mut failures = 0u32;
        loop {
            // The job may have been leased again since it was scanned.
            let sent = self.capacity.lease_of(package, version);
            if let Some(lease) = &sent {
                result.set_lease(lease.attempt, lease.assignment_id.clone());
            }
            match self.node.client.submit(&result) {
                Ok(()) => {
                    self.node.stats.result_delivered();
                    log::debug!(package, version; "result delivered");
                    break;
                }
                // A failed login is retried too: results are never dropped
                // for a problem on this side.
                Err(err) if err.is_transient() || err.kind() == ErrorKind::Auth => {
                    failures += 1;
                    if failures == 1 {
                        self.failing_changed(failing.fetch_add(1, Ordering::Relaxed) + 1);
                    }
                    self.node.stats.result_retried();
                    let wait = RETRY.after(failures, err.retry_after());
                    log::warn!(package, version; "can not deliver result ({err}); retry in {wait:?}");
                    if !self.pause(wait) {
                        log::warn!(package, version; "grace period over: result not delivered");
                        self.done_failing(failures, failing);
                        return;
                    }
                }
                // Leased again while this submission was on its way: the
                // server wants the result with the new lease.
                Err(err)
                    if matches!(err.kind(), ErrorKind::Conflict | ErrorKind::NotFound)
                        && self.capacity.lease_of(package, version) != sent =>
                {
                    log::info!(package, version; "leased again meanwhile ({err}); sending with the new lease");
                }
                Err(err) => {
                    self.node.stats.result_dropped();
                    match err.kind() {
                        ErrorKind::NotFound | ErrorKind::Conflict => {
                            log::warn!(package, version; "server no longer wants this result ({err}); dropped")
                        }
                        _ => log::error!(package, version; "result refused ({err}); dropped"),
                    }
                    break;
                }
            }
        }
        self.done_failing(failures, failing);
        self.capacity.result_done(package, version);
    }

    fn done_failing(&self, failures: u32, failing: &AtomicUsize) {
        if failures > 0 {
            self.failing_changed(failing.fetch_sub(1, Ordering::Relaxed) - 1);
        }
    }

    /// One result failing alone may be one the server refuses, and the cap
    /// on held jobs still bounds what the node takes on meanwhile; several
    /// failing at once stop the loader.
    fn failing_changed(&self, failing: usize) {
        self.capacity.set_delivery_blocked(failing > 1);
    }

    fn past_deadline(&self) -> bool {
        self.node.shutdown.is_past(self.node.settings.grace_period)
    }

    /// Sleeps `wait`, cut short when shutdown starts (to try at once);
    /// false when the grace period is over.
    fn pause(&self, wait: Duration) -> bool {
        match self.node.shutdown.time_left(self.node.settings.grace_period) {
            Some(left) => std::thread::sleep(wait.min(left)),
            None => {
                self.node.shutdown.sleep(wait);
            }
        }
        !self.past_deadline()
    }
}
