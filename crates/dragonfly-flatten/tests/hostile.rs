//! Hostile and malformed archives, each built here in memory.

use std::io::{Cursor, Write};

use dragonfly_flatten::{
    Anomaly, AnomalyKind, Error, File, Flattened, Format, LimitKind, Limits, Skipped, flatten,
    flatten_filtered,
};
use zip::write::SimpleFileOptions;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

// ---------------------------------------------------------------------------
// Builders

fn gz(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn bz2(data: &[u8]) -> Vec<u8> {
    let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut enc = lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1)).unwrap();
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A 512-byte tar header written field by field, so that names the `tar`
/// builder refuses (absolute, `..`, non-UTF-8) can be stored.
fn tar_header(name: &[u8], type_flag: u8, size: u64, link: &[u8]) -> [u8; 512] {
    let mut header = tar::Header::new_ustar();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    header.set_mode(0o644);
    header.set_size(size);
    header.set_mtime(0);
    header.as_mut_bytes()[156] = type_flag;
    header.set_cksum();
    *header.as_bytes()
}

/// Appends one entry (header, data, padding) to a tar stream.
fn tar_entry(out: &mut Vec<u8>, name: &[u8], type_flag: u8, data: &[u8], link: &[u8]) {
    out.extend_from_slice(&tar_header(name, type_flag, data.len() as u64, link));
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
}

/// A tar of regular files, with its end-of-archive blocks.
fn tar_of(files: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        tar_entry(&mut out, name, b'0', data, b"");
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

/// One gzip member inflating to 8 MiB of zeros, repeated: `MultiGzDecoder`
/// reads every member, so `zeros` bytes come out of ~zeros/1000 of input.
fn gzip_bomb(first_member: &[u8], zeros: u64) -> Vec<u8> {
    let chunk = 8 * MIB;
    let member = gz(&vec![0; chunk as usize]);
    let mut out = gz(first_member);
    for _ in 0..zeros / chunk {
        out.extend_from_slice(&member);
    }
    out
}

fn deflated() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated)
}

fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in files {
        writer.start_file(*name, deflated()).unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// A zip with one deflated entry of `zeros` zero bytes.
fn zip_bomb(name: &str, zeros: u64) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    writer.start_file(name, deflated()).unwrap();
    let chunk = vec![0; MIB as usize];
    for _ in 0..zeros / MIB {
        writer.write_all(&chunk).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

fn u16_at(bytes: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

fn u32_at(bytes: &[u8], at: usize) -> usize {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize
}

fn set_u16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

fn set_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// Offsets in a zip written without an archive comment.
struct ZipLayout {
    /// Start of the end-of-central-directory record.
    end: usize,
    /// Start of the central directory.
    directory: usize,
    /// Start of each central directory entry.
    central: Vec<usize>,
}

impl ZipLayout {
    fn of(zip: &[u8]) -> Self {
        let end = zip.len() - 22;
        assert_eq!(&zip[end..end + 4], b"PK\x05\x06");
        let directory = u32_at(zip, end + 16);
        let mut central = Vec::new();
        let mut at = directory;
        for _ in 0..u16_at(zip, end + 10) {
            central.push(at);
            at += 46 + u16_at(zip, at + 28) + u16_at(zip, at + 30) + u16_at(zip, at + 32);
        }
        Self { end, directory, central }
    }

    /// Start of the local header of entry `i`.
    fn local(&self, zip: &[u8], i: usize) -> usize {
        u32_at(zip, self.central[i] + 42)
    }

    /// Start of the compressed data of entry `i`, and its length.
    fn data(&self, zip: &[u8], i: usize) -> (usize, usize) {
        let local = self.local(zip, i);
        let start = local + 30 + u16_at(zip, local + 26) + u16_at(zip, local + 28);
        (start, u32_at(zip, self.central[i] + 20))
    }

    /// Overwrites the name of entry `i` in both its headers (same length).
    fn rename(&self, zip: &mut [u8], i: usize, name: &[u8]) {
        let local = self.local(zip, i);
        assert_eq!(u16_at(zip, local + 26), name.len());
        zip[local + 30..local + 30 + name.len()].copy_from_slice(name);
        let central = self.central[i];
        zip[central + 46..central + 46 + name.len()].copy_from_slice(name);
    }
}

/// An end-of-central-directory record.
fn end_record(entries: u16, directory_size: u32, directory_offset: u32) -> Vec<u8> {
    let mut out = b"PK\x05\x06".to_vec();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&entries.to_le_bytes());
    out.extend_from_slice(&entries.to_le_bytes());
    out.extend_from_slice(&directory_size.to_le_bytes());
    out.extend_from_slice(&directory_offset.to_le_bytes());
    out.extend_from_slice(&[0; 2]);
    out
}

fn no_ratio() -> Limits {
    Limits { max_ratio: u64::MAX, ..Limits::default() }
}

fn paths(files: &[File]) -> Vec<&str> {
    files.iter().map(|f| f.path.as_str()).collect()
}

/// A short description of a result, without file contents.
fn summary(result: &Result<Flattened, Error>) -> String {
    match result {
        Ok(flat) => {
            let files: Vec<String> =
                flat.files.iter().map(|f| format!("{} ({} bytes)", f.path, f.data.len())).collect();
            format!("Ok({}: {files:?}, {:?})", flat.format, flat.skipped)
        }
        Err(err) => format!("Err({err:?})"),
    }
}

#[track_caller]
fn assert_limit(result: Result<Flattened, Error>, kind: LimitKind, limit: u64, path: Option<&str>) {
    match result {
        Err(Error::LimitExceeded { kind: k, limit: l, path: p }) => {
            assert_eq!((k, l, p.as_deref()), (kind, limit, path));
        }
        other => panic!("expected a {kind} limit error, got {}", summary(&other)),
    }
}

#[track_caller]
fn assert_corrupt(result: Result<Flattened, Error>, format: Format, message_part: &str) {
    match result {
        Err(Error::Corrupt { format: f, message, .. }) => {
            assert_eq!(f, format);
            assert!(message.contains(message_part), "message {message:?} lacks {message_part:?}");
        }
        other => panic!("expected a corrupt {format} error, got {}", summary(&other)),
    }
}

// ---------------------------------------------------------------------------
// Bombs

#[test]
fn gzip_bomb_stops_at_the_file_limit() {
    // A tar header declaring a 10 GiB file, then 10 GiB of zeros.
    let bytes = gzip_bomb(&tar_header(b"bomb.bin", b'0', 10 * GIB, b""), 10 * GIB);
    assert!(bytes.len() < 12 << 20, "{}", bytes.len());
    assert_limit(flatten(&bytes, &Limits::default()), LimitKind::FileBytes, 128 * MIB, Some("bomb.bin"));
}

#[test]
fn gzip_bomb_of_zero_blocks_stops_at_the_total_limit() {
    // 10 GiB of zeros read as end-of-archive blocks: no entry, no file, but
    // every decompressed byte counts.
    let bytes = gzip_bomb(&[0; 512], 10 * GIB);
    let limits = Limits { max_total_bytes: 64 * MIB, ..no_ratio() };
    assert_limit(flatten(&bytes, &limits), LimitKind::TotalBytes, 64 * MIB, None);
}

#[test]
fn gzip_bomb_stops_at_the_ratio_limit() {
    let bytes = gzip_bomb(&tar_header(b"zeros.bin", b'0', 64 * MIB, b""), 64 * MIB);
    // ~70 KB in, so 200x is ~14 MB: below the file and total limits.
    assert_limit(flatten(&bytes, &Limits::default()), LimitKind::Ratio, 200, Some("zeros.bin"));
}

#[test]
fn zip_bomb_stops_at_the_ratio_then_the_file_limit() {
    let bytes = zip_bomb("bomb.bin", 160 * MIB);
    assert!(bytes.len() < MIB as usize);
    assert_limit(flatten(&bytes, &Limits::default()), LimitKind::Ratio, 200, Some("bomb.bin"));
    assert_limit(flatten(&bytes, &no_ratio()), LimitKind::FileBytes, 128 * MIB, Some("bomb.bin"));
    let limits = Limits { max_total_bytes: 100 * MIB, ..no_ratio() };
    assert_limit(flatten(&bytes, &limits), LimitKind::TotalBytes, 100 * MIB, Some("bomb.bin"));
}

#[test]
fn zip_bomb_declaring_a_huge_size_is_read_only_up_to_the_limit() {
    let mut bytes = zip_bomb("bomb.bin", 16 * MIB);
    let layout = ZipLayout::of(&bytes);
    let local = layout.local(&bytes, 0);
    // Declared size ~4 GiB: nothing may be allocated from it.
    set_u32(&mut bytes, local + 22, 0xffff_fff0);
    set_u32(&mut bytes, layout.central[0] + 24, 0xffff_fff0);
    let limits = Limits { max_file_bytes: 4 * MIB, ..no_ratio() };
    assert_limit(flatten(&bytes, &limits), LimitKind::FileBytes, 4 * MIB, Some("bomb.bin"));
}

#[test]
fn zip_bomb_declaring_a_small_size_is_corrupt() {
    let mut bytes = zip_bomb("bomb.bin", 16 * MIB);
    let layout = ZipLayout::of(&bytes);
    let local = layout.local(&bytes, 0);
    set_u32(&mut bytes, local + 22, 1000);
    set_u32(&mut bytes, layout.central[0] + 24, 1000);
    assert_corrupt(flatten(&bytes, &no_ratio()), Format::Zip, "declared");
}

#[test]
fn zip_with_overlapping_entries_is_refused() {
    let zip = zip_of(&[("a.txt", b"shared kernel of data")]);
    let layout = ZipLayout::of(&zip);
    let entry = zip[layout.directory..layout.end].to_vec();
    // Three central-directory entries pointing at the same local data.
    let mut directory = Vec::new();
    for name in [b"a.txt", b"b.txt", b"c.txt"] {
        let mut copy = entry.clone();
        copy[46..51].copy_from_slice(name);
        directory.extend_from_slice(&copy);
    }
    let mut bytes = zip[..layout.directory].to_vec();
    bytes.extend_from_slice(&directory);
    bytes.extend_from_slice(&end_record(3, directory.len() as u32, layout.directory as u32));
    assert_corrupt(flatten(&bytes, &Limits::default()), Format::Zip, "overlaps entry");

    // The same with one name repeated: still an overlap, not a duplicate.
    let mut directory = entry.clone();
    directory.extend_from_slice(&entry);
    let mut bytes = zip[..layout.directory].to_vec();
    bytes.extend_from_slice(&directory);
    bytes.extend_from_slice(&end_record(2, directory.len() as u32, layout.directory as u32));
    assert_corrupt(flatten(&bytes, &Limits::default()), Format::Zip, "overlaps entry");
}

#[test]
fn tar_with_200k_tiny_entries_stops_at_the_entry_limit() {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for i in 0..200_000 {
        enc.write_all(&tar_header(format!("f{i}").as_bytes(), b'0', 0, b"")).unwrap();
    }
    enc.write_all(&[0; 1024]).unwrap();
    let bytes = enc.finish().unwrap();
    assert_limit(flatten(&bytes, &Limits::default()), LimitKind::Entries, 100_000, Some("f100000"));
    let limits = Limits { max_entries: 200_000, ..Limits::default() };
    let flat = flatten(&bytes, &limits).unwrap();
    assert_eq!(flat.files.len(), 200_000);
}

#[test]
fn zip_entries_count_toward_the_entry_limit() {
    let zip = zip_of(&[("a", b"1"), ("b", b"2"), ("c", b"3")]);
    let limits = Limits { max_entries: 2, ..Limits::default() };
    assert_limit(flatten(&zip, &limits), LimitKind::Entries, 2, Some("c"));
}

// ---------------------------------------------------------------------------
// Names and entry kinds

#[test]
fn absolute_and_parent_paths_are_kept_with_their_data() {
    let names: [&[u8]; 3] = [b"/etc/cron.d/evil", b"../../outside.py", b"pkg/../../up.py"];
    let tar = tar_of(&[(names[0], b"one"), (names[1], b"two"), (names[2], b"three")]);
    let flat = flatten(&gz(&tar), &Limits::default()).unwrap();
    assert_eq!(
        flat.files,
        vec![
            File::new("/etc/cron.d/evil", b"one".to_vec()),
            File::new("../../outside.py", b"two".to_vec()),
            File::new("pkg/../../up.py", b"three".to_vec()),
        ]
    );

    let mut zip = zip_of(&[("xetc/passwd", b"root"), ("aa/x.py", b"x")]);
    let layout = ZipLayout::of(&zip);
    layout.rename(&mut zip, 0, b"/etc/passwd");
    layout.rename(&mut zip, 1, b"../x.py");
    let flat = flatten(&zip, &Limits::default()).unwrap();
    assert_eq!(paths(&flat.files), ["/etc/passwd", "../x.py"]);
    assert_eq!(flat.files[0].data, b"root");
}

#[test]
fn tar_links_are_files_under_their_own_name_and_directories_and_devices_are_skipped() {
    let mut tar = Vec::new();
    tar_entry(&mut tar, b"pkg/", b'5', b"", b"");
    tar_entry(&mut tar, b"old-style-dir/", b'\0', b"", b"");
    tar_entry(&mut tar, b"pkg/link", b'2', b"", b"/etc/passwd");
    tar_entry(&mut tar, b"pkg/hard", b'1', b"", b"pkg/a.py");
    tar_entry(&mut tar, b"pkg/tty", b'3', b"", b"");
    tar_entry(&mut tar, b"pkg/disk", b'4', b"", b"");
    tar_entry(&mut tar, b"pkg/pipe", b'6', b"", b"");
    tar_entry(&mut tar, b"pkg/a.py", b'0', b"print()", b"");
    tar_entry(&mut tar, b"pkg/odd", b'Z', b"unknown types are files", b"");
    tar.extend_from_slice(&[0; 1024]);
    let flat = flatten(&tar, &Limits::default()).unwrap();
    assert_eq!(flat.format, Format::Tar);
    // The hard link is what an installer writes: a.py's content as pkg/hard.
    assert_eq!(paths(&flat.files), ["pkg/a.py", "pkg/odd", "pkg/hard"]);
    assert_eq!(flat.files[2].data, b"print()");
    assert_eq!(flat.skipped, Skipped { directories: 2, symlinks: 1, hardlinks: 0, other: 3, filtered: 0 });
    assert_eq!(
        flat.anomalies,
        [
            Anomaly { kind: AnomalyKind::DanglingLink, path: Some("pkg/link".into()) },
            Anomaly { kind: AnomalyKind::Link, path: Some("pkg/hard".into()) },
        ]
    );
}

#[test]
fn zip_symlinks_and_devices_are_files_as_pip_writes_them() {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    writer.add_directory("pkg/", deflated()).unwrap();
    writer.add_symlink("pkg/link", "/etc/passwd", deflated()).unwrap();
    writer.start_file("pkg/fifo", deflated()).unwrap();
    writer.start_file("pkg/a.py", deflated()).unwrap();
    writer.write_all(b"print()").unwrap();
    let mut zip = writer.finish().unwrap().into_inner();
    let layout = ZipLayout::of(&zip);
    // Made by Unix, mode: fifo.
    zip[layout.central[2] + 5] = 3;
    set_u32(&mut zip, layout.central[2] + 38, 0o010644 << 16);
    let flat = flatten(&zip, &Limits::default()).unwrap();
    assert_eq!(paths(&flat.files), ["pkg/link", "pkg/fifo", "pkg/a.py"]);
    assert_eq!(flat.files[0].data, b"/etc/passwd");
    assert_eq!(flat.skipped, Skipped { directories: 1, ..Skipped::default() });
    let kinds: Vec<_> = flat.anomalies.iter().map(|a| (a.kind, a.path.as_deref().unwrap())).collect();
    assert_eq!(kinds, [(AnomalyKind::SpecialMode, "pkg/link"), (AnomalyKind::SpecialMode, "pkg/fifo")]);
}

#[test]
fn non_utf8_names_stay_readable() {
    let tar = tar_of(&[(b"pkg/caf\xc3\xa9.py", b"1"), (b"pkg/\xff\xfe.py", b"2")]);
    let flat = flatten(&tar, &Limits::default()).unwrap();
    assert_eq!(paths(&flat.files), ["pkg/café.py", "pkg/\\xff\\xfe.py"]);

    let mut zip = zip_of(&[("pkg/X.py", b"payload")]);
    ZipLayout::of(&zip).rename(&mut zip, 0, b"pkg/\xff.py");
    let flat = flatten(&zip, &Limits::default()).unwrap();
    assert_eq!(paths(&flat.files), ["pkg/\\xff.py"]);
    assert_eq!(flat.files[0].data, b"payload");
}

#[test]
fn duplicate_zip_names_are_all_kept() {
    let mut zip = zip_of(&[("pkg/a.py", b"first"), ("pkg/b.py", b"second")]);
    ZipLayout::of(&zip).rename(&mut zip, 1, b"pkg/a.py");
    let flat = flatten(&zip, &Limits::default()).unwrap();
    assert_eq!(
        flat.files,
        vec![File::new("pkg/a.py", b"first".to_vec()), File::new("pkg/a.py", b"second".to_vec()),]
    );
}

// ---------------------------------------------------------------------------
// Truncated, corrupt, encrypted, cloaked

#[test]
fn truncated_streams_are_corrupt() {
    let big: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let tar = tar_of(&[(b"pkg/setup.py", b"print()"), (b"pkg/data.bin", &big)]);

    // Plain tar cut inside an entry's data: corrupt. Cut inside a header:
    // what came before is read (as CPython does), the rest is trailing data.
    assert_corrupt(flatten(&tar[..5000], &Limits::default()), Format::Tar, "truncated entry");
    let flat = flatten(&tar[..1024 + 100], &Limits::default()).unwrap();
    assert_eq!(paths(&flat.files), ["pkg/setup.py"]);
    assert_eq!(flat.anomalies[0].kind, AnomalyKind::TrailingData);

    for (format, packed) in
        [(Format::TarGz, gz(&tar)), (Format::TarBz2, bz2(&tar)), (Format::TarXz, xz(&tar))]
    {
        assert!(flatten(&packed, &Limits::default()).is_ok());
        let half = &packed[..packed.len() / 2];
        assert_corrupt(flatten(half, &Limits::default()), format, "");
        // Only the end of the stream (gzip's CRC and size trailer) missing.
        let tail_cut = &packed[..packed.len() - 4];
        assert_corrupt(flatten(tail_cut, &Limits::default()), format, "");
    }

    let zip = zip_of(&[("pkg/setup.py", b"print()"), ("pkg/data.bin", &big)]);
    assert!(flatten(&zip, &Limits::default()).is_ok());
    for cut in [zip.len() / 2, zip.len() - 10] {
        assert_corrupt(flatten(&zip[..cut], &Limits::default()), Format::Zip, "");
    }
}

#[test]
fn corrupt_deflate_data_and_checksums_are_reported_with_the_path() {
    let mut zip = zip_of(&[("ok.py", b"fine"), ("bad.py", &[b'x'; 5000])]);
    let layout = ZipLayout::of(&zip);
    let (start, len) = layout.data(&zip, 1);
    zip[start..start + len].fill(0xff);
    match flatten(&zip, &Limits::default()) {
        Err(Error::Corrupt { format: Format::Zip, path: Some(path), .. }) => assert_eq!(path, "bad.py"),
        other => panic!("expected corrupt zip, got {}", summary(&other)),
    }

    let mut zip = zip_of(&[("ok.py", b"fine")]);
    let layout = ZipLayout::of(&zip);
    let local = layout.local(&zip, 0);
    let crc = u32_at(&zip, local + 14) as u32 ^ 1;
    set_u32(&mut zip, local + 14, crc);
    set_u32(&mut zip, layout.central[0] + 16, crc);
    assert_corrupt(flatten(&zip, &Limits::default()), Format::Zip, "checksum");
}

#[test]
fn encrypted_zip_entries_are_refused() {
    // The encryption flag set by hand in both headers.
    let mut zip = zip_of(&[("pkg/a.py", b"plain"), ("pkg/secret.py", b"hidden")]);
    let layout = ZipLayout::of(&zip);
    let local = layout.local(&zip, 1);
    zip[local + 6] |= 1;
    zip[layout.central[1] + 8] |= 1;
    let expect_encrypted = |result: Result<_, Error>| match result {
        Err(Error::Encrypted { format: Format::Zip, path }) => assert_eq!(path, "pkg/secret.py"),
        other => panic!("expected an encrypted entry error, got {}", summary(&other)),
    };
    expect_encrypted(flatten(&zip, &Limits::default()));
    // Filtering the entry out does not hide it.
    expect_encrypted(flatten_filtered(&zip, &Limits::default(), &|p| p == "pkg/a.py"));

    // Real ZipCrypto from the zip writer.
    use zip::unstable::write::FileOptionsExt;
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = deflated().with_deprecated_encryption(b"password").unwrap();
    writer.start_file("pkg/secret.py", options).unwrap();
    writer.write_all(b"import os").unwrap();
    let zip = writer.finish().unwrap().into_inner();
    expect_encrypted(flatten(&zip, &Limits::default()));
}

#[test]
fn zero_entry_zip_hiding_content_is_refused() {
    let clean = end_record(0, 0, 0);
    let flat = flatten(&clean, &Limits::default()).unwrap();
    assert!(flat.files.is_empty());

    let zip = zip_of(&[("payload.py", b"import os; os.system('x')")]);
    let layout = ZipLayout::of(&zip);
    let hidden = &zip[..layout.directory];
    // An empty central directory placed after the hidden entry...
    let mut bytes = hidden.to_vec();
    bytes.extend_from_slice(&end_record(0, 0, hidden.len() as u32));
    assert_corrupt(flatten(&bytes, &Limits::default()), Format::Zip, "lists no entries");
    // ...or claiming to sit at offset 0.
    let mut bytes = hidden.to_vec();
    bytes.extend_from_slice(&end_record(0, 0, 0));
    assert!(matches!(flatten(&bytes, &Limits::default()), Err(Error::Corrupt { format: Format::Zip, .. })));
}

#[test]
fn local_header_missing_from_the_central_directory_is_refused() {
    let zip = zip_of(&[("pkg/a.py", b"listed")]);
    let other = zip_of(&[("pkg/h.py", b"hidden")]);
    let layout = ZipLayout::of(&zip);
    let hidden = &other[..ZipLayout::of(&other).directory];
    let mut bytes = zip[..layout.directory].to_vec();
    bytes.extend_from_slice(hidden);
    let directory_offset = bytes.len();
    bytes.extend_from_slice(&zip[layout.directory..layout.end]);
    let directory_size = bytes.len() - directory_offset;
    bytes.extend_from_slice(&end_record(1, directory_size as u32, directory_offset as u32));
    assert_corrupt(flatten(&bytes, &Limits::default()), Format::Zip, "not listed");
}

#[test]
fn local_and_central_names_must_agree() {
    let mut zip = zip_of(&[("README.txt", b"import os")]);
    let local = ZipLayout::of(&zip).local(&zip, 0);
    zip[local + 30..local + 40].copy_from_slice(b"setup.py\0\0");
    assert_corrupt(flatten(&zip, &Limits::default()), Format::Zip, "local file header names it");
}

#[test]
fn unsupported_zip_compression_method() {
    let mut zip = zip_of(&[("a.py", b"x")]);
    let layout = ZipLayout::of(&zip);
    let local = layout.local(&zip, 0);
    set_u16(&mut zip, local + 8, 93);
    set_u16(&mut zip, layout.central[0] + 10, 93);
    let result = flatten(&zip, &Limits::default());
    assert!(
        matches!(
            result,
            Err(Error::UnsupportedFeature { format: Format::Zip, path: Some(ref p), .. }) if p == "a.py"
        ),
        "{}",
        summary(&result)
    );
}

#[test]
fn xz_asking_for_a_huge_dictionary_is_refused() {
    let mut bytes = xz(&tar_of(&[(b"a.py", b"x")]));
    // Block header after the 12-byte stream header: size, flags, optional
    // sizes (varints), then the LZMA2 filter: id 0x21, 1 property byte.
    let size = (usize::from(bytes[12]) + 1) * 4;
    let flags = bytes[13];
    let mut at = 14;
    for present in [flags & 0x40 != 0, flags & 0x80 != 0] {
        if present {
            while bytes[at] & 0x80 != 0 {
                at += 1;
            }
            at += 1;
        }
    }
    assert_eq!(&bytes[at..at + 2], &[0x21, 0x01]);
    bytes[at + 2] = 38; // a 2 GiB dictionary
    let mut crc = flate2::Crc::new();
    crc.update(&bytes[12..12 + size - 4]);
    let sum = crc.sum().to_le_bytes();
    bytes[12 + size - 4..12 + size].copy_from_slice(&sum);
    assert!(matches!(
        flatten(&bytes, &Limits::default()),
        Err(Error::UnsupportedFeature { format: Format::TarXz, .. })
    ));
}

#[test]
fn compressed_data_that_is_not_a_tar() {
    let bytes = gz(b"just some text, not a tar archive at all".repeat(20).as_slice());
    assert_corrupt(flatten(&bytes, &Limits::default()), Format::TarGz, "first tar header");
    assert_corrupt(flatten(&gz(b""), &Limits::default()), Format::TarGz, "empty tar stream");
}

// ---------------------------------------------------------------------------
// Formats

#[test]
fn unsupported_formats_name_what_was_seen() {
    let seen = |bytes: &[u8]| match flatten(bytes, &Limits::default()) {
        Err(Error::UnsupportedFormat { seen }) => seen,
        other => panic!("expected unsupported format, got {}", summary(&other)),
    };
    assert_eq!(seen(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "PNG image");
    assert_eq!(seen(b""), "empty input");
    let random: Vec<u8> = (0u32..4096).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80).collect();
    assert!(seen(&random).starts_with("unknown data starting with "));
}

#[test]
fn every_format_round_trips() {
    let tar = tar_of(&[(b"pkg-1.0/setup.py", b"setup()"), (b"pkg-1.0/big.txt", &[b'a'; 300_000])]);
    for (format, bytes) in [
        (Format::Tar, tar.clone()),
        (Format::TarGz, gz(&tar)),
        (Format::TarBz2, bz2(&tar)),
        (Format::TarXz, xz(&tar)),
        (Format::Zip, zip_of(&[("pkg-1.0/setup.py", b"setup()"), ("pkg-1.0/big.txt", &[b'a'; 300_000])])),
    ] {
        let flat = flatten(&bytes, &Limits::default()).unwrap();
        assert_eq!(flat.format, format);
        assert_eq!(paths(&flat.files), ["pkg-1.0/setup.py", "pkg-1.0/big.txt"], "{format}");
        assert_eq!(flat.files[1].data.len(), 300_000);
    }
}

#[test]
fn concatenated_compressed_streams_are_all_read() {
    let mut bytes = gz(&tar_of(&[(b"a.py", b"1")]));
    bytes.extend_from_slice(&gz(&tar_of(&[(b"b.py", b"2")])));
    let flat = flatten(&bytes, &Limits::default()).unwrap();
    assert_eq!(paths(&flat.files), ["a.py", "b.py"]);

    let mut bytes = bz2(&tar_of(&[(b"a.py", b"1")]));
    bytes.extend_from_slice(&bz2(&tar_of(&[(b"b.py", b"2")])));
    let flat = flatten(&bytes, &Limits::default()).unwrap();
    assert_eq!(paths(&flat.files), ["a.py", "b.py"]);
}

#[test]
fn old_v7_tar_is_read() {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..6].copy_from_slice(b"old.py");
    header.set_size(2);
    header.set_mode(0o644);
    header.set_cksum();
    let mut bytes = header.as_bytes().to_vec();
    bytes.extend_from_slice(b"hi");
    bytes.resize(512 * 4, 0);
    let flat = flatten(&bytes, &Limits::default()).unwrap();
    assert_eq!(flat.format, Format::Tar);
    assert_eq!(flat.files, vec![File::new("old.py", b"hi".to_vec())]);
}

// ---------------------------------------------------------------------------
// Filtering

#[test]
fn filtered_zip_entries_are_not_decompressed() {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    writer.start_file("pkg/keep.py", deflated()).unwrap();
    writer.write_all(b"print('kept')").unwrap();
    writer.start_file("pkg/broken.bin", deflated()).unwrap();
    writer.write_all(&[b'y'; 4000]).unwrap();
    writer.start_file("pkg/bomb.bin", deflated()).unwrap();
    let chunk = vec![0; MIB as usize];
    for _ in 0..200 {
        writer.write_all(&chunk).unwrap();
    }
    let mut zip = writer.finish().unwrap().into_inner();
    let layout = ZipLayout::of(&zip);
    let (start, len) = layout.data(&zip, 1);
    zip[start..start + len].fill(0xff);

    let keep = |path: &str| path.ends_with(".py");
    let flat = flatten_filtered(&zip, &Limits::default(), &keep).unwrap();
    assert_eq!(flat.files, vec![File::new("pkg/keep.py", b"print('kept')".to_vec())]);
    assert_eq!(flat.skipped.filtered, 2);

    // Unfiltered, the same archive fails on the entries skipped above.
    assert!(matches!(
        flatten(&zip, &Limits::default()),
        Err(Error::Corrupt { path: Some(ref p), .. }) if p == "pkg/broken.bin"
    ));
    let only_bomb = |path: &str| path != "pkg/broken.bin";
    assert_limit(
        flatten_filtered(&zip, &Limits::default(), &only_bomb),
        LimitKind::Ratio,
        200,
        Some("pkg/bomb.bin"),
    );
}

#[test]
fn filtered_tar_entries_still_count_toward_total_and_ratio() {
    let mut tar = Vec::new();
    tar_entry(&mut tar, b"pkg/keep.py", b'0', b"print('kept')", b"");
    tar_entry(&mut tar, b"pkg/zeros.bin", b'0', &vec![0; 20 * MIB as usize], b"");
    tar_entry(&mut tar, b"pkg/last.py", b'0', b"print('last')", b"");
    tar.extend_from_slice(&[0; 1024]);
    let bytes = gz(&tar);
    let keep = |path: &str| path.ends_with(".py");

    let flat = flatten_filtered(&bytes, &no_ratio(), &keep).unwrap();
    assert_eq!(paths(&flat.files), ["pkg/keep.py", "pkg/last.py"]);
    assert_eq!(flat.skipped.filtered, 1);

    let limits = Limits { max_total_bytes: 10 * MIB, ..no_ratio() };
    assert_limit(
        flatten_filtered(&bytes, &limits, &keep),
        LimitKind::TotalBytes,
        10 * MIB,
        Some("pkg/zeros.bin"),
    );
    // ~20 KB in: the ratio cap is ~4 MB.
    assert_limit(
        flatten_filtered(&bytes, &Limits::default(), &keep),
        LimitKind::Ratio,
        200,
        Some("pkg/zeros.bin"),
    );
}

#[test]
fn content_after_the_end_of_archive_blocks_is_read() {
    let mut tar = tar_of(&[(b"visible.py", b"1")]);
    tar.extend_from_slice(&tar_of(&[(b"after-the-end.py", b"2")]));
    let flat = flatten(&gz(&tar), &Limits::default()).unwrap();
    assert_eq!(paths(&flat.files), ["visible.py", "after-the-end.py"]);
}

#[test]
fn zip_files_extract_in_any_order_within_shared_limits() {
    let bytes = zip_of(&[("a.py", b"print(1)\n"), ("b.bin", &[7u8; 3000]), ("c.py", &[b'x'; 3000])]);
    let keep_py = |path: &str| path.ends_with(".py");
    let zip = dragonfly_flatten::zip_files(&bytes, &no_ratio(), &keep_py).unwrap();
    assert_eq!((zip.len(), zip.path(0), zip.path(1)), (2, "a.py", "c.py"));
    assert_eq!(zip.skipped().filtered, 1);
    assert_eq!(zip.declared_size(1), 3000);
    // Out of order, as parallel extraction does it; same bytes as flatten.
    let second = zip.extract(1).unwrap();
    let first = zip.extract(0).unwrap();
    let flat = flatten_filtered(&bytes, &no_ratio(), &keep_py).unwrap();
    assert_eq!(vec![first, second], flat.files);

    // The total limit counts what every extraction produced.
    let limits = Limits { max_total_bytes: 3005, ..no_ratio() };
    let zip = dragonfly_flatten::zip_files(&bytes, &limits, &keep_py).unwrap();
    zip.extract(1).unwrap();
    match zip.extract(0) {
        Err(Error::LimitExceeded { kind: LimitKind::TotalBytes, path: Some(path), .. }) => {
            assert_eq!(path, "a.py")
        }
        other => panic!("expected the total limit, got {other:?}"),
    }

    // Only zips are listed this way.
    let tarball = gz(&tar_of(&[(b"a.py", b"x")]));
    assert!(matches!(
        dragonfly_flatten::zip_files(&tarball, &no_ratio(), &keep_py),
        Err(Error::UnsupportedFormat { .. })
    ));
}

// ---------------------------------------------------------------------------
// Snapshot of a listing

/// One line per file (path, size) and one for what was skipped.
fn listing(flat: &Flattened) -> String {
    let mut out = format!("{}\n", flat.format);
    for file in &flat.files {
        out.push_str(&format!("{:>6}  {}\n", file.data.len(), file.path));
    }
    out.push_str(&format!("skipped: {:?}\n", flat.skipped));
    for anomaly in &flat.anomalies {
        out.push_str(&format!("anomaly: {anomaly}\n"));
    }
    out
}

#[test]
fn listing_of_an_sdist_with_every_kind_of_entry() {
    let mut tar = Vec::new();
    tar_entry(&mut tar, b"pkg-1.0/", b'5', b"", b"");
    tar_entry(&mut tar, b"pkg-1.0/setup.py", b'0', b"from setuptools import setup\nsetup()\n", b"");
    tar_entry(&mut tar, b"pkg-1.0/pkg/__init__.py", b'0', b"", b"");
    tar_entry(&mut tar, b"pkg-1.0/pkg/link.py", b'2', b"", b"__init__.py");
    tar_entry(&mut tar, b"pkg-1.0/pkg/hard.py", b'1', b"", b"pkg-1.0/setup.py");
    tar_entry(&mut tar, b"pkg-1.0/pkg/fifo", b'6', b"", b"");
    tar_entry(&mut tar, b"pkg-1.0/data/\xff.bin", b'0', &[0u8; 300], b"");
    tar.extend_from_slice(&[0u8; 1024]);
    let flat = flatten(&gz(&tar), &Limits::default()).unwrap();
    expect_test::expect![[r#"
        tar.gz
            37  pkg-1.0/setup.py
             0  pkg-1.0/pkg/__init__.py
           300  pkg-1.0/data/\xff.bin
            37  pkg-1.0/pkg/hard.py
             0  pkg-1.0/pkg/link.py
        skipped: Skipped { directories: 1, symlinks: 0, hardlinks: 0, other: 1, filtered: 0 }
        anomaly: link scanned with its target's content at `pkg-1.0/pkg/link.py`
        anomaly: link scanned with its target's content at `pkg-1.0/pkg/hard.py`
    "#]]
    .assert_eq(&listing(&flat));
}

#[test]
fn tar_files_are_handed_over_one_at_a_time_as_the_stream_is_read() {
    // Two files, then a third whose data the stream cuts short.
    let mut tar = Vec::new();
    tar_entry(&mut tar, b"p-1/a.py", b'0', &[b'a'; 600], b"");
    tar_entry(&mut tar, b"p-1/b.py", b'0', &[b'b'; 700], b"");
    tar.extend_from_slice(&tar_header(b"p-1/c.py", b'0', 4096, b""));
    tar.extend_from_slice(&[b'c'; 100]);
    let mut seen = Vec::new();
    let result = dragonfly_flatten::flatten_each(&gz(&tar), &Limits::default(), &|_| true, &mut |file| {
        seen.push((file.path, file.data.len()))
    });
    assert!(matches!(result, Err(Error::Corrupt { .. })), "{result:?}");
    assert_eq!(seen, [("p-1/a.py".to_owned(), 600), ("p-1/b.py".to_owned(), 700)], "visited before the end");
}
