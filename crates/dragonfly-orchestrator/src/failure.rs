//! Why a job could not be scanned: typed causes, one label each for
//! metrics, one `Display` for the `reason` people read.

use std::fmt;

use dragonfly_engine::{DistributionError, UnscannedFile};

/// Why a job was reported as a failure.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FailureReason {
    /// The job lists no distributions.
    NoDistributions,
    /// Parts of the release could not be scanned (at least one problem).
    Unscanned(Vec<Problem>),
    /// Building the result panicked.
    Internal {
        /// The panic's message.
        message: String,
    },
}

/// Something that kept one distribution (or a file of it) from being scanned.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Problem {
    /// The download failed.
    Download {
        /// The distribution's URL.
        url: String,
        /// What went wrong.
        error: DownloadError,
    },
    /// No rules were loaded when the distribution was to be scanned.
    NoRules {
        /// The distribution's URL.
        url: String,
    },
    /// The archive could not be flattened, or crossed a limit.
    Archive {
        /// The distribution's URL.
        url: String,
        /// What the engine found.
        error: DistributionError,
    },
    /// One file could not be scanned (timeout, scanner error).
    File {
        /// The distribution's URL.
        url: String,
        /// The file and what went wrong.
        file: UnscannedFile,
    },
    /// Downloading or scanning panicked.
    Internal {
        /// The distribution's URL.
        url: String,
        /// What the node was doing.
        stage: Stage,
        /// The panic's message.
        message: String,
    },
}

/// Why a download failed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DownloadError {
    /// The distribution is larger than the node's download limit.
    TooLarge {
        /// The limit, bytes.
        limit: u64,
    },
    /// The server or the network failed.
    Failed(dragonfly_api::Error),
}

/// What the node was doing when a panic happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Downloading a distribution.
    Download,
    /// Scanning a distribution.
    Scan,
}

/// The broad cause of a failure: the `reason` label of
/// `dragonfly_jobs_failed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// A file could not be scanned (timeout, scanner error).
    Scan,
    /// An archive could not be flattened or crossed a limit.
    Archive,
    /// No rules were loaded.
    NoRules,
    /// The job lists no distributions.
    NoDistributions,
    /// A download failed or was too large.
    Download,
    /// A panic inside the node.
    Internal,
}

impl FailureKind {
    /// Every kind, in label order.
    pub const ALL: [FailureKind; 6] = [
        FailureKind::Download,
        FailureKind::Archive,
        FailureKind::Scan,
        FailureKind::NoRules,
        FailureKind::NoDistributions,
        FailureKind::Internal,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::Scan => "scan",
            FailureKind::Archive => "archive",
            FailureKind::NoRules => "no_rules",
            FailureKind::NoDistributions => "no_distributions",
            FailureKind::Download => "download",
            FailureKind::Internal => "internal",
        }
    }
}

impl Problem {
    /// The broad cause.
    pub fn kind(&self) -> FailureKind {
        match self {
            Problem::Download { .. } => FailureKind::Download,
            Problem::NoRules { .. } => FailureKind::NoRules,
            Problem::Archive { .. } => FailureKind::Archive,
            Problem::File { .. } => FailureKind::Scan,
            Problem::Internal { .. } => FailureKind::Internal,
        }
    }
}

impl FailureReason {
    /// The cause a failure is counted under: the gravest of its problems
    /// (internal, download, no distributions, no rules, archive, scan).
    pub fn kind(&self) -> FailureKind {
        match self {
            FailureReason::NoDistributions => FailureKind::NoDistributions,
            FailureReason::Internal { .. } => FailureKind::Internal,
            FailureReason::Unscanned(problems) => {
                problems.iter().map(Problem::kind).max().unwrap_or(FailureKind::Scan)
            }
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::NoDistributions => f.write_str("the job lists no distributions"),
            FailureReason::Internal { message } => write!(f, "internal error while reporting: {message}"),
            FailureReason::Unscanned(problems) => {
                // Bounded, whatever the archive names its files: each
                // problem is cut, and the list stops near the limit.
                let mut written = 0;
                for (i, problem) in problems.iter().enumerate() {
                    let text = bounded(&problem.to_string(), MAX_PROBLEM_BYTES);
                    if i > 0 && written + text.len() > MAX_REASON_BYTES {
                        return write!(f, "; and {} more", problems.len() - i);
                    }
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    f.write_str(&text)?;
                    written += text.len() + 2;
                }
                Ok(())
            }
        }
    }
}

/// About the longest failure reason sent upstream, in bytes.
const MAX_REASON_BYTES: usize = 1024;
/// Longest text of one problem in a reason, in bytes once escaped.
const MAX_PROBLEM_BYTES: usize = 400;

/// `text` with control and bidirectional formatting characters escaped,
/// cut after about `max` bytes of output.
fn bounded(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 8);
    for c in text.chars() {
        if out.len() >= max {
            out.push_str("...");
            break;
        }
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use dragonfly_engine::Problem as Engine;
        match self {
            Problem::Download { url, error } => write!(f, "{url}: {error}"),
            Problem::NoRules { url } => write!(f, "{url}: no rules loaded"),
            Problem::Archive { url, error } => write!(f, "{}", Engine::Distribution { source: url, error }),
            Problem::File { url, file } => write!(f, "{}", Engine::File { source: url, file }),
            Problem::Internal { url, stage, message } => {
                let doing = match stage {
                    Stage::Download => "downloading",
                    Stage::Scan => "scanning",
                };
                write!(f, "{url}: internal error while {doing}: {message}")
            }
        }
    }
}

impl fmt::Display for DownloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownloadError::TooLarge { limit } => write!(f, "download too large: more than {limit} bytes"),
            DownloadError::Failed(error) => write!(f, "download failed: {error}"),
        }
    }
}

impl From<dragonfly_engine::Problem<'_>> for Problem {
    fn from(problem: dragonfly_engine::Problem<'_>) -> Problem {
        match problem {
            dragonfly_engine::Problem::Distribution { source, error } => {
                Problem::Archive { url: source.to_owned(), error: error.clone() }
            }
            dragonfly_engine::Problem::File { source, file } => {
                Problem::File { url: source.to_owned(), file: file.clone() }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use dragonfly_engine::FileError;

    use super::*;

    #[test]
    fn the_gravest_problem_names_the_failure() {
        let timeout = Problem::File {
            url: "https://h/a.whl".into(),
            file: UnscannedFile { path: "big.py".into(), error: FileError::Timeout { seconds: 10 } },
        };
        let corrupt = Problem::Archive { url: "https://h/a.tar.gz".into(), error: unsupported() };
        let no_rules = Problem::NoRules { url: "https://h/b.whl".into() };
        let too_large = Problem::Download {
            url: "https://h/c.zip".into(),
            error: DownloadError::TooLarge { limit: 1024 },
        };
        let reason =
            |problems: &[&Problem]| FailureReason::Unscanned(problems.iter().map(|&p| p.clone()).collect());
        assert_eq!(reason(&[&timeout]).kind(), FailureKind::Scan);
        assert_eq!(reason(&[&timeout, &corrupt]).kind(), FailureKind::Archive);
        assert_eq!(reason(&[&no_rules, &corrupt]).kind(), FailureKind::NoRules);
        assert_eq!(reason(&[&corrupt, &too_large, &no_rules]).kind(), FailureKind::Download);
        assert_eq!(FailureReason::NoDistributions.kind(), FailureKind::NoDistributions);
        assert_eq!(
            reason(&[&too_large, &corrupt, &timeout, &no_rules]).to_string(),
            "https://h/c.zip: download too large: more than 1024 bytes; \
             https://h/a.tar.gz: unsupported format: empty input; \
             https://h/a.whl: `big.py`: scan timed out after 10 s; \
             https://h/b.whl: no rules loaded"
        );
        // A huge name in many problems: the reason stays about 1 KiB.
        let long = Problem::File {
            url: "https://h/a.tar.gz".into(),
            file: UnscannedFile {
                path: format!("{}\nforged", "x".repeat(1 << 20)),
                error: FileError::Timeout { seconds: 1 },
            },
        };
        let text = reason(&[&long; 50]).to_string();
        assert!(text.len() <= MAX_REASON_BYTES + 32, "{}", text.len());
        let bidi = Problem::File {
            url: "https://h/a.tar.gz".into(),
            file: UnscannedFile {
                path: format!("a\u{202e}yp.txt{}", "\u{1}".repeat(1000)),
                error: FileError::Timeout { seconds: 1 },
            },
        };
        assert!(text.ends_with("; and 48 more"), "{}", &text[text.len() - 40..]);
        assert!(!text.contains('\n'));
        let one = reason(&[&bidi]).to_string();
        assert!(!one.contains('\u{202e}') && one.len() <= MAX_PROBLEM_BYTES + 16, "{}", one.len());
        let labels: Vec<&str> = FailureKind::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(labels, ["download", "archive", "scan", "no_rules", "no_distributions", "internal"]);
    }

    /// What the engine says of an empty input.
    fn unsupported() -> DistributionError {
        let engine = dragonfly_engine::Engine::new(std::sync::Arc::new(dragonfly_engine::RuleSet::bundled()));
        engine.scan_archive("x", b"").error.expect("empty input is not an archive")
    }
}
