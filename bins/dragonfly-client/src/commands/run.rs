//! `dragonfly-client run`: work as a node until SIGINT or SIGTERM.

use std::process::ExitCode;

use anyhow::{Context, Result};
use dragonfly_api::Client;
use dragonfly_orchestrator::{Node, Shutdown};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::Config;

/// Exit status of a node stopped with jobs it could not finish in the grace
/// period: the server leases them again.
const ABANDONED_JOBS: u8 = 3;

/// Runs the node; returns 0 after a clean shutdown.
pub fn run(config: Config) -> Result<ExitCode> {
    crate::logging::init_with_format("info", config.log_format);
    crate::logging::hide_secrets(
        [&config.client_secret, &config.password, &config.token].into_iter().flatten().map(|s| s.expose()),
    );
    let client = Client::new(config.client_config()?).context("can not set up the API client")?;
    log::info!(
        "dragonfly-client {} starting: server {}, {} threads, auth {}",
        env!("CARGO_PKG_VERSION"),
        config.base_url,
        config.threads,
        client.auth_scheme()
    );
    let settings = config.node_settings();
    match config.effective_memory_limit() {
        Some((bytes, source)) => log::info!(
            "memory limit {bytes} bytes (from {source}): downloads take up to {} bytes, one at most {} bytes",
            settings.download_budget(),
            settings.download_cap()
        ),
        None => {
            log::info!("no memory limit found; downloads bounded by DRAGONFLY_MAX_SCAN_SIZE and the threads")
        }
    }
    let node = Node::new(client.clone(), settings);
    // Bound before any work starts: a taken address stops the node here.
    let _metrics = match &config.metrics_addr {
        Some(addr) => {
            let server = crate::metrics::serve(addr, crate::metrics::Probe::new(node.stats(), client))?;
            log::info!("metrics at http://{}/metrics (and /healthz, /readyz)", server.local_addr());
            Some(server)
        }
        None => None,
    };
    watch_signals(node.shutdown_handle())?;
    let summary = node.run()?;
    log::info!("stopped; {} results finished (delivered or refused by the server)", summary.results_finished);
    if summary.jobs_abandoned > 0 {
        log::error!(
            "stopped with {} jobs unfinished after the grace period; the server will lease them again",
            summary.jobs_abandoned
        );
        return Ok(ExitCode::from(ABANDONED_JOBS));
    }
    Ok(ExitCode::SUCCESS)
}

/// The first SIGINT/SIGTERM starts a graceful shutdown; a second one exits
/// at once.
fn watch_signals(shutdown: Shutdown) -> Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("can not install signal handlers")?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let mut seen = 0;
        for signal in signals.forever() {
            seen += 1;
            if seen == 1 {
                log::info!("signal {signal} received: finishing held jobs (send again to exit now)");
                shutdown.trigger();
            } else {
                log::warn!("second signal: exiting now");
                std::process::exit(128 + signal);
            }
        }
    })?;
    Ok(())
}
