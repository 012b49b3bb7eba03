//! The fleet's shared results, through the control server's optional scan
//! cache: a [`JobScanCache`] per job is the engine's [`SharedResults`].
//!
//! Nothing here fails a job. A 404 (the server has no cache, as in
//! production) closes the cache for the node for [`CLOSED_AFTER_404`]; a
//! 429 for the time the server asks (at least a second); a lookup
//! answered 409 (other rules) or `revoked` stops it for the rule set; any
//! other failure (503, a 409 on write, a timeout, a network error) stops
//! it for the job. Each request has the client's scan-cache timeout
//! (750 ms), each job about [`JOB_BUDGET`] of cache time in all, and the
//! node at most its rate of requests a second (the server takes 10 from
//! the whole fleet).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dragonfly_api::{
    Client, Error, SCAN_CACHE_MAX_KEYS, SCAN_CACHE_MAX_RESULT_BYTES, SCAN_CACHE_MAX_WRITE_BYTES,
    ScanCacheContext, ScanCacheEntry, ScanCacheLease,
};
use dragonfly_engine::{SharedEntry, SharedError, SharedResults};

/// After a 404, the node asks again only after this long.
pub(crate) const CLOSED_AFTER_404: Duration = Duration::from_secs(600);
/// Cache time per job, all requests together; beyond it the job scans.
pub(crate) const JOB_BUDGET: Duration = Duration::from_secs(2);
/// After a 429 without `Retry-After`, the node waits this long.
const RATE_LIMITED: Duration = Duration::from_secs(1);

/// Whether the node may ask the server's cache now (shared by every rule
/// set and job).
#[derive(Debug)]
pub(crate) struct Gate {
    /// Requests a second the node makes at most; beyond, files are scanned.
    rate: usize,
    closed_until: Mutex<Option<Instant>>,
    /// When the requests of the last second were made.
    recent: Mutex<std::collections::VecDeque<Instant>>,
    /// Whether the server was heard to have no cache (logged once).
    absent: AtomicBool,
}

impl Gate {
    /// A gate letting `rate` requests a second through.
    pub(crate) fn new(rate: u32) -> Gate {
        Gate {
            rate: rate as usize,
            closed_until: Mutex::default(),
            recent: Mutex::default(),
            absent: AtomicBool::new(false),
        }
    }

    fn is_open(&self) -> bool {
        self.closed_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none_or(|until| Instant::now() >= until)
    }

    /// Takes one of the second's requests, if one is left.
    fn admit(&self) -> bool {
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        while recent.front().is_some_and(|&t| now.duration_since(t) >= Duration::from_secs(1)) {
            recent.pop_front();
        }
        if recent.len() >= self.rate {
            return false;
        }
        recent.push_back(now);
        true
    }

    fn close_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut closed = self.closed_until.lock().unwrap_or_else(|e| e.into_inner());
        if closed.is_none_or(|old| old < until) {
            *closed = Some(until);
        }
    }
}

/// The scan cache of one rule set: its context, and whether it is stopped.
#[derive(Debug)]
pub(crate) struct RuleSetCache {
    client: Client,
    gate: Arc<Gate>,
    context: ScanCacheContext,
    /// Set by a 409 on lookup (the server's rules differ) or a revocation.
    stopped: AtomicBool,
    /// Revocations still to send, and tries left (the next jobs retry).
    revoke_tries: std::sync::atomic::AtomicU32,
}

/// Tries to send a revocation, one per job, before giving up.
const REVOKE_TRIES: u32 = 3;

impl RuleSetCache {
    pub(crate) fn new(client: Client, gate: Arc<Gate>, context: ScanCacheContext) -> Self {
        RuleSetCache {
            client,
            gate,
            context,
            stopped: AtomicBool::new(false),
            revoke_tries: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// The cache for one job, under its lease (`None`: no writes). A
    /// revocation that could not be sent is tried again under it.
    pub(crate) fn for_job(self: &Arc<Self>, lease: Option<ScanCacheLease>) -> JobScanCache {
        if let Some(lease) = &lease
            && self.revoke_tries.load(Ordering::Relaxed) > 0
        {
            self.send_revoke(lease);
        }
        JobScanCache {
            rule_set: Arc::clone(self),
            lease,
            spent: Mutex::new(Duration::ZERO),
            stopped: AtomicBool::new(false),
        }
    }

    /// Sends the revocation under `lease`; on failure, the next job tries
    /// again, [`REVOKE_TRIES`] times in all.
    fn send_revoke(&self, lease: &ScanCacheLease) {
        let tries =
            self.revoke_tries.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if tries.is_err() {
            return;
        }
        let rules = &self.context.rules_commit;
        match self.client.scan_cache_revoke(&self.context, lease) {
            Ok(()) => {
                self.revoke_tries.store(0, Ordering::Relaxed);
                log::error!("scan cache: revoked the cached results of rules {rules}");
            }
            Err(err) => {
                log::error!("scan cache: could not revoke the cached results of rules {rules}: {err}")
            }
        }
    }

    fn stop(&self, why: &str) {
        if !self.stopped.swap(true, Ordering::Relaxed) {
            log::warn!("scan cache: {why}; not used again for rules {}", self.context.rules_commit);
        }
    }
}

/// The scan cache as one job uses it.
#[derive(Debug)]
pub(crate) struct JobScanCache {
    rule_set: Arc<RuleSetCache>,
    lease: Option<ScanCacheLease>,
    spent: Mutex<Duration>,
    /// Set by a failed call: the rest of the job scans normally.
    stopped: AtomicBool,
}

impl JobScanCache {
    /// Whether another request may be made for this job.
    fn may_ask(&self) -> bool {
        !self.stopped.load(Ordering::Relaxed)
            && !self.rule_set.stopped.load(Ordering::Relaxed)
            && self.rule_set.gate.is_open()
            && *self.spent.lock().unwrap_or_else(|e| e.into_inner()) < JOB_BUDGET
    }

    /// Runs one request, counting its time against the job's budget;
    /// `None` when the node's rate leaves none this second.
    fn timed<T>(
        &self,
        call: impl FnOnce(&Client, &ScanCacheContext) -> Result<T, Error>,
    ) -> Option<Result<T, Error>> {
        if !self.rule_set.gate.admit() {
            return None;
        }
        let started = Instant::now();
        let result = call(&self.rule_set.client, &self.rule_set.context);
        *self.spent.lock().unwrap_or_else(|e| e.into_inner()) += started.elapsed();
        Some(result)
    }

    /// What a failed request means for the node, the rule set and the job.
    fn failed(&self, operation: &str, err: &Error) -> SharedError {
        let gate = &self.rule_set.gate;
        match err.status() {
            Some(404) => {
                gate.close_for(CLOSED_AFTER_404);
                if !gate.absent.swap(true, Ordering::Relaxed) {
                    log::info!(
                        "scan cache: the server has none (404); asking again every {CLOSED_AFTER_404:?}"
                    );
                }
                return SharedError::Skipped;
            }
            Some(409) if operation == "lookup" => self.rule_set.stop("the server's rules differ (409)"),
            Some(429) => {
                // Flow control, not a failure: the fleet asks too often.
                gate.close_for(err.retry_after().unwrap_or(RATE_LIMITED).max(RATE_LIMITED));
                return SharedError::Skipped;
            }
            _ => {}
        }
        self.stopped.store(true, Ordering::Relaxed);
        log::debug!("scan cache: {operation} failed, this job scans without it: {err}");
        SharedError::Failed
    }
}

impl SharedResults for JobScanCache {
    fn usable(&self) -> bool {
        self.may_ask()
    }

    fn lookup(&self, digests: &[String]) -> Result<Vec<SharedEntry>, SharedError> {
        if digests.is_empty() || !self.may_ask() {
            return Err(SharedError::Skipped);
        }
        let mut found = Vec::new();
        for chunk in digests.chunks(SCAN_CACHE_MAX_KEYS) {
            let Some(reply) = self.timed(|client, context| client.scan_cache_lookup(context, chunk)) else {
                return Err(SharedError::Skipped);
            };
            match reply {
                Ok(reply) if reply.revoked => {
                    self.rule_set.stop("the server revoked the cached results");
                    return Err(SharedError::Skipped);
                }
                Ok(reply) => found.extend(
                    reply
                        .entries
                        .into_iter()
                        .filter(|e| e.language.is_empty())
                        .map(|e| SharedEntry { digest: e.file_digest, result: e.result }),
                ),
                Err(err) => return Err(self.failed("lookup", &err)),
            }
        }
        Ok(found)
    }

    fn write(&self, entries: Vec<SharedEntry>) -> Result<(), SharedError> {
        let Some(lease) = &self.lease else { return Err(SharedError::Skipped) };
        let mut batch: Vec<ScanCacheEntry> = Vec::new();
        let mut bytes = 0usize;
        let fits = entries.into_iter().filter(|e| e.result.len() <= SCAN_CACHE_MAX_RESULT_BYTES);
        let mut entries = fits.peekable();
        while let Some(entry) = entries.next() {
            bytes += entry.result.len();
            batch.push(ScanCacheEntry {
                file_digest: entry.digest,
                language: String::new(),
                result: entry.result,
            });
            let full = batch.len() == SCAN_CACHE_MAX_KEYS
                || entries.peek().is_none_or(|next| bytes + next.result.len() > SCAN_CACHE_MAX_WRITE_BYTES);
            if !full {
                continue;
            }
            if !self.may_ask() {
                return Err(SharedError::Skipped);
            }
            let Some(reply) = self.timed(|client, context| client.scan_cache_write(context, lease, &batch))
            else {
                return Err(SharedError::Skipped);
            };
            match reply {
                Ok(written) => log::debug!(
                    "scan cache: {} results offered, {} stored, {} skipped",
                    batch.len(),
                    written.inserted,
                    written.skipped
                ),
                Err(err) => return Err(self.failed("write", &err)),
            }
            batch.clear();
            bytes = 0;
        }
        Ok(())
    }

    fn revoke(&self) {
        // Once per rule set; neither the budget nor the rate hold it back.
        if self.rule_set.stopped.swap(true, Ordering::Relaxed) {
            return;
        }
        log::warn!("scan cache: a cached result differed from a new scan; not used again for these rules");
        self.rule_set.revoke_tries.store(REVOKE_TRIES, Ordering::Relaxed);
        if let Some(lease) = &self.lease {
            self.rule_set.send_revoke(lease);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use dragonfly_api::{Auth, ClientConfig};
    use dragonfly_testkit::server::{Endpoint, FakeServer, Fault, FaultAction, ServerConfig};

    use super::*;

    fn server(scan_cache: bool) -> (FakeServer, Client, ScanCacheContext) {
        let server =
            FakeServer::start(ServerConfig { scan_cache, scan_cache_rate: 1000, ..ServerConfig::default() })
                .unwrap();
        let rules = BTreeMap::from([("a.yar".to_owned(), "rule a { condition: true }".to_owned())]);
        server.set_rules("r1", rules.clone());
        let client = Client::new(ClientConfig::new(server.url(), Auth::None)).unwrap();
        let context = ScanCacheContext {
            scanner: "yara".into(),
            rules_commit: "r1".into(),
            rules_digest: dragonfly_engine::rules_digest(&rules),
            engine_digest: dragonfly_engine::engine_digest(),
        };
        (server, client, context)
    }

    fn leased(server: &FakeServer, client: &Client, name: &str) -> Option<ScanCacheLease> {
        server.add_job(name, "1.0", vec![]);
        let job = client.lease_jobs(1).unwrap().remove(0);
        ScanCacheLease::of(&job)
    }

    fn entry(n: u8, result: &str) -> SharedEntry {
        SharedEntry { digest: format!("{n:02x}").repeat(32), result: result.to_owned() }
    }

    #[test]
    fn results_go_up_under_the_lease_come_back_and_can_be_revoked() {
        let (server, client, context) = server(true);
        let rule_set = Arc::new(RuleSetCache::new(client.clone(), Arc::new(Gate::new(1000)), context));
        let job = rule_set.for_job(leased(&server, &client, "p"));
        // 300 entries: three writes of at most 128.
        let entries: Vec<SharedEntry> = (0..=255u8).chain(0..44).map(|n| entry(n, "[[0,[]]]")).collect();
        let oversize =
            SharedEntry { digest: "ab".repeat(31) + "cd", result: format!("[\"{}\"]", "x".repeat(17_000)) };
        job.write(entries.into_iter().chain([oversize]).collect()).unwrap();
        assert_eq!(server.scan_cache_stats().inserted, 256, "each digest once; the oversize result left out");
        assert_eq!(server.stats().requests_to(Endpoint::ScanCache), 3);

        let digests: Vec<String> = (0..200u8).map(|n| entry(n, "").digest).collect();
        let found = job.lookup(&digests).unwrap();
        assert_eq!(found.len(), 200, "two requests of at most 128 keys");
        assert_eq!(found[0].result, "[[0,[]]]");

        job.revoke();
        assert_eq!(server.scan_cache_stats().revoked, 1);
        assert_eq!(job.lookup(&digests), Err(SharedError::Skipped), "not asked again for these rules");
        let other_job = rule_set.for_job(leased(&server, &client, "q"));
        assert_eq!(other_job.lookup(&digests), Err(SharedError::Skipped));
    }

    #[test]
    fn without_a_lease_nothing_is_written_and_other_rules_stop_the_rule_set() {
        let (server, client, mut context) = server(true);
        let job = Arc::new(RuleSetCache::new(client.clone(), Arc::new(Gate::new(1000)), context.clone()))
            .for_job(None);
        assert_eq!(job.write(vec![entry(1, "[]")]), Err(SharedError::Skipped));
        assert_eq!(server.stats().requests_to(Endpoint::ScanCache), 0);

        context.rules_commit = "r0".into();
        let rule_set = Arc::new(RuleSetCache::new(client, Arc::new(Gate::new(1000)), context));
        let digests = vec![entry(1, "").digest];
        assert_eq!(rule_set.for_job(None).lookup(&digests), Err(SharedError::Failed), "409");
        assert_eq!(rule_set.for_job(None).lookup(&digests), Err(SharedError::Skipped));
        assert_eq!(server.stats().requests_to(Endpoint::ScanCache), 1);
    }

    #[test]
    fn a_404_closes_the_gate_and_failures_stop_the_job_within_its_budget() {
        let (server, client, context) = server(false);
        let gate = Arc::new(Gate::new(1000));
        let rule_set = Arc::new(RuleSetCache::new(client.clone(), Arc::clone(&gate), context.clone()));
        let digests = vec![entry(1, "").digest];
        assert_eq!(rule_set.for_job(None).lookup(&digests), Err(SharedError::Skipped), "404 is no error");
        assert!(!gate.is_open());
        assert_eq!(rule_set.for_job(None).lookup(&digests), Err(SharedError::Skipped));
        assert_eq!(server.stats().requests_to(Endpoint::ScanCache), 1);

        let (server, client, context) = self::server(true);
        server.add_fault(Fault::new(Endpoint::ScanCache, FaultAction::Delay(Duration::from_secs(3))));
        let job = Arc::new(RuleSetCache::new(client, Arc::new(Gate::new(1000)), context)).for_job(None);
        let started = Instant::now();
        assert_eq!(job.lookup(&digests), Err(SharedError::Failed), "timed out");
        assert!(started.elapsed() < Duration::from_millis(2500), "{:?}", started.elapsed());
        assert_eq!(job.lookup(&digests), Err(SharedError::Skipped), "the job scans without it now");
    }

    #[test]
    fn the_node_keeps_to_its_rate_and_a_429_is_flow_control() {
        let (server, client, context) = server(true);
        let rule_set = Arc::new(RuleSetCache::new(client, Arc::new(Gate::new(2)), context));
        let digests = vec![entry(1, "").digest];
        let job = rule_set.for_job(None);
        assert!(job.lookup(&digests).is_ok() && job.lookup(&digests).is_ok());
        assert_eq!(job.lookup(&digests), Err(SharedError::Skipped), "two a second");
        assert!(job.usable(), "the job may ask again later");
        assert_eq!(server.stats().requests_to(Endpoint::ScanCache), 2);

        server.add_fault(Fault::new(Endpoint::ScanCache, FaultAction::Status(429)));
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(job.lookup(&digests), Err(SharedError::Skipped), "a 429 is no error");
        assert!(!job.usable(), "closed for a second");
    }

    #[test]
    fn a_revocation_that_fails_is_sent_again_with_the_next_jobs() {
        let (server, client, context) = server(true);
        let rule_set = Arc::new(RuleSetCache::new(client.clone(), Arc::new(Gate::new(1000)), context));
        server.add_fault(Fault::new(Endpoint::ScanCache, FaultAction::Status(503)).with_limit(2));
        rule_set.for_job(leased(&server, &client, "p")).revoke();
        rule_set.for_job(leased(&server, &client, "q"));
        assert_eq!(server.scan_cache_stats().revoked, 0, "two tries refused");
        rule_set.for_job(leased(&server, &client, "r"));
        assert_eq!(server.scan_cache_stats().revoked, 1, "the third got through");
        let asked = server.stats().requests_to(Endpoint::ScanCache);
        rule_set.for_job(leased(&server, &client, "s"));
        assert_eq!(server.stats().requests_to(Endpoint::ScanCache), asked, "once sent, not again");
    }

    #[test]
    fn a_job_stops_asking_once_its_budget_is_spent() {
        let (server, client, context) = server(true);
        // Each answer takes 450 ms: the fifth request spends the 2 s.
        server.add_fault(Fault::new(Endpoint::ScanCache, FaultAction::Delay(Duration::from_millis(450))));
        let job = Arc::new(RuleSetCache::new(client, Arc::new(Gate::new(1000)), context)).for_job(None);
        let digests = vec![entry(1, "").digest];
        for n in 0..5 {
            assert!(job.usable(), "request {n}");
            assert!(job.lookup(&digests).is_ok(), "request {n}");
        }
        assert!(!job.usable());
        assert_eq!(job.lookup(&digests), Err(SharedError::Skipped));
        assert_eq!(server.stats().requests_to(Endpoint::ScanCache), 5);
    }
}
