//! Compiling YARA sources into a [`RuleSet`] and reading the rule metadata
//! the scorer relies on (`weight`, `filetype`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::cache::{self, CacheError, Layout};
use crate::compile::{compile_groups, compile_unit};
use crate::metadata::{RuleInfo, read_metadata};
use crate::plan::{GroupId, GroupTable, Plan};
use crate::source::Unit;

/// The rule files that ship inside the binary, as `(file name, source)`.
const BUNDLED: &[(&str, &str)] = &[
    ("credentials.yar", include_str!("../rules/credentials.yar")),
    ("execution.yar", include_str!("../rules/execution.yar")),
    ("install_hooks.yar", include_str!("../rules/install_hooks.yar")),
    ("network.yar", include_str!("../rules/network.yar")),
    ("obfuscation.yar", include_str!("../rules/obfuscation.yar")),
];

/// The hash reported for the bundled rules.
pub const BUNDLED_HASH: &str = concat!("bundled-", env!("CARGO_PKG_VERSION"));

/// Occurs when a rule set cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompileError {
    /// A source failed to compile.
    #[error("rule source `{source_name}`{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Syntax {
        /// Name of the rule source (file name).
        source_name: String,
        /// 1-based line of the first error, when known.
        line: Option<usize>,
        /// The compiler's message (first line of its report).
        message: String,
        /// The full report, with the offending code.
        report: String,
    },
    /// Two rule files (or one, twice) define a rule of the same name.
    #[error("rule `{rule}` is defined in `{first}` and in `{second}`")]
    DuplicateRule {
        /// The rule identifier.
        rule: String,
        /// The file defining it first (in compile order).
        first: String,
        /// The file defining it again.
        second: String,
    },
    /// A rule's `weight` or `filetype` metadata is not usable.
    #[error("rule `{rule}` in `{source_name}`: {message}")]
    Metadata {
        /// Name of the rule source.
        source_name: String,
        /// Rule identifier.
        rule: String,
        /// What is wrong.
        message: String,
    },
    /// A rules file or directory could not be read.
    #[error("can not read rules `{}`: {err}", path.display())]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        err: std::io::Error,
    },
    /// Compiled rules from the cache could not be read back.
    #[error("cached rules: {0}")]
    Cache(#[from] CacheError),
    /// No rule sources were given or found.
    #[error("no rules found{}", path.as_ref().map(|p| format!(" in `{}` (expected *.yar or *.yara files)", p.display())).unwrap_or_default())]
    Empty {
        /// The directory searched, when loading from disk.
        path: Option<PathBuf>,
    },
}

/// A compiled set of YARA rules with the metadata used for scoring.
///
/// Compile once per rule-set hash and share it (`Arc<RuleSet>`) between all
/// threads: it is `Send + Sync` and read-only.
pub struct RuleSet {
    /// The whole set at `GroupId::WHOLE_SET`, then the groups by file type
    /// (see `plan.rs`).
    compiled: Vec<yara_x::Rules>,
    /// Which group each file type is scanned with.
    table: GroupTable,
    hash: String,
    info: Vec<RuleInfo>,
    /// Rule name -> position in `info` (names are unique in a set).
    index: HashMap<String, usize>,
    /// Whether the rules import `time`.
    reads_the_clock: bool,
    warnings: Vec<String>,
    /// Some rule has no `filetype`: every file must be scanned.
    any_rule_for_all_files: bool,
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleSet").field("hash", &self.hash).field("rules", &self.info.len()).finish()
    }
}

impl RuleSet {
    /// Compiles `(file name, YARA source)` pairs, as the control server's
    /// `GET /rules` sends them, as one unit (the way the original client
    /// joins them): a rule may use a rule of another file, a global rule
    /// applies to every rule, and rule names are unique across files. Files
    /// are compiled after the files whose rules they use. `hash` identifies
    /// the rule set in reports (the rule repository's commit).
    ///
    /// Besides the whole set, the rules of each file type are compiled
    /// apart (in parallel, on the current rayon pool): a file is scanned
    /// only with the rules whose `filetype` covers it.
    pub fn compile<I, N, S>(hash: impl Into<String>, sources: I) -> Result<RuleSet, CompileError>
    where
        I: IntoIterator<Item = (N, S)>,
        N: AsRef<str>,
        S: AsRef<str>,
    {
        let sources: Vec<(String, String)> =
            sources.into_iter().map(|(n, s)| (n.as_ref().to_owned(), s.as_ref().to_owned())).collect();
        if sources.is_empty() {
            return Err(CompileError::Empty { path: None });
        }
        let unit = Unit::new(&sources);
        let (yara, warnings) = compile_unit(&unit)?;
        let source_of = |name: &str| unit.file_of(name).map(str::to_owned);
        let mut rules =
            Self::from_compiled(hash.into(), vec![yara], GroupTable::none(), warnings, &source_of)?;
        let (groups, table) = compile_groups(&unit, &rules.info, &Plan::new(&rules.info));
        rules.compiled.extend(groups);
        rules.table = table;
        Ok(rules)
    }

    /// Loads rules from a `.yar`/`.yara` file or a directory of them
    /// (searched recursively). The hash is `local-` followed by a digest of
    /// the sources, so edits give a new hash.
    pub fn load(path: &Path) -> Result<RuleSet, CompileError> {
        let io_err = |err| CompileError::Io { path: path.to_path_buf(), err };
        let meta = std::fs::metadata(path).map_err(io_err)?;
        let mut sources = BTreeMap::new();
        if meta.is_dir() {
            collect_rule_files(path, path, &mut sources)?;
            if sources.is_empty() {
                return Err(CompileError::Empty { path: Some(path.to_path_buf()) });
            }
        } else {
            let source = std::fs::read_to_string(path).map_err(io_err)?;
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            sources.insert(name.unwrap_or_else(|| "rules".into()), source);
        }
        let hash = format!("local-{:016x}", digest(&sources));
        Self::compile(hash, &sources)
    }

    /// The default rules that ship inside this crate: typical PyPI malware
    /// behaviour, each rule with a `weight` and a `filetype`.
    pub fn bundled() -> RuleSet {
        // The bundled sources are tested to compile (see the tests below).
        Self::compile(BUNDLED_HASH, BUNDLED.iter().copied())
            .unwrap_or_else(|err| panic!("bundled rules do not compile: {err}"))
    }

    /// The bundled rule sources, `(file name, source)`.
    pub fn bundled_sources() -> impl Iterator<Item = (&'static str, &'static str)> {
        BUNDLED.iter().copied()
    }

    /// `compiled` holds the whole set first.
    /// `source_of` names the file defining a rule, where known.
    fn from_compiled(
        hash: String,
        compiled: Vec<yara_x::Rules>,
        table: GroupTable,
        warnings: Vec<String>,
        source_of: &dyn Fn(&str) -> Option<String>,
    ) -> Result<RuleSet, CompileError> {
        let mut warnings = warnings;
        let mut info = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for rule in compiled[GroupId::WHOLE_SET.0].iter() {
            let source = source_of(rule.identifier()).unwrap_or_else(|| "rules".to_owned());
            let rule_info = read_metadata(&rule, &source, &mut warnings)?;
            index.insert(rule_info.name.clone(), info.len());
            info.push(rule_info);
        }
        for warning in &warnings {
            log::warn!("rules {hash}: {warning}");
        }
        let any_rule_for_all_files = info.iter().any(|r| !r.private && r.filetypes.is_none());
        let reads_the_clock = compiled[GroupId::WHOLE_SET.0].imports().any(|module| module == "time");
        Ok(RuleSet { compiled, table, hash, info, index, warnings, any_rule_for_all_files, reads_the_clock })
    }

    /// The compiled rules (and their groups by file type) as bytes, for a
    /// cache keyed by hash. Only this build of the engine can read them back
    /// ([`RuleSet::deserialize`]).
    pub fn serialize(&self) -> Result<Vec<u8>, CacheError> {
        let blobs = self
            .compiled
            .iter()
            .map(|rules| rules.serialize().map_err(|e| CacheError::Rules(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let sources = self.info.iter().map(|r| (r.name.clone(), r.source.clone())).collect();
        Ok(cache::encode(&blobs, &Layout { table: self.table.clone(), sources }))
    }

    /// Reads rules written by [`RuleSet::serialize`], skipping compilation.
    pub fn deserialize(hash: impl Into<String>, bytes: &[u8]) -> Result<RuleSet, CompileError> {
        let (blobs, Layout { table, sources }) = cache::decode(bytes)?;
        let sources: HashMap<String, String> = sources.into_iter().collect();
        let compiled = blobs
            .into_iter()
            .map(|blob| yara_x::Rules::deserialize(blob).map_err(|e| CacheError::Rules(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_compiled(hash.into(), compiled, table, Vec::new(), &|name| sources.get(name).cloned())
    }

    /// How many rule groups by file type were compiled besides the whole
    /// set: each file is scanned only with the rules of its group.
    pub fn group_count(&self) -> usize {
        self.compiled.len() - 1
    }

    /// The group a file at `path` is scanned with.
    pub(crate) fn group_for(&self, path: &str) -> GroupId {
        self.table.group_for(path)
    }

    /// The compiled rules of a group.
    pub(crate) fn group_rules(&self, group: GroupId) -> &yara_x::Rules {
        // Group ids come from this set's own table, checked when decoded.
        &self.compiled[group.0]
    }

    #[cfg(test)]
    pub(crate) fn table(&self) -> &GroupTable {
        &self.table
    }

    /// The identifier of this rule set (the rule repository's commit).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Every compiled rule with its scoring metadata.
    pub fn rules(&self) -> &[RuleInfo] {
        &self.info
    }

    /// Compiler warnings and metadata warnings, one line each.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether any rule can match a file at `path` once the `filetype`
    /// filter is applied. Files for which this is false are never scanned.
    pub fn applies_to(&self, path: &str) -> bool {
        self.any_rule_for_all_files || self.info.iter().any(|r| !r.private && r.applies_to(path))
    }

    /// Whether any rule can match `file` under any of its names.
    pub fn applies_to_file(&self, file: &dragonfly_flatten::File) -> bool {
        file.names().any(|name| self.applies_to(name))
    }

    /// The whole rule set, compiled.
    pub fn yara(&self) -> &yara_x::Rules {
        &self.compiled[GroupId::WHOLE_SET.0]
    }

    /// Whether the rules import the `time` module: their results depend on
    /// when they run, not only on the bytes.
    pub fn reads_the_clock(&self) -> bool {
        self.reads_the_clock
    }

    /// The index in [`RuleSet::rules`] of the rule named `name`.
    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
}

fn collect_rule_files(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, String>,
) -> Result<(), CompileError> {
    let io_err = |err| CompileError::Io { path: dir.to_path_buf(), err };
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).map_err(io_err)?.collect::<Result<_, _>>().map_err(io_err)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            collect_rule_files(root, &path, out)?;
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yar" | "yara")) {
            let source =
                std::fs::read_to_string(&path).map_err(|err| CompileError::Io { path: path.clone(), err })?;
            let name = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
            out.insert(name, source);
        }
    }
    Ok(())
}

/// FNV-1a over names and sources: a stable, dependency-free content digest.
fn digest(sources: &BTreeMap<String, String>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, source) in sources {
        for byte in name.bytes().chain([0]).chain(source.bytes()).chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(sources: &[(&str, &str)]) -> Result<RuleSet, CompileError> {
        RuleSet::compile("h", sources.iter().copied())
    }

    #[test]
    fn bundled_rules_compile_with_weights_and_filetypes() {
        let rules = RuleSet::bundled();
        assert!(rules.rules().len() >= 20, "only {} bundled rules", rules.rules().len());
        for rule in rules.rules() {
            assert!(rule.weight > 0, "bundled rule {} has no weight", rule.name);
        }
        assert!(rules.rules().iter().any(|r| r.filetypes.is_some()));
        assert_eq!(rules.hash(), BUNDLED_HASH);
    }

    #[test]
    fn reads_weight_and_filetype() {
        let rules = compile(&[(
            "a.yar",
            r#"rule a { meta: weight = 3 filetype = ".py setup.py" description = "runs code" condition: true }
               rule b { condition: true }"#,
        )])
        .unwrap();
        assert_eq!(
            rules.rules(),
            &[
                RuleInfo {
                    source: "a.yar".into(),
                    name: "a".into(),
                    weight: 3,
                    filetypes: Some(vec![".py".into(), "setup.py".into()]),
                    description: Some("runs code".into()),
                    private: false,
                },
                RuleInfo {
                    source: "a.yar".into(),
                    name: "b".into(),
                    weight: 0,
                    filetypes: None,
                    description: None,
                    private: false
                },
            ]
        );
        assert!(rules.rules()[0].applies_to("pkg/setup.py"));
        assert!(!rules.rules()[0].applies_to("pkg/data.json"));
    }

    #[test]
    fn a_rule_name_in_two_files_is_an_error_naming_both() {
        let err = compile(&[
            ("one.yar", "rule dup { meta: weight = 1 condition: true }"),
            ("two.yar", "rule dup { meta: weight = 2 condition: true }"),
        ])
        .unwrap_err();
        assert_eq!(err.to_string(), "rule `dup` is defined in `one.yar` and in `two.yar`");
    }

    #[test]
    fn files_form_one_unit_as_the_original_client_compiles_them() {
        // A private rule and an import shared across files, a global rule
        // from a third, and a regular expression only libyara's syntax
        // accepts (a `{` that is not a repetition).
        let rules = compile(&[
            ("a_main.yar", r#"rule uses_helper { meta: weight = 3 condition: helper and math.entropy(0, filesize) >= 0 }"#),
            ("b_helpers.yar", "import \"math\"\nprivate rule helper { strings: $a = /x{y/ condition: $a }"),
            ("c_gate.yar", "global rule gate { condition: filesize < 1MB }"),
        ])
        .unwrap();
        let names: Vec<&str> = rules.rules().iter().map(|r| r.name.as_str()).collect();
        assert!(names.contains(&"uses_helper") && names.contains(&"helper"), "{names:?}");
        let strict = yara_x::Compiler::new()
            .add_source(r#"rule r { strings: $a = /x{y/ condition: $a }"#)
            .map(|_| ())
            .is_err();
        assert!(strict, "strict YARA-X refuses the regular expression the relaxed syntax accepts");
    }

    #[test]
    fn syntax_error_names_source_and_line() {
        let err = compile(&[
            ("good.yar", "rule ok { condition: true }"),
            ("bad.yar", "rule ok2 {\n condition:\n   true and and\n}"),
        ])
        .unwrap_err();
        match &err {
            CompileError::Syntax { source_name, line, .. } => {
                assert_eq!(source_name, "bad.yar");
                assert_eq!(*line, Some(3));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().starts_with("rule source `bad.yar` line 3: "), "{err}");
    }

    #[test]
    fn malformed_weight_is_an_error() {
        for bad in [r#"weight = "heavy""#, "weight = 1.5", "weight = true"] {
            let src = format!("rule r {{ meta: {bad} condition: true }}");
            let err = compile(&[("w.yar", &src)]).unwrap_err();
            assert!(matches!(err, CompileError::Metadata { ref rule, .. } if rule == "r"), "{bad}: {err}");
        }
        let err = compile(&[("f.yar", "rule r { meta: filetype = 3 condition: true }")]).unwrap_err();
        assert!(err.to_string().contains("`filetype` must be a string"), "{err}");
    }

    #[test]
    fn numeric_string_weight_is_read_with_a_warning() {
        let rules = compile(&[("w.yar", r#"rule r { meta: weight = "4" condition: true }"#)]).unwrap();
        assert_eq!(rules.rules()[0].weight, 4);
        assert!(rules.warnings().iter().any(|w| w.contains("read as 4")), "{:?}", rules.warnings());
    }

    #[test]
    fn applies_to_needs_a_matching_suffix_unless_a_rule_covers_all_files() {
        let only_py = compile(&[("a", r#"rule a { meta: filetype = ".py" condition: true }"#)]).unwrap();
        assert!(only_py.applies_to("x/y.py"));
        assert!(!only_py.applies_to("x/y.so"));
        let all = compile(&[
            ("a", r#"rule a { meta: filetype = ".py" condition: true }"#),
            ("b", "rule b { condition: true }"),
        ])
        .unwrap();
        assert!(all.applies_to("x/y.so"));
        // A private rule is never reported, so it alone does not count.
        let private = compile(&[(
            "a",
            r#"private rule helper { condition: true }
               rule a { meta: filetype = ".py" condition: helper }"#,
        )])
        .unwrap();
        assert!(private.rules()[0].private);
        assert!(private.applies_to("x/y.py"));
        assert!(!private.applies_to("x/y.so"));
    }

    #[test]
    fn serialized_rules_round_trip() {
        let rules =
            compile(&[("a.yar", r#"rule a { meta: weight = 3 filetype = ".py" condition: true }"#)]).unwrap();
        let bytes = rules.serialize().unwrap();
        let back = RuleSet::deserialize("h2", &bytes).unwrap();
        assert_eq!(back.rules(), rules.rules());
        assert_eq!(back.hash(), "h2");
        assert!(matches!(
            RuleSet::deserialize("x", b"garbage"),
            Err(CompileError::Cache(CacheError::Version))
        ));
    }

    #[test]
    fn empty_rule_set_is_an_error() {
        assert!(matches!(compile(&[]), Err(CompileError::Empty { path: None })));
    }

    #[test]
    fn load_directory_is_recursive_and_hash_follows_content() {
        let dir = std::env::temp_dir().join(format!("dragonfly-rules-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.yar"), "rule a { meta: weight = 1 condition: true }").unwrap();
        std::fs::write(dir.join("sub/b.yara"), "rule b { meta: weight = 2 condition: true }").unwrap();
        std::fs::write(dir.join("notes.txt"), "not a rule").unwrap();
        let first = RuleSet::load(&dir).unwrap();
        let names: Vec<_> = first.rules().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        std::fs::write(dir.join("a.yar"), "rule a { meta: weight = 5 condition: true }").unwrap();
        let second = RuleSet::load(&dir).unwrap();
        assert_ne!(first.hash(), second.hash());
        assert!(second.hash().starts_with("local-"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(RuleSet::load(&dir), Err(CompileError::Io { .. })));
    }
}
