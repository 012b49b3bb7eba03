//! `cargo xtask tidy` (also run by `cargo test`): checks of the tree that
//! no compiler makes. Every module opens with a `//!` header; no `dbg!`,
//! `todo!`, no test marked should-panic or ignored; no trailing whitespace; only
//! the binary names `DRAGONFLY_*` settings; docs/configuration.md lists
//! exactly the binary's settings, and every setting the docs and container
//! files name; every dependency a crate lists is used.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// Crates that must not know environment variable names.
const LIBRARIES: &[&str] = &[
    "crates/dragonfly-flatten",
    "crates/dragonfly-engine",
    "crates/dragonfly-api",
    "crates/dragonfly-orchestrator",
];

/// Dependencies listed without being used, and why.
const UNUSED_ON_PURPOSE: &[(&str, &str, &str)] = &[
    // Test builds (mockito) and normal builds then resolve the same
    // features and share compiled artifacts (see the workspace Cargo.toml).
    ("crates/dragonfly-api", "smallvec", "feature unification"),
    ("crates/dragonfly-api", "fnv", "feature unification"),
    ("crates/dragonfly-api", "httparse", "feature unification"),
    ("crates/dragonfly-api", "form_urlencoded", "feature unification"),
    // Turns on the rsa feature yara-x's crypto-using modules need.
    ("crates/dragonfly-engine", "rsa", "feature unification"),
];

/// Runs every check; the error lists every finding.
pub fn check(root: &Path) -> Result<()> {
    let mut findings = Vec::new();
    let sources = files(root, &["crates", "bins", "xtask"], "rs");
    for path in &sources {
        let text = read(path);
        let name = relative(root, path);
        if !text.starts_with("//!") {
            findings.push(format!("{name}: no `//!` header"));
        }
        // Built from pieces so that this file passes its own check.
        for banned in [
            ["dbg", "!("].concat(),
            ["todo", "!("].concat(),
            ["#[should", "_panic"].concat(),
            ["#[ig", "nore]"].concat(),
        ] {
            if text.contains(&banned) {
                findings.push(format!("{name}: contains `{banned}`"));
            }
        }
    }
    for path in sources.iter().chain(&files(root, &["docs"], "md")).chain(&files(
        root,
        &["crates", "bins", "xtask"],
        "toml",
    )) {
        for (i, line) in read(path).lines().enumerate() {
            if line.ends_with(' ') || line.ends_with('\t') {
                findings.push(format!("{}:{}: trailing whitespace", relative(root, path), i + 1));
            }
        }
    }
    for library in LIBRARIES {
        for path in files(root, &[&format!("{library}/src")], "rs") {
            if let Some(name) = setting_names(&read(&path)).into_iter().next() {
                findings
                    .push(format!("{}: names {name}; settings belong to the binary", relative(root, &path)));
            }
        }
    }
    findings.extend(settings_findings(root));
    findings.extend(dependency_findings(root));
    if findings.is_empty() {
        return Ok(());
    }
    bail!("tidy found {} problems:\n  {}", findings.len(), findings.join("\n  "))
}

/// docs/configuration.md against the binary's `Config` and the files that
/// name settings.
fn settings_findings(root: &Path) -> Vec<String> {
    let mut findings = Vec::new();
    let doc = read(&root.join("docs/configuration.md"));
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|line| line.strip_prefix("| `DRAGONFLY_"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(key, _)| key.to_lowercase())
        .collect();
    let config = read(&root.join("bins/dragonfly-client/src/config.rs"));
    let fields = config_fields(&config);
    if fields.is_empty() {
        findings.push("bins/dragonfly-client/src/config.rs: no `pub struct Config` fields found".into());
    }
    for field in fields.difference(&documented) {
        findings.push(format!("docs/configuration.md: setting `{field}` is not documented"));
    }
    // An alias the binary reads is named in its source.
    let alias = |key: &String| config.contains(&format!("\"DRAGONFLY_{}\"", key.to_uppercase()));
    for key in documented.difference(&fields).filter(|key| !alias(key)) {
        findings.push(format!(
            "docs/configuration.md: documents DRAGONFLY_{} which Config lacks",
            key.to_uppercase()
        ));
    }
    let mut naming = vec![root.join("README.md"), root.join("Dockerfile"), root.join("compose.yaml")];
    naming.extend(files(root, &["docs"], "md"));
    for path in naming {
        for name in setting_names(&read(&path)) {
            if !documented.contains(&name["DRAGONFLY_".len()..].to_lowercase()) {
                findings.push(format!(
                    "{}: names {name}, which docs/configuration.md does not list",
                    relative(root, &path)
                ));
            }
        }
    }
    findings
}

/// The field names of `pub struct Config { ... }`.
fn config_fields(source: &str) -> BTreeSet<String> {
    let Some(start) = source.find("pub struct Config {") else { return BTreeSet::new() };
    source[start..]
        .lines()
        .skip(1)
        .take_while(|line| !line.starts_with('}'))
        .filter_map(|line| line.trim().strip_prefix("pub ")?.split_once(':'))
        .map(|(name, _)| name.trim().to_owned())
        .collect()
}

/// The `DRAGONFLY_<KEY>` names in `text`.
fn setting_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("DRAGONFLY_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        // `DRAGONFLY_*` (all settings) is not a name.
        if end > "DRAGONFLY_".len() {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// Dependencies of each workspace crate that none of its files use.
fn dependency_findings(root: &Path) -> Vec<String> {
    let mut findings = Vec::new();
    let mut manifests = files(root, &["crates", "bins"], "toml");
    manifests.push(root.join("xtask/Cargo.toml"));
    for manifest in manifests.iter().filter(|p| p.file_name().is_some_and(|n| n == "Cargo.toml")) {
        let dir = manifest.parent().unwrap_or(root);
        let crate_dir = relative(root, dir);
        let code: String =
            files(dir, &["src", "tests", "benches", "examples"], "rs").iter().map(|p| read(p)).collect();
        for dependency in dependencies(&read(manifest)) {
            let ident = dependency.replace('-', "_");
            let used = uses_crate(&code, &ident);
            let excused = UNUSED_ON_PURPOSE.iter().any(|(c, d, _)| *c == crate_dir && *d == ident);
            if !used && !excused {
                findings.push(format!("{crate_dir}/Cargo.toml: `{dependency}` is listed but not used"));
            }
        }
    }
    findings
}

/// Whether `code` uses the crate `ident`: a path (`ident::`), a macro
/// (`ident!`) or a `use ident` / `extern crate ident`, as a whole word.
fn uses_crate(code: &str, ident: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    code.match_indices(ident).any(|(at, _)| {
        let before = &code[..at];
        let after = &code[at + ident.len()..];
        if before.ends_with(is_ident) || after.starts_with(is_ident) {
            return false;
        }
        after.starts_with("::")
            || after.starts_with('!')
            || before.ends_with("use ")
            || before.ends_with("crate ")
    })
}

/// Names in the `[dependencies]`, `[dev-dependencies]` and
/// `[build-dependencies]` tables of a manifest.
fn dependencies(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_table = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_table = matches!(line, "[dependencies]" | "[dev-dependencies]" | "[build-dependencies]");
            continue;
        }
        if in_table && let Some((name, _)) = line.split_once('=') {
            let name = name.trim();
            if !name.is_empty() && !name.starts_with('#') {
                out.push(name.trim_end_matches(".workspace").to_owned());
            }
        }
    }
    out
}

/// Files ending in `.{ext}` under each of `dirs` (relative to `root`),
/// sorted, skipping `target` folders.
fn files(root: &Path, dirs: &[&str], ext: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target") {
                    walk(&path, ext, out);
                }
            } else if path.extension().is_some_and(|e| e == ext) {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for dir in dirs {
        walk(&root.join(dir), ext, &mut out);
    }
    out.sort();
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).to_string_lossy().replace('\\', "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy() {
        if let Err(err) = check(&crate::project_root()) {
            panic!("{err}");
        }
    }

    #[test]
    fn finds_what_it_looks_for() {
        assert_eq!(
            setting_names("a DRAGONFLY_X_1 b DRAGONFLY_* c"),
            BTreeSet::from(["DRAGONFLY_X_1".to_owned()])
        );
        let config =
            "pub struct Config {\n    /// Doc.\n    pub base_url: String,\n    pub threads: usize,\n}\n";
        assert_eq!(config_fields(config), BTreeSet::from(["base_url".to_owned(), "threads".to_owned()]));
        let manifest = "[package]\nname = \"x\"\n[dependencies]\nlog.workspace = true\nzip = { version = \"1\" }\n# a comment\n[features]\na = []\n";
        assert_eq!(dependencies(manifest), ["log", "zip"]);
        assert!(uses_crate("use serde::Serialize;", "serde"));
        assert!(uses_crate("let x = serde_json::json!(1);", "serde_json"));
        assert!(!uses_crate("use serde_json::Value;", "serde"));
        assert!(!uses_crate("let my_log = 1; log_in();", "log"));
    }
}
