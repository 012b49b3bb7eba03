//! `dragonfly-fake-server`: the test kit's fake control server as a process.
//!
//! Serves the rule files of `--rules DIR` and queues every distribution file
//! of `--packages DIR` (grouped into releases by file name), prints its URL
//! on the first line of stdout and runs until killed, or with
//! `--demo` queues the generated demo corpus instead of (or besides) files;
//! `--exit-when-drained` runs until every job is finished or dead-lettered, then
//! prints the recorded results as JSON lines and exits 0.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use dragonfly_testkit::server::{AuthMode, Distribution, FakeServer, ServerConfig, release_of, rules_hash};

/// A fake Dragonfly control server ("mainframe") for demos and tests.
#[derive(Debug, Parser)]
#[command(name = "dragonfly-fake-server", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Directory of `*.yar` / `*.yara` rule files to serve.
    #[arg(long, value_name = "DIR")]
    rules: Option<PathBuf>,
    /// Directory of distribution files (`.whl`, `.tar.gz`, `.zip`, ...) to queue.
    #[arg(long, value_name = "DIR")]
    packages: Option<PathBuf>,
    /// Queue the generated demo corpus (12 releases, 5 of them malicious-looking).
    #[arg(long)]
    demo: bool,
    /// Base URL clients use to reach this server (written into download
    /// links); default `http://` + the listen address.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Seconds before an unanswered lease expires.
    #[arg(long, value_name = "SECS", default_value_t = 120.0)]
    lease_timeout: f64,
    /// Leases per job before it is dead-lettered.
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
    /// Answer `/scan-cache` (off: 404, as in production).
    #[arg(long)]
    scan_cache: bool,
    /// Exit once every job is finished or dead-lettered, printing the results
    /// as JSON lines.
    #[arg(long)]
    exit_when_drained: bool,
    /// Authentication the API requires.
    #[arg(long, value_enum, default_value_t = Auth::None)]
    auth: Auth,
    /// Bearer token (`--auth token`).
    #[arg(long)]
    token: Option<String>,
    /// Client id (`--auth auth0` or `cloudflare`).
    #[arg(long)]
    client_id: Option<String>,
    /// Client secret (`--auth auth0` or `cloudflare`).
    #[arg(long)]
    client_secret: Option<String>,
    /// Username for the password grant (`--auth auth0`).
    #[arg(long)]
    username: Option<String>,
    /// Password for the password grant (`--auth auth0`).
    #[arg(long)]
    password: Option<String>,
    /// Audience (`--auth auth0`).
    #[arg(long, default_value = "https://dragonfly.vipyrsec.com")]
    audience: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Auth {
    None,
    Token,
    Auth0,
    Cloudflare,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .target(env_logger::Target::Stderr)
        .init();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("dragonfly-fake-server: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = ServerConfig {
        auth: auth_mode(&args)?,
        lease_timeout: Duration::try_from_secs_f64(args.lease_timeout)
            .context("--lease-timeout must be a non-negative number of seconds")?,
        max_attempts: args.max_attempts,
        public_url: args.public_url.clone(),
        scan_cache: args.scan_cache,
        ..ServerConfig::default()
    };
    let server =
        FakeServer::bind(args.listen, config).with_context(|| format!("cannot listen on {}", args.listen))?;
    if let Some(dir) = &args.rules {
        let rules = dragonfly_testkit::fixtures::rule_files(dir)
            .with_context(|| format!("cannot read rules from {}", dir.display()))?;
        if rules.is_empty() {
            bail!("no *.yar or *.yara files in {}", dir.display());
        }
        server.set_rules(&rules_hash(&rules), rules);
    }
    if let Some(dir) = &args.packages {
        for ((name, version), distributions) in load_packages(dir)? {
            server.add_package(&name, &version, distributions);
        }
    }

    if args.demo {
        for package in dragonfly_testkit::fixtures::demo_corpus() {
            server.add_fixture(&package);
        }
    }

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", server.url())?;
    stdout.flush()?;
    if !args.exit_when_drained {
        loop {
            std::thread::park();
        }
    }
    while !server.wait_drained(Duration::from_secs(3600)) {}
    for result in server.results() {
        writeln!(stdout, "{}", serde_json::to_string(&result)?)?;
    }
    stdout.flush()?;
    Ok(())
}

fn auth_mode(args: &Args) -> anyhow::Result<AuthMode> {
    let need = |value: &Option<String>, flag: &str| -> anyhow::Result<String> {
        value.clone().with_context(|| format!("--auth {:?} needs {flag}", args.auth))
    };
    Ok(match args.auth {
        Auth::None => AuthMode::None,
        Auth::Token => AuthMode::Token(need(&args.token, "--token")?),
        Auth::Auth0 => AuthMode::Auth0 {
            client_id: need(&args.client_id, "--client-id")?,
            client_secret: need(&args.client_secret, "--client-secret")?,
            username: need(&args.username, "--username")?,
            password: need(&args.password, "--password")?,
            audience: args.audience.clone(),
        },
        Auth::Cloudflare => AuthMode::Cloudflare {
            client_id: need(&args.client_id, "--client-id")?,
            client_secret: need(&args.client_secret, "--client-secret")?,
        },
    })
}

/// Sorted regular files of `dir`.
fn files_in(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        match entry.file_name().into_string() {
            Ok(name) => files.push((name, entry.path())),
            Err(name) => log::warn!("skipping {name:?}: not UTF-8"),
        }
    }
    files.sort();
    Ok(files)
}

type Releases = BTreeMap<(String, String), Vec<Distribution>>;

fn load_packages(dir: &Path) -> anyhow::Result<Releases> {
    let mut releases = Releases::new();
    for (filename, path) in files_in(dir)? {
        let Some(release) = release_of(&filename) else {
            log::warn!("skipping {filename}: not a distribution file name");
            continue;
        };
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        releases.entry(release).or_default().push(Distribution { filename, bytes });
    }
    Ok(releases)
}
