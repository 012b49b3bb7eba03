//! The sender: reports results in order of completion, retrying transient
//! errors with backoff while the node runs; 404/409 are logged and
//! dropped. Stops at the end of the grace period.

use std::collections::VecDeque;
use std::time::Duration;

use crossbeam_channel::Receiver;
use dragonfly_api::{Backoff, ErrorKind, JobResult};

use crate::capacity::Capacity;
use crate::node::Handles;

/// Waits after a whole round of failed deliveries.
const RETRY: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));

pub(crate) struct ResultSender<'a> {
    pub(crate) node: Handles<'a>,
    pub(crate) capacity: &'a Capacity,
    pub(crate) results: Receiver<JobResult>,
}

impl ResultSender<'_> {
    pub(crate) fn run(self) {
        let mut queue: VecDeque<JobResult> = VecDeque::new();
        let mut failures = 0u32;
        loop {
            if self.node.shutdown.is_past(self.node.settings.grace_period) {
                if !queue.is_empty() {
                    log::warn!("grace period over: {} results not delivered", queue.len());
                }
                return;
            }
            // Take everything that is ready, blocking only when idle.
            if queue.is_empty() {
                match self.results.recv() {
                    Ok(result) => queue.push_back(result),
                    // Every producer stopped and everything was delivered.
                    Err(_) => return,
                }
            }
            queue.extend(self.results.try_iter());
            let Some(result) = queue.front() else { continue };
            let (package, version) = (result.name().to_owned(), result.version().to_owned());
            let (package, version) = (package.as_str(), version.as_str());
            match self.node.client.submit(result) {
                Ok(()) => {
                    failures = 0;
                    self.capacity.set_delivery_blocked(false);
                    self.node.stats.result_delivered();
                    log::debug!(package, version; "result delivered");
                    self.done(&mut queue);
                }
                // A failed login is retried too: results are never dropped
                // for a problem on this side.
                Err(err) if err.is_transient() || err.kind() == ErrorKind::Auth => {
                    failures += 1;
                    self.node.stats.result_retried();
                    // One result the server keeps refusing must not hold up
                    // the others: try the next one first. Only when a whole
                    // round failed does the node back off, and it stops
                    // leasing only when that round had several results: one
                    // result failing alone may be one the server refuses, and
                    // the cap on held jobs still bounds what the node takes
                    // on meanwhile.
                    queue.rotate_left(1);
                    if (failures as usize) < queue.len() {
                        log::warn!(package, version; "can not deliver result ({err}); trying the next one");
                        continue;
                    }
                    self.capacity.set_delivery_blocked(queue.len() > 1);
                    let rounds = failures / queue.len().max(1) as u32;
                    let wait = RETRY.after(rounds, err.retry_after());
                    log::warn!(
                        package, version;
                        "can not deliver result ({err}); retry in {wait:?}, {} waiting", queue.len()
                    );
                    self.pause(wait);
                }
                Err(err) => {
                    failures = 0;
                    self.capacity.set_delivery_blocked(false);
                    self.node.stats.result_dropped();
                    match err.kind() {
                        ErrorKind::NotFound | ErrorKind::Conflict => {
                            log::warn!(package, version; "server no longer wants this result ({err}); dropped")
                        }
                        _ => log::error!(package, version; "result refused ({err}); dropped"),
                    }
                    self.done(&mut queue);
                }
            }
        }
    }

    fn done(&self, queue: &mut VecDeque<JobResult>) {
        queue.pop_front();
        self.capacity.result_done();
    }

    /// Sleeps `wait`, cut short when shutdown starts (to try at once) and
    /// never past the end of the grace period.
    fn pause(&self, wait: Duration) {
        match self.node.shutdown.time_left(self.node.settings.grace_period) {
            Some(left) => std::thread::sleep(wait.min(left)),
            None => {
                self.node.shutdown.sleep(wait);
            }
        }
    }
}
