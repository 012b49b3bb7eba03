//! A stateful fake control server ("mainframe") on loopback.
//!
//! [`FakeServer`] speaks the node's wire protocol: `POST /jobs?batch=N`
//! leases jobs (with attempt counters and assignment ids; leases expire and
//! jobs are handed out again, then dead-lettered), `PUT /package` stores
//! results (404 unknown, 409 finished, dead or stale lease), `GET /rules`
//! serves a rule set whose hash tests can change mid-run. It authenticates
//! like either deployment ([`AuthMode`]: an Auth0-style `POST /oauth/token`
//! or a Cloudflare Access cookie from `GET /`), serves distribution files at
//! PyPI-like paths, injects faults ([`Fault`]) and records every result.
//! `GET /healthz` answers 200 and is never faulted.
//!
//! Requests are served by a few worker threads, so concurrent clients work;
//! the state sits behind one lock, so no job is leased twice while its lease
//! is live. Lease expiry is checked lazily, on every request and query.
//!
//! ```
//! use dragonfly_testkit::server::{Distribution, FakeServer, ServerConfig};
//!
//! let server = FakeServer::start(ServerConfig::default())?;
//! let urls = server.add_package(
//!     "demo",
//!     "1.0",
//!     vec![Distribution { filename: "demo-1.0.tar.gz".into(), bytes: b"not really gzip".to_vec() }],
//! );
//! assert!(urls[0].starts_with(&format!("{}/packages/", server.url())));
//! assert_eq!(server.stats().pending, 1);
//! assert!(!server.is_drained());
//! # Ok::<(), std::io::Error>(())
//! ```

mod auth;
mod faults;
mod http;
mod names;
mod queue;
mod scan_cache;

pub use faults::{Endpoint, Fault, FaultAction};
pub use names::{normalize_name, release_of, rules_hash};
pub use scan_cache::{ScanCacheStats, rules_digest};

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use crate::rng::Rng;
use auth::Tokens;
use faults::Faults;
use queue::Queue;

/// Worker threads answering requests.
const WORKERS: usize = 16;

/// How the server behaves; [`ServerConfig::default`] matches the real one.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Which authentication the API endpoints require.
    pub auth: AuthMode,
    /// A leased job without a result for this long is queued again
    /// (default 120 s).
    pub lease_timeout: Duration,
    /// Leases per job before it is dead-lettered (default 3).
    pub max_attempts: u32,
    /// Lifetime of issued tokens and cookies (default 1 h).
    pub token_ttl: Duration,
    /// Base URL clients use to reach the server, written into download
    /// links (default: `http://` + the bound address). Set it when clients
    /// reach the server under another name, e.g. in a container network.
    pub public_url: Option<String>,
    /// With [`AuthMode::Cloudflare`]: the edge sets a `CF_Authorization`
    /// cookie on the answers to service-token requests (default false: the
    /// node must work without one).
    pub cloudflare_cookie: bool,
    /// With [`AuthMode::Cloudflare`]: a request without a valid service
    /// token gets 403 instead of a 302 to the login page (default false).
    pub cloudflare_forbids: bool,
    /// Jobs handed out beyond the `batch` asked for, as a misbehaving
    /// server might (default 0).
    pub extra_jobs: usize,
    /// Whether `/scan-cache` answers (default false: 404, as in
    /// production; staging switches it on).
    pub scan_cache: bool,
    /// `/scan-cache` requests admitted per second; more get 429 (default 10).
    pub scan_cache_rate: u32,
    /// How long a cached result lives (default 24 h).
    pub scan_cache_ttl: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            auth: AuthMode::None,
            lease_timeout: Duration::from_secs(120),
            max_attempts: 3,
            token_ttl: Duration::from_secs(3600),
            public_url: None,
            cloudflare_cookie: false,
            cloudflare_forbids: false,
            extra_jobs: 0,
            scan_cache: false,
            scan_cache_rate: 10,
            scan_cache_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// Authentication required by `/jobs`, `/rules` and `/package`.
/// Downloads and `/healthz` are always open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// Everything is accepted; the token endpoint and the Cloudflare login
    /// hand out tokens for any credentials.
    None,
    /// Auth0-style: `POST /oauth/token` (form or JSON body, client
    /// credentials in the body or HTTP Basic) grants bearer tokens for the
    /// `password` grant (with these username and password) or the
    /// `client_credentials` grant, for this audience only.
    Auth0 {
        /// Expected `client_id`.
        client_id: String,
        /// Expected `client_secret`.
        client_secret: String,
        /// Expected `username` (password grant).
        username: String,
        /// Expected `password` (password grant).
        password: String,
        /// Expected `audience`.
        audience: String,
    },
    /// Cloudflare Access service token, as production's edge checks it: an
    /// API call carries the two headers (`CF-Access-Client-Id`,
    /// `CF-Access-Client-Secret`) or a valid `CF_Authorization` cookie; any
    /// other request is redirected to the login page (or refused, see
    /// [`ServerConfig::cloudflare_forbids`]). See also
    /// [`ServerConfig::cloudflare_cookie`].
    Cloudflare {
        /// Expected `CF-Access-Client-Id`.
        client_id: String,
        /// Expected `CF-Access-Client-Secret`.
        client_secret: String,
    },
    /// A fixed bearer token; [`FakeServer::revoke_tokens`] does not touch it.
    Token(String),
}

pub use crate::fixtures::Distribution;

/// A `PUT /package` the server evaluated, with its answer.
///
/// Requests stopped before the handler (401, injected status or
/// [`FaultAction::Drop`]) are not recorded; with
/// [`FaultAction::DropResponse`] the status is what the server would have
/// sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedResult {
    /// The request body (a JSON string holding the raw text if it was not JSON).
    pub body: Value,
    /// The status the server answered: 200, 400, 404, 409 or 422.
    pub status: u16,
    /// `name` from the body, or empty.
    pub name: String,
    /// `version` from the body, or empty.
    pub version: String,
}

/// Counters, see [`FakeServer::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Leases handed out (a job leased twice counts twice).
    pub leases: u64,
    /// Jobs waiting to be leased.
    pub pending: usize,
    /// Jobs under a live lease.
    pub leased: usize,
    /// Jobs with a stored result.
    pub finished: usize,
    /// Jobs dead-lettered after `max_attempts` leases.
    pub dead: usize,
    /// Requests received per endpoint (never [`Endpoint::Any`]), faulted
    /// and unauthorized ones included.
    pub requests: BTreeMap<Endpoint, u64>,
    /// Tokens and cookies issued.
    pub token_grants: u64,
    /// API requests refused (401, the edge's refusal, or 500 for a token
    /// the server can no longer verify).
    pub unauthorized: u64,
    /// Faults that fired.
    pub faults_injected: u64,
}

impl Stats {
    /// Requests received for `endpoint`; [`Endpoint::Any`] gives the total.
    pub fn requests_to(&self, endpoint: Endpoint) -> u64 {
        match endpoint {
            Endpoint::Any => self.requests.values().sum(),
            endpoint => self.requests.get(&endpoint).copied().unwrap_or(0),
        }
    }
}

/// State shared by the handle and the worker threads.
struct Shared {
    config: ServerConfig,
    base_url: String,
    state: Mutex<State>,
    /// Signalled after every request that may have changed the queue.
    changed: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking handler cannot leave the state half-updated in a way
        // that matters to a test double; keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleeps up to `duration`, returning early when the server stops.
    fn sleep(&self, duration: Duration) {
        let deadline = Instant::now() + duration;
        while !self.stop.load(Ordering::Acquire) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            thread::sleep(left.min(Duration::from_millis(20)));
        }
    }
}

struct State {
    queue: Queue,
    rules_hash: String,
    rules: BTreeMap<String, String>,
    /// The scan cache's `rules_digest` of `rules`.
    rules_digest: String,
    /// Served files by URL path.
    files: HashMap<String, Arc<Vec<u8>>>,
    /// The simple index (`/simple/{name}/`): files by normalised project name.
    index: BTreeMap<String, Vec<IndexFile>>,
    results: Vec<RecordedResult>,
    faults: Faults,
    tokens: Tokens,
    /// Source of assignment ids.
    ids: Rng,
    /// Makes file paths unique even for identical uploads.
    uploads: u64,
    requests: BTreeMap<Endpoint, u64>,
    token_grants: u64,
    unauthorized: u64,
    faults_injected: u64,
    scan_cache: scan_cache::ScanCache,
    scan_cache_stats: ScanCacheStats,
}

/// A file on the simple index.
#[derive(Debug, Clone)]
struct IndexFile {
    project: String,
    version: String,
    filename: String,
    /// URL path the file is served at.
    path: String,
    sha256: String,
    yanked: bool,
}

/// The fake control server. Dropping it stops its threads.
pub struct FakeServer {
    shared: Arc<Shared>,
    http: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for FakeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeServer").field("url", &self.shared.base_url).finish_non_exhaustive()
    }
}

impl FakeServer {
    /// Starts a server on `127.0.0.1` with a free port.
    pub fn start(config: ServerConfig) -> io::Result<FakeServer> {
        FakeServer::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config)
    }

    /// Starts a server on `addr` (port 0 picks a free port).
    pub fn bind(addr: SocketAddr, config: ServerConfig) -> io::Result<FakeServer> {
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let http = tiny_http::Server::from_listener(listener, None)
            .map_err(|err| io::Error::other(err.to_string()))?;
        let http = Arc::new(http);
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos() as u64)
            .unwrap_or_default()
            ^ u64::from(local.port());
        let rules = BTreeMap::new();
        let state = State {
            queue: Queue::new(config.lease_timeout, config.max_attempts),
            rules_hash: rules_hash(&rules),
            rules_digest: rules_digest(&rules),
            rules,
            files: HashMap::new(),
            index: BTreeMap::new(),
            results: Vec::new(),
            faults: Faults::new(),
            tokens: Tokens::new(seed.rotate_left(17)),
            ids: Rng::new(seed),
            uploads: 0,
            requests: BTreeMap::new(),
            token_grants: 0,
            unauthorized: 0,
            faults_injected: 0,
            scan_cache: scan_cache::ScanCache::default(),
            scan_cache_stats: ScanCacheStats::default(),
        };
        let base_url = match &config.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{local}"),
        };
        let shared = Arc::new(Shared {
            config,
            base_url,
            state: Mutex::new(state),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let mut workers = Vec::with_capacity(WORKERS);
        for i in 0..WORKERS {
            let (worker_shared, worker_http) = (Arc::clone(&shared), Arc::clone(&http));
            let worker = thread::Builder::new()
                .name(format!("fake-server-{i}"))
                .spawn(move || http::serve(&worker_shared, &worker_http));
            match worker {
                Ok(handle) => workers.push(handle),
                Err(err) => {
                    shared.stop.store(true, Ordering::Release);
                    return Err(err);
                }
            }
        }
        log::debug!("fake control server listening on {}", shared.base_url);
        Ok(FakeServer { shared, http, workers })
    }

    /// Base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Queues a release and serves its files at PyPI-like paths
    /// `{url}/packages/ab/cd/<60 hex>/{filename}`; returns their URLs in job
    /// order. A name and version already known is queued again from scratch.
    pub fn add_package(&self, name: &str, version: &str, distributions: Vec<Distribution>) -> Vec<String> {
        let mut state = self.shared.lock();
        let mut urls = Vec::with_capacity(distributions.len());
        for distribution in distributions {
            state.uploads += 1;
            let digest = names::digest_hex(
                &[
                    name.as_bytes(),
                    version.as_bytes(),
                    distribution.filename.as_bytes(),
                    &state.uploads.to_le_bytes(),
                    &distribution.bytes,
                ],
                64,
            );
            let path = format!(
                "/packages/{}/{}/{}/{}",
                &digest[..2],
                &digest[2..4],
                &digest[4..],
                names::encode_segment(&distribution.filename)
            );
            urls.push(format!("{}{path}", self.shared.base_url));
            let file = IndexFile {
                project: name.to_owned(),
                version: version.to_owned(),
                filename: distribution.filename.clone(),
                path: path.clone(),
                sha256: names::sha256_hex(&distribution.bytes),
                yanked: false,
            };
            state.index.entry(normalize_name(name)).or_default().push(file);
            state.files.insert(path, Arc::new(distribution.bytes));
        }
        state.queue.push(name, version, urls.clone());
        drop(state);
        self.shared.changed.notify_all();
        urls
    }

    /// Queues a generated release ([`add_package`](Self::add_package) with
    /// its name, version and distributions).
    pub fn add_fixture(&self, package: &crate::fixtures::FixturePackage) -> Vec<String> {
        self.add_package(&package.name, &package.version, package.distributions.clone())
    }

    /// Marks a release's files yanked (PEP 592) on the simple index.
    pub fn yank(&self, name: &str, version: &str) {
        let mut state = self.shared.lock();
        for file in state.index.entry(normalize_name(name)).or_default() {
            if file.version == version {
                file.yanked = true;
            }
        }
    }

    /// Queues a job whose distribution URLs are given as is (an URL that
    /// 404s, an external one, ...); nothing is served for it.
    pub fn add_job(&self, name: &str, version: &str, urls: Vec<String>) {
        self.shared.lock().queue.push(name, version, urls);
        self.shared.changed.notify_all();
    }

    /// Replaces the rule set: changes `GET /rules` and the `hash` of jobs
    /// leased from now on (jobs already leased keep theirs).
    pub fn set_rules(&self, hash: &str, rules: BTreeMap<String, String>) {
        let mut state = self.shared.lock();
        state.rules_hash = hash.to_owned();
        state.rules_digest = rules_digest(&rules);
        state.rules = rules;
    }

    /// The hash `GET /rules` currently reports.
    pub fn rules_hash(&self) -> String {
        self.shared.lock().rules_hash.clone()
    }

    /// What `/scan-cache` holds and answered.
    pub fn scan_cache_stats(&self) -> ScanCacheStats {
        scan_cache::stats(&self.shared.lock())
    }

    /// Every `PUT /package` evaluated so far, in arrival order.
    pub fn results(&self) -> Vec<RecordedResult> {
        self.shared.lock().results.clone()
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        let mut state = self.shared.lock();
        state.queue.expire(Instant::now());
        let counts = state.queue.counts();
        Stats {
            leases: state.queue.leases,
            pending: counts.pending,
            leased: counts.leased,
            finished: counts.finished,
            dead: counts.dead,
            requests: state.requests.clone(),
            token_grants: state.token_grants,
            unauthorized: state.unauthorized,
            faults_injected: state.faults_injected,
        }
    }

    /// No job is queued or leased: every job finished or was dead-lettered.
    pub fn is_drained(&self) -> bool {
        let mut state = self.shared.lock();
        state.queue.expire(Instant::now());
        state.queue.is_drained()
    }

    /// Waits up to `timeout` for [`FakeServer::is_drained`]; returns it.
    pub fn wait_drained(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            let now = Instant::now();
            state.queue.expire(now);
            if state.queue.is_drained() {
                return true;
            }
            if now >= deadline {
                return false;
            }
            // Wake for the next request, or when the next lease runs out.
            let mut wake = deadline;
            if let Some(lease_deadline) = state.queue.next_deadline() {
                wake = wake.min(lease_deadline);
            }
            let wait = wake.saturating_duration_since(now).max(Duration::from_millis(1));
            state = self.shared.changed.wait_timeout(state, wait).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// Adds a fault-injection rule; rules are tried in the order added.
    pub fn add_fault(&self, fault: Fault) {
        self.shared.lock().faults.add(fault);
    }

    /// Removes every fault-injection rule.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Seeds the PRNG that decides which requests a [`Fault`] with a rate
    /// below 1 hits (a fixed seed is used until this is called).
    pub fn set_fault_seed(&self, seed: u64) {
        self.shared.lock().faults.reseed(seed);
    }

    /// Invalidates every issued token and cookie: the next API call with one
    /// gets 401. Credentials still get new ones.
    pub fn revoke_tokens(&self) {
        self.shared.lock().tokens.revoke_all();
    }

    /// The identity provider rotates its signing key: the server can no
    /// longer verify the tokens issued so far and answers API calls that
    /// carry them with 500 "Unable to verify credentials", as the real one
    /// does. Tokens issued afterwards work.
    pub fn rotate_signing_key(&self) {
        self.shared.lock().tokens.rotate_key();
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for _ in 0..self.workers.len() {
            self.http.unblock();
        }
        for worker in self.workers.drain(..) {
            if worker.join().is_err() {
                log::warn!("fake server worker panicked");
            }
        }
    }
}
