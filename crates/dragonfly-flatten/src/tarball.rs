//! Tar streams, plain or decompressed on the fly.

use std::io::{self, BufReader, Read};

use crate::budget::{Budget, StreamCounter};
use crate::{Error, File, Format, Skipped, names};

/// Read-ahead between the decompressor and the tar reader.
const STREAM_BUFFER: usize = 64 << 10;

/// What a tar entry is, from its type flag.
enum Kind {
    File,
    Directory,
    Symlink,
    Hardlink,
    Other,
}

fn classify(type_flag: u8, path: &str) -> Kind {
    match type_flag {
        b'0' | b'7' | b'S' => Kind::File,
        // Pre-POSIX archives mark directories with a trailing slash only.
        b'\0' if path.ends_with('/') => Kind::Directory,
        b'\0' => Kind::File,
        b'5' => Kind::Directory,
        b'2' => Kind::Symlink,
        b'1' => Kind::Hardlink,
        // Devices, fifos, and metadata entries the tar reader passes on.
        b'3' | b'4' | b'6' | b'g' | b'x' | b'L' | b'K' => Kind::Other,
        // Python's tarfile extracts unknown types as regular files.
        _ => Kind::File,
    }
}

/// Reads every entry of the tar stream `reader`, handing each kept file to
/// `visit` as soon as it is read (so a caller need not hold them all).
pub(crate) fn flatten<R: Read>(
    reader: R,
    format: Format,
    budget: &Budget,
    keep: &dyn Fn(&str) -> bool,
    visit: &mut dyn FnMut(File),
) -> Result<Skipped, Error> {
    // Tar reads headers 512 bytes at a time; the buffer spares the
    // decompressor one call per header. Bytes are counted as they are
    // decompressed, so at most one buffer is read past a limit.
    let counted = StreamCounter::new(reader, budget);
    let mut archive = tar::Archive::new(BufReader::with_capacity(STREAM_BUFFER, counted));
    // Read on past end-of-archive blocks: `tar --ignore-zeros` shows what
    // follows them, so it must be scanned too.
    archive.set_ignore_zeros(true);
    let mut skipped = Skipped::default();
    // The entry last reached, to say where a stream error happened.
    let mut last: Option<String> = None;
    let entries = archive.entries().map_err(|e| budget.io_error(e, format, None))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| match budget.io_error(e, format, last.as_deref()) {
            // No entry read yet: say so, the stream may hold no tar at all.
            Error::Corrupt { format, path: None, message } => Error::Corrupt {
                format,
                path: None,
                message: format!("can not read the first tar header: {message}"),
            },
            err => err,
        })?;
        let path = names::readable(&entry.path_bytes());
        budget.count_entry(&path)?;
        // The raw flag: `EntryType` reads an old-style `\0` as `0`.
        match classify(entry.header().as_bytes()[156], &path) {
            Kind::File if keep(&path) => {
                let size = entry.size();
                let data = budget.read_file(&mut entry, size, format, &path)?;
                if (data.len() as u64) < size {
                    return Err(Error::Corrupt {
                        format,
                        path: Some(path),
                        message: format!("truncated entry: {} of {size} bytes", data.len()),
                    });
                }
                visit(File { path: path.clone(), data });
            }
            Kind::File => skipped.filtered += 1,
            Kind::Directory => skipped.directories += 1,
            Kind::Symlink => skipped.symlinks += 1,
            Kind::Hardlink => skipped.hardlinks += 1,
            Kind::Other => skipped.other += 1,
        }
        last = Some(path);
    }
    // Normally nothing is left (zero blocks are read to the end), but make
    // sure the whole compressed stream, trailer included, is checked.
    io::copy(&mut archive.into_inner(), &mut io::sink())
        .map_err(|e| budget.io_error(e, format, last.as_deref()))?;
    if last.is_none() && budget.stream_bytes() == 0 {
        return Err(Error::Corrupt { format, path: None, message: "empty tar stream".to_owned() });
    }
    Ok(skipped)
}
