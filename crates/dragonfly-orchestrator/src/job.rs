//! A job on its way through the node, and how a finished one is handed to
//! the sender.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use crossbeam_channel::Sender;
use dragonfly_api::{Job, JobResult};
use dragonfly_engine::{DistributionReport, Engine, PackageReport, ReuseMode};

use crate::failure::{FailureReason, Problem};
use crate::result::job_result;
use crate::rules::Rules;
use crate::stats::Stats;

/// A job as leased: loader -> downloaders.
#[derive(Debug)]
pub(crate) struct Leased {
    pub(crate) job: Job,
    pub(crate) leased_at: Instant,
}

/// A job whose distributions are being downloaded and scanned.
#[derive(Debug)]
pub(crate) struct JobState {
    pub(crate) job: Job,
    pub(crate) leased_at: Instant,
    pub(crate) started: Instant,
    /// No file is started after this: a result after the lease would be
    /// refused anyway.
    deadline: Instant,
    /// The rules every distribution of this job is scanned with: the ones
    /// current when its first distribution was scanned.
    engine: OnceLock<Option<Engine>>,
    /// One entry per distribution, in the job's order.
    distributions: Mutex<Vec<Option<Result<DistributionReport, Problem>>>>,
    remaining: AtomicUsize,
}

/// One downloaded distribution (or why it could not be): downloaders ->
/// scanning. `reserved` bytes of the download budget are held for it.
#[derive(Debug)]
pub(crate) struct Downloaded {
    pub(crate) job: std::sync::Arc<JobState>,
    pub(crate) index: usize,
    pub(crate) url: String,
    pub(crate) bytes: Result<Vec<u8>, Problem>,
    pub(crate) reserved: u64,
}

impl JobState {
    /// A job with at least one distribution, to be scanned by `deadline`.
    pub(crate) fn new(leased: Leased, deadline: Instant) -> JobState {
        let n = leased.job.distributions.len();
        JobState {
            job: leased.job,
            leased_at: leased.leased_at,
            started: Instant::now(),
            deadline,
            engine: OnceLock::new(),
            distributions: Mutex::new((0..n).map(|_| None).collect()),
            remaining: AtomicUsize::new(n),
        }
    }

    /// The engine to scan this job's distributions with (`None`: no rules
    /// were loaded when the first one was ready).
    pub(crate) fn engine(&self, rules: &Rules<'_>) -> Option<&Engine> {
        self.engine
            .get_or_init(|| {
                rules.engine_for(&self.job).map(|engine| engine.with_deadline(Some(self.deadline)))
            })
            .as_ref()
    }

    /// The reuse mode of the engine the job was scanned with, if it had one.
    pub(crate) fn reuse_mode(&self) -> Option<ReuseMode> {
        self.engine.get()?.as_ref()?.reuse().map(|cache| cache.mode())
    }

    /// Records what became of distribution `index`; true when it was the
    /// last one outstanding.
    pub(crate) fn record(&self, index: usize, outcome: Result<DistributionReport, Problem>) -> bool {
        if let Some(slot) = self.distributions.lock().unwrap_or_else(|e| e.into_inner()).get_mut(index) {
            *slot = Some(outcome);
        }
        self.remaining.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// The job's report, or every problem that kept it from being scanned
    /// completely. Call once, after the last [`JobState::record`].
    pub(crate) fn outcome(&self) -> Result<PackageReport, FailureReason> {
        let outcomes = std::mem::take(&mut *self.distributions.lock().unwrap_or_else(|e| e.into_inner()));
        let mut reports = Vec::with_capacity(outcomes.len());
        let mut problems = Vec::new();
        for outcome in outcomes.into_iter().flatten() {
            match outcome {
                Ok(report) => {
                    problems.extend(report.problems().map(Problem::from));
                    reports.push(report);
                }
                Err(problem) => problems.push(problem),
            }
        }
        if !problems.is_empty() {
            return Err(FailureReason::Unscanned(problems));
        }
        let rule_hash = match self.engine.get() {
            Some(Some(engine)) => engine.rules().hash().to_owned(),
            _ => String::new(),
        };
        Ok(PackageReport {
            name: self.job.name.clone(),
            version: self.job.version.clone(),
            rule_hash,
            distributions: reports,
        })
    }
}

/// Counts and logs a finished job and queues its result for the sender.
pub(crate) fn hand_over(
    stats: &Stats,
    results: &Sender<JobResult>,
    job: &Job,
    outcome: Result<PackageReport, FailureReason>,
    reuse: Option<ReuseMode>,
) {
    let (package, version) = (job.name.as_str(), job.version.as_str());
    match &outcome {
        Ok(report) => {
            stats.job_succeeded();
            log::info!(
                package, version;
                "score {} rules [{}] (rules {})",
                report.score(),
                report.rules_matched().join(", "),
                report.rule_hash
            );
            if let Some((dist, file)) = report.most_malicious_file()
                && let Some(rule) = file.matches.first()
            {
                // Evidence stays on the node: the server gets the score only.
                match rule.evidence.first() {
                    Some(at) => log::debug!(
                        package, version;
                        "top match: rule {} {} in {} `{}` at line {} column {}: {}",
                        rule.name, at.pattern, dist.source, file.path, at.line, at.column, at.excerpt
                    ),
                    None => log::debug!(
                        package, version;
                        "top match: rule {} in {} `{}`", rule.name, dist.source, file.path
                    ),
                }
            }
        }
        Err(reason) => {
            stats.job_failed(reason.kind());
            log::warn!(package, version; "not scanned: {reason}");
        }
    }
    stats.result_queued();
    // The sender outlives every producer while the node runs; at exit an
    // undeliverable result stays counted as held (abandoned).
    let result = match &outcome {
        Ok(report) => crate::result::with_reuse(job_result(job, &outcome), reuse, report),
        Err(_) => job_result(job, &outcome),
    };
    let _ = results.send(result);
}

/// A panic's message.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
