//! Client for the Dragonfly control server ("mainframe"): authentication
//! (Auth0, Cloudflare Access, static token, none), rules, job leases,
//! results and distribution downloads, plus PyPI release look-ups.
//!
//! This is the only crate of the node that knows HTTP, authentication and the
//! wire format (`docs/protocol.md`). One [`Client`] is shared by every thread:
//! it holds one credential, renews it once (single flight) ahead of expiry or
//! after a 401, and backs off after failed logins. Every failure is an
//! [`Error`] with an [`ErrorKind`] and [`Error::is_transient`], so callers
//! can decide whether to retry.
//!
//! ```
//! use std::time::Duration;
//! use dragonfly_api::{Auth, Client, ClientConfig, Grant, Job, JobResult, Secret};
//!
//! let auth = Auth::Auth0 {
//!     domain: "vipyrsec.us.auth0.com".into(),
//!     audience: "https://dragonfly.vipyrsec.com".into(),
//!     client_id: "node".into(),
//!     client_secret: Secret::new("client-secret"),
//!     grant: Grant::Password { username: "node-1".into(), password: Secret::new("pw") },
//! };
//! let mut config = ClientConfig::new("https://dragonfly.vipyrsec.com", auth);
//! config.read_timeout = Duration::from_secs(30);
//! let client = Client::new(config)?; // no network yet
//! assert!(!format!("{client:?}").contains("client-secret"));
//!
//! // The loop of a node (each call blocks and may fail with a classified error):
//! fn work(client: &Client) -> Result<(), dragonfly_api::Error> {
//!     let rules = client.rules()?;
//!     for job in client.lease_jobs(20)? {
//!         let result = match client.download(&job.distributions[0], 128_000_000) {
//!             Ok(_bytes) => JobResult::success(&job, 0, None, vec![], rules.hash.clone()),
//!             Err(err) => JobResult::failure(&job, err.to_string()),
//!         };
//!         client.submit(&result)?;
//!     }
//!     Ok(())
//! }
//! # let _ = work;
//! # Ok::<(), dragonfly_api::Error>(())
//! ```

mod auth;
mod backoff;
mod client;
mod config;
mod destination;
mod error;
mod http;
pub mod pypi;
mod scan_cache;
mod secret;
mod wire;

pub use backoff::Backoff;
pub use client::{AuthStats, Client, check_http_url};
pub use config::{Auth, ClientConfig, DEFAULT_AUDIENCE, DEFAULT_AUTH0_DOMAIN, DEFAULT_BASE_URL, Grant};
pub use error::{Error, ErrorKind};
pub use scan_cache::{
    SCAN_CACHE_MAX_KEYS, SCAN_CACHE_MAX_RESULT_BYTES, SCAN_CACHE_MAX_WRITE_BYTES, ScanCacheContext,
    ScanCacheEntry, ScanCacheFound, ScanCacheLease, ScanCacheWritten,
};
pub use secret::Secret;
pub use wire::{FailureBody, Job, JobResult, RuleSet, ScanReuse, SuccessBody, inspector_url};
