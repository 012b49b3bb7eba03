//! What is new in a release compared with one already trusted.

use std::collections::HashSet;

use crate::report::{DistributionReport, FileReport, PackageReport, SuppressedBy};
use crate::suppress::is_plain_path;

/// The findings of a trusted release. [`Baseline::apply`] takes a later
/// release's findings out of its score when the same rule matched the same
/// content at the same place in the trusted one, so what is left is what
/// the upgrade adds: findings in new, moved or changed files, and findings
/// of rules that did not match that content before.
///
/// A place is the kind of distribution (sdist, wheel, directory) and the
/// path inside it with the release's own `name-version` taken out of the
/// first segment (`pkg-1.0/setup.py` and `pkg-1.1/setup.py` are one place;
/// so are `pkg-1.0.dist-info/` and `pkg-1.1.dist-info/`), with every alias
/// of the file. A path with `.`, `..` or empty segments is never known.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    /// (place, content SHA-256, rule).
    known: HashSet<(String, String, String)>,
}

impl Baseline {
    /// The baseline of `report`: each of its matches, counted or
    /// suppressed.
    pub fn new(report: &PackageReport) -> Baseline {
        let mut known = HashSet::new();
        for dist in &report.distributions {
            for file in &dist.files {
                let Some(place) = finding_place(report, dist, file) else { continue };
                let rules = file.matches.iter().chain(file.suppressed.iter().map(|s| &s.rule));
                for rule in rules {
                    known.insert((place.clone(), file.sha256.clone(), rule.name.clone()));
                }
            }
        }
        Baseline { known }
    }

    /// How many (place, content, rule) findings it holds.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// Whether it holds no finding.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Moves the matches of `report` that the baseline holds out of its
    /// score (as [`SuppressedBy::Baseline`]); returns how many it moved.
    pub fn apply(&self, report: &mut PackageReport) -> usize {
        let places: Vec<Vec<Option<String>>> = report
            .distributions
            .iter()
            .map(|dist| dist.files.iter().map(|file| finding_place(report, dist, file)).collect())
            .collect();
        let mut moved = 0;
        for (dist, places) in report.distributions.iter_mut().zip(places) {
            for (file, place) in dist.files.iter_mut().zip(places) {
                let Some(place) = place else { continue };
                file.suppress(|file, rule| {
                    let key = (place.clone(), file.sha256.clone(), rule.name.clone());
                    self.known.contains(&key).then(|| {
                        moved += 1;
                        SuppressedBy::Baseline
                    })
                });
            }
        }
        moved
    }
}

/// Where `file` of `dist` is, the same for every release of the package:
/// `kind:place`, then `|alias` for each alias, with [`release_place`]
/// paths; `None` for a path that is not plain (see [`Baseline`]).
pub fn finding_place(report: &PackageReport, dist: &DistributionReport, file: &FileReport) -> Option<String> {
    let kind = match dist.format {
        None => "directory",
        Some(_) => {
            let name = dist.source.split(['?', '#']).next().unwrap_or_default();
            let name = name.rsplit(['/', '\\']).next().unwrap_or_default();
            if name.len() >= 4 && name.as_bytes()[name.len() - 4..].eq_ignore_ascii_case(b".whl") {
                "wheel"
            } else {
                "sdist"
            }
        }
    };
    let mut place = kind.to_owned();
    for (i, name) in std::iter::once(&file.path).chain(&file.aliases).enumerate() {
        if !is_plain_path(name) {
            return None;
        }
        place.push(if i == 0 { ':' } else { '|' });
        place.push_str(&release_place(name, &report.name, &report.version));
    }
    Some(place)
}

/// `path` with the release's `name-version` in its first segment replaced
/// by the normalised name (PEP 503), so that one file of two releases has
/// one place.
pub fn release_place(path: &str, name: &str, version: &str) -> String {
    let (first, rest) = match path.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (path, None),
    };
    if version.is_empty() {
        return path.to_owned();
    }
    let suffix = [".dist-info", ".data", ".egg-info"].into_iter().find(|s| first.ends_with(s)).unwrap_or("");
    let stem = &first[..first.len() - suffix.len()];
    let Some(project) = stem
        .len()
        .checked_sub(version.len() + 1)
        .filter(|&cut| stem.is_char_boundary(cut) && matches!(stem.as_bytes()[cut], b'-' | b'_'))
        .filter(|&cut| stem[cut + 1..].eq_ignore_ascii_case(version))
        .map(|cut| &stem[..cut])
    else {
        return path.to_owned();
    };
    if normalize_name(project) != normalize_name(name) {
        return path.to_owned();
    }
    let mut place = normalize_name(name);
    place.push_str(suffix);
    if let Some(rest) = rest {
        place.push('/');
        place.push_str(rest);
    }
    place
}

/// A project name as PEP 503 compares them: lower case, runs of `-`, `_`
/// and `.` as one `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RuleMatch;

    fn release(version: &str, dists: &[(&str, &[(&str, &str)])]) -> PackageReport {
        let distributions = dists
            .iter()
            .map(|&(source, files)| DistributionReport {
                source: source.into(),
                format: Some(dragonfly_flatten::Format::Zip),
                files: files
                    .iter()
                    .map(|&(path, sha256)| FileReport {
                        path: path.into(),
                        aliases: Vec::new(),
                        size: 1,
                        sha256: sha256.into(),
                        score: 5,
                        matches: vec![RuleMatch {
                            name: "r".into(),
                            source: "a.yar".into(),
                            weight: 5,
                            evidence: Vec::new(),
                            match_count: 1,
                        }],
                        suppressed: Vec::new(),
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        PackageReport { name: "pkg".into(), version: version.into(), rule_hash: "h".into(), distributions }
    }

    fn left(report: &PackageReport) -> Vec<&str> {
        let files = report.distributions.iter().flat_map(|d| &d.files);
        files.filter(|f| !f.matches.is_empty()).map(|f| f.path.as_str()).collect()
    }

    #[test]
    fn only_the_same_content_at_the_same_place_is_known() {
        let old = release(
            "1.0",
            &[
                ("https://h/pkg-1.0.tar.gz", &[("pkg-1.0/setup.py", "aa"), ("pkg-1.0/tests/data.py", "bb")]),
                ("https://h/pkg-1.0-py3-none-any.whl", &[("pkg/setup.py", "cc"), ("pkg/x/../y.py", "dd")]),
            ],
        );
        let baseline = Baseline::new(&old);
        assert_eq!(baseline.len(), 3, "the `..` path is never known");
        let mut new = release(
            "1.1",
            &[
                (
                    "https://h/pkg-1.1.tar.gz?x=1",
                    &[
                        ("pkg-1.1/setup.py", "aa"),        // unchanged
                        ("pkg-1.1/pkg/conftest.py", "bb"), // moved content
                        ("pkg-1.1/tests/data.py", "b0"),   // changed content
                    ],
                ),
                (
                    "https://h/pkg-1.1-py3-none-any.whl",
                    &[
                        ("pkg/setup.py", "aa"), // the sdist's content in the wheel
                        ("pkg/x/../y.py", "dd"),
                    ],
                ),
            ],
        );
        assert_eq!(baseline.apply(&mut new), 1);
        assert_eq!(
            left(&new),
            ["pkg-1.1/pkg/conftest.py", "pkg-1.1/tests/data.py", "pkg/setup.py", "pkg/x/../y.py"]
        );
        // A new alias is a new place.
        let mut aliased = release("1.1", &[("https://h/pkg-1.1.tar.gz", &[("pkg-1.1/setup.py", "aa")])]);
        aliased.distributions[0].files[0].aliases.push("pkg-1.1/setup.py.txt".into());
        assert_eq!(baseline.apply(&mut aliased), 0);
    }

    #[test]
    fn places_drop_the_release_version() {
        assert_eq!(release_place("Django-5.0.1/django/x.py", "django", "5.0.1"), "django/django/x.py");
        assert_eq!(
            release_place("zope_interface-6.0/setup.py", "zope.interface", "6.0"),
            "zope-interface/setup.py"
        );
        assert_eq!(release_place("pkg-1.0.dist-info/RECORD", "pkg", "1.0"), "pkg.dist-info/RECORD");
        assert_eq!(release_place("pkg-1.0.data/scripts/x", "pkg", "1.0"), "pkg.data/scripts/x");
        assert_eq!(release_place("pkg/core.py", "pkg", "1.0"), "pkg/core.py");
        // Another project's, or another version's, segment stays.
        assert_eq!(release_place("other-1.0/setup.py", "pkg", "1.0"), "other-1.0/setup.py");
        assert_eq!(release_place("pkg-1.01/setup.py", "pkg", "1.0"), "pkg-1.01/setup.py");
        assert_eq!(release_place("pkg-1.0", "pkg", ""), "pkg-1.0");
        assert_eq!(release_place("é-1.0/x", "é", "1.0"), "é/x");
    }
}
