//! Limit accounting on bytes actually produced.
//!
//! Readers never ask for more than one byte beyond what the limits allow, so
//! a limit is reported right after it is crossed and no buffer grows past it.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::{Error, Format, LimitKind, Limits, RATIO_FLOOR_BYTES, XZ_MEMORY_LIMIT_BYTES};

/// Largest first reservation made from a size the archive declares.
const FIRST_RESERVE_MAX: u64 = 8 << 20;
/// How much spare capacity is zeroed ahead of the reader at a time.
const ZERO_STEP: usize = 256 << 10;
/// Growth step once a file outgrows its first reservation.
const MIN_GROWTH: usize = 64 << 10;

/// The running counts of one flatten call. Shared by every thread that
/// extracts files of one archive: counts are atomic, so a limit holds across
/// them (each thread may read at most one buffer past it).
pub(crate) struct Budget {
    limits: Limits,
    /// Cap on produced bytes: the total limit or the ratio cap, whichever is smaller.
    total_cap: u64,
    total_kind: LimitKind,
    /// Bytes of file data produced.
    file_bytes: AtomicU64,
    /// Bytes of decompressed tar stream produced.
    stream_bytes: AtomicU64,
    entries: AtomicU64,
    /// Set when [`StreamCounter`] refused to read on; tar hands us back only
    /// an `io::Error`, so this is how that error is recognised.
    stream_tripped: AtomicBool,
}

impl Budget {
    pub(crate) fn new(limits: &Limits, input_len: u64) -> Self {
        let ratio_cap = input_len.saturating_mul(limits.max_ratio).max(RATIO_FLOOR_BYTES);
        let (total_cap, total_kind) = if ratio_cap < limits.max_total_bytes {
            (ratio_cap, LimitKind::Ratio)
        } else {
            (limits.max_total_bytes, LimitKind::TotalBytes)
        };
        Self {
            limits: limits.clone(),
            total_cap,
            total_kind,
            file_bytes: AtomicU64::new(0),
            stream_bytes: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            stream_tripped: AtomicBool::new(false),
        }
    }

    fn limit_error(&self, kind: LimitKind, path: Option<&str>) -> Error {
        let limit = match kind {
            LimitKind::TotalBytes => self.limits.max_total_bytes,
            LimitKind::FileBytes => self.limits.max_file_bytes,
            LimitKind::Entries => self.limits.max_entries,
            LimitKind::Ratio => self.limits.max_ratio,
            LimitKind::HeaderBytes => self.limits.max_header_bytes,
        };
        Error::LimitExceeded { kind, limit, path: path.map(str::to_owned) }
    }

    /// Counts one archive entry of any kind.
    pub(crate) fn count_entry(&self, path: &str) -> Result<(), Error> {
        let entries = self.entries.fetch_add(1, Relaxed) + 1;
        if entries > self.limits.max_entries {
            return Err(self.limit_error(LimitKind::Entries, Some(path)));
        }
        Ok(())
    }

    /// Maps an I/O error met while reading `format`, recognising limit hits
    /// of the [`StreamCounter`].
    pub(crate) fn io_error(&self, err: io::Error, format: Format, path: Option<&str>) -> Error {
        if self.stream_tripped.load(Relaxed) {
            return self.limit_error(self.total_kind, path);
        }
        let path = path.map(str::to_owned);
        if err.kind() == io::ErrorKind::OutOfMemory {
            // The xz decoder refuses dictionaries above its memory limit.
            return Error::UnsupportedFeature {
                format,
                path,
                message: format!(
                    "stream needs more than {} MiB of memory to decompress",
                    XZ_MEMORY_LIMIT_BYTES >> 20
                ),
            };
        }
        Error::Corrupt { format, path, message: err.to_string() }
    }

    /// The largest tar extension header allowed.
    pub(crate) fn header_limit(&self) -> u64 {
        self.limits.max_header_bytes
    }

    /// Bytes of decompressed tar stream read so far.
    pub(crate) fn stream_bytes(&self) -> u64 {
        self.stream_bytes.load(Relaxed)
    }

    /// Bytes a file of `len` bytes may still grow without crossing a limit.
    fn file_room(&self, len: u64) -> u64 {
        let file_room = self.limits.max_file_bytes.saturating_sub(len);
        let total_room = self.total_cap.saturating_sub(self.file_bytes.load(Relaxed));
        file_room.min(total_room)
    }

    /// Accounts `n` new bytes of a file that had `len` bytes.
    fn produce(&self, len: u64, n: usize, path: &str) -> Result<(), Error> {
        let n = n as u64;
        if len.saturating_add(n) > self.limits.max_file_bytes {
            return Err(self.limit_error(LimitKind::FileBytes, Some(path)));
        }
        let total = self.file_bytes.fetch_add(n, Relaxed).saturating_add(n);
        if total > self.total_cap {
            return Err(self.limit_error(self.total_kind, Some(path)));
        }
        Ok(())
    }

    /// Claims `n` bytes of one file before they are produced at once, so
    /// that threads extracting in parallel never hold more than the limits
    /// allow. False, with nothing claimed, when `n` would cross a limit.
    pub(crate) fn claim(&self, n: u64) -> bool {
        n <= self.limits.max_file_bytes
            && self
                .file_bytes
                .fetch_update(Relaxed, Relaxed, |used| used.checked_add(n).filter(|&t| t <= self.total_cap))
                .is_ok()
    }

    /// Claims `n` bytes of file `path` before they are produced, or says
    /// which limit they would cross.
    pub(crate) fn charge(&self, n: u64, path: &str) -> Result<(), Error> {
        if n > self.limits.max_file_bytes {
            return Err(self.limit_error(LimitKind::FileBytes, Some(path)));
        }
        if !self.claim(n) {
            return Err(self.limit_error(self.total_kind, Some(path)));
        }
        Ok(())
    }

    /// Gives back a [`Budget::claim`] whose bytes were not produced.
    pub(crate) fn unclaim(&self, n: u64) {
        self.file_bytes.fetch_sub(n, Relaxed);
    }

    /// Reads one file to its end within the limits. `size_hint` is the size
    /// the archive declares: only a hint for the first allocation, capped by
    /// the limits and by [`FIRST_RESERVE_MAX`].
    pub(crate) fn read_file(
        &self,
        reader: &mut dyn Read,
        size_hint: u64,
        format: Format,
        path: &str,
    ) -> Result<Vec<u8>, Error> {
        let mut data: Vec<u8> = Vec::new();
        // Bytes produced; `data[len..]` is zeroed room for the reader.
        let mut len = 0usize;
        let first = size_hint.min(self.file_room(0).saturating_add(1)).min(FIRST_RESERVE_MAX);
        data.reserve_exact(to_usize(first));
        loop {
            // One byte more than allowed is enough to see a limit crossed.
            let want = to_usize(self.file_room(len as u64).saturating_add(1));
            if len == data.len() {
                if len == data.capacity() {
                    // Most files end exactly at their declared size: probe for
                    // the end before growing the buffer.
                    let mut probe = [0u8; 64];
                    let max = want.min(probe.len());
                    let n = read_some(reader, &mut probe[..max])
                        .map_err(|e| self.io_error(e, format, Some(path)))?;
                    if n == 0 {
                        break;
                    }
                    self.produce(len as u64, n, path)?;
                    let grow = data.capacity().max(MIN_GROWTH).min(want).max(n);
                    data.reserve_exact(grow);
                    data.extend_from_slice(&probe[..n]);
                    len += n;
                    continue;
                }
                let end = data.capacity().min(len.saturating_add(ZERO_STEP));
                data.resize(end, 0);
            }
            let end = data.len().min(len.saturating_add(want));
            let n =
                read_some(reader, &mut data[len..end]).map_err(|e| self.io_error(e, format, Some(path)))?;
            if n == 0 {
                break;
            }
            self.produce(len as u64, n, path)?;
            len += n;
        }
        data.truncate(len);
        if data.capacity() - len > len / 8 + 4096 {
            data.shrink_to_fit();
        }
        Ok(data)
    }
}

/// Counts the decompressed bytes of a tar stream against the total cap.
pub(crate) struct StreamCounter<'b, R> {
    inner: R,
    budget: &'b Budget,
}

impl<'b, R> StreamCounter<'b, R> {
    pub(crate) fn new(inner: R, budget: &'b Budget) -> Self {
        Self { inner, budget }
    }

    pub(crate) fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for StreamCounter<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let budget = self.budget;
        if budget.stream_tripped.load(Relaxed) {
            return Err(io::Error::other("limit crossed"));
        }
        let so_far = budget.stream_bytes.load(Relaxed);
        let room = budget.total_cap.saturating_sub(so_far).saturating_add(1);
        let max = buf.len().min(to_usize(room));
        let n = self.inner.read(&mut buf[..max])?;
        let total = budget.stream_bytes.fetch_add(n as u64, Relaxed).saturating_add(n as u64);
        if total > budget.total_cap {
            budget.stream_tripped.store(true, Relaxed);
            return Err(io::Error::other("limit crossed"));
        }
        Ok(n)
    }
}

fn read_some(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            res => return res,
        }
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts how many bytes were pulled from an endless source.
    struct Endless {
        pulled: u64,
    }

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(b'z');
            self.pulled += buf.len() as u64;
            Ok(buf.len())
        }
    }

    fn limits(file: u64, total: u64) -> Limits {
        Limits {
            max_total_bytes: total,
            max_file_bytes: file,
            max_entries: 10,
            max_ratio: u64::MAX,
            ..Limits::default()
        }
    }

    #[test]
    fn file_read_stops_one_byte_past_the_file_limit() {
        let budget = Budget::new(&limits(100_000, 1 << 30), 10);
        let mut source = Endless { pulled: 0 };
        let err = budget.read_file(&mut source, u64::MAX, Format::Zip, "big").unwrap_err();
        assert!(matches!(
            err,
            Error::LimitExceeded { kind: LimitKind::FileBytes, limit: 100_000, path: Some(ref p) } if p == "big"
        ));
        assert_eq!(source.pulled, 100_001);
    }

    #[test]
    fn file_read_stops_one_byte_past_the_total_limit() {
        let budget = Budget::new(&limits(1 << 30, 5000), 10);
        let first = budget.read_file(&mut &[7u8; 3000][..], 3000, Format::Zip, "a").unwrap();
        assert_eq!(first.len(), 3000);
        let mut source = Endless { pulled: 0 };
        let err = budget.read_file(&mut source, 0, Format::Zip, "b").unwrap_err();
        assert!(matches!(err, Error::LimitExceeded { kind: LimitKind::TotalBytes, limit: 5000, .. }));
        assert_eq!(source.pulled, 2001);
    }

    #[test]
    fn file_read_ignores_lying_size_hints() {
        let budget = Budget::new(&Limits::default(), 1 << 20);
        let data = budget.read_file(&mut &b"short"[..], u64::MAX, Format::Tar, "a").unwrap();
        assert_eq!(data, b"short");
        assert!(data.capacity() < 8192);
        let long = vec![1u8; 300_000];
        let data = budget.read_file(&mut &long[..], 3, Format::Tar, "b").unwrap();
        assert_eq!(data, long);
    }

    #[test]
    fn file_exactly_at_the_limit_is_fine() {
        let budget = Budget::new(&limits(1000, 1 << 30), 10);
        let data = budget.read_file(&mut &[1u8; 1000][..], 0, Format::Zip, "a").unwrap();
        assert_eq!(data.len(), 1000);
    }

    #[test]
    fn ratio_cap_applies_above_the_floor_only() {
        let limits = Limits { max_ratio: 10, ..Limits::default() };
        // 10 input bytes: the cap is the 1 MiB floor.
        let budget = Budget::new(&limits, 10);
        assert_eq!(budget.total_cap, RATIO_FLOOR_BYTES);
        assert_eq!(budget.total_kind, LimitKind::Ratio);
        // 1 MiB input: 10 MiB.
        let budget = Budget::new(&limits, 1 << 20);
        assert_eq!(budget.total_cap, 10 << 20);
        // 100 MiB input: the total limit is smaller.
        let budget = Budget::new(&limits, 100 << 20);
        assert_eq!(budget.total_kind, LimitKind::TotalBytes);
    }

    #[test]
    fn stream_counter_stops_one_byte_past_the_cap() {
        let budget = Budget::new(&limits(1 << 30, 5000), 1 << 30);
        let mut counter = StreamCounter::new(Endless { pulled: 0 }, &budget);
        let mut sink = Vec::new();
        let err = io::copy(&mut counter, &mut sink).unwrap_err();
        assert!(sink.len() <= 5000);
        assert_eq!(counter.inner.pulled, 5001);
        assert!(matches!(
            budget.io_error(err, Format::TarGz, Some("x")),
            Error::LimitExceeded { kind: LimitKind::TotalBytes, .. }
        ));
    }

    #[test]
    fn entries_are_counted() {
        let budget = Budget::new(&limits(1, 1), 1);
        for i in 0..10 {
            budget.count_entry(&i.to_string()).unwrap();
        }
        assert!(matches!(
            budget.count_entry("last"),
            Err(Error::LimitExceeded { kind: LimitKind::Entries, limit: 10, path: Some(ref p) }) if p == "last"
        ));
    }
}
