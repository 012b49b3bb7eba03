//! `scan --format sarif`: one SARIF 2.1.0 run, one result per (file, rule).

use std::collections::BTreeMap;

use dragonfly_engine::{RuleInfo, RuleSet};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::json;
use serde_sarif::sarif::{
    ArtifactLocation, Invocation, Location, Message, MultiformatMessageString, Notification,
    PhysicalLocation, PropertyBag, Region, ReportingConfiguration, ReportingDescriptor,
    Result as SarifResult, ResultLevel, Run, Sarif, Suppression, Tool, ToolComponent,
};

use super::{FileRow, InputResult, RuleRow};

/// The schema the log names.
const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// What is escaped in a URL's path: everything not allowed in a URI path
/// but `%`, whose escapes stay as they are (`!` and `/` stay too, so
/// `a.tar.gz!/b/c.py` names a member of an archive).
const URL_PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// What is escaped in a file path made a URI: also `%`.
const PATH: &AsciiSet = &URL_PATH.add(b'%');

/// The SARIF log of `results`, scanned with `rules`.
pub fn log(results: &[InputResult], rules: &RuleSet) -> Sarif {
    let mut used: BTreeMap<&str, usize> = BTreeMap::new();
    for file in results.iter().flat_map(|r| &r.files) {
        for rule in file.rules.iter().chain(file.suppressed.iter().map(|s| &s.rule)) {
            used.insert(rule.name.as_str(), 0);
        }
    }
    for (i, index) in used.values_mut().enumerate() {
        *index = i;
    }
    let descriptors: Vec<ReportingDescriptor> = used
        .keys()
        .map(|name| descriptor(name, rules.rules().iter().find(|info| info.name == *name)))
        .collect();

    let mut sarif_results = Vec::new();
    for result in results {
        let baseline = result.baseline.is_some();
        for file in &result.files {
            for rule in &file.rules {
                sarif_results.push(finding(file, rule, used[rule.name.as_str()], baseline, None));
            }
            for suppressed in file.suppressed.iter().filter(|s| s.by == "suppression") {
                let rule = &suppressed.rule;
                let reason = suppressed.reason.as_deref().unwrap_or_default();
                sarif_results.push(finding(file, rule, used[rule.name.as_str()], baseline, Some(reason)));
            }
        }
    }

    let errors: Vec<Notification> = results
        .iter()
        .flat_map(|r| &r.errors)
        .map(|error| {
            Notification::builder()
                .message(Message::builder().text(error.clone()).build())
                .level(json!("error"))
                .build()
        })
        .collect();
    let mut invocation = Invocation::builder().execution_successful(errors.is_empty()).build();
    if !errors.is_empty() {
        invocation.tool_execution_notifications = Some(errors);
    }

    let driver = ToolComponent::builder()
        .name(env!("CARGO_PKG_NAME"))
        .version(env!("CARGO_PKG_VERSION"))
        .information_uri(env!("CARGO_PKG_REPOSITORY"))
        .rules(descriptors)
        .build();
    let run = Run::builder()
        .tool(Tool::builder().driver(driver).build())
        .results(sarif_results)
        .invocations(vec![invocation])
        .column_kind(json!("unicodeCodePoints"))
        .properties(properties([("ruleHash", json!(rules.hash()))]))
        .build();
    Sarif::builder().schema(SCHEMA).version(json!("2.1.0")).runs(vec![run]).build()
}

fn properties<const N: usize>(values: [(&str, serde_json::Value); N]) -> PropertyBag {
    PropertyBag::builder()
        .additional_properties(values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<BTreeMap<_, _>>())
        .build()
}

/// A rule's entry in the driver: its description, weight and file types.
fn descriptor(name: &str, info: Option<&RuleInfo>) -> ReportingDescriptor {
    let mut descriptor = ReportingDescriptor::builder()
        .id(name)
        .default_configuration(ReportingConfiguration::builder().level(json!("warning")).build())
        .build();
    if let Some(info) = info {
        let text = info.description.clone().unwrap_or_else(|| format!("YARA rule {name}"));
        descriptor.short_description = Some(MultiformatMessageString::builder().text(text).build());
        let filetypes = info.filetypes.clone().map_or(json!("*"), |suffixes| json!(suffixes));
        descriptor.properties = Some(properties([
            ("weight", json!(info.weight)),
            ("filetype", filetypes),
            ("source", json!(info.source)),
        ]));
    }
    descriptor
}

/// The result for `rule` in `file`; `suppressed` gives the suppression's
/// reason.
fn finding(
    file: &FileRow,
    rule: &RuleRow,
    index: usize,
    baseline: bool,
    suppressed: Option<&str>,
) -> SarifResult {
    let uri = artifact_uri(file);
    let location = |region: Option<Region>| {
        let mut physical = PhysicalLocation::builder()
            .artifact_location(ArtifactLocation::builder().uri(uri.clone()).build())
            .build();
        physical.region = region;
        Location::builder().physical_location(physical).build()
    };
    let mut locations: Vec<Location> = rule
        .evidence
        .iter()
        .map(|e| {
            // Line and column and byte offset and length describe the
            // same bytes; the excerpt is escaped text, so it goes in the
            // message, not in a snippet of the file's content.
            let region = Region::builder()
                .start_line(e.line as i64)
                .start_column(e.column as i64)
                .end_line(e.end_line as i64)
                .end_column(e.end_column as i64)
                .byte_offset(e.offset as i64)
                .byte_length(e.length as i64)
                .build();
            location(Some(region))
        })
        .collect();
    if locations.is_empty() {
        locations.push(location(None));
    }
    let text = match rule.evidence.first() {
        Some(e) => format!(
            "{} (weight {}) matched {} at line {}: {}",
            rule.name, rule.weight, file.path, e.line, e.excerpt
        ),
        None => format!("{} (weight {}) matched {}", rule.name, rule.weight, file.path),
    };
    let mut result = SarifResult::builder()
        .rule_id(rule.name.clone())
        .rule_index(index as i64)
        .level(ResultLevel::Warning)
        .message(Message::builder().text(text).build())
        .locations(locations)
        // One alert per rule, content and place: the same content elsewhere
        // (moved into setup.py, say) is another alert.
        .partial_fingerprints(BTreeMap::from([(
            "dragonflyFinding/v1".to_owned(),
            format!("{}:{}:{}", rule.name, file.sha256, file.place.as_deref().unwrap_or(&file.path)),
        )]))
        .properties(properties([
            ("weight", json!(rule.weight)),
            ("matchCount", json!(rule.match_count)),
            ("sha256", json!(file.sha256)),
            ("distribution", json!(source_uri(&file.distribution))),
        ]))
        .build();
    if baseline {
        result.baseline_state = Some(json!("new"));
    }
    if let Some(reason) = suppressed {
        result.suppressions =
            Some(vec![Suppression::builder().kind(json!("external")).justification(reason).build()]);
    }
    result
}

/// Where `file` is: `archive!/path` inside an archive, `dir/path` in a
/// directory, escaped as a URI reference.
fn artifact_uri(file: &FileRow) -> String {
    let base = source_uri(&file.distribution);
    let path = utf8_percent_encode(&file.path, PATH);
    if file.in_archive { format!("{base}!/{path}") } else { format!("{}/{path}", base.trim_end_matches('/')) }
}

/// A distribution's source as a URI: a URL without credentials, query or
/// fragment (a log is for uploading), or an escaped path.
pub(super) fn source_uri(source: &str) -> String {
    let Some((scheme, rest)) = source.split_once("://").filter(|(s, _)| matches!(*s, "http" | "https"))
    else {
        return utf8_percent_encode(source, PATH).to_string();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let host = authority.rsplit('@').next().unwrap_or(authority);
    format!("{scheme}://{}/{}", utf8_percent_encode(host, PATH), utf8_percent_encode(path, URL_PATH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_uris_carry_no_credentials_or_queries() {
        assert_eq!(
            source_uri("https://user:secret@mirror.example/p/pkg-1.0.tar.gz?token=x#sha256=ab"),
            "https://mirror.example/p/pkg-1.0.tar.gz"
        );
        assert_eq!(source_uri("https://h.example/a%20b/c d.whl"), "https://h.example/a%20b/c%20d.whl");
        assert_eq!(source_uri("dist/my pkg-1.0.tar.gz"), "dist/my%20pkg-1.0.tar.gz");
        assert_eq!(source_uri("dist/100%.zip"), "dist/100%25.zip");
    }
}
