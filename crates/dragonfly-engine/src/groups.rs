//! Rule groups by file type.
//!
//! A file is scanned only with the rules whose `filetype` covers it, plus
//! the rules those depend on, compiled apart from the whole set. Matches are
//! filtered by `filetype` afterwards either way, so the results are the same
//! as a scan with every rule; the scan is faster because yara-x searches
//! for fewer patterns (a binary, for instance, only for the few rules that
//! apply to every file).
//!
//! Which rules apply to a path depends only on the longest `filetype`
//! suffix the path ends with: every other suffix it ends with is a suffix
//! of that one. So there is one group per suffix (groups with the same
//! rules are shared) and one for paths that end with none of them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;

use rayon::prelude::*;
use yara_x_parser::Parser;
use yara_x_parser::cst::{CSTStream, Event, SyntaxKind};

use crate::rules::{RuleInfo, compile_namespaces};

/// With more distinct groups than this, grouping costs more compile time
/// (and more scanners per thread) than it can save: every file is scanned
/// with the whole set.
const MAX_GROUPS: usize = 32;

/// The compiled rule groups of a rule set.
pub(crate) struct Groups {
    /// Compiled subsets of the rule set.
    pub(crate) compiled: Vec<yara_x::Rules>,
    /// `(suffix, group)`, longest suffix first; `None` is the whole set.
    pub(crate) by_suffix: Vec<(String, Option<usize>)>,
    /// The group of paths that end with no suffix.
    pub(crate) default: Option<usize>,
}

impl Groups {
    /// No grouping: every file is scanned with the whole set.
    pub(crate) fn none() -> Groups {
        Groups { compiled: Vec::new(), by_suffix: Vec::new(), default: None }
    }

    /// The group to scan a file at `path` with (`None`: the whole set).
    pub(crate) fn group_for(&self, path: &str) -> Option<usize> {
        self.by_suffix
            .iter()
            .find(|(suffix, _)| path.ends_with(suffix.as_str()))
            .map_or(self.default, |g| g.1)
    }

    /// Builds the groups of the rule set compiled from `sources` (one
    /// namespace per source), whose rules are `info`. A group that cannot
    /// be compiled falls back to the whole set.
    pub(crate) fn build(sources: &[(String, String)], info: &[RuleInfo]) -> Groups {
        // Private rules are never reported: they only come in as dependencies.
        let public: Vec<usize> = (0..info.len()).filter(|&i| !info[i].private).collect();
        let suffixes: BTreeSet<&str> =
            public.iter().filter_map(|&i| info[i].filetypes.as_ref()).flatten().map(String::as_str).collect();
        if suffixes.is_empty() {
            return Groups::none();
        }
        let rules_for = |path: &str| -> Vec<usize> {
            public.iter().copied().filter(|&i| info[i].applies_to(path)).collect::<Vec<usize>>()
        };
        // A path that is exactly the suffix ends with the same suffixes as
        // any longer path whose longest suffix it is.
        let mut classes: Vec<(Option<&str>, Vec<usize>)> =
            suffixes.iter().map(|&suffix| (Some(suffix), rules_for(suffix))).collect();
        classes.push((None, public.iter().copied().filter(|&i| info[i].filetypes.is_none()).collect()));

        let mut distinct: BTreeMap<&[usize], Option<usize>> = BTreeMap::new();
        for (_, rules) in &classes {
            if rules.len() < public.len() && !rules.is_empty() {
                distinct.insert(rules, None);
            }
        }
        if distinct.len() > MAX_GROUPS {
            log::info!("{} rule groups by file type: too many, scanning with the whole set", distinct.len());
            return Groups::none();
        }

        let sliced: Vec<(&str, &str, Option<Sliced<'_>>)> = sources
            .iter()
            .map(|(name, source)| (name.as_str(), source.as_str(), Sliced::parse(source)))
            .collect();
        // One compile per group, in parallel on the current rayon pool.
        let results: Vec<Option<yara_x::Rules>> = distinct
            .keys()
            .copied()
            .collect::<Vec<&[usize]>>()
            .into_par_iter()
            .map(|rules| match compile_namespaces(&subset_sources(&sliced, info, rules)) {
                Ok((yara, _warnings)) => Some(yara),
                // Not expected: the subset is cut from sources that compiled.
                Err(err) => {
                    log::warn!("a rule group did not compile ({err}); using the whole set for it");
                    None
                }
            })
            .collect();
        let mut compiled = Vec::new();
        for (group, result) in distinct.values_mut().zip(results) {
            if let Some(yara) = result {
                *group = Some(compiled.len());
                compiled.push(yara);
            }
        }
        let group_of = |rules: &[usize]| distinct.get(rules).copied().flatten();
        let mut by_suffix: Vec<(String, Option<usize>)> = Vec::new();
        let mut default = None;
        for (suffix, rules) in &classes {
            match suffix {
                Some(suffix) => by_suffix.push(((*suffix).to_owned(), group_of(rules))),
                None => default = group_of(rules),
            }
        }
        by_suffix.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Groups { compiled, by_suffix, default }
    }
}

/// The sources of a group: for each namespace, its imports and the rules of
/// `rules` with everything they refer to, in source order.
fn subset_sources(
    sliced: &[(&str, &str, Option<Sliced<'_>>)],
    info: &[RuleInfo],
    rules: &[usize],
) -> Vec<(String, String)> {
    let mut wanted: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for &i in rules {
        wanted.entry(info[i].namespace.as_str()).or_default().insert(info[i].name.as_str());
    }
    let mut out = Vec::new();
    for (namespace, source, sliced) in sliced {
        let Some(names) = wanted.get(namespace) else { continue };
        let source = match sliced {
            Some(sliced) => sliced.subset(names),
            // Could not be cut: the whole namespace goes in.
            None => Some((*source).to_owned()),
        };
        if let Some(source) = source {
            out.push(((*namespace).to_owned(), source));
        }
    }
    out
}

/// One top-level rule of a source.
#[derive(Debug)]
struct SourceRule {
    name: String,
    span: Range<usize>,
    global: bool,
    /// Identifiers used in the rule (possible references to other rules).
    idents: BTreeSet<String>,
}

/// A rule source cut into its imports and rules.
#[derive(Debug)]
struct Sliced<'a> {
    source: &'a str,
    imports: Vec<Range<usize>>,
    rules: Vec<SourceRule>,
}

impl<'a> Sliced<'a> {
    /// Cuts `source` into rules; `None` when that cannot be done safely
    /// (syntax errors, `include` statements).
    fn parse(source: &'a str) -> Option<Sliced<'a>> {
        let stream = CSTStream::from(Parser::new(source.as_bytes()))
            .whitespaces(false)
            .newlines(false)
            .comments(false);
        let mut sliced = Sliced { source, imports: Vec::new(), rules: Vec::new() };
        let mut current: Option<SourceRule> = None;
        let mut seen_rule_kw = false;
        for event in stream {
            match event {
                Event::Error { .. } => return None,
                Event::Begin { kind: SyntaxKind::INCLUDE_STMT, .. } => return None,
                Event::Begin { kind: SyntaxKind::IMPORT_STMT, span } if current.is_none() => {
                    sliced.imports.push(span.start()..span.end());
                }
                Event::Begin { kind: SyntaxKind::RULE_DECL, span } if current.is_none() => {
                    current = Some(SourceRule {
                        name: String::new(),
                        span: span.start()..span.end(),
                        global: false,
                        idents: BTreeSet::new(),
                    });
                    seen_rule_kw = false;
                }
                Event::End { kind: SyntaxKind::RULE_DECL, .. } => {
                    let rule = current.take()?;
                    if rule.name.is_empty() {
                        return None;
                    }
                    sliced.rules.push(rule);
                }
                Event::Token { kind, span } => {
                    let Some(rule) = current.as_mut() else { continue };
                    let text = source.get(span.start()..span.end())?;
                    match kind {
                        SyntaxKind::GLOBAL_KW => rule.global = true,
                        SyntaxKind::RULE_KW => seen_rule_kw = true,
                        SyntaxKind::IDENT if seen_rule_kw && rule.name.is_empty() => {
                            rule.name = text.to_owned()
                        }
                        SyntaxKind::IDENT => {
                            rule.idents.insert(text.to_owned());
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        current.is_none().then_some(sliced)
    }

    /// The source holding the imports, the global rules and the rules named
    /// in `names` with every rule they refer to (transitively), in source
    /// order; `None` when no rule is left.
    fn subset(&self, names: &BTreeSet<&str>) -> Option<String> {
        let mut keep = vec![false; self.rules.len()];
        let mut queue: Vec<usize> = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.global || names.contains(rule.name.as_str()) {
                keep[i] = true;
                queue.push(i);
            }
        }
        while let Some(i) = queue.pop() {
            let rule = &self.rules[i];
            for (j, other) in self.rules.iter().enumerate() {
                if rule.idents.contains(&other.name) && !keep[j] {
                    keep[j] = true;
                    queue.push(j);
                }
            }
        }
        if !keep.iter().any(|&k| k) {
            return None;
        }
        let mut out = String::new();
        for import in &self.imports {
            out.push_str(&self.source[import.clone()]);
            out.push('\n');
        }
        for (rule, _) in self.rules.iter().zip(&keep).filter(|(_, k)| **k) {
            out.push_str(&self.source[rule.span.clone()]);
            out.push_str("\n\n");
        }
        Some(out)
    }
}

/// First bytes of a serialized rule set (the format's version included).
const MAGIC: &[u8; 8] = b"DFRULES2";

/// Frames compiled rule blobs (the whole set first, then each group) and
/// the group table into one byte string.
pub(crate) fn encode(blobs: &[Vec<u8>], groups: &Groups) -> Vec<u8> {
    fn put(out: &mut Vec<u8>, n: usize) {
        out.extend_from_slice(&(n as u64).to_le_bytes());
    }
    let group_id = |g: Option<usize>| g.map_or(0, |g| g + 1);
    let mut out = MAGIC.to_vec();
    put(&mut out, blobs.len());
    for blob in blobs {
        put(&mut out, blob.len());
        out.extend_from_slice(blob);
    }
    put(&mut out, groups.by_suffix.len());
    for (suffix, group) in &groups.by_suffix {
        put(&mut out, suffix.len());
        out.extend_from_slice(suffix.as_bytes());
        put(&mut out, group_id(*group));
    }
    put(&mut out, group_id(groups.default));
    out
}

/// Reads what [`encode`] wrote: the blobs and the group table (with no
/// compiled groups yet).
pub(crate) fn decode(bytes: &[u8]) -> Result<(Vec<&[u8]>, Groups), String> {
    struct Reader<'a>(&'a [u8]);
    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
            if n > self.0.len() {
                return Err("truncated".into());
            }
            let (head, tail) = self.0.split_at(n);
            self.0 = tail;
            Ok(head)
        }
        fn number(&mut self) -> Result<usize, String> {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(self.take(8)?);
            usize::try_from(u64::from_le_bytes(bytes)).map_err(|_| "bad length".to_owned())
        }
    }
    let mut reader = Reader(bytes);
    if reader.take(MAGIC.len()).ok() != Some(MAGIC.as_slice()) {
        return Err("not a serialized rule set of this version".into());
    }
    let count = reader.number()?;
    if count == 0 || count > MAX_GROUPS + 1 {
        return Err(format!("bad number of compiled rule sets: {count}"));
    }
    let mut blobs = Vec::with_capacity(count);
    for _ in 0..count {
        let n = reader.number()?;
        blobs.push(reader.take(n)?);
    }
    let group = |id: usize| -> Result<Option<usize>, String> {
        match id {
            0 => Ok(None),
            id if id < count => Ok(Some(id - 1)),
            id => Err(format!("bad group {id}")),
        }
    };
    let suffixes = reader.number()?;
    let mut by_suffix = Vec::new();
    for _ in 0..suffixes {
        let n = reader.number()?;
        let suffix = std::str::from_utf8(reader.take(n)?).map_err(|e| e.to_string())?.to_owned();
        by_suffix.push((suffix, group(reader.number()?)?));
    }
    let default = group(reader.number()?)?;
    if !reader.0.is_empty() {
        return Err("trailing bytes".into());
    }
    Ok((blobs, Groups { compiled: Vec::new(), by_suffix, default }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RuleSet;

    fn names<'a>(sliced: &'a Sliced<'_>) -> Vec<&'a str> {
        sliced.rules.iter().map(|r| r.name.as_str()).collect()
    }

    const SOURCE: &str = r#"
import "math"
// a comment between rules
global rule gate { condition: filesize < 10MB }
private rule helper_a { strings: $h = "helper" condition: $h }
private rule helper_b { condition: true }
rule py_only : tag1 {
    meta: filetype = ".py" weight = 2
    strings: $a = "exec(" // trailing comment
    condition: $a and helper_a
}
rule any_helper { meta: filetype = ".js" condition: any of (helper_a, helper_b) }
rule binary { strings: $b = { 7F 45 4C 46 } condition: $b at 0 and math.entropy(0, filesize) > 0 }
"#;

    #[test]
    fn cuts_rules_with_modifiers_and_references() {
        let sliced = Sliced::parse(SOURCE).unwrap();
        assert_eq!(names(&sliced), ["gate", "helper_a", "helper_b", "py_only", "any_helper", "binary"]);
        assert!(sliced.rules[0].global);
        assert!(!sliced.rules[1].global);
        assert!(sliced.rules[3].idents.contains("helper_a"));
        assert!(sliced.rules[4].idents.contains("helper_b"), "{:?}", sliced.rules[4]);
        assert_eq!(&SOURCE[sliced.imports[0].clone()], r#"import "math""#);
        assert!(SOURCE[sliced.rules[1].span.clone()].starts_with("private rule helper_a"));
        assert!(SOURCE[sliced.rules[3].span.clone()].ends_with('}'));
    }

    #[test]
    fn subset_keeps_imports_globals_and_dependencies() {
        let sliced = Sliced::parse(SOURCE).unwrap();
        let subset = sliced.subset(&BTreeSet::from(["py_only"])).unwrap();
        let back = Sliced::parse(&subset).unwrap();
        assert_eq!(names(&back), ["gate", "helper_a", "py_only"]);
        assert!(subset.starts_with("import \"math\"\n"));
        assert!(subset.contains("global rule gate"));
        let subset = sliced.subset(&BTreeSet::from(["any_helper"])).unwrap();
        assert_eq!(names(&Sliced::parse(&subset).unwrap()), ["gate", "helper_a", "helper_b", "any_helper"]);
        let subset = sliced.subset(&BTreeSet::from(["binary"])).unwrap();
        assert_eq!(names(&Sliced::parse(&subset).unwrap()), ["gate", "binary"]);
    }

    #[test]
    fn includes_and_syntax_errors_are_not_cut() {
        assert!(Sliced::parse("include \"other.yar\"\nrule a { condition: true }").is_none());
        assert!(Sliced::parse("rule a { condition: true and and }").is_none());
        assert!(Sliced::parse("rule a { condition: true ").is_none());
    }

    #[test]
    fn each_file_type_gets_its_own_group() {
        let rules = RuleSet::compile(
            "h",
            [
                ("a.yar", SOURCE),
                (
                    "b.yar",
                    r#"rule setup { meta: filetype = "setup.py" condition: true }
                       rule js_too { meta: filetype = ".mjs .js" condition: true }"#,
                ),
            ],
        )
        .unwrap();
        let groups = &rules.groups;
        // .py, setup.py, .js, .mjs and files of no listed type.
        assert_eq!(rules.group_count(), 5);
        let py = groups.group_for("pkg/mod.py");
        let setup = groups.group_for("pkg/setup.py");
        let js = groups.group_for("x.js");
        let other = groups.group_for("lib.so");
        assert!(py.is_some() && setup.is_some() && js.is_some() && other.is_some());
        assert_ne!(py, setup);
        assert_eq!(js, groups.group_for("lib/y.js"));
        let idents = |group: Option<usize>| -> Vec<String> {
            let mut names: Vec<String> =
                rules.group_rules(group).iter().map(|r| r.identifier().to_owned()).collect();
            names.sort();
            names
        };
        assert_eq!(idents(other), ["binary", "gate"]);
        assert_eq!(idents(py), ["binary", "gate", "helper_a", "py_only"]);
        assert_eq!(idents(setup), ["binary", "gate", "helper_a", "py_only", "setup"]);
        assert_eq!(idents(js), ["any_helper", "binary", "gate", "helper_a", "helper_b", "js_too"]);
        assert_eq!(idents(groups.group_for("y.mjs")), ["binary", "gate", "js_too"]);
        assert_eq!(idents(None).len(), 8, "the whole set");
    }

    #[test]
    fn a_rule_set_without_file_types_has_no_groups() {
        let rules = RuleSet::compile("h", [("a.yar", "rule a { condition: true }")]).unwrap();
        assert_eq!(rules.group_count(), 0);
        assert_eq!(rules.group_for("x.py"), None);
    }

    #[test]
    fn an_uncut_source_goes_whole_into_every_group() {
        // An `include` cannot be cut (its rules are elsewhere): the source
        // goes whole into every group that wants any of its rules.
        let dir = tempfile::tempdir().unwrap();
        let included = dir.path().join("helpers.yar");
        std::fs::write(&included, "rule b1 { condition: true }").unwrap();
        let with_include = format!(
            "include \"{}\"\nrule b2 {{ meta: filetype = \".js\" condition: b1 }}\nrule b3 {{ condition: true }}",
            included.display()
        );
        let rules = RuleSet::compile(
            "h",
            [("a.yar", r#"rule py { meta: filetype = ".py" condition: true }"#), ("b.yar", &with_include)],
        )
        .unwrap();
        assert!(Sliced::parse(&with_include).is_none());
        let mut idents: Vec<_> =
            rules.group_rules(rules.group_for("x.so")).iter().map(|r| r.identifier().to_owned()).collect();
        idents.sort();
        assert_eq!(idents, ["b1", "b2", "b3"], "b2 (.js only) comes along with the whole source");
    }

    #[test]
    fn too_many_file_types_mean_no_groups() {
        let source: String = (0..=MAX_GROUPS)
            .map(|i| format!("rule r{i} {{ meta: filetype = \".t{i}\" condition: true }}\n"))
            .collect();
        let rules = RuleSet::compile("h", [("a.yar", source)]).unwrap();
        assert_eq!(rules.group_count(), 0);
        assert_eq!(rules.group_for("x.t1"), None);
        let fewer: String = (0..MAX_GROUPS - 1)
            .map(|i| format!("rule r{i} {{ meta: filetype = \".t{i}\" condition: true }}\n"))
            .collect();
        assert_eq!(RuleSet::compile("h", [("a.yar", fewer)]).unwrap().group_count(), MAX_GROUPS - 1);
    }

    #[test]
    fn groups_survive_serialization() {
        let rules = RuleSet::compile("h", [("a.yar", SOURCE)]).unwrap();
        let back = RuleSet::deserialize("h", &rules.serialize().unwrap()).unwrap();
        assert_eq!(back.group_count(), rules.group_count());
        assert_eq!(back.groups.by_suffix, rules.groups.by_suffix);
        assert_eq!(back.groups.default, rules.groups.default);
        for path in ["a.py", "b.js", "c.so"] {
            let count = |r: &RuleSet| r.group_rules(r.group_for(path)).iter().count();
            assert_eq!(count(&back), count(&rules), "{path}");
        }
        let bytes = rules.serialize().unwrap();
        for cut in [0, 8, 20, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        let error = |bytes: &[u8]| decode(bytes).err().expect("refused");
        assert_eq!(error(&trailing), "trailing bytes");
        // The last number is the default group's id: one past the blobs.
        let mut bad_group = bytes.clone();
        let at = bad_group.len() - 8;
        bad_group[at..].copy_from_slice(&99u64.to_le_bytes());
        assert_eq!(error(&bad_group), "bad group 99");
        let mut no_blobs = MAGIC.to_vec();
        no_blobs.extend_from_slice(&0u64.to_le_bytes());
        assert!(error(&no_blobs).contains("bad number of compiled rule sets"));
    }
}
