//! The Dragonfly scanning engine: compiles YARA rules with
//! [yara-x](https://virustotal.github.io/yara-x/), flattens package
//! distributions in memory, scans every file and scores the result the way
//! the Dragonfly control server expects.
//!
//! The model is PyPI's: a **package** (release) has **distributions**
//! (sdists, wheels), each an archive of **files**. A rule's `weight`
//! metadata is its contribution to a score; its `filetype` metadata (file
//! name suffixes) restricts which files its matches count for. Files that no
//! rule applies to are not scanned, and inside a zip not even decompressed;
//! the others are scanned only with the rules of their file type (rule
//! groups, compiled apart), which gives the same results faster.
//!
//! This crate knows nothing of HTTP or of the control server: callers hand
//! it bytes and get reports back.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use dragonfly_engine::{Engine, RuleSet};
//!
//! let rules = RuleSet::compile(
//!     "example",
//!     [("demo.yar", r#"rule shell_in_setup {
//!         meta: weight = 5 filetype = "setup.py"
//!         strings: $a = "os.system("
//!         condition: $a
//!     }"#)],
//! )?;
//! let engine = Engine::new(Arc::new(rules));
//! let files = vec![
//!     dragonfly_flatten::File::new("pkg-1.0/setup.py", b"os.system('id')".to_vec()),
//!     dragonfly_flatten::File::new("pkg-1.0/README", b"os.system(".to_vec()),
//! ];
//! let report = engine.scan_files("pkg-1.0.tar.gz", files);
//! assert_eq!(report.score(), 5);
//! assert_eq!(report.files[0].path, "pkg-1.0/setup.py");
//! assert_eq!(report.files_skipped, 1); // README: no rule applies
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Threads
//!
//! A [`RuleSet`] is compiled once and shared (`Arc`) by every thread; its
//! rule groups are compiled in parallel on the current rayon pool. Each
//! thread that scans keeps one reusable yara-x scanner per group of the rule
//! set it last used; large distributions are scanned file-parallel on rayon.

mod baseline;
mod cache;
mod compile;
mod evidence;
mod metadata;
mod naming;
mod plan;
mod report;
mod reuse;
mod rules;
mod scan;
mod shared;
mod source;
mod suppress;

pub use baseline::{Baseline, finding_place, normalize_name, release_place};
pub use cache::CacheError;
pub use dragonfly_flatten::{Anomaly, AnomalyKind, File, Format, Limits};
pub use evidence::{Evidence, MAX_EVIDENCE, escape_bytes};
pub use metadata::RuleInfo;
pub use naming::parse_distribution_filename;
pub use report::{
    DistributionError, DistributionReport, FileError, FileReport, PackageReport, Problem, RuleMatch,
    StopReason, SuppressedBy, SuppressedMatch, UnscannedFile,
};
pub use reuse::{
    DEFAULT_AUDIT_EVERY, DEFAULT_BUDGET_BYTES, ResultStore, ReuseCache, ReuseCounts, ReuseMode,
    engine_digest, rules_digest,
};
pub use rules::{BUNDLED_HASH, CompileError, RuleSet};
pub use scan::{DEFAULT_TIMEOUT, Engine, FileObserver};
pub use shared::{
    SHARED_BATCH_BYTES, SHARED_BATCH_FILES, SHARED_WRITE_FILES, SharedEntry, SharedError, SharedResults,
};
pub use suppress::{Suppression, SuppressionError, Suppressions};
