//! The scanning engine: archive bytes or a directory -> files -> matches.

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dragonfly_flatten::{File, Format, LimitKind, Limits, ZipFiles};
use rayon::prelude::*;

use crate::plan::GroupId;
use crate::report::{DistributionError, DistributionReport, FileError, FileReport, RuleMatch, UnscannedFile};
use crate::rules::RuleSet;

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
}

impl Engine {
    /// An engine with default limits and a 10 s per-file timeout.
    pub fn new(rules: Arc<RuleSet>) -> Self {
        Engine { rules, limits: Limits::default(), timeout: DEFAULT_TIMEOUT }
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
        let keep = |path: &str| self.rules.applies_to(path);
        let large_zip = bytes.len() as u64 >= PARALLEL_MIN_BYTES
            && dragonfly_flatten::detect_format(bytes).is_ok_and(|f| f == Format::Zip);
        if large_zip {
            return match dragonfly_flatten::zip_files(bytes, &self.limits, &keep) {
                Ok(zip) => self.scan_zip(source, &zip),
                Err(err) => DistributionReport::failed(source, err),
            };
        }
        // Each file is scanned as soon as it is out and then dropped: an
        // sdist costs its largest file, not its whole expansion.
        let mut results = Vec::new();
        let (mut files_scanned, mut bytes_scanned) = (0u64, 0u64);
        let flattened = dragonfly_flatten::flatten_each(bytes, &self.limits, &keep, &mut |file| {
            files_scanned += 1;
            bytes_scanned += file.data.len() as u64;
            results.push(self.scan_file(&file));
        });
        match flattened {
            Ok((format, skipped)) => {
                let mut report = DistributionReport {
                    source: source.to_owned(),
                    format: Some(format),
                    files_scanned,
                    files_skipped: skipped.filtered,
                    bytes_scanned,
                    ..Default::default()
                };
                report.add_results(results);
                report
            }
            Err(err) => DistributionReport::failed(source, err),
        }
    }

    fn scan_zip(&self, source: &str, zip: &ZipFiles<'_>) -> DistributionReport {
        // Largest first, so that one big file does not finish last alone.
        let mut order: Vec<usize> = (0..zip.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(zip.declared_size(i)));
        let scanned: Result<Vec<(usize, u64, FileResult)>, dragonfly_flatten::Error> = order
            .into_par_iter()
            .with_max_len(1)
            .map(|i| {
                let file = zip.extract(i)?;
                Ok((i, file.data.len() as u64, self.scan_file(&file)))
            })
            .collect();
        let mut scanned = match scanned {
            Ok(scanned) => scanned,
            Err(err) => return DistributionReport::failed(source, err),
        };
        scanned.sort_by_key(|&(i, _, _)| i);
        let mut report = DistributionReport {
            source: source.to_owned(),
            format: Some(Format::Zip),
            files_scanned: scanned.len() as u64,
            files_skipped: zip.skipped().filtered,
            bytes_scanned: scanned.iter().map(|&(_, size, _)| size).sum(),
            ..Default::default()
        };
        report.add_results(scanned.into_iter().map(|(_, _, result)| result));
        report
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
    /// rule applies are counted as skipped and not scanned.
    pub fn scan_files(&self, source: &str, files: Vec<File>) -> DistributionReport {
        let (wanted, unwanted): (Vec<File>, Vec<File>) =
            files.into_iter().partition(|f| self.rules.applies_to(&f.path));
        let bytes: u64 = wanted.iter().map(|f| f.data.len() as u64).sum();
        let results: Vec<FileResult> = if bytes < PARALLEL_MIN_BYTES || wanted.len() < 2 {
            wanted.iter().map(|f| self.scan_file(f)).collect()
        } else {
            // Largest files first, so that one big file does not finish last
            // alone; the report keeps archive order.
            let mut order: Vec<usize> = (0..wanted.len()).collect();
            order.sort_by_key(|&i| std::cmp::Reverse(wanted[i].data.len()));
            let mut results: Vec<(usize, FileResult)> =
                order.into_par_iter().with_max_len(1).map(|i| (i, self.scan_file(&wanted[i]))).collect();
            results.sort_by_key(|&(i, _)| i);
            results.into_iter().map(|(_, result)| result).collect()
        };
        let mut report = DistributionReport {
            source: source.to_owned(),
            files_scanned: wanted.len() as u64,
            files_skipped: unwanted.len() as u64,
            bytes_scanned: bytes,
            ..Default::default()
        };
        report.add_results(results);
        report
    }

    fn scan_file(&self, file: &File) -> FileResult {
        let group = self.rules.group_for(&file.path);
        with_scanner(&self.rules, self.timeout, group, |scanner, rules| match scanner.scan(&file.data) {
            Ok(results) => {
                let matches: Vec<RuleMatch> = results
                    .matching_rules()
                    .filter_map(|rule| rules.lookup(rule.identifier()))
                    .filter(|info| info.applies_to(&file.path))
                    .map(|info| RuleMatch {
                        name: info.name.clone(),
                        source: info.source.clone(),
                        weight: info.weight,
                    })
                    .collect();
                if matches.is_empty() {
                    FileResult::Clean
                } else {
                    FileResult::Matched(FileReport {
                        path: file.path.clone(),
                        size: file.data.len() as u64,
                        score: matches.iter().map(|m| m.weight).sum(),
                        matches,
                    })
                }
            }
            Err(yara_x::errors::ScanError::Timeout) => FileResult::Failed(UnscannedFile {
                path: file.path.clone(),
                error: FileError::Timeout { seconds: self.timeout.as_secs() },
            }),
            Err(err) => FileResult::Failed(UnscannedFile {
                path: file.path.clone(),
                error: FileError::Scanner { message: err.to_string() },
            }),
        })
    }
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
            self.files.push(File { path: relative, data });
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
        let files = || {
            ["a.py", "b.txt", "c.so", "d.py"]
                .map(|path| File { path: path.into(), data: b"exec(http".to_vec() })
                .to_vec()
        };
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
