//! `cargo xtask bench [--tiny | --quick | --corpus DIR] [--threads N]`:
//! builds the node and the benchmark (release; dev profile for `--tiny`, so
//! CI needs no release build) and runs the benchmark, which starts the node.

use anyhow::Result;

use crate::demo::binary_path;
use crate::{cargo, run_command};

pub fn run(args: &[String]) -> Result<()> {
    let tiny = args.iter().any(|a| a == "--tiny");
    let profile = if tiny { "debug" } else { "release" };
    // One cargo invocation for both binaries: they share one feature
    // resolution, so nothing is compiled twice.
    let mut build = cargo();
    build.args(["build", "--quiet", "-p", "dragonfly-client", "-p", "dragonfly-bench"]);
    if !tiny {
        build.arg("--release");
    }
    run_command(&mut build)?;
    let node = binary_path("dragonfly-client", profile);
    let mut bench = std::process::Command::new(binary_path("dragonfly-bench", profile));
    bench.args(args);
    if !args.iter().any(|a| a == "--node" || a.starts_with("--node=")) {
        bench.arg("--node").arg(node);
    }
    run_command(&mut bench)
}
