//! The edge between scans and the wire: a job and what became of it ->
//! the `PUT /package` body.

use dragonfly_api::{Job, JobResult, ScanReuse};
use dragonfly_engine::{PackageReport, ReuseCounts, ReuseMode};

use crate::failure::FailureReason;

/// The result to report for `job`: its score, matched rules, rule hash
/// and the inspector link to its most malicious file, or the reason it
/// could not be scanned. The job's lease fields are echoed either way.
pub fn job_result(job: &Job, outcome: &Result<PackageReport, FailureReason>) -> JobResult {
    match outcome {
        Ok(report) => {
            let inspector_url = report.most_malicious_file().and_then(|(dist, file)| {
                dragonfly_api::inspector_url(&job.name, &job.version, &dist.source, &file.path)
            });
            JobResult::success(job, report.score(), inspector_url, report.rules_matched(), &report.rule_hash)
        }
        Err(reason) => JobResult::failure(job, reason.to_string()),
    }
}

/// `result` with the `scan_reuse` telemetry of `report`, when reuse was
/// on (in `mode`) for it.
pub(crate) fn with_reuse(result: JobResult, mode: Option<ReuseMode>, report: &PackageReport) -> JobResult {
    let Some(mode) = mode.filter(|&m| m != ReuseMode::Off) else { return result };
    let mut counts = ReuseCounts::default();
    for dist in &report.distributions {
        counts.add(&dist.reuse);
    }
    result.with_scan_reuse(ScanReuse {
        mode: mode.as_str().to_owned(),
        lookups: counts.lookups,
        candidate_files: counts.candidate_files,
        reused_files: counts.reused_files,
        reused_bytes: counts.reused_bytes,
        inserted_files: counts.inserted_files,
        evicted_files: counts.evicted_files,
        errors: counts.errors,
        validated_files: counts.validated_files,
        mismatched_files: counts.mismatched_files,
        overhead_us: counts.overhead_us,
        engine_us: counts.engine_us,
        engine_files: counts.engine_files,
        engine_bytes: counts.engine_bytes,
    })
}

#[cfg(test)]
mod tests {
    use dragonfly_engine::{DistributionReport, FileError, FileReport, RuleMatch, UnscannedFile};
    use expect_test::{Expect, expect};

    use super::*;
    use crate::failure::{DownloadError, Problem};

    fn job(lease: bool) -> Job {
        Job {
            name: "discord-py".into(),
            version: "2.2.3".into(),
            distributions: vec![URL.into()],
            hash: "rules-1".into(),
            attempt: lease.then_some(2),
            assignment_id: lease.then(|| "a-1".into()),
        }
    }

    const URL: &str = "https://files.pythonhosted.org/packages/36/ce/3a/discord.py-2.2.3.tar.gz";

    fn report(files: Vec<FileReport>) -> PackageReport {
        PackageReport {
            name: "discord-py".into(),
            version: "2.2.3".into(),
            rule_hash: "rules-1".into(),
            distributions: vec![DistributionReport { source: URL.into(), files, ..Default::default() }],
        }
    }

    fn file(path: &str, rules: &[(&str, i64)]) -> FileReport {
        let matches: Vec<RuleMatch> = rules
            .iter()
            .map(|&(name, weight)| RuleMatch {
                name: name.into(),
                source: "a.yar".into(),
                weight,
                evidence: Vec::new(),
                match_count: 1,
            })
            .collect();
        FileReport {
            path: path.into(),
            aliases: Vec::new(),
            size: 10,
            sha256: String::new(),
            score: matches.iter().map(|m| m.weight).sum(),
            matches,
            suppressed: Vec::new(),
        }
    }

    fn check(job: &Job, outcome: Result<PackageReport, FailureReason>, expected: Expect) {
        expected.assert_eq(&serde_json::to_string_pretty(&job_result(job, &outcome)).unwrap());
    }

    #[test]
    fn success_with_a_match_links_the_most_malicious_file() {
        let files = vec![
            file("discord.py-2.2.3/setup.py", &[("setup_system", 7)]),
            file("discord.py-2.2.3/discord/client.py", &[("exec_b64", 5), ("webhook", 3)]),
        ];
        check(
            &job(true),
            Ok(report(files)),
            expect![[r#"
                {
                  "name": "discord-py",
                  "version": "2.2.3",
                  "score": 15,
                  "inspector_url": "https://inspector.pypi.io/project/discord-py/2.2.3/packages/36/ce/3a/discord.py-2.2.3.tar.gz/discord.py-2.2.3/discord/client.py",
                  "rules_matched": [
                    "exec_b64",
                    "setup_system",
                    "webhook"
                  ],
                  "commit": "rules-1",
                  "attempt": 2,
                  "assignment_id": "a-1"
                }"#]],
        );
    }

    #[test]
    fn clean_success_without_lease_fields() {
        check(
            &job(false),
            Ok(report(vec![])),
            expect![[r#"
                {
                  "name": "discord-py",
                  "version": "2.2.3",
                  "score": 0,
                  "inspector_url": null,
                  "rules_matched": [],
                  "commit": "rules-1"
                }"#]],
        );
    }

    #[test]
    fn failures_list_every_problem() {
        let problems = vec![
            Problem::Download { url: URL.into(), error: DownloadError::TooLarge { limit: 1000 } },
            Problem::File {
                url: "https://h/b.whl".into(),
                file: UnscannedFile { path: "big.py".into(), error: FileError::Timeout { seconds: 10 } },
            },
        ];
        check(
            &job(true),
            Err(FailureReason::Unscanned(problems)),
            expect![[r#"
                {
                  "name": "discord-py",
                  "version": "2.2.3",
                  "reason": "https://files.pythonhosted.org/packages/36/ce/3a/discord.py-2.2.3.tar.gz: download too large: more than 1000 bytes; https://h/b.whl: `big.py`: scan timed out after 10 s",
                  "attempt": 2,
                  "assignment_id": "a-1"
                }"#]],
        );
        check(
            &job(false),
            Err(FailureReason::NoDistributions),
            expect![[r#"
                {
                  "name": "discord-py",
                  "version": "2.2.3",
                  "reason": "the job lists no distributions"
                }"#]],
        );
    }
}
