//! Scan results and scoring: file -> distribution -> package.
//!
//! Reports are plain values: they say what matched and what could not be
//! scanned, typed, and leave it to the caller to decide what to tell whom.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use dragonfly_flatten::{Anomaly, Format};

use crate::evidence::Evidence;
use crate::reuse::ReuseCounts;

/// One rule that matched a file (after the `filetype` filter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch {
    /// Rule identifier.
    pub name: String,
    /// The rule file that defines it.
    pub source: String,
    /// The rule's weight.
    pub weight: i64,
    /// Where its patterns matched: the first [`MAX_EVIDENCE`](crate::MAX_EVIDENCE)
    /// matches by offset (none for a rule whose condition uses no pattern).
    pub evidence: Vec<Evidence>,
    /// How many pattern matches there were in all.
    pub match_count: u64,
}

/// A match taken out of the score, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressedMatch {
    /// The match.
    pub rule: RuleMatch,
    /// What took it out.
    pub by: SuppressedBy,
}

/// What took a match out of the score.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SuppressedBy {
    /// An entry of a [`Suppressions`](crate::Suppressions) list.
    Entry {
        /// The entry's place in its list, from 0.
        index: usize,
        /// The entry's reason.
        reason: String,
    },
    /// The same rule matched the same content at the same place in the
    /// [`Baseline`](crate::Baseline).
    Baseline,
}

impl fmt::Display for SuppressedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SuppressedBy::Entry { index, reason } => write!(f, "suppression {}: {reason}", index + 1),
            SuppressedBy::Baseline => f.write_str("in the baseline"),
        }
    }
}

/// A scanned file with at least one matching rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// Path inside the archive (or relative to the scanned directory).
    pub path: String,
    /// Other names an installer could write it under (see
    /// [`File::aliases`](dragonfly_flatten::File::aliases)).
    pub aliases: Vec<String>,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, lower-case hex.
    pub sha256: String,
    /// Sum of the weights of the matched rules.
    pub score: i64,
    /// Matched rules that count, in rule-set order.
    pub matches: Vec<RuleMatch>,
    /// Matched rules taken out of the score (suppressions, a baseline).
    pub suppressed: Vec<SuppressedMatch>,
}

impl FileReport {
    /// Moves the matches for which `by` says why into
    /// [`suppressed`](Self::suppressed) and updates the score.
    pub fn suppress(&mut self, mut by: impl FnMut(&FileReport, &RuleMatch) -> Option<SuppressedBy>) {
        let matches = std::mem::take(&mut self.matches);
        for rule in matches {
            match by(self, &rule) {
                Some(by) => self.suppressed.push(SuppressedMatch { rule, by }),
                None => self.matches.push(rule),
            }
        }
        self.score = self.matches.iter().map(|m| m.weight).sum();
    }
}

/// Why one file could not be scanned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// Occurs when the rules ran longer than the per-file timeout.
    #[error("scan timed out after {seconds} s")]
    Timeout {
        /// The timeout, in whole seconds.
        seconds: u64,
    },
    /// Occurs when yara-x refused to scan the file.
    #[error("scan failed: {message}")]
    Scanner {
        /// yara-x's message.
        message: String,
    },
    /// Occurs when the distribution's deadline passed, or an earlier file
    /// timed out, before this file was scanned: the files from here on
    /// (`count` of them) were not scanned.
    #[error("not scanned: {reason}; {count} file(s) left unscanned")]
    Stopped {
        /// Why scanning stopped.
        reason: StopReason,
        /// Files left unscanned from this one on.
        count: u64,
    },
}

/// Why scanning of a distribution stopped before its last file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The job's deadline passed.
    Deadline,
    /// An earlier file timed out: the distribution is incomplete anyway.
    EarlierTimeout,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopReason::Deadline => "the job's deadline passed",
            StopReason::EarlierTimeout => "an earlier file timed out",
        })
    }
}

/// A file that could not be scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnscannedFile {
    /// Path inside the archive.
    pub path: String,
    /// What went wrong.
    pub error: FileError,
}

/// Why a distribution as a whole could not be scanned.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DistributionError {
    /// Occurs when the archive cannot be flattened (unsupported, corrupt,
    /// encrypted), or a directory or archive crosses a [`Limits`](crate::Limits) value.
    #[error(transparent)]
    Archive(#[from] dragonfly_flatten::Error),
    /// Occurs when a file or directory of a scanned directory cannot be read.
    #[error("can not read `{}`: {source}", path.display())]
    Read {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: Arc<std::io::Error>,
    },
}

/// The scan of one distribution (one archive or directory).
#[derive(Debug, Clone, Default)]
pub struct DistributionReport {
    /// Where the distribution came from: its download URL, or a local path.
    pub source: String,
    /// Archive format, when the input was an archive.
    pub format: Option<Format>,
    /// Files with at least one match, in archive order.
    pub files: Vec<FileReport>,
    /// Number of files scanned.
    pub files_scanned: u64,
    /// Files not scanned because no rule's `filetype` applies to them.
    pub files_skipped: u64,
    /// Bytes of file content scanned.
    pub bytes_scanned: u64,
    /// Files that could not be scanned.
    pub file_errors: Vec<UnscannedFile>,
    /// Why the distribution as a whole could not be scanned, if it could not.
    pub error: Option<DistributionError>,
    /// Constructs in the archive that readers disagree on (scanned under
    /// every reading).
    pub anomalies: Vec<Anomaly>,
    /// What result reuse did for it.
    pub reuse: ReuseCounts,
}

impl DistributionReport {
    /// A distribution that could not be scanned at all.
    pub fn failed(source: impl Into<String>, error: impl Into<DistributionError>) -> Self {
        DistributionReport { source: source.into(), error: Some(error.into()), ..Default::default() }
    }

    /// Whether every file was scanned.
    pub fn is_complete(&self) -> bool {
        self.error.is_none() && self.file_errors.is_empty()
    }

    /// Sum of weights over the distinct rules matched anywhere in it.
    pub fn score(&self) -> i64 {
        let mut seen = BTreeSet::new();
        self.files
            .iter()
            .flat_map(|f| &f.matches)
            .filter(|m| seen.insert(m.name.as_str()))
            .map(|m| m.weight)
            .sum()
    }

    /// The highest-scoring file with a match that counts (the first one on
    /// ties).
    pub fn most_malicious_file(&self) -> Option<&FileReport> {
        self.files.iter().filter(|f| !f.matches.is_empty()).fold(None, |best: Option<&FileReport>, f| {
            match best {
                Some(b) if b.score >= f.score => Some(b),
                _ => Some(f),
            }
        })
    }

    /// What kept parts of it from being scanned: the distribution's error
    /// first, then each file's.
    pub fn problems(&self) -> impl Iterator<Item = Problem<'_>> {
        let source = self.source.as_str();
        self.error
            .iter()
            .map(move |error| Problem::Distribution { source, error })
            .chain(self.file_errors.iter().map(move |file| Problem::File { source, file }))
    }
}

/// Something that kept a part of a distribution from being scanned; its
/// `Display` is the one-line text shown to people
/// (`` {source}: `{path}`: {error} ``).
#[derive(Debug, Clone, Copy)]
pub enum Problem<'a> {
    /// The distribution as a whole.
    Distribution {
        /// The distribution's source.
        source: &'a str,
        /// What went wrong.
        error: &'a DistributionError,
    },
    /// One file of it.
    File {
        /// The distribution's source.
        source: &'a str,
        /// The file and what went wrong.
        file: &'a UnscannedFile,
    },
}

impl fmt::Display for Problem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Distribution { source, error } => write!(f, "{source}: {error}"),
            Problem::File { source, file } => write!(f, "{source}: `{}`: {}", file.path, file.error),
        }
    }
}

/// The scan of a package release: all of its distributions.
#[derive(Debug, Clone)]
pub struct PackageReport {
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: String,
    /// Hash of the rule set the scan used.
    pub rule_hash: String,
    /// One report per distribution, in input order.
    pub distributions: Vec<DistributionReport>,
}

impl PackageReport {
    /// The highest distribution score (0 without distributions).
    pub fn score(&self) -> i64 {
        self.distributions.iter().map(DistributionReport::score).max().unwrap_or(0)
    }

    /// Distinct names of the rules matched in any distribution, sorted.
    pub fn rules_matched(&self) -> Vec<String> {
        let names: BTreeSet<&str> = self
            .distributions
            .iter()
            .flat_map(|d| &d.files)
            .flat_map(|f| &f.matches)
            .map(|m| m.name.as_str())
            .collect();
        names.into_iter().map(str::to_owned).collect()
    }

    /// The highest-scoring distribution (the first one on ties) and its
    /// highest-scoring file, if any file matched.
    pub fn most_malicious_file(&self) -> Option<(&DistributionReport, &FileReport)> {
        let mut best: Option<&DistributionReport> = None;
        for dist in &self.distributions {
            if best.is_none_or(|b| dist.score() > b.score()) {
                best = Some(dist);
            }
        }
        let dist = best?;
        Some((dist, dist.most_malicious_file()?))
    }

    /// Whether every file of every distribution was scanned. A report that
    /// is not complete must not be taken for a score.
    pub fn is_complete(&self) -> bool {
        self.distributions.iter().all(DistributionReport::is_complete)
    }

    /// Every problem that kept a part of the package from being scanned.
    pub fn problems(&self) -> impl Iterator<Item = Problem<'_>> {
        self.distributions.iter().flat_map(DistributionReport::problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, weight: i64) -> RuleMatch {
        RuleMatch { name: name.into(), source: "a.yar".into(), weight, evidence: Vec::new(), match_count: 1 }
    }

    fn file(path: &str, matches: Vec<RuleMatch>) -> FileReport {
        let score = matches.iter().map(|m| m.weight).sum();
        FileReport {
            path: path.into(),
            aliases: Vec::new(),
            size: 10,
            sha256: String::new(),
            score,
            matches,
            suppressed: Vec::new(),
        }
    }

    fn dist(source: &str, files: Vec<FileReport>) -> DistributionReport {
        DistributionReport { source: source.into(), files, ..Default::default() }
    }

    fn release(distributions: Vec<DistributionReport>) -> PackageReport {
        PackageReport { name: "pkg".into(), version: "1.0".into(), rule_hash: "abc".into(), distributions }
    }

    #[test]
    fn scoring_follows_the_protocol() {
        // Distribution one: rule a twice (counted once) + b = 5 + 2 = 7.
        let one = dist(
            "https://h/one.tar.gz",
            vec![file("x/setup.py", vec![m("a", 5), m("b", 2)]), file("x/y.py", vec![m("a", 5)])],
        );
        // Distribution two: c = 9, in the second file.
        let two =
            dist("https://h/two.whl", vec![file("p/q.py", vec![m("b", 2)]), file("p/r.py", vec![m("c", 9)])]);
        assert_eq!(one.score(), 7);
        assert_eq!(two.score(), 11);
        let package = release(vec![one, two]);
        assert_eq!(package.score(), 11);
        assert_eq!(package.rules_matched(), ["a", "b", "c"]);
        let (d, f) = package.most_malicious_file().unwrap();
        assert_eq!((d.source.as_str(), f.path.as_str()), ("https://h/two.whl", "p/r.py"));
    }

    #[test]
    fn problems_are_typed_and_read_as_one_line_each() {
        let mut broken = dist("https://h/a.whl", vec![file("x.py", vec![m("a", 5)])]);
        broken
            .file_errors
            .push(UnscannedFile { path: "big.py".into(), error: FileError::Timeout { seconds: 10 } });
        let corrupt = dragonfly_flatten::Error::UnsupportedFormat { seen: "PNG image".into() };
        let package = release(vec![DistributionReport::failed("https://h/a.tar.gz", corrupt), broken]);
        assert!(!package.is_complete());
        let lines: Vec<String> = package.problems().map(|p| p.to_string()).collect();
        assert_eq!(
            lines,
            [
                "https://h/a.tar.gz: unsupported format: PNG image",
                "https://h/a.whl: `big.py`: scan timed out after 10 s"
            ]
        );
        assert!(matches!(
            package.problems().next(),
            Some(Problem::Distribution { error: DistributionError::Archive(_), .. })
        ));
        assert!(release(vec![dist("https://h/a.whl", vec![])]).is_complete());
    }

    #[test]
    fn suppressed_matches_leave_the_score() {
        let mut one = dist(
            "https://h/one.whl",
            vec![file("a.py", vec![m("a", 5), m("b", 2)]), file("b.py", vec![m("a", 5)])],
        );
        for f in &mut one.files {
            f.suppress(|f, rule| (f.path == "a.py" || rule.name == "b").then_some(SuppressedBy::Baseline));
        }
        assert_eq!((one.files[0].score, one.files[0].suppressed.len()), (0, 2));
        assert_eq!(one.score(), 5);
        // A file whose every match is suppressed is never the one to inspect.
        assert_eq!(one.most_malicious_file().map(|f| f.path.as_str()), Some("b.py"));
        let package = release(vec![one]);
        assert_eq!(package.rules_matched(), ["a"]);
        assert_eq!(
            SuppressedBy::Entry { index: 0, reason: "vendored".into() }.to_string(),
            "suppression 1: vendored"
        );
    }

    #[test]
    fn ties_pick_the_first_distribution_and_file() {
        let package = release(vec![
            dist(
                "https://h/first.tar.gz",
                vec![file("a.py", vec![m("a", 3)]), file("b.py", vec![m("a", 3)])],
            ),
            dist("https://h/second.whl", vec![file("c.py", vec![m("a", 3)])]),
        ]);
        let (d, f) = package.most_malicious_file().unwrap();
        assert_eq!((d.source.as_str(), f.path.as_str()), ("https://h/first.tar.gz", "a.py"));
    }
}
