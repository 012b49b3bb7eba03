//! Developer tasks, run as `cargo xtask <task>`:
//!
//! - `ci`: format check, clippy (warnings denied), every test, rustdoc
//!   (warnings denied), and the benchmark on a tiny corpus.
//! - `demo`: the whole system on loopback: a fake control server with
//!   bundled packages and rules, the real node binary, a results table.
//! - `bench [--quick] [--corpus DIR]`: throughput benchmark (release build).
//! - `fuzz [--iterations N]`: mutation fuzzing of the archive flattener.
//! - `tidy`: checks of the tree no compiler makes (also a `cargo test`).

mod bench;
mod demo;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    std::env::set_current_dir(project_root()).context("can not enter the project root")?;
    match task.as_str() {
        "ci" => ci(),
        "demo" => demo::run(&rest),
        "bench" => bench::run(&rest),
        "fuzz" => fuzz(&rest),
        "tidy" => tidy::check(&project_root()),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n\
                 tasks:\n  \
                 ci                      fmt check, clippy -D warnings, all tests, rustdoc, tiny bench\n  \
                 demo                    run a node against a local fake control server\n  \
                 bench [--tiny|--quick] [--corpus DIR] [--threads N]\n                          \
                 throughput benchmark, writes target/bench/\n  \
                 fuzz [--iterations N]   mutation-fuzz the archive flattener\n  \
                 tidy                    module headers, banned macros, settings docs, unused dependencies"
            );
            if task.is_empty() || task == "help" || task == "--help" {
                Ok(())
            } else {
                bail!("unknown task `{task}`")
            }
        }
    }
}

/// The workspace root (the parent of this crate's directory). `cargo run`
/// sets `CARGO_MANIFEST_DIR` at run time too; that one wins, so a binary
/// built from another clone sharing the target directory still works here.
pub fn project_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// The cargo binary that runs this task.
pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Runs a command, failing with its description when it fails.
pub fn run_command(command: &mut Command) -> Result<()> {
    let description = format!("{command:?}");
    eprintln!("$ {description}");
    let status = command.status().with_context(|| format!("can not start {description}"))?;
    if !status.success() {
        bail!("{description} failed ({status})");
    }
    Ok(())
}

fn ci() -> Result<()> {
    run_command(cargo().args(["fmt", "--all", "--", "--check"]))?;
    tidy::check(&project_root())?;
    run_command(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    run_command(cargo().args(["test", "--workspace", "--all-targets"]))?;
    run_command(cargo().args(["test", "--workspace", "--doc"]))?;
    run_command(cargo().args(["doc", "--workspace", "--no-deps"]).env("RUSTDOCFLAGS", "-D warnings"))?;
    // Keeps the benchmark working; a tiny corpus, debug build, no timing checks.
    bench::run(&["--tiny".to_owned()])?;
    eprintln!("ci: all checks passed");
    Ok(())
}

fn fuzz(args: &[String]) -> Result<()> {
    let iterations = match args {
        [] => "20000".to_owned(),
        [flag, n] if flag == "--iterations" => n.clone(),
        _ => bail!("usage: cargo xtask fuzz [--iterations N]"),
    };
    run_command(
        cargo()
            .args(["test", "--release", "-p", "dragonfly-flatten", "--test", "fuzz", "--", "--nocapture"])
            .env("DRAGONFLY_FUZZ_ITERATIONS", iterations),
    )
}
