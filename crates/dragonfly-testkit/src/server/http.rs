//! Request routing and the endpoint handlers.

use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tiny_http::{Method, Request, StatusCode};

use super::auth::{self, CF_COOKIE, Headers};
use super::names::normalize_name;
use super::queue::Outcome;
use super::scan_cache;
use super::{AuthMode, Endpoint, FaultAction, RecordedResult, Shared, State};

/// How long a worker waits for a request before checking for shutdown.
const POLL: Duration = Duration::from_millis(50);
/// Largest request body read; the rest is ignored.
const MAX_BODY: u64 = 16 << 20;
/// Largest `batch` honoured.
const MAX_BATCH: usize = 10_000;
/// What a dropped connection looks like to the client: a status line and
/// the start of a chunked body, then bytes that are not a chunk header.
const BROKEN_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
Transfer-Encoding: chunked\r\n\r\n4\r\n[{\"n\r\n<connection lost>\r\n\r\n";

/// A worker: answers requests until the server stops.
pub(super) fn serve(shared: &Shared, server: &tiny_http::Server) {
    while !shared.stop.load(Ordering::Acquire) {
        match server.recv_timeout(POLL) {
            Ok(Some(request)) => handle(shared, request),
            Ok(None) => {}
            Err(err) => {
                log::warn!("fake server: receiving a request failed: {err}");
                shared.sleep(POLL);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Healthz,
    /// `GET /`: the Cloudflare Access login.
    Login,
    /// `POST /oauth/token`.
    Token,
    Jobs,
    Rules,
    Package,
    Download,
    /// `GET /simple/{name}/`: a project page of the simple index.
    Simple,
    ScanCacheLookup,
    ScanCacheWrite,
    MethodNotAllowed,
    NotFound,
}

impl Route {
    fn of(method: &Method, path: &str) -> Route {
        let get = matches!(method, Method::Get | Method::Head);
        let (route, allowed) = match path {
            "/healthz" => (Route::Healthz, get),
            "/" => (Route::Login, get),
            "/oauth/token" => (Route::Token, *method == Method::Post),
            "/jobs" => (Route::Jobs, *method == Method::Post),
            "/rules" => (Route::Rules, get),
            "/package" => (Route::Package, *method == Method::Put),
            "/scan-cache/lookup" => (Route::ScanCacheLookup, *method == Method::Post),
            "/scan-cache/write" => (Route::ScanCacheWrite, *method == Method::Post),
            _ if path.starts_with("/packages/") => (Route::Download, get),
            _ if path.starts_with("/simple/") => (Route::Simple, get),
            _ => return Route::NotFound,
        };
        if allowed { route } else { Route::MethodNotAllowed }
    }

    fn endpoint(self) -> Option<Endpoint> {
        match self {
            Route::Login | Route::Token => Some(Endpoint::Token),
            Route::Jobs => Some(Endpoint::Jobs),
            Route::Rules => Some(Endpoint::Rules),
            Route::Package => Some(Endpoint::Package),
            Route::Download | Route::Simple => Some(Endpoint::Download),
            Route::ScanCacheLookup | Route::ScanCacheWrite => Some(Endpoint::ScanCache),
            Route::Healthz | Route::MethodNotAllowed | Route::NotFound => None,
        }
    }
}

/// A response about to be sent.
pub(super) struct Reply {
    status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Arc<Vec<u8>>,
}

impl Reply {
    pub(super) fn json(status: u16, value: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: Arc::new(value.to_string().into_bytes()),
        }
    }

    pub(super) fn detail(status: u16, detail: &str) -> Reply {
        Reply::json(status, &json!({ "detail": detail }))
    }

    fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }
}

fn handle(shared: &Shared, mut request: Request) {
    let url = request.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let route = Route::of(request.method(), path);
    log::debug!("fake server: {} {url}", request.method());
    let Some(endpoint) = route.endpoint() else {
        let reply = match route {
            Route::Healthz => Reply::json(200, &json!({ "status": "ok" })),
            Route::MethodNotAllowed => Reply::detail(405, "Method Not Allowed"),
            _ => Reply::detail(404, "Not Found"),
        };
        send(request, reply);
        return;
    };

    let mut body = Vec::new();
    if let Err(err) = request.as_reader().take(MAX_BODY).read_to_end(&mut body) {
        log::debug!("fake server: reading a request body failed: {err}");
        send(request, Reply::detail(400, "unreadable body"));
        return;
    }

    let verdict = {
        let mut state = shared.lock();
        *state.requests.entry(endpoint).or_default() += 1;
        let verdict = state.faults.decide(endpoint);
        state.faults_injected += u64::from(verdict.fired);
        verdict
    };
    if !verdict.delay.is_zero() {
        shared.sleep(verdict.delay);
    }
    match verdict.action {
        Some(FaultAction::Status(status)) => {
            send(request, Reply::detail(status, "injected fault"));
            return;
        }
        Some(FaultAction::Drop) => {
            break_connection(request);
            return;
        }
        _ => {}
    }

    let reply = dispatch(shared, route, path, query, &Headers(request.headers()), &body);
    shared.changed.notify_all();
    if verdict.action == Some(FaultAction::DropResponse) {
        break_connection(request);
    } else {
        send(request, reply);
    }
}

/// Writes the response by hand with `Connection: close`. tiny_http ignores
/// that header on its responses and keeps connections open; its connection
/// pool can then leave a new connection unserved while every pooled thread
/// waits on an idle keep-alive connection. Closing after each response
/// frees the thread at once.
fn send(request: Request, reply: Reply) {
    let status = StatusCode(reply.status);
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        status.default_reason_phrase(),
        reply.content_type,
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    // One write: a separate small body write would wait for the client's
    // delayed ACK (Nagle), ~40 ms per response.
    let mut bytes = head.into_bytes();
    if *request.method() != Method::Head {
        bytes.extend_from_slice(&reply.body);
    }
    let mut writer = request.into_writer();
    let written = writer.write_all(&bytes).and_then(|()| writer.flush());
    if let Err(err) = written {
        log::debug!("fake server: sending a response failed: {err}");
    }
}

/// Answers with a corrupt response; the client gives up on the connection.
fn break_connection(request: Request) {
    let mut writer = request.into_writer();
    let written = writer.write_all(BROKEN_RESPONSE).and_then(|()| writer.flush());
    if let Err(err) = written {
        log::debug!("fake server: breaking a connection failed: {err}");
    }
}

fn dispatch(
    shared: &Shared,
    route: Route,
    path: &str,
    query: &str,
    headers: &Headers<'_>,
    body: &[u8],
) -> Reply {
    let now = Instant::now();
    let mut state = shared.lock();
    state.queue.expire(now);
    match route {
        Route::Login => login(shared, &mut state, headers),
        Route::Token => token(shared, &mut state, headers, body),
        Route::Simple => simple(shared, &state, path, headers),
        Route::Download => match state.files.get(path) {
            Some(bytes) => Reply {
                status: 200,
                content_type: "application/octet-stream",
                headers: Vec::new(),
                body: Arc::clone(bytes),
            },
            None => Reply::detail(404, "Not Found"),
        },
        Route::Jobs | Route::Rules | Route::Package | Route::ScanCacheLookup | Route::ScanCacheWrite => {
            match auth::api_verdict(&shared.config.auth, &state.tokens, headers) {
                auth::Verdict::Allowed => {}
                auth::Verdict::Unverifiable => {
                    state.unauthorized += 1;
                    return Reply::detail(500, "Unable to verify credentials");
                }
                auth::Verdict::Refused => {
                    state.unauthorized += 1;
                    if matches!(shared.config.auth, AuthMode::Cloudflare { .. }) {
                        return edge_refusal(shared, path);
                    }
                    return Reply::detail(401, "Not authenticated")
                        .with_header("WWW-Authenticate", "Bearer".to_owned());
                }
            }
            let config = &shared.config;
            let reply = match route {
                Route::Jobs => jobs(&mut state, query, now, config.extra_jobs),
                Route::Rules => Reply::json(200, &json!({ "hash": state.rules_hash, "rules": state.rules })),
                Route::ScanCacheLookup | Route::ScanCacheWrite => {
                    match scan_cache::admit(&mut state, config.scan_cache, config.scan_cache_rate, now) {
                        Some(refused) => refused,
                        None if route == Route::ScanCacheLookup => {
                            scan_cache::lookup(&mut state, body, config.scan_cache_ttl, now)
                        }
                        None => scan_cache::write(&mut state, body, config.scan_cache_ttl, now),
                    }
                }
                _ => package(&mut state, body, now),
            };
            match &shared.config.auth {
                AuthMode::Cloudflare { .. } if shared.config.cloudflare_cookie => {
                    let token = edge_token(shared, &mut state, headers);
                    reply.with_header("Set-Cookie", format!("{CF_COOKIE}={token}; Path=/; HttpOnly; Secure"))
                }
                _ => reply,
            }
        }
        Route::Healthz | Route::MethodNotAllowed | Route::NotFound => Reply::detail(404, "Not Found"),
    }
}

/// `GET /`: the server's root behind the edge; with a valid service token
/// (and `cloudflare_cookie`) the edge sets its cookie on the answer.
fn login(shared: &Shared, state: &mut State, headers: &Headers<'_>) -> Reply {
    let reply = Reply::json(200, &json!({ "message": "dragonfly fake mainframe" }));
    match &shared.config.auth {
        AuthMode::Cloudflare { client_id, client_secret } => {
            if !auth::cf_headers_match(headers, client_id, client_secret) {
                return edge_refusal(shared, "/");
            }
            if !shared.config.cloudflare_cookie {
                return reply;
            }
            let token = edge_token(shared, state, headers);
            reply.with_header("Set-Cookie", format!("{CF_COOKIE}={token}; Path=/; HttpOnly; Secure"))
        }
        AuthMode::None | AuthMode::Auth0 { .. } | AuthMode::Token(_) => reply,
    }
}

/// The JWT the edge issues for a service token (the `Cf-Access-Jwt-Assertion`
/// it forwards, and its cookie).
fn edge_token(shared: &Shared, state: &mut State, headers: &Headers<'_>) -> String {
    let mut claims = Map::new();
    claims.insert("aud".into(), json!([shared.base_url]));
    claims.insert("iss".into(), json!("https://fake.cloudflareaccess.com"));
    claims.insert("type".into(), json!("app"));
    claims.insert("common_name".into(), json!(headers.get("CF-Access-Client-Id")));
    state.token_grants += 1;
    state.tokens.issue(claims, shared.config.token_ttl)
}

/// What a Cloudflare Access edge answers a request without a valid service
/// token: a redirect to its login page (or, configured so, 403).
fn edge_refusal(shared: &Shared, path: &str) -> Reply {
    let page = b"<!DOCTYPE html><html><head><title>Sign in - Cloudflare Access</title></head><body>Sign in</body></html>";
    let reply =
        Reply { status: 302, content_type: "text/html", headers: Vec::new(), body: Arc::new(page.to_vec()) };
    if shared.config.cloudflare_forbids {
        return Reply { status: 403, ..reply };
    }
    reply.with_header(
        "Location",
        format!(
            "https://fake-team.cloudflareaccess.com/cdn-cgi/access/login/{}?redirect_url={path}",
            shared.base_url
        ),
    )
}

/// `GET /simple/{name}/`: PEP 691 JSON when asked for, PEP 503 HTML
/// otherwise, as PyPI answers; 404 for an unknown project.
fn simple(shared: &Shared, state: &State, path: &str, headers: &Headers<'_>) -> Reply {
    let name = path.trim_start_matches("/simple/").trim_end_matches('/');
    let Some(files) = state.index.get(&normalize_name(name)) else {
        return Reply::detail(404, "Not Found");
    };
    let url = |file: &super::IndexFile| format!("{}{}", shared.base_url, file.path);
    let wants_json =
        headers.get("Accept").is_some_and(|accept| accept.contains("application/vnd.pypi.simple.v1+json"));
    let project = files.first().map_or(name, |file| file.project.as_str());
    if wants_json {
        let files: Vec<Value> = files
            .iter()
            .map(|file| {
                json!({
                    "filename": file.filename,
                    "url": url(file),
                    "hashes": {"sha256": file.sha256},
                    "yanked": file.yanked,
                })
            })
            .collect();
        let page = json!({"meta": {"api-version": "1.1"}, "name": project, "files": files});
        return Reply { content_type: "application/vnd.pypi.simple.v1+json", ..Reply::json(200, &page) };
    }
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><title>Links for {project}</title></head><body><h1>Links for {project}</h1>\n"
    );
    for file in files {
        let yanked = if file.yanked { " data-yanked=\"\"" } else { "" };
        html.push_str(&format!(
            "<a href=\"{}#sha256={}\"{yanked}>{}</a><br/>\n",
            url(file),
            file.sha256,
            file.filename
        ));
    }
    html.push_str("</body></html>\n");
    Reply { status: 200, content_type: "text/html", headers: Vec::new(), body: Arc::new(html.into_bytes()) }
}

/// `POST /oauth/token`.
fn token(shared: &Shared, state: &mut State, headers: &Headers<'_>, body: &[u8]) -> Reply {
    let claims = auth::token_params(headers, body).and_then(|params| {
        auth::check_token_request(&shared.config.auth, &params, &format!("{}/", shared.base_url))
    });
    match claims {
        Ok(claims) => {
            let ttl = shared.config.token_ttl;
            let access_token = state.tokens.issue(claims, ttl);
            state.token_grants += 1;
            Reply::json(
                200,
                &json!({
                    "access_token": access_token,
                    "expires_in": auth::ttl_secs(ttl),
                    "token_type": "Bearer",
                }),
            )
        }
        Err((status, body)) => Reply::json(status, &body),
    }
}

/// `POST /jobs?batch=N`.
fn jobs(state: &mut State, query: &str, now: Instant, extra: usize) -> Reply {
    let mut batch = 1;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key == "batch" {
            match value.parse::<usize>() {
                Ok(n) => batch = n.min(MAX_BATCH),
                Err(_) => {
                    return Reply::json(
                        422,
                        &json!({ "detail": [{
                            "loc": ["query", "batch"],
                            "msg": "Input should be a valid integer",
                            "type": "int_parsing",
                        }]}),
                    );
                }
            }
        }
    }
    let State { queue, ids, rules_hash, .. } = state;
    let leased = queue.lease(batch + extra, now, rules_hash, || {
        let (a, b) = (ids.next_u64(), ids.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            ((b >> 48) & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    });
    Reply::json(200, &Value::Array(leased))
}

/// A result body that passed validation.
#[derive(Debug)]
struct Submission {
    name: String,
    version: String,
    assignment_id: Option<String>,
    attempt: Option<u32>,
}

/// `PUT /package`: validates, applies and records a result.
fn package(state: &mut State, body: &[u8], now: Instant) -> Reply {
    let (reply, value) = match serde_json::from_slice::<Value>(body) {
        Err(err) => (
            Reply::detail(400, &format!("body is not JSON: {err}")),
            Value::String(String::from_utf8_lossy(body).into_owned()),
        ),
        Ok(value) => {
            let reply = match validate(&value) {
                Err(problem) => Reply::detail(422, &problem),
                Ok(submission) => match state.queue.submit(
                    &submission.name,
                    &submission.version,
                    submission.assignment_id.as_deref(),
                    submission.attempt,
                    now,
                ) {
                    Outcome::Stored => Reply::json(200, &Value::Null),
                    Outcome::NotFound => Reply::detail(404, "package not found"),
                    Outcome::Conflict(reason) => Reply::detail(409, reason),
                },
            };
            (reply, value)
        }
    };
    let field = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    let result =
        RecordedResult { status: reply.status, name: field("name"), version: field("version"), body: value };
    log::debug!("fake server: result for {}=={} -> {}", result.name, result.version, result.status);
    state.results.push(result);
    reply
}

const SUCCESS_FIELDS: [&str; 9] = [
    "name",
    "version",
    "score",
    "inspector_url",
    "rules_matched",
    "commit",
    "attempt",
    "assignment_id",
    "scan_reuse",
];
const FAILURE_FIELDS: [&str; 6] = ["name", "version", "reason", "attempt", "assignment_id", "scan_reuse"];

/// The counts a `scan_reuse` object may carry (besides `mode`).
const SCAN_REUSE_COUNTS: [&str; 13] = [
    "lookups",
    "candidate_files",
    "reused_files",
    "reused_bytes",
    "inserted_files",
    "evicted_files",
    "errors",
    "validated_files",
    "mismatched_files",
    "overhead_us",
    "engine_us",
    "engine_files",
    "engine_bytes",
];

/// Checks a result's `scan_reuse`: a mode and bounded non-negative
/// integers, nothing else.
fn validate_scan_reuse(value: &Value) -> Result<(), String> {
    let Value::Object(map) = value else {
        return Err("field `scan_reuse` must be an object".into());
    };
    for (key, value) in map {
        if key == "mode" {
            if !matches!(value.as_str(), Some("off" | "observe" | "reuse")) {
                return Err("`scan_reuse.mode` must be off, observe or reuse".into());
            }
        } else if !SCAN_REUSE_COUNTS.contains(&key.as_str()) {
            return Err(format!("unexpected field `scan_reuse.{key}`"));
        } else if value.as_u64().is_none_or(|n| n >= 1 << 53) {
            return Err(format!("`scan_reuse.{key}` must be a non-negative integer below 2^53"));
        }
    }
    Ok(())
}

/// Checks the shape of a result body (success or failure, told apart by
/// `reason`); unknown fields are refused so that wire mistakes show.
fn validate(value: &Value) -> Result<Submission, String> {
    let Value::Object(map) = value else {
        return Err("body must be a JSON object".into());
    };
    let text = |key: &str| -> Result<String, String> {
        match map.get(key) {
            Some(Value::String(text)) if !text.is_empty() => Ok(text.clone()),
            _ => Err(format!("field `{key}` must be a non-empty string")),
        }
    };
    let name = text("name")?;
    let version = text("version")?;
    let failure = map.contains_key("reason");
    let (kind, allowed): (&str, &[&str]) =
        if failure { ("failure", &FAILURE_FIELDS) } else { ("success", &SUCCESS_FIELDS) };
    if let Some(key) = map.keys().find(|key| !allowed.contains(&key.as_str())) {
        return Err(format!("unexpected field `{key}` in a {kind} result"));
    }
    if let Some(reuse) = map.get("scan_reuse") {
        validate_scan_reuse(reuse)?;
    }
    if failure {
        text("reason")?;
    } else {
        if !map.get("score").is_some_and(|score| score.is_i64() || score.is_u64()) {
            return Err("field `score` must be an integer".into());
        }
        if !matches!(map.get("inspector_url"), None | Some(Value::Null | Value::String(_))) {
            return Err("field `inspector_url` must be a string or null".into());
        }
        let rules_ok = map
            .get("rules_matched")
            .and_then(Value::as_array)
            .is_some_and(|rules| rules.iter().all(Value::is_string));
        if !rules_ok {
            return Err("field `rules_matched` must be a list of strings".into());
        }
        text("commit")?;
    }
    let attempt = match map.get("attempt") {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if n > 0 => Some(n),
            _ => return Err("field `attempt` must be a positive integer".into()),
        },
    };
    let assignment_id = match map.get("assignment_id") {
        None | Some(Value::Null) => None,
        Some(_) => Some(text("assignment_id")?),
    };
    Ok(Submission { name, version, assignment_id, attempt })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(Route::of(&Method::Post, "/jobs"), Route::Jobs);
        assert_eq!(Route::of(&Method::Get, "/jobs"), Route::MethodNotAllowed);
        assert_eq!(Route::of(&Method::Head, "/packages/a/b/c/x.whl"), Route::Download);
        assert_eq!(Route::of(&Method::Get, "/nope"), Route::NotFound);
        assert_eq!(Route::Login.endpoint(), Some(Endpoint::Token));
        assert_eq!(Route::Healthz.endpoint(), None);
    }

    #[test]
    fn validation() {
        let ok = json!({"name": "a", "version": "1", "score": 3, "inspector_url": null,
                        "rules_matched": ["r"], "commit": "c", "attempt": 1, "assignment_id": "x"});
        let submission = validate(&ok).map_err(|err| err.to_string());
        assert!(submission.as_ref().is_ok_and(|s| s.attempt == Some(1)), "{submission:?}");
        assert!(validate(&json!({"name": "a", "version": "1", "reason": "too big"})).is_ok());

        let bad = [
            json!([]),
            json!({"version": "1", "reason": "x"}),
            json!({"name": "a", "version": "1", "reason": ""}),
            json!({"name": "a", "version": "1", "reason": "x", "score": 1}),
            json!({"name": "a", "version": "1", "score": "3", "rules_matched": [], "commit": "c"}),
            json!({"name": "a", "version": "1", "score": 3, "rules_matched": [1], "commit": "c"}),
            json!({"name": "a", "version": "1", "score": 3, "rules_matched": [], "commit": "c", "attempt": 0}),
            json!({"name": "a", "version": "1", "score": 3, "rules_matched": []}),
        ];
        for body in bad {
            assert!(validate(&body).is_err(), "{body} should be refused");
        }
    }
}
