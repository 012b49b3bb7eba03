//! Rules, jobs and results: bodies, status classification, limits, timeouts.

use std::thread;
use std::time::Duration;

use dragonfly_api::{Auth, Client, ErrorKind, Job, JobResult};
use mockito::{Matcher, Server};

use crate::common::*;

fn job(attempt: Option<u32>, assignment_id: Option<&str>) -> Job {
    Job {
        name: "pkg".into(),
        version: "1.0".into(),
        distributions: vec![],
        hash: "h".into(),
        attempt,
        assignment_id: assignment_id.map(str::to_owned),
    }
}

#[test]
fn rules_are_parsed() {
    let mut server = Server::new();
    let _rules = server
        .mock("GET", "/rules")
        .match_header("accept", "application/json")
        .with_body(r#"{"hash":"c1","rules":{"x.yara":"rule x { condition: false }","y.yara":"rule y { condition: true }"}}"#)
        .create();
    let rules = client(&server, Auth::None).rules().unwrap();
    assert_eq!(rules.hash, "c1");
    assert_eq!(rules.rules.keys().collect::<Vec<_>>(), ["x.yara", "y.yara"]);
}

#[test]
fn jobs_are_leased_with_the_batch_size() {
    let mut server = Server::new();
    let jobs = server
        .mock("POST", "/jobs")
        .match_query(Matcher::UrlEncoded("batch".into(), "20".into()))
        .match_header("content-length", "0")
        .with_body(
            r#"[{"name":"requests","version":"2.32.3","distributions":["https://files.example/r.tar.gz"],"hash":"c1","attempt":1,"assignment_id":"a-1"},
                {"name":"old","version":"0.1","distributions":[],"hash":"c1"}]"#,
        )
        .create();
    let leased = client(&server, Auth::None).lease_jobs(20).unwrap();
    jobs.assert();
    assert_eq!(leased.len(), 2);
    assert_eq!(leased[0].name, "requests");
    assert_eq!(leased[0].distributions, ["https://files.example/r.tar.gz"]);
    assert_eq!(leased[0].attempt, Some(1));
    assert_eq!(leased[0].assignment_id.as_deref(), Some("a-1"));
    assert_eq!(leased[1].attempt, None);
}

#[test]
fn results_are_put_as_exact_json() {
    let mut server = Server::new();
    let success = server
        .mock("PUT", "/package")
        .match_header("content-type", "application/json")
        .match_body(Matcher::Exact(
            r#"{"name":"pkg","version":"1.0","score":10,"inspector_url":null,"rules_matched":["r1"],"commit":"c1","attempt":2,"assignment_id":"a-2"}"#.into(),
        ))
        .with_status(200)
        .create();
    let failure = server
        .mock("PUT", "/package")
        .match_body(Matcher::Exact(r#"{"name":"pkg","version":"1.0","reason":"corrupt archive"}"#.into()))
        .with_status(204)
        .create();
    let client = client(&server, Auth::None);
    client
        .submit(&JobResult::success(&job(Some(2), Some("a-2")), 10, None, vec!["r1".into()], "c1"))
        .unwrap();
    client.submit(&JobResult::failure(&job(None, None), "corrupt archive")).unwrap();
    success.assert();
    failure.assert();
}

#[test]
fn conflict_and_not_found_are_permanent() {
    let mut server = Server::new();
    let _conflict = server
        .mock("PUT", "/package")
        .match_body(Matcher::PartialJsonString(r#"{"name":"done"}"#.into()))
        .with_status(409)
        .with_body(r#"{"detail":"already finished"}"#)
        .create();
    let _missing = server
        .mock("PUT", "/package")
        .match_body(Matcher::PartialJsonString(r#"{"name":"ghost"}"#.into()))
        .with_status(404)
        .create();
    let client = client(&server, Auth::None);
    let mut done = job(None, None);
    done.name = "done".into();
    let err = client.submit(&JobResult::failure(&done, "x")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(err.status(), Some(409));
    assert!(!err.is_transient());
    assert!(err.to_string().contains("already finished"), "{err}");

    let mut ghost = job(None, None);
    ghost.name = "ghost".into();
    let err = client.submit(&JobResult::failure(&ghost, "x")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(!err.is_transient());
}

#[test]
fn server_errors_are_transient() {
    for status in [500, 502, 503] {
        let mut server = Server::new();
        let _rules = server.mock("GET", "/rules").with_status(status).with_body("<html>oops</html>").create();
        let err = client(&server, Auth::None).rules().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Status);
        assert_eq!(err.status(), Some(status as u16));
        assert!(err.is_transient(), "{status}");
        assert_eq!(err.retry_after(), None);
    }
}

#[test]
fn too_many_requests_carries_retry_after() {
    let mut server = Server::new();
    let _jobs = server
        .mock("POST", "/jobs")
        .match_query(Matcher::Any)
        .with_status(429)
        .with_header("retry-after", "7")
        .create();
    let _rules = server.mock("GET", "/rules").with_status(503).with_header("retry-after", "120").create();
    let client = client(&server, Auth::None);
    let err = client.lease_jobs(1).unwrap_err();
    assert!(err.is_transient());
    assert_eq!(err.status(), Some(429));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(client.rules().unwrap_err().retry_after(), Some(Duration::from_secs(120)));
}

#[test]
fn other_client_errors_are_permanent() {
    let mut server = Server::new();
    let _rules = server.mock("GET", "/rules").with_status(422).create();
    let err = client(&server, Auth::None).rules().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Status);
    assert!(!err.is_transient());
}

#[test]
fn malformed_json_is_permanent() {
    let mut server = Server::new();
    let _rules = server.mock("GET", "/rules").with_body(r#"{"hash": "c1", "rules": "#).create();
    let _jobs =
        server.mock("POST", "/jobs").match_query(Matcher::Any).with_body(r#"{"not":"a list"}"#).create();
    let client = client(&server, Auth::None);
    let err = client.rules().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Malformed);
    assert!(!err.is_transient());
    let err = client.lease_jobs(5).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Malformed);
}

#[test]
fn json_bodies_are_size_limited() {
    let mut server = Server::new();
    let big = format!(r#"{{"hash":"c1","rules":{{"a":"{}"}}}}"#, "x".repeat(10_000));
    let _rules = server.mock("GET", "/rules").with_body(big).create();
    let _jobs = server
        .mock("POST", "/jobs")
        .match_query(Matcher::Any)
        .with_chunked_body(|writer| {
            writer.write_all(b"[")?;
            for _ in 0..1000 {
                writer.write_all(br#"{"name":"n","version":"1","distributions":[],"hash":"h"},"#)?;
            }
            writer.write_all(b"]")
        })
        .create();
    let mut config = config(&server, Auth::None);
    config.max_response_bytes = 4096;
    let client = Client::new(config).unwrap();
    assert_eq!(client.rules().unwrap_err().kind(), ErrorKind::TooLarge);
    assert_eq!(client.lease_jobs(1).unwrap_err().kind(), ErrorKind::TooLarge);
}

#[test]
fn api_redirects_are_not_followed() {
    let mut server = Server::new();
    let _rules = server.mock("GET", "/rules").with_status(307).with_header("location", "/rules2").create();
    let other = server.mock("GET", "/rules2").with_body(RULES_JSON).expect(0).create();
    let err = client(&server, Auth::None).rules().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Redirect);
    assert!(!err.is_transient());
    other.assert();
}

#[test]
fn slow_responses_hit_the_read_timeout() {
    let mut server = Server::new();
    let _rules = server
        .mock("GET", "/rules")
        .with_chunked_body(|writer| {
            writer.write_all(b"{")?;
            thread::sleep(Duration::from_millis(1500));
            writer.write_all(br#""hash":"c1","rules":{}}"#)
        })
        .create();
    let mut config = config(&server, Auth::None);
    config.read_timeout = Duration::from_millis(200);
    let err = Client::new(config).unwrap().rules().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.is_transient());
}

#[test]
fn servers_hanging_up_are_transient() {
    let port = hang_up_port();
    let mut config = dragonfly_api::ClientConfig::new(format!("http://127.0.0.1:{port}"), Auth::None);
    config.proxy_from_env = false;
    let err = Client::new(config).unwrap().rules().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");
    assert!(err.is_transient());
}

#[test]
fn invalid_base_urls_are_refused() {
    for bad in ["ftp://example.com", "example.com", ""] {
        let err = Client::new(dragonfly_api::ClientConfig::new(bad, Auth::None)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidUrl, "{bad}");
    }
}

#[test]
fn base_url_may_carry_a_path_and_trailing_slash() {
    let mut server = Server::new();
    let rules = server.mock("GET", "/api/rules").with_body(RULES_JSON).create();
    let mut config = config(&server, Auth::None);
    config.base_url = format!("{}/api/", server.url());
    let client = Client::new(config).unwrap();
    assert_eq!(client.base_url(), format!("{}/api", server.url()));
    client.rules().unwrap();
    rules.assert();
}

/// A loopback port whose server hangs up on every connection.
fn hang_up_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });
    port
}
