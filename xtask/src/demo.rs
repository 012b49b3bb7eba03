//! `cargo xtask demo`: the real node binary against the test kit's fake
//! control server on loopback, with bundled packages and rules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use dragonfly_testkit::fixtures;
use dragonfly_testkit::server::{FakeServer, ServerConfig};

use crate::{cargo, run_command};

/// Reads the bundled rule files (`crates/dragonfly-engine/rules/*.yar`).
pub fn bundled_rules() -> Result<BTreeMap<String, String>> {
    let dir = Path::new("crates/dragonfly-engine/rules");
    fixtures::rule_files(dir).with_context(|| format!("can not read {}", dir.display()))
}

/// Absolute path of a binary built by cargo in `profile`: the node is
/// started from other working directories.
pub fn binary_path(name: &str, profile: &str) -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
    let path = target.join(profile).join(name);
    std::path::absolute(&path).unwrap_or(path)
}

pub fn run(args: &[String]) -> Result<()> {
    if !args.is_empty() {
        bail!("usage: cargo xtask demo");
    }
    // Not quiet: the first build takes minutes, and cargo shows its progress.
    eprintln!("building the node (the first build compiles yara-x and takes a few minutes)");
    run_command(cargo().args(["build", "-p", "dragonfly-client"]))?;
    let binary = binary_path("dragonfly-client", "debug");

    let server =
        FakeServer::start(ServerConfig::default()).context("can not start the fake control server")?;
    server.set_rules("demo-rules-1", bundled_rules()?);
    let corpus = fixtures::demo_corpus();
    for package in &corpus {
        server.add_fixture(package);
    }
    eprintln!("fake control server at {} with {} releases; starting the node", server.url(), corpus.len());

    let log_path = std::env::temp_dir().join("dragonfly-demo-node.log");
    let log = std::fs::File::create(&log_path)?;
    let mut node = Command::new(&binary)
        .arg("run")
        .env("DRAGONFLY_BASE_URL", server.url())
        .env("DRAGONFLY_AUTH_MODE", "none")
        .env("DRAGONFLY_ALLOW_PRIVATE_DOWNLOADS", "true")
        .env("DRAGONFLY_LOAD_DURATION", "1")
        .env("DRAGONFLY_WAIT_DURATION", "1")
        .env("DRAGONFLY_SUMMARY_INTERVAL", "5")
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("can not start {}", binary.display()))?;

    let started = Instant::now();
    let drained = server.wait_drained(Duration::from_secs(120));
    let elapsed = started.elapsed();
    // Graceful stop, as an operator would do it.
    let _ = Command::new("kill").args(["-TERM", &node.id().to_string()]).status();
    let status = node.wait()?;

    let results = server.results();
    println!("{:<28} {:>5}  {:<56} RULES / REASON", "PACKAGE", "SCORE", "MOST MALICIOUS FILE");
    for result in &results {
        let body = &result.body;
        let package = format!("{} {}", result.name, result.version);
        match body.get("reason").and_then(|r| r.as_str()) {
            Some(reason) => println!("{package:<28} {:>5}  {:<56} {reason}", "fail", "-"),
            None => {
                let rules: Vec<&str> = body["rules_matched"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|r| r.as_str()).collect())
                    .unwrap_or_default();
                let rules = if rules.is_empty() { "-".to_owned() } else { rules.join(", ") };
                let file = body["inspector_url"]
                    .as_str()
                    .and_then(|u| u.rsplit_once(".whl/").or_else(|| u.rsplit_once(".tar.gz/")))
                    .map_or("-", |(_, file)| file);
                // `Value`'s Display ignores widths: pad a String.
                let score = body["score"].to_string();
                println!("{package:<28} {score:>5}  {file:<56} {rules}");
            }
        }
    }
    println!(
        "\n{} results in {:.1} s; node exited with {status}; node log: {}",
        results.len(),
        elapsed.as_secs_f64(),
        log_path.display()
    );
    if !drained {
        bail!("the queue was not drained within 120 s; see {}", log_path.display());
    }
    if !status.success() {
        bail!("the node exited with {status}; see {}", log_path.display());
    }
    Ok(())
}
