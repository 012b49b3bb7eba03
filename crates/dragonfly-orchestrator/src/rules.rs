//! The node's current rule set: fetched from the server, compiled once per
//! hash, swapped atomically, kept when a new one fails.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use dragonfly_api::{Backoff, Job, ScanCacheContext, ScanCacheLease};
use dragonfly_engine::{
    CompileError, Engine, ResultStore, ReuseCache, ReuseMode, RuleSet, SharedResults, engine_digest,
    rules_digest,
};

use crate::node::Handles;
use crate::scan_cache::{Gate, RuleSetCache};

/// Waits after failed rule fetches or compiles: 5 s, doubling up to 10 min.
const RETRY: Backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(600));

/// Why rules could not be loaded.
#[derive(Debug, thiserror::Error)]
enum RulesError {
    #[error("can not fetch rules: {0}")]
    Fetch(#[from] dragonfly_api::Error),
    #[error("can not compile rules {hash}: {error}")]
    Compile { hash: String, error: CompileError },
}

impl RulesError {
    /// The hash whose rules did not compile (`None`: the fetch failed).
    fn failed_hash(&self) -> Option<&str> {
        match self {
            RulesError::Fetch(_) => None,
            RulesError::Compile { hash, .. } => Some(hash),
        }
    }
}

/// Holds the engine for the current rules. Readers clone the engine (an
/// `Arc` inside) and keep scanning with it even after a swap.
pub(crate) struct Rules<'a> {
    node: Handles<'a>,
    /// The scanning pool; rule groups are compiled on it.
    pool: &'a rayon::ThreadPool,
    current: RwLock<Option<Loaded>>,
    /// Where results outlive the process, if anywhere.
    store: Option<Arc<dyn ResultStore>>,
    /// Whether the server's scan cache may be asked now.
    gate: Arc<Gate>,
    /// Serialises refreshes so that a rule set is fetched and compiled once.
    refresh: Mutex<RetryState>,
}

/// A rule set ready to scan with.
#[derive(Clone)]
struct Loaded {
    engine: Engine,
    /// The server's scan cache for these rules, when it is used.
    scan_cache: Option<Arc<RuleSetCache>>,
}

#[derive(Default)]
struct RetryState {
    failures: u32,
    next_try: Option<Instant>,
    /// The hash whose rules failed to compile (`None`: the fetch failed).
    /// A job naming another hash is not held back by this failure.
    failed_hash: Option<String>,
}

impl<'a> Rules<'a> {
    pub(crate) fn new(
        node: Handles<'a>,
        pool: &'a rayon::ThreadPool,
        store: Option<Arc<dyn ResultStore>>,
    ) -> Self {
        Rules {
            node,
            pool,
            current: RwLock::new(None),
            store,
            gate: Arc::new(Gate::new(node.settings.scan_cache_rate)),
            refresh: Mutex::new(RetryState::default()),
        }
    }

    /// The engine for the current rules, if any were loaded yet.
    pub(crate) fn current(&self) -> Option<Engine> {
        Some(self.loaded()?.engine)
    }

    fn loaded(&self) -> Option<Loaded> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The engine to scan `job` with: the current rules', sharing results
    /// through the server's scan cache under the job's lease when it is used.
    pub(crate) fn engine_for(&self, job: &Job) -> Option<Engine> {
        let Loaded { engine, scan_cache } = self.loaded()?;
        let shared = scan_cache
            .map(|cache| Arc::new(cache.for_job(ScanCacheLease::of(job))) as Arc<dyn SharedResults>);
        Some(engine.with_shared(shared))
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
            Ok(loaded) => {
                let hash = loaded.engine.rules().hash().to_owned();
                let previous = self.current_hash();
                *backoff = RetryState::default();
                if previous.as_deref() == Some(hash.as_str()) {
                    // The server still serves the rules in use: ask again
                    // for this job's hash only after a pause.
                    if let Some(w) = wanted.filter(|w| *w != hash) {
                        log::warn!("a job asked for rules {w}, the server serves {hash}");
                        backoff.next_try = Some(Instant::now() + RETRY.base);
                        backoff.failed_hash = Some(w.to_owned());
                    }
                    return true;
                }
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(loaded);
                match previous {
                    Some(old) => log::info!("rules updated from {old} to {hash}"),
                    None => log::info!("rules {hash} loaded"),
                }
                if let Some(w) = wanted.filter(|w| *w != hash) {
                    log::warn!("a job asked for rules {w}, the server serves {hash}");
                }
            }
            Err(err) => {
                self.node.stats.rules_failed();
                backoff.failures += 1;
                let wait = RETRY.delay(backoff.failures);
                backoff.next_try = Some(Instant::now() + wait);
                backoff.failed_hash = err.failed_hash().map(str::to_owned);
                match self.current_hash() {
                    Some(old) => {
                        log::error!("{err}; still scanning with rules {old}, next try in {wait:?}")
                    }
                    None => log::error!("{err}; next try in {wait:?}"),
                }
            }
        }
        self.current().is_some()
    }

    /// The engine for the rules the server serves now.
    fn fetch_and_compile(&self) -> Result<Loaded, RulesError> {
        let set = self.node.client.rules()?;
        if let Some(current) = self.loaded().filter(|l| l.engine.rules().hash() == set.hash) {
            return Ok(current);
        }
        let started = Instant::now();
        let rules = match self.load_cached(&set.hash) {
            Some(rules) => rules,
            None => {
                let compiled = self
                    .pool
                    .install(|| RuleSet::compile(set.hash.clone(), &set.rules))
                    .map_err(|error| RulesError::Compile { hash: set.hash.clone(), error })?;
                self.store_cached(&compiled);
                compiled
            }
        };
        self.node.stats.rules_loaded(&set.hash, started.elapsed());
        log::info!("rules {} ready: {} rules in {:?}", set.hash, rules.rules().len(), started.elapsed());
        let settings = self.node.settings;
        let sources_digest = rules_digest(&set.rules);
        // A cache per rule set: results of other rules are never looked up.
        let reuse = (settings.scan_reuse != ReuseMode::Off).then(|| {
            let budget = usize::try_from(settings.cache_size).unwrap_or(usize::MAX);
            let cache = ReuseCache::new(settings.scan_reuse, budget);
            Arc::new(match &self.store {
                Some(store) => cache.with_store(Arc::clone(store), &rules, &sources_digest),
                None => cache,
            })
        });
        let scan_cache = (reuse.is_some() && settings.scan_cache).then(|| {
            let context = ScanCacheContext {
                scanner: "yara".to_owned(),
                rules_commit: set.hash.clone(),
                rules_digest: sources_digest,
                engine_digest: engine_digest(),
            };
            Arc::new(RuleSetCache::new(self.node.client.clone(), Arc::clone(&self.gate), context))
        });
        let engine = Engine::new(Arc::new(rules))
            .with_limits(settings.limits.clone())
            .with_timeout(settings.scan_timeout)
            .with_reuse(reuse);
        Ok(Loaded { engine, scan_cache })
    }

    fn cache_path(&self, hash: &str) -> Option<PathBuf> {
        let safe = hash.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !safe || hash.is_empty() {
            return None;
        }
        Some(
            self.node
                .settings
                .rules_cache_dir
                .as_ref()?
                .join(format!("{hash}.v{}.rules", env!("CARGO_PKG_VERSION"))),
        )
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
        let bytes = match rules.serialize() {
            Ok(bytes) => bytes,
            Err(err) => return log::warn!("can not cache rules {}: {err}", rules.hash()),
        };
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(err) = write() {
            log::warn!("can not cache rules in {}: {err}", path.display());
        }
    }
}
