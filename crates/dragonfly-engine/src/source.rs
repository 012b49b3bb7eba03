//! Cutting rule sources into their rules, and putting subsets back
//! together: the raw material of the rule groups by file type.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

use yara_x_parser::Parser;
use yara_x_parser::cst::{CSTStream, Event, SyntaxKind};

use crate::metadata::RuleInfo;

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

/// The sources of a group: for each namespace, its imports and the rules of
/// `rules` with everything they refer to, in source order.
pub(crate) fn subset_sources(
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
}
