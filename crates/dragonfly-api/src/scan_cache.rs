//! The control server's optional, fleet-wide result cache:
//! `POST /scan-cache/lookup` and `POST /scan-cache/write`.
//!
//! Every answer but 200 (404 when the server has it switched off, 409 when
//! the rules differ or the lease is not current, 429 over its rate, 503
//! when busy) and every timeout is an [`Error`]: the caller scans normally.

use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::error::{Error, ErrorKind};
use crate::http::decode_json;
use crate::wire::Job;

/// Keys per lookup and entries per write, at most.
pub const SCAN_CACHE_MAX_KEYS: usize = 128;
/// Bytes of one entry's `result`, at most.
pub const SCAN_CACHE_MAX_RESULT_BYTES: usize = 16 * 1024;
/// Bytes of the results of one write, at most.
pub const SCAN_CACHE_MAX_WRITE_BYTES: usize = 512 * 1024;

/// Which rules and engine the results are of; the server keeps each
/// context's entries apart, and answers 409 when the rules are not its
/// current ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanCacheContext {
    /// `yara`.
    pub scanner: String,
    /// The rule set's hash, as `GET /rules` gives it.
    pub rules_commit: String,
    /// SHA-256 over the rule files (see `dragonfly_engine::rules_digest`).
    pub rules_digest: String,
    /// The engine's identity (see `dragonfly_engine::engine_digest`).
    pub engine_digest: String,
}

/// The lease a write is made under: the job's, as leased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanCacheLease {
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: String,
    /// The lease's assignment id.
    pub assignment_id: String,
    /// The lease's attempt number.
    pub attempt: u32,
}

impl ScanCacheLease {
    /// The lease of `job`; `None` when the server gave no assignment id
    /// or attempt (an older server, which has no scan cache either).
    pub fn of(job: &Job) -> Option<ScanCacheLease> {
        Some(ScanCacheLease {
            name: job.name.clone(),
            version: job.version.clone(),
            assignment_id: job.assignment_id.clone()?,
            attempt: job.attempt?,
        })
    }
}

/// One cached result: a file's SHA-256 and the node's result for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanCacheEntry {
    /// The file's SHA-256, 64 lower-case hex digits.
    pub file_digest: String,
    /// Empty for YARA results.
    #[serde(default)]
    pub language: String,
    /// The result, a JSON array the node defines (at most
    /// [`SCAN_CACHE_MAX_RESULT_BYTES`]).
    pub result: String,
}

/// The answer to a lookup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ScanCacheFound {
    /// Every entry of this context was revoked: none is returned, and none
    /// is to be asked for again.
    #[serde(default)]
    pub revoked: bool,
    /// The entries found; keys not found are left out.
    #[serde(default)]
    pub entries: Vec<ScanCacheEntry>,
}

/// The answer to a write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct ScanCacheWritten {
    /// Entries stored.
    #[serde(default)]
    pub inserted: u64,
    /// Entries not stored (known already, over a quota, revoked).
    #[serde(default)]
    pub skipped: u64,
}

#[derive(Serialize)]
struct Key<'a> {
    file_digest: &'a str,
    language: &'a str,
}

#[derive(Serialize)]
struct Lookup<'a> {
    context: &'a ScanCacheContext,
    keys: Vec<Key<'a>>,
}

#[derive(Serialize)]
struct Write<'a> {
    context: &'a ScanCacheContext,
    lease: &'a ScanCacheLease,
    entries: &'a [ScanCacheEntry],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    revoke: bool,
}

fn encode(what: &str, body: &impl Serialize) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(body).map_err(|err| {
        Error::new(ErrorKind::InvalidInput, format!("cannot encode {what}: {err}")).with_source(err)
    })
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidInput, message)
}

impl Client {
    /// `POST /scan-cache/lookup`: the entries known for these YARA result
    /// digests (1 to [`SCAN_CACHE_MAX_KEYS`]), within the scan cache's
    /// timeout.
    pub fn scan_cache_lookup(
        &self,
        context: &ScanCacheContext,
        digests: &[String],
    ) -> Result<ScanCacheFound, Error> {
        if digests.is_empty() || digests.len() > SCAN_CACHE_MAX_KEYS {
            return Err(invalid(format!(
                "a lookup takes 1 to {SCAN_CACHE_MAX_KEYS} keys, not {}",
                digests.len()
            )));
        }
        let keys = digests.iter().map(|d| Key { file_digest: d, language: "" }).collect();
        let body = encode("a scan-cache lookup", &Lookup { context, keys })?;
        let bytes = self.scan_cache_call("/scan-cache/lookup", body)?;
        decode_json("POST /scan-cache/lookup", &bytes)
    }

    /// `POST /scan-cache/write`: offers entries (at most
    /// [`SCAN_CACHE_MAX_KEYS`], each result at most
    /// [`SCAN_CACHE_MAX_RESULT_BYTES`], together at most
    /// [`SCAN_CACHE_MAX_WRITE_BYTES`]) under the job's current lease.
    pub fn scan_cache_write(
        &self,
        context: &ScanCacheContext,
        lease: &ScanCacheLease,
        entries: &[ScanCacheEntry],
    ) -> Result<ScanCacheWritten, Error> {
        if entries.len() > SCAN_CACHE_MAX_KEYS {
            return Err(invalid(format!("a write takes at most {SCAN_CACHE_MAX_KEYS} entries")));
        }
        let total: usize = entries.iter().map(|e| e.result.len()).sum();
        if entries.iter().any(|e| e.result.len() > SCAN_CACHE_MAX_RESULT_BYTES)
            || total > SCAN_CACHE_MAX_WRITE_BYTES
        {
            return Err(invalid("a scan-cache write over its size limits".to_owned()));
        }
        self.scan_cache_post(&Write { context, lease, entries, revoke: false })
    }

    /// `POST /scan-cache/write` with `revoke`: a cached result was found
    /// wrong, so every entry of `context` is to be dropped.
    pub fn scan_cache_revoke(&self, context: &ScanCacheContext, lease: &ScanCacheLease) -> Result<(), Error> {
        self.scan_cache_post(&Write { context, lease, entries: &[], revoke: true }).map(|_| ())
    }

    fn scan_cache_post(&self, write: &Write<'_>) -> Result<ScanCacheWritten, Error> {
        let body = encode("a scan-cache write", write)?;
        let bytes = self.scan_cache_call("/scan-cache/write", body)?;
        decode_json("POST /scan-cache/write", &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(rules_commit: &str) -> ScanCacheContext {
        ScanCacheContext {
            scanner: "yara".into(),
            rules_commit: rules_commit.into(),
            rules_digest: "1".repeat(64),
            engine_digest: "2".repeat(64),
        }
    }

    #[test]
    fn bodies_are_as_the_protocol_writes_them() {
        let context = context("abc");
        let lease =
            ScanCacheLease { name: "p".into(), version: "1".into(), assignment_id: "id".into(), attempt: 2 };
        let entries =
            [ScanCacheEntry { file_digest: "3".repeat(64), language: String::new(), result: "[]".into() }];
        let write = serde_json::to_value(Write {
            context: &context,
            lease: &lease,
            entries: &entries,
            revoke: false,
        })
        .unwrap();
        assert_eq!(
            write,
            serde_json::json!({
                "context": {"scanner": "yara", "rules_commit": "abc", "rules_digest": "1".repeat(64), "engine_digest": "2".repeat(64)},
                "lease": {"name": "p", "version": "1", "assignment_id": "id", "attempt": 2},
                "entries": [{"file_digest": "3".repeat(64), "language": "", "result": "[]"}],
            })
        );
        let revoke =
            serde_json::to_value(Write { context: &context, lease: &lease, entries: &[], revoke: true })
                .unwrap();
        assert_eq!(revoke["revoke"], true);
        let lookup = serde_json::to_value(Lookup {
            context: &context,
            keys: vec![Key { file_digest: "d", language: "" }],
        })
        .unwrap();
        assert_eq!(lookup["keys"], serde_json::json!([{"file_digest": "d", "language": ""}]));
        let found: ScanCacheFound = serde_json::from_str(r#"{"revoked": true}"#).unwrap();
        assert!(found.revoked && found.entries.is_empty());
    }

    #[test]
    fn a_lease_needs_an_assignment_and_an_attempt() {
        let mut job: Job =
            serde_json::from_str(r#"{"name":"p","version":"1","distributions":[],"hash":"h"}"#).unwrap();
        assert_eq!(ScanCacheLease::of(&job), None);
        job.assignment_id = Some("a".into());
        job.attempt = Some(1);
        assert_eq!(ScanCacheLease::of(&job).unwrap().attempt, 1);
    }

    #[test]
    fn calls_outside_the_wire_limits_are_refused_before_sending() {
        // Nothing listens there: any request would fail as a network error.
        let client = Client::new(crate::ClientConfig::new("http://127.0.0.1:9", crate::Auth::None)).unwrap();
        let context = context("r");
        let lease =
            ScanCacheLease { name: "p".into(), version: "1".into(), assignment_id: "a".into(), attempt: 1 };
        let digests = vec!["3".repeat(64); SCAN_CACHE_MAX_KEYS + 1];
        for keys in [&digests[..0], &digests[..]] {
            assert_eq!(client.scan_cache_lookup(&context, keys).unwrap_err().kind(), ErrorKind::InvalidInput);
        }
        let entry = |bytes: usize| ScanCacheEntry {
            file_digest: "3".repeat(64),
            language: String::new(),
            result: format!("[\"{}\"]", "x".repeat(bytes)),
        };
        for entries in [
            vec![entry(SCAN_CACHE_MAX_RESULT_BYTES)],
            vec![entry(16_000); 33],
            vec![entry(1); SCAN_CACHE_MAX_KEYS + 1],
        ] {
            let err = client.scan_cache_write(&context, &lease, &entries).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
        }
        let err = client.scan_cache_write(&context, &lease, &[entry(1)]).unwrap_err();
        assert_ne!(err.kind(), ErrorKind::InvalidInput, "within the limits it is sent");
    }
}
