//! Flattens the bytes of one package distribution into a flat list of files,
//! in memory. Nothing is ever written to disk.
//!
//! The format is detected from the content ([`detect_format`]): zip (wheels,
//! eggs), plain tar, and gzip-, bzip2- or xz-compressed tar. Each regular
//! file comes out as a [`File`] with its path as stored in the archive and its
//! bytes. Directories, links, devices and fifos are counted in [`Skipped`].
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
//! Tar: regular files, contiguous files, GNU sparse files, and entries of
//! unknown type (Python's `tarfile` extracts those as regular files). Zip:
//! every entry that is not a directory (name ending in `/`), a symlink or
//! another Unix special file according to its mode bits. Duplicate names in
//! one zip are all kept.
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
mod tarball;
mod zipfile;

use std::fmt;

pub use detect::detect_format;
pub use error::{Error, LimitKind};

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
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_total_bytes: 512 << 20, max_file_bytes: 128 << 20, max_entries: 100_000, max_ratio: 200 }
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
    /// Path inside the archive, as stored (see the crate docs for non-UTF-8 bytes).
    pub path: String,
    /// The file's bytes.
    pub data: Vec<u8>,
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
    /// The regular files, in archive order (central-directory order for zip).
    pub files: Vec<File>,
    /// What was not returned as a file.
    pub skipped: Skipped,
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
    let (format, skipped) = flatten_each(bytes, limits, keep, &mut |file| files.push(file))?;
    Ok(Flattened { format, files, skipped })
}

/// Like [`flatten_filtered`], but hands each kept file to `visit` as soon
/// as it is out instead of collecting them: a tar (an sdist) then costs its
/// largest file, not its whole expansion. Returns the format and what was
/// skipped. On an error, `visit` may have seen some files already.
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
/// let (format, _skipped) = dragonfly_flatten::flatten_each(
///     &bytes,
///     &dragonfly_flatten::Limits::default(),
///     &|_| true,
///     &mut |file| largest = largest.max(file.data.len()),
/// )?;
/// assert_eq!((format, largest), (dragonfly_flatten::Format::Tar, 5));
/// # Ok::<(), dragonfly_flatten::Error>(())
/// ```
pub fn flatten_each(
    bytes: &[u8],
    limits: &Limits,
    keep: &dyn Fn(&str) -> bool,
    visit: &mut dyn FnMut(File),
) -> Result<(Format, Skipped), Error> {
    let format = detect_format(bytes)?;
    let budget = budget::Budget::new(limits, bytes.len() as u64);
    let skipped = match format {
        Format::Zip => {
            let out = zipfile::flatten(bytes, &budget, keep)?;
            out.files.into_iter().for_each(&mut *visit);
            out.skipped
        }
        Format::Tar => tarball::flatten(bytes, format, &budget, keep, visit)?,
        Format::TarGz => {
            let reader = flate2::bufread::MultiGzDecoder::new(bytes);
            tarball::flatten(reader, format, &budget, keep, visit)?
        }
        Format::TarBz2 => {
            let reader = bzip2::bufread::MultiBzDecoder::new(bytes);
            tarball::flatten(reader, format, &budget, keep, visit)?
        }
        Format::TarXz => {
            let limit_kib = u32::try_from(XZ_MEMORY_LIMIT_BYTES / 1024).unwrap_or(u32::MAX);
            let reader = lzma_rust2::XzReader::new_mem_limit(bytes, true, limit_kib);
            tarball::flatten(reader, format, &budget, keep, visit)?
        }
    };
    Ok((format, skipped))
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
    let plan = zipfile::plan(bytes, &budget, keep)?;
    Ok(ZipFiles { bytes, budget, plan })
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
        &self.plan.kept[index].0
    }

    /// The uncompressed size the archive declares for file `index`: a hint
    /// for scheduling only, never trusted for limits.
    pub fn declared_size(&self, index: usize) -> u64 {
        self.plan.kept[index].1.size()
    }

    /// What was not listed as a file.
    pub fn skipped(&self) -> &Skipped {
        &self.plan.skipped
    }

    /// Decompresses file `index` within the limits.
    pub fn extract(&self, index: usize) -> Result<File, Error> {
        zipfile::extract(self.bytes, &self.budget, &self.plan.kept[index])
    }
}

/// What a format reader hands back.
pub(crate) struct Output {
    pub(crate) files: Vec<File>,
    pub(crate) skipped: Skipped,
}
