//! Every authentication path: Auth0 (both grants), Cloudflare Access, static token, none.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use dragonfly_api::{Auth, AuthStats, ErrorKind, Grant, Secret};
use mockito::{Matcher, Server};

use crate::common::*;

#[test]
fn auth0_password_grant_sends_the_form_and_reuses_the_token() {
    let mut server = Server::new();
    let token = server
        .mock("POST", "/oauth/token")
        .match_header("content-type", "application/x-www-form-urlencoded")
        .match_body(Matcher::AllOf(vec![
            Matcher::UrlEncoded("grant_type".into(), "password".into()),
            Matcher::UrlEncoded("username".into(), "node-user".into()),
            Matcher::UrlEncoded("password".into(), PASSWORD.into()),
            Matcher::UrlEncoded("client_id".into(), "node-client".into()),
            Matcher::UrlEncoded("client_secret".into(), CLIENT_SECRET.into()),
            Matcher::UrlEncoded("audience".into(), "https://dragonfly.example".into()),
        ]))
        .with_header("content-type", "application/json")
        .with_body(r#"{"access_token":"tok-A","expires_in":86400,"token_type":"Bearer"}"#)
        .expect(1)
        .create();
    let rules = server
        .mock("GET", "/rules")
        .match_header("authorization", "Bearer tok-A")
        .with_body(RULES_JSON)
        .expect(2)
        .create();

    let client = client(&server, auth0(&server, password_grant()));
    assert!(!client.is_authenticated());
    client.authenticate().unwrap();
    assert!(client.is_authenticated());
    assert_eq!(client.rules().unwrap().hash, "abc123");
    assert_eq!(client.rules().unwrap().rules.len(), 1);
    token.assert();
    rules.assert();
}

#[test]
fn auth0_client_credentials_grant_has_no_user_fields() {
    let mut server = Server::new();
    let token = server
        .mock("POST", "/oauth/token")
        .match_body(Matcher::AllOf(vec![
            Matcher::UrlEncoded("grant_type".into(), "client_credentials".into()),
            Matcher::UrlEncoded("client_id".into(), "node-client".into()),
            Matcher::UrlEncoded("client_secret".into(), CLIENT_SECRET.into()),
            Matcher::UrlEncoded("audience".into(), "https://dragonfly.example".into()),
        ]))
        .match_request(|request| {
            let body = request.utf8_lossy_body().unwrap_or_default();
            !body.contains("username") && !body.contains("password")
        })
        .with_header("content-type", "application/json")
        .with_body(r#"{"access_token":"tok-M2M","expires_in":3600,"token_type":"bearer"}"#)
        .expect(1)
        .create();
    let jobs = server
        .mock("POST", "/jobs")
        .match_query(Matcher::UrlEncoded("batch".into(), "3".into()))
        .match_header("authorization", "Bearer tok-M2M")
        .with_body("[]")
        .create();

    let client = client(&server, auth0(&server, Grant::ClientCredentials));
    assert!(client.lease_jobs(3).unwrap().is_empty());
    token.assert();
    jobs.assert();
}

#[test]
fn expiring_tokens_are_renewed_before_use() {
    let mut server = Server::new();
    // expires_in 0: every token is already due when the next call starts.
    let (_token, calls) = token_endpoint(&mut server, 0);
    let first = server
        .mock("GET", "/rules")
        .match_header("authorization", "Bearer tok-1")
        .with_body(RULES_JSON)
        .expect(1)
        .create();
    let second = server
        .mock("GET", "/rules")
        .match_header("authorization", "Bearer tok-2")
        .with_body(RULES_JSON)
        .expect(1)
        .create();

    let client = client(&server, auth0(&server, password_grant()));
    client.rules().unwrap();
    client.rules().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    first.assert();
    second.assert();
}

#[test]
fn long_lived_tokens_are_not_renewed() {
    let mut server = Server::new();
    let (_token, calls) = token_endpoint(&mut server, 86_400);
    let _rules = server.mock("GET", "/rules").with_body(RULES_JSON).create();
    let client = client(&server, auth0(&server, password_grant()));
    for _ in 0..5 {
        client.rules().unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn unauthorized_renews_once_and_retries() {
    let mut server = Server::new();
    let (_token, calls) = token_endpoint(&mut server, 86_400);
    let stale = server
        .mock("GET", "/rules")
        .match_header("authorization", "Bearer tok-1")
        .with_status(401)
        .expect(1)
        .create();
    let fresh = server
        .mock("GET", "/rules")
        .match_header("authorization", "Bearer tok-2")
        .with_body(RULES_JSON)
        .expect(1)
        .create();

    let client = client(&server, auth0(&server, password_grant()));
    client.authenticate().unwrap();
    assert_eq!(client.rules().unwrap().hash, "abc123");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    stale.assert();
    fresh.assert();
}

#[test]
fn concurrent_unauthorized_calls_renew_once() {
    let mut server = Server::new();
    let (_token, calls) = token_endpoint(&mut server, 86_400);
    let _stale =
        server.mock("GET", "/rules").match_header("authorization", "Bearer tok-1").with_status(401).create();
    let fresh = server
        .mock("GET", "/rules")
        .match_header("authorization", "Bearer tok-2")
        .with_body(RULES_JSON)
        .expect(8)
        .create();

    let client = client(&server, auth0(&server, password_grant()));
    client.authenticate().unwrap();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            thread::spawn(move || client.rules().map(|rules| rules.hash))
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap().unwrap(), "abc123");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one initial login and one renewal");
    fresh.assert();
}

#[test]
fn concurrent_first_calls_log_in_once() {
    let mut server = Server::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    // A slow token endpoint, so that every thread arrives while the login runs.
    let _token = server
        .mock("POST", "/oauth/token")
        .with_header("content-type", "application/json")
        .with_chunked_body(move |writer| {
            counter.fetch_add(1, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(300));
            writer.write_all(br#"{"access_token":"tok-1","expires_in":86400,"token_type":"Bearer"}"#)
        })
        .create();
    let _rules = server
        .mock("GET", "/rules")
        .match_header("authorization", "Bearer tok-1")
        .with_body(RULES_JSON)
        .create();

    let client = client(&server, auth0(&server, password_grant()));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let client = client.clone();
            thread::spawn(move || client.rules().map(|_| ()))
        })
        .collect();
    for handle in handles {
        handle.join().unwrap().unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn failed_logins_back_off() {
    let mut server = Server::new();
    let token = server
        .mock("POST", "/oauth/token")
        .with_status(403)
        .with_header("content-type", "application/json")
        .with_body(r#"{"error":"invalid_grant","error_description":"Wrong email or password."}"#)
        .expect(1)
        .create();

    let client = patient_client(&server, auth0(&server, password_grant()));
    let first = client.authenticate().unwrap_err();
    assert_eq!(first.kind(), ErrorKind::Auth);
    assert!(!first.is_transient(), "rejected credentials are permanent");
    assert_eq!(first.status(), Some(403));
    assert!(first.to_string().contains("invalid_grant"), "{first}");
    let wait = first.retry_after().expect("backoff delay");
    assert!(wait <= Duration::from_millis(500));

    // Inside the window: same error, no request to the identity provider.
    let again = client.rules().unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Auth);
    assert!(again.retry_after().is_some());
    token.assert();

    // After the window: one more attempt, and a longer window.
    thread::sleep(again.retry_after().unwrap() + Duration::from_millis(5));
    let third = client.authenticate().unwrap_err();
    assert!(third.retry_after().unwrap() <= Duration::from_millis(1000));
    assert!(third.retry_after().unwrap() >= Duration::from_millis(400), "{:?}", third.retry_after());
    assert!(!client.is_authenticated());
}

#[test]
fn backoff_ends_after_a_successful_login() {
    let mut server = Server::new();
    let failing = server.mock("POST", "/oauth/token").with_status(503).with_body("down").create();
    let client = client(&server, auth0(&server, password_grant()));
    let err = client.authenticate().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert!(err.is_transient(), "an identity provider outage is transient");
    assert_eq!(err.status(), Some(503));
    failing.remove();

    let (_token, calls) = token_endpoint(&mut server, 86_400);
    thread::sleep(err.retry_after().unwrap() + Duration::from_millis(5));
    client.authenticate().unwrap();
    assert!(client.is_authenticated());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_refused_fresh_token_is_not_renewed_in_a_loop() {
    let mut server = Server::new();
    let (_token, calls) = token_endpoint(&mut server, 86_400);
    // The API refuses every token (say, a wrong audience).
    let _rules =
        server.mock("GET", "/rules").with_status(401).with_body(r#"{"detail":"bad audience"}"#).create();

    let client = patient_client(&server, auth0(&server, password_grant()));
    let err = client.rules().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert_eq!(err.status(), Some(401));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "login, then one renewal");
    let err = client.rules().unwrap_err();
    assert!(err.retry_after().is_some(), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "inside the backoff window");
}

#[test]
fn malformed_token_response_is_an_auth_error() {
    let mut server = Server::new();
    let _token = server
        .mock("POST", "/oauth/token")
        .with_header("content-type", "application/json")
        .with_body(r#"{"expires_in":60}"#)
        .create();
    let client = client(&server, auth0(&server, password_grant()));
    let err = client.authenticate().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert!(!err.is_transient());
    assert!(err.to_string().contains("malformed token response"), "{err}");
}

#[test]
fn token_endpoint_redirects_are_not_followed() {
    let mut server = Server::new();
    let _token =
        server.mock("POST", "/oauth/token").with_status(302).with_header("location", "/elsewhere").create();
    let elsewhere = server.mock("POST", "/elsewhere").expect(0).create();
    let client = client(&server, auth0(&server, password_grant()));
    let err = client.authenticate().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert_eq!(err.status(), Some(302));
    elsewhere.assert();
}

#[test]
fn cloudflare_sends_the_service_token_on_every_call_and_needs_no_cookie() {
    let mut server = Server::new();
    let rules = server
        .mock("GET", "/rules")
        .match_header("cf-access-client-id", "cf-id")
        .match_header("cf-access-client-secret", CF_SECRET)
        .match_header("cookie", Matcher::Missing)
        .match_header("authorization", Matcher::Missing)
        .with_body(RULES_JSON)
        .expect(2)
        .create();
    let login = server.mock("GET", "/").expect(0).create();
    let auth = Auth::Cloudflare { client_id: "cf-id".into(), client_secret: Secret::new(CF_SECRET) };
    let client = client(&server, auth);
    assert!(!client.is_authenticated(), "nothing accepted yet");
    client.rules().unwrap();
    client.rules().unwrap();
    assert!(client.is_authenticated());
    rules.assert();
    login.assert();
}

#[test]
fn cloudflare_reuses_a_cookie_the_edge_sets_and_drops_an_expired_one() {
    let mut server = Server::new();
    let jwt = jwt_with_exp(unix_now() + 24 * 3600);
    let first = server
        .mock("GET", "/rules")
        .match_header("cookie", Matcher::Missing)
        .with_header("set-cookie", "other=1; Path=/")
        .with_header("set-cookie", &format!("CF_Authorization={jwt}; Path=/; Secure; HttpOnly"))
        .with_body(RULES_JSON)
        .expect(1)
        .create();
    let with_cookie = server
        .mock("GET", "/rules")
        .match_header("cookie", format!("CF_Authorization={jwt}").as_str())
        .match_header("cf-access-client-id", "cf-id")
        .match_header("cf-access-client-secret", CF_SECRET)
        .with_body(RULES_JSON)
        .expect(1)
        .create();
    let auth = Auth::Cloudflare { client_id: "cf-id".into(), client_secret: Secret::new(CF_SECRET) };
    let cookie_client = client(&server, auth.clone());
    cookie_client.rules().unwrap();
    cookie_client.rules().unwrap();
    first.assert();
    with_cookie.assert();
    assert_eq!(cookie_client.auth_stats().renewals, 1, "one cookie received");

    // A cookie that has expired is not sent.
    let mut server = Server::new();
    let past = jwt_with_exp(unix_now().saturating_sub(10));
    let _setting = server
        .mock("GET", "/rules")
        .with_header("set-cookie", &format!("CF_Authorization={past}; Path=/"))
        .with_body(RULES_JSON)
        .create();
    let client = client(&server, auth);
    client.rules().unwrap();
    let later = server
        .mock("POST", "/jobs")
        .match_query(Matcher::Any)
        .match_header("cookie", Matcher::Missing)
        .with_body("[]")
        .expect(1)
        .create();
    client.lease_jobs(1).unwrap();
    later.assert();
}

#[test]
fn cloudflare_refusals_are_auth_errors_saying_what_to_check() {
    for (status, says) in [(302u16, "login page"), (403, "refused the service token")] {
        let mut server = Server::new();
        let refused = server
            .mock("GET", "/rules")
            .with_status(usize::from(status))
            .with_header("location", "https://team.cloudflareaccess.com/cdn-cgi/access/login")
            .with_header("content-type", "text/html")
            .with_body("<!DOCTYPE html><html><body>Sign in</body></html>")
            .expect(1)
            .create();
        let mut config = config(
            &server,
            Auth::Cloudflare { client_id: "cf-id".into(), client_secret: Secret::new(CF_SECRET) },
        );
        config.auth_hint = Some("check SETTING_A and SETTING_B".into());
        let client = dragonfly_api::Client::new(config).unwrap();
        let err = client.rules().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
        assert_eq!(err.status(), Some(status));
        assert!(!err.is_transient());
        let text = err.to_string();
        assert!(text.contains(says) && text.contains("check SETTING_A and SETTING_B"), "{text}");
        assert!(!text.contains("DOCTYPE"), "no HTML page in the message: {text}");
        refused.assert();
    }
}

#[test]
fn a_token_the_server_can_no_longer_verify_is_renewed() {
    let mut server = Server::new();
    let tokens = server
        .mock("POST", "/oauth/token")
        .with_header("content-type", "application/json")
        .with_body(r#"{"access_token":"tok","token_type":"Bearer","expires_in":86400}"#)
        .expect(2)
        .create();
    let unverifiable = server
        .mock("GET", "/rules")
        .with_status(500)
        .with_header("content-type", "application/json")
        .with_body(r#"{"detail":"Unable to verify credentials"}"#)
        .expect(1)
        .create();
    let client = client(&server, auth0(&server, password_grant()));
    client.authenticate().unwrap();
    // The next answer is fine: the call is retried once with a new login.
    let fine = server.mock("GET", "/rules").with_body(RULES_JSON).expect(1).create();
    assert_eq!(client.rules().unwrap().hash, "abc123");
    unverifiable.assert();
    fine.assert();
    tokens.assert();
}

#[test]
fn static_token_is_sent_and_not_renewed() {
    let mut server = Server::new();
    let rules = server
        .mock("GET", "/rules")
        .match_header("authorization", format!("Bearer {STATIC_TOKEN}").as_str())
        .with_body(RULES_JSON)
        .expect(1)
        .create();
    let refused = server.mock("POST", "/jobs").match_query(Matcher::Any).with_status(401).expect(1).create();

    let client = client(&server, Auth::Token(Secret::new(STATIC_TOKEN)));
    assert!(client.is_authenticated());
    client.authenticate().unwrap();
    client.rules().unwrap();
    let err = client.lease_jobs(1).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert_eq!(err.status(), Some(401));
    rules.assert();
    refused.assert();
}

#[test]
fn no_auth_sends_no_credentials() {
    let mut server = Server::new();
    let rules = server
        .mock("GET", "/rules")
        .match_header("authorization", Matcher::Missing)
        .match_header("cookie", Matcher::Missing)
        .match_header("user-agent", concat!("dragonfly-client/", env!("CARGO_PKG_VERSION")))
        .match_header("accept-encoding", Matcher::Regex("gzip".into()))
        .with_body(RULES_JSON)
        .create();
    let client = client(&server, Auth::None);
    client.authenticate().unwrap();
    client.rules().unwrap();
    rules.assert();
}

#[test]
fn auth_stats_count_logins_and_failures() {
    let mut server = Server::new();
    let failing = server.mock("POST", "/oauth/token").with_status(503).with_body("down").create();
    let node = patient_client(&server, auth0(&server, password_grant()));
    assert_eq!(node.auth_stats(), AuthStats::default());
    let err = node.authenticate().unwrap_err();
    // Refused inside the backoff window: no attempt, so no new failure.
    node.authenticate().unwrap_err();
    assert_eq!((node.auth_stats().renewals, node.auth_stats().failures), (0, 1));
    failing.remove();

    let (_token, _calls) = token_endpoint(&mut server, 86_400);
    thread::sleep(err.retry_after().unwrap() + Duration::from_millis(5));
    node.authenticate().unwrap();
    node.authenticate().unwrap();
    assert_eq!((node.auth_stats().renewals, node.auth_stats().failures), (1, 1));

    let none = client(&server, Auth::None);
    none.authenticate().unwrap();
    assert_eq!(none.auth_stats(), AuthStats::default());
}
