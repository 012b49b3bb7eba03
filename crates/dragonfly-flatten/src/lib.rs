//! Flattens the bytes of one package distribution into a flat list of files,
//! in memory. Nothing is ever written to disk.
//!
//! The format is detected from the content ([`detect_format`]): zip (wheels,
//! eggs), plain tar, and gzip-, bzip2- or xz-compressed tar. Each regular
//! file comes out as a [`File`] with its path as stored in the archive and its
//! bytes. Directories, devices, fifos and links to nothing are counted in
//! [`Skipped`].
//!
//! Every archive is treated as hostile. [`Limits`] are enforced on the bytes
//! actually produced while decompressing, never on sizes the archive
//! declares, and reading stops as soon as one is crossed. Corrupt, truncated
//! or encrypted input is a typed [`Error`], never a panic.
//!
//! ```
//! use std::io::Write;
//!
//! // A small .tar.gz built in memory.
//! let mut builder = tar::Builder::new(Vec::new());
//! let mut header = tar::Header::new_gnu();
//! header.set_size(5);
//! header.set_mode(0o644);
//! builder.append_data(&mut header, "pkg-1.0/setup.py", &b"hello"[..])?;
//! let tarball = builder.into_inner()?;
//! let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
//! gz.write_all(&tarball)?;
//! let bytes = gz.finish()?;
//!
//! let flat = dragonfly_flatten::flatten(&bytes, &dragonfly_flatten::Limits::default())?;
//! assert_eq!(flat.format, dragonfly_flatten::Format::TarGz);
//! assert_eq!(flat.files[0].path, "pkg-1.0/setup.py");
//! assert_eq!(flat.files[0].data, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Paths
//!
//! Paths are kept as stored (`/` separated in every real archive). Valid
//! UTF-8 is kept as is and each byte of invalid UTF-8 is written as `\xNN`.
//! Absolute paths and `..` components are kept too: nothing is extracted,
//! so they are only data to scan. Zip names are taken as raw bytes (the
//! CP437 fallback of the zip specification is not applied, as most writers
//! store UTF-8 without setting the flag).
//!
//! # What counts as a file
//!
//! The node's file tree is a superset of every installer's: each file pip
//! (CPython's `tarfile` and `zipfile`) would write is returned under the
//! name CPython gives it ([`File::path`]), with every name another reader
//! or Python version would use as an alias ([`File::aliases`]), and each
//! construct readers disagree on is recorded as an [`Anomaly`].
//!
//! Tar: regular files, contiguous files, sparse files, and entries of
//! unknown type (CPython extracts those as regular files). Names follow
//! CPython: fields cut at their first NUL, the ustar prefix joined, GNU
//! long names and PAX `path`, `GNU.sparse.name` and global records applied
//! in CPython's order. Symbolic and hard links come out as files under the
//! link's name with the content of every member they resolve to. Where
//! readers disagree on where the next header starts, the stream is read
//! both ways. Zip: every entry whose name does not end in `/`, whatever its
//! mode (pip writes symlink and device entries as regular files). Duplicate
//! names are all kept.
//!
//! # Content hidden from some readers
//!
//! A zip is read through its central directory, but first checked so that
//! nothing a streaming extractor would see is missed: entries must not
//! overlap each other or the central directory, no local file header may sit
//! outside the listed entries, local and central headers must agree on name,
//! compression method and encryption, and an archive listing no entries must
//! consist of its end record only. A tar is read on past its end-of-archive
//! blocks (as `tar --ignore-zeros` would), and compressed streams are read to
//! their end, so a truncated trailer is an error. Any of these is
//! [`Error::Corrupt`].

mod budget;
mod detect;
mod error;
mod names;
mod nested;
mod tarball;
mod zipfile;

use std::fmt;

pub use detect::detect_format;
pub use error::{Error, LimitKind};
pub use nested::{MAX_DEPTH, SEPARATOR, is_archive_name};

/// Produced bytes below which the expansion ratio is not checked (1 MiB), so
/// that tiny archives of highly compressible text are not refused.
pub const RATIO_FLOOR_BYTES: u64 = 1 << 20;

/// Memory an xz stream may ask for (dictionary and decoder state); a stream
/// asking for more is refused before any allocation. `xz -9` needs 65 MiB.
pub const XZ_MEMORY_LIMIT_BYTES: u64 = 128 << 20;

/// Limits on what one distribution may expand to; enforced on bytes actually
/// produced, never on sizes declared by the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum sum of produced file bytes (default 512 MiB). For tar formats
    /// this counts every byte of the decompressed tar stream: headers,
    /// padding and the data of skipped entries.
    pub max_total_bytes: u64,
    /// Maximum size of one file (default 128 MiB).
    pub max_file_bytes: u64,
    /// Maximum number of archive entries of every kind: files, directories,
    /// links and so on (default 100 000).
    pub max_entries: u64,
    /// Maximum ratio of produced bytes (counted as for `max_total_bytes`) to
    /// input bytes (default 200). Not applied to the first
    /// [`RATIO_FLOOR_BYTES`] produced.
    pub max_ratio: u64,
    /// Maximum size of one tar extension header (a GNU long name or link,
    /// a PAX header; default 64 KiB), checked before it is read. This
    /// bounds every path, as zip names are at most 64 KiB by format.
    pub max_header_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_total_bytes: 512 << 20,
            max_file_bytes: 128 << 20,
            max_entries: 100_000,
            max_ratio: 200,
            max_header_bytes: 64 << 10,
        }
    }
}

/// An archive format, as detected from the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// Zip archive (also `.whl` and `.egg`).
    Zip,
    /// Uncompressed tar.
    Tar,
    /// Gzip-compressed tar (`.tar.gz`, `.tgz`).
    TarGz,
    /// Bzip2-compressed tar (`.tar.bz2`).
    TarBz2,
    /// Xz-compressed tar (`.tar.xz`).
    TarXz,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Zip => "zip",
            Format::Tar => "tar",
            Format::TarGz => "tar.gz",
            Format::TarBz2 => "tar.bz2",
            Format::TarXz => "tar.xz",
        })
    }
}

/// One regular file of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Path inside the archive: the name CPython's `tarfile` or `zipfile`
    /// gives it (see the crate docs for non-UTF-8 bytes).
    pub path: String,
    /// Every other name an installer or archive reader could write it
    /// under; rules for any of them apply. Usually empty.
    pub aliases: Vec<String>,
    /// The file's bytes.
    pub data: Vec<u8>,
}

impl File {
    /// A file known under one name.
    pub fn new(path: impl Into<String>, data: Vec<u8>) -> Self {
        File { path: path.into(), aliases: Vec::new(), data }
    }

    /// The path, then the aliases.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.path.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

/// Something in an archive that readers interpret differently, or that
/// hides content from some of them. The archive is still read, every
/// reading's files are returned, and the construct is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    /// What was found.
    pub kind: AnomalyKind,
    /// The entry concerned, if any.
    pub path: Option<String>,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.description())?;
        match &self.path {
            Some(path) => write!(f, " at `{path}`"),
            None => Ok(()),
        }
    }
}

/// The kinds of [`Anomaly`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum AnomalyKind {
    /// A name with a NUL byte followed by more: installers cut it there.
    NameWithNul,
    /// Readers disagree on an entry's name (PAX records, GNU long names,
    /// header fields, zip Unicode path fields): it is scanned under each.
    ConflictingNames,
    /// A PAX global header that sets a name, size or link target for every
    /// entry after it.
    GlobalHeader,
    /// A number (a PAX size) that does not parse: read as 0, as CPython does.
    InvalidNumber,
    /// A symbolic or hard link, scanned under its own name with the content
    /// of the member it points to.
    Link,
    /// A link to nothing in the archive.
    DanglingLink,
    /// Readers disagree on where the next header starts (data after a
    /// directory or link header, a PAX size that does not parse): every
    /// reading is scanned.
    DivergentLayout,
    /// A block that is not a valid tar header, skipped.
    InvalidHeader,
    /// A zip entry whose mode says symlink, device or fifo: installers
    /// write it as a regular file, so it is scanned as one.
    SpecialMode,
    /// Bytes before a zip archive (a self-extractor stub).
    PrefixedArchive,
    /// Bytes after the end of the archive or its compressed stream (NUL
    /// padding after gzip, a partial block after the last tar header).
    TrailingData,
    /// A tar that is a zip too (pip unzips anything `zipfile` recognises):
    /// both are scanned.
    Polyglot,
    /// An archive inside the archive, opened: its files are scanned as
    /// `outer!/inner/path`.
    NestedArchive,
    /// A member named like an archive that does not read as one: scanned
    /// as a file only.
    UnreadableNestedArchive,
}

impl AnomalyKind {
    /// A short label (for metrics).
    pub fn label(self) -> &'static str {
        match self {
            AnomalyKind::NameWithNul => "name_with_nul",
            AnomalyKind::ConflictingNames => "conflicting_names",
            AnomalyKind::GlobalHeader => "global_header",
            AnomalyKind::InvalidNumber => "invalid_number",
            AnomalyKind::Link => "link",
            AnomalyKind::DanglingLink => "dangling_link",
            AnomalyKind::DivergentLayout => "divergent_layout",
            AnomalyKind::InvalidHeader => "invalid_header",
            AnomalyKind::SpecialMode => "special_mode",
            AnomalyKind::PrefixedArchive => "prefixed_archive",
            AnomalyKind::TrailingData => "trailing_data",
            AnomalyKind::Polyglot => "polyglot",
            AnomalyKind::NestedArchive => "nested_archive",
            AnomalyKind::UnreadableNestedArchive => "unreadable_nested_archive",
        }
    }

    /// Every kind, in label order of declaration.
    pub const ALL: [AnomalyKind; 14] = [
        AnomalyKind::NameWithNul,
        AnomalyKind::ConflictingNames,
        AnomalyKind::GlobalHeader,
        AnomalyKind::InvalidNumber,
        AnomalyKind::Link,
        AnomalyKind::DanglingLink,
        AnomalyKind::DivergentLayout,
        AnomalyKind::InvalidHeader,
        AnomalyKind::SpecialMode,
        AnomalyKind::PrefixedArchive,
        AnomalyKind::TrailingData,
        AnomalyKind::Polyglot,
        AnomalyKind::NestedArchive,
        AnomalyKind::UnreadableNestedArchive,
    ];

    fn description(self) -> &'static str {
        match self {
            AnomalyKind::NameWithNul => "name with a NUL byte",
            AnomalyKind::ConflictingNames => "readers disagree on the name",
            AnomalyKind::GlobalHeader => "PAX global header",
            AnomalyKind::InvalidNumber => "invalid number field",
            AnomalyKind::Link => "link scanned with its target's content",
            AnomalyKind::DanglingLink => "link to nothing in the archive",
            AnomalyKind::DivergentLayout => "readers disagree on where entries start",
            AnomalyKind::InvalidHeader => "invalid header skipped",
            AnomalyKind::SpecialMode => "special file mode scanned as a file",
            AnomalyKind::PrefixedArchive => "data before the archive",
            AnomalyKind::TrailingData => "data after the archive",
            AnomalyKind::Polyglot => "a zip inside the tar's bytes, scanned too",
            AnomalyKind::NestedArchive => "nested archive opened",
            AnomalyKind::UnreadableNestedArchive => "member named like an archive that does not read as one",
        }
    }
}

/// Entries that did not come out as files, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Directories.
    pub directories: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Hard links (tar only).
    pub hardlinks: u64,
    /// Devices, fifos and metadata entries such as pax global headers.
    pub other: u64,
    /// Files excluded by the `keep` predicate of [`flatten_filtered`].
    pub filtered: u64,
}

/// The files of one archive.
#[derive(Debug, Clone)]
pub struct Flattened {
    /// The detected format.
    pub format: Format,
    /// The regular files, in archive order (central-directory order for
    /// zip); files only another reading finds, and links, come after.
    pub files: Vec<File>,
    /// What was not returned as a file.
    pub skipped: Skipped,
    /// Constructs readers disagree on, in the order met.
    pub anomalies: Vec<Anomaly>,
}

/// What [`flatten_each`] found besides the files.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The detected format.
    pub format: Format,
    /// What was not handed over as a file.
    pub skipped: Skipped,
    /// Constructs readers disagree on, in the order met.
    pub anomalies: Vec<Anomaly>,
}

/// Flattens one archive into its files, in memory.
pub fn flatten(bytes: &[u8], limits: &Limits) -> Result<Flattened, Error> {
    flatten_filtered(bytes, limits, &|_| true)
}

/// Like [`flatten`], but files whose path fails `keep` are not stored; inside
/// a zip they are not even decompressed.
///
/// Checks that need no decompression still apply to excluded files: entry
/// count, zip structure (overlapping entries, hidden local headers) and
/// encryption. In a tar the whole stream is read through, so excluded files
/// still count toward the total and ratio limits.
pub fn flatten_filtered(
    bytes: &[u8],
    limits: &Limits,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Flattened, Error> {
    let mut files = Vec::new();
    let Summary { format, skipped, anomalies } =
        flatten_each(bytes, limits, keep, &mut |file| files.push(file))?;
    Ok(Flattened { format, files, skipped, anomalies })
}

/// Like [`flatten_filtered`], but hands each kept file to `visit` as soon
/// as it is out instead of collecting them: a tar (an sdist) then costs its
/// largest file, not its whole expansion. On an error, `visit` may have
/// seen some files already.
///
/// ```
/// # let bytes = {
/// #     let mut builder = tar::Builder::new(Vec::new());
/// #     let mut header = tar::Header::new_gnu();
/// #     header.set_size(5);
/// #     header.set_mode(0o644);
/// #     builder.append_data(&mut header, "pkg-1.0/setup.py", &b"hello"[..]).unwrap();
/// #     builder.into_inner().unwrap()
/// # };
/// let mut largest = 0;
/// let summary = dragonfly_flatten::flatten_each(
///     &bytes,
///     &dragonfly_flatten::Limits::default(),
///     &|_| true,
///     &mut |file| largest = largest.max(file.data.len()),
/// )?;
/// assert_eq!((summary.format, largest), (dragonfly_flatten::Format::Tar, 5));
/// # Ok::<(), dragonfly_flatten::Error>(())
/// ```
pub fn flatten_each(
    bytes: &[u8],
    limits: &Limits,
    keep: &dyn Fn(&str) -> bool,
    visit: &mut dyn FnMut(File),
) -> Result<Summary, Error> {
    let format = detect_format(bytes)?;
    let budget = budget::Budget::new(limits, bytes.len() as u64);
    let (skipped, anomalies) = nested::flatten_at(bytes, format, &budget, keep, visit, 1)?;
    Ok(Summary { format, skipped, anomalies })
}

/// The tar stream inside a (compressed) archive.
pub(crate) enum Stream<'a> {
    Plain(&'a [u8]),
    Gzip(Box<GzipMembers<'a>>),
    Bzip2(Box<bzip2::bufread::MultiBzDecoder<&'a [u8]>>),
    Xz(Box<lzma_rust2::XzReader<&'a [u8]>>),
}

impl<'a> Stream<'a> {
    fn open(bytes: &'a [u8], format: Format) -> Self {
        match format {
            Format::TarGz => {
                Stream::Gzip(Box::new(GzipMembers { rest: bytes, member: None, trailing: false }))
            }
            Format::TarBz2 => Stream::Bzip2(Box::new(bzip2::bufread::MultiBzDecoder::new(bytes))),
            Format::TarXz => {
                let limit_kib = u32::try_from(XZ_MEMORY_LIMIT_BYTES / 1024).unwrap_or(u32::MAX);
                Stream::Xz(Box::new(lzma_rust2::XzReader::new_mem_limit(bytes, true, limit_kib)))
            }
            Format::Tar | Format::Zip => Stream::Plain(bytes),
        }
    }

    /// Whether bytes followed the compressed stream.
    pub(crate) fn trailing(&self) -> bool {
        matches!(self, Stream::Gzip(gzip) if gzip.trailing)
    }
}

impl std::io::Read for Stream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(bytes) => bytes.read(buf),
            Stream::Gzip(gzip) => gzip.read(buf),
            Stream::Bzip2(reader) => reader.read(buf),
            Stream::Xz(reader) => reader.read(buf),
        }
    }
}

/// Gzip members one after another, as CPython's `gzip` reads them: NUL
/// padding between and after members is skipped. Anything else after a
/// member is not gzip and is never read by an installer; it ends the
/// stream and is recorded.
pub(crate) struct GzipMembers<'a> {
    rest: &'a [u8],
    member: Option<flate2::bufread::GzDecoder<&'a [u8]>>,
    trailing: bool,
}

impl std::io::Read for GzipMembers<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(member) = &mut self.member {
                let n = member.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                // One decoder for every member: its state is reused.
                let mut rest = member.reset(&[][..]);
                let padding = rest.iter().take_while(|&&b| b == 0).count();
                if padding > 0 {
                    self.trailing = true;
                    rest = &rest[padding..];
                }
                if !rest.is_empty() && !rest.starts_with(b"\x1f\x8b") {
                    self.trailing = true;
                    rest = &[];
                }
                if !rest.is_empty() {
                    member.reset(rest);
                    continue;
                }
                self.member = None;
                self.rest = &[];
                return Ok(0);
            }
            if self.rest.is_empty() {
                return Ok(0);
            }
            self.member = Some(flate2::bufread::GzDecoder::new(self.rest));
        }
    }
}

/// The files of a zip archive, listed and checked but not yet
/// decompressed, so that a caller can extract them in any order or from
/// several threads at once (`ZipFiles` is `Sync`). The limits hold across
/// all extractions together, as in [`flatten_filtered`], whose checks
/// (structure, encryption, entry count, compression method) have all been
/// made by [`zip_files`].
pub struct ZipFiles<'a> {
    bytes: &'a [u8],
    budget: budget::Budget,
    plan: zipfile::Plan,
    /// Per planned file: whether the caller's `keep` wants it (else it is
    /// planned only to be opened as a nested archive).
    wanted: Vec<bool>,
}

/// Names how zip entries are extracted: this crate's zip reading and the
/// zip and libdeflate versions it uses. A caller that remembers what an
/// entry extracted to keys it with this, so another extractor's memory is
/// never used. Changed with any change to how entries are extracted.
pub const EXTRACTION: &str = "dragonfly-flatten zip extraction 1; zip 9.8.2; libdeflater 1.26.1";

/// How a zip entry is stored (see [`ZipFiles::stored`]).
#[derive(Debug, Clone, Copy)]
pub struct StoredEntry<'a> {
    /// Deflated (else stored as is).
    pub deflated: bool,
    /// The CRC-32 the archive declares.
    pub crc32: u32,
    /// The uncompressed size the archive declares.
    pub size: u64,
    /// The entry's stored (compressed) bytes.
    pub data: &'a [u8],
}

/// Lists the files of the zip `bytes` that pass `keep`, without
/// decompressing any; fails as [`flatten_filtered`] would before reading
/// file data.
pub fn zip_files<'a>(
    bytes: &'a [u8],
    limits: &Limits,
    keep: &dyn Fn(&str) -> bool,
) -> Result<ZipFiles<'a>, Error> {
    let format = detect_format(bytes)?;
    if format != Format::Zip {
        return Err(Error::UnsupportedFormat {
            seen: format!("a {format} archive where a zip was expected"),
        });
    }
    let budget = budget::Budget::new(limits, bytes.len() as u64);
    let wants = |name: &str| keep(name) || is_archive_name(name);
    let plan = zipfile::plan(bytes, &budget, &wants)?;
    let wanted = plan
        .kept
        .iter()
        .map(|file| keep(&file.path) || file.aliases.iter().any(|alias| keep(alias)))
        .collect();
    Ok(ZipFiles { bytes, budget, plan, wanted })
}

impl ZipFiles<'_> {
    /// Number of files to extract.
    pub fn len(&self) -> usize {
        self.plan.kept.len()
    }

    /// Whether there is no file to extract.
    pub fn is_empty(&self) -> bool {
        self.plan.kept.is_empty()
    }

    /// Path of file `index` (central-directory order).
    pub fn path(&self, index: usize) -> &str {
        &self.plan.kept[index].path
    }

    /// The uncompressed size the archive declares for file `index`: a hint
    /// for scheduling only, never trusted for limits.
    pub fn declared_size(&self, index: usize) -> u64 {
        self.plan.kept[index].entry.size()
    }

    /// What was not listed as a file.
    pub fn skipped(&self) -> &Skipped {
        &self.plan.skipped
    }

    /// Other names file `index` could be written under.
    pub fn aliases(&self, index: usize) -> &[String] {
        &self.plan.kept[index].aliases
    }

    /// Constructs readers disagree on, found while listing.
    pub fn anomalies(&self) -> &[Anomaly] {
        &self.plan.anomalies
    }

    /// Whether file `index` passed `keep` (else it is listed only because
    /// its name says it is an archive, to open with [`ZipFiles::open_nested`]).
    pub fn wanted(&self, index: usize) -> bool {
        self.wanted[index]
    }

    /// How file `index` is stored. Extraction depends on nothing else, so
    /// entries that are stored alike extract to the same bytes (or fail
    /// alike).
    pub fn stored(&self, index: usize) -> Option<StoredEntry<'_>> {
        let (deflated, crc32, size, data) = zipfile::stored(self.bytes, &self.plan.kept[index].entry)?;
        Some(StoredEntry { deflated, crc32, size, data })
    }

    /// Counts `size` bytes of file `index` against the limits without
    /// extracting it, for a caller that knows its content from an entry
    /// stored alike; fails as extracting it would.
    pub fn account(&self, index: usize, size: u64) -> Result<(), Error> {
        self.budget.charge(size, &self.plan.kept[index].path)
    }

    /// Whether file `index` is to be opened as a nested archive.
    pub fn opens_nested(&self, index: usize) -> bool {
        is_archive_name(&self.plan.kept[index].path)
    }

    /// Hands the files inside `file` (extracted from this zip), when it is
    /// an archive, to `visit` as `outer!/inner/path`, within this zip's
    /// limits; `keep` is asked about those full paths. Returns what was
    /// found odd; fails only when a limit is crossed.
    pub fn open_nested(
        &self,
        file: &File,
        keep: &dyn Fn(&str) -> bool,
        visit: &mut dyn FnMut(File),
    ) -> Result<Vec<Anomaly>, Error> {
        let mut nested =
            nested::Nested { budget: &self.budget, keep, depth: 1, anomalies: Vec::new(), failure: None };
        nested.open(file, visit);
        match nested.failure {
            Some(err) => Err(err),
            None => Ok(nested.anomalies),
        }
    }

    /// Decompresses file `index` within the limits.
    pub fn extract(&self, index: usize) -> Result<File, Error> {
        zipfile::extract(self.bytes, &self.budget, &self.plan.kept[index])
    }
}

#[cfg(test)]
mod extraction_tests {
    /// The versions [`EXTRACTION`](super::EXTRACTION) names are the ones
    /// the workspace locks: an upgrade must change it.
    #[test]
    fn extraction_names_the_locked_versions() {
        let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock")).unwrap();
        for name in ["zip", "libdeflater"] {
            let at = lock.find(&format!("name = \"{name}\"\nversion = \"")).expect(name);
            let version =
                lock[at..].lines().nth(1).unwrap().trim_start_matches("version = ").trim_matches('"');
            assert!(
                super::EXTRACTION.contains(&format!("{name} {version}")),
                "{name} {version} in Cargo.lock"
            );
        }
    }
}
