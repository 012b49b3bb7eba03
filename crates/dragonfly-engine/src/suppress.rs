//! Known false positives, taken out of the score by rule, path and
//! (optionally) the exact content they were reviewed for.

use globset::{GlobBuilder, GlobMatcher};
use serde::Deserialize;

use crate::report::{PackageReport, RuleMatch, SuppressedBy};

/// One entry of a suppression list.
#[derive(Debug, Clone)]
pub struct Suppression {
    /// The rule identifier it silences.
    pub rule: String,
    /// Glob over the path inside the archive: `*`, `?` and `[...]` stay
    /// within one path segment, `**` crosses segments.
    pub path: String,
    /// The SHA-256 (hex) of the only content it applies to; `None` applies
    /// to any content at matching paths, including future, different content.
    pub sha256: Option<String>,
    /// Why the match is not a finding.
    pub reason: String,
    matcher: GlobMatcher,
}

impl Suppression {
    /// Whether this entry silences `rule` in `file`: the glob must match
    /// the file's path and each of its aliases (another reader's name for
    /// it), none of which may have `.`, `..` or empty segments, a leading
    /// `/` or a backslash (names an installer resolves to another place).
    pub fn applies(&self, file: &crate::FileReport, rule: &RuleMatch) -> bool {
        rule.name == self.rule
            && self.sha256.as_deref().is_none_or(|hash| hash.eq_ignore_ascii_case(&file.sha256))
            && std::iter::once(&file.path)
                .chain(&file.aliases)
                .all(|name| is_plain_path(name) && self.matcher.is_match(name))
    }
}

/// A list of [`Suppression`]s, as read from TOML:
///
/// ```toml
/// [[suppress]]
/// rule = "exec_decoded_payload"
/// path = "mypkg-*/mypkg/_vendor/*.py"
/// sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
/// reason = "vendored, reviewed 2026-12"
/// ```
#[derive(Debug, Clone, Default)]
pub struct Suppressions {
    entries: Vec<Suppression>,
}

/// Why a suppression list could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SuppressionError {
    /// Occurs when the text is not TOML of the expected shape.
    #[error("{0}")]
    Syntax(String),
    /// Occurs when an entry's value is not usable.
    #[error("suppression {number}: {message}")]
    Entry {
        /// The entry's place in the list, from 1.
        number: usize,
        /// What is wrong with it.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListToml {
    #[serde(default)]
    suppress: Vec<EntryToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryToml {
    rule: String,
    path: String,
    sha256: Option<String>,
    reason: String,
}

impl Suppressions {
    /// Reads a list from TOML text (`[[suppress]]` tables with `rule`,
    /// `path`, `reason` and optionally `sha256`; unknown keys are errors).
    pub fn parse(text: &str) -> Result<Suppressions, SuppressionError> {
        let list: ListToml = toml::from_str(text).map_err(|e| SuppressionError::Syntax(e.to_string()))?;
        let mut entries = Vec::with_capacity(list.suppress.len());
        for (i, entry) in list.suppress.into_iter().enumerate() {
            let bad = |message: String| SuppressionError::Entry { number: i + 1, message };
            if entry.rule.trim().is_empty() {
                return Err(bad("`rule` is empty".into()));
            }
            if entry.reason.trim().is_empty() {
                return Err(bad("`reason` is empty: say why this is not a finding".into()));
            }
            if let Some(hash) = &entry.sha256
                && (hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(bad(format!("`sha256` must be 64 hex digits, found {hash:?}")));
            }
            let matcher = GlobBuilder::new(&entry.path)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| bad(format!("`path` {:?}: {}", entry.path, e.kind())))?
                .compile_matcher();
            entries.push(Suppression {
                rule: entry.rule,
                path: entry.path,
                sha256: entry.sha256.map(|h| h.to_ascii_lowercase()),
                reason: entry.reason,
                matcher,
            });
        }
        Ok(Suppressions { entries })
    }

    /// The entries, in list order.
    pub fn entries(&self) -> &[Suppression] {
        &self.entries
    }

    /// Whether the list has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Moves every match an entry applies to (the first such entry names
    /// it) out of the score; returns how many it moved.
    pub fn apply(&self, report: &mut PackageReport) -> usize {
        let mut moved = 0;
        for file in report.distributions.iter_mut().flat_map(|d| &mut d.files) {
            file.suppress(|file, rule| {
                let (index, entry) = self.entries.iter().enumerate().find(|(_, e)| e.applies(file, rule))?;
                moved += 1;
                Some(SuppressedBy::Entry { index, reason: entry.reason.clone() })
            });
        }
        moved
    }
}

/// Whether `path` names one place the same way for every reader: relative,
/// `/`-separated, without `.`, `..` or empty segments.
pub(crate) fn is_plain_path(path: &str) -> bool {
    !path.is_empty() && !path.contains('\\') && path.split('/').all(|s| !matches!(s, "" | "." | ".."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DistributionReport, FileReport};

    fn report(files: &[(&str, &str, &[&str])]) -> PackageReport {
        let files = files
            .iter()
            .map(|&(path, sha256, rules)| {
                let matches: Vec<RuleMatch> = rules
                    .iter()
                    .map(|&name| RuleMatch {
                        name: name.into(),
                        source: "a.yar".into(),
                        weight: 5,
                        evidence: Vec::new(),
                        match_count: 1,
                    })
                    .collect();
                FileReport {
                    path: path.into(),
                    aliases: Vec::new(),
                    size: 1,
                    sha256: sha256.into(),
                    score: 5 * matches.len() as i64,
                    matches,
                    suppressed: Vec::new(),
                }
            })
            .collect();
        let dist = DistributionReport { source: "a.tar.gz".into(), files, ..Default::default() };
        PackageReport {
            name: "a".into(),
            version: "1".into(),
            rule_hash: "h".into(),
            distributions: vec![dist],
        }
    }

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn rule_glob_and_hash_must_all_apply() {
        let list = Suppressions::parse(&format!(
            r#"
            [[suppress]]
            rule = "exec"
            path = "mypkg-*/mypkg/_vendor/*.py"
            sha256 = "{}"
            reason = "vendored, reviewed"

            [[suppress]]
            rule = "net"
            path = "**/tests/**"
            reason = "test fixtures"
            "#,
            HASH.to_uppercase()
        ))
        .unwrap();
        let mut r = report(&[
            ("mypkg-1.0/mypkg/_vendor/six.py", HASH, &["exec", "net"]),
            // `*` stays within a segment.
            ("mypkg-1.0/mypkg/_vendor/deep/six.py", HASH, &["exec"]),
            // Other content at the pinned path.
            ("mypkg-1.0/mypkg/_vendor/other.py", &HASH.replace('9', "8"), &["exec"]),
            ("mypkg-1.0/src/tests/data/x.py", "00", &["net"]),
            // Names that resolve elsewhere are never suppressed.
            ("mypkg-1.0/src/tests/../../setup.py", "00", &["net"]),
            ("mypkg-1.0/src/tests//x.py", "00", &["net"]),
            ("mypkg-1.0/src/tests/x.py", "00", &["net"]),
        ]);
        // An alias outside the glob keeps the finding.
        r.distributions[0].files[6].aliases.push("mypkg-1.0/setup.py".into());
        assert_eq!(list.apply(&mut r), 2);
        let files = &r.distributions[0].files;
        let left: Vec<(usize, usize)> = files.iter().map(|f| (f.matches.len(), f.suppressed.len())).collect();
        assert_eq!(left, [(1, 1), (1, 0), (1, 0), (0, 1), (1, 0), (1, 0), (1, 0)]);
        assert_eq!(
            files[0].suppressed[0].by,
            SuppressedBy::Entry { index: 0, reason: "vendored, reviewed".into() }
        );
        assert_eq!(files[0].score, 5);
        assert_eq!(list.entries().iter().filter(|e| e.sha256.is_none()).count(), 1);
    }

    #[test]
    fn bad_lists_say_what_is_wrong() {
        let err = |text: &str| Suppressions::parse(text).unwrap_err().to_string();
        assert!(err("[[suppress]]\nrule = \"a\"\npath = \"*\"\n").contains("reason"));
        assert!(
            err("[[suppress]]\nrule = \"a\"\npath = \"*\"\nreason = \"r\"\nhash = \"x\"\n").contains("hash")
        );
        assert_eq!(
            err("[[suppress]]\nrule = \"a\"\npath = \"*\"\nreason = \"r\"\nsha256 = \"abc\"\n"),
            "suppression 1: `sha256` must be 64 hex digits, found \"abc\""
        );
        assert!(
            err("[[suppress]]\nrule = \"a\"\npath = \"[z-a\"\nreason = \"r\"\n")
                .starts_with("suppression 1: `path`")
        );
        assert!(
            err("[[suppress]]\nrule = \" \"\npath = \"*\"\nreason = \"r\"\n").contains("`rule` is empty")
        );
        assert!(Suppressions::parse("").unwrap().is_empty());
    }
}
