//! `dragonfly-client scan`: offline scanning of files, directories, URLs and
//! PyPI releases.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use dragonfly_api::{Auth, Client, ClientConfig, pypi};
use dragonfly_engine::{
    Baseline, DistributionReport, Engine, Evidence, PackageReport, ReuseCache, ReuseMode, RuleMatch, RuleSet,
    SuppressedBy, SuppressedMatch, Suppressions, parse_distribution_filename,
};
use dragonfly_orchestrator::DiskStore;
use serde::Serialize;

use crate::cli::{Format, ScanArgs};
use crate::logging::printable;

mod progress;
mod sarif;

use progress::Progress;

/// Suppressions read from the working directory when `--suppressions` is
/// not given.
const DEFAULT_SUPPRESSIONS: &str = ".dragonfly-suppressions.toml";

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
    let suppressions = load_suppressions(args.suppressions.as_deref())?;
    let (old, inputs) = baseline_inputs(args.baseline.as_deref(), &args.inputs)?;
    let progress = Progress::new(!args.no_progress, inputs.len() + usize::from(old.is_some()));
    // Identical files (across inputs, a baseline and its upgrade) are
    // scanned once.
    let mut reuse = ReuseCache::new(ReuseMode::Reuse, dragonfly_engine::DEFAULT_BUDGET_BYTES);
    if let Some(dir) = &args.cache_dir {
        let store = DiskStore::open(dir, dragonfly_engine::DEFAULT_BUDGET_BYTES as u64)?;
        // Local rules' hash is a digest of their sources; the bundled
        // rules' hash is a version, so their sources are digested.
        let sources = match &args.rules {
            Some(_) => rules.hash().to_owned(),
            None => dragonfly_engine::rules_digest(RuleSet::bundled_sources()),
        };
        reuse = reuse.with_store(Arc::new(store), &rules, &sources);
    }
    let engine = Engine::new(Arc::new(rules))
        .with_timeout(Duration::from_secs(args.timeout))
        .with_file_observer(progress.observer())
        .with_reuse(Some(Arc::new(reuse)));
    let mut scanner = InputScanner { engine, args: &args, client: None, progress: &progress };
    let baseline = match &old {
        Some(old) => Some(scanner.baseline(old)?),
        None => None,
    };
    let results: Vec<InputResult> =
        inputs.iter().map(|input| scanner.scan(input, &suppressions, baseline.as_ref())).collect();
    progress.finish();

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &results)?;
            writeln!(out)?;
        }
        Format::Sarif => {
            serde_json::to_writer_pretty(&mut out, &sarif::log(&results, scanner.engine.rules()))?;
            writeln!(out)?;
        }
        Format::Table => write_table(&mut out, &results, args.explain)?,
    }
    out.flush()?;
    Ok(ExitCode::from(exit_status(&results, args.fail_score)))
}

/// The suppression list: `--suppressions FILE`, else
/// `.dragonfly-suppressions.toml` when the working directory has one.
/// Entries not pinned to a content hash are warned about on stderr.
fn load_suppressions(given: Option<&Path>) -> Result<Suppressions> {
    let path = match given {
        Some(path) => path,
        None if Path::new(DEFAULT_SUPPRESSIONS).is_file() => Path::new(DEFAULT_SUPPRESSIONS),
        None => return Ok(Suppressions::default()),
    };
    let shown = printable(&path.display().to_string(), CELL_MAX);
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("can not read the suppressions `{}`", path.display()))?;
    let list = Suppressions::parse(&text)
        .with_context(|| format!("can not read the suppressions `{}`", path.display()))?;
    if given.is_none() {
        // Whoever can write the working directory can silence findings: say so.
        eprintln!("note: {} suppression(s) from {shown}", list.entries().len());
    }
    for (i, entry) in list.entries().iter().enumerate().filter(|(_, e)| e.sha256.is_none()) {
        eprintln!(
            "warning: {shown}: suppression {} (rule {}, path {}) has no sha256: it also hides future, \
             different content at that path",
            i + 1,
            printable(&entry.rule, CELL_MAX),
            printable(&entry.path, CELL_MAX)
        );
    }
    Ok(list)
}

/// The baseline input and the inputs to compare with it:
/// `--baseline pypi:NAME==A..B` alone stands for `--baseline pypi:NAME==A
/// pypi:NAME==B`.
fn baseline_inputs(baseline: Option<&str>, inputs: &[String]) -> Result<(Option<String>, Vec<String>)> {
    let Some(old) = baseline else {
        return Ok((None, inputs.to_vec()));
    };
    let range = old
        .strip_prefix("pypi:")
        .and_then(|spec| spec.split_once("=="))
        .and_then(|(name, versions)| Some((name, versions.split_once("..")?)));
    match range {
        Some((name, (from, to))) => {
            anyhow::ensure!(inputs.is_empty(), "--baseline {old} names both releases; give no other input");
            anyhow::ensure!(
                !from.is_empty() && !to.is_empty(),
                "--baseline {old}: expected pypi:NAME==OLD..NEW"
            );
            Ok((Some(format!("pypi:{name}=={from}")), vec![format!("pypi:{name}=={to}")]))
        }
        None => {
            anyhow::ensure!(!inputs.is_empty(), "--baseline {old}: name the input to compare with it");
            Ok((Some(old.to_owned()), inputs.to_vec()))
        }
    }
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
    progress: &'a Progress,
}

impl InputScanner<'_> {
    /// Scans `input`, takes suppressed and baseline findings out of its
    /// score, and gives its result.
    fn scan(&mut self, input: &str, suppressions: &Suppressions, baseline: Option<&Known>) -> InputResult {
        self.progress.start(input);
        match self.scan_input(input) {
            Ok((mut report, download_errors)) => {
                let suppressed = suppressions.apply(&mut report);
                if let Some(known) = baseline
                    && dragonfly_engine::normalize_name(&known.name)
                        != dragonfly_engine::normalize_name(&report.name)
                {
                    eprintln!(
                        "warning: the baseline is {}, {} is {}: places will rarely match",
                        printable(&known.name, CELL_MAX),
                        printable(input, CELL_MAX),
                        printable(&report.name, CELL_MAX)
                    );
                }
                let known = baseline.map(|known| (known, known.findings.apply(&mut report)));
                let mut result = InputResult::from_report(input, &report, download_errors);
                result.suppressed = suppressed;
                result.baseline = known.map(|(known, count)| BaselineRow {
                    input: known.input.clone(),
                    name: known.name.clone(),
                    version: known.version.clone(),
                    known_findings: count,
                });
                result
            }
            Err(err) => InputResult::error(input, format!("{err:#}")),
        }
    }

    /// Scans the baseline input; it must scan completely, or what is new
    /// would be guessed.
    fn baseline(&mut self, input: &str) -> Result<Known> {
        self.progress.start(input);
        let (report, download_errors) =
            self.scan_input(input).with_context(|| format!("can not scan the baseline {input}"))?;
        let mut problems: Vec<String> = download_errors;
        problems.extend(report.problems().map(|p| p.to_string()));
        if report.distributions.is_empty() && problems.is_empty() {
            problems.push("it has no distributions to scan".to_owned());
        }
        if !problems.is_empty() {
            anyhow::bail!("can not scan the baseline {input} completely: {}", problems.join("; "));
        }
        Ok(Known {
            input: input.to_owned(),
            name: report.name.clone(),
            version: report.version.clone(),
            findings: Baseline::new(&report),
        })
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
            let downloads = release.files.iter().map(|file| {
                self.progress.downloading(&file.url);
                (file.url.as_str(), pypi::download(&client, file, self.args.max_scan_size))
            });
            let (distributions, errors) = self.scan_downloads(downloads);
            return Ok((self.package(release.name, release.version, distributions), errors));
        }
        let (name, version) = name_and_version(input);
        if input.starts_with("http://") || input.starts_with("https://") {
            let client = self.client()?;
            self.progress.downloading(input);
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

/// The baseline a scan is compared with.
struct Known {
    input: String,
    name: String,
    version: String,
    findings: Baseline,
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
    /// Matches taken out of the score by the suppression list.
    suppressed: usize,
    /// Files whose results were reused (identical bytes scanned before, in
    /// this invocation or, with --cache-dir, an earlier one).
    reuse: ReuseRow,
    /// The release compared with, with `--baseline`.
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline: Option<BaselineRow>,
    /// Path of the most malicious file, for the table.
    #[serde(skip)]
    top_file: Option<String>,
}

#[derive(Debug, Default, Serialize)]
struct ReuseRow {
    candidate_files: u64,
    reused_files: u64,
    reused_bytes: u64,
}

#[derive(Debug, Serialize)]
struct BaselineRow {
    input: String,
    name: String,
    version: String,
    /// Matches taken out of the score because the baseline had them.
    known_findings: usize,
}

#[derive(Debug, Serialize)]
struct FileRow {
    distribution: String,
    /// Whether `distribution` is an archive (not a directory).
    #[serde(skip)]
    in_archive: bool,
    /// Where the file is, the same across releases (see `finding_place`).
    #[serde(skip)]
    place: Option<String>,
    path: String,
    /// Other names an installer could write the file under.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    aliases: Vec<String>,
    size: u64,
    sha256: String,
    score: i64,
    rules: Vec<RuleRow>,
    /// Matches that do not count, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    suppressed: Vec<SuppressedRow>,
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
    /// Pattern matches in all; `evidence` holds the first few.
    match_count: u64,
    evidence: Vec<EvidenceRow>,
}

impl RuleRow {
    fn new(rule: &RuleMatch) -> Self {
        RuleRow {
            name: rule.name.clone(),
            weight: rule.weight,
            match_count: rule.match_count,
            evidence: rule.evidence.iter().map(EvidenceRow::new).collect(),
        }
    }
}

#[derive(Debug, Serialize)]
struct EvidenceRow {
    pattern: String,
    offset: u64,
    length: u64,
    line: u64,
    column: u64,
    /// Line and column of the byte after the match.
    end_line: u64,
    end_column: u64,
    /// The matched bytes, escaped.
    matched: String,
    /// The match with some context from its line, escaped.
    excerpt: String,
}

impl EvidenceRow {
    fn new(e: &Evidence) -> Self {
        EvidenceRow {
            pattern: e.pattern.clone(),
            offset: e.offset,
            length: e.length,
            line: e.line,
            column: e.column,
            end_line: e.end_line,
            end_column: e.end_column,
            matched: e.matched.clone(),
            excerpt: e.excerpt.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
struct SuppressedRow {
    #[serde(flatten)]
    rule: RuleRow,
    /// `suppression` or `baseline`.
    by: &'static str,
    /// The suppression's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl SuppressedRow {
    fn new(s: &SuppressedMatch) -> Self {
        let (by, reason) = match &s.by {
            SuppressedBy::Entry { reason, .. } => ("suppression", Some(reason.clone())),
            _ => ("baseline", None),
        };
        SuppressedRow { rule: RuleRow::new(&s.rule), by, reason }
    }
}

impl InputResult {
    fn from_report(input: &str, report: &PackageReport, download_errors: Vec<String>) -> Self {
        let files = report
            .distributions
            .iter()
            .flat_map(|d| d.files.iter().map(move |f| (d, f)))
            .map(|(d, f)| FileRow {
                distribution: d.source.clone(),
                in_archive: d.format.is_some(),
                place: dragonfly_engine::finding_place(report, d, f),
                path: f.path.clone(),
                aliases: f.aliases.clone(),
                size: f.size,
                sha256: f.sha256.clone(),
                score: f.score,
                rules: f.matches.iter().map(RuleRow::new).collect(),
                suppressed: f.suppressed.iter().map(SuppressedRow::new).collect(),
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
            suppressed: 0,
            reuse: {
                let mut row = ReuseRow::default();
                for d in &report.distributions {
                    row.candidate_files += d.reuse.candidate_files;
                    row.reused_files += d.reuse.reused_files;
                    row.reused_bytes += d.reuse.reused_bytes;
                }
                row
            },
            baseline: None,
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
            suppressed: 0,
            reuse: ReuseRow::default(),
            baseline: None,
            top_file: None,
        }
    }
}

/// Longest path or name the table prints of a cell.
const CELL_MAX: usize = 300;

fn write_table(out: &mut impl Write, results: &[InputResult], explain: bool) -> std::io::Result<()> {
    let cell = |text: &str| printable(text, CELL_MAX);
    let rows: Vec<[String; 4]> = results
        .iter()
        .map(|r| {
            let package =
                if r.version.is_empty() { cell(&r.name) } else { cell(&format!("{} {}", r.name, r.version)) };
            let score = r.score.map_or_else(|| "error".to_owned(), |s| s.to_string());
            let rules = if r.rules_matched.is_empty() { "-".to_owned() } else { r.rules_matched.join(", ") };
            let file = r.top_file.as_deref().map_or_else(|| "-".to_owned(), cell);
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
        if explain {
            for file in result.files.iter().filter(|f| !f.rules.is_empty()) {
                let rule = &file.rules[0];
                match rule.evidence.first() {
                    Some(e) => writeln!(
                        out,
                        "  {}:{}:{}: {} {}: {}",
                        cell(&file.path),
                        e.line,
                        e.column,
                        rule.name,
                        e.pattern,
                        e.excerpt
                    )?,
                    None => writeln!(out, "  {}: {} (condition only)", cell(&file.path), rule.name)?,
                }
            }
        }
        if let Some(baseline) = &result.baseline {
            let old = if baseline.version.is_empty() { &baseline.input } else { &baseline.version };
            writeln!(out, "  baseline: {} finding(s) already in {}", baseline.known_findings, cell(old))?;
        }
        if result.suppressed > 0 {
            writeln!(out, "  suppressed: {} match(es), listed with --format json", result.suppressed)?;
        }
        for error in &result.errors {
            writeln!(out, "  error: {}", printable(error, 4096))?;
        }
        for anomaly in &result.anomalies {
            writeln!(out, "  anomaly: {}", printable(&anomaly.message, 4096))?;
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
    fn baseline_inputs_expand_a_range_and_refuse_what_does_not_fit() {
        let inputs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (old, new) = baseline_inputs(Some("pypi:evil==1.0..1.1"), &[]).unwrap();
        assert_eq!((old.as_deref(), new), (Some("pypi:evil==1.0"), inputs(&["pypi:evil==1.1"])));
        let (old, new) = baseline_inputs(Some("old.tar.gz"), &inputs(&["a", "b"])).unwrap();
        assert_eq!((old.as_deref(), new), (Some("old.tar.gz"), inputs(&["a", "b"])));
        assert_eq!(baseline_inputs(None, &inputs(&["a"])).unwrap(), (None, inputs(&["a"])));
        let err = |b: &str, i: &[&str]| baseline_inputs(Some(b), &inputs(i)).unwrap_err().to_string();
        assert!(err("pypi:evil==..1.1", &[]).contains("expected pypi:NAME==OLD..NEW"));
        assert!(err("pypi:evil==1.0..1.1", &["x"]).contains("names both releases"));
        assert!(err("old.tar.gz", &[]).contains("name the input to compare"));
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
