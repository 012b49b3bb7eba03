//! The fake control server, driven over HTTP with a plain ureq client.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use dragonfly_testkit::server::{
    AuthMode, Distribution, Endpoint, FakeServer, Fault, FaultAction, ServerConfig,
};
use serde_json::{Value, json};

mod common;

use common::{agent, send_json};

type Reply = (u16, Value);

fn start(config: ServerConfig) -> FakeServer {
    FakeServer::start(config).expect("server starts")
}

fn start_default() -> FakeServer {
    start(ServerConfig::default())
}

fn short_leases(lease_timeout: Duration, max_attempts: u32) -> FakeServer {
    start(ServerConfig { lease_timeout, max_attempts, ..ServerConfig::default() })
}

/// Reads a JSON body; an empty or non-JSON body becomes its text.
fn reply(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut response = response.expect("request completes");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

fn post_jobs(agent: &ureq::Agent, server: &FakeServer, batch: usize) -> Reply {
    reply(agent.post(format!("{}/jobs?batch={batch}", server.url())).send_empty())
}

fn lease(agent: &ureq::Agent, server: &FakeServer, batch: usize) -> Vec<Value> {
    let (status, body) = post_jobs(agent, server, batch);
    assert_eq!(status, 200, "{body}");
    body.as_array().expect("a list of jobs").clone()
}

fn put(agent: &ureq::Agent, server: &FakeServer, body: &Value) -> Reply {
    reply(send_json(agent.put(format!("{}/package", server.url())), body))
}

fn get(agent: &ureq::Agent, url: &str) -> Reply {
    reply(agent.get(url).call())
}

/// A success result for a leased job, echoing its lease.
fn success(job: &Value) -> Value {
    json!({
        "name": job["name"],
        "version": job["version"],
        "score": 7,
        "inspector_url": null,
        "rules_matched": ["rule_a"],
        "commit": job["hash"],
        "attempt": job["attempt"],
        "assignment_id": job["assignment_id"],
    })
}

/// Polls `check` until it holds (at most 20 s).
fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    false
}

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.iter().map(|group| group.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|group| group.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

#[test]
fn lease_hands_out_fifo_jobs_with_attempts_and_assignment_ids() {
    let server = start_default();
    for name in ["alpha", "beta", "gamma"] {
        server.add_job(name, "1.0", vec![format!("https://files.example/{name}-1.0.tar.gz")]);
    }
    let agent = agent();
    let first = lease(&agent, &server, 2);
    let second = lease(&agent, &server, 5);
    assert!(lease(&agent, &server, 5).is_empty());

    let names: Vec<&str> = first.iter().chain(&second).filter_map(|job| job["name"].as_str()).collect();
    assert_eq!(names, ["alpha", "beta", "gamma"]);
    let job = &first[0];
    assert_eq!(job["version"], "1.0");
    assert_eq!(job["distributions"], json!(["https://files.example/alpha-1.0.tar.gz"]));
    assert_eq!(job["hash"], server.rules_hash());
    let ids: HashSet<&str> = first
        .iter()
        .chain(&second)
        .map(|job| {
            assert_eq!(job["attempt"], 1);
            job["assignment_id"].as_str().expect("assignment id")
        })
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| is_uuid(id)), "{ids:?}");

    // Without `batch` one job is leased.
    server.add_job("delta", "1", vec![]);
    server.add_job("eps", "1", vec![]);
    let (status, body) = reply(agent.post(format!("{}/jobs", server.url())).send_empty());
    assert_eq!((status, body.as_array().map(Vec::len)), (200, Some(1)));

    let stats = server.stats();
    assert_eq!((stats.leases, stats.leased, stats.pending), (4, 4, 1));
    assert_eq!(stats.requests_to(Endpoint::Jobs), 4);
}

#[test]
fn expired_lease_is_handed_out_again_and_old_assignment_is_stale() {
    let server = short_leases(Duration::from_millis(100), 3);
    server.add_job("pkg", "1.0", vec![]);
    let agent = agent();
    let first = lease(&agent, &server, 1).remove(0);

    let mut again = Vec::new();
    assert!(eventually(|| {
        again = lease(&agent, &server, 1);
        !again.is_empty()
    }));
    let second = &again[0];
    assert_eq!(second["attempt"], 2);
    assert_ne!(second["assignment_id"], first["assignment_id"]);

    let (status, _) = put(&agent, &server, &success(&first));
    assert_eq!(status, 409);
    let (status, body) = put(&agent, &server, &success(second));
    assert_eq!(status, 200, "{body}");
    let (status, _) = put(&agent, &server, &success(second));
    assert_eq!(status, 409, "a finished package is final");

    let statuses: Vec<u16> = server.results().iter().map(|result| result.status).collect();
    assert_eq!(statuses, [409, 200, 409]);
    assert_eq!(server.stats().finished, 1);
    assert!(server.is_drained());
}

#[test]
fn late_result_is_accepted_while_nobody_holds_the_job() {
    let server = short_leases(Duration::from_millis(50), 3);
    server.add_job("pkg", "1.0", vec![]);
    let agent = agent();
    let job = lease(&agent, &server, 1).remove(0);
    assert!(eventually(|| server.stats().pending == 1), "lease expires");
    let (status, body) = put(&agent, &server, &success(&job));
    assert_eq!(status, 200, "{body}");
    assert!(lease(&agent, &server, 1).is_empty());
}

#[test]
fn job_is_dead_lettered_after_max_attempts() {
    let server = short_leases(Duration::from_millis(50), 2);
    server.add_job("doomed", "0.1", vec![]);
    let agent = agent();
    let mut attempts = Vec::new();
    assert!(eventually(|| {
        for job in lease(&agent, &server, 1) {
            attempts.push(job["attempt"].as_u64().unwrap_or_default());
        }
        server.stats().dead == 1
    }));
    assert_eq!(attempts, [1, 2]);
    assert!(lease(&agent, &server, 1).is_empty());
    assert!(server.is_drained());
    let (status, _) =
        put(&agent, &server, &json!({"name": "doomed", "version": "0.1", "reason": "too slow"}));
    assert_eq!(status, 409);
}

#[test]
fn wait_drained_follows_results_and_dead_letters() {
    // Long enough for the PUT of "a" to arrive in time on a slow machine.
    let server = short_leases(Duration::from_secs(1), 1);
    server.add_job("a", "1", vec![]);
    server.add_job("b", "1", vec![]);
    assert!(!server.wait_drained(Duration::from_millis(10)));
    let agent = agent();
    let jobs = lease(&agent, &server, 2);
    assert_eq!(put(&agent, &server, &success(&jobs[0])).0, 200);
    // "b" is never answered; its only lease runs out and it is dead-lettered.
    assert!(server.wait_drained(Duration::from_secs(20)));
    let stats = server.stats();
    assert_eq!((stats.finished, stats.dead), (1, 1));
}

#[test]
fn package_results_are_validated_and_recorded() {
    let server = start_default();
    server.add_job("pkg", "2.0", vec![]);
    let agent = agent();
    let job = lease(&agent, &server, 1).remove(0);

    let unknown = json!({"name": "nope", "version": "1", "reason": "x"});
    assert_eq!(put(&agent, &server, &unknown).0, 404);
    let (status, _) = reply(
        agent.put(format!("{}/package", server.url())).content_type("application/json").send("{not json"),
    );
    assert_eq!(status, 400);
    let mut extra = success(&job);
    extra["files"] = json!(3);
    let (status, body) = put(&agent, &server, &extra);
    assert_eq!(status, 422);
    assert!(body["detail"].as_str().is_some_and(|detail| detail.contains("files")), "{body}");
    let mut bad_score = success(&job);
    bad_score["score"] = json!("high");
    assert_eq!(put(&agent, &server, &bad_score).0, 422);
    // `scan_reuse` takes a mode and bounded non-negative counts only.
    for (reuse, problem) in [
        (json!({"mode": "on"}), "mode"),
        (json!({"mode": "reuse", "reused_files": -1}), "reused_files"),
        (json!({"mode": "reuse", "engine_bytes": 9_007_199_254_740_992u64}), "engine_bytes"),
        (json!({"mode": "reuse", "hits": 1}), "hits"),
        (json!(7), "object"),
    ] {
        let mut body = success(&job);
        body["scan_reuse"] = reuse;
        let (status, reply) = put(&agent, &server, &body);
        assert_eq!(status, 422, "{body}");
        assert!(reply["detail"].as_str().is_some_and(|d| d.contains(problem)), "{reply}");
    }

    let failure = json!({
        "name": "pkg", "version": "2.0", "reason": "download failed: 404",
        "attempt": job["attempt"], "assignment_id": job["assignment_id"],
    });
    assert_eq!(put(&agent, &server, &failure).0, 200);
    assert_eq!(put(&agent, &server, &failure).0, 409);

    let results = server.results();
    let summary: Vec<(u16, &str)> =
        results.iter().map(|result| (result.status, result.name.as_str())).collect();
    let refused = [(422, "pkg"); 7];
    let expected: Vec<(u16, &str)> =
        [(404, "nope"), (400, "")].into_iter().chain(refused).chain([(200, "pkg"), (409, "pkg")]).collect();
    assert_eq!(summary, expected);
    assert_eq!(results[1].body, json!("{not json"));
    assert_eq!(results[9].body, failure);
    assert_eq!(results[9].version, "2.0");
}

#[test]
fn result_without_lease_fields_is_accepted_from_older_clients() {
    let server = start_default();
    server.add_job("legacy", "1", vec![]);
    let agent = agent();
    lease(&agent, &server, 1);
    let body = json!({"name": "legacy", "version": "1", "score": 0, "inspector_url": null,
                      "rules_matched": [], "commit": "abc"});
    assert_eq!(put(&agent, &server, &body).0, 200);
    // A wrong attempt with the right assignment id is a stale lease.
    server.add_job("other", "1", vec![]);
    let job = lease(&agent, &server, 1).remove(0);
    let mut wrong = success(&job);
    wrong["attempt"] = json!(2);
    assert_eq!(put(&agent, &server, &wrong).0, 409);
}

#[test]
fn rule_changes_show_in_rules_and_in_new_jobs() {
    let server = start_default();
    server.add_job("a", "1", vec![]);
    server.add_job("b", "1", vec![]);
    let agent = agent();
    let initial = server.rules_hash();
    assert_eq!(initial.len(), 40);
    let (status, rules) = get(&agent, &format!("{}/rules", server.url()));
    assert_eq!((status, rules), (200, json!({"hash": initial, "rules": {}})));
    let before = lease(&agent, &server, 1).remove(0);

    let source = BTreeMap::from([("demo.yar".to_owned(), "rule demo { condition: true }".to_owned())]);
    server.set_rules("c0ffee", source);
    let (_, rules) = get(&agent, &format!("{}/rules", server.url()));
    assert_eq!(rules["hash"], "c0ffee");
    assert_eq!(rules["rules"]["demo.yar"], "rule demo { condition: true }");
    let after = lease(&agent, &server, 1).remove(0);
    assert_eq!(before["hash"], initial);
    assert_eq!(after["hash"], "c0ffee");
}

fn auth0_config(token_ttl: Duration) -> ServerConfig {
    ServerConfig {
        auth: AuthMode::Auth0 {
            client_id: "node-id".into(),
            client_secret: "node-secret".into(),
            username: "node@example.org".into(),
            password: "hunter2".into(),
            audience: "https://dragonfly.example".into(),
        },
        token_ttl,
        ..ServerConfig::default()
    }
}

fn password_grant<'a>(overrides: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("grant_type", "password"),
        ("client_id", "node-id"),
        ("client_secret", "node-secret"),
        ("audience", "https://dragonfly.example"),
        ("username", "node@example.org"),
        ("password", "hunter2"),
    ];
    for (key, value) in overrides {
        form.retain(|(k, _)| k != key);
        if !value.is_empty() {
            form.push((key, value));
        }
    }
    form
}

fn token_form(agent: &ureq::Agent, server: &FakeServer, form: &[(&str, &str)]) -> Reply {
    reply(agent.post(format!("{}/oauth/token", server.url())).send_form(form.iter().copied()))
}

fn rules_with(agent: &ureq::Agent, server: &FakeServer, header: Option<(&str, String)>) -> u16 {
    let mut request = agent.get(format!("{}/rules", server.url()));
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    reply(request.call()).0
}

fn bearer(token: &str) -> Option<(&'static str, String)> {
    Some(("Authorization", format!("Bearer {token}")))
}

#[test]
fn auth0_token_flow() {
    let server = start(auth0_config(Duration::from_secs(3600)));
    let agent = agent();
    assert_eq!(rules_with(&agent, &server, None), 401);
    assert_eq!(rules_with(&agent, &server, bearer("made-up")), 401);

    let (status, body) = token_form(&agent, &server, &password_grant(&[]));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"].as_str().expect("token").to_owned();
    let claims = jwt_claims(&token);
    assert_eq!(claims["aud"], "https://dragonfly.example");
    assert_eq!(claims["iss"], format!("{}/", server.url()));
    assert_eq!(claims["exp"].as_u64(), claims["iat"].as_u64().map(|iat| iat + 3600));
    assert_eq!(rules_with(&agent, &server, bearer(&token)), 200);

    // Client credentials, as JSON, and with the client in a Basic header.
    let (status, body) = reply(send_json(
        agent.post(format!("{}/oauth/token", server.url())),
        &json!({
            "grant_type": "client_credentials", "client_id": "node-id",
            "client_secret": "node-secret", "audience": "https://dragonfly.example",
        }),
    ));
    assert_eq!(status, 200, "{body}");
    let (status, body) = reply(
        agent
            .post(format!("{}/oauth/token", server.url()))
            .header("Authorization", format!("Basic {}", STANDARD.encode("node-id:node-secret")))
            .send_form(password_grant(&[("client_id", ""), ("client_secret", "")])),
    );
    assert_eq!(status, 200, "{body}");

    let refused = [
        (password_grant(&[("password", "wrong")]), 403, "invalid_grant"),
        (password_grant(&[("client_secret", "wrong")]), 401, "access_denied"),
        (password_grant(&[("audience", "https://other.example")]), 403, "access_denied"),
        (password_grant(&[("grant_type", "implicit")]), 400, "unsupported_grant_type"),
    ];
    for (form, expected, error) in refused {
        let (status, body) = token_form(&agent, &server, &form);
        assert_eq!((status, body["error"].as_str()), (expected, Some(error)), "{form:?}");
    }
    assert_eq!(server.stats().token_grants, 3);

    server.revoke_tokens();
    assert_eq!(rules_with(&agent, &server, bearer(&token)), 401);
    let (_, body) = token_form(&agent, &server, &password_grant(&[]));
    let renewed = body["access_token"].as_str().expect("token").to_owned();
    assert_eq!(rules_with(&agent, &server, bearer(&renewed)), 200);
    assert_eq!(server.stats().unauthorized, 3);
}

#[test]
fn auth0_token_expires() {
    let server = start(auth0_config(Duration::from_millis(100)));
    let agent = agent();
    let (status, body) = token_form(&agent, &server, &password_grant(&[]));
    assert_eq!(status, 200);
    assert_eq!(body["expires_in"], 1, "rounded up to whole seconds");
    let token = body["access_token"].as_str().expect("token").to_owned();
    thread::sleep(Duration::from_millis(150));
    assert_eq!(rules_with(&agent, &server, bearer(&token)), 401);
}

#[test]
fn cloudflare_edge_checks_the_service_token_on_every_request() {
    let auth = AuthMode::Cloudflare { client_id: "cf-id.access".into(), client_secret: "cf-secret".into() };
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build(),
    );
    let with_token = |server: &FakeServer, secret: &str, path: &str| {
        agent
            .get(format!("{}{path}", server.url()))
            .header("CF-Access-Client-Id", "cf-id.access")
            .header("CF-Access-Client-Secret", secret)
            .call()
            .expect("request completes")
    };

    // Production's edge: no cookie, a redirect to the login page otherwise.
    let server = start(ServerConfig { auth: auth.clone(), ..ServerConfig::default() });
    let granted = with_token(&server, "cf-secret", "/rules");
    assert_eq!(granted.status().as_u16(), 200);
    assert!(granted.headers().get("set-cookie").is_none());
    let refused = with_token(&server, "wrong", "/rules");
    assert_eq!(refused.status().as_u16(), 302);
    let location = refused.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(location.contains("cloudflareaccess.com/cdn-cgi/access/login"), "{location}");
    assert_eq!(rules_with(&agent, &server, None), 302);
    assert_eq!(server.stats().unauthorized, 2);

    // An edge that answers 403, and one that sets its cookie.
    let server = start(ServerConfig {
        auth,
        cloudflare_cookie: true,
        cloudflare_forbids: true,
        ..ServerConfig::default()
    });
    assert_eq!(with_token(&server, "wrong", "/").status().as_u16(), 403);
    let granted = with_token(&server, "cf-secret", "/jobs?batch=0");
    assert_eq!(granted.status().as_u16(), 405, "POST only, but past the edge");
    let granted = with_token(&server, "cf-secret", "/rules");
    let set_cookie = granted
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .expect("a cookie")
        .to_owned();
    let (pair, attributes) = set_cookie.split_once(';').expect("attributes");
    assert_eq!(attributes.trim(), "Path=/; HttpOnly; Secure");
    let jwt = pair.strip_prefix("CF_Authorization=").expect("the CF cookie").to_owned();
    let claims = jwt_claims(&jwt);
    assert_eq!(claims["exp"].as_u64(), claims["iat"].as_u64().map(|iat| iat + 3600));
    let cookie = || Some(("Cookie", format!("theme=dark; CF_Authorization={jwt}")));
    assert_eq!(rules_with(&agent, &server, cookie()), 200);
    assert_eq!(rules_with(&agent, &server, Some(("Cf-Access-Jwt-Assertion", jwt.clone()))), 200);
    server.revoke_tokens();
    assert_eq!(rules_with(&agent, &server, cookie()), 403);
    // There is no token endpoint behind Cloudflare.
    assert_eq!(token_form(&agent, &server, &password_grant(&[])).0, 404);
}

#[test]
fn a_rotated_signing_key_makes_old_tokens_unverifiable() {
    let server = start(auth0_config(Duration::from_secs(3600)));
    let agent = agent();
    let token = |agent: &ureq::Agent| {
        let (status, body) = token_form(agent, &server, &password_grant(&[]));
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    };
    let old = token(&agent);
    assert_eq!(rules_with(&agent, &server, bearer(&old)), 200);
    server.rotate_signing_key();
    assert_eq!(rules_with(&agent, &server, bearer(&old)), 500);
    let new = token(&agent);
    assert_eq!(rules_with(&agent, &server, bearer(&new)), 200);
}

#[test]
fn fixed_token_and_open_modes() {
    let server = start(ServerConfig { auth: AuthMode::Token("s3cret".into()), ..ServerConfig::default() });
    let agent = agent();
    assert_eq!(rules_with(&agent, &server, bearer("s3cret")), 200);
    assert_eq!(rules_with(&agent, &server, bearer("other")), 401);
    assert_eq!(rules_with(&agent, &server, None), 401);
    server.revoke_tokens();
    assert_eq!(rules_with(&agent, &server, bearer("s3cret")), 200);

    // An open server takes anything, and still hands out tokens.
    let open = start_default();
    assert_eq!(rules_with(&agent, &open, None), 200);
    let (status, body) = token_form(&agent, &open, &[("grant_type", "client_credentials")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(open.stats().token_grants, 1);
}

#[test]
fn status_fault_fails_requests_without_applying_them() {
    let server = start_default();
    server.add_job("pkg", "1", vec![]);
    server.add_fault(Fault::new(Endpoint::Jobs, FaultAction::Status(503)).with_limit(2));
    let agent = agent();
    assert_eq!(post_jobs(&agent, &server, 1).0, 503);
    assert_eq!(post_jobs(&agent, &server, 1).0, 503);
    assert_eq!(server.stats().leases, 0);
    assert_eq!(lease(&agent, &server, 1).len(), 1);
    let stats = server.stats();
    assert_eq!((stats.faults_injected, stats.leases, stats.requests_to(Endpoint::Jobs)), (2, 1, 3));

    server.add_fault(Fault::new(Endpoint::Any, FaultAction::Status(500)));
    assert_eq!(get(&agent, &format!("{}/rules", server.url())).0, 500);
    assert_eq!(get(&agent, &format!("{}/healthz", server.url())).0, 200);
    server.clear_faults();
    assert_eq!(get(&agent, &format!("{}/rules", server.url())).0, 200);
}

#[test]
fn delay_fault_holds_the_response() {
    let server = start_default();
    let delay = Duration::from_millis(200);
    server.add_fault(Fault::new(Endpoint::Rules, FaultAction::Delay(delay)).with_limit(1));
    let agent = agent();
    let started = Instant::now();
    assert_eq!(get(&agent, &format!("{}/rules", server.url())).0, 200);
    assert!(started.elapsed() >= delay);
    assert_eq!(server.stats().faults_injected, 1);
}

fn put_outcome(agent: &ureq::Agent, server: &FakeServer, body: &Value) -> Result<u16, ureq::Error> {
    let mut response = send_json(agent.put(format!("{}/package", server.url())), body)?;
    response.body_mut().read_to_string()?;
    Ok(response.status().as_u16())
}

#[test]
fn dropped_connection_loses_the_request() {
    let server = start_default();
    server.add_job("pkg", "1", vec![]);
    let agent = agent();
    let job = lease(&agent, &server, 1).remove(0);
    server.add_fault(Fault::new(Endpoint::Package, FaultAction::Drop).with_limit(1));

    let outcome = put_outcome(&agent, &server, &success(&job));
    assert!(outcome.is_err(), "{outcome:?}");
    assert!(server.results().is_empty());
    assert_eq!(server.stats().leased, 1);
    // The server keeps serving; the retry is stored.
    assert_eq!(put_outcome(&agent, &server, &success(&job)).ok(), Some(200));
    assert_eq!(server.stats().finished, 1);
}

#[test]
fn dropped_response_still_applies_the_request() {
    let server = start_default();
    server.add_job("pkg", "1", vec![]);
    server.add_fault(Fault::new(Endpoint::Jobs, FaultAction::DropResponse).with_limit(1));
    let agent = agent();
    let outcome = agent
        .post(format!("{}/jobs?batch=5", server.url()))
        .send_empty()
        .and_then(|mut response| response.body_mut().read_to_string());
    assert!(outcome.is_err(), "{outcome:?}");
    let stats = server.stats();
    assert_eq!((stats.leases, stats.leased), (1, 1));
    assert!(lease(&agent, &server, 5).is_empty(), "the job is held by the lost lease");
}

#[test]
fn fault_rate_is_seeded_and_repeatable() {
    let run = || {
        let server = start_default();
        server.set_fault_seed(42);
        server.add_fault(Fault::new(Endpoint::Rules, FaultAction::Status(502)).with_rate(0.5));
        let agent = agent();
        (0..40).map(|_| get(&agent, &format!("{}/rules", server.url())).0).collect::<Vec<u16>>()
    };
    let statuses = run();
    let failed = statuses.iter().filter(|status| **status == 502).count();
    assert!((1..40).contains(&failed), "{statuses:?}");
    assert!(statuses.iter().all(|status| matches!(status, 200 | 502)));
    assert_eq!(run(), statuses);
}

#[test]
fn concurrent_nodes_never_share_a_live_lease() {
    let server = Arc::new(start_default());
    for i in 0..200 {
        server.add_job(&format!("pkg-{i}"), "1", vec![]);
    }
    let nodes: Vec<_> = (0..4)
        .map(|_| {
            let server = Arc::clone(&server);
            thread::spawn(move || {
                let agent = agent();
                let mut names = Vec::new();
                loop {
                    let jobs = lease(&agent, &server, 3);
                    if jobs.is_empty() {
                        return names;
                    }
                    names.extend(jobs.iter().filter_map(|job| job["name"].as_str().map(str::to_owned)));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for node in nodes {
        all.extend(node.join().expect("node thread"));
    }
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 200);
    assert_eq!(distinct.len(), 200);
    assert_eq!(server.stats().leased, 200);
}

#[test]
fn distributions_are_served_at_pypi_like_paths() {
    let server = start_default();
    let wheel: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
    let urls = server.add_package(
        "demo-pkg",
        "1.2.3",
        vec![
            Distribution { filename: "demo_pkg-1.2.3-py3-none-any.whl".into(), bytes: wheel.clone() },
            Distribution { filename: "demo-pkg-1.2.3.tar.gz".into(), bytes: b"sdist".to_vec() },
        ],
    );
    assert_eq!(urls.len(), 2);
    for (url, filename) in urls.iter().zip(["demo_pkg-1.2.3-py3-none-any.whl", "demo-pkg-1.2.3.tar.gz"]) {
        let path = url.strip_prefix(&format!("{}/packages/", server.url())).expect("under /packages/");
        let segments: Vec<&str> = path.split('/').collect();
        assert_eq!(segments.iter().map(|s| s.len()).take(3).collect::<Vec<_>>(), [2, 2, 60]);
        assert!(segments[..3].iter().all(|s| s.bytes().all(|b| b.is_ascii_hexdigit())));
        assert_eq!(segments[3], filename);
    }

    let agent = agent();
    let job = lease(&agent, &server, 1).remove(0);
    assert_eq!(job["distributions"], json!(urls));

    let mut response = agent.get(&urls[0]).call().expect("download");
    assert_eq!(response.status().as_u16(), 200);
    let length = response.headers().get("content-length").and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(length, Some(wheel.len().to_string()));
    let bytes = response.body_mut().with_config().limit(2 << 20).read_to_vec().expect("body");
    assert!(bytes == wheel, "downloaded bytes differ");

    let head = agent.head(&urls[1]).call().expect("head");
    assert_eq!(head.status().as_u16(), 200);
    let (status, _) = get(&agent, &format!("{}/packages/00/00/0000/missing.whl", server.url()));
    assert_eq!(status, 404);
    assert_eq!(server.stats().requests_to(Endpoint::Download), 3);
}

#[test]
fn other_paths_and_methods() {
    let server = start_default();
    let agent = agent();
    assert_eq!(get(&agent, &format!("{}/healthz", server.url())), (200, json!({"status": "ok"})));
    assert_eq!(get(&agent, &format!("{}/nowhere", server.url())).0, 404);
    assert_eq!(get(&agent, &format!("{}/jobs", server.url())).0, 405);
    let (status, body) = reply(agent.post(format!("{}/jobs?batch=many", server.url())).send_empty());
    assert_eq!(status, 422, "{body}");
    assert!(server.url().starts_with("http://127.0.0.1:"));
    assert!(!server.url().ends_with('/'));
}

/// The scan-cache context of the server's current rules.
fn cache_context(server: &FakeServer, rules: &BTreeMap<String, String>) -> Value {
    let digest = dragonfly_testkit::server::rules_digest(rules);
    json!({"scanner": "yara", "rules_commit": server.rules_hash(), "rules_digest": digest, "engine_digest": "e".repeat(64)})
}

fn cache_post(agent: &ureq::Agent, server: &FakeServer, what: &str, body: &Value) -> Reply {
    reply(send_json(agent.post(format!("{}/scan-cache/{what}", server.url())), body))
}

#[test]
fn the_scan_cache_is_off_unless_switched_on() {
    let server = start_default();
    let (status, _) = cache_post(&agent(), &server, "lookup", &json!({}));
    assert_eq!(status, 404);
}

#[test]
fn the_scan_cache_checks_rules_leases_and_limits_and_can_be_revoked() {
    let server = start(ServerConfig { scan_cache: true, scan_cache_rate: 1000, ..ServerConfig::default() });
    let rules = BTreeMap::from([("a.yar".to_owned(), "rule a { condition: true }".to_owned())]);
    server.set_rules("r1", rules.clone());
    server.add_job("p", "1.0", vec![]);
    let agent = agent();
    let job = lease(&agent, &server, 1).remove(0);
    let context = cache_context(&server, &rules);
    let lease = json!({"name": "p", "version": "1.0", "assignment_id": job["assignment_id"], "attempt": job["attempt"]});
    let digest = "1".repeat(64);
    let entry = json!({"file_digest": digest, "language": "", "result": "[[0,[]]]"});
    let lookup = json!({"context": context, "keys": [{"file_digest": digest, "language": ""}]});

    assert_eq!(
        cache_post(&agent, &server, "lookup", &lookup),
        (200, json!({"revoked": false, "entries": []}))
    );
    let written = cache_post(
        &agent,
        &server,
        "write",
        &json!({"context": context, "lease": lease, "entries": [entry]}),
    );
    assert_eq!(written, (200, json!({"inserted": 1, "skipped": 0})));
    let again = cache_post(
        &agent,
        &server,
        "write",
        &json!({"context": context, "lease": lease, "entries": [entry]}),
    );
    assert_eq!(again, (200, json!({"inserted": 0, "skipped": 1})), "the first write wins");
    assert_eq!(
        cache_post(&agent, &server, "lookup", &lookup),
        (200, json!({"revoked": false, "entries": [entry]}))
    );

    // Other rules, another engine: not the same entries.
    let mut other = context.clone();
    other["rules_commit"] = json!("r0");
    assert_eq!(
        cache_post(&agent, &server, "lookup", &json!({"context": other, "keys": lookup["keys"]})).0,
        409
    );
    let mut engine = context.clone();
    engine["engine_digest"] = json!("f".repeat(64));
    let (status, body) =
        cache_post(&agent, &server, "lookup", &json!({"context": engine, "keys": lookup["keys"]}));
    assert_eq!((status, body["entries"].clone()), (200, json!([])));

    // The lease must be current.
    let mut stale = lease.clone();
    stale["attempt"] = json!(2);
    assert_eq!(
        cache_post(&agent, &server, "write", &json!({"context": context, "lease": stale, "entries": []})).0,
        409
    );

    // Wire limits.
    let keys: Vec<Value> = (0..129).map(|_| json!({"file_digest": digest})).collect();
    for bad in [
        json!({"context": context, "keys": []}),
        json!({"context": context, "keys": keys}),
        json!({"context": context, "keys": [{"file_digest": "ABC"}]}),
        json!({"context": {"scanner": "yara"}, "keys": lookup["keys"]}),
    ] {
        assert_eq!(cache_post(&agent, &server, "lookup", &bad).0, 422, "{bad}");
    }
    let big = format!("[\"{}\"]", "x".repeat(16_400));
    let many: Vec<Value> = (0..33)
        .map(|i| json!({"file_digest": format!("{i:064x}"), "result": format!("[\"{}\"]", "x".repeat(16_000))}))
        .collect();
    for entries in [
        json!([{"file_digest": digest, "result": "{}"}]),
        json!([{"file_digest": digest, "result": big}]),
        json!(many),
    ] {
        let body = json!({"context": context, "lease": lease, "entries": entries});
        assert_eq!(cache_post(&agent, &server, "write", &body).0, 422);
    }

    // A revoked context answers nothing but that.
    let revoke = json!({"context": context, "lease": lease, "entries": [], "revoke": true});
    assert_eq!(cache_post(&agent, &server, "write", &revoke).0, 200);
    assert_eq!(
        cache_post(&agent, &server, "lookup", &lookup),
        (200, json!({"revoked": true, "entries": []}))
    );
    let stats = server.scan_cache_stats();
    assert_eq!((stats.revoked, stats.entries, stats.inserted), (1, 0, 1));
}

#[test]
fn the_scan_cache_limits_its_rate_contexts_and_lifetime() {
    let server = start(ServerConfig {
        scan_cache: true,
        scan_cache_rate: 10,
        scan_cache_ttl: Duration::from_millis(1500),
        ..ServerConfig::default()
    });
    let rules = BTreeMap::new();
    server.add_job("p", "1.0", vec![]);
    let agent = agent();
    let job = lease(&agent, &server, 1).remove(0);
    let lease = json!({"name": "p", "version": "1.0", "assignment_id": job["assignment_id"], "attempt": job["attempt"]});
    let context = cache_context(&server, &rules);
    let statuses: Vec<u16> = (0..12)
        .map(|_| {
            cache_post(
                &agent,
                &server,
                "lookup",
                &json!({"context": context, "keys": [{"file_digest": "2".repeat(64)}]}),
            )
            .0
        })
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(server.scan_cache_stats().rate_limited, statuses.iter().filter(|&&s| s == 429).count() as u64);

    thread::sleep(Duration::from_secs(1));
    // Eight engines per scanner; a ninth's writes are skipped.
    let entry = json!({"file_digest": "3".repeat(64), "result": "[]"});
    for i in 0..9u8 {
        thread::sleep(Duration::from_millis(110));
        let mut ctx = context.clone();
        ctx["engine_digest"] = json!(format!("{i}").repeat(64));
        let (status, body) = cache_post(
            &agent,
            &server,
            "write",
            &json!({"context": ctx, "lease": lease, "entries": [entry]}),
        );
        assert_eq!(status, 200);
        assert_eq!(body["inserted"], if i < 8 { 1 } else { 0 }, "engine {i}");
    }
    // Entries live for the TTL.
    thread::sleep(Duration::from_millis(1600));
    let mut ctx = context.clone();
    ctx["engine_digest"] = json!("0".repeat(64));
    let (status, body) = cache_post(
        &agent,
        &server,
        "lookup",
        &json!({"context": ctx, "keys": [{"file_digest": "3".repeat(64)}]}),
    );
    assert_eq!((status, body["entries"].clone()), (200, json!([])));
}

#[test]
fn a_scan_cache_write_needs_a_live_lease() {
    let server = start(ServerConfig {
        scan_cache: true,
        scan_cache_rate: 1000,
        lease_timeout: Duration::from_millis(200),
        ..ServerConfig::default()
    });
    server.add_job("p", "1.0", vec![]);
    let agent = agent();
    let job = lease(&agent, &server, 1).remove(0);
    let context = cache_context(&server, &BTreeMap::new());
    let lease = json!({"name": "p", "version": "1.0", "assignment_id": job["assignment_id"], "attempt": job["attempt"]});
    let write = json!({"context": context, "lease": lease, "entries": [{"file_digest": "4".repeat(64), "result": "[]"}]});
    assert_eq!(cache_post(&agent, &server, "write", &write).0, 200);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(cache_post(&agent, &server, "write", &write).0, 409, "the lease ran out");
}
