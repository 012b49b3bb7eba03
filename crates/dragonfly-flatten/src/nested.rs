//! Archives inside archives: a wheel or sdist may carry a `.zip`, `.whl`
//! or `.tar.gz` that its setup script unpacks. Such members, recognised by
//! name and then by content, are opened to [`MAX_DEPTH`] within the outer
//! archive's limits, and their files come out as `outer!/inner/path`.

use crate::budget::Budget;
use crate::{Anomaly, AnomalyKind, Error, File, Format, Skipped, Stream, detect_format, tarball, zipfile};

/// How deep archives are opened: the distribution is depth 1, archives in
/// it depth 2; archives in those are files only.
pub const MAX_DEPTH: usize = 2;

/// Separates an archive member's path from the path of a file inside it.
pub const SEPARATOR: &str = "!/";

/// Whether a member's name says it is an archive worth opening.
pub fn is_archive_name(path: &str) -> bool {
    const SUFFIXES: [&str; 10] =
        [".zip", ".whl", ".egg", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz"];
    // Called for every file: compared in place, no lower-cased copy.
    SUFFIXES.iter().any(|suffix| {
        path.len() >= suffix.len()
            && path.as_bytes()[path.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
    })
}

/// Flattens `bytes` of `format` at nesting `depth`, opening nested
/// archives; files pass `keep` under any of their names.
pub(crate) fn flatten_at(
    bytes: &[u8],
    format: Format,
    budget: &Budget,
    keep: &dyn Fn(&str) -> bool,
    visit: &mut dyn FnMut(File),
    depth: usize,
) -> Result<(Skipped, Vec<Anomaly>), Error> {
    let opens = |name: &str| depth < MAX_DEPTH && is_archive_name(name);
    let wants = |name: &str| keep(name) || opens(name);
    let mut anomalies = Vec::new();
    let mut nested = Nested { budget, keep, depth, anomalies: Vec::new(), failure: None };
    let mut on_file = |file: File| {
        // A nested archive crossed a limit: the whole distribution fails.
        if nested.failure.is_some() {
            return;
        }
        if opens(&file.path) {
            nested.open(&file, &mut *visit);
        }
        if file.names().any(keep) {
            visit(file);
        }
    };
    let skipped = match format {
        Format::Zip => {
            let (skipped, found) = zipfile::flatten(bytes, budget, &wants, &mut on_file)?;
            anomalies = found;
            skipped
        }
        _ => {
            let open = || Stream::open(bytes, format);
            let mut skipped = tarball::flatten(&open, format, budget, &wants, &mut on_file, &mut anomalies)?;
            // pip unzips whatever `zipfile.is_zipfile` accepts, whatever its
            // name: a tar with a zip after it installs the zip.
            if zipfile::is_zip_too(bytes) {
                let (zip_skipped, found) = zipfile::flatten(bytes, budget, &wants, &mut on_file)?;
                anomalies.push(Anomaly { kind: AnomalyKind::Polyglot, path: None });
                anomalies.extend(found);
                skipped.filtered += zip_skipped.filtered;
                skipped.directories += zip_skipped.directories;
            }
            skipped
        }
    };
    if let Some(err) = nested.failure {
        return Err(err);
    }
    anomalies.append(&mut nested.anomalies);
    Ok((skipped, anomalies))
}

/// Opens the nested archives met while one archive is read.
pub(crate) struct Nested<'a> {
    pub(crate) budget: &'a Budget,
    pub(crate) keep: &'a dyn Fn(&str) -> bool,
    /// Depth of the archive the members come from.
    pub(crate) depth: usize,
    pub(crate) anomalies: Vec<Anomaly>,
    /// A limit crossed inside a nested archive: the outer one fails too.
    pub(crate) failure: Option<Error>,
}

impl Nested<'_> {
    /// Hands the files inside `file`, if it is an archive, to `visit`.
    pub(crate) fn open(&mut self, file: &File, visit: &mut dyn FnMut(File)) {
        let Ok(format) = detect_format(&file.data) else {
            self.anomalies
                .push(Anomaly { kind: AnomalyKind::UnreadableNestedArchive, path: Some(file.path.clone()) });
            return;
        };
        let prefix = format!("{}{SEPARATOR}", file.path);
        let keep = self.keep;
        let inner_keep = |name: &str| keep(&format!("{prefix}{name}"));
        let mut inner_visit = |mut inner: File| {
            inner.path.insert_str(0, &prefix);
            for alias in &mut inner.aliases {
                alias.insert_str(0, &prefix);
            }
            visit(inner);
        };
        match flatten_at(&file.data, format, self.budget, &inner_keep, &mut inner_visit, self.depth + 1) {
            Ok((_, inner)) => {
                self.anomalies
                    .push(Anomaly { kind: AnomalyKind::NestedArchive, path: Some(file.path.clone()) });
                self.anomalies.extend(inner.into_iter().map(|mut anomaly| {
                    anomaly.path = Some(match anomaly.path {
                        Some(path) => format!("{prefix}{path}"),
                        None => file.path.clone(),
                    });
                    anomaly
                }));
            }
            Err(err @ Error::LimitExceeded { .. }) => {
                self.failure.get_or_insert(err);
            }
            // Only a file then: pip would not open it either.
            Err(_) => self
                .anomalies
                .push(Anomaly { kind: AnomalyKind::UnreadableNestedArchive, path: Some(file.path.clone()) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_archive_name;

    #[test]
    fn archive_names_match_any_case() {
        assert!(is_archive_name("pkg/Vendor.ZIP"));
        assert!(is_archive_name("data.tar.gz"));
        assert!(!is_archive_name("setup.py"));
        assert!(!is_archive_name("gz"));
    }
}
