//! The node: its stages wired together with channels, each on a thread of
//! its own, all joined before [`Node::run`] returns.

use std::sync::Arc;
use std::thread::Scope;

use dragonfly_api::{Client, JobResult};

use crate::capacity::Capacity;
use crate::download::Downloader;
use crate::job::{Downloaded, Leased};
use crate::loader::Loader;
use crate::rules::Rules;
use crate::scanning::Scanning;
use crate::sender::ResultSender;
use crate::settings::{NodeError, NodeSettings};
use crate::shutdown::Shutdown;
use crate::stats::Stats;
use crate::sync::Budget;

/// The node-wide handles every stage may use: the API client, the
/// settings, the counters and the shutdown flag.
#[derive(Clone, Copy)]
pub(crate) struct Handles<'a> {
    pub(crate) client: &'a Client,
    pub(crate) settings: &'a NodeSettings,
    pub(crate) stats: &'a Stats,
    pub(crate) shutdown: &'a Shutdown,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Results delivered (or refused for good by the server).
    pub results_finished: u64,
    /// Jobs still held when the grace period ran out (0 on a clean stop).
    pub jobs_abandoned: u64,
    /// Those jobs, as `name==version`.
    pub abandoned: Vec<String>,
}

/// A scanning node. Create it with a client and settings, keep a
/// [`Shutdown`] handle and the [`Stats`], then call [`Node::run`].
pub struct Node {
    client: Client,
    settings: NodeSettings,
    stats: Arc<Stats>,
    shutdown: Shutdown,
}

impl Node {
    /// A node that will talk to the server through `client`.
    pub fn new(client: Client, settings: NodeSettings) -> Node {
        Node { client, settings, stats: Arc::new(Stats::default()), shutdown: Shutdown::new() }
    }

    /// The node's live counters.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// A handle that stops the node when triggered.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Runs until shutdown is triggered and held jobs are finished and
    /// reported, or the grace period runs out; returns once every thread
    /// of the node has stopped.
    ///
    /// ```text
    /// loader ──Leased──▶ downloaders ──Downloaded──▶ scanning (rayon pool) ──JobResult──▶ sender
    /// ```
    pub fn run(self) -> Result<RunSummary, NodeError> {
        let settings = &self.settings;
        settings.validate()?;
        let node = Handles { client: &self.client, settings, stats: &self.stats, shutdown: &self.shutdown };
        let (stats, shutdown) = (node.stats, node.shutdown);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(settings.threads)
            .thread_name(|i| format!("scan-{i}"))
            .build()?;
        // Results on disk are an accelerator: without the store the node
        // scans everything, as it would on its first start.
        let store = match (&settings.cache_dir, settings.scan_reuse) {
            (Some(dir), mode) if mode != dragonfly_engine::ReuseMode::Off => {
                match crate::store::DiskStore::open(dir, settings.cache_size) {
                    Ok(store) => {
                        Some(std::sync::Arc::new(store) as std::sync::Arc<dyn dragonfly_engine::ResultStore>)
                    }
                    Err(e) => {
                        log::warn!("{e}; results are kept in memory only");
                        None
                    }
                }
            }
            _ => None,
        };
        let rules = Rules::new(node, &pool, store);
        let capacity = Capacity::new(stats, settings.threads, settings.bulk_size, settings.lease_timeout);
        let budget = Budget::new(settings.download_budget().max(settings.download_cap()));
        let (pending_tx, pending_rx) = crossbeam_channel::unbounded::<Leased>();
        let (ready_tx, ready_rx) = crossbeam_channel::bounded::<Downloaded>(settings.threads);
        let (result_tx, result_rx) = crossbeam_channel::unbounded::<JobResult>();

        std::thread::scope(|scope| {
            let (rules, capacity, budget, pool) = (&rules, &capacity, &budget, &pool);
            let started = (move || {
                let loader = Loader { node, rules, capacity, pending: pending_tx };
                spawn(scope, "loader".into(), move || loader.run())?;
                for i in 0..(2 * settings.threads).clamp(2, 16) {
                    let downloader = Downloader {
                        node,
                        budget,
                        capacity,
                        pending: pending_rx.clone(),
                        ready: ready_tx.clone(),
                        results: result_tx.clone(),
                    };
                    spawn(scope, format!("download-{i}"), move || downloader.run())?;
                }
                // Only the stages hold channel ends, so each channel closes
                // when the stages feeding it have stopped.
                drop((pending_rx, ready_tx));
                let scanning =
                    Scanning { node, pool, rules, capacity, budget, ready: ready_rx, results: result_tx };
                spawn(scope, "scan".into(), move || scanning.run())?;
                let sender = ResultSender { node, capacity, results: result_rx };
                spawn(scope, "sender".into(), move || sender.run())
            })();
            if let Err(err) = started {
                // The stages already running stop on their own.
                shutdown.trigger();
                return Err(NodeError::Thread(err));
            }
            // The calling thread logs a summary now and then until shutdown.
            while !shutdown.sleep(settings.summary_interval) {
                log::info!("{}", stats.snapshot().summary());
            }
            log::info!(
                "shutting down: finishing {} held jobs (grace period {:?})",
                capacity.held(),
                settings.grace_period
            );
            Ok(())
        })?;

        let snapshot = self.stats.snapshot();
        let abandoned = capacity.held_names();
        if !abandoned.is_empty() {
            log::warn!(
                "grace period over with {} jobs unfinished ({}); the server will lease them again",
                abandoned.len(),
                abandoned.join(", ")
            );
        }
        log::info!("{}", snapshot.summary());
        Ok(RunSummary {
            results_finished: snapshot.results_delivered + snapshot.results_dropped,
            jobs_abandoned: abandoned.len() as u64,
            abandoned,
        })
    }
}

fn spawn<'scope>(
    scope: &'scope Scope<'scope, '_>,
    name: String,
    work: impl FnOnce() + Send + 'scope,
) -> std::io::Result<()> {
    std::thread::Builder::new().name(name).spawn_scoped(scope, work).map(drop)
}
