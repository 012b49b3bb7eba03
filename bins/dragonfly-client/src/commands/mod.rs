//! One module per subcommand.

mod run;
mod scan;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::config::Config;

/// Dispatches to the subcommand and returns the process exit status.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let config = Config::load(Path::new("Config.toml"))?;
            run::run(config)
        }
        Command::Scan(args) => {
            crate::logging::init("warn");
            scan::run(args)
        }
        Command::Config => {
            let config = Config::load(Path::new("Config.toml"))?;
            print!("{}", config.to_masked_toml()?);
            match config.effective_memory_limit() {
                Some((bytes, source)) => println!("# memory limit in force: {bytes} bytes, from {source}"),
                None => println!("# memory limit in force: none found"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
