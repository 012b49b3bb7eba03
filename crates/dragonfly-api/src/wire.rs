//! The JSON bodies of the control-server protocol.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The rule set served by `GET /rules`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct RuleSet {
    /// Commit of the rule repository; results name it in `commit`.
    pub hash: String,
    /// Rule file name -> YARA source.
    pub rules: BTreeMap<String, String>,
}

/// A leased job from `POST /jobs?batch=N`: one release to scan.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Job {
    /// Package name.
    pub name: String,
    /// Release version.
    pub version: String,
    /// Download URLs of the release's distributions.
    pub distributions: Vec<String>,
    /// The rule commit the server wants used; fetch `/rules` again when it differs.
    pub hash: String,
    /// Lease attempt number (newer servers only); echo it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Lease identifier (newer servers only); echo it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_id: Option<String>,
}

/// A result for `PUT /package`: exactly one of the protocol's two bodies.
///
/// ```
/// use dragonfly_api::{Job, JobResult};
///
/// let job = Job {
///     name: "demo".into(),
///     version: "1.0".into(),
///     distributions: vec![],
///     hash: "abc".into(),
///     attempt: Some(2),
///     assignment_id: None,
/// };
/// let result = JobResult::failure(&job, "download failed");
/// assert_eq!(
///     serde_json::to_string(&result)?,
///     r#"{"name":"demo","version":"1.0","reason":"download failed","attempt":2}"#
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum JobResult {
    /// The release was scanned.
    Success(SuccessBody),
    /// The release could not be scanned.
    Failure(FailureBody),
}

/// The body of a successful scan.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SuccessBody {
    /// Package name, as in the job.
    pub name: String,
    /// Release version, as in the job.
    pub version: String,
    /// Highest distribution score.
    pub score: i64,
    /// Link to the highest-scoring file; serialized as `null` when absent.
    pub inspector_url: Option<String>,
    /// Distinct names of the rules that matched.
    pub rules_matched: Vec<String>,
    /// Hash of the rules actually used.
    pub commit: String,
    /// Echo of the job's `attempt`; omitted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Echo of the job's `assignment_id`; omitted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_id: Option<String>,
    /// How much scanning reuse avoided; omitted when reuse is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_reuse: Option<ScanReuse>,
}

/// The `scan_reuse` object of a successful result: what result reuse did
/// for the job. Every count is at most 2^53 - 1, so that any JSON reader
/// takes it exactly.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ScanReuse {
    /// `off`, `observe` or `reuse`.
    pub mode: String,
    pub lookups: u64,
    pub candidate_files: u64,
    pub reused_files: u64,
    pub reused_bytes: u64,
    pub inserted_files: u64,
    pub evicted_files: u64,
    pub errors: u64,
    pub validated_files: u64,
    pub mismatched_files: u64,
    pub overhead_us: u64,
    pub engine_us: u64,
    pub engine_files: u64,
    pub engine_bytes: u64,
}

impl ScanReuse {
    /// The largest count sent.
    pub const MAX: u64 = (1 << 53) - 1;

    /// The same counts, each cut to [`ScanReuse::MAX`].
    pub fn bounded(mut self) -> ScanReuse {
        for n in [
            &mut self.lookups,
            &mut self.candidate_files,
            &mut self.reused_files,
            &mut self.reused_bytes,
            &mut self.inserted_files,
            &mut self.evicted_files,
            &mut self.errors,
            &mut self.validated_files,
            &mut self.mismatched_files,
            &mut self.overhead_us,
            &mut self.engine_us,
            &mut self.engine_files,
            &mut self.engine_bytes,
        ] {
            *n = (*n).min(Self::MAX);
        }
        self
    }
}

/// The body of a failed scan.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailureBody {
    /// Package name, as in the job.
    pub name: String,
    /// Release version, as in the job.
    pub version: String,
    /// Human-readable cause.
    pub reason: String,
    /// Echo of the job's `attempt`; omitted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Echo of the job's `assignment_id`; omitted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_id: Option<String>,
}

impl JobResult {
    /// A success for `job`, echoing its `attempt` and `assignment_id`.
    pub fn success(
        job: &Job,
        score: i64,
        inspector_url: Option<String>,
        rules_matched: Vec<String>,
        commit: impl Into<String>,
    ) -> Self {
        JobResult::Success(SuccessBody {
            name: job.name.clone(),
            version: job.version.clone(),
            score,
            inspector_url,
            rules_matched,
            commit: commit.into(),
            attempt: job.attempt,
            assignment_id: job.assignment_id.clone(),
            scan_reuse: None,
        })
    }

    /// The same result carrying `reuse` (bounded) when it is a success.
    pub fn with_scan_reuse(mut self, reuse: ScanReuse) -> Self {
        if let JobResult::Success(body) = &mut self {
            body.scan_reuse = Some(reuse.bounded());
        }
        self
    }

    /// A failure for `job`, echoing its `attempt` and `assignment_id`.
    pub fn failure(job: &Job, reason: impl Into<String>) -> Self {
        JobResult::Failure(FailureBody {
            name: job.name.clone(),
            version: job.version.clone(),
            reason: reason.into(),
            attempt: job.attempt,
            assignment_id: job.assignment_id.clone(),
        })
    }

    /// Replaces the echoed lease fields (the job was leased again).
    pub fn set_lease(&mut self, attempt: Option<u32>, assignment_id: Option<String>) {
        match self {
            JobResult::Success(body) => (body.attempt, body.assignment_id) = (attempt, assignment_id),
            JobResult::Failure(body) => (body.attempt, body.assignment_id) = (attempt, assignment_id),
        }
    }

    /// Package name.
    pub fn name(&self) -> &str {
        match self {
            JobResult::Success(body) => &body.name,
            JobResult::Failure(body) => &body.name,
        }
    }

    /// Release version.
    pub fn version(&self) -> &str {
        match self {
            JobResult::Success(body) => &body.version,
            JobResult::Failure(body) => &body.version,
        }
    }
}

/// The inspector.pypi.io link to a file inside a distribution:
/// `https://inspector.pypi.io/project/{name}/{version}/{URL path}/{file}`,
/// or `None` when `download_url` is not an `http(s)` URL with a path.
///
/// ```
/// assert_eq!(
///     dragonfly_api::inspector_url(
///         "discord-py",
///         "2.2.3",
///         "https://files.pythonhosted.org/packages/36/ce/3a/discord.py-2.2.3.tar.gz",
///         "discord.py-2.2.3/discord/client.py",
///     )
///     .as_deref(),
///     Some(
///         "https://inspector.pypi.io/project/discord-py/2.2.3/packages/36/ce/3a/\
///          discord.py-2.2.3.tar.gz/discord.py-2.2.3/discord/client.py"
///     )
/// );
/// ```
pub fn inspector_url(name: &str, version: &str, download_url: &str, file_path: &str) -> Option<String> {
    let rest = download_url.strip_prefix("https://").or_else(|| download_url.strip_prefix("http://"))?;
    let path = rest.split_once('/').map_or("", |(_host, path)| path);
    let path = path.split(['?', '#']).next().unwrap_or_default().trim_matches('/');
    if path.is_empty() {
        return None;
    }
    let mut url = format!("https://inspector.pypi.io/project/{}/{}/{path}", segment(name), segment(version));
    // A file inside a nested archive: the link shows the archive member.
    let file_path = file_path.split("!/").next().unwrap_or(file_path);
    // A path too long for a useful link leaves the link at the distribution.
    if file_path.len() <= MAX_INSPECTOR_PATH {
        for part in file_path.split('/') {
            url.push('/');
            url.push_str(&segment(part));
        }
    }
    Some(url)
}

/// Longest file path put into an inspector link, in bytes.
const MAX_INSPECTOR_PATH: usize = 1024;

/// Characters escaped in one path segment: controls, space, and what
/// would end or restructure a path (`?`, `#`, `%`, `/`, `\`, quotes, brackets).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'^')
    .add(b'|')
    .add(b'[')
    .add(b']');

fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(attempt: Option<u32>, assignment_id: Option<&str>) -> Job {
        Job {
            name: "pkg".into(),
            version: "1.2.3".into(),
            distributions: vec!["https://files.example/pkg-1.2.3.tar.gz".into()],
            hash: "h1".into(),
            attempt,
            assignment_id: assignment_id.map(str::to_owned),
        }
    }

    #[test]
    fn success_json_without_lease_fields() {
        let result = JobResult::success(&job(None, None), 17, None, vec!["a".into(), "b".into()], "c0ffee");
        assert_eq!(
            serde_json::to_string(&result).unwrap(),
            r#"{"name":"pkg","version":"1.2.3","score":17,"inspector_url":null,"rules_matched":["a","b"],"commit":"c0ffee"}"#
        );
    }

    #[test]
    fn success_json_with_lease_fields() {
        let result = JobResult::success(
            &job(Some(1), Some("u-1")),
            5,
            Some("https://inspector.pypi.io/project/pkg/1.2.3/x/y.py".into()),
            vec![],
            "c0ffee",
        );
        assert_eq!(
            serde_json::to_string(&result).unwrap(),
            r#"{"name":"pkg","version":"1.2.3","score":5,"inspector_url":"https://inspector.pypi.io/project/pkg/1.2.3/x/y.py","rules_matched":[],"commit":"c0ffee","attempt":1,"assignment_id":"u-1"}"#
        );
    }

    #[test]
    fn failure_json_with_and_without_lease_fields() {
        let bare = JobResult::failure(&job(None, None), "too large");
        assert_eq!(
            serde_json::to_string(&bare).unwrap(),
            r#"{"name":"pkg","version":"1.2.3","reason":"too large"}"#
        );
        let leased = JobResult::failure(&job(Some(3), Some("u-9")), "corrupt");
        assert_eq!(
            serde_json::to_string(&leased).unwrap(),
            r#"{"name":"pkg","version":"1.2.3","reason":"corrupt","attempt":3,"assignment_id":"u-9"}"#
        );
        assert_eq!(leased.name(), "pkg");
        assert_eq!(leased.version(), "1.2.3");
    }

    #[test]
    fn results_round_trip_into_the_right_variant() {
        for result in [
            JobResult::failure(&job(Some(1), None), "x"),
            JobResult::success(&job(None, Some("a")), 0, None, vec![], "h"),
        ] {
            let text = serde_json::to_string(&result).unwrap();
            assert_eq!(serde_json::from_str::<JobResult>(&text).unwrap(), result);
        }
    }

    #[test]
    fn inspector_urls_escape_each_segment_and_stay_bounded() {
        assert_eq!(
            inspector_url("a", "1", "https://h/p/a.tar.gz", "a-1/dir with space/x?.py#frag%").as_deref(),
            Some("https://inspector.pypi.io/project/a/1/p/a.tar.gz/a-1/dir%20with%20space/x%3F.py%23frag%25")
        );
        assert_eq!(
            inspector_url("a", "1", "https://h/p/a.whl", "caf\u{e9}/\n.py").as_deref(),
            Some("https://inspector.pypi.io/project/a/1/p/a.whl/caf%C3%A9/%0A.py")
        );
        assert_eq!(
            inspector_url("a", "1", "https://h/p/a.whl", "a/vendor.zip!/b/setup.py").as_deref(),
            Some("https://inspector.pypi.io/project/a/1/p/a.whl/a/vendor.zip")
        );
        let long = "d/".repeat(4000) + "x.py";
        assert_eq!(
            inspector_url("a", "1", "https://h/p/a.whl", &long).as_deref(),
            Some("https://inspector.pypi.io/project/a/1/p/a.whl")
        );
    }

    #[test]
    fn inspector_urls_need_an_http_path() {
        assert_eq!(inspector_url("a", "1", "/tmp/a-1.tar.gz", "x.py"), None);
        assert_eq!(inspector_url("a", "1", "https://host", "x.py"), None);
        assert_eq!(
            inspector_url("a", "1", "http://127.0.0.1:8000/p/a.whl?x=1", "x.py").as_deref(),
            Some("https://inspector.pypi.io/project/a/1/p/a.whl/x.py")
        );
    }

    #[test]
    fn jobs_parse_with_and_without_lease_fields() {
        let jobs: Vec<Job> = serde_json::from_str(
            r#"[{"name":"a","version":"1","distributions":["u"],"hash":"h"},
                {"name":"b","version":"2","distributions":[],"hash":"h","attempt":2,"assignment_id":"x","extra":true}]"#,
        )
        .unwrap();
        assert_eq!(jobs[0].attempt, None);
        assert_eq!(jobs[0].assignment_id, None);
        assert_eq!(jobs[1].attempt, Some(2));
        assert_eq!(jobs[1].assignment_id.as_deref(), Some("x"));
    }
}
