//! The optional, fleet-wide result cache: `POST /scan-cache/lookup` and
//! `POST /scan-cache/write`, as the real server answers them.
//!
//! - 404 while switched off (production's setting), 429 over its rate of
//!   admitted requests per second;
//! - 422 for a body outside the wire limits: 1 to 128 keys, at most 128
//!   entries, digests of 64 lower-case hex digits, results that are JSON
//!   arrays of at most 16 KiB and at most 512 KiB per write, unknown fields
//!   in a context or key;
//! - 409 when the context's rules are not the current ones (`rules_commit`
//!   the hash `GET /rules` serves, `rules_digest` over its files), and for a
//!   write without the job's current lease;
//! - entries live for the TTL (24 h) and are never overwritten (the first
//!   write of a key wins); at most 8 contexts per scanner, writes for a
//!   ninth are skipped; a write with `revoke` revokes its context, whose
//!   lookups then answer `revoked: true` and nothing else.
//!
//! The fake server knows one identity, so the lease check does not compare
//! the worker the job is leased to.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::State;
use super::http::Reply;

const MAX_KEYS: usize = 128;
const MAX_RESULT_BYTES: usize = 16_384;
const MAX_WRITE_BYTES: usize = 512 * 1024;
/// Contexts kept per scanner.
const MAX_NAMESPACES: usize = 8;

/// What the cache holds.
#[derive(Debug, Default)]
pub(crate) struct ScanCache {
    /// By context (as sent, fields in order).
    namespaces: HashMap<Context, Namespace>,
    /// When the requests of the last second were admitted.
    admitted: VecDeque<Instant>,
}

#[derive(Debug, Default)]
struct Namespace {
    revoked: bool,
    /// `(digest, language)` -> (result, written at).
    entries: HashMap<(String, String), (String, Instant)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
struct Context {
    scanner: String,
    rules_commit: String,
    rules_digest: String,
    engine_digest: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Key {
    file_digest: String,
    #[serde(default)]
    language: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    file_digest: String,
    #[serde(default)]
    language: String,
    result: String,
}

#[derive(Debug, Deserialize)]
struct Lookup {
    context: Context,
    keys: Vec<Key>,
}

#[derive(Debug, Deserialize)]
struct Lease {
    name: String,
    version: String,
    assignment_id: String,
    attempt: u32,
}

#[derive(Debug, Deserialize)]
struct Write {
    context: Context,
    lease: Lease,
    entries: Vec<Entry>,
    #[serde(default)]
    revoke: bool,
}

/// Counts of what the cache holds, see
/// [`FakeServer::scan_cache_stats`](super::FakeServer::scan_cache_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanCacheStats {
    /// Live entries, all contexts together.
    pub entries: usize,
    /// Contexts known.
    pub contexts: usize,
    /// Contexts revoked.
    pub revoked: usize,
    /// Lookups answered 200.
    pub lookups: u64,
    /// Entries stored.
    pub inserted: u64,
    /// Requests refused with 429.
    pub rate_limited: u64,
}

/// `rules_digest` of the scan-cache protocol over rule files (name ->
/// source): SHA-256 over the files sorted by name, each file's name then
/// its source, each preceded by its length as an 8-byte big-endian integer.
pub fn rules_digest(rules: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    for (name, source) in rules {
        for part in [name, source] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
    }
    super::names::hex(&hasher.finalize())
}

fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn unprocessable(problem: &str) -> Reply {
    Reply::detail(422, problem)
}

impl Context {
    fn problem(&self) -> Option<&'static str> {
        if !matches!(self.scanner.as_str(), "yara" | "opengrep") {
            return Some("scanner must be yara or opengrep");
        }
        if self.rules_commit.is_empty() || self.rules_commit.len() > 64 {
            return Some("rules_commit must be 1 to 64 characters");
        }
        if !is_digest(&self.rules_digest) || !is_digest(&self.engine_digest) {
            return Some("digests must be 64 lower-case hex digits");
        }
        None
    }
}

/// 404 when off, 429 over the rate; else the request is admitted.
pub(crate) fn admit(state: &mut State, enabled: bool, rate: u32, now: Instant) -> Option<Reply> {
    if !enabled {
        return Some(Reply::detail(404, "Not Found"));
    }
    let admitted = &mut state.scan_cache.admitted;
    while admitted.front().is_some_and(|&t| now.duration_since(t) >= Duration::from_secs(1)) {
        admitted.pop_front();
    }
    if admitted.len() >= rate as usize {
        state.scan_cache_stats.rate_limited += 1;
        return Some(Reply::detail(429, "Cache rate limit; scan normally"));
    }
    admitted.push_back(now);
    None
}

/// The context's rules must be the ones served now.
fn check_rules(state: &State, context: &Context) -> Option<Reply> {
    if context.scanner == "yara"
        && (context.rules_commit != state.rules_hash || context.rules_digest != state.rules_digest)
    {
        return Some(Reply::detail(409, "Cache rules differ from current rules; scan normally"));
    }
    None
}

/// A request body whose context is well formed, or the 422 for it.
fn read<T: serde::de::DeserializeOwned>(body: &[u8], context: fn(&T) -> &Context) -> Result<T, Reply> {
    let request: T =
        serde_json::from_slice(body).map_err(|err| unprocessable(&format!("invalid body: {err}")))?;
    match context(&request).problem() {
        Some(problem) => Err(unprocessable(problem)),
        None => Ok(request),
    }
}

/// `POST /scan-cache/lookup`.
pub(crate) fn lookup(state: &mut State, body: &[u8], ttl: Duration, now: Instant) -> Reply {
    let request = match read(body, |r: &Lookup| &r.context) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    if request.keys.is_empty() || request.keys.len() > MAX_KEYS {
        return unprocessable("a lookup takes 1 to 128 keys");
    }
    if request.keys.iter().any(|k| !is_digest(&k.file_digest) || k.language.len() > 32) {
        return unprocessable("invalid key");
    }
    if let Some(reply) = check_rules(state, &request.context) {
        return reply;
    }
    state.scan_cache_stats.lookups += 1;
    let Some(namespace) = state.scan_cache.namespaces.get(&request.context) else {
        return Reply::json(200, &json!({ "revoked": false, "entries": [] }));
    };
    if namespace.revoked {
        return Reply::json(200, &json!({ "revoked": true, "entries": [] }));
    }
    let mut found: Vec<Value> = Vec::new();
    for key in &request.keys {
        let id = (key.file_digest.clone(), key.language.clone());
        if let Some((result, _)) = namespace.entries.get(&id).filter(|(_, at)| now.duration_since(*at) < ttl)
            && !found.iter().any(|f| {
                f["file_digest"] == key.file_digest.as_str() && f["language"] == key.language.as_str()
            })
        {
            found.push(json!({ "file_digest": key.file_digest, "language": key.language, "result": result }));
        }
    }
    Reply::json(200, &json!({ "revoked": false, "entries": found }))
}

/// `POST /scan-cache/write`.
pub(crate) fn write(state: &mut State, body: &[u8], ttl: Duration, now: Instant) -> Reply {
    let request = match read(body, |r: &Write| &r.context) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    if request.entries.len() > MAX_KEYS {
        return unprocessable("a write takes at most 128 entries");
    }
    for entry in &request.entries {
        let array = serde_json::from_str::<Value>(&entry.result).is_ok_and(|v| v.is_array());
        if !is_digest(&entry.file_digest) || entry.language.len() > 32 {
            return unprocessable("invalid key");
        }
        if entry.result.len() > MAX_RESULT_BYTES || !array {
            return unprocessable("Cache results must be a JSON array of at most 16384 encoded bytes");
        }
    }
    if request.entries.iter().map(|e| e.result.len()).sum::<usize>() > MAX_WRITE_BYTES {
        return unprocessable("Cache write batch exceeds 512 KiB");
    }
    if let Some(reply) = check_rules(state, &request.context) {
        return reply;
    }
    let lease = &request.lease;
    if lease.attempt < 1
        || !state.queue.holds_lease(&lease.name, &lease.version, &lease.assignment_id, lease.attempt)
    {
        return Reply::detail(409, "Cache writes require the current worker lease");
    }
    let cache = &mut state.scan_cache;
    // Expired entries go; so do contexts left empty and not revoked.
    for namespace in cache.namespaces.values_mut() {
        namespace.entries.retain(|_, (_, at)| now.duration_since(*at) < ttl);
    }
    cache.namespaces.retain(|_, n| n.revoked || !n.entries.is_empty());
    let known = cache.namespaces.contains_key(&request.context);
    let of_scanner = cache.namespaces.keys().filter(|c| c.scanner == request.context.scanner).count();
    if !known && of_scanner >= MAX_NAMESPACES {
        return Reply::json(200, &json!({ "inserted": 0, "skipped": request.entries.len() }));
    }
    let namespace = cache.namespaces.entry(request.context).or_default();
    if request.revoke {
        namespace.revoked = true;
        namespace.entries.clear();
        return Reply::json(200, &json!({ "inserted": 0, "skipped": 0 }));
    }
    if namespace.revoked {
        return Reply::json(200, &json!({ "inserted": 0, "skipped": request.entries.len() }));
    }
    let mut inserted = 0u64;
    for entry in &request.entries {
        let id = (entry.file_digest.clone(), entry.language.clone());
        if let std::collections::hash_map::Entry::Vacant(slot) = namespace.entries.entry(id) {
            slot.insert((entry.result.clone(), now));
            inserted += 1;
        }
    }
    state.scan_cache_stats.inserted += inserted;
    Reply::json(200, &json!({ "inserted": inserted, "skipped": request.entries.len() as u64 - inserted }))
}

/// Counts of what the cache holds now.
pub(crate) fn stats(state: &State) -> ScanCacheStats {
    let cache = &state.scan_cache;
    ScanCacheStats {
        entries: cache.namespaces.values().map(|n| n.entries.len()).sum(),
        contexts: cache.namespaces.len(),
        revoked: cache.namespaces.values().filter(|n| n.revoked).count(),
        ..state.scan_cache_stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_digest_is_the_protocols() {
        // One file "a" with source "b": lengths as 8-byte big-endian.
        let rules = BTreeMap::from([("a".to_owned(), "b".to_owned())]);
        let mut bytes = Vec::new();
        for part in ["a", "b"] {
            bytes.extend(1u64.to_be_bytes());
            bytes.extend(part.as_bytes());
        }
        let want: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(rules_digest(&rules), want);
    }
}
