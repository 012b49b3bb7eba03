//! The Dragonfly node's orchestrator: the only part of the system that owns
//! the work's threads.
//!
//! ```text
//!  control server ──lease──▶ loader ──▶ downloaders ──▶ scanning (rayon pool) ──▶ sender ──PUT──▶ control server
//!                              │  rules refresh (fetch + compile once per hash, swapped atomically)
//! ```
//!
//! One module per stage, each owning only its channel ends and the handles
//! it needs; [`Node::run`] wires them on scoped threads:
//!
//! - The **loader** (`loader.rs`) leases jobs while the node holds fewer
//!   than it can finish within half the server's lease (one per thread
//!   until it has measured a job, `capacity.rs`), and not while results
//!   cannot be delivered. A job the server leases again while the node
//!   holds it takes over the new lease instead of being scanned twice. When a job names a rule hash other than the current one, it
//!   fetches and compiles the new rules (`rules.rs`) before handing the job
//!   on; if that fails, scanning goes on with the old rules.
//! - **Downloaders** (`download.rs`) fetch a job's distributions at once,
//!   into memory within a byte budget, so downloads overlap scanning; a job
//!   that could no longer be reported within its lease is not started.
//! - The **scanning** stage (`scanning.rs`) runs one distribution per pool
//!   thread at a time (large ones file-parallel); every distribution of a
//!   job uses the rules current when its first distribution was scanned,
//!   and the result reports that hash. A panic becomes a failure.
//! - The **sender** (`sender.rs`) reports results as they come, several at
//!   a time (one stalled result holds back no other), each with its job's
//!   latest lease, retrying transient errors with backoff for as long as
//!   the node runs; 404/409 are logged and dropped.
//!
//! A finished job becomes a wire result in one place, [`job_result`]; a
//! failure's cause is a [`FailureReason`], counted by [`FailureKind`].
//!
//! # Example
//!
//! ```no_run
//! use dragonfly_api::{Auth, Client, ClientConfig};
//! use dragonfly_orchestrator::{Node, NodeSettings};
//!
//! let client = Client::new(ClientConfig::new("http://127.0.0.1:8000", Auth::None))?;
//! let node = Node::new(client, NodeSettings::default());
//! let shutdown = node.shutdown_handle();
//! std::thread::spawn(move || {
//!     std::thread::sleep(std::time::Duration::from_secs(60));
//!     shutdown.trigger();
//! });
//! let summary = node.run()?;
//! println!("{} results delivered", summary.results_finished);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod capacity;
mod download;
mod failure;
mod job;
mod loader;
mod node;
mod result;
mod rules;
mod scan_cache;
mod scanning;
mod sender;
mod settings;
mod shutdown;
mod stats;
mod store;
mod sync;

pub use failure::{DownloadError, FailureKind, FailureReason, Problem, Stage};
pub use node::{Node, RunSummary};
pub use result::job_result;
pub use settings::{
    DEFAULT_BULK_SIZE, DEFAULT_DOWNLOAD_RETRIES, DEFAULT_GRACE_PERIOD, DEFAULT_LEASE_TIMEOUT,
    DEFAULT_LOAD_DURATION, DEFAULT_MAX_SCAN_SIZE, DEFAULT_SCAN_CACHE_RATE, DEFAULT_SUMMARY_INTERVAL,
    MEMORY_OVERHEAD, NodeError, NodeSettings, default_threads,
};
pub use shutdown::Shutdown;
pub use stats::{SCAN_SECONDS_BUCKETS, Stats, StatsSnapshot};
pub use store::{DiskStore, StoreError};
