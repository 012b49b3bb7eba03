//! The job queue: leases that expire, attempt counters, dead letters.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Waiting to be leased (never leased, or its lease expired).
    Pending,
    /// Leased and the lease is live.
    Leased,
    /// A result was stored.
    Finished,
    /// Leased `max_attempts` times without a result.
    Dead,
}

/// One lease of a job.
#[derive(Debug, Clone)]
struct Lease {
    assignment_id: String,
    attempt: u32,
    deadline: Instant,
}

#[derive(Debug)]
struct Job {
    name: String,
    version: String,
    urls: Vec<String>,
    /// Queue position: pending jobs are leased in this order, and a job whose
    /// lease expired keeps its place (the real server orders by queue time).
    seq: u64,
    /// Number of leases handed out so far.
    attempts: u32,
    status: Status,
    /// The latest lease; kept after expiry so that a late result is still
    /// accepted until somebody else leases the job.
    lease: Option<Lease>,
}

/// The answer to a submitted result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Stored; the job is finished.
    Stored,
    /// No job has this name and version.
    NotFound,
    /// Refused for good, with the reason.
    Conflict(&'static str),
}

/// Job counts by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub pending: usize,
    pub leased: usize,
    pub finished: usize,
    pub dead: usize,
}

#[derive(Debug)]
pub(crate) struct Queue {
    jobs: Vec<Job>,
    by_release: HashMap<(String, String), usize>,
    /// Invariant: exactly the jobs in `Status::Pending`, keyed by `(seq, index)`.
    pending: BTreeSet<(u64, usize)>,
    /// Invariant: exactly the jobs in `Status::Leased`, keyed by `(deadline, index)`.
    leased: BTreeSet<(Instant, usize)>,
    next_seq: u64,
    lease_timeout: Duration,
    max_attempts: u32,
    /// Leases handed out, all jobs together.
    pub leases: u64,
}

impl Queue {
    pub fn new(lease_timeout: Duration, max_attempts: u32) -> Queue {
        Queue {
            jobs: Vec::new(),
            by_release: HashMap::new(),
            pending: BTreeSet::new(),
            leased: BTreeSet::new(),
            next_seq: 0,
            lease_timeout,
            max_attempts: max_attempts.max(1),
            leases: 0,
        }
    }

    /// Queues a release. A release already known is queued again from
    /// scratch (attempts reset), as a re-queue on the real server would.
    pub fn push(&mut self, name: &str, version: &str, urls: Vec<String>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let key = (name.to_owned(), version.to_owned());
        let idx = match self.by_release.get(&key) {
            Some(&idx) => {
                self.unlink(idx);
                let job = &mut self.jobs[idx];
                job.urls = urls;
                job.seq = seq;
                job.attempts = 0;
                job.lease = None;
                job.status = Status::Pending;
                idx
            }
            None => {
                let idx = self.jobs.len();
                self.jobs.push(Job {
                    name: key.0.clone(),
                    version: key.1.clone(),
                    urls,
                    seq,
                    attempts: 0,
                    status: Status::Pending,
                    lease: None,
                });
                self.by_release.insert(key, idx);
                idx
            }
        };
        self.pending.insert((seq, idx));
    }

    /// Removes a job from the pending or leased index.
    fn unlink(&mut self, idx: usize) {
        let job = &self.jobs[idx];
        match job.status {
            Status::Pending => {
                self.pending.remove(&(job.seq, idx));
            }
            Status::Leased => {
                if let Some(lease) = &job.lease {
                    self.leased.remove(&(lease.deadline, idx));
                }
            }
            Status::Finished | Status::Dead => {}
        }
    }

    /// Returns expired leases to the queue, or to the dead letters once a job
    /// has had `max_attempts` leases.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(deadline, idx)) = self.leased.first() {
            if deadline > now {
                break;
            }
            self.leased.pop_first();
            let job = &mut self.jobs[idx];
            if job.attempts >= self.max_attempts {
                log::debug!("{}=={} dead-lettered after {} attempts", job.name, job.version, job.attempts);
                job.status = Status::Dead;
            } else {
                log::debug!("{}=={} lease expired, queued again", job.name, job.version);
                job.status = Status::Pending;
                self.pending.insert((job.seq, idx));
            }
        }
    }

    /// Leases up to `n` pending jobs, oldest first, as wire JSON objects.
    pub fn lease(
        &mut self,
        n: usize,
        now: Instant,
        hash: &str,
        mut new_id: impl FnMut() -> String,
    ) -> Vec<Value> {
        self.expire(now);
        let mut out = Vec::new();
        while out.len() < n {
            let Some((_, idx)) = self.pending.pop_first() else {
                break;
            };
            let job = &mut self.jobs[idx];
            job.attempts += 1;
            let lease =
                Lease { assignment_id: new_id(), attempt: job.attempts, deadline: now + self.lease_timeout };
            self.leased.insert((lease.deadline, idx));
            out.push(json!({
                "name": job.name,
                "version": job.version,
                "distributions": job.urls,
                "hash": hash,
                "attempt": lease.attempt,
                "assignment_id": lease.assignment_id,
            }));
            job.lease = Some(lease);
            job.status = Status::Leased;
            self.leases += 1;
        }
        out
    }

    /// Stores a result for `name`/`version`. `assignment_id` and `attempt`,
    /// when given, must be those of the job's latest lease; a result without
    /// them (an older client) is accepted for any unfinished job.
    pub fn submit(
        &mut self,
        name: &str,
        version: &str,
        assignment_id: Option<&str>,
        attempt: Option<u32>,
        now: Instant,
    ) -> Outcome {
        self.expire(now);
        let Some(&idx) = self.by_release.get(&(name.to_owned(), version.to_owned())) else {
            return Outcome::NotFound;
        };
        let job = &self.jobs[idx];
        match job.status {
            Status::Finished => return Outcome::Conflict("package already finished"),
            Status::Dead => return Outcome::Conflict("package was dead-lettered"),
            Status::Pending | Status::Leased => {}
        }
        if let Some(assignment_id) = assignment_id {
            match &job.lease {
                Some(lease) if lease.assignment_id == assignment_id => {
                    if attempt.is_some_and(|attempt| attempt != lease.attempt) {
                        return Outcome::Conflict("attempt does not match the assignment");
                    }
                }
                _ => return Outcome::Conflict("stale lease: a newer assignment exists"),
            }
        }
        self.unlink(idx);
        self.jobs[idx].status = Status::Finished;
        Outcome::Stored
    }

    /// Whether `assignment_id` and `attempt` are the live lease of job
    /// `name`/`version` (what a scan-cache write needs; an expired lease
    /// does not count).
    pub fn holds_lease(&self, name: &str, version: &str, assignment_id: &str, attempt: u32) -> bool {
        let Some(&idx) = self.by_release.get(&(name.to_owned(), version.to_owned())) else {
            return false;
        };
        let job = &self.jobs[idx];
        job.status == Status::Leased
            && job.lease.as_ref().is_some_and(|l| l.assignment_id == assignment_id && l.attempt == attempt)
    }

    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for job in &self.jobs {
            match job.status {
                Status::Pending => counts.pending += 1,
                Status::Leased => counts.leased += 1,
                Status::Finished => counts.finished += 1,
                Status::Dead => counts.dead += 1,
            }
        }
        counts
    }

    /// No job is pending or leased (call [`Queue::expire`] first).
    pub fn is_drained(&self) -> bool {
        self.pending.is_empty() && self.leased.is_empty()
    }

    /// The earliest lease deadline, if any job is leased.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.leased.first().map(|(deadline, _)| *deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("id-{n}")
        }
    }

    fn names(jobs: &[Value]) -> Vec<&str> {
        jobs.iter().filter_map(|job| job["name"].as_str()).collect()
    }

    #[test]
    fn leases_fifo_and_keeps_place_after_expiry() {
        let timeout = Duration::from_secs(10);
        let mut queue = Queue::new(timeout, 3);
        for name in ["a", "b", "c"] {
            queue.push(name, "1", vec![]);
        }
        let t0 = Instant::now();
        let mut new_id = ids();
        let first = queue.lease(1, t0, "h", &mut new_id);
        assert_eq!(names(&first), ["a"]);
        assert_eq!(first[0]["attempt"], 1);
        assert_eq!(first[0]["assignment_id"], "id-1");
        // After expiry "a" comes back ahead of "b" and "c".
        let later = queue.lease(5, t0 + timeout, "h", &mut new_id);
        assert_eq!(names(&later), ["a", "b", "c"]);
        assert_eq!(later[0]["attempt"], 2);
        assert_eq!(queue.leases, 4);
    }

    #[test]
    fn dead_letter_after_max_attempts() {
        let timeout = Duration::from_secs(1);
        let mut queue = Queue::new(timeout, 2);
        queue.push("a", "1", vec![]);
        let mut now = Instant::now();
        let mut new_id = ids();
        assert_eq!(queue.lease(1, now, "h", &mut new_id).len(), 1);
        now += timeout;
        assert_eq!(queue.lease(1, now, "h", &mut new_id).len(), 1);
        now += timeout;
        assert!(queue.lease(1, now, "h", &mut new_id).is_empty());
        assert!(queue.is_drained());
        assert_eq!(queue.counts().dead, 1);
        assert_eq!(
            queue.submit("a", "1", Some("id-2"), Some(2), now),
            Outcome::Conflict("package was dead-lettered")
        );
    }

    #[test]
    fn late_result_accepted_until_leased_again() {
        let timeout = Duration::from_secs(1);
        let mut queue = Queue::new(timeout, 3);
        queue.push("a", "1", vec![]);
        queue.push("b", "1", vec![]);
        let t0 = Instant::now();
        let mut new_id = ids();
        queue.lease(2, t0, "h", &mut new_id);
        // "a" expired but nobody leased it again: its result still counts.
        let t1 = t0 + timeout;
        assert_eq!(queue.submit("a", "1", Some("id-1"), Some(1), t1), Outcome::Stored);
        // "b" was leased again: the first assignment is stale.
        queue.lease(1, t1, "h", &mut new_id);
        assert!(matches!(queue.submit("b", "1", Some("id-2"), None, t1), Outcome::Conflict(_)));
        assert!(matches!(queue.submit("b", "1", Some("id-3"), Some(1), t1), Outcome::Conflict(_)));
        assert_eq!(queue.submit("b", "1", Some("id-3"), Some(2), t1), Outcome::Stored);
        assert!(matches!(queue.submit("b", "1", None, None, t1), Outcome::Conflict(_)));
        assert_eq!(queue.submit("c", "1", None, None, t1), Outcome::NotFound);
        assert!(queue.is_drained());
        assert_eq!(queue.counts().finished, 2);
    }

    #[test]
    fn push_again_requeues_from_scratch() {
        let mut queue = Queue::new(Duration::from_secs(1), 3);
        queue.push("a", "1", vec!["u1".into()]);
        let now = Instant::now();
        queue.lease(1, now, "h", ids());
        queue.push("a", "1", vec!["u2".into()]);
        let jobs = queue.lease(1, now, "h", ids());
        assert_eq!(jobs[0]["attempt"], 1);
        assert_eq!(jobs[0]["distributions"][0], "u2");
        assert_eq!(queue.counts().leased, 1);
    }
}
