//! The rule files of a set as one compile unit (the original client joins
//! them), cut into their rules: the order files must come in, duplicate
//! names, and the subsets the rule groups by file type are compiled from.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

use yara_x_parser::Parser;
use yara_x_parser::cst::{CSTStream, Event, SyntaxKind};

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
pub(crate) struct Sliced<'a> {
    source: &'a str,
    imports: Vec<Range<usize>>,
    rules: Vec<SourceRule>,
}

impl<'a> Sliced<'a> {
    /// Cuts `source` into rules; `None` when that cannot be done safely
    /// (syntax errors, `include` statements).
    pub(crate) fn parse(source: &'a str) -> Option<Sliced<'a>> {
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
}

/// One rule file of a set.
#[derive(Debug)]
pub(crate) struct RuleFile<'a> {
    pub(crate) name: &'a str,
    pub(crate) source: &'a str,
    /// `None` when the source could not be cut (an `include`, a syntax
    /// error): it then goes whole wherever it is needed.
    pub(crate) sliced: Option<Sliced<'a>>,
}

/// The rule files of a set in compile order: a file defining a rule comes
/// before the files that use it; otherwise the given order is kept.
#[derive(Debug)]
pub(crate) struct Unit<'a> {
    pub(crate) files: Vec<RuleFile<'a>>,
}

/// Where each file starts in the joined text: `(first line, file name)`.
pub(crate) type LineMap<'a> = Vec<(usize, &'a str)>;

impl<'a> Unit<'a> {
    pub(crate) fn new(sources: &'a [(String, String)]) -> Unit<'a> {
        let files: Vec<RuleFile<'a>> = sources
            .iter()
            .map(|(name, source)| RuleFile { name, source, sliced: Sliced::parse(source) })
            .collect();
        let order = dependency_order(&files);
        let mut slots: Vec<Option<RuleFile<'a>>> = files.into_iter().map(Some).collect();
        Unit { files: order.into_iter().filter_map(|i| slots[i].take()).collect() }
    }

    /// The whole set as one text, files separated by a newline, and where
    /// each file starts in it.
    pub(crate) fn text(&self) -> (String, LineMap<'a>) {
        let mut text = String::new();
        let mut lines = Vec::with_capacity(self.files.len());
        let mut line = 1;
        for file in &self.files {
            lines.push((line, file.name));
            text.push_str(file.source);
            text.push('\n');
            line += file.source.matches('\n').count() + 1;
        }
        (text, lines)
    }

    /// A rule name defined in two files (or twice in one): the name and
    /// both files, in compile order.
    pub(crate) fn duplicate(&self) -> Option<(String, &'a str, &'a str)> {
        let mut seen: HashMap<&str, &'a str> = HashMap::new();
        for file in &self.files {
            for rule in file.sliced.iter().flat_map(|s| &s.rules) {
                if let Some(first) = seen.insert(rule.name.as_str(), file.name) {
                    return Some((rule.name.clone(), first, file.name));
                }
            }
        }
        None
    }

    /// The file defining rule `name`, when the files could be cut.
    pub(crate) fn file_of(&self, name: &str) -> Option<&'a str> {
        self.files
            .iter()
            .find(|f| f.sliced.iter().flat_map(|s| &s.rules).any(|r| r.name == name))
            .map(|f| f.name)
    }

    /// The text of a group: every file's imports, the global rules, the
    /// rules in `names` and every rule they refer to (across files), in
    /// compile order. Files that could not be cut come whole.
    pub(crate) fn subset(&self, names: &BTreeSet<&str>) -> String {
        let all: Vec<(usize, &SourceRule)> = self
            .files
            .iter()
            .enumerate()
            .flat_map(|(f, file)| file.sliced.iter().flat_map(move |s| s.rules.iter().map(move |r| (f, r))))
            .collect();
        let by_name: HashMap<&str, usize> =
            all.iter().enumerate().map(|(i, (_, r))| (r.name.as_str(), i)).collect();
        let mut keep = vec![false; all.len()];
        let mut queue: Vec<usize> = Vec::new();
        for (i, (_, rule)) in all.iter().enumerate() {
            if rule.global || names.contains(rule.name.as_str()) {
                keep[i] = true;
                queue.push(i);
            }
        }
        while let Some(i) = queue.pop() {
            for ident in &all[i].1.idents {
                if let Some(&j) = by_name.get(ident.as_str())
                    && !keep[j]
                {
                    keep[j] = true;
                    queue.push(j);
                }
            }
        }
        let mut out = String::new();
        for (f, file) in self.files.iter().enumerate() {
            let Some(sliced) = &file.sliced else {
                out.push_str(file.source);
                out.push('\n');
                continue;
            };
            for import in &sliced.imports {
                out.push_str(&sliced.source[import.clone()]);
                out.push('\n');
            }
            for (_, (_, rule)) in all.iter().enumerate().filter(|(i, (g, _))| *g == f && keep[*i]) {
                out.push_str(&sliced.source[rule.span.clone()]);
                out.push_str("\n\n");
            }
        }
        out
    }
}

/// The order to compile files in: a stable topological sort by "defines a
/// rule the other uses"; files in a cycle keep the given order.
fn dependency_order(files: &[RuleFile<'_>]) -> Vec<usize> {
    let defined_in: HashMap<&str, usize> = files
        .iter()
        .enumerate()
        .flat_map(|(f, file)| {
            file.sliced.iter().flat_map(move |s| s.rules.iter().map(move |r| (r.name.as_str(), f)))
        })
        .collect();
    // needs[g] = the files g uses rules of.
    let needs: Vec<BTreeSet<usize>> = files
        .iter()
        .enumerate()
        .map(|(g, file)| {
            let idents = file.sliced.iter().flat_map(|s| &s.rules).flat_map(|r| &r.idents);
            idents.filter_map(|ident| defined_in.get(ident.as_str()).copied()).filter(|&f| f != g).collect()
        })
        .collect();
    let mut placed = vec![false; files.len()];
    let mut order = Vec::with_capacity(files.len());
    while order.len() < files.len() {
        let next = (0..files.len())
            .find(|&g| !placed[g] && needs[g].iter().all(|&f| placed[f]))
            // A cycle: take the first file left, as given.
            .or_else(|| (0..files.len()).find(|&g| !placed[g]));
        let Some(g) = next else { break };
        placed[g] = true;
        order.push(g);
    }
    order
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn names<'a>(sliced: &'a Sliced<'_>) -> Vec<&'a str> {
        sliced.rules.iter().map(|r| r.name.as_str()).collect()
    }

    pub(crate) const SOURCE: &str = r#"
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

    fn unit(sources: &[(&str, &str)]) -> Vec<(String, String)> {
        sources.iter().map(|(n, s)| ((*n).to_owned(), (*s).to_owned())).collect()
    }

    #[test]
    fn subset_keeps_imports_globals_and_dependencies() {
        let sources = unit(&[("a.yar", SOURCE)]);
        let unit = Unit::new(&sources);
        let subset = unit.subset(&BTreeSet::from(["py_only"]));
        let back = Sliced::parse(&subset).unwrap();
        assert_eq!(names(&back), ["gate", "helper_a", "py_only"]);
        assert!(subset.starts_with("import \"math\"\n"));
        assert!(subset.contains("global rule gate"));
        let subset = unit.subset(&BTreeSet::from(["any_helper"]));
        assert_eq!(names(&Sliced::parse(&subset).unwrap()), ["gate", "helper_a", "helper_b", "any_helper"]);
        let subset = unit.subset(&BTreeSet::from(["binary"]));
        assert_eq!(names(&Sliced::parse(&subset).unwrap()), ["gate", "binary"]);
    }

    #[test]
    fn files_come_after_the_files_whose_rules_they_use() {
        let sources = unit(&[
            ("a_uses.yar", "rule user { condition: shared and other }"),
            ("b_shared.yar", "private rule shared { condition: true }"),
            ("c_other.yar", "rule other { condition: shared }"),
        ]);
        let unit = Unit::new(&sources);
        let order: Vec<&str> = unit.files.iter().map(|f| f.name).collect();
        assert_eq!(order, ["b_shared.yar", "c_other.yar", "a_uses.yar"]);
        let subset = unit.subset(&BTreeSet::from(["user"]));
        assert_eq!(names(&Sliced::parse(&subset).unwrap()), ["shared", "other", "user"], "{subset}");
        let (text, lines) = unit.text();
        assert_eq!(lines, [(1, "b_shared.yar"), (2, "c_other.yar"), (3, "a_uses.yar")]);
        assert_eq!(text.lines().count(), 3);
        assert_eq!(unit.duplicate(), None);
        let twice = [
            ("x.yar".to_owned(), "rule r { condition: true }".to_owned()),
            ("y.yar".to_owned(), "rule r { condition: false }".to_owned()),
        ];
        assert_eq!(Unit::new(&twice).duplicate(), Some(("r".to_owned(), "x.yar", "y.yar")));
    }

    #[test]
    fn includes_and_syntax_errors_are_not_cut() {
        assert!(Sliced::parse("include \"other.yar\"\nrule a { condition: true }").is_none());
        assert!(Sliced::parse("rule a { condition: true and and }").is_none());
        assert!(Sliced::parse("rule a { condition: true ").is_none());
    }
}
