//! The scanning engine: archive bytes or a directory -> files -> matches.

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dragonfly_flatten::{File, Format, LimitKind, Limits, ZipFiles};
use rayon::prelude::*;

use crate::evidence;
use crate::plan::GroupId;
use crate::report::{
    DistributionError, DistributionReport, FileError, FileReport, RuleMatch, StopReason, UnscannedFile,
};
use crate::reuse::{Count, Raw, ReuseCache, ReuseMode, Tally};
use crate::rules::RuleSet;
use crate::shared::{self, SHARED_BATCH_BYTES, SHARED_BATCH_FILES, SharedEntry, SharedError, SharedResults};

/// Default per-file scan timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Below this many bytes, a distribution's files are scanned on the calling
/// thread: fanning out costs more than it saves.
const PARALLEL_MIN_BYTES: u64 = 1 << 20;

/// Scans distributions with one compiled [`RuleSet`].
///
/// Cheap to clone. Each thread that scans keeps one reusable yara-x scanner
/// per rule group of the rule set (created on first use), never one per
/// file.
#[derive(Debug, Clone)]
pub struct Engine {
    rules: Arc<RuleSet>,
    limits: Limits,
    timeout: Duration,
    deadline: Option<Instant>,
    on_file: Option<FileObserver>,
    reuse: Option<Arc<ReuseCache>>,
    shared: Option<Arc<dyn SharedResults>>,
}

/// Told of each file once it is scanned, with its size in bytes; called
/// from whichever thread scanned it.
#[derive(Clone)]
pub struct FileObserver(Arc<dyn Fn(u64) + Send + Sync>);

impl FileObserver {
    /// An observer that calls `f`.
    pub fn new(f: impl Fn(u64) + Send + Sync + 'static) -> Self {
        FileObserver(Arc::new(f))
    }

    /// Tells of one scanned file of `bytes` bytes.
    pub fn notify(&self, bytes: u64) {
        (self.0)(bytes)
    }
}

impl std::fmt::Debug for FileObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileObserver")
    }
}

impl Engine {
    /// An engine with default limits and a 10 s per-file timeout.
    pub fn new(rules: Arc<RuleSet>) -> Self {
        Engine {
            rules,
            limits: Limits::default(),
            timeout: DEFAULT_TIMEOUT,
            deadline: None,
            on_file: None,
            reuse: None,
            shared: None,
        }
    }

    /// Sets the cache of results by content this engine looks up and fills
    /// (see [`ReuseCache`]). Give each rule set its own: an engine with
    /// other rules makes its own [`Engine::new`] and cache.
    pub fn with_reuse(mut self, cache: Option<Arc<ReuseCache>>) -> Self {
        self.reuse = cache;
        self
    }

    /// Sets where the fleet's nodes share results, for this engine's rules
    /// (see [`SharedResults`]); used only with a [`ReuseCache`] that is
    /// not off. Files whose results are not kept locally are then held
    /// back in batches (at most [`SHARED_BATCH_FILES`] files and about
    /// [`SHARED_BATCH_BYTES`] bytes, or one larger file) and looked up
    /// before they are scanned; what was scanned is offered back once the
    /// distribution is done.
    pub fn with_shared(mut self, shared: Option<Arc<dyn SharedResults>>) -> Self {
        self.shared = shared;
        self
    }

    /// The cache of results by content, if any.
    pub fn reuse(&self) -> Option<&Arc<ReuseCache>> {
        self.reuse.as_ref()
    }

    /// Sets what is told of each scanned file (a progress display).
    pub fn with_file_observer(mut self, observer: Option<FileObserver>) -> Self {
        self.on_file = observer;
        self
    }

    /// Sets a deadline after which no further file is started: the rest of
    /// a distribution is reported as not scanned. A distribution also
    /// stops at its first file that times out, as it is incomplete anyway.
    pub fn with_deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Sets the limits applied when flattening archives and reading
    /// directories.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the per-file scan timeout (yara-x counts whole seconds; values
    /// under one second are rounded up to one).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_secs(1));
        self
    }

    /// The rule set this engine scans with.
    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Flattens one distribution archive in memory and scans its files.
    /// `source` names it in the report (its download URL, or a path).
    /// Never fails: problems are recorded in the report.
    ///
    /// A large zip (a wheel) is decompressed file by file on all threads,
    /// a tar (an sdist) file by file as its stream is read; each file is
    /// scanned as soon as it is out and then dropped, so an archive is never
    /// held uncompressed as a whole.
    pub fn scan_archive(&self, source: &str, bytes: &[u8]) -> DistributionReport {
        self.counted(|tally| self.scan_archive_with(source, bytes, tally))
    }

    /// Runs `scan` with a fresh tally and records what reuse did in the
    /// report. When a kept result was found wrong (reuse is then off for
    /// the rule set) the distribution is scanned again in full.
    fn counted(&self, scan: impl Fn(&Tally) -> DistributionReport) -> DistributionReport {
        let tally = Tally::default();
        let mut report = scan(&tally);
        report.reuse = tally.counts();
        // A mismatch here, or one elsewhere that turned reuse off while
        // this distribution took kept results: scan it again in full.
        let trusted_hits = report.reuse.reused_files > 0
            && self.reuse.as_ref().is_some_and(|c| c.mode() == ReuseMode::Reuse && c.is_disabled());
        if report.reuse.mismatched_files > 0 || trusted_hits {
            let again = Tally::default();
            let mut full = scan(&again);
            // The counts of the pass whose results are reported, and the
            // audits that led to it.
            let first = report.reuse;
            full.reuse = again.counts();
            full.reuse.validated_files += first.validated_files;
            full.reuse.mismatched_files += first.mismatched_files;
            report = full;
        }
        if let Some(shared) = self.shared_active()
            && report.reuse.mismatched_files == 0
        {
            let fresh = std::mem::take(&mut *tally.fresh.lock().unwrap_or_else(|e| e.into_inner()));
            let entries: Vec<SharedEntry> = fresh
                .into_iter()
                .map(|(digest, groups)| SharedEntry {
                    digest: hex(&digest),
                    result: shared::encode(&groups, &self.rules),
                })
                .collect();
            if !entries.is_empty() && shared.write(entries) == Err(SharedError::Failed) {
                report.reuse.errors += 1;
            }
        }
        if let Some(cache) = &self.reuse {
            cache.add_totals(&report.reuse);
            cache.flush();
        }
        report
    }

    /// The shared results, when they are to be used: set, with a cache in
    /// use, and rules whose results can be kept.
    fn shared_active(&self) -> Option<&dyn SharedResults> {
        let cache = self.reuse.as_deref()?;
        let shared = self.shared.as_deref()?;
        (cache.active() && !self.rules.reads_the_clock() && shared.usable()).then_some(shared)
    }

    /// Looks up in the shared results the files of `batch` (with their
    /// digests) whose results are not kept locally, and keeps what is found.
    fn fetch_shared(&self, batch: &[(&File, [u8; 32])], tally: &Tally) {
        let (Some(shared), Some(cache)) = (self.shared_active(), self.reuse.as_deref()) else { return };
        let started = Instant::now();
        // By digest: the file's size and the groups not kept.
        let mut wanted: Vec<([u8; 32], usize, Vec<GroupId>)> = Vec::new();
        for (file, digest) in batch {
            let size = file.data.len();
            for group in self.groups_of(file) {
                if cache.get(digest, group, &self.rules, size).is_some() {
                    continue;
                }
                match wanted.iter_mut().find(|(d, _, _)| d == digest) {
                    Some((_, _, groups)) if !groups.contains(&group) => groups.push(group),
                    Some(_) => {}
                    None => wanted.push((*digest, size, vec![group])),
                }
            }
        }
        for chunk in wanted.chunks(SHARED_BATCH_FILES) {
            let digests: Vec<String> = chunk.iter().map(|(digest, _, _)| hex(digest)).collect();
            let entries = match shared.lookup(&digests) {
                Ok(entries) => entries,
                Err(SharedError::Failed) => {
                    tally.add(Count::Errors, 1);
                    break;
                }
                Err(SharedError::Skipped) => break,
            };
            for entry in entries {
                let Some(at) = digests.iter().position(|d| *d == entry.digest) else { continue };
                let (digest, size, groups) = &chunk[at];
                let Some(found) = shared::decode(&entry.result, &self.rules, *size) else {
                    log::debug!(
                        "scan reuse: ignoring a shared result for {} that a scan could not give",
                        entry.digest
                    );
                    continue;
                };
                let mut kept = false;
                for (group, raw) in found {
                    if groups.contains(&group) {
                        kept |= cache.keep_shared(*digest, group, Arc::new(raw));
                    }
                }
                tally.add(Count::Shared, u64::from(kept));
            }
        }
        tally.add(Count::OverheadUs, started.elapsed().as_micros() as u64);
    }

    /// The rule groups `file` is scanned with.
    fn groups_of(&self, file: &File) -> Vec<GroupId> {
        self.groups_for(file.names())
    }

    /// The rule groups of a file with these names, one per distinct group.
    fn groups_for<'n>(&self, names: impl Iterator<Item = &'n str>) -> Vec<GroupId> {
        let mut groups: Vec<GroupId> = names.map(|name| self.rules.group_for(name)).collect();
        groups.sort_unstable();
        groups.dedup();
        groups
    }

    fn scan_archive_with(&self, source: &str, bytes: &[u8], tally: &Tally) -> DistributionReport {
        let keep = |path: &str| self.rules.applies_to(path);
        // A large zip is scanned file-parallel; with reuse on, a small one
        // also takes that path (on one thread), where entries stored alike
        // to ones seen before are not decompressed.
        let skips = self.reuse.as_deref().is_some_and(|c| c.active() && c.mode() == ReuseMode::Reuse);
        let zip = (skips || bytes.len() as u64 >= PARALLEL_MIN_BYTES)
            && dragonfly_flatten::detect_format(bytes).is_ok_and(|f| f == Format::Zip);
        if zip {
            return match dragonfly_flatten::zip_files(bytes, &self.limits, &keep) {
                Ok(zip) => self.scan_zip(source, &zip, bytes.len() as u64 >= PARALLEL_MIN_BYTES, tally),
                Err(err) => DistributionReport::failed(source, err),
            };
        }
        // Each file is scanned as soon as it is out and then dropped: an
        // sdist costs its largest file, not its whole expansion.
        // With shared results, files are held back in batches to be looked
        // up first.
        let stop = Stop::new(self.deadline);
        let batching = self.shared_active().is_some();
        let mut out = InOrder::default();
        let mut held: Vec<(usize, File)> = Vec::new();
        let mut held_bytes = 0usize;
        let mut index = 0usize;
        let flattened = dragonfly_flatten::flatten_each(bytes, &self.limits, &keep, &mut |file| {
            index += 1;
            if !batching {
                return self.scan_in_order(index, &file, None, &stop, tally, &mut out);
            }
            held_bytes += file.data.len();
            held.push((index, file));
            if held.len() >= SHARED_BATCH_FILES || held_bytes >= SHARED_BATCH_BYTES {
                self.scan_held(std::mem::take(&mut held), &stop, tally, &mut out);
                held_bytes = 0;
            }
        });
        match flattened {
            Ok(summary) => {
                self.scan_held(held, &stop, tally, &mut out);
                let mut report = DistributionReport {
                    source: source.to_owned(),
                    format: Some(summary.format),
                    files_scanned: out.files,
                    files_skipped: summary.skipped.filtered,
                    bytes_scanned: out.bytes,
                    anomalies: summary.anomalies,
                    ..Default::default()
                };
                report.add_results(out.results.into_iter().chain(stop.result()));
                report
            }
            Err(err) => DistributionReport::failed(source, err),
        }
    }

    /// Scans file `index` of a stream unless the distribution stopped.
    fn scan_in_order(
        &self,
        index: usize,
        file: &File,
        digest: Option<[u8; 32]>,
        stop: &Stop,
        tally: &Tally,
        out: &mut InOrder,
    ) {
        if stop.skip(index, &file.path) {
            return;
        }
        out.files += 1;
        out.bytes += file.data.len() as u64;
        let result = self.scan_file(file, digest, false, tally);
        stop.saw(&result);
        out.results.push(result);
    }

    /// Looks the held files up in the shared results, then scans them in
    /// order.
    fn scan_held(&self, held: Vec<(usize, File)>, stop: &Stop, tally: &Tally, out: &mut InOrder) {
        let digests: Vec<[u8; 32]> = held.iter().map(|(_, file)| sha256(&file.data)).collect();
        let batch: Vec<(&File, [u8; 32])> =
            held.iter().map(|(_, file)| file).zip(digests.iter().copied()).collect();
        self.fetch_shared(&batch, tally);
        for ((index, file), digest) in held.iter().zip(digests) {
            self.scan_in_order(*index, file, Some(digest), stop, tally, out);
        }
    }

    fn scan_zip(
        &self,
        source: &str,
        zip: &ZipFiles<'_>,
        parallel: bool,
        tally: &Tally,
    ) -> DistributionReport {
        // Largest first when parallel, so that one big file does not finish
        // last alone; a small zip in archive order, as a stream gives it.
        let mut order: Vec<usize> = (0..zip.len()).collect();
        if parallel {
            order.sort_by_key(|&i| std::cmp::Reverse(zip.declared_size(i)));
        }
        let stop = Stop::new(self.deadline);
        let scanned: Result<Vec<(usize, Scanned)>, dragonfly_flatten::Error> =
            if self.shared_active().is_none() {
                // One file per task, or all of a small zip in one.
                let split = if parallel { 1 } else { order.len().max(1) };
                order
                    .into_par_iter()
                    .with_min_len(split)
                    .with_max_len(split)
                    .filter(|&i| !stop.skip(i, zip.path(i)))
                    .map(|i| match self.known_member(zip, i, tally)? {
                        Member::Known(done) => Ok(done),
                        Member::Extract { stored, audit } => {
                            let file = zip.extract(i)?;
                            let digest = self.remember_member(stored, &file, audit, tally);
                            self.scan_entry(zip, i, file, (digest, audit.is_some()), &stop, tally)
                        }
                    })
                    .collect()
            } else {
                self.scan_zip_batched(zip, order, parallel, &stop, tally)
            };
        let mut scanned = match scanned {
            Ok(scanned) => scanned,
            Err(err) => return DistributionReport::failed(source, err),
        };
        scanned.sort_by_key(|(i, _)| *i);
        let mut report = DistributionReport {
            source: source.to_owned(),
            format: Some(Format::Zip),
            files_scanned: scanned.iter().map(|(_, s)| s.files).sum(),
            files_skipped: zip.skipped().filtered,
            bytes_scanned: scanned.iter().map(|(_, s)| s.bytes).sum(),
            anomalies: zip.anomalies().to_vec(),
            ..Default::default()
        };
        let mut results = Vec::new();
        for (_, file) in scanned {
            report.anomalies.extend(file.anomalies);
            results.extend(file.results);
        }
        report.add_results(results.into_iter().chain(stop.result()));
        report
    }

    /// Scans a zip's entries in batches held back to be looked up in the
    /// shared results first, each batch extracted and scanned in parallel.
    fn scan_zip_batched(
        &self,
        zip: &ZipFiles<'_>,
        order: Vec<usize>,
        parallel: bool,
        stop: &Stop,
        tally: &Tally,
    ) -> Result<Vec<(usize, Scanned)>, dragonfly_flatten::Error> {
        // One file per task, or all of a batch of a small zip in one.
        let split = |n: usize| if parallel { 1 } else { n.max(1) };
        let mut batches: Vec<Vec<usize>> = Vec::new();
        let mut bytes = 0u64;
        for i in order {
            match batches.last_mut() {
                Some(batch) if batch.len() < SHARED_BATCH_FILES && bytes < SHARED_BATCH_BYTES as u64 => {
                    batch.push(i)
                }
                _ => {
                    batches.push(vec![i]);
                    bytes = 0;
                }
            }
            bytes += zip.declared_size(i);
        }
        let mut all = Vec::with_capacity(zip.len());
        for batch in batches {
            let batch_len = batch.len();
            type Extracted = (usize, File, [u8; 32], bool);
            let out: Vec<Result<(usize, Scanned), Extracted>> = batch
                .into_par_iter()
                .with_min_len(split(batch_len))
                .with_max_len(split(batch_len))
                .filter(|&i| !stop.skip(i, zip.path(i)))
                .map(|i| match self.known_member(zip, i, tally)? {
                    Member::Known(done) => Ok(Ok(done)),
                    Member::Extract { stored, audit } => {
                        let file = zip.extract(i)?;
                        let digest = self
                            .remember_member(stored, &file, audit, tally)
                            .unwrap_or_else(|| sha256(&file.data));
                        Ok(Err((i, file, digest, audit.is_some())))
                    }
                })
                .collect::<Result<_, dragonfly_flatten::Error>>()?;
            let mut files = Vec::with_capacity(out.len());
            for item in out {
                match item {
                    Ok(done) => all.push(done),
                    Err(extracted) => files.push(extracted),
                }
            }
            let wanted: Vec<(&File, [u8; 32])> =
                files.iter().filter(|(i, _, _, _)| zip.wanted(*i)).map(|(_, f, d, _)| (f, *d)).collect();
            self.fetch_shared(&wanted, tally);
            let files_len = files.len();
            let done: Vec<(usize, Scanned)> = files
                .into_par_iter()
                .with_min_len(split(files_len))
                .with_max_len(split(files_len))
                // The stop is checked again: the lookup took time.
                .filter(|(i, _, _, _)| !stop.skip(*i, zip.path(*i)))
                .map(|(i, file, digest, audit)| {
                    self.scan_entry(zip, i, file, (Some(digest), audit), stop, tally)
                })
                .collect::<Result<_, dragonfly_flatten::Error>>()?;
            all.extend(done);
        }
        Ok(all)
    }

    /// Whether zip entry `i` is known without extracting it: stored alike
    /// to an entry extracted before, whose every group's result is kept and
    /// clean for its names (a match needs the bytes, for its evidence).
    /// Only in `reuse` mode; an audit extracts and scans it.
    fn known_member(
        &self,
        zip: &ZipFiles<'_>,
        i: usize,
        tally: &Tally,
    ) -> Result<Member, dragonfly_flatten::Error> {
        let none = Member::Extract { stored: None, audit: None };
        let Some(cache) = self.reuse.as_deref().filter(|c| c.active() && c.mode() == ReuseMode::Reuse) else {
            return Ok(none);
        };
        if self.rules.reads_the_clock() || zip.opens_nested(i) || !zip.wanted(i) {
            return Ok(none);
        }
        let Some(entry) = zip.stored(i) else { return Ok(none) };
        let started = Instant::now();
        let stored = stored_key(&entry);
        let extract = Member::Extract { stored: Some(stored), audit: None };
        let Some((digest, size)) = cache.member(&stored).filter(|&(_, size)| size <= entry.size) else {
            tally.add(Count::OverheadUs, started.elapsed().as_micros() as u64);
            return Ok(extract);
        };
        let names: Vec<&str> =
            std::iter::once(zip.path(i)).chain(zip.aliases(i).iter().map(String::as_str)).collect();
        let groups = self.groups_for(names.iter().copied());
        let len = usize::try_from(size).unwrap_or(usize::MAX);
        let infos = self.rules.rules();
        for &group in &groups {
            let Some(raw) = cache.get(&digest, group, &self.rules, len) else { return Ok(extract) };
            if raw.0.iter().any(|(index, _)| names.iter().any(|name| infos[*index].applies_to(name))) {
                return Ok(extract);
            }
        }
        if cache.audit_now() {
            // Extracted and scanned; the mapping is checked too.
            return Ok(Member::Extract { stored: Some(stored), audit: Some((digest, size)) });
        }
        zip.account(i, size)?;
        tally.add(Count::Lookups, groups.len() as u64);
        tally.add(Count::Candidates, 1);
        tally.add(Count::Reused, 1);
        tally.add(Count::ReusedBytes, size);
        tally.add(Count::Unextracted, 1);
        tally.add(Count::OverheadUs, started.elapsed().as_micros() as u64);
        if let Some(observer) = &self.on_file {
            observer.notify(size);
        }
        Ok(Member::Known((
            i,
            Scanned { files: 1, bytes: size, results: vec![FileResult::Clean], ..Default::default() },
        )))
    }

    /// Remembers what the entry stored as `stored` extracted to; its
    /// digest. On an audit, what it was known to extract to is checked: a
    /// difference is a mismatch.
    fn remember_member(
        &self,
        stored: Option<[u8; 32]>,
        file: &File,
        audit: Option<([u8; 32], u64)>,
        tally: &Tally,
    ) -> Option<[u8; 32]> {
        let (stored, cache) = (stored?, self.reuse.as_deref()?);
        let digest = sha256(&file.data);
        let extracted = (digest, file.data.len() as u64);
        if audit.is_some_and(|known| known != extracted) {
            tally.add(Count::Mismatched, 1);
            cache.mismatch(&file.path);
            return Some(digest);
        }
        cache.remember_member(stored, extracted.0, extracted.1);
        Some(digest)
    }

    /// Scans zip entry `i` (its `file`, with its digest if known, and
    /// whether a kept result is to be audited) and what it holds when it
    /// opens as a nested archive.
    fn scan_entry(
        &self,
        zip: &ZipFiles<'_>,
        i: usize,
        file: File,
        (digest, audit): (Option<[u8; 32]>, bool),
        stop: &Stop,
        tally: &Tally,
    ) -> Result<(usize, Scanned), dragonfly_flatten::Error> {
        let keep = |path: &str| self.rules.applies_to(path);
        let mut scanned = Scanned::default();
        let mut scan = |file: &File, digest: Option<[u8; 32]>| {
            let result = self.scan_file(file, digest, audit, tally);
            stop.saw(&result);
            scanned.files += 1;
            scanned.bytes += file.data.len() as u64;
            scanned.results.push(result);
        };
        if zip.opens_nested(i) {
            let mut visit = |inner: File| {
                // Files inside count one by one against the stop.
                if !stop.skip(i, &inner.path) {
                    scan(&inner, None);
                }
            };
            scanned.anomalies = zip.open_nested(&file, &keep, &mut visit)?;
        }
        if zip.wanted(i) {
            scan(&file, digest);
        }
        Ok((i, scanned))
    }

    /// Scans the regular files under `dir` (recursively, symlinks not
    /// followed) as one distribution, applying the file and total limits.
    pub fn scan_directory(&self, dir: &Path) -> DistributionReport {
        let source = dir.display().to_string();
        let mut walk = DirectoryWalk { engine: self, root: dir, files: Vec::new(), skipped: 0, total: 0 };
        if let Err(error) = walk.read(dir) {
            return DistributionReport::failed(source, error);
        }
        let (files, skipped) = (walk.files, walk.skipped);
        let mut report = self.scan_files(&source, files);
        report.files_skipped = skipped;
        report
    }

    /// Scans already-flattened files as one distribution. Files to which no
    /// rule applies (under any of their names) are counted as skipped and
    /// not scanned.
    pub fn scan_files(&self, source: &str, files: Vec<File>) -> DistributionReport {
        self.counted(|tally| self.scan_files_with(source, &files, tally))
    }

    fn scan_files_with(&self, source: &str, files: &[File], tally: &Tally) -> DistributionReport {
        let (wanted, unwanted): (Vec<&File>, Vec<&File>) =
            files.iter().partition(|f| self.rules.applies_to_file(f));
        let bytes: u64 = wanted.iter().map(|f| f.data.len() as u64).sum();
        let stop = Stop::new(self.deadline);
        // The files are in memory already: with shared results, all are
        // looked up first.
        let digests: Vec<Option<[u8; 32]>> = if self.shared_active().is_some() {
            let digests: Vec<[u8; 32]> = wanted.par_iter().map(|file| sha256(&file.data)).collect();
            let batch: Vec<(&File, [u8; 32])> = wanted.iter().copied().zip(digests.iter().copied()).collect();
            self.fetch_shared(&batch, tally);
            digests.into_iter().map(Some).collect()
        } else {
            vec![None; wanted.len()]
        };
        let scan = |i: usize| -> Option<(usize, FileResult)> {
            if stop.skip(i, &wanted[i].path) {
                return None;
            }
            let result = self.scan_file(wanted[i], digests[i], false, tally);
            stop.saw(&result);
            Some((i, result))
        };
        let mut results: Vec<(usize, FileResult)> = if bytes < PARALLEL_MIN_BYTES || wanted.len() < 2 {
            (0..wanted.len()).filter_map(scan).collect()
        } else {
            // Largest files first, so that one big file does not finish last
            // alone; the report keeps archive order.
            let mut order: Vec<usize> = (0..wanted.len()).collect();
            order.sort_by_key(|&i| std::cmp::Reverse(wanted[i].data.len()));
            order.into_par_iter().with_max_len(1).filter_map(scan).collect()
        };
        results.sort_by_key(|&(i, _)| i);
        let mut report = DistributionReport {
            source: source.to_owned(),
            files_scanned: results.len() as u64,
            files_skipped: unwanted.len() as u64,
            bytes_scanned: results.iter().map(|&(i, _)| wanted[i].data.len() as u64).sum(),
            ..Default::default()
        };
        report.add_results(results.into_iter().map(|(_, result)| result).chain(stop.result()));
        report
    }

    /// Scans one file with the rules of each of its names' groups; a match
    /// counts when its rule applies to any of the names.
    fn scan_file(&self, file: &File, digest: Option<[u8; 32]>, audit: bool, tally: &Tally) -> FileResult {
        let result = self.scan_file_groups(file, digest, audit, tally);
        if let Some(observer) = &self.on_file {
            observer.notify(file.data.len() as u64);
        }
        result
    }

    fn scan_file_groups(
        &self,
        file: &File,
        known: Option<[u8; 32]>,
        audit: bool,
        tally: &Tally,
    ) -> FileResult {
        let groups = self.groups_of(file);
        let size = file.data.len() as u64;
        let started = Instant::now();
        // Rules that read the clock (`time.now()`) can match other bytes
        // tomorrow: their results are not kept.
        let cache = self.reuse.as_deref().filter(|cache| cache.active() && !self.rules.reads_the_clock());
        let digest: Option<[u8; 32]> = cache.map(|_| known.unwrap_or_else(|| sha256(&file.data)));
        let sharing = self.shared_active().is_some();
        let mut reused = cache.is_some();
        let mut engine_time = Duration::ZERO;
        let mut ran = false;
        let mut raws: Vec<Arc<Raw>> = Vec::with_capacity(groups.len());
        for &group in &groups {
            let kept = match (cache, &digest) {
                (Some(cache), Some(digest)) => {
                    tally.add(Count::Lookups, 1);
                    cache.get(digest, group, &self.rules, file.data.len())
                }
                _ => None,
            };
            let trusted = kept.is_some()
                && cache.is_some_and(|c| c.mode() == ReuseMode::Reuse && !audit && !c.audit_now());
            if let Some(kept) = &kept
                && trusted
            {
                raws.push(Arc::clone(kept));
                continue;
            }
            // A miss, a hit in `observe` mode, or an audited hit: scan.
            if kept.is_none() || cache.is_some_and(|c| c.mode() == ReuseMode::Reuse) {
                reused = false;
            }
            let began = Instant::now();
            let scanned = self.scan_group(file, group);
            engine_time += began.elapsed();
            ran = true;
            let raw = match scanned {
                Ok(raw) => raw,
                Err(error) => return FileResult::Failed(UnscannedFile { path: file.path.clone(), error }),
            };
            let raw = Arc::new(raw);
            if let (Some(cache), Some(digest)) = (cache, digest) {
                match &kept {
                    Some(kept) => {
                        tally.add(Count::Validated, 1);
                        if *kept != raw {
                            tally.add(Count::Mismatched, 1);
                            reused = false;
                            if cache.is_shared(&digest, group)
                                && let Some(shared) = &self.shared
                            {
                                log::error!(
                                    "scan reuse: a shared result differs from a new scan of `{}`; \
                                     asking for the shared results of this rule set to be revoked",
                                    file.path
                                );
                                shared.revoke();
                            }
                            cache.mismatch(&file.path);
                        }
                    }
                    None => {
                        tally.add(Count::Inserted, 1);
                        tally.add(Count::Evicted, cache.insert(digest, group, Arc::clone(&raw), &self.rules));
                        if sharing {
                            let mut fresh = tally.fresh.lock().unwrap_or_else(|e| e.into_inner());
                            if fresh.len() < shared::SHARED_WRITE_FILES || fresh.contains_key(&digest) {
                                let groups = fresh.entry(digest).or_default();
                                if !groups.iter().any(|(g, _)| *g == group) {
                                    groups.push((group, Arc::clone(&raw)));
                                }
                            }
                        }
                    }
                }
            }
            raws.push(raw);
        }
        if cache.is_some() {
            tally.add(Count::Candidates, 1);
            if reused {
                tally.add(Count::Reused, 1);
                tally.add(Count::ReusedBytes, size);
            }
            let overhead = started.elapsed().saturating_sub(engine_time);
            tally.add(Count::OverheadUs, overhead.as_micros() as u64);
        }
        if ran {
            tally.add(Count::EngineFiles, 1);
            tally.add(Count::EngineBytes, size);
            tally.add(Count::EngineUs, engine_time.as_micros() as u64);
        }

        // The `filetype` filter, per name, on the raw results.
        let infos = self.rules.rules();
        let mut matches: Vec<RuleMatch> = Vec::new();
        let mut ranges: Vec<evidence::Ranges> = Vec::new();
        for (index, found) in raws.iter().flat_map(|raw| &raw.0) {
            let info = &infos[*index];
            if !file.names().any(|name| info.applies_to(name)) || matches.iter().any(|m| m.name == info.name)
            {
                continue;
            }
            matches.push(RuleMatch {
                name: info.name.clone(),
                source: info.source.clone(),
                weight: info.weight,
                evidence: Vec::new(),
                match_count: found.count(),
            });
            ranges.push(found.clone());
        }
        if matches.is_empty() {
            return FileResult::Clean;
        }
        for (m, evidence) in matches.iter_mut().zip(evidence::locate(&file.data, ranges)) {
            m.evidence = evidence;
        }
        FileResult::Matched(FileReport {
            path: file.path.clone(),
            aliases: file.aliases.clone(),
            size,
            sha256: hex(&digest.unwrap_or_else(|| sha256(&file.data))),
            score: matches.iter().map(|m| m.weight).sum(),
            matches,
            suppressed: Vec::new(),
        })
    }

    /// The raw result of scanning `file` with `group`'s rules.
    fn scan_group(&self, file: &File, group: GroupId) -> Result<Raw, FileError> {
        let scanned = with_scanner(&self.rules, self.timeout, group, |scanner, rules| {
            scanner.scan(&file.data).map(|results| {
                Raw(results
                    .matching_rules()
                    .filter_map(|rule| {
                        Some((rules.index_of(rule.identifier())?, evidence::Ranges::of(&rule)))
                    })
                    .collect())
            })
        });
        scanned.map_err(|err| match err {
            yara_x::errors::ScanError::Timeout => FileError::Timeout { seconds: self.timeout.as_secs() },
            err => FileError::Scanner { message: err.to_string() },
        })
    }
}

/// SHA-256 of `data`.
fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

/// `bytes` as lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// A zip entry known without extracting it, or what to extract it with.
enum Member {
    Known((usize, Scanned)),
    Extract {
        /// The key of how it is stored, to remember what it extracts to.
        stored: Option<[u8; 32]>,
        /// Scan it even if its result is kept, and check that it extracts
        /// to this digest and size: an audit.
        audit: Option<([u8; 32], u64)>,
    },
}

/// SHA-256 over how a zip entry is stored (method, declared CRC-32 and
/// size, and its stored bytes: all that its extraction depends on) and the
/// extractor.
fn stored_key(entry: &dragonfly_flatten::StoredEntry<'_>) -> [u8; 32] {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(dragonfly_flatten::EXTRACTION.as_bytes());
    hasher.update([0, u8::from(entry.deflated)]);
    hasher.update(entry.crc32.to_le_bytes());
    hasher.update(entry.size.to_le_bytes());
    hasher.update(entry.data);
    hasher.finalize().into()
}

/// What a stream's files gave, in order.
#[derive(Default)]
struct InOrder {
    results: Vec<FileResult>,
    files: u64,
    bytes: u64,
}

/// When a distribution's scan stops early: at its deadline, or after its
/// first file that timed out. Shared by the threads scanning its files.
struct Stop {
    deadline: Option<Instant>,
    /// 0: scanning; else the [`StopReason`] as set by [`Stop::stop_with`].
    state: AtomicU8,
    /// Files not scanned, and the first of them in archive order.
    left: Mutex<(u64, Option<(usize, String)>)>,
}

impl Stop {
    fn new(deadline: Option<Instant>) -> Self {
        Stop { deadline, state: AtomicU8::new(0), left: Mutex::new((0, None)) }
    }

    fn stop_with(&self, reason: StopReason) {
        let code = match reason {
            StopReason::Deadline => 1,
            _ => 2,
        };
        let _ = self.state.compare_exchange(0, code, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Whether file `index` (at `path`) is to be left unscanned; counts it if so.
    fn skip(&self, index: usize, path: &str) -> bool {
        if self.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            self.stop_with(StopReason::Deadline);
        }
        if self.state.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let mut left = self.left.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        left.0 += 1;
        if left.1.as_ref().is_none_or(|(first, _)| index < *first) {
            left.1 = Some((index, path.to_owned()));
        }
        true
    }

    fn saw(&self, result: &FileResult) {
        if matches!(result, FileResult::Failed(UnscannedFile { error: FileError::Timeout { .. }, .. })) {
            self.stop_with(StopReason::EarlierTimeout);
        }
    }

    /// The result standing for the files left unscanned, if any.
    fn result(self) -> Option<FileResult> {
        let reason = match self.state.into_inner() {
            0 => return None,
            1 => StopReason::Deadline,
            _ => StopReason::EarlierTimeout,
        };
        let (count, first) = self.left.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (_, path) = first?;
        Some(FileResult::Failed(UnscannedFile { path, error: FileError::Stopped { reason, count } }))
    }
}

/// What became of one member of a large zip (and of the files inside it,
/// when it is an archive too).
#[derive(Default)]
struct Scanned {
    files: u64,
    bytes: u64,
    results: Vec<FileResult>,
    anomalies: Vec<dragonfly_flatten::Anomaly>,
}

enum FileResult {
    Clean,
    Matched(FileReport),
    Failed(UnscannedFile),
}

/// The state of [`Engine::scan_directory`] while it reads files.
struct DirectoryWalk<'a> {
    engine: &'a Engine,
    root: &'a Path,
    files: Vec<File>,
    skipped: u64,
    total: u64,
}

impl DirectoryWalk<'_> {
    fn read(&mut self, dir: &Path) -> Result<(), DistributionError> {
        let read_err = |path: &Path, e: std::io::Error| DistributionError::Read {
            path: path.to_owned(),
            source: Arc::new(e),
        };
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| read_err(dir, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| read_err(dir, e))?;
        entries.sort_by_key(|e| e.file_name());
        let limits = &self.engine.limits;
        for entry in entries {
            let path = entry.path();
            let file_type = entry.file_type().map_err(|e| read_err(&path, e))?;
            if file_type.is_dir() {
                self.read(&path)?;
                continue;
            }
            if !file_type.is_file() {
                continue;
            }
            let relative = path.strip_prefix(self.root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
            if !self.engine.rules.applies_to(&relative) {
                self.skipped += 1;
                continue;
            }
            let size = entry.metadata().map_err(|e| read_err(&path, e))?.len();
            let over = |kind, limit| {
                DistributionError::Archive(dragonfly_flatten::Error::LimitExceeded {
                    kind,
                    limit,
                    path: Some(relative.clone()),
                })
            };
            if size > limits.max_file_bytes {
                return Err(over(LimitKind::FileBytes, limits.max_file_bytes));
            }
            self.total += size;
            if self.total > limits.max_total_bytes {
                return Err(over(LimitKind::TotalBytes, limits.max_total_bytes));
            }
            let data = std::fs::read(&path).map_err(|e| read_err(&path, e))?;
            self.files.push(File::new(relative, data));
        }
        Ok(())
    }
}

impl DistributionReport {
    /// Adds per-file results, in order.
    fn add_results(&mut self, results: impl IntoIterator<Item = FileResult>) {
        for result in results {
            match result {
                FileResult::Clean => {}
                FileResult::Matched(file) => self.files.push(file),
                FileResult::Failed(error) => self.file_errors.push(error),
            }
        }
    }
}

static SCANNERS_CREATED: AtomicUsize = AtomicUsize::new(0);

type YaraScanner<'r> = yara_x::Scanner<'r>;

self_cell::self_cell!(
    /// A yara-x scanner together with the rule set it borrows, so that a
    /// thread can keep it between scans.
    struct OwnedScanner {
        owner: Arc<RuleSet>,
        #[covariant]
        dependent: YaraScanner,
    }
);

/// This thread's scanners: one per group of the rule set it last used.
struct Scanners {
    rules: Arc<RuleSet>,
    timeout: Duration,
    /// Indexed by [`GroupId`].
    slots: Vec<Option<OwnedScanner>>,
}

thread_local! {
    /// This thread's scanners, with the timeout they were configured with.
    /// They are replaced when a different rule set (or timeout) is used;
    /// until then they keep their rule set alive.
    static SCANNERS: RefCell<Option<Scanners>> = const { RefCell::new(None) };
    static CREATED_HERE: Cell<usize> = const { Cell::new(0) };
}

/// Runs `f` with this thread's scanner for `group` of `rules`, creating it
/// on first use. `f` must not scan again (no reentrancy).
fn with_scanner<R>(
    rules: &Arc<RuleSet>,
    timeout: Duration,
    group: GroupId,
    f: impl FnOnce(&mut yara_x::Scanner<'_>, &RuleSet) -> R,
) -> R {
    SCANNERS.with(|cell| {
        let mut current = cell.borrow_mut();
        let reusable = matches!(&*current, Some(s) if s.timeout == timeout && Arc::ptr_eq(&s.rules, rules));
        if !reusable {
            // Drop the old scanners first so that their rule set can be freed.
            *current = None;
            let slots = (0..=rules.group_count()).map(|_| None).collect();
            *current = Some(Scanners { rules: Arc::clone(rules), timeout, slots });
        }
        let scanners = current.as_mut().expect("set above");
        let scanner = scanners.slots[group.0].get_or_insert_with(|| {
            SCANNERS_CREATED.fetch_add(1, Ordering::Relaxed);
            CREATED_HERE.with(|n| n.set(n.get() + 1));
            OwnedScanner::new(Arc::clone(rules), |rules| {
                let mut scanner = yara_x::Scanner::new(rules.group_rules(group));
                scanner.set_timeout(timeout);
                scanner
            })
        });
        scanner.with_dependent_mut(|rules, scanner| f(scanner, rules))
    })
}

/// How many yara-x scanners this process has created: at most one per
/// scanning thread, rule set and rule group when reuse works.
#[cfg(test)]
fn scanners_created() -> usize {
    SCANNERS_CREATED.load(Ordering::Relaxed)
}

/// How many yara-x scanners the calling thread has created.
#[cfg(test)]
fn scanners_created_on_this_thread() -> usize {
    CREATED_HERE.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanners_are_reused_per_thread() {
        let source = r#"
            rule py { meta: filetype = ".py" strings: $a = "exec(" condition: $a }
            rule txt { meta: filetype = ".txt" strings: $a = "http" condition: $a }
            rule elf { strings: $a = { 7F 45 4C 46 } condition: $a at 0 }
        "#;
        let engine = Engine::new(Arc::new(RuleSet::compile("t", [("a.yar", source)]).unwrap()));
        let files =
            || ["a.py", "b.txt", "c.so", "d.py"].map(|path| File::new(path, b"exec(http".to_vec())).to_vec();
        // Small inputs are scanned on the calling thread: after the first
        // scan, its scanners (one per group: .py, .txt, the rest) are reused.
        let start = scanners_created_on_this_thread();
        engine.scan_files("d", files());
        let before = scanners_created_on_this_thread();
        assert_eq!(before - start, 3, "one scanner per group used");
        for _ in 0..20 {
            engine.scan_files("d", files());
        }
        assert_eq!(scanners_created_on_this_thread(), before, "a scanner per scan");
        assert!(scanners_created() >= 3);
    }
}
