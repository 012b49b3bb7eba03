//! Scan results reused by content: a file's raw matches (every matching
//! rule of the group it was scanned with, before the `filetype` filter, and
//! where its patterns matched) are kept under the file's SHA-256 and group,
//! so the same bytes are scanned once.
//!
//! A [`ReuseCache`] belongs to one engine, and an engine to one compiled
//! rule set: entries of another rule set can not be looked up by
//! construction. The key is the full digest; nothing shorter stands for
//! the bytes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
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

/// Where kept results outlive the process (a file under the node's cache
/// directory). Errors are the store's to log: a result that can not be
/// loaded is scanned again.
pub trait ResultStore: Send + Sync + fmt::Debug {
    /// The value saved under `key`, if any.
    fn load(&self, key: &[u8]) -> Option<Vec<u8>>;
    /// Saves `(key, value)` pairs, keeping the store within its budget.
    fn save(&self, entries: Vec<(Vec<u8>, Vec<u8>)>);
    /// Removes every entry whose key starts with `prefix`.
    fn forget(&self, prefix: &[u8]);
}

/// `rules_digest` of the scan-cache protocol: SHA-256 over the rule files
/// sorted by name, each file's name then its source, each preceded by its
/// length in bytes as an 8-byte big-endian integer (64 hex digits).
pub fn rules_digest<N: AsRef<str>, S: AsRef<str>>(sources: impl IntoIterator<Item = (N, S)>) -> String {
    use sha2::Digest;
    let mut sorted: Vec<(N, S)> = sources.into_iter().collect();
    sorted.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
    let mut hasher = sha2::Sha256::new();
    for (name, source) in &sorted {
        for part in [name.as_ref(), source.as_ref()] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
    }
    crate::scan::hex(&hasher.finalize())
}

/// The format of kept results; part of [`engine_digest`].
const RESULT_FORMAT: u32 = 1;

/// Identifies this engine and how it reads results (64 hex digits): the
/// same on every node of one release, from versions and features, never
/// from the binary's bytes.
pub fn engine_digest() -> String {
    use sha2::Digest;
    let identity = format!(
        // yara-x as the workspace pins it (with yara-x-parser, "=1.22.1").
        "dragonfly-engine {}; yara-x 1.22.1; modules {}; results v{RESULT_FORMAT}",
        env!("CARGO_PKG_VERSION"),
        if cfg!(feature = "all-modules") { "all" } else { "text" },
    );
    crate::scan::hex(&sha2::Sha256::digest(identity.as_bytes()))
}

/// One hit in this many is scanned again and compared, by default.
pub const DEFAULT_AUDIT_EVERY: u64 = 100;

/// Default memory budget of a [`ReuseCache`]: 16 MiB, about 90 000
/// files' results and 13 000 zip entries' extractions (an eighth).
pub const DEFAULT_BUDGET_BYTES: usize = 16 << 20;

/// What reuse did, per distribution ([`DistributionReport::reuse`](crate::DistributionReport::reuse))
/// or in all ([`ReuseCache::totals`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
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
    /// Results taken from the fleet's shared results (see
    /// [`SharedResults`](crate::SharedResults)).
    pub shared_files: u64,
    /// Calls to the shared results that failed.
    pub errors: u64,
    /// Of the reused files, zip entries not even decompressed: stored
    /// alike to an entry seen before, and clean.
    pub unextracted_files: u64,
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
        self.shared_files += other.shared_files;
        self.errors += other.errors;
        self.unextracted_files += other.unextracted_files;
    }
}

/// [`ReuseCounts`] that scanning threads add to.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    counts: [AtomicU64; 15],
    /// Results scanned in this distribution, for the shared results: by
    /// digest, each group's.
    pub(crate) fresh: Mutex<Fresh>,
}

/// Results scanned in one distribution: by digest, each group's.
pub(crate) type Fresh = HashMap<[u8; 32], Vec<(GroupId, Arc<Raw>)>>;

/// One rule's result in a portable form: its name, match count and
/// `(pattern, start, end)` ranges.
pub(crate) type RuleParts<N, P> = (N, u64, Vec<(P, usize, usize)>);

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
    Shared,
    Errors,
    Unextracted,
}

impl Tally {
    pub(crate) fn add(&self, count: Count, n: u64) {
        self.counts[count as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn counts(&self) -> ReuseCounts {
        let n = |c: Count| self.counts[c as usize].load(Ordering::Relaxed);
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
            shared_files: n(Count::Shared),
            errors: n(Count::Errors),
            unextracted_files: n(Count::Unextracted),
        }
    }
}

/// The raw result of one file for one rule group: each matching rule (its
/// index in the rule set) with its pattern matches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Raw(pub(crate) Vec<(usize, Ranges)>);

impl Raw {
    /// The stored form: per rule its name, match count and ranges.
    fn encode(&self, rules: &crate::RuleSet) -> Vec<u8> {
        let mut out = Vec::new();
        let text = |out: &mut Vec<u8>, s: &str| {
            out.extend((s.len() as u32).to_le_bytes());
            out.extend(s.as_bytes());
        };
        out.extend((self.0.len() as u32).to_le_bytes());
        for (index, ranges) in &self.0 {
            text(&mut out, &rules.rules()[*index].name);
            out.extend(ranges.count().to_le_bytes());
            let found = ranges.found();
            out.extend((found.len() as u32).to_le_bytes());
            for (pattern, range) in found {
                text(&mut out, pattern);
                out.extend((range.start as u64).to_le_bytes());
                out.extend((range.end as u64).to_le_bytes());
            }
        }
        out
    }

    /// Reads [`Raw::encode`]'s form for a file of `size` bytes; `None` when
    /// it is not that, names a rule `rules` does not have, or could not come
    /// from a scan of such a file.
    fn decode(bytes: &[u8], rules: &crate::RuleSet, size: usize) -> Option<Raw> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Option<&[u8]> {
            let slice = bytes.get(at..at.checked_add(n)?)?;
            at += n;
            Some(slice)
        };
        fn u32_of(b: &[u8]) -> usize {
            u32::from_le_bytes(b.try_into().unwrap_or_default()) as usize
        }
        fn u64_of(b: &[u8]) -> u64 {
            u64::from_le_bytes(b.try_into().unwrap_or_default())
        }
        let n_rules = u32_of(take(4)?);
        let mut parts: Vec<RuleParts<&str, String>> = Vec::with_capacity(n_rules.min(1024));
        for _ in 0..n_rules {
            let len = u32_of(take(4)?);
            let name = std::str::from_utf8(take(len)?).ok()?;
            let count = u64_of(take(8)?);
            let n_found = u32_of(take(4)?);
            if n_found > crate::MAX_EVIDENCE {
                return None;
            }
            let mut found = Vec::with_capacity(n_found);
            for _ in 0..n_found {
                let len = u32_of(take(4)?);
                let pattern = std::str::from_utf8(take(len)?).ok()?.to_owned();
                let start = usize::try_from(u64_of(take(8)?)).ok()?;
                let end = usize::try_from(u64_of(take(8)?)).ok()?;
                found.push((pattern, start, end));
            }
            parts.push((name, count, found));
        }
        if at != bytes.len() {
            return None;
        }
        Raw::checked(parts, rules, size)
    }

    /// The result of per-rule `(name, match count, [(pattern, start, end)])`
    /// for a file of `size` bytes, if a scan could give it: rules `rules`
    /// has, each once, at most [`MAX_EVIDENCE`](crate::MAX_EVIDENCE) ranges
    /// and no more than counted, each within the file.
    pub(crate) fn checked<N: AsRef<str>>(
        parts: Vec<RuleParts<N, String>>,
        rules: &crate::RuleSet,
        size: usize,
    ) -> Option<Raw> {
        let mut raw: Vec<(usize, Ranges)> = Vec::with_capacity(parts.len());
        for (name, count, found) in parts {
            let index = rules.index_of(name.as_ref())?;
            // Private rules are never reported by a scan.
            if rules.rules()[index].private
                || raw.iter().any(|(i, _)| *i == index)
                || found.len() > crate::MAX_EVIDENCE
                || found.len() as u64 > count
            {
                return None;
            }
            let mut ranges = Vec::with_capacity(found.len());
            for (pattern, start, end) in found {
                if start > end || end > size || !pattern.starts_with('$') {
                    return None;
                }
                ranges.push((pattern, start..end));
            }
            raw.push((index, Ranges::from_parts(ranges, count)));
        }
        Some(Raw(raw))
    }

    /// Per rule its name, match count and `(pattern, start, end)` ranges.
    pub(crate) fn parts<'r>(&self, rules: &'r crate::RuleSet) -> Vec<RuleParts<&'r str, &str>> {
        self.0
            .iter()
            .map(|(index, ranges)| {
                let found = ranges.found().iter().map(|(p, r)| (p.as_str(), r.start, r.end)).collect();
                (rules.rules()[*index].name.as_str(), ranges.count(), found)
            })
            .collect()
    }

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
    /// The keys whose results came from the fleet's shared results.
    shared: HashSet<Key>,
}

/// About how many bytes one known zip entry takes.
const MEMBER_WEIGHT: usize = 160;

/// Zip entries known by how they are stored (a SHA-256 over their stored
/// form): the SHA-256 and size of what they extract to, oldest first out.
#[derive(Debug, Default)]
struct Members {
    map: HashMap<[u8; 32], ([u8; 32], u64)>,
    order: VecDeque<[u8; 32]>,
}

/// Results kept by content for one engine (one rule set), within a memory
/// budget; the oldest entries go first.
#[derive(Debug)]
pub struct ReuseCache {
    mode: ReuseMode,
    budget: usize,
    audit_every: u64,
    entries: Mutex<Entries>,
    /// Within an eighth of the budget.
    members: Mutex<Members>,
    /// Set by a mismatch: nothing is looked up again.
    disabled: AtomicBool,
    hits: AtomicU64,
    totals: Mutex<ReuseCounts>,
    store: Option<Store>,
}

/// A [`ResultStore`] with the key prefix of one engine and rule set, and
/// the entries not saved yet.
#[derive(Debug)]
struct Store {
    store: Arc<dyn ResultStore>,
    namespace: [u8; 32],
    pending: Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl Store {
    /// Where what a zip entry stored as `stored` extracts to is kept: the
    /// prefix, `m`, then `stored` (65 bytes; a result's key has 68).
    fn member_key(&self, stored: &[u8; 32]) -> Vec<u8> {
        let mut key = Vec::with_capacity(65);
        key.extend(self.namespace);
        key.push(b'm');
        key.extend(stored);
        key
    }

    fn key(&self, digest: &[u8; 32], group: GroupId) -> Vec<u8> {
        let mut key = Vec::with_capacity(68);
        key.extend(self.namespace);
        key.extend(digest);
        key.extend((group.0 as u32).to_le_bytes());
        key
    }
}

impl ReuseCache {
    /// A cache in `mode` keeping at most about `budget_bytes`: results, and
    /// an eighth of it for what zip entries extract to.
    pub fn new(mode: ReuseMode, budget_bytes: usize) -> ReuseCache {
        ReuseCache {
            mode,
            budget: budget_bytes,
            audit_every: DEFAULT_AUDIT_EVERY,
            entries: Mutex::default(),
            members: Mutex::default(),
            disabled: AtomicBool::new(false),
            hits: AtomicU64::new(0),
            totals: Mutex::default(),
            store: None,
        }
    }

    /// Also keeps results in `store`, under a prefix of [`engine_digest`],
    /// `rules`' hash and `sources_digest` (the [`rules_digest`] of the
    /// sources `rules` were compiled from): results of other rules or
    /// engines are never read. A cache with a store must only serve an
    /// engine with `rules`.
    pub fn with_store(
        mut self,
        store: Arc<dyn ResultStore>,
        rules: &crate::RuleSet,
        sources_digest: &str,
    ) -> ReuseCache {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        hasher.update(engine_digest().as_bytes());
        hasher.update([0]);
        hasher.update(rules.hash().as_bytes());
        hasher.update([0]);
        hasher.update(sources_digest.as_bytes());
        self.store = Some(Store { store, namespace: hasher.finalize().into(), pending: Mutex::default() });
        self
    }

    /// Saves the results kept since the last call to the store, if any.
    pub fn flush(&self) {
        let Some(store) = &self.store else { return };
        let pending = std::mem::take(&mut *store.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if !pending.is_empty() && self.active() {
            store.store.save(pending);
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

    pub(crate) fn get(
        &self,
        digest: &[u8; 32],
        group: GroupId,
        rules: &crate::RuleSet,
        size: usize,
    ) -> Option<Arc<Raw>> {
        if let Some(raw) = self.lock().map.get(&(*digest, group)).cloned() {
            return Some(raw);
        }
        let store = self.store.as_ref()?;
        let raw = Arc::new(Raw::decode(&store.store.load(&store.key(digest, group))?, rules, size)?);
        self.keep(*digest, group, Arc::clone(&raw));
        Some(raw)
    }

    /// Keeps `raw` in memory and, at the next [`ReuseCache::flush`], in
    /// the store; returns how many older entries were dropped for it.
    pub(crate) fn insert(
        &self,
        digest: [u8; 32],
        group: GroupId,
        raw: Arc<Raw>,
        rules: &crate::RuleSet,
    ) -> u64 {
        if let Some(store) = &self.store
            && raw.weight() <= self.results_budget()
        {
            let entry = (store.key(&digest, group), raw.encode(rules));
            store.pending.lock().unwrap_or_else(|e| e.into_inner()).push(entry);
        }
        self.keep(digest, group, raw)
    }

    /// Keeps `raw` in memory; returns how many older entries were dropped.
    fn keep(&self, digest: [u8; 32], group: GroupId, raw: Arc<Raw>) -> u64 {
        self.keep_in(&mut self.lock(), (digest, group), raw).unwrap_or(0)
    }

    /// Keeps `raw` under `key` in `entries`: how many older entries were
    /// dropped for it, or `None` when it was not kept (known already, or
    /// over the whole budget).
    fn keep_in(&self, entries: &mut Entries, key: Key, raw: Arc<Raw>) -> Option<u64> {
        let weight = raw.weight();
        let budget = self.results_budget();
        if weight > budget || entries.map.contains_key(&key) {
            return None;
        }
        let mut evicted = 0;
        while entries.bytes + weight > budget {
            let Some(old) = entries.order.pop_front() else { break };
            if let Some(gone) = entries.map.remove(&old) {
                entries.bytes -= gone.weight();
                entries.shared.remove(&old);
                evicted += 1;
            }
        }
        entries.map.insert(key, raw);
        entries.order.push_back(key);
        entries.bytes += weight;
        Some(evicted)
    }

    /// Keeps `raw`, taken from the fleet's shared results, in memory only
    /// (it is not saved to the store); true if it was not kept before.
    pub(crate) fn keep_shared(&self, digest: [u8; 32], group: GroupId, raw: Arc<Raw>) -> bool {
        let mut entries = self.lock();
        let kept = self.keep_in(&mut entries, (digest, group), raw).is_some();
        if kept {
            entries.shared.insert((digest, group));
        }
        kept
    }

    /// Whether the result kept under `(digest, group)` came from the
    /// fleet's shared results.
    pub(crate) fn is_shared(&self, digest: &[u8; 32], group: GroupId) -> bool {
        self.lock().shared.contains(&(*digest, group))
    }

    /// What the zip entry stored as `stored` (see [`stored_key`]) was seen
    /// to extract to: its SHA-256 and size.
    pub(crate) fn member(&self, stored: &[u8; 32]) -> Option<([u8; 32], u64)> {
        if let Some(known) = self.members.lock().unwrap_or_else(|e| e.into_inner()).map.get(stored).copied() {
            return Some(known);
        }
        let store = self.store.as_ref()?;
        let value = store.store.load(&store.member_key(stored))?;
        let (digest, size) = value.split_first_chunk::<32>()?;
        let size = u64::from_le_bytes(size.try_into().ok()?);
        self.keep_member(*stored, *digest, size);
        Some((*digest, size))
    }

    /// Remembers what the zip entry stored as `stored` extracted to, in
    /// memory and, at the next [`ReuseCache::flush`], in the store.
    pub(crate) fn remember_member(&self, stored: [u8; 32], digest: [u8; 32], size: u64) {
        if let Some(store) = &self.store {
            let mut value = digest.to_vec();
            value.extend(size.to_le_bytes());
            let entry = (store.member_key(&stored), value);
            store.pending.lock().unwrap_or_else(|e| e.into_inner()).push(entry);
        }
        self.keep_member(stored, digest, size);
    }

    fn keep_member(&self, stored: [u8; 32], digest: [u8; 32], size: u64) {
        let capacity = self.budget / 8 / MEMBER_WEIGHT;
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        if capacity == 0 || members.map.insert(stored, (digest, size)).is_some() {
            return;
        }
        members.order.push_back(stored);
        while members.order.len() > capacity {
            if let Some(old) = members.order.pop_front() {
                members.map.remove(&old);
            }
        }
    }

    /// The budget of results: all but the eighth kept for zip entries.
    fn results_budget(&self) -> usize {
        self.budget - self.budget / 8
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
        *self.members.lock().unwrap_or_else(|e| e.into_inner()) = Members::default();
        if let Some(store) = &self.store {
            store.pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
            // What is on disk for these rules is not trusted either.
            store.store.forget(&store.namespace);
        }
        log::error!(
            "scan reuse: a kept result differs from a new scan of `{path}`; reuse is off for this rule \
             set and the distribution is scanned again in full"
        );
    }

    #[cfg(test)]
    pub(crate) fn replace_member_digests(&self, digest: [u8; 32]) {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        for value in members.map.values_mut() {
            value.0 = digest;
        }
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
            let text = serde_json::to_string(&mode).unwrap();
            assert_eq!(text, format!("\"{mode}\""));
            assert_eq!(serde_json::from_str::<ReuseMode>(&text).unwrap(), mode);
        }
        assert!(serde_json::from_str::<ReuseMode>("\"on\"").is_err());
    }

    #[test]
    fn the_budget_drops_the_oldest_and_keys_are_whole_digests() {
        let rules = crate::RuleSet::compile("t", [("a.yar", "rule a { condition: true }")]).unwrap();
        // Room for three results (an eighth goes to zip entries).
        let cache = ReuseCache::new(ReuseMode::Reuse, 3 * Raw::default().weight() * 8 / 7 + 1);
        let digest = |last: u8| {
            let mut d = [7u8; 32];
            d[31] = last;
            d
        };
        for i in 0..3 {
            assert_eq!(cache.insert(digest(i), GroupId(0), Arc::default(), &rules), 0);
        }
        assert_eq!(cache.insert(digest(3), GroupId(0), Arc::default(), &rules), 1);
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&digest(0), GroupId(0), &rules, 0).is_none(), "oldest dropped");
        assert!(cache.get(&digest(3), GroupId(0), &rules, 0).is_some());
        // One bit of the digest, or another group, is another key.
        assert!(cache.get(&digest(4), GroupId(0), &rules, 0).is_none());
        assert!(cache.get(&digest(3), GroupId(1), &rules, 0).is_none());
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

    /// A store in memory, as a file would be across restarts.
    #[derive(Debug, Default)]
    struct MemoryStore(Mutex<HashMap<Vec<u8>, Vec<u8>>>);

    impl ResultStore for MemoryStore {
        fn load(&self, key: &[u8]) -> Option<Vec<u8>> {
            self.0.lock().unwrap().get(key).cloned()
        }
        fn save(&self, entries: Vec<(Vec<u8>, Vec<u8>)>) {
            self.0.lock().unwrap().extend(entries);
        }
        fn forget(&self, prefix: &[u8]) {
            self.0.lock().unwrap().retain(|key, _| !key.starts_with(prefix));
        }
    }

    #[test]
    fn a_store_keeps_results_across_restarts_for_the_same_rules_only() {
        let store: Arc<MemoryStore> = Arc::default();
        let start = |source: &str, hash: &str| {
            let rules = Arc::new(crate::RuleSet::compile(hash, [("a.yar", source)]).unwrap());
            let cache = ReuseCache::new(ReuseMode::Reuse, 1 << 20).with_audit_every(0).with_store(
                store.clone(),
                &rules,
                &rules_digest([("a.yar", source)]),
            );
            crate::Engine::new(rules).with_reuse(Some(Arc::new(cache)))
        };
        let source =
            r#"rule call { meta: weight = 3 filetype = ".py" strings: $a = "os.system(" condition: $a }"#;
        let first = start(source, "r1").scan_files("d", files());
        assert_eq!((first.reuse.engine_files, first.score()), (2, 3));
        assert_eq!(store.0.lock().unwrap().len(), 2, "saved when the distribution was done");
        // A new process: the results come from the store, evidence and all.
        let again = start(source, "r1").scan_files("d", files());
        assert_eq!((again.reuse.engine_files, again.reuse.reused_files), (0, 2));
        assert_eq!(again.files, first.files);
        // Other rules: nothing is read.
        let other = start(source, "r2").scan_files("d", files());
        assert_eq!(other.reuse.engine_files, 2);
        // A stored value that is not a result is a miss.
        for value in store.0.lock().unwrap().values_mut() {
            value.truncate(value.len() / 2);
        }
        let damaged = start(source, "r1").scan_files("d", files());
        assert_eq!((damaged.reuse.engine_files, damaged.score()), (2, 3));
    }

    #[test]
    fn rules_that_read_the_clock_are_never_reused_and_a_mismatch_forgets_the_store() {
        let timed = r#"import "time"
            rule fresh { meta: filetype = ".py" strings: $a = "os.system(" condition: $a and time.now() > 0 }"#;
        let rules = Arc::new(crate::RuleSet::compile("t", [("a.yar", timed)]).unwrap());
        assert!(rules.reads_the_clock());
        let cache = Arc::new(ReuseCache::new(ReuseMode::Reuse, 1 << 20));
        let engine = crate::Engine::new(rules).with_reuse(Some(Arc::clone(&cache)));
        engine.scan_files("d", files());
        let again = engine.scan_files("d", files());
        assert_eq!((again.reuse.lookups, again.reuse.engine_files, cache.len()), (0, 2, 0));

        let store: Arc<MemoryStore> = Arc::default();
        let source =
            r#"rule call { meta: weight = 3 filetype = ".py" strings: $a = "os.system(" condition: $a }"#;
        let rules = Arc::new(crate::RuleSet::compile("r1", [("a.yar", source)]).unwrap());
        let cache = Arc::new(ReuseCache::new(ReuseMode::Reuse, 1 << 20).with_audit_every(1).with_store(
            store.clone(),
            &rules,
            "d1",
        ));
        let engine = crate::Engine::new(rules).with_reuse(Some(Arc::clone(&cache)));
        engine.scan_files("d", files());
        assert_eq!(store.0.lock().unwrap().len(), 2);
        cache.replace_all(Raw::default());
        let checked = engine.scan_files("d", files());
        assert_eq!(checked.score(), 3);
        assert!(store.0.lock().unwrap().is_empty(), "nothing kept for these rules is trusted");
    }

    #[test]
    fn results_read_back_as_written() {
        let rules = crate::RuleSet::compile("t", [("a.yar", "rule a { strings: $x = \"x\" condition: $x }")])
            .unwrap();
        let raw = Raw(vec![(0, Ranges::from_parts(vec![("$x".into(), 3..4), ("$x".into(), 9..10)], 7))]);
        let bytes = raw.encode(&rules);
        assert_eq!(Raw::decode(&bytes, &rules, 10), Some(raw.clone()));
        assert_eq!(Raw::decode(&bytes, &rules, 9), None, "a range past the file");
        assert_eq!(Raw::decode(&bytes[..bytes.len() - 1], &rules, 10), None);
        assert_eq!(Raw::decode(&[bytes.as_slice(), &[0]].concat(), &rules, 10), None);
        let other = crate::RuleSet::compile("t", [("a.yar", "rule b { condition: true }")]).unwrap();
        assert_eq!(Raw::decode(&bytes, &other, 10), None, "a rule the set does not have");
        let twice = Raw(vec![raw.0[0].clone(), raw.0[0].clone()]);
        assert_eq!(Raw::decode(&twice.encode(&rules), &rules, 10), None, "a rule twice");
        let overcounted =
            Raw(vec![(0, Ranges::from_parts(vec![("$x".into(), 3..4), ("$x".into(), 9..10)], 1))]);
        assert_eq!(Raw::decode(&overcounted.encode(&rules), &rules, 10), None);
        assert_eq!(engine_digest().len(), 64);
        // The protocol's rules_digest: order-independent, length-prefixed.
        let a = rules_digest([("b.yar", "x"), ("a.yar", "yz")]);
        assert_eq!(a, rules_digest([("a.yar", "yz"), ("b.yar", "x")]));
        assert_ne!(a, rules_digest([("a.yar", "y"), ("b.yar", "zx")]));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn audits_sample_hits() {
        let cache = ReuseCache::new(ReuseMode::Reuse, 1 << 20).with_audit_every(3);
        let audited: Vec<bool> = (0..6).map(|_| cache.audit_now()).collect();
        assert_eq!(audited, [false, false, true, false, false, true]);
        let never = ReuseCache::new(ReuseMode::Reuse, 1 << 20).with_audit_every(0);
        assert!((0..10).all(|_| !never.audit_now()));
    }

    #[test]
    fn an_audit_checks_what_a_known_zip_entry_extracts_to() {
        use dragonfly_testkit::fixtures::{FixtureFile, wheel};
        let files = [
            FixtureFile { path: "p/a.py".into(), data: b"import os\nos.system('id')\n".to_vec() },
            FixtureFile { path: "p/b.py".into(), data: b"print('clean')\n".to_vec() },
        ];
        let bytes = wheel("p", "1.0", &files);
        let clean: [u8; 32] = {
            use sha2::Digest;
            sha2::Sha256::digest(&files[1].data).into()
        };
        for audit_every in [0, 1] {
            let cache = Arc::new(ReuseCache::new(ReuseMode::Reuse, 1 << 20).with_audit_every(audit_every));
            let engine = engine(&cache);
            let first = engine.scan_archive("p.whl", &bytes);
            assert_eq!(first.score(), 3);
            // Every entry is now said to extract to the clean file.
            cache.replace_member_digests(clean);
            let again = engine.scan_archive("p.whl", &bytes);
            if audit_every == 0 {
                assert_eq!(again.score(), 0, "without audits the wrong mapping is used: the test can fail");
                continue;
            }
            assert_eq!(
                again.files, first.files,
                "the audit caught it and the distribution was scanned again"
            );
            assert!(again.reuse.mismatched_files > 0);
            assert!(cache.is_disabled());
        }
    }
}
