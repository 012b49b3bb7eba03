//! The Dragonfly node's orchestrator: the only part of the system that owns
//! threads.
//!
//! ```text
//!  control server ──lease──▶ loader ──▶ downloaders ──▶ workers (rayon pool) ──▶ sender ──PUT──▶ control server
//!                              │  rules refresh (fetch + compile once per hash, swapped atomically)
//! ```
//!
//! - The **loader** leases `bulk_size` jobs at a time, only while the node
//!   holds fewer jobs than it can finish within half the server's lease
//!   (estimated from the time jobs take), and not while results cannot be
//!   delivered. When a job names a rule hash other than the current one, the
//!   loader fetches and compiles the new rules before handing the job on;
//!   if that fails, scanning goes on with the old rules.
//! - **Downloaders** fetch distributions into memory, within a byte budget,
//!   so downloads overlap scanning.
//! - **Workers** scan one distribution at a time on a rayon pool (large
//!   distributions file-parallel); every distribution of a job uses the
//!   rules current when the job's first distribution was scanned, and the
//!   result reports that hash. A panic becomes a failure result.
//! - The **sender** reports results in order of completion, retrying
//!   transient errors with backoff for as long as the node runs; 404/409
//!   are logged and dropped.
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

mod node;
mod rules;
mod shutdown;
mod stats;

pub use node::{Node, NodeError, NodeSettings, RunSummary};
pub use shutdown::Shutdown;
pub use stats::{SCAN_SECONDS_BUCKETS, Stats};
