//! Compiling sources with yara-x: the whole set, and the planned groups
//! (in parallel on the current rayon pool).

use rayon::prelude::*;

use crate::metadata::RuleInfo;
use crate::plan::{GroupId, GroupTable, Plan};
use crate::rules::CompileError;
use crate::source::{Sliced, subset_sources};

/// Compiles one namespace per `(name, source)`; returns the rules and the
/// compiler's warnings.
pub(crate) fn compile_namespaces(
    sources: &[(String, String)],
) -> Result<(yara_x::Rules, Vec<String>), CompileError> {
    let mut compiler = yara_x::Compiler::new();
    for (name, source) in sources {
        compiler.new_namespace(name);
        let code = yara_x::SourceCode::from(source.as_str()).with_origin(name);
        compiler.add_source(code).map_err(|err| syntax_error(name, &err))?;
    }
    let warnings = compiler.warnings().iter().map(|w| w.to_string()).collect();
    Ok((compiler.build(), warnings))
}

fn syntax_error(source_name: &str, err: &yara_x::errors::CompileError) -> CompileError {
    let line = err
        .labels()
        .next()
        .and_then(|label| serde_json::to_value(&label).ok())
        .and_then(|value| value.get("line").and_then(|l| l.as_u64()))
        .map(|l| l as usize);
    CompileError::Syntax {
        source_name: source_name.to_owned(),
        line,
        message: err.title().to_owned(),
        report: err.to_string(),
    }
}

/// Compiles the groups `plan` asks for from `sources` (whose rules are
/// `info`): the compiled groups, numbered from 1 in order, and the table. A
/// group that does not compile falls back to the whole set.
pub(crate) fn compile_groups(
    sources: &[(String, String)],
    info: &[RuleInfo],
    plan: &Plan,
) -> (Vec<yara_x::Rules>, GroupTable) {
    if plan.groups.is_empty() {
        return (Vec::new(), GroupTable::none());
    }
    let sliced: Vec<(&str, &str, Option<Sliced<'_>>)> = sources
        .iter()
        .map(|(name, source)| (name.as_str(), source.as_str(), Sliced::parse(source)))
        .collect();
    let results: Vec<Option<yara_x::Rules>> = plan
        .groups
        .par_iter()
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
    let ids: Vec<GroupId> = results
        .into_iter()
        .map(|result| match result {
            Some(yara) => {
                compiled.push(yara);
                GroupId(compiled.len())
            }
            None => GroupId::WHOLE_SET,
        })
        .collect();
    (compiled, plan.table(&ids))
}
