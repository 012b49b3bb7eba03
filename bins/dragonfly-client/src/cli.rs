//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Dragonfly scanning node: leases PyPI releases from a control server, scans
/// every file of every distribution with YARA rules, and reports the scores.
///
/// With no subcommand it runs as a node (`run`). Settings come from built-in
/// defaults, then `Config.toml` in the working directory, then `DRAGONFLY_*`
/// environment variables (see `dragonfly-client config` and
/// docs/configuration.md).
#[derive(Debug, Parser)]
#[command(name = "dragonfly-client", version, about, long_about)]
pub struct Cli {
    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run as a scanning node until SIGINT or SIGTERM (the default).
    Run,
    /// Scan local archives, directories, URLs or PyPI releases offline and
    /// print a report.
    Scan(ScanArgs),
    /// Print the effective configuration, secrets masked, and exit.
    Config,
}

/// Output format of `scan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A readable table: package, score, rules, most malicious file.
    Table,
    /// One JSON document: a list with one object per input.
    Json,
    /// A SARIF 2.1.0 log with one run, for code-scanning tools.
    Sarif,
}

/// Arguments of `scan`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
INPUTS:
  path/to/pkg-1.0.tar.gz     a distribution archive (sdist, wheel, zip, egg, tar.bz2, tar.xz)
  path/to/dir                every file under a directory, as one distribution
  https://host/pkg-1.0.whl   a distribution downloaded into memory
  pypi:NAME==VERSION         every distribution of a release on the package
                             index (checked against the index's sha256)
  pypi:NAME                  the latest release (yanked files skipped)

Name and version of a file or URL come from the wheel/sdist file-name
conventions (name-version.tar.gz, name-version-py3-none-any.whl).

SUPPRESSIONS (--suppressions FILE, or .dragonfly-suppressions.toml):
  [[suppress]]
  rule = \"exec_decoded_payload\"          # rule identifier
  path = \"mypkg-*/mypkg/_vendor/*.py\"    # glob over the path inside the archive
  sha256 = \"9f86d08...\"                  # optional: only this exact content
  reason = \"vendored, reviewed 2026-12\"

A suppressed match is listed as suppressed and does not count toward the
score. Without sha256 an entry also hides future, different content.

EXIT STATUS (with --baseline: of the new findings only):
  0  every input scanned, every score below --fail-score (when given)
  1  some score is at or above --fail-score
  2  an input could not be scanned completely (missing file, unsupported
     or corrupt archive, limit hit, download error, bad rules)

EXAMPLES:
  dragonfly-client scan dist/mypkg-1.0.tar.gz --fail-score 5
  dragonfly-client scan --rules ./rules --format json pypi:requests==2.32.3
  dragonfly-client scan --format sarif dist/*.whl > dragonfly.sarif
  dragonfly-client scan --baseline pypi:requests==2.31.0..2.32.3 --fail-score 5")]
pub struct ScanArgs {
    /// Archives, directories, http(s) URLs or pypi:NAME[==VERSION].
    #[arg(required_unless_present = "baseline", value_name = "INPUT")]
    pub inputs: Vec<String>,

    /// Report only what is new since OLD (a file, directory, URL or
    /// pypi: spec): findings whose rule did not match the same content at
    /// the same place in OLD. `--baseline pypi:NAME==A..B` alone compares
    /// release B with release A.
    #[arg(long, value_name = "OLD")]
    pub baseline: Option<String>,

    /// A TOML file of known false positives to take out of the score
    /// [default: .dragonfly-suppressions.toml in the working directory, if
    /// there is one].
    #[arg(long, value_name = "FILE")]
    pub suppressions: Option<PathBuf>,

    /// In the table, show where each matched file's first match is, with an
    /// excerpt.
    #[arg(long)]
    pub explain: bool,

    /// Keep scan results in DIR, so that files scanned before (by this
    /// command, with the same rules) are not scanned again.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Never show the progress bar (it is shown on stderr only when stderr
    /// is a terminal).
    #[arg(long)]
    pub no_progress: bool,

    /// A .yar/.yara file or a directory of them (default: the bundled rules).
    #[arg(long, value_name = "PATH")]
    pub rules: Option<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Exit with status 1 when a package scores at least N.
    #[arg(long, value_name = "N")]
    pub fail_score: Option<i64>,

    /// Per-file scan timeout in seconds.
    #[arg(long, value_name = "SECS", default_value_t = dragonfly_engine::DEFAULT_TIMEOUT.as_secs())]
    pub timeout: u64,

    /// Largest distribution to read or download, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = dragonfly_orchestrator::DEFAULT_MAX_SCAN_SIZE)]
    pub max_scan_size: u64,

    /// Scanning threads (default: available parallelism).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Package index (simple repository API) for pypi: inputs [default:
    /// PIP_INDEX_URL, else UV_INDEX_URL, else PyPI's simple index].
    #[arg(long, value_name = "URL", alias = "pypi-index")]
    pub index_url: Option<String>,
}
