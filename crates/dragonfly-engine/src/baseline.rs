//! What is new in a release compared with one already trusted.

use std::collections::HashSet;

use crate::report::{PackageReport, SuppressedBy};

/// The findings of a trusted release. [`Baseline::apply`] takes a later
/// release's findings out of its score when the same rule matched the same
/// content at the same place in the trusted one, so what is left is what
/// the upgrade adds: findings in new or changed files, and findings of
/// rules that did not match that content before.
///
/// Places are paths inside the archives with the release's own
/// `name-version` taken out of the first path segment (`pkg-1.0/setup.py`
/// and `pkg-1.1/setup.py` are one place; so are `pkg-1.0.dist-info/` and
/// `pkg-1.1.dist-info/`).
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
        for file in report.distributions.iter().flat_map(|d| &d.files) {
            let place = release_place(&file.path, &report.name, &report.version);
            let rules = file.matches.iter().chain(file.suppressed.iter().map(|s| &s.rule));
            for rule in rules {
                known.insert((place.clone(), file.sha256.clone(), rule.name.clone()));
            }
        }
        Baseline { known }
    }

    /// Adds the findings of another trusted report.
    pub fn extend(&mut self, other: Baseline) {
        self.known.extend(other.known);
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
        let (name, version) = (report.name.clone(), report.version.clone());
        let mut moved = 0;
        for file in report.distributions.iter_mut().flat_map(|d| &mut d.files) {
            let place = release_place(&file.path, &name, &version);
            file.suppress(|file, rule| {
                // Borrowed lookups would need a custom key; findings are few.
                let key = (place.clone(), file.sha256.clone(), rule.name.clone());
                self.known.contains(&key).then(|| {
                    moved += 1;
                    SuppressedBy::Baseline
                })
            });
        }
        moved
    }
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
    if normalise(project) != normalise(name) {
        return path.to_owned();
    }
    let mut place = normalise(name);
    place.push_str(suffix);
    if let Some(rest) = rest {
        place.push('/');
        place.push_str(rest);
    }
    place
}

/// PEP 503: lower case, runs of `-`, `_` and `.` as one `-`.
fn normalise(name: &str) -> String {
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
