//! Scan results reused by content: a file's raw matches (every matching
//! rule of the group it was scanned with, before the `filetype` filter, and
//! where its patterns matched) are kept under the file's SHA-256 and group,
//! so the same bytes are scanned once.
//!
//! A [`ReuseCache`] belongs to one engine, and an engine to one compiled
//! rule set: entries of another rule set can not be looked up by
//! construction. The key is the full digest; nothing shorter stands for
//! the bytes.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::evidence::Ranges;
use crate::plan::GroupId;

/// Whether results are reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReuseMode {
    /// Every file is scanned; nothing is kept.
    Off,
    /// Every file is scanned; hits are counted (and compared) but not used.
    Observe,
    /// Hits are used, a sample of them checked by scanning again.
    #[default]
    Reuse,
}

impl ReuseMode {
    /// The mode's name: `off`, `observe` or `reuse`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReuseMode::Off => "off",
            ReuseMode::Observe => "observe",
            ReuseMode::Reuse => "reuse",
        }
    }
}

impl fmt::Display for ReuseMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a text is not a [`ReuseMode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected off, observe or reuse, found {0:?}")]
pub struct ReuseModeError(String);

impl FromStr for ReuseMode {
    type Err = ReuseModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(ReuseMode::Off),
            "observe" => Ok(ReuseMode::Observe),
            "reuse" => Ok(ReuseMode::Reuse),
            _ => Err(ReuseModeError(s.to_owned())),
        }
    }
}

/// One hit in this many is scanned again and compared, by default.
pub const DEFAULT_AUDIT_EVERY: u64 = 100;

/// Default memory budget of a [`ReuseCache`]: 16 MiB, about 100 000
/// files' results.
pub const DEFAULT_BUDGET_BYTES: usize = 16 << 20;

/// What reuse did, per distribution ([`DistributionReport::reuse`](crate::DistributionReport::reuse))
/// or in all ([`ReuseCache::totals`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReuseCounts {
    /// Cache lookups (one per file and rule group).
    pub lookups: u64,
    /// Files looked up.
    pub candidate_files: u64,
    /// Files whose results came from the cache (in `observe` mode: would
    /// have).
    pub reused_files: u64,
    /// Bytes of those files.
    pub reused_bytes: u64,
    /// Entries added.
    pub inserted_files: u64,
    /// Entries dropped to stay within the budget.
    pub evicted_files: u64,
    /// Hits checked by scanning again.
    pub validated_files: u64,
    /// Checked hits whose kept result differed from the new scan.
    pub mismatched_files: u64,
    /// Files the rules ran over.
    pub engine_files: u64,
    /// Bytes the rules ran over.
    pub engine_bytes: u64,
    /// Microseconds of hashing and cache work.
    pub overhead_us: u64,
    /// Microseconds the rules ran.
    pub engine_us: u64,
}

impl ReuseCounts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &ReuseCounts) {
        self.lookups += other.lookups;
        self.candidate_files += other.candidate_files;
        self.reused_files += other.reused_files;
        self.reused_bytes += other.reused_bytes;
        self.inserted_files += other.inserted_files;
        self.evicted_files += other.evicted_files;
        self.validated_files += other.validated_files;
        self.mismatched_files += other.mismatched_files;
        self.engine_files += other.engine_files;
        self.engine_bytes += other.engine_bytes;
        self.overhead_us += other.overhead_us;
        self.engine_us += other.engine_us;
    }
}

/// [`ReuseCounts`] that scanning threads add to.
#[derive(Debug, Default)]
pub(crate) struct Tally([AtomicU64; 12]);

/// The fields of a [`Tally`], in [`ReuseCounts`] order.
#[derive(Clone, Copy)]
pub(crate) enum Count {
    Lookups,
    Candidates,
    Reused,
    ReusedBytes,
    Inserted,
    Evicted,
    Validated,
    Mismatched,
    EngineFiles,
    EngineBytes,
    OverheadUs,
    EngineUs,
}

impl Tally {
    pub(crate) fn add(&self, count: Count, n: u64) {
        self.0[count as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn counts(&self) -> ReuseCounts {
        let n = |c: Count| self.0[c as usize].load(Ordering::Relaxed);
        ReuseCounts {
            lookups: n(Count::Lookups),
            candidate_files: n(Count::Candidates),
            reused_files: n(Count::Reused),
            reused_bytes: n(Count::ReusedBytes),
            inserted_files: n(Count::Inserted),
            evicted_files: n(Count::Evicted),
            validated_files: n(Count::Validated),
            mismatched_files: n(Count::Mismatched),
            engine_files: n(Count::EngineFiles),
            engine_bytes: n(Count::EngineBytes),
            overhead_us: n(Count::OverheadUs),
            engine_us: n(Count::EngineUs),
        }
    }
}

/// The raw result of one file for one rule group: each matching rule (its
/// index in the rule set) with its pattern matches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Raw(pub(crate) Vec<(usize, Ranges)>);

impl Raw {
    /// About how many bytes it holds.
    fn weight(&self) -> usize {
        96 + self.0.iter().map(|(_, r)| 48 + r.weight()).sum::<usize>()
    }
}

type Key = ([u8; 32], GroupId);

/// Kept results, oldest first out.
#[derive(Debug, Default)]
struct Entries {
    map: HashMap<Key, Arc<Raw>>,
    order: VecDeque<Key>,
    bytes: usize,
}

/// Results kept by content for one engine (one rule set), within a memory
/// budget; the oldest entries go first.
#[derive(Debug)]
pub struct ReuseCache {
    mode: ReuseMode,
    budget: usize,
    audit_every: u64,
    entries: Mutex<Entries>,
    /// Set by a mismatch: nothing is looked up again.
    disabled: AtomicBool,
    hits: AtomicU64,
    totals: Mutex<ReuseCounts>,
}

impl ReuseCache {
    /// A cache in `mode` keeping at most about `budget_bytes` of results.
    pub fn new(mode: ReuseMode, budget_bytes: usize) -> ReuseCache {
        ReuseCache {
            mode,
            budget: budget_bytes,
            audit_every: DEFAULT_AUDIT_EVERY,
            entries: Mutex::default(),
            disabled: AtomicBool::new(false),
            hits: AtomicU64::new(0),
            totals: Mutex::default(),
        }
    }

    /// Checks one hit in `n` by scanning again (0: none; 1: every hit).
    pub fn with_audit_every(mut self, n: u64) -> ReuseCache {
        self.audit_every = n;
        self
    }

    /// The mode.
    pub fn mode(&self) -> ReuseMode {
        self.mode
    }

    /// Whether a mismatch turned reuse off for this rule set.
    pub fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }

    /// Entries kept.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What reuse did since the cache was made.
    pub fn totals(&self) -> ReuseCounts {
        *self.totals.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether lookups happen: not off, not disabled.
    pub(crate) fn active(&self) -> bool {
        self.mode != ReuseMode::Off && !self.is_disabled()
    }

    pub(crate) fn add_totals(&self, counts: &ReuseCounts) {
        self.totals.lock().unwrap_or_else(|e| e.into_inner()).add(counts);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, digest: &[u8; 32], group: GroupId) -> Option<Arc<Raw>> {
        self.lock().map.get(&(*digest, group)).cloned()
    }

    /// Keeps `raw`; returns how many older entries were dropped for it.
    pub(crate) fn insert(&self, digest: [u8; 32], group: GroupId, raw: Raw) -> u64 {
        let weight = raw.weight();
        if weight > self.budget {
            return 0;
        }
        let mut entries = self.lock();
        let key = (digest, group);
        if entries.map.contains_key(&key) {
            return 0;
        }
        let mut evicted = 0;
        while entries.bytes + weight > self.budget {
            let Some(old) = entries.order.pop_front() else { break };
            if let Some(gone) = entries.map.remove(&old) {
                entries.bytes -= gone.weight();
                evicted += 1;
            }
        }
        entries.map.insert(key, Arc::new(raw));
        entries.order.push_back(key);
        entries.bytes += weight;
        evicted
    }

    /// Whether this hit is one to check by scanning again.
    pub(crate) fn audit_now(&self) -> bool {
        let n = self.hits.fetch_add(1, Ordering::Relaxed) + 1;
        self.audit_every > 0 && n.is_multiple_of(self.audit_every)
    }

    /// A kept result differed from a new scan: reuse stops for this rule
    /// set and what is kept is dropped.
    pub(crate) fn mismatch(&self, path: &str) {
        self.disabled.store(true, Ordering::Relaxed);
        let mut entries = self.lock();
        *entries = Entries::default();
        log::error!(
            "scan reuse: a kept result differs from a new scan of `{path}`; reuse is off for this rule \
             set and the distribution is scanned again in full"
        );
    }

    #[cfg(test)]
    pub(crate) fn replace_all(&self, raw: Raw) {
        let mut entries = self.lock();
        for value in entries.map.values_mut() {
            *value = Arc::new(raw.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_and_print() {
        for mode in [ReuseMode::Off, ReuseMode::Observe, ReuseMode::Reuse] {
            assert_eq!(mode.to_string().parse::<ReuseMode>(), Ok(mode));
        }
        assert_eq!(" Observe ".parse::<ReuseMode>(), Ok(ReuseMode::Observe));
        assert!("on".parse::<ReuseMode>().unwrap_err().to_string().contains("off, observe or reuse"));
    }

    #[test]
    fn the_budget_drops_the_oldest_and_keys_are_whole_digests() {
        let cache = ReuseCache::new(ReuseMode::Reuse, 3 * Raw::default().weight());
        let digest = |last: u8| {
            let mut d = [7u8; 32];
            d[31] = last;
            d
        };
        for i in 0..3 {
            assert_eq!(cache.insert(digest(i), GroupId(0), Raw::default()), 0);
        }
        assert_eq!(cache.insert(digest(3), GroupId(0), Raw::default()), 1);
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&digest(0), GroupId(0)).is_none(), "oldest dropped");
        assert!(cache.get(&digest(3), GroupId(0)).is_some());
        // One bit of the digest, or another group, is another key.
        assert!(cache.get(&digest(4), GroupId(0)).is_none());
        assert!(cache.get(&digest(3), GroupId(1)).is_none());
    }

    fn engine(cache: &Arc<ReuseCache>) -> crate::Engine {
        let source =
            r#"rule call { meta: weight = 3 filetype = ".py" strings: $a = "os.system(" condition: $a }"#;
        let rules = crate::RuleSet::compile("t", [("a.yar", source)]).unwrap();
        crate::Engine::new(Arc::new(rules)).with_reuse(Some(Arc::clone(cache)))
    }

    fn files() -> Vec<crate::File> {
        vec![
            crate::File::new("a/x.py", b"import os\nos.system('id')\n".to_vec()),
            crate::File::new("a/y.py", b"print(1)\n".to_vec()),
        ]
    }

    #[test]
    fn a_wrong_kept_result_turns_reuse_off_and_the_distribution_is_scanned_again() {
        let cache = Arc::new(ReuseCache::new(ReuseMode::Reuse, 1 << 20).with_audit_every(1));
        let engine = engine(&cache);
        let first = engine.scan_files("d", files());
        assert_eq!((first.reuse.inserted_files, first.score()), (2, 3));
        // Every kept result now says "nothing matched".
        cache.replace_all(Raw::default());
        let second = engine.scan_files("d", files());
        assert_eq!(second.score(), 3, "the wrong result is never used");
        assert!(second.reuse.mismatched_files >= 1, "{:?}", second.reuse);
        assert!(cache.is_disabled() && cache.is_empty());
        // Off for good: files are scanned, nothing is looked up.
        let third = engine.scan_files("d", files());
        assert_eq!((third.score(), third.reuse.lookups, third.reuse.engine_files), (3, 0, 2));
    }

    #[test]
    fn observe_scans_everything_and_counts_what_it_would_reuse() {
        let cache = Arc::new(ReuseCache::new(ReuseMode::Observe, 1 << 20));
        let engine = engine(&cache);
        engine.scan_files("d", files());
        let again = engine.scan_files("d", files());
        assert_eq!(
            (again.reuse.reused_files, again.reuse.engine_files, again.reuse.validated_files),
            (2, 2, 2)
        );
        assert_eq!(again.reuse.mismatched_files, 0);
        assert_eq!(cache.totals().inserted_files, 2);
        let off = Arc::new(ReuseCache::new(ReuseMode::Off, 1 << 20));
        let report = engine.clone().with_reuse(Some(Arc::clone(&off))).scan_files("d", files());
        assert_eq!((report.reuse.lookups, report.reuse.engine_files, off.len()), (0, 2, 0));
    }

    #[test]
    fn audits_sample_hits() {
        let cache = ReuseCache::new(ReuseMode::Reuse, 1 << 20).with_audit_every(3);
        let audited: Vec<bool> = (0..6).map(|_| cache.audit_now()).collect();
        assert_eq!(audited, [false, false, true, false, false, true]);
        let never = ReuseCache::new(ReuseMode::Reuse, 1 << 20).with_audit_every(0);
        assert!((0..10).all(|_| !never.audit_now()));
    }
}
