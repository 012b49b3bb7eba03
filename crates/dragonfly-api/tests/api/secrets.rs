//! Secrets never reach `Debug` output, error messages or logs.

use std::sync::{Mutex, Once};

use dragonfly_api::{Auth, Client, Grant, Secret};
use mockito::{Matcher, Server};

use crate::common::*;

/// Records every log line of this crate (all levels) and of ureq (up to
/// debug), from every test of this binary. ureq-proto's trace level dumps raw
/// HTTP traffic, credentials included: nodes must never enable it.
struct Recorder;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl log::Log for Recorder {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with("dragonfly_api")
            || (metadata.target().starts_with("ureq") && metadata.level() <= log::Level::Debug)
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}: {}", record.level(), record.target(), record.args());
            LINES.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    }

    fn flush(&self) {}
}

fn record_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        static RECORDER: Recorder = Recorder;
        log::set_logger(&RECORDER).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
}

const SECRETS: [&str; 5] = [CLIENT_SECRET, PASSWORD, STATIC_TOKEN, CF_SECRET, "tok-ACCESS-5555"];

fn assert_clean(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} leaks a secret: {text}");
    }
}

#[test]
fn secrets_stay_out_of_debug_errors_and_logs() {
    record_logs();
    let mut server = Server::new();
    // An identity provider that echoes the credentials in its error message.
    let _token = server
        .mock("POST", "/oauth/token")
        .with_status(401)
        .with_header("content-type", "application/json")
        .with_body(format!(
            r#"{{"error":"access_denied","error_description":"bad password {PASSWORD} for secret {CLIENT_SECRET}"}}"#
        ))
        .create();
    // Cloudflare and the API echoing what they were sent.
    let _cloudflare =
        server.mock("GET", "/cf/rules").with_status(403).with_body(format!("denied {CF_SECRET}")).create();
    let _rules =
        server.mock("GET", "/rules").with_status(401).with_body(format!("bad token {STATIC_TOKEN}")).create();

    let auth0 = auth0(&server, password_grant());
    let config = config(&server, auth0.clone());
    let client = Client::new(config.clone()).unwrap();
    let mut texts = vec![
        ("auth debug", format!("{auth0:?}")),
        ("config debug", format!("{config:?}")),
        ("client debug", format!("{client:?}")),
    ];
    let err = client.authenticate().unwrap_err();
    texts.push(("login error", format!("{err} / {err:?}")));
    let err = client.rules().unwrap_err();
    texts.push(("error in backoff", format!("{err} / {err:?}")));

    let cloudflare = Auth::Cloudflare { client_id: "cf-id".into(), client_secret: Secret::new(CF_SECRET) };
    let mut cf_config = crate::common::config(&server, cloudflare.clone());
    cf_config.base_url = format!("{}/cf/", server.url());
    let cf_client = Client::new(cf_config).unwrap();
    let err = cf_client.rules().unwrap_err();
    texts.push(("cloudflare error", format!("{err} / {err:?}")));
    texts.push(("cloudflare debug", format!("{cloudflare:?} {cf_client:?}")));

    let token = Auth::Token(Secret::new(STATIC_TOKEN));
    let token_client = client_for(&server, token.clone());
    let err = token_client.rules().unwrap_err();
    texts.push(("token error", format!("{err} / {err:?}")));
    texts.push(("token debug", format!("{token:?} {token_client:?}")));

    let grant = Grant::Password { username: "u".into(), password: Secret::new(PASSWORD) };
    texts.push(("grant debug", format!("{grant:?}")));

    for (what, text) in &texts {
        assert_clean(what, text);
    }
    // The errors still say what happened.
    assert!(texts[3].1.contains("access_denied"), "{}", texts[3].1);
    assert!(texts[3].1.contains("***"), "{}", texts[3].1);
    assert!(texts[5].1.contains("403"), "{}", texts[5].1);
    assert!(texts[7].1.contains("401"), "{}", texts[7].1);
}

#[test]
fn a_successful_session_logs_no_secrets() {
    record_logs();
    let mut server = Server::new();
    let _token = server
        .mock("POST", "/oauth/token")
        .with_header("content-type", "application/json")
        .with_body(r#"{"access_token":"tok-ACCESS-5555","expires_in":0,"token_type":"Bearer"}"#)
        .create();
    let _rules = server
        .mock("GET", "/rules")
        .match_header("authorization", "Bearer tok-ACCESS-5555")
        .with_body(RULES_JSON)
        .create();
    let _jobs = server.mock("POST", "/jobs").match_query(Matcher::Any).with_status(401).create();
    let client = client_for(&server, auth0(&server, password_grant()));
    client.rules().unwrap();
    let err = client.lease_jobs(1).unwrap_err();
    assert_clean("error after renewal", &format!("{err} {err:?} {client:?}"));

    let lines = LINES.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(lines.iter().any(|line| line.contains("logged in")), "the recorder works: {lines:?}");
    for line in &lines {
        assert_clean("log line", line);
    }
}

fn client_for(server: &mockito::ServerGuard, auth: Auth) -> Client {
    crate::common::client(server, auth)
}
