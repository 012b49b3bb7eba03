//! Scan results and scoring: file -> distribution -> package, and the
//! success/failure bodies the control server expects.

use std::collections::BTreeSet;

use serde::Serialize;

/// One rule that matched a file (after the `filetype` filter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleMatch {
    /// Rule identifier.
    pub name: String,
    /// Namespace (rule source) the rule came from.
    pub namespace: String,
    /// The rule's weight.
    pub weight: i64,
}

/// A scanned file with at least one matching rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReport {
    /// Path inside the archive (or relative to the scanned directory).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Sum of the weights of the matched rules.
    pub score: i64,
    /// Matched rules, in rule-set order.
    pub matches: Vec<RuleMatch>,
}

/// A file that could not be scanned (timeout, scan error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileError {
    /// Path inside the archive.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// The scan of one distribution (one archive or directory).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DistributionReport {
    /// Where the distribution came from: its download URL, or a local path.
    pub source: String,
    /// Archive format, when the input was an archive.
    pub format: Option<String>,
    /// Files with at least one match, in archive order.
    pub files: Vec<FileReport>,
    /// Number of files scanned.
    pub files_scanned: u64,
    /// Files not scanned because no rule's `filetype` applies to them.
    pub files_skipped: u64,
    /// Bytes of file content scanned.
    pub bytes_scanned: u64,
    /// Files that could not be scanned.
    pub file_errors: Vec<FileError>,
    /// Why the distribution as a whole could not be scanned (download,
    /// unsupported or corrupt archive, limit hit), if it could not.
    pub error: Option<String>,
}

impl DistributionReport {
    /// A distribution that could not be scanned at all.
    pub fn failed(source: impl Into<String>, error: impl Into<String>) -> Self {
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
            .filter(|m| seen.insert((m.namespace.as_str(), m.name.as_str())))
            .map(|m| m.weight)
            .sum()
    }

    /// The highest-scoring file (the first one on ties).
    pub fn most_malicious_file(&self) -> Option<&FileReport> {
        self.files.iter().fold(None, |best: Option<&FileReport>, f| match best {
            Some(b) if b.score >= f.score => Some(b),
            _ => Some(f),
        })
    }

    /// Problems, one line each (distribution error first, then files).
    pub fn problems(&self) -> impl Iterator<Item = String> + '_ {
        self.error
            .iter()
            .map(|e| format!("{}: {e}", self.source))
            .chain(self.file_errors.iter().map(|e| format!("{}: `{}`: {}", self.source, e.path, e.message)))
    }
}

/// The scan of a package release: all of its distributions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageReport {
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: String,
    /// Hash of the rule set the scan used.
    pub commit: String,
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

    /// Link to the most malicious file on inspector.pypi.io, when there is
    /// one and the distribution came from an `http(s)` URL.
    pub fn inspector_url(&self) -> Option<String> {
        let (dist, file) = self.most_malicious_file()?;
        inspector_url(&self.name, &self.version, &dist.source, &file.path)
    }

    /// Every problem that kept a part of the package from being scanned.
    pub fn problems(&self) -> Vec<String> {
        self.distributions.iter().flat_map(DistributionReport::problems).collect()
    }

    /// What to report: a verdict when every file of every distribution was
    /// scanned, otherwise a failure naming what went wrong. A partial scan
    /// is never reported as a score.
    pub fn outcome(&self) -> Outcome {
        let problems = self.problems();
        if self.distributions.is_empty() {
            return Outcome::Failure(Failure {
                name: self.name.clone(),
                version: self.version.clone(),
                reason: "the release has no distributions".into(),
            });
        }
        if !problems.is_empty() {
            return Outcome::Failure(Failure {
                name: self.name.clone(),
                version: self.version.clone(),
                reason: problems.join("; "),
            });
        }
        Outcome::Success(Verdict {
            name: self.name.clone(),
            version: self.version.clone(),
            score: self.score(),
            inspector_url: self.inspector_url(),
            rules_matched: self.rules_matched(),
            commit: self.commit.clone(),
        })
    }
}

/// A package scanned completely: the fields of the `PUT /package` success
/// body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: String,
    /// Highest distribution score.
    pub score: i64,
    /// Link to the most malicious file, or null.
    pub inspector_url: Option<String>,
    /// Distinct matched rule names, sorted.
    pub rules_matched: Vec<String>,
    /// Hash of the rules used.
    pub commit: String,
}

/// A package that could not be scanned: the fields of the `PUT /package`
/// failure body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: String,
    /// Human-readable cause.
    pub reason: String,
}

/// The result of scanning a package; serializes to the exact `PUT /package`
/// body (success or failure).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    /// Every file was scanned.
    Success(Verdict),
    /// Something could not be scanned.
    Failure(Failure),
}

/// `https://inspector.pypi.io/project/{name}/{version}/{URL path}/{file}`,
/// or `None` when `download_url` is not an `http(s)` URL.
pub fn inspector_url(name: &str, version: &str, download_url: &str, file_path: &str) -> Option<String> {
    let rest = download_url.strip_prefix("https://").or_else(|| download_url.strip_prefix("http://"))?;
    let path = rest.split_once('/').map_or("", |(_host, path)| path);
    let path = path.split(['?', '#']).next().unwrap_or_default().trim_matches('/');
    if path.is_empty() {
        return None;
    }
    Some(format!("https://inspector.pypi.io/project/{name}/{version}/{path}/{file_path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, weight: i64) -> RuleMatch {
        RuleMatch { name: name.into(), namespace: "ns".into(), weight }
    }

    fn file(path: &str, matches: Vec<RuleMatch>) -> FileReport {
        let score = matches.iter().map(|m| m.weight).sum();
        FileReport { path: path.into(), size: 10, score, matches }
    }

    fn dist(source: &str, files: Vec<FileReport>) -> DistributionReport {
        DistributionReport { source: source.into(), files, ..Default::default() }
    }

    const URL: &str = "https://files.pythonhosted.org/packages/36/ce/3a/discord.py-2.2.3.tar.gz";

    #[test]
    fn inspector_url_matches_the_protocol_example() {
        assert_eq!(
            inspector_url("discord-py", "2.2.3", URL, "discord.py-2.2.3/discord/client.py").as_deref(),
            Some(
                "https://inspector.pypi.io/project/discord-py/2.2.3/packages/36/ce/3a/discord.py-2.2.3.tar.gz/discord.py-2.2.3/discord/client.py"
            )
        );
        assert_eq!(inspector_url("a", "1", "/tmp/a-1.tar.gz", "x.py"), None);
        assert_eq!(
            inspector_url("a", "1", "http://127.0.0.1:8000/p/a.whl?x=1", "x.py").as_deref(),
            Some("https://inspector.pypi.io/project/a/1/p/a.whl/x.py")
        );
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
        let package = PackageReport {
            name: "pkg".into(),
            version: "1.0".into(),
            commit: "abc".into(),
            distributions: vec![one, two],
        };
        assert_eq!(package.score(), 11);
        assert_eq!(package.rules_matched(), ["a", "b", "c"]);
        assert_eq!(
            package.inspector_url().as_deref(),
            Some("https://inspector.pypi.io/project/pkg/1.0/two.whl/p/r.py")
        );
    }

    #[test]
    fn success_body_is_exact() {
        let package = PackageReport {
            name: "pkg".into(),
            version: "1.0".into(),
            commit: "abc".into(),
            distributions: vec![dist("https://h/p/one.tar.gz", vec![file("x/setup.py", vec![m("a", 5)])])],
        };
        assert_eq!(
            serde_json::to_string(&package.outcome()).unwrap(),
            r#"{"name":"pkg","version":"1.0","score":5,"inspector_url":"https://inspector.pypi.io/project/pkg/1.0/p/one.tar.gz/x/setup.py","rules_matched":["a"],"commit":"abc"}"#
        );
        let clean = PackageReport { distributions: vec![dist("https://h/a.whl", vec![])], ..package };
        assert_eq!(
            serde_json::to_string(&clean.outcome()).unwrap(),
            r#"{"name":"pkg","version":"1.0","score":0,"inspector_url":null,"rules_matched":[],"commit":"abc"}"#
        );
    }

    #[test]
    fn failure_body_is_exact_and_partial_scans_are_failures() {
        let mut broken = dist("https://h/a.whl", vec![file("x.py", vec![m("a", 5)])]);
        broken.file_errors.push(FileError { path: "big.py".into(), message: "scan timed out".into() });
        let package = PackageReport {
            name: "pkg".into(),
            version: "1.0".into(),
            commit: "abc".into(),
            distributions: vec![
                DistributionReport::failed("https://h/a.tar.gz", "download failed: 404"),
                broken,
            ],
        };
        assert_eq!(
            serde_json::to_string(&package.outcome()).unwrap(),
            r#"{"name":"pkg","version":"1.0","reason":"https://h/a.tar.gz: download failed: 404; https://h/a.whl: `big.py`: scan timed out"}"#
        );
        let empty = PackageReport { distributions: vec![], ..package };
        assert!(matches!(empty.outcome(), Outcome::Failure(f) if f.reason.contains("no distributions")));
    }

    #[test]
    fn ties_pick_the_first_distribution_and_file() {
        let package = PackageReport {
            name: "p".into(),
            version: "1".into(),
            commit: "c".into(),
            distributions: vec![
                dist(
                    "https://h/first.tar.gz",
                    vec![file("a.py", vec![m("a", 3)]), file("b.py", vec![m("a", 3)])],
                ),
                dist("https://h/second.whl", vec![file("c.py", vec![m("a", 3)])]),
            ],
        };
        let (d, f) = package.most_malicious_file().unwrap();
        assert_eq!((d.source.as_str(), f.path.as_str()), ("https://h/first.tar.gz", "a.py"));
    }
}
