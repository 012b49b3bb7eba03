//! Results a fleet of nodes shares by content: before the files of a
//! distribution are scanned, the digests the local [`ReuseCache`] does not
//! know are looked up in batches; after, what was scanned is offered back.
//!
//! The engine knows only [`SharedResults`]; where the results live (the
//! control server's scan cache) and the budgets of asking are the
//! implementation's. A shared result is checked like a kept one (decoded
//! only if a scan could give it, and audited); one found wrong is revoked.
//!
//! [`ReuseCache`]: crate::ReuseCache

use std::fmt;
use std::sync::Arc;

use crate::plan::GroupId;
use crate::reuse::{Raw, RuleParts};

/// At most this many files' digests are held back and looked up at once.
pub const SHARED_BATCH_FILES: usize = 128;

/// At most about this many bytes of files are held back for one lookup; a
/// larger file is looked up with those held before it.
pub const SHARED_BATCH_BYTES: usize = 8 << 20;

/// At most this many files' results of one distribution are offered.
pub const SHARED_WRITE_FILES: usize = 4 * SHARED_BATCH_FILES;

/// Why the shared results gave nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedError {
    /// Not asked: switched off, out of budget, or told to wait. Not an error.
    Skipped,
    /// The call failed (an error, a refusal or a timeout): scan normally.
    Failed,
}

/// One file's shared result: its SHA-256 (64 lower-case hex digits) and
/// the result as JSON text, a format only the engine reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedEntry {
    /// The file's SHA-256, lower-case hex.
    pub digest: String,
    /// The result: a JSON array.
    pub result: String,
}

/// Where a fleet's nodes share results, for one rule set and engine (see
/// [`Engine::with_shared`](crate::Engine::with_shared)). Calls block; each
/// is bounded in time by the implementation. Called from scanning threads.
pub trait SharedResults: Send + Sync + fmt::Debug {
    /// Whether asking is worth it now (not closed, not out of budget):
    /// when not, a distribution's files are not held back for it.
    fn usable(&self) -> bool {
        true
    }

    /// The results known for `digests` (each 64 lower-case hex digits, at
    /// most [`SHARED_BATCH_FILES`]); digests not known are left out.
    fn lookup(&self, digests: &[String]) -> Result<Vec<SharedEntry>, SharedError>;

    /// Offers the results of files just scanned.
    fn write(&self, entries: Vec<SharedEntry>) -> Result<(), SharedError>;

    /// A shared result differed from a new scan of the same bytes: every
    /// shared result of this rule set and engine is to be dropped, and no
    /// more are asked for.
    fn revoke(&self);
}

/// One group's result in the shared form: per rule its name, match count
/// and `[pattern, start, end]` ranges.
type GroupParts<N, P> = (usize, Vec<RuleParts<N, P>>);

/// The shared form of a file's results, one element per rule group:
/// `[[group, [[rule, count, [[pattern, start, end], ...]], ...]], ...]`.
pub(crate) fn encode(groups: &[(GroupId, Arc<Raw>)], rules: &crate::RuleSet) -> String {
    let parts: Vec<GroupParts<&str, &str>> =
        groups.iter().map(|(group, raw)| (group.0, raw.parts(rules))).collect();
    serde_json::to_string(&parts).unwrap_or_else(|_| "[]".to_owned())
}

/// Reads [`encode`]'s form for a file of `size` bytes: each group's result,
/// or `None` when the text is not that or holds anything a scan of such a
/// file with `rules` could not give.
pub(crate) fn decode(text: &str, rules: &crate::RuleSet, size: usize) -> Option<Vec<(GroupId, Raw)>> {
    let parts: Vec<GroupParts<String, String>> = serde_json::from_str(text).ok()?;
    let mut groups: Vec<(GroupId, Raw)> = Vec::with_capacity(parts.len());
    for (group, rule_parts) in parts {
        if group > rules.group_count() || groups.iter().any(|(g, _)| g.0 == group) {
            return None;
        }
        groups.push((GroupId(group), Raw::checked(rule_parts, rules, size)?));
    }
    Some(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> crate::RuleSet {
        crate::RuleSet::compile(
            "t",
            [(
                "a.yar",
                r#"rule a { meta: filetype = ".py" strings: $x = "exec(" condition: $x }
                   rule b { strings: $y = "eval" condition: $y }"#,
            )],
        )
        .unwrap()
    }

    #[test]
    fn results_read_back_as_written() {
        let rules = rules();
        let raw = Raw::checked(vec![("a", 3, vec![("$x".to_owned(), 2, 7)])], &rules, 10).unwrap();
        let groups = vec![(GroupId(0), Arc::new(raw.clone())), (GroupId(1), Arc::new(Raw::default()))];
        let text = encode(&groups, &rules);
        assert_eq!(text, r#"[[0,[["a",3,[["$x",2,7]]]]],[1,[]]]"#);
        assert_eq!(decode(&text, &rules, 10), Some(vec![(GroupId(0), raw), (GroupId(1), Raw::default())]));
    }

    #[test]
    fn what_a_scan_could_not_give_is_refused() {
        let rules = rules();
        for bad in [
            "{}",
            "[[0,[[\"nope\",1,[]]]]]",           // unknown rule
            "[[0,[[\"a\",1,[[\"$x\",2,11]]]]]]", // past the end of the file
            "[[0,[[\"a\",1,[[\"$x\",5,2]]]]]]",  // backwards
            "[[0,[[\"a\",0,[[\"$x\",2,7]]]]]]",  // more ranges than counted
            "[[0,[[\"a\",1,[]],[\"a\",1,[]]]]]", // a rule twice
            "[[0,[]],[0,[]]]",                   // a group twice
            "[[99,[]]]",                         // no such group
            "[[0,[[\"a\",1,[[\"x\",2,7]]]]]]",   // not a pattern
        ] {
            assert_eq!(decode(bad, &rules, 10), None, "{bad}");
        }
        let nine: Vec<String> = (0..9).map(|i| format!("[\"$x\",{i},{}]", i + 1)).collect();
        let many = format!("[[0,[[\"a\",9,[{}]]]]]", nine.join(","));
        assert_eq!(decode(&many, &rules, 10), None, "more than MAX_EVIDENCE ranges");
    }
}
