//! The node's current rule set: fetched from the server, compiled once per
//! hash, swapped atomically, kept when a new one fails.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use dragonfly_api::Client;
use dragonfly_engine::{Engine, Limits, RuleSet};

use crate::stats::Stats;

/// First wait after a failed rule fetch or compile; doubles up to
/// [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(5);
const MAX_RETRY: Duration = Duration::from_secs(600);

/// Holds the engine for the current rules. Readers clone the engine (an
/// `Arc` inside) and keep scanning with it even after a swap.
pub(crate) struct Rules {
    client: Client,
    limits: Limits,
    timeout: Duration,
    cache_dir: Option<PathBuf>,
    stats: Arc<Stats>,
    /// The scanning pool; rule groups are compiled on it.
    pool: Arc<rayon::ThreadPool>,
    current: RwLock<Option<Engine>>,
    /// Serialises refreshes so that a rule set is fetched and compiled once.
    refresh: Mutex<Backoff>,
}

#[derive(Default)]
struct Backoff {
    failures: u32,
    next_try: Option<Instant>,
    /// The hash whose rules failed to compile (`None`: the fetch failed).
    /// A job naming another hash is not held back by this failure.
    failed_hash: Option<String>,
}

impl Rules {
    pub(crate) fn new(
        client: Client,
        limits: Limits,
        timeout: Duration,
        cache_dir: Option<PathBuf>,
        stats: Arc<Stats>,
        pool: Arc<rayon::ThreadPool>,
    ) -> Self {
        Rules {
            client,
            limits,
            timeout,
            cache_dir,
            stats,
            pool,
            current: RwLock::new(None),
            refresh: Mutex::new(Backoff::default()),
        }
    }

    /// The engine for the current rules, if any were loaded yet.
    pub(crate) fn current(&self) -> Option<Engine> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The hash of the current rules.
    pub(crate) fn current_hash(&self) -> Option<String> {
        self.current().map(|e| e.rules().hash().to_owned())
    }

    /// Makes sure rules with `wanted` hash (or, with `None`, any rules) are
    /// loaded: fetches `/rules` and compiles them unless the current rules
    /// already have that hash or a recent failure says to wait. Returns
    /// whether rules are loaded (old ones count when the new ones fail).
    pub(crate) fn ensure(&self, wanted: Option<&str>) -> bool {
        let satisfied = |hash: Option<String>| match (wanted, hash) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(w), Some(h)) => w == h,
        };
        if satisfied(self.current_hash()) {
            return true;
        }
        let mut backoff = self.refresh.lock().unwrap_or_else(|e| e.into_inner());
        // Another thread may have refreshed while this one waited.
        if satisfied(self.current_hash()) {
            return true;
        }
        let waiting = backoff.next_try.is_some_and(|t| Instant::now() < t);
        let other_hash = matches!((wanted, &backoff.failed_hash), (Some(w), Some(f)) if w != f);
        if waiting && !other_hash {
            return self.current().is_some();
        }
        match self.fetch_and_compile() {
            Ok(engine) => {
                let hash = engine.rules().hash().to_owned();
                let previous = self.current_hash();
                *backoff = Backoff::default();
                if previous.as_deref() == Some(hash.as_str()) {
                    // The server still serves the rules in use: ask again
                    // for this job's hash only after a pause.
                    if let Some(w) = wanted.filter(|w| *w != hash) {
                        log::warn!("a job asked for rules {w}, the server serves {hash}");
                        backoff.next_try = Some(Instant::now() + FIRST_RETRY);
                        backoff.failed_hash = Some(w.to_owned());
                    }
                    return true;
                }
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(engine);
                *self.stats.rule_hash.lock().unwrap_or_else(|e| e.into_inner()) = Some(hash.clone());
                match previous {
                    Some(old) => log::info!("rules updated from {old} to {hash}"),
                    None => log::info!("rules {hash} loaded"),
                }
                if let Some(w) = wanted.filter(|w| *w != hash) {
                    log::warn!("a job asked for rules {w}, the server serves {hash}");
                }
            }
            Err((message, failed_hash)) => {
                Stats::add(&self.stats.rule_failures, 1);
                let wait = FIRST_RETRY.saturating_mul(1 << backoff.failures.min(10)).min(MAX_RETRY);
                backoff.failures += 1;
                backoff.next_try = Some(Instant::now() + wait);
                backoff.failed_hash = failed_hash;
                match self.current_hash() {
                    Some(old) => {
                        log::error!("{message}; still scanning with rules {old}, next try in {wait:?}")
                    }
                    None => log::error!("{message}; next try in {wait:?}"),
                }
            }
        }
        self.current().is_some()
    }

    /// The engine for the rules the server serves now; on failure, the
    /// message and, when compilation failed, the hash that did not compile.
    fn fetch_and_compile(&self) -> Result<Engine, (String, Option<String>)> {
        let set = self.client.rules().map_err(|e| (format!("can not fetch rules: {e}"), None))?;
        if self.current_hash().as_deref() == Some(set.hash.as_str()) {
            return self.current().ok_or_else(|| ("rules vanished".to_owned(), None));
        }
        let started = Instant::now();
        let rules = self.load_cached(&set.hash).map_or_else(
            || {
                let compiled =
                    self.pool.install(|| RuleSet::compile(set.hash.clone(), &set.rules)).map_err(|e| {
                        (format!("can not compile rules {}: {e}", set.hash), Some(set.hash.clone()))
                    })?;
                self.store_cached(&compiled);
                Ok::<_, (String, Option<String>)>(compiled)
            },
            Ok,
        )?;
        Stats::add(&self.stats.rule_loads, 1);
        self.stats
            .rule_compile_micros
            .store(started.elapsed().as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
        log::info!("rules {} ready: {} rules in {:?}", set.hash, rules.rules().len(), started.elapsed());
        Ok(Engine::new(Arc::new(rules)).with_limits(self.limits.clone()).with_timeout(self.timeout))
    }

    fn cache_path(&self, hash: &str) -> Option<PathBuf> {
        let safe = hash.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !safe || hash.is_empty() {
            return None;
        }
        Some(self.cache_dir.as_ref()?.join(format!("{hash}.v{}.rules", env!("CARGO_PKG_VERSION"))))
    }

    fn load_cached(&self, hash: &str) -> Option<RuleSet> {
        let path = self.cache_path(hash)?;
        let bytes = std::fs::read(&path).ok()?;
        match RuleSet::deserialize(hash, &bytes) {
            Ok(rules) => {
                log::info!("rules {hash} loaded from cache {}", path.display());
                Some(rules)
            }
            Err(err) => {
                log::warn!("ignoring rule cache {}: {err}", path.display());
                None
            }
        }
    }

    fn store_cached(&self, rules: &RuleSet) {
        let Some(path) = self.cache_path(rules.hash()) else { return };
        let result = rules.serialize().map_err(|e| e.to_string()).and_then(|bytes| {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            }
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, &path).map_err(|e| e.to_string())
        });
        if let Err(err) = result {
            log::warn!("can not cache rules in {}: {err}", path.display());
        }
    }
}
