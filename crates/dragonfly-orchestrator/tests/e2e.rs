//! End-to-end tests: the real orchestrator against the test kit's fake
//! control server on loopback.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dragonfly_api::{Auth, Client, ClientConfig, Grant, Job, Secret};
use dragonfly_engine::{Engine, PackageReport, RuleSet};
use dragonfly_orchestrator::{FailureKind, Node, NodeSettings, RunSummary, Shutdown, Stats, job_result};
use dragonfly_testkit::fixtures::{self, FixtureFile, FixturePackage};
use dragonfly_testkit::server::{
    AuthMode, Distribution, Endpoint, FakeServer, Fault, FaultAction, RecordedResult, ServerConfig,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);

fn bundled_rules() -> BTreeMap<String, String> {
    RuleSet::bundled_sources().map(|(n, s)| (n.to_owned(), s.to_owned())).collect()
}

fn settings() -> NodeSettings {
    NodeSettings {
        threads: 2,
        bulk_size: 4,
        load_duration: Duration::from_millis(100),
        grace_period: Duration::from_secs(60),
        summary_interval: Duration::from_secs(3600),
        ..NodeSettings::default()
    }
}

struct RunningNode {
    shutdown: Shutdown,
    stats: Arc<Stats>,
    handle: JoinHandle<RunSummary>,
}

impl RunningNode {
    fn start(client: Client, settings: NodeSettings) -> RunningNode {
        // `RUST_LOG=debug cargo test -- --nocapture` shows the node's log.
        let _ = env_logger::builder().is_test(true).try_init();
        let node = Node::new(client, settings);
        let shutdown = node.shutdown_handle();
        let stats = node.stats();
        let handle = std::thread::spawn(move || node.run().expect("node runs"));
        RunningNode { shutdown, stats, handle }
    }

    fn stop(self) -> RunSummary {
        self.shutdown.trigger();
        self.handle.join().expect("node thread")
    }
}

fn open_client(server: &FakeServer) -> Client {
    Client::new(loopback(ClientConfig::new(server.url(), Auth::None))).unwrap()
}

/// The test kit serves packages on loopback: allow downloads from it.
fn loopback(mut config: ClientConfig) -> ClientConfig {
    config.allow_private_downloads = true;
    config
}

fn add_corpus(server: &FakeServer, corpus: &[FixturePackage]) -> BTreeMap<(String, String), Vec<String>> {
    corpus.iter().map(|p| ((p.name.clone(), p.version.clone()), server.add_fixture(p))).collect()
}

/// What the engine alone says about a package, given its download URLs,
/// as the body of a job without lease fields.
fn expected_outcome(rules: &Arc<RuleSet>, package: &FixturePackage, urls: &[String]) -> Value {
    let engine = Engine::new(Arc::clone(rules));
    let distributions = urls
        .iter()
        .zip(&package.distributions)
        .map(|(url, dist)| engine.scan_archive(url, &dist.bytes))
        .collect();
    let report = PackageReport {
        name: package.name.clone(),
        version: package.version.clone(),
        rule_hash: rules.hash().to_owned(),
        distributions,
    };
    assert!(report.is_complete());
    let job = Job {
        name: package.name.clone(),
        version: package.version.clone(),
        distributions: urls.to_vec(),
        hash: rules.hash().to_owned(),
        attempt: None,
        assignment_id: None,
    };
    serde_json::to_value(job_result(&job, &Ok(report))).unwrap()
}

fn accepted(results: &[RecordedResult]) -> Vec<&RecordedResult> {
    results.iter().filter(|r| (200..300).contains(&r.status)).collect()
}

/// Strips the lease fields and the reuse telemetry (which depends on the
/// order jobs were scanned in) so bodies can be compared with engine
/// outcomes.
fn without_lease(body: &Value) -> Value {
    let mut body = body.clone();
    if let Some(object) = body.as_object_mut() {
        object.remove("attempt");
        object.remove("assignment_id");
        object.remove("scan_reuse");
    }
    body
}

#[test]
fn every_job_gets_one_result_matching_the_engine() {
    let server = FakeServer::start(ServerConfig::default()).unwrap();
    server.set_rules("rules-1", bundled_rules());
    let corpus = fixtures::demo_corpus();
    let urls = add_corpus(&server, &corpus);
    let node = RunningNode::start(open_client(&server), settings());
    assert!(server.wait_drained(WAIT), "queue not drained: {:?}", server.stats());
    let summary = node.stop();
    assert_eq!(summary.jobs_abandoned, 0);

    let results = server.results();
    assert_eq!(results.len(), corpus.len(), "one result per job");
    let rules = Arc::new(RuleSet::compile("rules-1", bundled_rules()).unwrap());
    for package in &corpus {
        let result = results
            .iter()
            .find(|r| r.name == package.name && r.version == package.version)
            .unwrap_or_else(|| panic!("no result for {}", package.name));
        assert_eq!(result.status, 200, "{:?}", result.body);
        assert_eq!(result.body["attempt"], 1);
        assert!(result.body["assignment_id"].is_string());
        assert_eq!(result.body["scan_reuse"]["mode"], "reuse", "reuse is on by default");
        let key = (package.name.clone(), package.version.clone());
        assert_eq!(without_lease(&result.body), expected_outcome(&rules, package, &urls[&key]));
        let matched: Vec<String> = serde_json::from_value(result.body["rules_matched"].clone()).unwrap();
        assert_eq!(matched, package.expected_rules, "{}", package.name);
        if !package.expected_rules.is_empty() {
            let link = result.body["inspector_url"].as_str().unwrap();
            assert!(
                link.starts_with(&format!(
                    "https://inspector.pypi.io/project/{}/{}/packages/",
                    package.name, package.version
                )),
                "{link}"
            );
        }
    }
}

fn rule(name: &str, needle: &str) -> String {
    format!("rule {name} {{ meta: weight = 3 filetype = \".py\" strings: $a = \"{needle}\" condition: $a }}")
}

fn python_package(name: &str, body: &str) -> Vec<Distribution> {
    let files = [FixtureFile { path: "mod.py".into(), data: body.as_bytes().to_vec() }];
    vec![Distribution {
        filename: fixtures::sdist_filename(name, "1.0"),
        bytes: fixtures::sdist(name, "1.0", &files),
    }]
}

#[test]
fn rule_change_mid_run_and_broken_rules_keep_the_old_ones() {
    let server = FakeServer::start(ServerConfig::default()).unwrap();
    let needle = ["marker", "_one"].concat();
    server.set_rules("hash-a", BTreeMap::from([("a.yar".to_owned(), rule("rule_a", &needle))]));
    server.add_package("first", "1.0", python_package("first", &needle));
    let node = RunningNode::start(open_client(&server), settings());
    assert!(server.wait_drained(WAIT));

    // New rules: the next job names hash-b and must be scanned with it.
    server.set_rules("hash-b", BTreeMap::from([("b.yar".to_owned(), rule("rule_b", &needle))]));
    server.add_package("second", "1.0", python_package("second", &needle));
    assert!(server.wait_drained(WAIT));

    // Broken rules: the node keeps scanning with hash-b.
    server.set_rules(
        "hash-c",
        BTreeMap::from([("c.yar".to_owned(), "rule broken { condition: and }".to_owned())]),
    );
    server.add_package("third", "1.0", python_package("third", &needle));
    assert!(server.wait_drained(WAIT));

    // Fixed rules right after the failure are not held back by its backoff.
    server.set_rules("hash-d", BTreeMap::from([("d.yar".to_owned(), rule("rule_d", &needle))]));
    server.add_package("fourth", "1.0", python_package("fourth", &needle));
    assert!(server.wait_drained(WAIT));
    let stats = Arc::clone(&node.stats);
    node.stop();

    let results = server.results();
    let by_name = |n: &str| results.iter().find(|r| r.name == n).unwrap().body.clone();
    assert_eq!(by_name("first")["commit"], "hash-a");
    assert_eq!(by_name("first")["rules_matched"], serde_json::json!(["rule_a"]));
    assert_eq!(by_name("second")["commit"], "hash-b");
    assert_eq!(by_name("second")["rules_matched"], serde_json::json!(["rule_b"]));
    assert_eq!(by_name("third")["commit"], "hash-b");
    assert_eq!(by_name("third")["rules_matched"], serde_json::json!(["rule_b"]));
    assert_eq!(by_name("fourth")["commit"], "hash-d");
    assert_eq!(by_name("fourth")["rules_matched"], serde_json::json!(["rule_d"]));
    let snapshot = stats.snapshot();
    assert!(snapshot.rule_failures >= 1);
    assert_eq!(snapshot.rule_loads, 3, "compiled once per hash");
}

#[test]
fn two_nodes_scan_each_job_once() {
    let server = FakeServer::start(ServerConfig::default()).unwrap();
    server.set_rules("r", bundled_rules());
    for i in 0..16 {
        let name = format!("pkg{i}");
        server.add_package(&name, "1.0", python_package(&name, "print('hello')\n"));
    }
    let one = RunningNode::start(open_client(&server), NodeSettings { bulk_size: 2, ..settings() });
    let two = RunningNode::start(open_client(&server), NodeSettings { bulk_size: 2, ..settings() });
    assert!(server.wait_drained(WAIT));
    one.stop();
    two.stop();
    let results = server.results();
    assert_eq!(results.len(), 16, "{results:?}");
    assert_eq!(accepted(&results).len(), 16);
    let names: BTreeSet<&str> = results.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.len(), 16);
}

#[test]
fn flaky_server_loses_nothing() {
    let server = FakeServer::start(ServerConfig::default()).unwrap();
    server.set_rules("r", bundled_rules());
    for endpoint in [Endpoint::Jobs, Endpoint::Package, Endpoint::Rules, Endpoint::Download] {
        server.add_fault(Fault { endpoint, action: FaultAction::Status(500), rate: 0.1, limit: None });
        server.add_fault(Fault { endpoint, action: FaultAction::Drop, rate: 0.1, limit: None });
    }
    for i in 0..12 {
        let name = format!("flaky{i}");
        server.add_package(&name, "1.0", python_package(&name, "import os\n"));
    }
    let node = RunningNode::start(open_client(&server), NodeSettings { download_retries: 6, ..settings() });
    assert!(server.wait_drained(WAIT), "{:?}", server.stats());
    node.stop();
    assert!(server.stats().faults_injected >= 5, "{:?}", server.stats());
    let results = server.results();
    let ok = accepted(&results);
    let names: BTreeSet<&str> = ok.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.len(), 12, "every job finished: {results:?}");
    assert_eq!(ok.len(), 12, "a job is accepted once");
    for r in ok {
        assert!(r.body.get("score").is_some(), "scanned, not failed: {:?}", r.body);
    }
}

#[test]
fn shutdown_delivers_the_results_of_held_jobs() {
    let server = FakeServer::start(ServerConfig::default()).unwrap();
    server.set_rules("r", bundled_rules());
    // Slow downloads keep jobs in flight when shutdown starts.
    server.add_fault(Fault::new(Endpoint::Download, FaultAction::Delay(Duration::from_millis(300))));
    for i in 0..6 {
        let name = format!("held{i}");
        server.add_package(&name, "1.0", python_package(&name, "x = 1\n"));
    }
    let node = RunningNode::start(open_client(&server), NodeSettings { bulk_size: 6, ..settings() });
    let started = std::time::Instant::now();
    while server.stats().leases == 0 && started.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(10));
    }
    let summary = node.stop();
    assert_eq!(summary.jobs_abandoned, 0);
    let results = server.results();
    let leased = server.stats().leases as usize;
    assert!(leased >= 2, "{:?}", server.stats());
    assert_eq!(accepted(&results).len(), leased, "held jobs finished: {results:?}");
    assert_eq!(server.stats().leased, 0, "nothing left under lease");
}

#[test]
fn auth0_token_renewed_after_revocation() {
    let auth = AuthMode::Auth0 {
        client_id: "node-client".into(),
        client_secret: "node-secret".into(),
        username: "node".into(),
        password: "pw".into(),
        audience: "https://dragonfly.test".into(),
    };
    let server = FakeServer::start(ServerConfig { auth, ..ServerConfig::default() }).unwrap();
    server.set_rules("r", bundled_rules());
    server.add_package("before", "1.0", python_package("before", "a = 1\n"));
    let config = ClientConfig::new(
        server.url(),
        Auth::Auth0 {
            domain: server.url(),
            audience: "https://dragonfly.test".into(),
            client_id: "node-client".into(),
            client_secret: Secret::new("node-secret".to_owned()),
            grant: Grant::Password { username: "node".into(), password: Secret::new("pw".to_owned()) },
        },
    );
    let node = RunningNode::start(Client::new(loopback(config)).unwrap(), settings());
    assert!(server.wait_drained(WAIT));
    server.revoke_tokens();
    server.add_package("after", "1.0", python_package("after", "b = 2\n"));
    assert!(server.wait_drained(WAIT));
    node.stop();
    let results = server.results();
    assert_eq!(accepted(&results).len(), 2, "{results:?}");
    assert!(server.stats().token_grants >= 2, "{:?}", server.stats());
}

#[test]
fn unscannable_packages_are_failures_with_reasons() {
    let server = FakeServer::start(ServerConfig::default()).unwrap();
    server.set_rules("r", bundled_rules());
    server.add_package(
        "garbage",
        "1.0",
        vec![Distribution {
            filename: "garbage-1.0.tar.gz".into(),
            bytes: b"this is not an archive".to_vec(),
        }],
    );
    server.add_job("missing", "1.0", vec![format!("{}/packages/nowhere/missing-1.0.tar.gz", server.url())]);
    server.add_job("empty", "1.0", vec![]);
    let big = vec![b'a'; 4096];
    server.add_package("big", "1.0", vec![Distribution { filename: "big-1.0.whl".into(), bytes: big }]);
    let node = RunningNode::start(open_client(&server), NodeSettings { max_scan_size: 1024, ..settings() });
    assert!(server.wait_drained(WAIT));
    let stats = Arc::clone(&node.stats);
    node.stop();
    // Every failure is counted once, by cause.
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.jobs_failed_total(), 4);
    let by_kind: Vec<(FailureKind, u64)> = snapshot.jobs_failed.into_iter().filter(|(_, n)| *n > 0).collect();
    assert_eq!(
        by_kind,
        [(FailureKind::Download, 2), (FailureKind::Archive, 1), (FailureKind::NoDistributions, 1)]
    );
    let results = server.results();
    let reason = |n: &str| {
        results.iter().find(|r| r.name == n).unwrap().body["reason"].as_str().unwrap_or_default().to_owned()
    };
    assert!(reason("garbage").contains("unsupported"), "{}", reason("garbage"));
    assert!(reason("missing").contains("download failed"), "{}", reason("missing"));
    assert!(reason("big").contains("too large"), "{}", reason("big"));
    assert!(reason("empty").contains("no distributions"), "{}", reason("empty"));
    assert_eq!(accepted(&results).len(), 4);
}

#[test]
fn compiled_rules_are_cached_by_hash() {
    let cache = std::env::temp_dir().join(format!("dragonfly-rule-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let needle = ["cache", "_marker"].concat();
    let server = FakeServer::start(ServerConfig::default()).unwrap();
    server.set_rules("cache-1", BTreeMap::from([("a.yar".to_owned(), rule("rule_a", &needle))]));
    server.add_package("one", "1.0", python_package("one", &needle));
    let with_cache = NodeSettings { rules_cache_dir: Some(cache.clone()), ..settings() };
    let node = RunningNode::start(open_client(&server), with_cache.clone());
    assert!(server.wait_drained(WAIT));
    node.stop();
    let files: Vec<_> = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].file_name().unwrap().to_string_lossy().starts_with("cache-1."));

    // Put different compiled rules under the same hash: a node that reads
    // the cache instead of compiling reports rule_b.
    let impostor = RuleSet::compile("cache-1", [("b.yar", rule("rule_b", &needle))]).unwrap();
    std::fs::write(&files[0], impostor.serialize().unwrap()).unwrap();
    server.add_package("two", "1.0", python_package("two", &needle));
    let node = RunningNode::start(open_client(&server), with_cache.clone());
    assert!(server.wait_drained(WAIT));
    node.stop();

    // A corrupt cache entry is ignored: the rules are compiled again.
    std::fs::write(&files[0], b"not compiled rules").unwrap();
    server.add_package("three", "1.0", python_package("three", &needle));
    let node = RunningNode::start(open_client(&server), with_cache);
    assert!(server.wait_drained(WAIT));
    node.stop();

    let results = server.results();
    let rules_of = |n: &str| results.iter().find(|r| r.name == n).unwrap().body["rules_matched"].clone();
    assert_eq!(rules_of("one"), serde_json::json!(["rule_a"]));
    assert_eq!(rules_of("two"), serde_json::json!(["rule_b"]));
    assert_eq!(rules_of("three"), serde_json::json!(["rule_a"]));
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn one_undeliverable_result_does_not_stop_leasing() {
    let server = FakeServer::start(ServerConfig::default()).unwrap();
    server.set_rules("r", bundled_rules());
    server.add_package("first", "1.0", python_package("first", "a = 1\n"));
    server.add_fault(Fault::new(Endpoint::Package, FaultAction::Status(503)));
    let node = RunningNode::start(open_client(&server), settings());
    let waited = Instant::now();
    while server.stats().requests_to(Endpoint::Package) < 2 && waited.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The only result keeps failing: a new job is still leased.
    server.add_package("second", "1.0", python_package("second", "b = 2\n"));
    let waited = Instant::now();
    while server.stats().leases < 2 && waited.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.stats().leases, 2, "{:?}", server.stats());
    server.clear_faults();
    assert!(server.wait_drained(WAIT));
    node.stop();
    assert_eq!(accepted(&server.results()).len(), 2);
}

#[test]
fn a_job_leased_again_while_held_is_scanned_and_reported_once() {
    // The lease runs out while the download is slow: the server hands the
    // job out again, and the node, holding it, takes over the new lease.
    // Margins of seconds either side: the new lease comes 4 s in, the
    // download ends at 6 s, the next expiry would be at 8 s.
    let config = ServerConfig { lease_timeout: Duration::from_secs(4), ..ServerConfig::default() };
    let server = FakeServer::start(config).unwrap();
    server.set_rules("r", bundled_rules());
    server.add_package("slow", "1.0", python_package("slow", "x = 1\n"));
    server.add_fault(Fault::new(Endpoint::Download, FaultAction::Delay(Duration::from_secs(6))));
    let node = RunningNode::start(open_client(&server), settings());
    assert!(server.wait_drained(WAIT), "{:?}", server.stats());
    node.stop();
    let results = server.results();
    assert_eq!(results.len(), 1, "reported once: {results:?}");
    assert_eq!(results[0].status, 200, "{results:?}");
    assert!(server.stats().leases >= 2, "{:?}", server.stats());
    assert!(results[0].body["attempt"].as_u64() >= Some(2), "with the newest lease: {results:?}");
}

#[test]
fn the_node_leases_one_job_per_thread_until_it_has_measured_one() {
    let server = FakeServer::start(ServerConfig::default()).unwrap();
    server.set_rules("r", bundled_rules());
    for i in 0..6 {
        let name = format!("first{i}");
        server.add_package(&name, "1.0", python_package(&name, "x = 1\n"));
    }
    server.add_fault(Fault::new(Endpoint::Download, FaultAction::Delay(Duration::from_secs(2))));
    let node = RunningNode::start(open_client(&server), NodeSettings { bulk_size: 20, ..settings() });
    let started = Instant::now();
    // The first lease, as soon as it is seen.
    let mut leased_first = 0;
    while leased_first == 0 && started.elapsed() < WAIT {
        leased_first = server.stats().leased;
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(server.wait_drained(WAIT));
    node.stop();
    assert_eq!(leased_first, 2, "one per thread (2), not a bulk of 20");
}

#[test]
fn a_stalled_result_does_not_hold_back_the_others() {
    let server = FakeServer::start(ServerConfig::default()).unwrap();
    server.set_rules("r", bundled_rules());
    for i in 0..3 {
        let name = format!("quick{i}");
        server.add_package(&name, "1.0", python_package(&name, "x = 1\n"));
    }
    // The first result's PUT hangs for 20 s.
    server
        .add_fault(Fault::new(Endpoint::Package, FaultAction::Delay(Duration::from_secs(20))).with_limit(1));
    let node = RunningNode::start(open_client(&server), settings());
    let started = Instant::now();
    while server.stats().requests_to(Endpoint::Package) == 0 && started.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(20));
    }
    let hung = Instant::now();
    while accepted(&server.results()).len() < 2 && hung.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(accepted(&server.results()).len(), 2, "delivered while one PUT hung");
    assert!(server.wait_drained(WAIT));
    node.stop();
    assert_eq!(accepted(&server.results()).len(), 3);
}

#[test]
fn jobs_beyond_what_was_asked_are_left_to_expire() {
    // The server answers a lease of 2 with 6 jobs: the node takes on only
    // the 2 it asked for, and the others come back after their lease.
    let config =
        ServerConfig { extra_jobs: 4, lease_timeout: Duration::from_secs(3), ..ServerConfig::default() };
    let server = FakeServer::start(config).unwrap();
    server.set_rules("r", bundled_rules());
    for i in 0..6 {
        let name = format!("extra{i}");
        server.add_package(&name, "1.0", python_package(&name, "x = 1\n"));
    }
    let node = RunningNode::start(open_client(&server), settings());
    assert!(server.wait_drained(WAIT), "{:?}", server.stats());
    node.stop();
    let results = accepted(&server.results()).into_iter().cloned().collect::<Vec<_>>();
    assert_eq!(results.len(), 6, "{results:?}");
    // The queue hands jobs out in order: extra0 and extra1 were asked for.
    for result in results.iter().filter(|r| !matches!(r.name.as_str(), "extra0" | "extra1")) {
        assert!(result.body["attempt"].as_u64() >= Some(2), "scanned on its first lease: {results:?}");
    }
}

#[test]
fn a_download_that_cannot_fit_in_the_memory_budget_is_a_failure() {
    let server = FakeServer::start(ServerConfig::default()).unwrap();
    server.set_rules("r", bundled_rules());
    server.add_package(
        "huge",
        "1.0",
        vec![Distribution { filename: "huge-1.0.whl".into(), bytes: vec![b'a'; 4096] }],
    );
    // A 2048-byte memory limit leaves nothing once the threads' files and
    // the process are counted: downloads get the floor, an eighth (256 bytes).
    let tight = NodeSettings { memory_limit: Some(2048), ..settings() };
    let node = RunningNode::start(open_client(&server), tight);
    assert!(server.wait_drained(WAIT), "{:?}", server.stats());
    node.stop();
    let results = server.results();
    let reason = results[0].body["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("download too large: more than 256 bytes"), "{results:?}");
}
