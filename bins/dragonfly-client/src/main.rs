//! `dragonfly-client`: a Dragonfly scanning node, and an offline scanner for
//! local files, directories, URLs and PyPI releases.

mod auth;
mod cli;
mod commands;
mod config;
mod logging;
mod memory;
mod metrics;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            // Errors can quote archive paths: no control character reaches
            // the terminal.
            eprintln!("error: {}", logging::printable(&format!("{err:#}"), 16 * 1024));
            ExitCode::from(2)
        }
    }
}
