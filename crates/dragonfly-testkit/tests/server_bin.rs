//! The `dragonfly-fake-server` binary: loads rules and packages from
//! directories, serves them, and exits when drained.

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;

use common::{agent, send_json};

/// Kills the child if the test fails half-way.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn json_of(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut response = response.expect("request completes");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, body)
}

#[test]
fn serves_directories_and_exits_when_drained() {
    let rules = tempfile::tempdir().expect("tempdir");
    std::fs::write(rules.path().join("one.yar"), "rule one { condition: true }").expect("write");
    std::fs::write(rules.path().join("two.yara"), "rule two { condition: false }").expect("write");
    std::fs::write(rules.path().join("notes.txt"), "not a rule").expect("write");
    let packages = tempfile::tempdir().expect("tempdir");
    let files: [(&str, &[u8]); 4] = [
        ("Demo_Pkg-1.0-py3-none-any.whl", b"wheel bytes"),
        ("demo-pkg-1.0.tar.gz", b"sdist bytes"),
        ("other-2.0.zip", b"zip bytes"),
        ("README.md", b"ignored"),
    ];
    for (name, bytes) in files {
        std::fs::write(packages.path().join(name), bytes).expect("write");
    }

    let child = Command::new(env!("CARGO_BIN_EXE_dragonfly-fake-server"))
        .arg("--rules")
        .arg(rules.path())
        .arg("--packages")
        .arg(packages.path())
        .args(["--lease-timeout", "30", "--exit-when-drained"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let mut child = Running(child);
    let mut stdout = BufReader::new(child.0.stdout.take().expect("stdout"));
    let mut url = String::new();
    stdout.read_line(&mut url).expect("first line");
    let url = url.trim().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let agent = agent();
    let (status, rules_body) = json_of(agent.get(format!("{url}/rules")).call());
    assert_eq!(status, 200);
    let names: Vec<&String> = rules_body["rules"].as_object().expect("rules").keys().collect();
    assert_eq!(names, ["one.yar", "two.yara"]);
    assert_eq!(rules_body["hash"].as_str().map(str::len), Some(40));

    let (_, jobs) = json_of(agent.post(format!("{url}/jobs?batch=10")).send_empty());
    let jobs = jobs.as_array().expect("jobs").clone();
    let releases: Vec<(&str, &str, usize)> = jobs
        .iter()
        .map(|job| {
            (
                job["name"].as_str().unwrap_or_default(),
                job["version"].as_str().unwrap_or_default(),
                job["distributions"].as_array().map_or(0, Vec::len),
            )
        })
        .collect();
    assert_eq!(releases, [("demo-pkg", "1.0", 2), ("other", "2.0", 1)]);
    assert_eq!(jobs[0]["hash"], rules_body["hash"]);

    let wheel_url = jobs[0]["distributions"][0].as_str().expect("url");
    assert!(wheel_url.ends_with("/Demo_Pkg-1.0-py3-none-any.whl"), "{wheel_url}");
    let mut download = agent.get(wheel_url).call().expect("download");
    assert_eq!(download.body_mut().read_to_vec().expect("bytes"), b"wheel bytes");

    for job in &jobs {
        let body = json!({
            "name": job["name"], "version": job["version"], "reason": "test",
            "attempt": job["attempt"], "assignment_id": job["assignment_id"],
        });
        let (status, _) = json_of(send_json(agent.put(format!("{url}/package")), &body));
        assert_eq!(status, 200);
    }

    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.0.try_wait().expect("wait") {
            break exit;
        }
        assert!(Instant::now() < deadline, "the server did not exit when drained");
        thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("results");
    let results: Vec<Value> =
        rest.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["status"], 200);
    assert_eq!(results[0]["name"], "demo-pkg");
    assert_eq!(results[1]["body"]["reason"], "test");
}

#[test]
fn refuses_an_incomplete_auth_setup() {
    let output = Command::new(env!("CARGO_BIN_EXE_dragonfly-fake-server"))
        .args(["--auth", "token"])
        .output()
        .expect("binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--token"), "{stderr}");
}
