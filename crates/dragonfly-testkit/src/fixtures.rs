//! Package fixtures: sdists and wheels built in memory, a small demo corpus
//! of benign and malicious-looking releases, and a larger benchmark corpus.
//!
//! Everything is deterministic: the same arguments always give the same
//! bytes (fixed timestamps, seeded pseudo-random data).
//!
//! The malicious-looking fixtures contain no working malware: payloads are
//! harmless snippets, URLs point nowhere real. Suspicious keywords are kept
//! split in this source by a middle dot (`·`, removed by `reveal` at run time)
//! so that the repository itself does not trip malware scanners.

mod content;
mod synth;

use std::io::Write;

use base64::Engine as _;
use flate2::{Compression, GzBuilder};

use crate::rng::Rng;

/// One file of a distribution: its path inside the package and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureFile {
    /// Path relative to the distribution root, with `/` separators.
    pub path: String,
    /// File contents.
    pub data: Vec<u8>,
}

impl FixtureFile {
    /// A file with the given path and contents.
    pub fn new(path: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Self { path: path.into(), data: data.into() }
    }
}

/// One distribution file of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distribution {
    /// File name, for example `demo-1.0.tar.gz`; the last segment of its URL.
    pub filename: String,
    /// The archive's bytes.
    pub bytes: Vec<u8>,
}

impl Distribution {
    /// A distribution named `filename` holding `bytes`.
    pub fn new(filename: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        Distribution { filename: filename.into(), bytes: bytes.into() }
    }
}

/// A release (name and version) with its distribution archives and the rule
/// names that the bundled rules should match in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixturePackage {
    /// Project name as published (not normalised).
    pub name: String,
    /// Version string.
    pub version: String,
    /// Each distribution, e.g. an sdist and a wheel.
    pub distributions: Vec<Distribution>,
    /// Distinct rule names the bundled rule set matches in any distribution
    /// (after the `filetype` filter), sorted; empty for a benign release.
    pub expected_rules: Vec<String>,
}

/// The rule files (`*.yar`, `*.yara`) directly in `dir`, keyed by file
/// name: the shape of `GET /rules`.
pub fn rule_files(dir: &std::path::Path) -> std::io::Result<std::collections::BTreeMap<String, String>> {
    let mut rules = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if path.is_file() && (name.ends_with(".yar") || name.ends_with(".yara")) {
            rules.insert(name, std::fs::read_to_string(&path)?);
        }
    }
    Ok(rules)
}

/// A rule set shaped like production's, by file name: compiled as one unit,
/// one file's private rule used by another file, a global rule, and a rule
/// that imports `pe` (matched by [`minimal_pe`] under a `.dll` or `.pyd` name).
pub fn production_rules() -> std::collections::BTreeMap<String, String> {
    let files = [
        (
            "common",
            "private rule has_network_import {\n    strings:\n        $a = \"import socket\"\n        $b = \"import requests\"\n    condition:\n        any of them\n}\n",
        ),
        ("gate", "global private rule not_too_large {\n    condition:\n        filesize < 50MB\n}\n"),
        (
            "exfiltration",
            "rule env_exfiltration {\n    meta:\n        weight = 6\n        filetype = \".py\"\n    strings:\n        $env = \"os.environ\"\n    condition:\n        $env and has_network_import\n}\n",
        ),
        (
            "binaries",
            "import \"pe\"\n\nrule windows_binary_in_package {\n    meta:\n        weight = 4\n        filetype = \".dll .pyd .exe\"\n    condition:\n        pe.is_pe and pe.number_of_sections == 1\n}\n",
        ),
    ];
    files.into_iter().map(|(name, source)| (name.to_owned(), source.to_owned())).collect()
}

/// A minimal valid 32-bit Windows PE image: headers and one `.text` section
/// of 512 bytes.
pub fn minimal_pe() -> Vec<u8> {
    fn put(out: &mut [u8], at: usize, bytes: &[u8]) {
        out[at..at + bytes.len()].copy_from_slice(bytes);
    }
    let mut pe = vec![0u8; 0x400];
    put(&mut pe, 0, b"MZ");
    put(&mut pe, 0x3c, &0x40u32.to_le_bytes()); // e_lfanew
    put(&mut pe, 0x40, b"PE\0\0");
    let coff = 0x44;
    put(&mut pe, coff, &0x014cu16.to_le_bytes()); // i386
    put(&mut pe, coff + 2, &1u16.to_le_bytes()); // one section
    put(&mut pe, coff + 16, &0xe0u16.to_le_bytes()); // optional header size
    put(&mut pe, coff + 18, &0x0102u16.to_le_bytes()); // executable, 32-bit
    let opt = coff + 20;
    put(&mut pe, opt, &0x010bu16.to_le_bytes()); // PE32
    put(&mut pe, opt + 4, &0x200u32.to_le_bytes()); // size of code
    put(&mut pe, opt + 16, &0x1000u32.to_le_bytes()); // entry point
    put(&mut pe, opt + 20, &0x1000u32.to_le_bytes()); // base of code
    put(&mut pe, opt + 28, &0x0040_0000u32.to_le_bytes()); // image base
    put(&mut pe, opt + 32, &0x1000u32.to_le_bytes()); // section alignment
    put(&mut pe, opt + 36, &0x200u32.to_le_bytes()); // file alignment
    put(&mut pe, opt + 40, &4u16.to_le_bytes()); // OS version
    put(&mut pe, opt + 48, &4u16.to_le_bytes()); // subsystem version
    put(&mut pe, opt + 56, &0x2000u32.to_le_bytes()); // size of image
    put(&mut pe, opt + 60, &0x200u32.to_le_bytes()); // size of headers
    put(&mut pe, opt + 68, &3u16.to_le_bytes()); // console subsystem
    put(&mut pe, opt + 92, &16u32.to_le_bytes()); // data directories
    let section = opt + 0xe0;
    put(&mut pe, section, b".text\0\0\0");
    put(&mut pe, section + 8, &0x10u32.to_le_bytes()); // virtual size
    put(&mut pe, section + 12, &0x1000u32.to_le_bytes()); // virtual address
    put(&mut pe, section + 16, &0x200u32.to_le_bytes()); // raw size
    put(&mut pe, section + 20, &0x200u32.to_le_bytes()); // raw offset
    put(&mut pe, section + 36, &0x6000_0020u32.to_le_bytes()); // code, read, execute
    put(&mut pe, 0x200, &[0xc3]); // ret
    pe
}

/// Fixed modification time of every archive member (2024-01-01T00:00:00Z).
const MTIME: u64 = 1_704_067_200;

/// Normalises a project name for file names: PEP 503 normalisation with
/// `_` as the separator, as PEP 625 (sdists) and PEP 427 (wheels) ask.
fn dist_name(name: &str) -> String {
    crate::server::normalize_name(name).replace('-', "_")
}

/// The sdist file name of a release: `{normalised_name}-{version}.tar.gz`.
pub fn sdist_filename(name: &str, version: &str) -> String {
    format!("{}-{version}.tar.gz", dist_name(name))
}

/// The pure-Python wheel file name of a release:
/// `{normalised_name}-{version}-py3-none-any.whl`.
pub fn wheel_filename(name: &str, version: &str) -> String {
    tagged_wheel_filename(name, version, "py3-none-any")
}

fn tagged_wheel_filename(name: &str, version: &str, tag: &str) -> String {
    format!("{}-{version}-{tag}.whl", dist_name(name))
}

fn metadata_text(name: &str, version: &str) -> String {
    format!(
        "Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\
         Summary: {name} (dragonfly-testkit fixture)\nLicense: MIT\n\
         Requires-Python: >=3.8\n\n{name} is a generated fixture package.\n"
    )
}

fn default_pyproject(name: &str, version: &str) -> String {
    format!(
        "[build-system]\nrequires = [\"setuptools>=61\"]\n\
         build-backend = \"setuptools.build_meta\"\n\n\
         [project]\nname = \"{name}\"\nversion = \"{version}\"\nrequires-python = \">=3.8\"\n"
    )
}

/// Builds a gzip-compressed tar sdist. Every file is stored under
/// `{normalised_name}-{version}/`; a `PKG-INFO` and, when the files have
/// neither `setup.py` nor `pyproject.toml`, a setuptools `pyproject.toml` are
/// added.
///
/// # Panics
///
/// If a path cannot be stored in a tar header (for example an absolute path
/// or one with `..`); fixture paths are written by tests, not read from input.
pub fn sdist(name: &str, version: &str, files: &[FixtureFile]) -> Vec<u8> {
    sdist_with_level(name, version, files, Compression::default())
}

/// A `.tar.gz` whose one file has the stored name `placeholder` and a GNU
/// long-name header `long_name` before it, byte for byte (a NUL inside is
/// kept): how installers and scanners name it is the point.
pub fn sdist_with_long_name(long_name: &[u8], placeholder: &str, data: &[u8]) -> Vec<u8> {
    let gz = GzBuilder::new().mtime(0).write(Vec::new(), Compression::default());
    let mut builder = tar::Builder::new(gz);
    let mut long = tar::Header::new_gnu();
    long.set_entry_type(tar::EntryType::GNULongName);
    long.as_gnu_mut().expect("a GNU header").name[..13].copy_from_slice(b"././@LongLink");
    long.set_size(long_name.len() as u64);
    long.set_mode(0o644);
    long.set_cksum();
    builder.append(&long, long_name).expect("writing to memory cannot fail");
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(MTIME);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, placeholder, data).expect("fixture path fits a tar header");
    let gz = builder.into_inner().expect("writing a tar archive to memory cannot fail");
    gz.finish().expect("writing a gzip stream to memory cannot fail")
}

fn sdist_with_level(name: &str, version: &str, files: &[FixtureFile], level: Compression) -> Vec<u8> {
    let root = format!("{}-{version}", dist_name(name));
    let has = |p: &str| files.iter().any(|f| f.path == p);
    let mut extra = Vec::new();
    if !has("PKG-INFO") {
        extra.push(FixtureFile::new("PKG-INFO", metadata_text(name, version)));
    }
    if !has("setup.py") && !has("pyproject.toml") {
        extra.push(FixtureFile::new("pyproject.toml", default_pyproject(name, version)));
    }
    let gz = GzBuilder::new().mtime(0).write(Vec::new(), level);
    let mut builder = tar::Builder::new(gz);
    for file in extra.iter().chain(files) {
        let mut header = tar::Header::new_gnu();
        header.set_size(file.data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(MTIME);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, format!("{root}/{}", file.path), file.data.as_slice())
            .expect("fixture path fits a tar header");
    }
    let gz = builder.into_inner().expect("writing a tar archive to memory cannot fail");
    gz.finish().expect("writing a gzip stream to memory cannot fail")
}

/// Builds a `.whl` (zip) with the given files and a
/// `{normalised_name}-{version}.dist-info/` holding `METADATA`, `WHEEL` and a
/// `RECORD` with the SHA-256 and size of every file.
///
/// # Panics
///
/// If two files have the same path.
pub fn wheel(name: &str, version: &str, files: &[FixtureFile]) -> Vec<u8> {
    build_wheel(name, version, files, "py3-none-any", true, 6)
}

fn build_wheel(
    name: &str,
    version: &str,
    files: &[FixtureFile],
    tag: &str,
    purelib: bool,
    level: i64,
) -> Vec<u8> {
    let dist_info = format!("{}-{version}.dist-info", dist_name(name));
    let metadata_path = format!("{dist_info}/METADATA");
    let wheel_path = format!("{dist_info}/WHEEL");
    let record_path = format!("{dist_info}/RECORD");
    let has = |p: &str| files.iter().any(|f| f.path == p);

    let mut extra = Vec::new();
    if !has(&metadata_path) {
        extra.push(FixtureFile::new(metadata_path.clone(), metadata_text(name, version)));
    }
    if !has(&wheel_path) {
        let wheel_text = format!(
            "Wheel-Version: 1.0\nGenerator: dragonfly-testkit\nRoot-Is-Purelib: {purelib}\nTag: {tag}\n"
        );
        extra.push(FixtureFile::new(wheel_path, wheel_text));
    }

    let mut record = String::new();
    for file in files.iter().chain(&extra) {
        if file.path == record_path {
            continue;
        }
        let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha256(&file.data));
        record.push_str(&format!("{},sha256={digest},{}\n", csv_field(&file.path), file.data.len()));
    }
    record.push_str(&format!("{},,\n", csv_field(&record_path)));
    if !has(&record_path) {
        extra.push(FixtureFile::new(record_path, record));
    }

    let time = zip::DateTime::from_date_and_time(2024, 1, 1, 0, 0, 0).unwrap_or_default();
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(level))
        .last_modified_time(time)
        .unix_permissions(0o644);
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for file in files.iter().chain(&extra) {
        let large = file.data.len() > 4 << 30;
        writer
            .start_file(file.path.as_str(), options.large_file(large))
            .expect("fixture wheel paths are unique");
        writer.write_all(&file.data).expect("writing a zip archive to memory cannot fail");
    }
    writer.finish().expect("writing a zip archive to memory cannot fail").into_inner()
}

/// Quotes a RECORD (CSV) field when needed.
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// SHA-256 digest, for wheel RECORD files.
fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).into()
}

/// Builds one release from its sdist and wheel file lists.
fn release(
    name: &str,
    version: &str,
    sdist_files: &[FixtureFile],
    wheel_files: &[FixtureFile],
    expected: &[&str],
) -> FixturePackage {
    let mut expected_rules: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    expected_rules.sort();
    expected_rules.dedup();
    FixturePackage {
        name: name.to_owned(),
        version: version.to_owned(),
        distributions: vec![
            Distribution::new(sdist_filename(name, version), sdist(name, version, sdist_files)),
            Distribution::new(wheel_filename(name, version), wheel(name, version, wheel_files)),
        ],
        expected_rules,
    }
}

/// A deterministic corpus of 12 releases, each with an sdist and a wheel.
///
/// Seven are benign (several realistic modules, tests, CSV/JSON data, a fake
/// compiled extension of pseudo-random bytes, and code that resembles the
/// malicious patterns without being malicious: subprocess in functions,
/// base64-encoded images, legitimate `.pth` files, HTTP clients). Five look
/// malicious, in the shapes PyPI malware usually takes: a `setup.py` that
/// downloads and runs a payload, a base64/zlib/marshal `exec` dropper, a
/// Discord-webhook token and browser stealer, a `.pth`/`sitecustomize`
/// persistence package, and a reverse shell. `expected_rules` of each release
/// lists the rules of the bundled rule set that match it.
pub fn demo_corpus() -> Vec<FixturePackage> {
    let benign = content::benign_releases(&mut Rng::new(0x0d12_a90f_1e5e_ed01));
    let malicious = content::malicious_releases(&mut Rng::new(0x0d12_a90f_1e5e_ed02));
    // Interleave, so that a queue of jobs mixes both kinds.
    let mut releases = Vec::with_capacity(benign.len() + malicious.len());
    let mut malicious = malicious.into_iter();
    for (i, r) in benign.into_iter().enumerate() {
        releases.push(r);
        if i % 3 != 1 {
            releases.extend(malicious.next());
        }
    }
    releases.extend(malicious);
    releases.into_iter().map(|r| release(r.name, r.version, &r.sdist, &r.wheel, r.expected)).collect()
}

/// A larger deterministic corpus for benchmarks, shaped like PyPI:
///
/// - `n_small` small sdists (a few modules of 1-6 KB each, tests, README);
///   one in 25 of them is a renamed copy of a malicious demo release, with
///   `expected_rules` set accordingly;
/// - `n_wheels` pure-Python wheels with 30-80 generated modules and some
///   JSON data;
/// - `n_large` binary wheels of about `large_mb` MiB of uncompressed content,
///   most of it compiled-code-like bytes (`.so` files with an ELF header) and
///   numeric data tables, plus thin Python wrappers.
///
/// Seeded: the same arguments give the same bytes.
pub fn bench_corpus(n_small: usize, n_wheels: usize, n_large: usize, large_mb: usize) -> Vec<FixturePackage> {
    let mut out = Vec::with_capacity(n_small + n_wheels + n_large);
    let templates = content::malicious_releases(&mut Rng::new(0x0d12_a90f_1e5e_ed02));

    let mut rng = Rng::new(0xbe9c_0000_0000_0001);
    for i in 0..n_small {
        let version = format!("1.{}.{}", i % 10, i % 7);
        if i % 25 == 12 && !templates.is_empty() {
            let template = &templates[(i / 25) % templates.len()];
            let name = format!("bench-small-{i:05}");
            // The template's files as they are; only the release name changes.
            let files = &template.sdist;
            let mut expected: Vec<String> = template.expected.iter().map(|s| (*s).to_owned()).collect();
            expected.sort();
            out.push(FixturePackage {
                distributions: vec![Distribution::new(
                    sdist_filename(&name, &version),
                    sdist(&name, &version, files),
                )],
                name,
                version,
                expected_rules: expected,
            });
            continue;
        }
        let name = format!("bench-small-{i:05}");
        let files = synth::small_project(&mut rng, &name);
        out.push(FixturePackage {
            distributions: vec![Distribution::new(
                sdist_filename(&name, &version),
                sdist(&name, &version, &files),
            )],
            name,
            version,
            expected_rules: Vec::new(),
        });
    }

    for i in 0..n_wheels {
        let name = format!("bench-wheel-{i:04}");
        let version = format!("{}.{}.0", 1 + i % 4, i % 13);
        let files = synth::wheel_project(&mut rng, &name);
        out.push(FixturePackage {
            distributions: vec![Distribution::new(
                wheel_filename(&name, &version),
                wheel(&name, &version, &files),
            )],
            name,
            version,
            expected_rules: Vec::new(),
        });
    }

    for i in 0..n_large {
        let name = format!("bench-large-{i:03}");
        let version = format!("3.{i}.1");
        let files = synth::binary_project(&mut rng, &name, large_mb << 20);
        let tag = "cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64";
        // Fast compression: these archives are big and mostly binary.
        let bytes = build_wheel(&name, &version, &files, tag, false, 1);
        out.push(FixturePackage {
            distributions: vec![Distribution::new(tagged_wheel_filename(&name, &version, tag), bytes)],
            name,
            version,
            expected_rules: Vec::new(),
        });
    }
    out
}

/// Consecutive releases of `projects` projects, `releases` each, as PyPI
/// serves them (an sdist and a wheel of the same files per release), oldest
/// first, where most files carry over: each release regenerates two modules,
/// bumps `__init__.py` and rebuilds its compiled extension (a `.so` of
/// pseudo-random bytes, different every release). Benign; seeded.
pub fn release_stream(projects: usize, releases: usize) -> Vec<FixturePackage> {
    let mut out = Vec::with_capacity(projects * releases);
    for p in 0..projects {
        let name = format!("stream-{p:02}");
        let mut rng = Rng::new(0x5ee0_0000_0000_0000 + p as u64);
        let mut files = synth::wheel_project(&mut rng, &name);
        let dir = files[0].path.rsplit_once('/').map_or(String::new(), |(d, _)| d.to_owned());
        let modules: Vec<usize> = (0..files.len())
            .filter(|&i| files[i].path.ends_with(".py") && files[i].data.len() > 1024)
            .collect();
        for r in 0..releases {
            let version = format!("2.{r}.0");
            files[0] =
                FixtureFile::new(format!("{dir}/__init__.py"), format!("__version__ = \"{version}\"\n"));
            if r > 0 {
                for _ in 0..2 {
                    let i = modules[rng.range(0, modules.len() - 1)];
                    let size = files[i].data.len();
                    files[i].data = synth::python_module(&mut rng, size).into_bytes();
                }
            }
            let mut with_binary = files.clone();
            with_binary.push(FixtureFile::new(
                format!("{dir}/_speedups.so"),
                synth::elf_shared_object(&mut rng, 256 << 10),
            ));
            out.push(release(&name, &version, &with_binary, &with_binary, &[]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Read;

    use super::*;

    fn read_sdist(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
        let mut out = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            assert_eq!(entry.header().mtime().unwrap(), MTIME);
            out.insert(path, data);
        }
        out
    }

    fn read_wheel(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut out = BTreeMap::new();
        for i in 0..archive.len() {
            let mut file = archive.by_index(i).unwrap();
            let name = file.name().unwrap().into_owned();
            let mut data = Vec::new();
            file.read_to_end(&mut data).unwrap();
            out.insert(name, data);
        }
        out
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha256_known_answers() {
        assert_eq!(hex(&sha256(b"")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(hex(&sha256(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(
            hex(&sha256(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(
            hex(&sha256(&[b'a'; 1000])),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"
        );
    }

    #[test]
    fn filenames_are_normalised() {
        assert_eq!(sdist_filename("Foo.Bar--baz", "1.0"), "foo_bar_baz-1.0.tar.gz");
        assert_eq!(wheel_filename("Foo.Bar--baz", "1.0"), "foo_bar_baz-1.0-py3-none-any.whl");
        assert_eq!(sdist_filename("requests", "2.32.3"), "requests-2.32.3.tar.gz");
        assert_eq!(dist_name("_private"), "private");
    }

    #[test]
    fn sdist_round_trips_and_adds_metadata() {
        let files = [
            FixtureFile::new("pkg/__init__.py", "VALUE = 1\n"),
            FixtureFile::new("pkg/data/blob.bin", vec![0u8, 1, 2, 255]),
        ];
        let entries = read_sdist(&sdist("My-Pkg", "0.1", &files));
        let names: Vec<&str> = entries.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "my_pkg-0.1/PKG-INFO",
                "my_pkg-0.1/pkg/__init__.py",
                "my_pkg-0.1/pkg/data/blob.bin",
                "my_pkg-0.1/pyproject.toml",
            ]
        );
        assert_eq!(entries["my_pkg-0.1/pkg/data/blob.bin"], [0, 1, 2, 255]);
        let pkg_info = String::from_utf8(entries["my_pkg-0.1/PKG-INFO"].clone()).unwrap();
        assert!(pkg_info.contains("Name: My-Pkg\nVersion: 0.1\n"));

        // A given setup.py replaces the default pyproject.toml.
        let files = [FixtureFile::new("setup.py", "from setuptools import setup\n")];
        let entries = read_sdist(&sdist("x", "1", &files));
        assert!(entries.contains_key("x-1/setup.py"));
        assert!(!entries.contains_key("x-1/pyproject.toml"));
    }

    #[test]
    fn sdist_stores_long_paths() {
        let long = format!("pkg/{}/mod.py", "d".repeat(150));
        let entries = read_sdist(&sdist("x", "1", &[FixtureFile::new(long.clone(), "A = 1\n")]));
        assert_eq!(entries[&format!("x-1/{long}")], b"A = 1\n");
    }

    #[test]
    fn wheel_round_trips_with_valid_record() {
        let files =
            [FixtureFile::new("pkg/__init__.py", "VALUE = 1\n"), FixtureFile::new("pkg/a,b.txt", "comma\n")];
        let entries = read_wheel(&wheel("My-Pkg", "0.1", &files));
        let names: Vec<&str> = entries.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "my_pkg-0.1.dist-info/METADATA",
                "my_pkg-0.1.dist-info/RECORD",
                "my_pkg-0.1.dist-info/WHEEL",
                "pkg/__init__.py",
                "pkg/a,b.txt",
            ]
        );
        assert_eq!(entries["pkg/__init__.py"], b"VALUE = 1\n");
        let record = String::from_utf8(entries["my_pkg-0.1.dist-info/RECORD"].clone()).unwrap();
        let lines: Vec<&str> = record.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[4], "my_pkg-0.1.dist-info/RECORD,,");
        let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha256(b"VALUE = 1\n"));
        assert_eq!(lines[0], format!("pkg/__init__.py,sha256={digest},10"));
        assert!(lines[1].starts_with("\"pkg/a,b.txt\",sha256="));
        let wheel_meta = String::from_utf8(entries["my_pkg-0.1.dist-info/WHEEL"].clone()).unwrap();
        assert!(wheel_meta.contains("Tag: py3-none-any\n"));
    }

    #[test]
    fn archives_are_deterministic() {
        let files = [FixtureFile::new("a.py", "A = 1\n")];
        assert_eq!(sdist("a", "1", &files), sdist("a", "1", &files));
        assert_eq!(wheel("a", "1", &files), wheel("a", "1", &files));
    }

    #[test]
    fn rng_is_seeded() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let mut c = Rng::new(8);
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..4).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        for _ in 0..1000 {
            assert!(a.below(3) < 3);
            assert!((5..=9).contains(&a.range(5, 9)));
        }
        let mut buf = [0u8; 13];
        a.fill(&mut buf);
        assert!(buf.iter().any(|&x| x != 0));
    }

    #[test]
    fn demo_corpus_shape() {
        let corpus = demo_corpus();
        assert_eq!(corpus, demo_corpus());
        assert_eq!(corpus.len(), 12);
        let malicious: Vec<&FixturePackage> =
            corpus.iter().filter(|p| !p.expected_rules.is_empty()).collect();
        assert_eq!(malicious.len(), 5);
        let mut names = std::collections::BTreeSet::new();
        for package in &corpus {
            assert!(names.insert(package.name.clone()), "duplicate {}", package.name);
            let mut sorted = package.expected_rules.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted, package.expected_rules);
            assert_eq!(package.distributions.len(), 2);
            let Distribution { filename: sdist_name, bytes: sdist_bytes } = &package.distributions[0];
            let Distribution { filename: wheel_name, bytes: wheel_bytes } = &package.distributions[1];
            assert_eq!(sdist_name, &sdist_filename(&package.name, &package.version));
            assert_eq!(wheel_name, &wheel_filename(&package.name, &package.version));
            let sdist_entries = read_sdist(sdist_bytes);
            let wheel_entries = read_wheel(wheel_bytes);
            assert!(sdist_entries.len() >= 4, "{} sdist too small", package.name);
            assert!(wheel_entries.len() >= 5, "{} wheel too small", package.name);
            for data in sdist_entries.values().chain(wheel_entries.values()) {
                // The split marker never leaks into generated files.
                assert!(!String::from_utf8_lossy(data).contains('·'));
            }
        }
    }

    #[test]
    fn demo_corpus_has_binary_blob_and_data_files() {
        let corpus = demo_corpus();
        let mut has_so = false;
        let mut has_csv = false;
        let mut has_json = false;
        for package in corpus.iter().filter(|p| p.expected_rules.is_empty()) {
            for path in read_wheel(&package.distributions[1].bytes).keys() {
                has_so |= path.ends_with(".so");
                has_csv |= path.ends_with(".csv");
                has_json |= path.ends_with(".json");
            }
        }
        assert!(has_so && has_csv && has_json);
    }

    #[test]
    fn bench_corpus_shape_and_determinism() {
        let corpus = bench_corpus(30, 2, 1, 1);
        assert_eq!(corpus, bench_corpus(30, 2, 1, 1));
        assert_ne!(corpus, bench_corpus(30, 2, 1, 2));
        assert_eq!(corpus.len(), 33);
        // One renamed malicious release among the small sdists.
        let flagged: Vec<&FixturePackage> = corpus.iter().filter(|p| !p.expected_rules.is_empty()).collect();
        assert_eq!(flagged.len(), 1);
        assert_eq!(flagged[0].name, "bench-small-00012");
        let entries = read_sdist(&flagged[0].distributions[0].bytes);
        assert!(entries.keys().all(|k| k.starts_with("bench_small_00012-")));

        for package in &corpus[..30] {
            assert!(package.distributions[0].filename.ends_with(".tar.gz"));
            assert!(read_sdist(&package.distributions[0].bytes).len() >= 3);
        }
        for package in &corpus[30..32] {
            let entries = read_wheel(&package.distributions[0].bytes);
            assert!(entries.len() >= 33, "{} has {} files", package.name, entries.len());
        }
        let large = &corpus[32];
        assert!(large.distributions[0].filename.ends_with("manylinux2014_x86_64.whl"));
        let entries = read_wheel(&large.distributions[0].bytes);
        let total: usize = entries.values().map(Vec::len).sum();
        assert!((1 << 20..(1 << 20) * 11 / 10).contains(&total), "{total}");
        let so_bytes: usize = entries.iter().filter(|(k, _)| k.ends_with(".so")).map(|(_, v)| v.len()).sum();
        assert!(so_bytes > total / 2);
        assert!(entries.iter().filter(|(k, _)| k.ends_with(".so")).all(|(_, v)| v.starts_with(b"\x7fELF")));
    }
}
