//! Deployment: `Dockerfile`, `compose.yaml` and the docs agree with the
//! binary, its settings and ports (Docker is not run here), and the real
//! binary serves metrics, health endpoints and JSON logs.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Running, clean_bin};
use dragonfly_testkit::fixtures::{self, FixtureFile};
use dragonfly_testkit::server::{Distribution, Endpoint, FakeServer, Fault, FaultAction, ServerConfig};
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn yaml(path: &str) -> Yaml {
    let mut docs = YamlLoader::load_from_str(&repo_file(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(docs.len(), 1, "{path}: one YAML document");
    docs.remove(0)
}

fn str_of<'a>(value: &'a Yaml, what: &str) -> &'a str {
    value.as_str().unwrap_or_else(|| panic!("{what}: expected a string, found {value:?}"))
}

/// One Dockerfile instruction, continuation lines joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

/// The Dockerfile's stages: (name, instructions), `FROM` first.
fn dockerfile_stages() -> Vec<(String, Vec<Instruction>)> {
    let text = repo_file("Dockerfile");
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<(String, Vec<Instruction>)> = Vec::new();
    for line in logical.iter().filter(|l| !l.trim().is_empty()) {
        let (keyword, args) = line.split_once(' ').unwrap_or((line, ""));
        let instruction = Instruction { keyword: keyword.to_ascii_uppercase(), args: args.trim().to_owned() };
        if instruction.keyword == "FROM" {
            let name = instruction.args.split_whitespace().collect::<Vec<_>>();
            let name = match name.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => name.to_string(),
                _ => String::new(),
            };
            stages.push((name, vec![instruction]));
        } else {
            stages.last_mut().expect("FROM comes first").1.push(instruction);
        }
    }
    stages
}

fn stage<'a>(stages: &'a [(String, Vec<Instruction>)], name: &str) -> &'a [Instruction] {
    &stages.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no stage `{name}`")).1
}

fn args_of<'a>(instructions: &'a [Instruction], keyword: &str) -> Vec<&'a str> {
    instructions.iter().filter(|i| i.keyword == keyword).map(|i| i.args.as_str()).collect()
}

/// A `RUN` command without its leading `--mount=...` style flags.
fn run_command(args: &str) -> String {
    args.split_whitespace().skip_while(|w| w.starts_with("--")).collect::<Vec<_>>().join(" ")
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or_else(|| panic!("no port in `{addr}`"))
}

fn binary_name() -> String {
    Path::new(env!("CARGO_BIN_EXE_dragonfly-client")).file_name().unwrap().to_string_lossy().into_owned()
}

/// The node service's `environment` as (name, value) pairs.
fn compose_node_env(compose: &Yaml) -> Vec<(String, String)> {
    let env = compose["services"]["node"]["environment"].as_hash().expect("node environment is a mapping");
    env.iter()
        .map(|(k, v)| {
            let value = match v {
                Yaml::String(s) | Yaml::Real(s) => s.clone(),
                Yaml::Integer(i) => i.to_string(),
                Yaml::Boolean(b) => b.to_string(),
                other => panic!("{k:?}: unexpected value {other:?}"),
            };
            (str_of(k, "variable").to_owned(), value)
        })
        .collect()
}

#[test]
fn docker_build_runs_the_ci_release_build() {
    let ci = yaml(".github/workflows/ci.yml");
    let steps = ci["jobs"]["ci"]["steps"].as_vec().expect("ci steps");
    let ci_build = str_of(&steps.last().expect("a step")["run"], "last CI step").trim();
    assert!(ci_build.starts_with("cargo build --release --locked -p "), "{ci_build}");

    let stages = dockerfile_stages();
    let build = stage(&stages, "build");
    let runs: Vec<String> = args_of(build, "RUN").into_iter().map(run_command).collect();
    assert_eq!(runs, [ci_build], "the build stage runs exactly CI's release build");
    let package = ci_build.rsplit(' ').next().unwrap();
    assert_eq!(package, env!("CARGO_PKG_NAME"));

    // The node stage copies that build's binary.
    let copies = args_of(stage(&stages, "node"), "COPY");
    let from_build = format!("--from=build /src/target/release/{0} /usr/local/bin/{0}", binary_name());
    assert!(copies.contains(&from_build.as_str()), "{copies:?}");
    assert!(build[0].args.starts_with("rust:"), "{}", build[0].args);
}

#[test]
fn the_node_image_runs_the_binary_as_a_non_root_user() {
    let stages = dockerfile_stages();
    let (name, node) = stages.last().unwrap();
    assert_eq!(name, "node", "the default target is the node");
    assert!(node[0].args.starts_with("debian:bookworm-slim"), "{}", node[0].args);
    let entrypoint: Vec<String> = serde_json::from_str(args_of(node, "ENTRYPOINT")[0]).unwrap();
    assert_eq!(entrypoint, [binary_name()]);
    let cmd: Vec<String> = serde_json::from_str(args_of(node, "CMD")[0]).unwrap();
    assert_eq!(cmd, ["run"]);
    let user = args_of(node, "USER");
    assert_eq!(user.len(), 1);
    let uid = user[0].split(':').next().unwrap();
    assert!(uid.parse::<u32>().is_ok_and(|uid| uid != 0), "numeric non-root user: {uid}");
    let installs = args_of(node, "RUN").join(" ");
    assert!(installs.contains("--no-install-recommends ca-certificates"), "{installs}");

    // No secret is baked into any stage.
    for (_, instructions) in &stages {
        for instruction in instructions.iter().filter(|i| i.keyword == "ENV" || i.keyword == "ARG") {
            for secret in ["PASSWORD", "CLIENT_SECRET", "TOKEN", "CLIENT_ID"] {
                assert!(!instruction.args.contains(secret), "secret in the image: {}", instruction.args);
            }
        }
    }
    // The `run` subcommand exists.
    let help = Command::new(env!("CARGO_BIN_EXE_dragonfly-client")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.lines().any(|l| l.trim_start().starts_with("run ")), "{help}");
}

#[test]
fn metrics_port_is_the_same_everywhere() {
    let stages = dockerfile_stages();
    let node = stage(&stages, "node");
    let env = args_of(node, "ENV");
    let addr = env
        .iter()
        .find_map(|e| e.strip_prefix("DRAGONFLY_METRICS_ADDR="))
        .expect("the image turns metrics on (the HEALTHCHECK needs them)");
    let port = port_of(addr);
    assert_eq!(args_of(node, "EXPOSE"), [port.to_string()]);
    let health = args_of(node, "HEALTHCHECK");
    assert_eq!(health.len(), 1);
    assert!(health[0].contains(&format!("/dev/tcp/127.0.0.1/{port}")), "{}", health[0]);
    assert!(health[0].contains("GET /healthz "), "{}", health[0]);

    let compose = yaml("compose.yaml");
    let env = compose_node_env(&compose);
    let compose_addr =
        &env.iter().find(|(k, _)| k == "DRAGONFLY_METRICS_ADDR").expect("compose sets metrics").1;
    assert_eq!(compose_addr, "0.0.0.0:9100");
    assert_eq!(port_of(compose_addr), port);
    for mapping in compose["services"]["node"]["ports"].as_vec().expect("node ports") {
        let mapping = str_of(mapping, "port mapping");
        assert_eq!(port_of(mapping), port, "{mapping}");
        // A fixed host port would stop `--scale node=3`.
        let host_port = mapping.rsplit(':').nth(1).unwrap_or_default();
        assert!(host_port.is_empty(), "{mapping}: leave the host port to Docker");
    }
}

#[test]
fn every_deployment_setting_is_valid() {
    // That every setting these files name is documented is checked by
    // `cargo xtask tidy`; here the binary accepts the compose node's
    // settings plus the image's.
    let dir = tempfile::tempdir().unwrap();
    let mut config = clean_bin();
    config.arg("config").current_dir(dir.path());
    for (key, value) in compose_node_env(&yaml("compose.yaml")) {
        config.env(key, value);
    }
    let output = config.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("auth_mode = \"none\""), "{stdout}");
    assert!(stdout.contains("metrics_addr = \"0.0.0.0:9100\""), "{stdout}");
}

#[test]
fn compose_runs_the_fake_server_and_scalable_nodes() {
    let compose = yaml("compose.yaml");
    let stages = dockerfile_stages();
    let services = &compose["services"];
    assert_eq!(str_of(&services["node"]["build"]["target"], "node target"), "node");
    let server_target = str_of(&services["server"]["build"]["target"], "server target");
    let server_stage = stage(&stages, server_target);
    assert!(services["node"]["container_name"].as_str().is_none(), "a fixed name stops scaling");

    // The server's flags exist in the fake server's CLI.
    let command: Vec<&str> = services["server"]["command"]
        .as_vec()
        .expect("command list")
        .iter()
        .map(|a| str_of(a, "arg"))
        .collect();
    let cli = repo_file("crates/dragonfly-testkit/src/bin/dragonfly-fake-server.rs");
    let flag = |name: &str| -> &str {
        let at =
            command.iter().position(|a| *a == name).unwrap_or_else(|| panic!("{name} missing: {command:?}"));
        command[at + 1]
    };
    for arg in command.iter().filter(|a| a.starts_with("--")) {
        let field = format!("    {}: ", arg.trim_start_matches("--").replace('-', "_"));
        assert!(cli.contains(&field), "dragonfly-fake-server has no {arg}");
    }
    // It serves the rules the image bundles and the demo corpus.
    let rules = flag("--rules");
    let copies = args_of(server_stage, "COPY");
    assert!(copies.contains(&format!("crates/dragonfly-engine/rules {rules}").as_str()), "{copies:?}");
    assert!(command.contains(&"--demo"), "{command:?}");

    // Nodes reach the server by service name on the port it listens on,
    // and its download links use that name too.
    let listen = flag("--listen");
    let (_, port) = listen.rsplit_once(':').unwrap();
    assert_eq!(flag("--public-url"), format!("http://server:{port}"));
    let env = compose_node_env(&compose);
    let get = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    assert_eq!(get("DRAGONFLY_AUTH_MODE"), Some("none"));
    assert_eq!(get("DRAGONFLY_BASE_URL"), Some(format!("http://server:{port}").as_str()));
    assert!(
        str_of(&services["server"]["healthcheck"]["test"][3], "healthcheck")
            .contains(&format!("/dev/tcp/127.0.0.1/{port}"))
    );
    assert_eq!(
        str_of(&services["node"]["depends_on"]["server"]["condition"], "depends_on"),
        "service_healthy"
    );
}

// ---- the real binary ----------------------------------------------------

/// A fake server with the bundled rules (hash `hash`) and one queued release.
fn server_with_one_release(hash: &str) -> (FakeServer, Vec<u8>) {
    let server = FakeServer::start(ServerConfig::default()).unwrap();
    let rules =
        dragonfly_engine::RuleSet::bundled_sources().map(|(n, s)| (n.to_owned(), s.to_owned())).collect();
    server.set_rules(hash, rules);
    let files = [
        FixtureFile::new("ops_demo/__init__.py", "def add(a, b):\n    return a + b\n"),
        FixtureFile::new("setup.py", "from setuptools import setup\nsetup(name='ops-demo')\n"),
    ];
    let sdist = fixtures::sdist("ops-demo", "1.0", &files);
    server.add_package(
        "ops-demo",
        "1.0",
        vec![Distribution { filename: fixtures::sdist_filename("ops-demo", "1.0"), bytes: sdist.clone() }],
    );
    (server, sdist)
}

fn start_node(server: &FakeServer, dir: &Path, extra: &[(&str, &str)]) -> (Running, PathBuf) {
    let log = dir.join("node.log");
    let mut command = clean_bin();
    command
        .arg("run")
        .current_dir(dir)
        .env("DRAGONFLY_BASE_URL", server.url())
        .env("DRAGONFLY_AUTH_MODE", "none")
        .env("DRAGONFLY_THREADS", "1")
        .env("DRAGONFLY_LOAD_DURATION", "1")
        .env("DRAGONFLY_WAIT_DURATION", "1")
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap());
    for (key, value) in extra {
        command.env(key, value);
    }
    (Running::new(command.spawn().unwrap()), log)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET path` over plain HTTP/1.0: (status, body); status 0 if nothing answers.
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect(addr) else { return (0, String::new()) };
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    if write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").is_err() {
        return (0, String::new());
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// Polls `condition` every 20 ms for up to two minutes; returns its last value.
fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of the series `series` (name with labels) in a scrape.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn a_running_node_serves_metrics_and_health() {
    let (server, sdist) = server_with_one_release("ops-rules-7");
    // Rules can not be fetched at first: the node is alive but not ready.
    server.add_fault(Fault::new(Endpoint::Rules, FaultAction::Status(503)));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let addr_setting = addr.to_string();
    let (node, log) = start_node(&server, dir.path(), &[("DRAGONFLY_METRICS_ADDR", addr_setting.as_str())]);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();

    assert!(eventually(|| http_get(addr, "/healthz").0 == 200), "no /healthz: {}", read_log());
    // The server counts the fault when it answers; the node counts it after reading the answer.
    assert!(
        eventually(|| sample(&http_get(addr, "/metrics").1, "dragonfly_rules_failures_total")
            .is_some_and(|n| n >= 1.0)),
        "{}",
        read_log()
    );
    assert!(server.stats().faults_injected > 0);
    assert_eq!(http_get(addr, "/readyz").0, 503, "no rules yet");
    let (_, early) = http_get(addr, "/metrics");
    assert!(!early.contains("dragonfly_rules_info"), "{early}");

    server.clear_faults();
    assert!(server.wait_drained(Duration::from_secs(120)), "not drained: {}", read_log());
    assert_eq!(server.results().len(), 1);
    assert_eq!(server.results()[0].status, 200);
    // The sender counts the delivery, then gives the job back: wait for both.
    assert!(
        eventually(|| {
            let metrics = http_get(addr, "/metrics").1;
            sample(&metrics, "dragonfly_results_delivered_total") == Some(1.0)
                && sample(&metrics, "dragonfly_jobs_held") == Some(0.0)
                && sample(&metrics, "dragonfly_results_pending") == Some(0.0)
        }),
        "{}",
        read_log()
    );
    assert_eq!(http_get(addr, "/readyz").0, 200);
    assert_eq!(http_get(addr, "/healthz").0, 200);

    let (status, metrics) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    let expected = [
        ("dragonfly_jobs_leased_total", 1.0),
        ("dragonfly_jobs_succeeded_total", 1.0),
        ("dragonfly_jobs_failed_total{reason=\"download\"}", 0.0),
        ("dragonfly_jobs_failed_total{reason=\"archive\"}", 0.0),
        ("dragonfly_jobs_failed_total{reason=\"scan\"}", 0.0),
        ("dragonfly_jobs_failed_total{reason=\"internal\"}", 0.0),
        ("dragonfly_results_delivered_total", 1.0),
        ("dragonfly_results_dropped_total", 0.0),
        ("dragonfly_results_retried_total", 0.0),
        ("dragonfly_results_pending", 0.0),
        ("dragonfly_jobs_held", 0.0),
        ("dragonfly_downloaded_bytes_total", sdist.len() as f64),
        ("dragonfly_scan_duration_seconds_count", 1.0),
        ("dragonfly_scan_duration_seconds_bucket{le=\"+Inf\"}", 1.0),
        ("dragonfly_rules_info{hash=\"ops-rules-7\"}", 1.0),
        ("dragonfly_rules_loads_total", 1.0),
        ("dragonfly_auth_renewals_total", 0.0),
        ("dragonfly_auth_failures_total", 0.0),
    ];
    for (series, value) in expected {
        assert_eq!(sample(&metrics, series), Some(value), "{series} in\n{metrics}");
    }
    assert!(sample(&metrics, "dragonfly_scanned_bytes_total").is_some_and(|n| n > 0.0), "{metrics}");
    assert!(sample(&metrics, "dragonfly_files_scanned_total").is_some_and(|n| n >= 2.0), "{metrics}");
    assert!(sample(&metrics, "dragonfly_rules_compile_seconds").is_some_and(|s| s > 0.0), "{metrics}");

    // Every metric family is in the table of docs/operations.md.
    let doc = repo_file("docs/operations.md");
    let families: Vec<&str> =
        metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
    assert!(families.len() >= 20, "{families:?}");
    for family in families {
        assert!(doc.contains(&format!("| `{family}")), "docs/operations.md does not describe {family}");
    }

    assert_eq!(node.terminate(), Some(0), "{}", read_log());
    let log = read_log();
    assert!(log.contains(&format!("metrics at http://{addr}/metrics")), "{log}");
}

#[test]
fn a_taken_metrics_address_stops_the_node_at_start() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let output = clean_bin()
        .arg("run")
        .current_dir(dir.path())
        .env("DRAGONFLY_BASE_URL", "http://127.0.0.1:9")
        .env("DRAGONFLY_AUTH_MODE", "none")
        .env("DRAGONFLY_METRICS_ADDR", &addr)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("DRAGONFLY_METRICS_ADDR") && stderr.contains(&addr), "{stderr}");
    drop(taken);
}

#[test]
fn json_logs_are_one_object_per_line() {
    let (server, _) = server_with_one_release("json-rules-1");
    let dir = tempfile::tempdir().unwrap();
    let (node, log) = start_node(&server, dir.path(), &[("DRAGONFLY_LOG_FORMAT", "json")]);
    assert!(server.wait_drained(Duration::from_secs(120)), "{}", std::fs::read_to_string(&log).unwrap());
    assert_eq!(node.terminate(), Some(0));

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(lines.len() >= 3, "{text}");
    for line in &lines {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(line[key].is_string(), "{key} missing: {line}");
        }
    }
    let job =
        lines.iter().find(|l| l["package"] == "ops-demo").unwrap_or_else(|| panic!("no job line: {text}"));
    assert_eq!(job["version"], "1.0");
    assert!(job["message"].as_str().unwrap().contains("score 0"), "{job}");
    assert!(lines.iter().any(|l| l["message"].as_str().unwrap().contains("rules json-rules-1")), "{text}");
    assert!(lines.iter().any(|l| l["message"].as_str().unwrap().starts_with("stopped")), "{text}");
}

#[test]
fn health_survives_idle_connections_beyond_the_file_descriptor_limit() {
    let (server, _) = server_with_one_release("ops-rules-fd");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log");
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    // The node under a 64-descriptor limit, as `ulimit -n` in a container.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" run")
        .arg(env!("CARGO_BIN_EXE_dragonfly-client"))
        .current_dir(dir.path())
        .env("DRAGONFLY_BASE_URL", server.url())
        .env("DRAGONFLY_AUTH_MODE", "none")
        .env("DRAGONFLY_THREADS", "1")
        .env("DRAGONFLY_METRICS_ADDR", addr.to_string())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap());
    let _node = Running::new(command.spawn().unwrap());
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(eventually(|| http_get(addr, "/healthz").0 == 200), "no /healthz: {}", read_log());

    // More idle connections than the node has descriptors.
    let idle: Vec<TcpStream> = (0..200).filter_map(|_| TcpStream::connect(addr).ok()).collect();
    for _ in 0..3 {
        assert_eq!(http_get(addr, "/healthz").0, 200, "{} idle connections: {}", idle.len(), read_log());
    }
    assert!(idle.len() > 64, "only {} connections opened", idle.len());
    drop(idle);
    assert_eq!(http_get(addr, "/healthz").0, 200);
    assert!(server.wait_drained(Duration::from_secs(120)), "the node stopped working: {}", read_log());
}

#[test]
fn a_job_pointing_at_the_nodes_own_network_is_refused() {
    let (server, _) = server_with_one_release("ops-rules-ssrf");
    let dir = tempfile::tempdir().unwrap();
    let metrics: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    // The node's own metrics page and the cloud metadata address.
    server.add_job(
        "ssrf",
        "1.0",
        vec![format!("http://{metrics}/metrics"), "http://169.254.169.254/latest/meta-data/x.tar.gz".into()],
    );
    let metrics_setting = metrics.to_string();
    let (_node, log) = start_node(
        &server,
        dir.path(),
        &[
            ("DRAGONFLY_ALLOW_PRIVATE_DOWNLOADS", "false"),
            ("DRAGONFLY_METRICS_ADDR", metrics_setting.as_str()),
        ],
    );
    assert!(
        server.wait_drained(Duration::from_secs(120)),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let results = server.results();
    let reason = |name: &str| {
        let result = results.iter().find(|r| r.name == name).expect("a result");
        result.body["reason"].as_str().unwrap_or_default().to_owned()
    };
    // Even the fake server's own packages are on loopback: refused too.
    assert!(reason("ops-demo").contains("127.0.0.1 is a loopback address"), "{}", reason("ops-demo"));
    let ssrf = reason("ssrf");
    assert!(
        ssrf.contains("is a loopback address") && ssrf.contains("169.254.169.254 is a link-local address"),
        "{ssrf}"
    );
    assert!(!ssrf.contains("dragonfly_"), "metrics leaked upstream: {ssrf}");
}
