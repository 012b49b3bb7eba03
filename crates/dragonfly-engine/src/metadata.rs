//! The rule metadata the scorer relies on: `weight` and `filetype`.

use yara_x::MetaValue;

use crate::rules::CompileError;

/// What the scorer knows about one compiled rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// The rule file that defines it (`rules` when that is not known, as
    /// for rules read back from the cache).
    pub source: String,
    /// The rule's identifier, as reported in `rules_matched`.
    pub name: String,
    /// Contribution to a score (`weight` metadata; 0 when absent).
    pub weight: i64,
    /// File-name suffixes the rule applies to (`filetype` metadata); `None`
    /// means every file.
    pub filetypes: Option<Vec<String>>,
    /// What the rule looks for (`description` metadata), if it says.
    pub description: Option<String>,
    /// A private rule is never reported: it only serves other rules'
    /// conditions, so it alone never makes a file worth scanning.
    pub private: bool,
}

impl RuleInfo {
    /// Whether a match of this rule counts for a file at `path`. Suffixes
    /// match ASCII case-insensitively: on a case-insensitive file system
    /// `SETUP.PY` is what pip runs as `setup.py`.
    pub fn applies_to(&self, path: &str) -> bool {
        match &self.filetypes {
            None => true,
            Some(suffixes) => suffixes.iter().any(|s| ends_with_ignoring_case(path, s)),
        }
    }
}

/// Whether `path` ends with `suffix`, ignoring ASCII case.
pub(crate) fn ends_with_ignoring_case(path: &str, suffix: &str) -> bool {
    path.len() >= suffix.len()
        && path.as_bytes()[path.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// Reads one compiled rule's metadata (the rule defined in `source`); odd
/// but usable values add a line to `warnings`, unusable ones are errors.
pub(crate) fn read_metadata(
    rule: &yara_x::Rule,
    source: &str,
    warnings: &mut Vec<String>,
) -> Result<RuleInfo, CompileError> {
    let namespace = source.to_owned();
    let name = rule.identifier().to_owned();
    let bad = |message: String| CompileError::Metadata {
        source_name: namespace.clone(),
        rule: name.clone(),
        message,
    };
    let mut weight = None;
    let mut filetypes = None;
    let mut description = None;
    for (key, value) in rule.metadata() {
        match key {
            "weight" => {
                if weight.is_some() {
                    warnings.push(format!(
                        "rule `{name}` in `{namespace}`: `weight` given twice, the last one counts"
                    ));
                }
                weight = Some(match value {
                    MetaValue::Integer(n) => n,
                    MetaValue::String(s) => {
                        let n = s.trim().parse::<i64>().map_err(|_| {
                            bad(format!("`weight` must be an integer, found the string {s:?}"))
                        })?;
                        warnings.push(format!(
                            "rule `{name}` in `{namespace}`: `weight` is the string {s:?}, read as {n}"
                        ));
                        n
                    }
                    other => return Err(bad(format!("`weight` must be an integer, found {other:?}"))),
                });
            }
            "filetype" => {
                let MetaValue::String(s) = value else {
                    return Err(bad(format!("`filetype` must be a string of suffixes, found {value:?}")));
                };
                let suffixes: Vec<String> = s.split_whitespace().map(str::to_owned).collect();
                if suffixes.is_empty() {
                    warnings.push(format!(
                        "rule `{name}` in `{namespace}`: empty `filetype`, the rule applies to every file"
                    ));
                    filetypes = None;
                } else {
                    filetypes = Some(suffixes);
                }
            }
            "description" => {
                if let MetaValue::String(s) = value {
                    description = Some(s.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok(RuleInfo {
        source: namespace,
        name,
        weight: weight.unwrap_or(0),
        filetypes,
        description,
        private: rule.is_private(),
    })
}
