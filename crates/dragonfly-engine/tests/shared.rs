//! Results shared by a fleet: what one node scanned another takes instead
//! of scanning, with the same reports; wrong, broken or missing shared
//! results change nothing but the counts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dragonfly_engine::{
    DistributionReport, Engine, ReuseCache, ReuseMode, RuleSet, SHARED_BATCH_FILES, SharedEntry, SharedError,
    SharedResults,
};

/// A fleet's shared results in memory: first write wins, as on the server.
#[derive(Debug, Default)]
struct Fleet {
    entries: Mutex<HashMap<String, String>>,
    lookups: AtomicU64,
    written: AtomicU64,
    revoked: AtomicBool,
    failing: AtomicBool,
}

impl SharedResults for Fleet {
    fn lookup(&self, digests: &[String]) -> Result<Vec<SharedEntry>, SharedError> {
        assert!(!digests.is_empty() && digests.len() <= SHARED_BATCH_FILES, "{}", digests.len());
        assert!(digests.iter().all(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit())));
        self.lookups.fetch_add(1, Ordering::Relaxed);
        if self.failing.load(Ordering::Relaxed) {
            return Err(SharedError::Failed);
        }
        if self.revoked.load(Ordering::Relaxed) {
            return Err(SharedError::Skipped);
        }
        let entries = self.entries.lock().unwrap();
        Ok(digests
            .iter()
            .filter_map(|d| entries.get(d).map(|r| SharedEntry { digest: d.clone(), result: r.clone() }))
            .collect())
    }

    fn write(&self, entries: Vec<SharedEntry>) -> Result<(), SharedError> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(SharedError::Failed);
        }
        let mut kept = self.entries.lock().unwrap();
        for entry in entries {
            assert!(serde_json::from_str::<serde_json::Value>(&entry.result).unwrap().is_array());
            self.written.fetch_add(1, Ordering::Relaxed);
            kept.entry(entry.digest).or_insert(entry.result);
        }
        Ok(())
    }

    fn revoke(&self) {
        self.revoked.store(true, Ordering::Relaxed);
        self.entries.lock().unwrap().clear();
    }
}

/// A node: its own cache, the fleet's shared results.
fn node(rules: &Arc<RuleSet>, fleet: &Arc<Fleet>, audit_every: u64) -> Engine {
    let cache = ReuseCache::new(ReuseMode::Reuse, 64 << 20).with_audit_every(audit_every);
    let shared: Arc<dyn SharedResults> = fleet.clone();
    Engine::new(Arc::clone(rules)).with_reuse(Some(Arc::new(cache))).with_shared(Some(shared))
}

/// The demo corpus and a large wheel (scanned file-parallel, in batches).
fn distributions() -> Vec<(String, Vec<u8>)> {
    let mut corpus = dragonfly_testkit::fixtures::demo_corpus();
    corpus.extend(dragonfly_testkit::fixtures::bench_corpus(0, 0, 1, 3));
    corpus.into_iter().flat_map(|p| p.distributions).map(|d| (d.filename, d.bytes)).collect()
}

type Summary = (i64, Vec<(String, String, Vec<dragonfly_engine::RuleMatch>)>, u64, u64);

fn summary(r: &DistributionReport) -> Summary {
    let files = r.files.iter().map(|f| (f.path.clone(), f.sha256.clone(), f.matches.clone())).collect();
    (r.score(), files, r.files_scanned, r.bytes_scanned)
}

/// Scans every distribution with `engine`, checking each report against a
/// plain scan; returns the reuse counts in all.
fn scan_all(engine: &Engine, plain: &Engine) -> dragonfly_engine::ReuseCounts {
    let mut counts = dragonfly_engine::ReuseCounts::default();
    for (name, bytes) in distributions() {
        let got = engine.scan_archive(&name, &bytes);
        assert_eq!(summary(&got), summary(&plain.scan_archive(&name, &bytes)), "{name}");
        counts.add(&got.reuse);
    }
    counts
}

#[test]
fn a_second_node_takes_what_the_first_scanned() {
    let rules = Arc::new(RuleSet::bundled());
    let plain = Engine::new(Arc::clone(&rules));
    let fleet = Arc::new(Fleet::default());
    let first = scan_all(&node(&rules, &fleet, 0), &plain);
    assert_eq!(first.shared_files, 0);
    assert!(first.engine_files > 0);
    let written = fleet.written.load(Ordering::Relaxed);
    assert!(written > 0 && written <= first.engine_files, "{written} {first:?}");
    assert!(fleet.entries.lock().unwrap().len() > 100, "the large wheel's files are shared too");

    let second = scan_all(&node(&rules, &fleet, 0), &plain);
    assert_eq!(second.engine_files, 0, "{second:?}");
    assert_eq!(second.reused_files, second.candidate_files);
    assert!(second.shared_files > 0);
    assert_eq!(second.errors, 0);
    assert_eq!(fleet.written.load(Ordering::Relaxed), written, "nothing new to offer");
}

#[test]
fn a_wrong_shared_result_is_revoked_and_the_distribution_scanned_again() {
    let rules = Arc::new(RuleSet::bundled());
    let plain = Engine::new(Arc::clone(&rules));
    let fleet = Arc::new(Fleet::default());
    scan_all(&node(&rules, &fleet, 0), &plain);
    // Every shared result now says that nothing matched.
    for result in fleet.entries.lock().unwrap().values_mut() {
        let groups: Vec<(usize, serde_json::Value)> = serde_json::from_str(result).unwrap();
        let empty: Vec<(usize, [u8; 0])> = groups.into_iter().map(|(g, _)| (g, [])).collect();
        *result = serde_json::to_string(&empty).unwrap();
    }
    let auditing = node(&rules, &fleet, 1);
    let counts = scan_all(&auditing, &plain);
    assert!(counts.mismatched_files > 0, "{counts:?}");
    assert!(fleet.revoked.load(Ordering::Relaxed));
    assert!(auditing.reuse().unwrap().is_disabled());
}

#[test]
fn a_failing_fleet_or_results_a_scan_could_not_give_change_nothing() {
    let rules = Arc::new(RuleSet::bundled());
    let plain = Engine::new(Arc::clone(&rules));
    let fleet = Arc::new(Fleet::default());
    scan_all(&node(&rules, &fleet, 0), &plain);

    fleet.failing.store(true, Ordering::Relaxed);
    let counts = scan_all(&node(&rules, &fleet, 0), &plain);
    assert_eq!(counts.shared_files, 0);
    assert!(counts.errors > 0);
    fleet.failing.store(false, Ordering::Relaxed);

    for result in fleet.entries.lock().unwrap().values_mut() {
        *result = r#"[[0,[["no_such_rule",1,[]]]]]"#.to_owned();
    }
    let counts = scan_all(&node(&rules, &fleet, 0), &plain);
    assert_eq!((counts.shared_files, counts.errors), (0, 0), "{counts:?}");
    let alone = Engine::new(Arc::clone(&rules))
        .with_reuse(Some(Arc::new(ReuseCache::new(ReuseMode::Reuse, 64 << 20))));
    assert_eq!(counts.engine_files, scan_all(&alone, &plain).engine_files, "all scanned as if alone");
    assert!(fleet.lookups.load(Ordering::Relaxed) > 0);
}

#[test]
fn rules_that_read_the_clock_are_not_shared() {
    let rules = Arc::new(
        RuleSet::compile("t", [("a.yar", "import \"time\" rule t { condition: time.now() > 0 }")]).unwrap(),
    );
    let fleet = Arc::new(Fleet::default());
    let engine = node(&rules, &fleet, 0);
    for (name, bytes) in distributions().into_iter().take(3) {
        engine.scan_archive(&name, &bytes);
    }
    assert_eq!(fleet.lookups.load(Ordering::Relaxed), 0);
    assert_eq!(fleet.written.load(Ordering::Relaxed), 0);
}

#[test]
fn held_batches_and_offers_are_bounded() {
    use dragonfly_engine::SHARED_WRITE_FILES;
    use dragonfly_testkit::fixtures::{FixtureFile, sdist};
    let rules = Arc::new(RuleSet::bundled());
    let fleet = Arc::new(Fleet::default());
    let engine = node(&rules, &fleet, 0);
    // 600 distinct files: lookups of at most 128, and at most
    // SHARED_WRITE_FILES results offered.
    let files: Vec<FixtureFile> =
        (0..600).map(|i| FixtureFile::new(format!("many-1.0/m{i}.py"), format!("X = {i}\n"))).collect();
    let report = engine.scan_archive("many-1.0.tar.gz", &sdist("many", "1.0", &files));
    assert!(report.files_scanned >= 600, "{report:?}");
    assert_eq!(fleet.lookups.load(Ordering::Relaxed), report.files_scanned.div_ceil(128));
    assert_eq!(fleet.written.load(Ordering::Relaxed), SHARED_WRITE_FILES as u64);

    // Three files of 5 MiB: the first two fill a batch's 8 MiB.
    let fleet = Arc::new(Fleet::default());
    let engine = node(&rules, &fleet, 0);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let big: Vec<FixtureFile> = (0..3)
        .map(|i| {
            let data: Vec<u8> = (0..5 << 20)
                .map(|_| {
                    state =
                        state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    b'a' + (state >> 59) as u8
                })
                .collect();
            FixtureFile::new(format!("big-1.0/b{i}.py"), data)
        })
        .collect();
    let report = engine.scan_archive("big-1.0.tar.gz", &sdist("big", "1.0", &big));
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(fleet.lookups.load(Ordering::Relaxed), 2);
}
