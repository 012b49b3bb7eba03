//! Zip archives, read through their central directory.
//!
//! `zip::ZipArchive` keys entries by name and so drops all but one of a set
//! of duplicates; `ZipIterable` walks the central directory entry by entry
//! and keeps them. Before anything is decompressed, the layout is checked so
//! that every byte a streaming extractor could see is either part of a
//! listed entry or refused: no overlapping entries, no local header missing
//! from the central directory, local and central headers agreeing on name,
//! method and encryption.
//!
//! Names are derived from the central directory's raw bytes as CPython's
//! `zipfile` derives them: cut at the first NUL, and replaced by a Unicode
//! Path extra field of version 1 whose CRC matches (Python 3.12 and later;
//! 3.11 ignores the field). Every name some reader uses is kept, the first
//! as the path, the rest as aliases. Entries whose mode says symlink,
//! device or fifo are files: pip writes them as regular files.

use std::cell::RefCell;
use std::io::Cursor;

use zip::read::{Config, OwnedZipFileEntry, ZipFileEntry};
use zip::result::ZipError;
use zip::unstable::read::ZipIterable;
use zip::{CompressionMethod, ZipReadOptions};

use crate::budget::Budget;
use crate::{Anomaly, AnomalyKind, Error, File, Format, Skipped, names};

const FORMAT: Format = Format::Zip;
const LOCAL_SIGNATURE: &[u8; 4] = b"PK\x03\x04";
const LOCAL_HEADER_LEN: u64 = 30;
const CENTRAL_HEADER_LEN: u64 = 46;
const END_RECORD_LEN: usize = 22;
const END_SIGNATURE: &[u8; 4] = b"PK\x05\x06";
/// Extra field id of the Info-ZIP Unicode Path field.
const UNICODE_PATH: u16 = 0x7075;

/// Unix file-type bits of an entry's mode.
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;

type Entry = ZipFileEntry<'static>;

/// Reads every entry of the zip archive `bytes`, handing each kept file to
/// `visit` as soon as it is out (one at a time in memory).
pub(crate) fn flatten(
    bytes: &[u8],
    budget: &Budget,
    keep: &dyn Fn(&str) -> bool,
    visit: &mut dyn FnMut(File),
) -> Result<(Skipped, Vec<Anomaly>), Error> {
    let plan = plan(bytes, budget, keep)?;
    for planned in &plan.kept {
        visit(extract(bytes, budget, planned)?);
    }
    Ok((plan.skipped, plan.anomalies))
}

/// The files of a zip to decompress, in central-directory order, after
/// every check that needs no decompression.
pub(crate) struct Plan {
    pub(crate) kept: Vec<Planned>,
    pub(crate) skipped: Skipped,
    pub(crate) anomalies: Vec<Anomaly>,
}

/// One file to extract.
pub(crate) struct Planned {
    pub(crate) path: String,
    pub(crate) aliases: Vec<String>,
    pub(crate) entry: OwnedZipFileEntry,
}

/// Where the end of central directory record is, found as CPython finds
/// it: at the very end, else the last signature within a maximal comment
/// of the end.
pub(crate) fn end_record(bytes: &[u8]) -> Option<usize> {
    let tail = bytes.len().checked_sub(END_RECORD_LEN)?;
    if bytes[tail..].starts_with(END_SIGNATURE) && bytes[bytes.len() - 2..] == [0, 0] {
        return Some(tail);
    }
    let from = tail.saturating_sub(usize::from(u16::MAX));
    let found = bytes[from..].windows(4).rposition(|w| w == END_SIGNATURE)? + from;
    (found + END_RECORD_LEN <= bytes.len()).then_some(found)
}

/// Where CPython's `zipfile` reads the central directory: start and size,
/// and the bytes before the archive proper (`concat`, a self-extractor
/// stub when offsets are relative to the zip).
struct Directory {
    start: i128,
    size: u64,
    concat: i128,
}

/// The central directory as CPython finds it: from the end record, or the
/// ZIP64 record right before it whenever a ZIP64 locator is there.
fn cpython_directory(bytes: &[u8]) -> Option<Directory> {
    const LOCATOR_LEN: usize = 20;
    const ZIP64_RECORD_LEN: usize = 56;
    let end = end_record(bytes)?;
    let mut size = u64::from(u32_at(bytes, end + 12));
    let mut offset = u64::from(u32_at(bytes, end + 16));
    let mut concat = end as i128 - i128::from(size) - i128::from(offset);
    let zip64 = end.checked_sub(LOCATOR_LEN + ZIP64_RECORD_LEN).filter(|&record| {
        bytes[end - LOCATOR_LEN..].starts_with(b"PK\x06\x07") && bytes[record..].starts_with(b"PK\x06\x06")
    });
    if let Some(record) = zip64 {
        let u64_at = |at: usize| {
            bytes.get(at..at + 8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
        };
        size = u64_at(record + 40);
        offset = u64_at(record + 48);
        concat =
            end as i128 - i128::from(size) - i128::from(offset) - (LOCATOR_LEN + ZIP64_RECORD_LEN) as i128;
    }
    Some(Directory { start: i128::from(offset) + concat, size, concat })
}

/// Whether bytes that hold another format are a zip to CPython too: an
/// end record whose central directory starts with a central header (an
/// empty one counts when it is the whole of what the end record
/// describes). A stray end-record signature in compressed data is not.
pub(crate) fn is_zip_too(bytes: &[u8]) -> bool {
    let Some(directory) = cpython_directory(bytes) else { return false };
    let Ok(start) = usize::try_from(directory.start) else { return false };
    if directory.size == 0 {
        return false;
    }
    bytes.get(start..).is_some_and(|rest| rest.starts_with(b"PK\x01\x02"))
}

/// Refuses an archive whose central directory, as listed, is not the one
/// CPython reads (a second directory, an entry count that hides entries,
/// a ZIP64 record only one reader follows).
fn check_directory(bytes: &[u8], entries: &[(String, Entry)]) -> Result<(), Error> {
    let Some(directory) = cpython_directory(bytes) else { return Ok(()) };
    let listed_start = entries.first().map(|(_, e)| i128::from(e.central_header_start()));
    let listed_end = entries.last().and_then(|(_, e)| {
        let start = e.central_header_start();
        let header = slice(bytes, start, CENTRAL_HEADER_LEN)?;
        let lengths =
            u64::from(u16_at(header, 28)) + u64::from(u16_at(header, 30)) + u64::from(u16_at(header, 32));
        Some(i128::from(start + CENTRAL_HEADER_LEN + lengths))
    });
    let expected_end = directory.start + i128::from(directory.size);
    let agrees = match (listed_start, listed_end) {
        (Some(start), Some(end)) => start == directory.start && end == expected_end,
        _ => directory.size == 0,
    };
    if agrees {
        return Ok(());
    }
    Err(Error::Corrupt {
        format: FORMAT,
        path: None,
        message: format!(
            "the central directory Python reads ({} bytes at offset {}) is not the one listed",
            directory.size, directory.start
        ),
    })
}

/// Lists and checks the archive; decompresses nothing.
pub(crate) fn plan(bytes: &[u8], budget: &Budget, keep: &dyn Fn(&str) -> bool) -> Result<Plan, Error> {
    let mut anomalies = Vec::new();
    let concat = cpython_directory(bytes).map_or(0, |d| d.concat);
    if concat != 0 || !bytes.starts_with(LOCAL_SIGNATURE) && !bytes.starts_with(END_SIGNATURE) {
        anomalies.push(Anomaly { kind: AnomalyKind::PrefixedArchive, path: None });
    }
    let mut archive =
        ZipIterable::try_new(Cursor::new(bytes), Config::default()).map_err(|e| zip_error(e, None))?;
    let mut skipped = Skipped::default();
    if archive.is_empty() {
        check_empty(bytes)?;
        return Ok(Plan { kept: Vec::new(), skipped, anomalies });
    }

    // The central directory only.
    let mut entries: Vec<(String, Entry)> = Vec::new();
    let listing = archive.files().map_err(|e| zip_error(e, None))?;
    for entry in listing {
        let last = entries.last().map(|(path, _)| path.as_str());
        let entry = entry.map_err(|e| zip_error(e, last))?;
        let path = names::readable(entry.name_raw());
        budget.count_entry(&path)?;
        entries.push((path, entry));
    }
    check_directory(bytes, &entries)?;
    check_layout(bytes, &entries)?;

    let mut kept = Vec::new();
    for (_, entry) in entries {
        let mut names = entry_names(bytes, &entry, &mut anomalies);
        if names.iter().all(|name| name.ends_with('/')) {
            skipped.directories += 1;
            continue;
        }
        names.retain(|name| !name.ends_with('/'));
        let path = names.remove(0);
        if !names.is_empty() {
            anomalies.push(Anomaly { kind: AnomalyKind::ConflictingNames, path: Some(path.clone()) });
        }
        if entry.unix_mode().is_some_and(|mode| !matches!(mode & S_IFMT, 0 | S_IFREG | S_IFDIR)) {
            anomalies.push(Anomaly { kind: AnomalyKind::SpecialMode, path: Some(path.clone()) });
        }
        // Refused even when filtered out: encryption is known without
        // decompressing, and an encrypted file is never clean.
        if entry.encrypted() {
            return Err(Error::Encrypted { format: FORMAT, path });
        }
        if !keep(&path) && !names.iter().any(|name| keep(name)) {
            skipped.filtered += 1;
            continue;
        }
        let method = entry.compression();
        if !matches!(method, CompressionMethod::Stored | CompressionMethod::Deflated) {
            return Err(Error::UnsupportedFeature {
                format: FORMAT,
                path: Some(path),
                message: format!("compression method {method}"),
            });
        }
        kept.push(Planned { path, aliases: names, entry: OwnedZipFileEntry::from(entry) });
    }
    Ok(Plan { kept, skipped, anomalies })
}

/// Every name readers give an entry, CPython 3.12's first: the stored name
/// cut at its first NUL, and the Unicode Path field's name (used by 3.12
/// when its version is 1 and its CRC matches the stored name, ignored by
/// 3.11, applied by other readers regardless).
fn entry_names(bytes: &[u8], entry: &Entry, anomalies: &mut Vec<Anomaly>) -> Vec<String> {
    // The central header's bytes: the `zip` crate's raw name already has
    // a Unicode Path field applied.
    let raw = central_name(bytes, entry).unwrap_or(entry.name_raw());
    let cut = names::nts(raw);
    let stored = names::readable(cut);
    if cut.len() < raw.len() {
        anomalies.push(Anomaly { kind: AnomalyKind::NameWithNul, path: Some(stored.clone()) });
    }
    let mut names = vec![stored];
    // CPython 3.12 takes the last field of version 1 whose CRC matches.
    let mut primary = None;
    for (version, crc, unicode) in unicode_paths(bytes, entry) {
        let unicode = names::readable(names::nts(unicode));
        if unicode.is_empty() {
            continue;
        }
        if version == 1 && crc == libdeflater::crc32(raw) {
            primary = Some(unicode.clone());
        }
        if !names.contains(&unicode) {
            names.push(unicode);
        }
    }
    if let Some(primary) = primary {
        let at = names.iter().position(|name| *name == primary).unwrap_or(0);
        let primary = names.remove(at);
        names.insert(0, primary);
    }
    names
}

/// The name as stored in an entry's central header.
fn central_name<'b>(bytes: &'b [u8], entry: &Entry) -> Option<&'b [u8]> {
    let start = entry.central_header_start();
    let header = slice(bytes, start, CENTRAL_HEADER_LEN)?;
    slice(bytes, start + CENTRAL_HEADER_LEN, u64::from(u16_at(header, 28)))
}

/// The Unicode Path extra fields of an entry's central header: version,
/// name CRC and UTF-8 name of each.
fn unicode_paths<'b>(bytes: &'b [u8], entry: &Entry) -> Vec<(u8, u32, &'b [u8])> {
    let mut fields = Vec::new();
    let start = entry.central_header_start();
    let Some(header) = slice(bytes, start, CENTRAL_HEADER_LEN) else { return fields };
    let name_len = u64::from(u16_at(header, 28));
    let extra_len = u64::from(u16_at(header, 30));
    let Some(mut extra) = slice(bytes, start + CENTRAL_HEADER_LEN + name_len, extra_len) else {
        return fields;
    };
    while extra.len() >= 4 {
        let (id, len) = (u16_at(extra, 0), usize::from(u16_at(extra, 2)));
        let Some(data) = extra.get(4..4 + len) else { break };
        if id == UNICODE_PATH && data.len() >= 5 {
            fields.push((data[0], u32::from_le_bytes([data[1], data[2], data[3], data[4]]), &data[5..]));
        }
        extra = &extra[4 + len..];
    }
    fields
}

/// How a planned file is stored: whether deflated, its declared CRC-32 and
/// size, and its stored bytes (`None` when they are not there).
pub(crate) fn stored<'a>(bytes: &'a [u8], entry: &OwnedZipFileEntry) -> Option<(bool, u32, u64, &'a [u8])> {
    let data = slice(bytes, data_start(bytes, entry.header_start())?, entry.compressed_size())?;
    Some((entry.compression() == CompressionMethod::Deflated, entry.crc32(), entry.size(), data))
}

/// Decompresses one planned file within the limits.
pub(crate) fn extract(
    bytes: &[u8],
    budget: &Budget,
    Planned { path, aliases, entry }: &Planned,
) -> Result<File, Error> {
    if let Some(data) = inflate_whole(bytes, budget, entry) {
        return Ok(File { path: path.clone(), aliases: aliases.clone(), data });
    }
    let mut body = Cursor::new(bytes);
    let size_hint = entry.size();
    let mut reader =
        entry.as_ref().with_reader(&mut body, ZipReadOptions::new()).map_err(|e| zip_error(e, Some(path)))?;
    let data = budget.read_file(&mut reader, size_hint, FORMAT, path)?;
    Ok(File { path: path.clone(), aliases: aliases.clone(), data })
}

/// The fast path for a deflated entry: one libdeflate call into a buffer of
/// the declared size, claimed from the budget first. `None`, with nothing
/// claimed, when the entry is not such a case, the size would cross a
/// limit, or the data does not inflate to exactly the declared size and
/// CRC: the streaming reader then extracts it and reports what is wrong.
fn inflate_whole(bytes: &[u8], budget: &Budget, entry: &OwnedZipFileEntry) -> Option<Vec<u8>> {
    if entry.compression() != CompressionMethod::Deflated {
        return None;
    }
    let size = entry.size();
    let compressed = slice(bytes, data_start(bytes, entry.header_start())?, entry.compressed_size())?;
    let len = usize::try_from(size).ok().filter(|&len| len > 0)?;
    if !budget.claim(size) {
        return None;
    }
    let mut data = vec![0u8; len];
    let inflated = DECOMPRESSOR.with_borrow_mut(|d| d.deflate_decompress(compressed, &mut data));
    if inflated.ok() == Some(len) && libdeflater::crc32(&data) == entry.crc32() {
        return Some(data);
    }
    budget.unclaim(size);
    None
}

thread_local! {
    /// libdeflate's decompressor state, reused by this thread's entries.
    static DECOMPRESSOR: RefCell<libdeflater::Decompressor> = RefCell::new(libdeflater::Decompressor::new());
}

/// Where an entry's data starts: after its local header, name and extra
/// field. `None` when the header is not there.
fn data_start(bytes: &[u8], header_start: u64) -> Option<u64> {
    let local = slice(bytes, header_start, LOCAL_HEADER_LEN).filter(|l| l.starts_with(LOCAL_SIGNATURE))?;
    Some(header_start + LOCAL_HEADER_LEN + u64::from(u16_at(local, 26)) + u64::from(u16_at(local, 28)))
}

/// An archive without entries must be nothing but its end record, or it
/// hides content a streaming extractor would find.
fn check_empty(bytes: &[u8]) -> Result<(), Error> {
    let clean = bytes.len() >= END_RECORD_LEN
        && bytes.starts_with(END_SIGNATURE)
        && END_RECORD_LEN + usize::from(u16_at(bytes, 20)) == bytes.len();
    if clean {
        return Ok(());
    }
    Err(Error::Corrupt {
        format: FORMAT,
        path: None,
        message: format!(
            "the central directory lists no entries, yet the archive holds {} bytes besides its end record",
            bytes.len().saturating_sub(END_RECORD_LEN)
        ),
    })
}

/// The byte range of one entry: local header and compressed data.
struct Span {
    start: u64,
    end: u64,
    index: usize,
}

fn check_layout(bytes: &[u8], entries: &[(String, Entry)]) -> Result<(), Error> {
    let corrupt = |index: usize, message: String| Error::Corrupt {
        format: FORMAT,
        path: Some(entries[index].0.clone()),
        message,
    };

    // Where each entry's bytes are; overlaps are reported before any
    // disagreement between headers, as they are the more telling sign.
    let mut spans = Vec::with_capacity(entries.len());
    let mut directory_start = u64::MAX;
    for (index, (_, entry)) in entries.iter().enumerate() {
        directory_start = directory_start.min(entry.central_header_start());
        let start = entry.header_start();
        let end = data_start(bytes, start)
            .ok_or_else(|| corrupt(index, format!("no local file header at offset {start}")))?
            .checked_add(entry.compressed_size())
            .filter(|end| *end <= bytes.len() as u64)
            .ok_or_else(|| corrupt(index, "entry data runs past the end of the archive".into()))?;
        spans.push(Span { start, end, index });
    }
    spans.sort_unstable_by_key(|span| (span.start, span.end));
    for pair in spans.windows(2) {
        if pair[0].end > pair[1].start {
            let message = format!("entry overlaps entry `{}`", entries[pair[0].index].0);
            return Err(corrupt(pair[1].index, message));
        }
    }
    if let Some(last) = spans.last()
        && last.end > directory_start
    {
        return Err(corrupt(last.index, "entry overlaps the central directory".into()));
    }

    // Bytes between entries: data descriptors are fine, a local file header
    // is content that only streaming extractors would show.
    let mut cursor = 0;
    for span in &spans {
        find_unlisted_header(bytes, cursor, span.start)?;
        cursor = cursor.max(span.end);
    }
    find_unlisted_header(bytes, cursor, directory_start)?;

    // Local and central headers must describe the same entry.
    for (index, (_, entry)) in entries.iter().enumerate() {
        let truncated = || corrupt(index, "header past the end of the archive".into());
        let central_start = entry.central_header_start();
        let central = slice(bytes, central_start, CENTRAL_HEADER_LEN).ok_or_else(truncated)?;
        let central_name = central_name(bytes, entry).ok_or_else(truncated)?;
        let start = entry.header_start();
        let local = slice(bytes, start, LOCAL_HEADER_LEN).ok_or_else(truncated)?;
        let local_name =
            slice(bytes, start + LOCAL_HEADER_LEN, u64::from(u16_at(local, 26))).ok_or_else(truncated)?;
        if local_name != central_name {
            let message = format!("local file header names it `{}`", names::readable(local_name));
            return Err(corrupt(index, message));
        }
        if u16_at(local, 8) != u16_at(central, 10) {
            let message = "local file header and central directory disagree on the compression method";
            return Err(corrupt(index, message.into()));
        }
        if (u16_at(local, 6) ^ u16_at(central, 8)) & 1 != 0 {
            let message = "local file header and central directory disagree on encryption";
            return Err(corrupt(index, message.into()));
        }
    }
    Ok(())
}

fn find_unlisted_header(bytes: &[u8], from: u64, to: u64) -> Result<(), Error> {
    let Some(gap) =
        usize::try_from(from).ok().zip(usize::try_from(to).ok()).and_then(|(from, to)| bytes.get(from..to))
    else {
        return Ok(());
    };
    match gap.windows(4).position(|window| window == LOCAL_SIGNATURE) {
        Some(offset) => Err(Error::Corrupt {
            format: FORMAT,
            path: None,
            message: format!(
                "local file header at offset {} is not listed in the central directory",
                from + offset as u64
            ),
        }),
        None => Ok(()),
    }
}

fn slice(bytes: &[u8], start: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(start).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    bytes.get(start..end)
}

/// Little-endian u32 at `offset`, 0 past the end.
fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    match bytes.get(offset..offset + 4) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// Little-endian u16 at `offset`; callers pass slices long enough for it.
fn u16_at(bytes: &[u8], offset: usize) -> u16 {
    match bytes.get(offset..offset + 2) {
        Some(&[lo, hi]) => u16::from_le_bytes([lo, hi]),
        _ => 0,
    }
}

fn zip_error(err: ZipError, path: Option<&str>) -> Error {
    let path = path.map(str::to_owned);
    match err {
        ZipError::UnsupportedArchive(ZipError::PASSWORD_REQUIRED) | ZipError::InvalidPassword => {
            Error::Encrypted { format: FORMAT, path: path.unwrap_or_default() }
        }
        ZipError::UnsupportedArchive(message) => {
            Error::UnsupportedFeature { format: FORMAT, path, message: message.to_owned() }
        }
        ZipError::CompressionMethodNotSupported(method) => Error::UnsupportedFeature {
            format: FORMAT,
            path,
            message: format!("compression method {method}"),
        },
        other => Error::Corrupt { format: FORMAT, path, message: other.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::Limits;

    fn deflated_zip(data: &[u8]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options =
            zip::write::SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
        zip.start_file("pkg/mod.py", options).unwrap();
        zip.write_all(data).unwrap();
        zip.finish().unwrap().into_inner()
    }

    fn patch_central_u32(bytes: &mut [u8], offset: usize, value: u32) {
        let central = bytes.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        bytes[central + offset..central + offset + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// Runs the fast path on the only entry of `bytes`.
    fn fast(bytes: &[u8], limits: &Limits) -> Option<Vec<u8>> {
        let budget = Budget::new(limits, bytes.len() as u64);
        let plan = plan(bytes, &budget, &|_| true).unwrap();
        inflate_whole(bytes, &budget, &plan.kept[0].entry)
    }

    #[test]
    fn whole_inflate_takes_entries_that_are_what_they_declare() {
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let bytes = deflated_zip(&data);
        assert_eq!(fast(&bytes, &Limits::default()).unwrap(), data);

        // Any disagreement leaves the entry to the streaming reader.
        let mut shorter = bytes.clone();
        patch_central_u32(&mut shorter, 24, data.len() as u32 - 1);
        assert!(fast(&shorter, &Limits::default()).is_none(), "declared size too small");
        let mut longer = bytes.clone();
        patch_central_u32(&mut longer, 24, data.len() as u32 + 1);
        assert!(fast(&longer, &Limits::default()).is_none(), "declared size too large");
        let mut bad_crc = bytes.clone();
        patch_central_u32(&mut bad_crc, 16, 0xdead_beef);
        assert!(fast(&bad_crc, &Limits::default()).is_none(), "CRC mismatch");
        // A declined entry gives its claim back: with a total limit of
        // exactly its size, the whole size can be claimed again.
        let exact = Limits { max_total_bytes: data.len() as u64, ..Limits::default() };
        let budget = Budget::new(&exact, bad_crc.len() as u64);
        let plan = plan(&bad_crc, &budget, &|_| true).unwrap();
        assert!(inflate_whole(&bad_crc, &budget, &plan.kept[0].entry).is_none());
        assert!(budget.claim(data.len() as u64));
        let budget = Budget::new(&Limits::default(), bad_crc.len() as u64);
        let err = extract(&bad_crc, &budget, &plan.kept[0]).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");

        // A declared size over a limit is never allocated.
        let small = Limits { max_file_bytes: data.len() as u64 - 1, ..Limits::default() };
        assert!(fast(&bytes, &small).is_none());
    }

    #[test]
    fn claims_share_the_total_limit_across_threads() {
        let limits = Limits { max_total_bytes: 1000, max_file_bytes: 600, ..Limits::default() };
        let budget = Budget::new(&limits, 1 << 20);
        assert!(!budget.claim(601), "over the per-file limit");
        assert!(budget.claim(600));
        assert!(!budget.claim(401), "over what is left of the total");
        assert!(budget.claim(400));
        budget.unclaim(600);
        assert!(budget.claim(600), "an unclaimed claim is room again");
    }
}
