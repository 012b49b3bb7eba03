//! `dragonfly-client scan`: offline scanning of files, directories, URLs and
//! PyPI releases.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use dragonfly_api::{Auth, Client, ClientConfig, pypi};
use dragonfly_engine::{DistributionReport, Engine, PackageReport, RuleSet, parse_distribution_filename};
use serde::Serialize;

use crate::cli::{Format, ScanArgs};

/// Runs `scan` and returns the exit status (0 clean, 1 over --fail-score,
/// 2 errors).
pub fn run(args: ScanArgs) -> Result<ExitCode> {
    let rules = match &args.rules {
        Some(path) => RuleSet::load(path).context("can not compile the rules")?,
        None => RuleSet::bundled(),
    };
    if let Some(threads) = args.threads {
        anyhow::ensure!(threads > 0, "--threads must be at least 1");
        // Fails only if a pool was already built; the default one is then kept.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
    }
    let engine = Engine::new(Arc::new(rules)).with_timeout(Duration::from_secs(args.timeout));
    let mut scanner = InputScanner { engine, args: &args, client: None };
    let results: Vec<InputResult> = args.inputs.iter().map(|input| scanner.scan(input)).collect();

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &results)?;
            writeln!(out)?;
        }
        Format::Table => write_table(&mut out, &results)?,
    }
    out.flush()?;
    Ok(ExitCode::from(exit_status(&results, args.fail_score)))
}

fn exit_status(results: &[InputResult], fail_score: Option<i64>) -> u8 {
    if results.iter().any(|r| !r.errors.is_empty()) {
        2
    } else if fail_score.is_some_and(|limit| results.iter().any(|r| r.score.unwrap_or(0) >= limit)) {
        1
    } else {
        0
    }
}

struct InputScanner<'a> {
    engine: Engine,
    args: &'a ScanArgs,
    client: Option<Client>,
}

impl InputScanner<'_> {
    fn scan(&mut self, input: &str) -> InputResult {
        match self.scan_input(input) {
            Ok((report, download_errors)) => InputResult::from_report(input, &report, download_errors),
            Err(err) => InputResult::error(input, format!("{err:#}")),
        }
    }

    /// The report of one input, and the downloads that failed.
    fn scan_input(&mut self, input: &str) -> Result<(PackageReport, Vec<String>)> {
        if let Some(spec) = input.strip_prefix("pypi:") {
            let (name, version) = pypi::parse_spec(spec)
                .with_context(|| format!("`{input}`: expected pypi:NAME or pypi:NAME==VERSION"))?;
            let client = self.client()?;
            let index = index_url(self.args.index_url.as_deref());
            let release = pypi::resolve(&client, &index, &name, version.as_deref())
                .with_context(|| format!("can not look up {spec} on {index}"))?;
            let downloads = release
                .files
                .iter()
                .map(|file| (file.url.as_str(), pypi::download(&client, file, self.args.max_scan_size)));
            let (distributions, errors) = self.scan_downloads(downloads);
            return Ok((self.package(release.name, release.version, distributions), errors));
        }
        let (name, version) = name_and_version(input);
        if input.starts_with("http://") || input.starts_with("https://") {
            let client = self.client()?;
            let downloads = [(input, client.download(input, self.args.max_scan_size))];
            let (distributions, errors) = self.scan_downloads(downloads);
            return Ok((self.package(name, version, distributions), errors));
        }
        let path = Path::new(input);
        let meta = std::fs::metadata(path).with_context(|| format!("can not read `{input}`"))?;
        let distribution = if meta.is_dir() {
            self.engine.scan_directory(path)
        } else {
            let bytes = read_capped(path, self.args.max_scan_size)
                .with_context(|| format!("can not read `{input}`"))?;
            self.engine.scan_archive(input, &bytes)
        };
        Ok((self.package(name, version, vec![distribution]), Vec::new()))
    }

    /// Scans each download; failed downloads become error lines.
    fn scan_downloads<'u>(
        &self,
        downloads: impl IntoIterator<Item = (&'u str, Result<Vec<u8>, dragonfly_api::Error>)>,
    ) -> (Vec<DistributionReport>, Vec<String>) {
        let mut reports = Vec::new();
        let mut errors = Vec::new();
        for (url, bytes) in downloads {
            match bytes {
                Ok(bytes) => reports.push(self.engine.scan_archive(url, &bytes)),
                Err(err) => errors.push(format!("{url}: download failed: {err}")),
            }
        }
        (reports, errors)
    }

    fn package(
        &self,
        name: String,
        version: String,
        distributions: Vec<DistributionReport>,
    ) -> PackageReport {
        PackageReport { name, version, rule_hash: self.engine.rules().hash().to_owned(), distributions }
    }

    fn client(&mut self) -> Result<Client> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let mut config = ClientConfig::new(index_url(self.args.index_url.as_deref()), Auth::None);
        // The user names what to scan, and nothing is sent anywhere: local
        // mirrors and files on the own network are fine.
        config.allow_private_downloads = true;
        let client = Client::new(config).context("can not set up the HTTP client")?;
        self.client = Some(client.clone());
        Ok(client)
    }
}

/// Reads at most `max` bytes of `path`: a file, or a pipe or device whose
/// size is not known before it is read (`/dev/stdin`, `/dev/zero`).
fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    anyhow::ensure!(bytes.len() as u64 <= max, "more than --max-scan-size {max} bytes");
    Ok(bytes)
}

/// The package index: `--index-url`, else `PIP_INDEX_URL`, else
/// `UV_INDEX_URL`, else PyPI.
fn index_url(given: Option<&str>) -> String {
    given
        .map(str::to_owned)
        .or_else(|| std::env::var("PIP_INDEX_URL").ok().filter(|v| !v.is_empty()))
        .or_else(|| std::env::var("UV_INDEX_URL").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| pypi::DEFAULT_INDEX.to_owned())
}

/// Name and version from a path or URL's last segment; a directory or
/// unconventional name gives the whole name and an empty version.
fn name_and_version(input: &str) -> (String, String) {
    let trimmed = input.trim_end_matches(['/', '\\']);
    let last = trimmed.rsplit(['/', '\\']).next().unwrap_or(trimmed);
    let last = last.split(['?', '#']).next().unwrap_or(last);
    if let Some(pair) = parse_distribution_filename(last) {
        return pair;
    }
    // A directory named like an unpacked sdist: name-1.0.
    if let Some(pair) = parse_distribution_filename(&format!("{last}.tar")) {
        return pair;
    }
    (last.to_owned(), String::new())
}

/// One input in the `--format json` output: the `PUT /package` success
/// fields plus per-file details and errors.
#[derive(Debug, Serialize)]
struct InputResult {
    input: String,
    name: String,
    version: String,
    /// `None` when nothing could be scanned.
    score: Option<i64>,
    inspector_url: Option<String>,
    rules_matched: Vec<String>,
    commit: Option<String>,
    files: Vec<FileRow>,
    files_scanned: u64,
    files_skipped: u64,
    bytes_scanned: u64,
    errors: Vec<String>,
    /// Archive constructs readers disagree on; every reading was scanned.
    anomalies: Vec<AnomalyRow>,
    /// Path of the most malicious file, for the table.
    #[serde(skip)]
    top_file: Option<String>,
}

#[derive(Debug, Serialize)]
struct FileRow {
    distribution: String,
    path: String,
    /// Other names an installer could write the file under.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    aliases: Vec<String>,
    size: u64,
    score: i64,
    rules: Vec<RuleRow>,
}

#[derive(Debug, Serialize)]
struct AnomalyRow {
    distribution: String,
    kind: &'static str,
    path: Option<String>,
    message: String,
}

#[derive(Debug, Serialize)]
struct RuleRow {
    name: String,
    weight: i64,
}

impl InputResult {
    fn from_report(input: &str, report: &PackageReport, download_errors: Vec<String>) -> Self {
        let files = report
            .distributions
            .iter()
            .flat_map(|d| d.files.iter().map(move |f| (d, f)))
            .map(|(d, f)| FileRow {
                distribution: d.source.clone(),
                path: f.path.clone(),
                aliases: f.aliases.clone(),
                size: f.size,
                score: f.score,
                rules: f.matches.iter().map(|m| RuleRow { name: m.name.clone(), weight: m.weight }).collect(),
            })
            .collect();
        let sum = |f: fn(&DistributionReport) -> u64| report.distributions.iter().map(f).sum();
        let mut errors = download_errors;
        errors.extend(report.problems().map(|p| p.to_string()));
        if report.distributions.is_empty() && errors.is_empty() {
            errors.push("the release has no distributions to scan".to_owned());
        }
        let top = report.most_malicious_file();
        let inspector_url = top.and_then(|(dist, file)| {
            dragonfly_api::inspector_url(&report.name, &report.version, &dist.source, &file.path)
        });
        InputResult {
            input: input.to_owned(),
            name: report.name.clone(),
            version: report.version.clone(),
            score: Some(report.score()),
            inspector_url,
            top_file: top.map(|(_, file)| file.path.clone()),
            rules_matched: report.rules_matched(),
            commit: Some(report.rule_hash.clone()),
            files,
            files_scanned: sum(|d| d.files_scanned),
            files_skipped: sum(|d| d.files_skipped),
            bytes_scanned: sum(|d| d.bytes_scanned),
            errors,
            anomalies: report
                .distributions
                .iter()
                .flat_map(|d| d.anomalies.iter().map(move |a| (d, a)))
                .map(|(d, a)| AnomalyRow {
                    distribution: d.source.clone(),
                    kind: a.kind.label(),
                    path: a.path.clone(),
                    message: a.to_string(),
                })
                .collect(),
        }
    }

    fn error(input: &str, message: String) -> Self {
        let (name, version) = match input.strip_prefix("pypi:") {
            Some(spec) => match dragonfly_api::pypi::parse_spec(spec) {
                Ok((name, version)) => (name, version.unwrap_or_default()),
                Err(_) => (spec.to_owned(), String::new()),
            },
            None => name_and_version(input),
        };
        InputResult {
            input: input.to_owned(),
            name,
            version,
            score: None,
            inspector_url: None,
            rules_matched: Vec::new(),
            commit: None,
            files: Vec::new(),
            files_scanned: 0,
            files_skipped: 0,
            bytes_scanned: 0,
            errors: vec![message],
            anomalies: Vec::new(),
            top_file: None,
        }
    }
}

fn write_table(out: &mut impl Write, results: &[InputResult]) -> std::io::Result<()> {
    let rows: Vec<[String; 4]> = results
        .iter()
        .map(|r| {
            let package =
                if r.version.is_empty() { r.name.clone() } else { format!("{} {}", r.name, r.version) };
            let score = r.score.map_or_else(|| "error".to_owned(), |s| s.to_string());
            let rules = if r.rules_matched.is_empty() { "-".to_owned() } else { r.rules_matched.join(", ") };
            let file = r.top_file.clone().unwrap_or_else(|| "-".to_owned());
            [package, score, rules, file]
        })
        .collect();
    let header = ["PACKAGE", "SCORE", "RULES", "MOST MALICIOUS FILE"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: [&str; 4]| {
        writeln!(
            out,
            "{:<w0$}  {:>w1$}  {:<w2$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )
    };
    line(out, header)?;
    for (row, result) in rows.iter().zip(results) {
        line(out, [&row[0], &row[1], &row[2], &row[3]])?;
        for error in &result.errors {
            writeln!(out, "  error: {error}")?;
        }
        for anomaly in &result.anomalies {
            writeln!(out, "  anomaly: {}", anomaly.message)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_inputs() {
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(name_and_version("dist/evil-1.0.tar.gz"), pair("evil", "1.0"));
        assert_eq!(
            name_and_version("https://files.example/p/ab/requests-2.32.3-py3-none-any.whl?x"),
            pair("requests", "2.32.3")
        );
        assert_eq!(name_and_version("src/mypkg-0.3/"), pair("mypkg", "0.3"));
        assert_eq!(name_and_version("checkout"), pair("checkout", ""));
        // A failed lookup still names the release it was about.
        let failed = InputResult::error("pypi:requests==2.32.3", "offline".into());
        assert_eq!(pair(&failed.name, &failed.version), pair("requests", "2.32.3"));
    }

    fn result(score: Option<i64>, errors: Vec<String>) -> InputResult {
        let mut r = InputResult::error("x", String::new());
        r.score = score;
        r.errors = errors;
        r
    }

    #[test]
    fn exit_status_rules() {
        let clean = result(Some(3), vec![]);
        let hot = result(Some(9), vec![]);
        let broken = result(None, vec!["missing".into()]);
        assert_eq!(exit_status(&[result(Some(3), vec![])], None), 0);
        assert_eq!(exit_status(&[clean, hot], Some(5)), 1);
        assert_eq!(exit_status(&[result(Some(4), vec![])], Some(5)), 0);
        assert_eq!(exit_status(&[result(Some(9), vec![]), broken], Some(5)), 2);
    }
}
