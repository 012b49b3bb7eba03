//! Planning the rule groups by file type.
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

use std::collections::{BTreeMap, BTreeSet};

use crate::metadata::RuleInfo;

/// With more distinct groups than this, grouping costs more compile time
/// (and more scanners per thread) than it can save: every file is scanned
/// with the whole set.
pub(crate) const MAX_GROUPS: usize = 32;

/// Which compiled rules a file is scanned with: an index into a rule set's
/// compiled rules, where [`GroupId::WHOLE_SET`] is every rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct GroupId(pub(crate) usize);

impl GroupId {
    /// The whole rule set.
    pub(crate) const WHOLE_SET: GroupId = GroupId(0);
}

/// Which group each file type is scanned with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupTable {
    /// `(suffix, group)`, longest suffix first.
    pub(crate) by_suffix: Vec<(String, GroupId)>,
    /// The group of paths that end with no suffix.
    pub(crate) default: GroupId,
}

impl GroupTable {
    /// No grouping: every file is scanned with the whole set.
    pub(crate) fn none() -> GroupTable {
        GroupTable { by_suffix: Vec::new(), default: GroupId::WHOLE_SET }
    }

    /// The group to scan a file at `path` with.
    pub(crate) fn group_for(&self, path: &str) -> GroupId {
        self.by_suffix
            .iter()
            .find(|(suffix, _)| crate::metadata::ends_with_ignoring_case(path, suffix))
            .map_or(self.default, |g| g.1)
    }
}

/// The groups worth compiling for a rule set, and which file types use them.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// The rules of each group to compile (indices into the rule set's
    /// rules), fewer than all and at least one.
    pub(crate) groups: Vec<Vec<usize>>,
    /// Each suffix (`None`: paths with none) and the index in `groups` of
    /// its rules; `None` where the whole set is used.
    classes: Vec<(Option<String>, Option<usize>)>,
}

impl Plan {
    /// Plans the groups of a rule set whose rules are `info`.
    pub(crate) fn new(info: &[RuleInfo]) -> Plan {
        // Private rules are never reported: they only come in as dependencies.
        let public: Vec<usize> = (0..info.len()).filter(|&i| !info[i].private).collect();
        let suffixes: BTreeSet<&str> =
            public.iter().filter_map(|&i| info[i].filetypes.as_ref()).flatten().map(String::as_str).collect();
        if suffixes.is_empty() {
            return Plan::default();
        }
        let rules_for = |path: &str| -> Vec<usize> {
            public.iter().copied().filter(|&i| info[i].applies_to(path)).collect::<Vec<usize>>()
        };
        // A path that is exactly the suffix ends with the same suffixes as
        // any longer path whose longest suffix it is.
        let mut classes: Vec<(Option<String>, Vec<usize>)> =
            suffixes.iter().map(|&suffix| (Some(suffix.to_owned()), rules_for(suffix))).collect();
        classes.push((None, public.iter().copied().filter(|&i| info[i].filetypes.is_none()).collect()));

        let mut distinct: BTreeMap<Vec<usize>, usize> = BTreeMap::new();
        for (_, rules) in &classes {
            if rules.len() < public.len() && !rules.is_empty() && !distinct.contains_key(rules) {
                let next = distinct.len();
                distinct.insert(rules.clone(), next);
            }
        }
        if distinct.len() > MAX_GROUPS {
            log::info!("{} rule groups by file type: too many, scanning with the whole set", distinct.len());
            return Plan::default();
        }
        let classes =
            classes.into_iter().map(|(suffix, rules)| (suffix, distinct.get(&rules).copied())).collect();
        let mut groups: Vec<(usize, Vec<usize>)> =
            distinct.into_iter().map(|(rules, i)| (i, rules)).collect();
        groups.sort_unstable();
        Plan { groups: groups.into_iter().map(|(_, rules)| rules).collect(), classes }
    }

    /// The table once the groups are compiled: `ids[i]` is the id given to
    /// `groups[i]` ([`GroupId::WHOLE_SET`] where it did not compile).
    pub(crate) fn table(&self, ids: &[GroupId]) -> GroupTable {
        let id = |group: Option<usize>| group.and_then(|g| ids.get(g).copied()).unwrap_or(GroupId::WHOLE_SET);
        let mut table = GroupTable::none();
        for (suffix, group) in &self.classes {
            match suffix {
                Some(suffix) => table.by_suffix.push((suffix.clone(), id(*group))),
                None => table.default = id(*group),
            }
        }
        table.by_suffix.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RuleSet;
    use crate::source::tests::SOURCE;

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
        let groups = rules.table();
        // .py, setup.py, .js, .mjs and files of no listed type.
        assert_eq!(rules.group_count(), 5);
        let py = groups.group_for("pkg/mod.py");
        let setup = groups.group_for("pkg/setup.py");
        let js = groups.group_for("x.js");
        let other = groups.group_for("lib.so");
        assert!([py, setup, js, other].iter().all(|&g| g != GroupId::WHOLE_SET));
        assert_ne!(py, setup);
        assert_eq!(js, groups.group_for("lib/y.js"));
        let idents = |group: GroupId| -> Vec<String> {
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
        assert_eq!(idents(GroupId::WHOLE_SET).len(), 8, "the whole set");
    }

    #[test]
    fn a_rule_set_without_file_types_has_no_groups() {
        let rules = RuleSet::compile("h", [("a.yar", "rule a { condition: true }")]).unwrap();
        assert_eq!(rules.group_count(), 0);
        assert_eq!(rules.group_for("x.py"), GroupId::WHOLE_SET);
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
        assert!(crate::source::Sliced::parse(&with_include).is_none());
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
        assert_eq!(rules.group_for("x.t1"), GroupId::WHOLE_SET);
        let fewer: String = (0..MAX_GROUPS - 1)
            .map(|i| format!("rule r{i} {{ meta: filetype = \".t{i}\" condition: true }}\n"))
            .collect();
        assert_eq!(RuleSet::compile("h", [("a.yar", fewer)]).unwrap().group_count(), MAX_GROUPS - 1);
    }
}
