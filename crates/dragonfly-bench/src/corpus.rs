//! The inputs: a generated corpus shaped like PyPI, or a folder of real
//! distribution files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use dragonfly_engine::parse_distribution_filename;
use dragonfly_testkit::fixtures;
use dragonfly_testkit::server::normalize_name;

pub use dragonfly_testkit::Distribution;
/// One release with its distributions (what a corpus folder holds has no
/// expected rules).
pub use dragonfly_testkit::fixtures::FixturePackage as Package;

/// The size of the generated corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// A few small packages: seconds even in a debug build.
    Tiny,
    /// A smaller PyPI-shaped corpus.
    Quick,
    /// The full PyPI-shaped corpus.
    Default,
}

impl Size {
    /// `(small sdists, pure-Python wheels, sizes of the large wheels in MiB)`.
    pub fn shape(self) -> (usize, usize, &'static [usize]) {
        match self {
            Size::Tiny => (13, 2, &[2]),
            Size::Quick => (60, 12, &[32]),
            Size::Default => (200, 40, &[32, 64, 96]),
        }
    }

    /// Lower-case name, as in the flags.
    pub fn name(self) -> &'static str {
        match self {
            Size::Tiny => "tiny",
            Size::Quick => "quick",
            Size::Default => "default",
        }
    }
}

/// The generated corpus of `size` (deterministic).
pub fn generated(size: Size) -> Vec<Package> {
    let (small, wheels, large) = size.shape();
    let mut out: Vec<Package> = fixtures::bench_corpus(small, wheels, 0, 0);
    // One large wheel per size; the test kit numbers them from 0 in each call.
    for (k, &mb) in large.iter().enumerate() {
        for mut package in fixtures::bench_corpus(0, 0, 1, mb) {
            let old = package.name.replace('-', "_");
            package.name = format!("bench-large-{k:03}");
            let new = package.name.replace('-', "_");
            for dist in &mut package.distributions {
                dist.filename = dist.filename.replacen(&old, &new, 1);
            }
            out.push(package);
        }
    }
    out
}

/// Archive suffixes recognised in a corpus folder.
const SUFFIXES: &[&str] =
    &[".whl", ".egg", ".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar"];

/// Whether `filename` looks like a distribution archive.
pub fn is_distribution(filename: &str) -> bool {
    let lower = filename.to_ascii_lowercase();
    SUFFIXES.iter().any(|s| lower.ends_with(s))
}

/// File names of each release, keyed by `(normalised name, version)`.
pub type Releases = BTreeMap<(String, String), Vec<String>>;

/// Groups distribution file names by release, each list sorted. Names that
/// follow no convention are returned apart.
pub fn group_by_release(filenames: &[String]) -> (Releases, Vec<String>) {
    let mut releases = Releases::new();
    let mut unknown = Vec::new();
    for filename in filenames {
        match parse_distribution_filename(filename) {
            Some((name, version)) => {
                releases.entry((normalize_name(&name), version)).or_default().push(filename.clone())
            }
            None => unknown.push(filename.clone()),
        }
    }
    for files in releases.values_mut() {
        files.sort();
    }
    (releases, unknown)
}

/// Reads every distribution file under `dir` (recursively) and groups the
/// files by release.
pub fn from_dir(dir: &Path) -> Result<Vec<Package>> {
    let mut paths = Vec::new();
    collect(dir, &mut paths)?;
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in paths {
        let Some(filename) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
        if is_distribution(&filename) {
            by_name.insert(filename, path);
        }
    }
    let filenames: Vec<String> = by_name.keys().cloned().collect();
    let (releases, unknown) = group_by_release(&filenames);
    for filename in &unknown {
        eprintln!("bench: skipping {filename}: not a wheel, egg or sdist file name");
    }
    if releases.is_empty() {
        bail!("no distribution files (.whl, .tar.gz, .zip, ...) found under {}", dir.display());
    }
    let mut packages = Vec::with_capacity(releases.len());
    for ((name, version), files) in releases {
        let mut distributions = Vec::with_capacity(files.len());
        for filename in files {
            let path = &by_name[&filename];
            let bytes = std::fs::read(path).with_context(|| format!("can not read {}", path.display()))?;
            distributions.push(Distribution { filename, bytes });
        }
        packages.push(Package { name, version, distributions, expected_rules: Vec::new() });
    }
    Ok(packages)
}

/// Regular files under `dir`, recursively (symlinks not followed).
pub(crate) fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("can not read {}", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            collect(&entry.path(), out)?;
        } else if file_type.is_file() {
            out.push(entry.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_grouping_follows_file_name_conventions() {
        let names: Vec<String> = [
            "Foo_Bar-1.0-py3-none-any.whl",
            "foo-bar-1.0.tar.gz",
            "foo_bar-1.1.tar.gz",
            "numpy-2.1.3-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "README.txt",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (releases, unknown) = group_by_release(&names);
        assert_eq!(unknown, ["README.txt"]);
        let keys: Vec<(&str, &str)> = releases.keys().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(keys, [("foo-bar", "1.0"), ("foo-bar", "1.1"), ("numpy", "2.1.3")]);
        assert_eq!(releases[&("foo-bar".into(), "1.0".into())].len(), 2);
        assert!(is_distribution("X-1.0.TAR.GZ") && !is_distribution("x.json"));
    }

    #[test]
    fn tiny_corpus_has_every_shape_with_unique_names() {
        let corpus = generated(Size::Tiny);
        let (small, wheels, large) = Size::Tiny.shape();
        assert_eq!(corpus.len(), small + wheels + large.len());
        let mut names: Vec<&str> = corpus.iter().map(|p| p.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), corpus.len());
        let last = corpus.last().unwrap();
        assert_eq!(last.name, "bench-large-000");
        assert!(
            last.distributions[0].filename.starts_with("bench_large_000-"),
            "{}",
            last.distributions[0].filename
        );
        assert!(corpus.iter().any(|p| p.distributions[0].filename.ends_with(".tar.gz")));
    }

    #[test]
    fn corpus_folder_is_read_recursively() {
        let dir = tempfile::tempdir().unwrap();
        let package = &generated(Size::Tiny)[0];
        let dist = &package.distributions[0];
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub").join(&dist.filename), &dist.bytes).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let packages = from_dir(dir.path()).unwrap();
        assert_eq!(packages.len(), 1);
        assert_eq!(packages[0].version, package.version);
        assert_eq!(packages[0].distributions[0].bytes, dist.bytes);
        assert!(from_dir(&dir.path().join("missing")).is_err());
    }
}
