//! Credentials: logging in (Auth0, Cloudflare Access), single-flight renewal, backoff.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, RequestTokenError, ResourceOwnerPassword,
    ResourceOwnerUsername, TokenResponse, TokenUrl,
};
use ureq::Agent;
use ureq::http::{self, HeaderValue};

use crate::backoff::Backoff;
use crate::config::{Auth, ClientConfig, Grant, auth0_token_url};
use crate::error::{Error, ErrorKind};
use crate::http::TokenHttp;
use crate::secret::Secret;

/// Renew at most this long before expiry (less for short-lived credentials).
const RENEW_MARGIN: Duration = Duration::from_secs(60);
/// Largest token-endpoint response accepted.
const MAX_TOKEN_RESPONSE: u64 = 1024 * 1024;
/// Cloudflare Access's cookie name.
const CF_COOKIE: &str = "CF_Authorization";
/// Server errors in a row on authenticated calls after which the
/// credential is renewed.
const SERVER_ERRORS_BEFORE_RENEWAL: u32 = 3;

type OAuthClient = BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// A credential to put on API requests.
#[derive(Clone, Debug)]
pub(crate) struct Credential {
    value: CredentialValue,
    /// Bumped on every login; a 401 invalidates only the generation it saw.
    pub(crate) generation: u64,
    expires_at: Option<Instant>,
    renew_at: Option<Instant>,
}

#[derive(Clone, Debug)]
enum CredentialValue {
    Bearer(Secret),
    /// The Cloudflare Access service-token headers go on every request;
    /// the `CF_Authorization` cookie too, once an edge has set one.
    Cloudflare(Option<Secret>),
}

impl Credential {
    fn new(value: CredentialValue, lifetime: Option<Duration>) -> Self {
        let now = Instant::now();
        let expires_at = lifetime.and_then(|lifetime| now.checked_add(lifetime));
        let renew_at = lifetime.and_then(|lifetime| {
            let margin = RENEW_MARGIN.min(lifetime / 10);
            now.checked_add(lifetime - margin)
        });
        Credential { value, generation: 0, expires_at, renew_at }
    }

    /// Good to use without renewing.
    fn is_fresh(&self, now: Instant) -> bool {
        self.renew_at.is_none_or(|renew_at| now < renew_at)
    }

    /// Whether it carries a Cloudflare Access cookie.
    pub(crate) fn has_cookie(&self) -> bool {
        matches!(self.value, CredentialValue::Cloudflare(Some(_)))
    }

    /// Not expired yet (may be due for renewal).
    fn is_usable(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|expires_at| now < expires_at)
    }

    fn secret(&self) -> Option<&Secret> {
        match &self.value {
            CredentialValue::Bearer(value) => Some(value),
            CredentialValue::Cloudflare(cookie) => cookie.as_ref(),
        }
    }
}

/// Mutable login state, behind one mutex.
#[derive(Default)]
struct State {
    credential: Option<Credential>,
    /// A thread is logging in; others wait on the condvar (or use a still-valid credential).
    renewing: bool,
    generation: u64,
    /// Failed logins in a row.
    failures: u32,
    /// Fresh credentials the API refused in a row (reset by a successful call).
    refusals: u32,
    retry_at: Option<Instant>,
    last_failure: Option<Error>,
    /// The server accepted a call (Cloudflare Access has no login to tell).
    confirmed: bool,
    /// Server errors in a row on authenticated calls.
    server_errors: u32,
    /// Credentials dropped in a row because the server could not verify
    /// them: past the first, logins back off.
    unverifiable: u32,
}

/// Owns the authentication scheme and the shared credential.
pub(crate) struct Authenticator {
    auth: Auth,
    agent: Agent,
    oauth: Option<OAuthClient>,
    backoff: Backoff,
    state: Mutex<State>,
    renewed: Condvar,
    /// Successful logins, for metrics.
    logins: AtomicU64,
    /// Failed login attempts, for metrics.
    login_failures: AtomicU64,
}

impl Authenticator {
    pub(crate) fn new(config: &ClientConfig, agent: Agent) -> Result<Self, Error> {
        let oauth = match &config.auth {
            Auth::Auth0 { domain, client_id, client_secret, .. } => {
                let token_url = TokenUrl::new(auth0_token_url(domain)).map_err(|err| {
                    Error::new(ErrorKind::InvalidUrl, format!("invalid Auth0 domain `{domain}`: {err}"))
                })?;
                Some(
                    BasicClient::new(ClientId::new(client_id.clone()))
                        .set_client_secret(ClientSecret::new(client_secret.expose().to_owned()))
                        .set_auth_type(AuthType::RequestBody)
                        .set_token_uri(token_url),
                )
            }
            _ => None,
        };
        Ok(Authenticator {
            auth: config.auth.clone(),
            agent,
            oauth,
            backoff: config.login_backoff,
            state: Mutex::new(State::default()),
            renewed: Condvar::new(),
            logins: AtomicU64::new(0),
            login_failures: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a 401 can be fixed by logging in again (Auth0), or by
    /// dropping a stale Cloudflare cookie and sending the headers alone.
    pub(crate) fn can_renew(&self) -> bool {
        matches!(self.auth, Auth::Auth0 { .. } | Auth::Cloudflare { .. })
    }

    /// Whether the scheme is Cloudflare Access.
    pub(crate) fn is_cloudflare(&self) -> bool {
        matches!(self.auth, Auth::Cloudflare { .. })
    }

    /// A credential for the next request: the shared one, or a new login.
    ///
    /// Only one thread logs in at a time; the others wait for its result, or
    /// keep using a credential that is due for renewal but not expired.
    pub(crate) fn credential(&self) -> Result<Option<Credential>, Error> {
        match &self.auth {
            Auth::None => return Ok(None),
            Auth::Token(token) => {
                return Ok(Some(Credential::new(CredentialValue::Bearer(token.clone()), None)));
            }
            Auth::Cloudflare { .. } => {
                // Nothing to log in to: the headers are the credential.
                let state = self.lock();
                let now = Instant::now();
                let held = state.credential.as_ref().filter(|c| c.is_usable(now));
                let mut credential =
                    held.cloned().unwrap_or_else(|| Credential::new(CredentialValue::Cloudflare(None), None));
                credential.generation = state.generation;
                return Ok(Some(credential));
            }
            Auth::Auth0 { .. } => {}
        }
        let mut state = self.lock();
        loop {
            let now = Instant::now();
            let in_backoff = state.retry_at.is_some_and(|retry_at| now < retry_at);
            if let Some(credential) = &state.credential
                && (credential.is_fresh(now) || (credential.is_usable(now) && (state.renewing || in_backoff)))
            {
                return Ok(Some(credential.clone()));
            }
            if state.renewing {
                state = self.renewed.wait(state).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            if in_backoff && let (Some(retry_at), Some(failure)) = (state.retry_at, &state.last_failure) {
                let wait = retry_at.saturating_duration_since(now);
                let message =
                    format!("{} (next login attempt in {:.1} s)", failure.message(), wait.as_secs_f64());
                return Err(failure.clone().with_message(message).with_retry_after(Some(wait)));
            }
            state.renewing = true;
            drop(state);
            let guard = RenewingGuard(self);
            let result = self.login();
            std::mem::forget(guard);
            state = self.lock();
            state.renewing = false;
            self.renewed.notify_all();
            return match result {
                Ok(mut credential) => {
                    state.generation += 1;
                    credential.generation = state.generation;
                    state.credential = Some(credential.clone());
                    state.failures = 0;
                    state.retry_at = None;
                    state.last_failure = None;
                    self.logins.fetch_add(1, Ordering::Relaxed);
                    log::info!("logged in ({})", self.mode_name());
                    Ok(Some(credential))
                }
                Err(err) => {
                    self.login_failures.fetch_add(1, Ordering::Relaxed);
                    state.failures = state.failures.saturating_add(1);
                    let attempts = state.failures.saturating_add(state.refusals);
                    let delay = self.backoff.delay(attempts);
                    state.retry_at = Instant::now().checked_add(delay);
                    state.last_failure = Some(err.clone());
                    log::warn!(
                        "{err}; login failure #{}, next attempt in {:.1} s",
                        state.failures,
                        delay.as_secs_f64()
                    );
                    match &state.credential {
                        // Early renewal failed: the old credential still works.
                        Some(credential) if credential.is_usable(Instant::now()) => {
                            Ok(Some(credential.clone()))
                        }
                        _ => Err(err.with_retry_after(Some(delay))),
                    }
                }
            };
        }
    }

    /// Drops the credential of `generation` after the API answered 401.
    /// A newer credential (another thread already renewed) is kept.
    pub(crate) fn invalidate(&self, generation: u64) {
        let mut state = self.lock();
        if state.credential.as_ref().is_some_and(|c| c.generation == generation) {
            state.credential = None;
        }
    }

    /// Records that the API refused a credential fresh from the identity
    /// provider (e.g. a wrong audience): logging in again at once would not
    /// help, so the login backoff applies before the next attempt.
    pub(crate) fn reject(&self, generation: u64, err: &Error) {
        let mut state = self.lock();
        if state.credential.as_ref().is_none_or(|c| c.generation != generation) {
            // Another thread already dealt with this credential.
            return;
        }
        state.credential = None;
        state.refusals = state.refusals.saturating_add(1);
        let delay = self.backoff.delay(state.refusals);
        state.retry_at = Instant::now().checked_add(delay);
        state.last_failure = Some(err.clone());
        log::warn!("{err}; the renewed credential was refused, next login in {:.1} s", delay.as_secs_f64());
    }

    /// The API accepted a credential: forget earlier refusals and errors.
    pub(crate) fn confirm(&self) {
        if !self.can_renew() {
            return;
        }
        let mut state = self.lock();
        state.refusals = 0;
        state.server_errors = 0;
        state.unverifiable = 0;
        state.confirmed = true;
    }

    /// The server failed (5xx) on a call made with `generation`. A server
    /// that cannot verify a token it issued itself (its identity provider
    /// rotated the signing key) answers so to every call: after a few in a
    /// row, or at once when it says so, the credential is dropped and the
    /// next call logs in again (within the login backoff).
    /// Returns whether the credential was dropped.
    pub(crate) fn server_error(&self, generation: u64, err: &Error) -> bool {
        if !matches!(self.auth, Auth::Auth0 { .. }) {
            return false;
        }
        let mut state = self.lock();
        // A gateway or an overloaded server (502, 503, 504) says nothing
        // about the credential.
        if err.status() == Some(500) {
            state.server_errors = state.server_errors.saturating_add(1);
        }
        let says_so = err.message().contains("Unable to verify credentials");
        let same = state.credential.as_ref().is_some_and(|c| c.generation == generation);
        if !same || !(says_so || state.server_errors >= SERVER_ERRORS_BEFORE_RENEWAL) {
            return false;
        }
        state.credential = None;
        state.server_errors = 0;
        if says_so {
            state.unverifiable = state.unverifiable.saturating_add(1);
        }
        if state.unverifiable > 1 {
            // A fresh token was not verifiable either: the server, not the
            // token, is at fault; do not log in again at once.
            let delay = self.backoff.delay(state.unverifiable - 1);
            state.retry_at = Instant::now().checked_add(delay);
            state.last_failure = Some(err.clone());
            log::warn!(
                "{err}; a fresh credential was not verifiable either, next login in {:.1} s",
                delay.as_secs_f64()
            );
        } else {
            log::warn!("{err}; renewing the credential");
        }
        true
    }

    /// Keeps the `CF_Authorization` cookie of a Cloudflare Access response.
    pub(crate) fn observe(&self, headers: &http::HeaderMap) {
        if !self.is_cloudflare() {
            return;
        }
        let Some(cookie) = headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(cf_cookie_value)
        else {
            return;
        };
        let lifetime = jwt_expiry(&cookie).map(|exp| {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            Duration::from_secs(exp.saturating_sub(now))
        });
        let mut state = self.lock();
        if state.credential.as_ref().and_then(Credential::secret).is_some_and(|held| held.expose() == cookie)
        {
            return;
        }
        state.generation += 1;
        let mut credential =
            Credential::new(CredentialValue::Cloudflare(Some(Secret::new(cookie))), lifetime);
        credential.generation = state.generation;
        state.credential = Some(credential);
        self.logins.fetch_add(1, Ordering::Relaxed);
        log::debug!("Cloudflare Access set a {CF_COOKIE} cookie; reusing it");
    }

    pub(crate) fn is_authenticated(&self) -> bool {
        match self.auth {
            Auth::None | Auth::Token(_) => true,
            Auth::Cloudflare { .. } => self.lock().confirmed,
            Auth::Auth0 { .. } => {
                let state = self.lock();
                state.credential.as_ref().is_some_and(|c| c.is_usable(Instant::now()))
            }
        }
    }

    /// (successful logins, failed login attempts) so far.
    pub(crate) fn login_counts(&self) -> (u64, u64) {
        (self.logins.load(Ordering::Relaxed), self.login_failures.load(Ordering::Relaxed))
    }

    pub(crate) fn mode_name(&self) -> &'static str {
        match self.auth {
            Auth::None => "none",
            Auth::Token(_) => "token",
            Auth::Auth0 { .. } => "auth0",
            Auth::Cloudflare { .. } => "cloudflare",
        }
    }

    /// Adds the credential's headers to a request.
    pub(crate) fn apply(
        &self,
        mut builder: http::request::Builder,
        credential: Option<&Credential>,
    ) -> http::request::Builder {
        let Some(credential) = credential else {
            return builder;
        };
        match &credential.value {
            CredentialValue::Bearer(token) => {
                builder = builder
                    .header(http::header::AUTHORIZATION, sensitive(&format!("Bearer {}", token.expose())));
            }
            CredentialValue::Cloudflare(cookie) => {
                if let Some(cookie) = cookie {
                    builder = builder
                        .header(http::header::COOKIE, sensitive(&format!("{CF_COOKIE}={}", cookie.expose())));
                }
                if let Auth::Cloudflare { client_id, client_secret } = &self.auth {
                    builder = builder
                        .header("CF-Access-Client-Id", sensitive(client_id))
                        .header("CF-Access-Client-Secret", sensitive(client_secret.expose()));
                }
            }
        }
        builder
    }

    /// Replaces every known secret in the error's message with `***`.
    pub(crate) fn redact(&self, err: Error) -> Error {
        let mut secrets: Vec<String> = Vec::new();
        match &self.auth {
            Auth::None => {}
            Auth::Token(token) => secrets.push(token.expose().to_owned()),
            Auth::Auth0 { client_secret, grant, .. } => {
                secrets.push(client_secret.expose().to_owned());
                if let Grant::Password { password, .. } = grant {
                    secrets.push(password.expose().to_owned());
                }
            }
            Auth::Cloudflare { client_secret, .. } => secrets.push(client_secret.expose().to_owned()),
        }
        if let Some(secret) = self.lock().credential.as_ref().and_then(Credential::secret) {
            secrets.push(secret.expose().to_owned());
        }
        let mut message = err.message().to_owned();
        let mut changed = false;
        for secret in secrets.iter().filter(|s| s.len() >= 3) {
            if message.contains(secret.as_str()) {
                message = message.replace(secret.as_str(), "***");
                changed = true;
            }
        }
        if changed { err.with_message(message) } else { err }
    }

    fn login(&self) -> Result<Credential, Error> {
        let result = match &self.auth {
            Auth::Auth0 { audience, grant, .. } => self.login_auth0(audience, grant),
            Auth::None | Auth::Token(_) | Auth::Cloudflare { .. } => {
                Err(Error::new(ErrorKind::Config, "nothing to log in to"))
            }
        };
        result.map_err(|err| self.redact(err))
    }

    fn login_auth0(&self, audience: &str, grant: &Grant) -> Result<Credential, Error> {
        let Some(oauth) = &self.oauth else {
            return Err(Error::new(ErrorKind::Config, "auth0 client missing"));
        };
        let http = TokenHttp::new(self.agent.clone(), MAX_TOKEN_RESPONSE);
        log::debug!("requesting an Auth0 token from {}", oauth.token_uri().as_str());
        let response = match grant {
            Grant::Password { username, password } => {
                let username = ResourceOwnerUsername::new(username.clone());
                let password = ResourceOwnerPassword::new(password.expose().to_owned());
                let mut request = oauth.exchange_password(&username, &password);
                if !audience.is_empty() {
                    request = request.add_extra_param("audience", audience.to_owned());
                }
                request.request(&http)
            }
            Grant::ClientCredentials => {
                let mut request = oauth.exchange_client_credentials();
                if !audience.is_empty() {
                    request = request.add_extra_param("audience", audience.to_owned());
                }
                request.request(&http)
            }
        };
        let response = response.map_err(|err| token_error(err, http.last_status()))?;
        let token = response.access_token().secret();
        if token.is_empty() {
            return Err(login_error("login failed: empty access token").with_status(http.last_status()));
        }
        Ok(Credential::new(CredentialValue::Bearer(Secret::new(token.clone())), response.expires_in()))
    }
}

/// Resets the single-flight flag if a login panics, so waiters wake up.
struct RenewingGuard<'a>(&'a Authenticator);

impl Drop for RenewingGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.renewing = false;
        self.0.renewed.notify_all();
    }
}

fn sensitive(value: &str) -> HeaderValue {
    // An invalid value (e.g. a newline in a secret) becomes empty: the server
    // then rejects the request, and the value is never echoed.
    let mut value = HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""));
    value.set_sensitive(true);
    value
}

fn login_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Auth, message).with_transient(false)
}

/// Maps an oauth2 failure; messages carry the error code, never the body.
fn token_error(
    err: RequestTokenError<Error, oauth2::basic::BasicErrorResponse>,
    status: Option<u16>,
) -> Error {
    match err {
        RequestTokenError::Request(err) => {
            let transient = err.is_transient();
            let message = format!("login failed: {err}");
            err.with_kind(ErrorKind::Auth).with_transient(transient).with_message(message)
        }
        RequestTokenError::ServerResponse(response) => {
            let mut message = format!("login rejected: {}", response.error().as_ref());
            if let Some(description) = response.error_description() {
                message.push_str(": ");
                message.extend(description.chars().take(200));
            }
            login_error(message).with_status(status)
        }
        RequestTokenError::Parse(err, _body) => {
            login_error(format!("login failed: malformed token response (at `{}`)", err.path()))
                .with_status(status)
        }
        RequestTokenError::Other(message) => {
            login_error(format!("login failed: {message}")).with_status(status)
        }
    }
}

/// The `CF_Authorization` value of one `Set-Cookie` header, if it is that cookie.
fn cf_cookie_value(header: &str) -> Option<String> {
    let pair = header.split(';').next()?.trim();
    let (name, value) = pair.split_once('=')?;
    let value = value.trim().trim_matches('"');
    (name.trim() == CF_COOKIE && !value.is_empty()).then(|| value.to_owned())
}

/// The `exp` claim (Unix seconds) of a JWT, read without checking the signature.
pub(crate) fn jwt_expiry(jwt: &str) -> Option<u64> {
    let payload = jwt.split('.').nth(1)?;
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?;
    exp.as_u64().or_else(|| exp.as_f64().filter(|v| v.is_finite() && *v >= 0.0).map(|v| v as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.sig", engine.encode(r#"{"alg":"RS256"}"#), engine.encode(payload))
    }

    #[test]
    fn reads_jwt_exp() {
        assert_eq!(jwt_expiry(&jwt(r#"{"exp":1700000000,"sub":"x"}"#)), Some(1_700_000_000));
        assert_eq!(jwt_expiry(&jwt(r#"{"exp":1700000000.5}"#)), Some(1_700_000_000));
        assert_eq!(jwt_expiry(&jwt(r#"{"sub":"x"}"#)), None);
        assert_eq!(jwt_expiry("not-a-jwt"), None);
        assert_eq!(jwt_expiry("a.!!!.c"), None);
        // Padded base64url is tolerated.
        let padded =
            format!("h.{}=.s", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"exp":5}"#));
        assert_eq!(jwt_expiry(&padded), Some(5));
    }

    #[test]
    fn finds_the_cloudflare_cookie() {
        assert_eq!(
            cf_cookie_value("CF_Authorization=abc.def.ghi; Path=/; HttpOnly").as_deref(),
            Some("abc.def.ghi")
        );
        assert_eq!(cf_cookie_value("other=1; Path=/"), None);
        assert_eq!(cf_cookie_value("CF_Authorization=; Path=/"), None);
    }

    /// A loopback port nothing listens on: every connection is refused.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[test]
    fn a_failed_early_renewal_keeps_the_old_credential() {
        // Every login fails with a network error.
        let port = closed_port();
        let url = format!("http://127.0.0.1:{port}");
        let auth = Auth::Auth0 {
            domain: url.clone(),
            audience: String::new(),
            client_id: "id".into(),
            client_secret: "secret".into(),
            grant: Grant::ClientCredentials,
        };
        let mut config = ClientConfig::new(url.as_str(), auth);
        config.proxy_from_env = false;
        let agents = crate::http::Agents::new(&config).unwrap();
        let authenticator = Authenticator::new(&config, agents.api).unwrap();

        // A credential that is due for renewal but valid for another hour.
        let now = Instant::now();
        let mut old = Credential::new(CredentialValue::Bearer("old".into()), None);
        old.generation = 7;
        old.renew_at = Some(now);
        old.expires_at = Some(now + Duration::from_secs(3600));
        authenticator.lock().credential = Some(old);

        let got = authenticator.credential().unwrap().unwrap();
        assert_eq!(got.generation, 7);
        let state = authenticator.lock();
        assert_eq!(state.failures, 1, "the renewal was attempted");
        let failure = state.last_failure.clone().unwrap();
        assert_eq!(failure.kind(), ErrorKind::Auth);
        assert!(failure.is_transient(), "{failure}");
        drop(state);

        // Inside the backoff window the old credential is used without a new attempt.
        assert_eq!(authenticator.credential().unwrap().unwrap().generation, 7);
        assert_eq!(authenticator.lock().failures, 1);
        assert!(authenticator.is_authenticated());

        // Once it is dropped (a 401), the backoff error comes back instead.
        authenticator.invalidate(7);
        let err = authenticator.credential().unwrap_err();
        assert!(err.retry_after().is_some());
        assert!(!authenticator.is_authenticated());
    }

    #[test]
    fn renewal_is_due_before_expiry() {
        let day = Credential::new(CredentialValue::Bearer("t".into()), Some(Duration::from_secs(86_400)));
        let now = Instant::now();
        assert!(day.is_fresh(now));
        assert!(!day.is_fresh(now + Duration::from_secs(86_400 - 59)));
        assert!(day.is_usable(now + Duration::from_secs(86_400 - 59)));
        let short = Credential::new(CredentialValue::Bearer("t".into()), Some(Duration::from_secs(100)));
        assert!(short.is_fresh(now + Duration::from_secs(89)));
        assert!(!short.is_fresh(now + Duration::from_secs(91)));
        let zero = Credential::new(CredentialValue::Bearer("t".into()), Some(Duration::ZERO));
        assert!(!zero.is_fresh(Instant::now()));
        let forever = Credential::new(CredentialValue::Bearer("t".into()), None);
        assert!(forever.is_fresh(now + Duration::from_secs(1 << 40)));
    }
}
