//! Compiling with yara-x: the whole set as one unit, the way the original
//! client does (libyara's relaxed regular-expression syntax accepted), and
//! the planned groups (in parallel on the current rayon pool).

use rayon::prelude::*;

use crate::metadata::RuleInfo;
use crate::plan::{GroupId, GroupTable, Plan};
use crate::rules::CompileError;
use crate::source::{LineMap, Unit};

/// The origin the joined text is compiled under (it names no file).
const ORIGIN: &str = "rules";

/// Compiles the files of `unit` as one text; returns the rules and the
/// compiler's warnings. A rule name defined twice is an error naming both
/// files; a syntax error names the file and its line.
pub(crate) fn compile_unit(unit: &Unit<'_>) -> Result<(yara_x::Rules, Vec<String>), CompileError> {
    if let Some((rule, first, second)) = unit.duplicate() {
        return Err(CompileError::DuplicateRule { rule, first: first.to_owned(), second: second.to_owned() });
    }
    let (text, lines) = unit.text();
    compile_text(&text, &lines)
}

fn compile_text(text: &str, lines: &LineMap<'_>) -> Result<(yara_x::Rules, Vec<String>), CompileError> {
    let mut compiler = yara_x::Compiler::new();
    // Rules were written for libyara, whose regular expressions are laxer.
    compiler.relaxed_re_syntax(true);
    let code = yara_x::SourceCode::from(text).with_origin(ORIGIN);
    compiler.add_source(code).map_err(|err| syntax_error(lines, &err))?;
    let warnings = compiler.warnings().iter().map(|w| w.to_string()).collect();
    Ok((compiler.build(), warnings))
}

fn syntax_error(lines: &LineMap<'_>, err: &yara_x::errors::CompileError) -> CompileError {
    let line = err
        .labels()
        .next()
        .and_then(|label| serde_json::to_value(&label).ok())
        .and_then(|value| value.get("line").and_then(|l| l.as_u64()))
        .map(|l| l as usize);
    // The file the line falls in, and the line within it.
    let (source_name, line) =
        match line.and_then(|l| lines.iter().rev().find(|(start, _)| *start <= l).map(|f| (f, l))) {
            Some(((start, name), l)) => ((*name).to_owned(), Some(l - start + 1)),
            None => (lines.first().map_or(ORIGIN, |(_, name)| name).to_owned(), None),
        };
    CompileError::Syntax { source_name, line, message: err.title().to_owned(), report: err.to_string() }
}

/// Compiles the groups `plan` asks for from `unit` (whose rules are
/// `info`): the compiled groups, numbered from 1 in order, and the table. A
/// group that does not compile falls back to the whole set.
pub(crate) fn compile_groups(
    unit: &Unit<'_>,
    info: &[RuleInfo],
    plan: &Plan,
) -> (Vec<yara_x::Rules>, GroupTable) {
    if plan.groups.is_empty() {
        return (Vec::new(), GroupTable::none());
    }
    let results: Vec<Option<yara_x::Rules>> = plan
        .groups
        .par_iter()
        .map(|rules| {
            let names = rules.iter().map(|&i| info[i].name.as_str()).collect();
            compile_text(&unit.subset(&names), &vec![(1, ORIGIN)])
        })
        .map(|compiled| match compiled {
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
