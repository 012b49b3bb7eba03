//! The control-server client.

use std::fmt;
use std::sync::Arc;

use ureq::http::{self, Method, Response, StatusCode, header};
use ureq::{Agent, Body};

use crate::auth::{Authenticator, Credential};
use crate::config::ClientConfig;
use crate::destination::{Destinations, redirect_target};
use crate::error::{Error, ErrorKind};
use crate::http::{Agents, check_status, decode_json, read_limited, status_error};
use crate::wire::{Job, JobResult, RuleSet};

/// A client of one control server, shared by every thread of a node.
///
/// Cloning is cheap (an `Arc`); all clones share one credential, renewed
/// by one thread at a time. Every method blocks.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    base_url: String,
    auth: Authenticator,
    agents: Agents,
    max_response_bytes: u64,
    auth_hint: String,
    destinations: Destinations,
    max_redirects: u32,
}

/// Login counters of a [`Client`], for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthStats {
    /// Successful logins (Auth0 token or Cloudflare cookie), the first included.
    pub renewals: u64,
    /// Login attempts that failed (calls refused during the backoff not counted).
    pub failures: u64,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url)
            .field("auth", &self.inner.auth.mode_name())
            .field("authenticated", &self.inner.auth.is_authenticated())
            .finish()
    }
}

impl Client {
    /// Builds a client; fails on a bad base URL, Auth0 domain or CA file.
    /// Does not touch the network (see [`authenticate`](Self::authenticate)).
    pub fn new(config: ClientConfig) -> Result<Client, Error> {
        check_http_url(&config.base_url)?;
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        let agents = Agents::new(&config)?;
        let auth = Authenticator::new(&config, agents.api.clone())?;
        let auth_hint = config.auth_hint.clone().unwrap_or_else(|| "check the node's credentials".to_owned());
        Ok(Client {
            inner: Arc::new(Inner {
                base_url,
                auth,
                agents,
                max_response_bytes: config.max_response_bytes,
                auth_hint,
                destinations: Destinations { allow_private: config.allow_private_downloads },
                max_redirects: config.max_redirects,
            }),
        })
    }

    /// The control server's base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// Logs in now unless a valid credential is already held (a no-op for
    /// [`Auth::None`](crate::Auth::None) and [`Auth::Token`](crate::Auth::Token)).
    ///
    /// After a failed login, calls within the backoff window fail at once
    /// with the same error and [`Error::retry_after`] set to the time left.
    pub fn authenticate(&self) -> Result<(), Error> {
        self.inner.auth.credential().map(|_| ()).map_err(|err| self.inner.auth.redact(err))
    }

    /// The authentication scheme: `none`, `token`, `auth0` or `cloudflare`.
    pub fn auth_scheme(&self) -> &'static str {
        self.inner.auth.mode_name()
    }

    /// Whether an unexpired credential is held (always true without login;
    /// with Cloudflare Access, once the server accepted a call).
    pub fn is_authenticated(&self) -> bool {
        self.inner.auth.is_authenticated()
    }

    /// Login counters since the client was built (all zero without login).
    pub fn auth_stats(&self) -> AuthStats {
        let (renewals, failures) = self.inner.auth.login_counts();
        AuthStats { renewals, failures }
    }

    /// `GET /rules`: the current rule set.
    pub fn rules(&self) -> Result<RuleSet, Error> {
        let bytes = self.api(Method::GET, "/rules", None)?;
        decode_json("GET /rules", &bytes)
    }

    /// `POST /jobs?batch=N`: leases up to `batch` jobs; empty when the queue is.
    pub fn lease_jobs(&self, batch: usize) -> Result<Vec<Job>, Error> {
        let path = format!("/jobs?batch={batch}");
        let bytes = self.api(Method::POST, &path, Some(Vec::new()))?;
        decode_json(&format!("POST {path}"), &bytes)
    }

    /// `PUT /package`: reports a result. A 409 ([`ErrorKind::Conflict`])
    /// means the server no longer wants it: do not retry.
    pub fn submit(&self, result: &JobResult) -> Result<(), Error> {
        let body = serde_json::to_vec(result).map_err(|err| {
            Error::new(ErrorKind::InvalidInput, format!("cannot encode result: {err}")).with_source(err)
        })?;
        self.api(Method::PUT, "/package", Some(body)).map(|_| ())
    }

    /// Downloads a distribution into memory, without credentials.
    ///
    /// Only `http` and `https` URLs; a few redirects are followed, each
    /// checked first: loopback, private and link-local destinations are
    /// refused ([`ErrorKind::PrivateAddress`]) unless
    /// [`ClientConfig::allow_private_downloads`] is set. A declared
    /// `Content-Length` over `max_bytes` is refused before reading, and
    /// reading stops as soon as more than `max_bytes` arrived (after
    /// decompression): both give [`ErrorKind::TooLarge`].
    pub fn download(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, Error> {
        let context = format!("GET {url}");
        let mut response = self.get_download(url, &context)?;
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok());
        if let Some(declared) = declared.filter(|&declared| declared > max_bytes) {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("{context}: declared size {declared} bytes exceeds the limit of {max_bytes} bytes"),
            ));
        }
        let bytes = read_limited(&context, response.body_mut(), max_bytes)?;
        log::debug!("{context}: {} bytes", bytes.len());
        Ok(bytes)
    }

    /// GET a package index's page (no credentials, redirects allowed):
    /// its `Content-Type` and body.
    pub(crate) fn get_index_page(&self, url: &str, accept: &str) -> Result<(String, Vec<u8>), Error> {
        let context = format!("GET {url}");
        let mut response = self.get_public_with(url, &context, Some(accept))?;
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let bytes = read_limited(&context, response.body_mut(), self.inner.max_response_bytes)?;
        Ok((content_type, bytes))
    }

    /// GET a distribution, following redirects one by one so that each
    /// destination is checked before it is contacted.
    fn get_download(&self, url: &str, context: &str) -> Result<Response<Body>, Error> {
        let mut current = url.to_owned();
        for _ in 0..=self.inner.max_redirects {
            check_http_url(&current)?;
            self.inner.destinations.check(&current)?;
            let request = http::Request::get(current.as_str())
                .body(())
                .map_err(|err| Error::new(ErrorKind::InvalidUrl, format!("{context}: {err}")))?;
            let mut response = run(&self.inner.agents.download, request, context)?;
            let status = response.status();
            let location = response.headers().get(header::LOCATION).and_then(|value| value.to_str().ok());
            if matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
                && let Some(location) = location
            {
                current = redirect_target(&current, location).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Redirect,
                        format!("{context}: redirect to an invalid URL `{location}`"),
                    )
                })?;
                continue;
            }
            check_status(context, &mut response)?;
            return Ok(response);
        }
        Err(Error::new(
            ErrorKind::Redirect,
            format!("{context}: more than {} redirects", self.inner.max_redirects),
        ))
    }

    fn get_public_with(
        &self,
        url: &str,
        context: &str,
        accept: Option<&str>,
    ) -> Result<Response<Body>, Error> {
        check_http_url(url)?;
        let mut request = http::Request::get(url);
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        let request =
            request.body(()).map_err(|err| Error::new(ErrorKind::InvalidUrl, format!("{context}: {err}")))?;
        let mut response = run(&self.inner.agents.public, request, context)?;
        check_status(context, &mut response)?;
        Ok(response)
    }

    /// One API call: credential, request, one renewal and retry on 401,
    /// status check, size-limited body.
    fn api(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Vec<u8>, Error> {
        let auth = &self.inner.auth;
        self.api_inner(&self.inner.agents.api, &method, path, body.as_deref()).map_err(|err| auth.redact(err))
    }

    /// One call of the optional scan cache, within its own timeout. It
    /// leaves the shared credential alone whatever the answer (no renewal,
    /// retry or login backoff, no counting of refusals or server errors):
    /// its failures only mean that the files are scanned.
    pub(crate) fn scan_cache_call(&self, path: &str, body: Vec<u8>) -> Result<Vec<u8>, Error> {
        let auth = &self.inner.auth;
        let context = format!("POST {path}");
        let url = format!("{}{path}", self.inner.base_url);
        let call = || {
            let credential = auth.credential()?;
            let agent = &self.inner.agents.scan_cache;
            let mut response =
                self.send(agent, &Method::POST, &url, Some(&body), credential.as_ref(), &context)?;
            auth.observe(response.headers());
            if response.status().is_success() {
                return read_limited(&context, response.body_mut(), self.inner.max_response_bytes);
            }
            Err(status_error(&context, &mut response))
        };
        call().map_err(|err| auth.redact(err))
    }

    fn api_inner(
        &self,
        agent: &Agent,
        method: &Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Vec<u8>, Error> {
        let auth = &self.inner.auth;
        let context = format!("{method} {path}");
        let url = format!("{}{path}", self.inner.base_url);
        // One renewal (and retry) per call: after a 401, or after a server
        // error that made the credential suspect.
        let mut renewed = false;
        loop {
            let credential = auth.credential()?;
            let generation = credential.as_ref().map(|c| c.generation);
            log::debug!("{context}");
            let mut response = self.send(agent, method, &url, body, credential.as_ref(), &context)?;
            auth.observe(response.headers());
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && auth.can_renew() && !renewed {
                if let Some(generation) = generation {
                    log::info!("{context}: 401, renewing the credential");
                    auth.invalidate(generation);
                }
                renewed = true;
                continue;
            }
            if status.is_success() {
                auth.confirm();
                return read_limited(&context, response.body_mut(), self.inner.max_response_bytes);
            }
            let err = status_error(&context, &mut response);
            let refused = status == StatusCode::UNAUTHORIZED
                || (auth.is_cloudflare() && (status == StatusCode::FORBIDDEN || status.is_redirection()));
            if refused && credential.as_ref().is_some_and(Credential::has_cookie) && !renewed {
                // The edge may refuse a stale cookie although the service
                // token is good: once more with the headers alone.
                if let Some(generation) = generation {
                    auth.invalidate(generation);
                }
                renewed = true;
                continue;
            }
            if refused {
                if let Some(generation) = generation.filter(|_| status == StatusCode::UNAUTHORIZED) {
                    auth.reject(generation, &err);
                }
                return Err(self.refused(err, status));
            }
            if status.is_server_error()
                && let Some(generation) = generation
                && auth.server_error(generation, &err)
                && !renewed
            {
                renewed = true;
                continue;
            }
            return Err(err);
        }
    }

    /// The error for credentials the server (or its Cloudflare edge) refused:
    /// permanent, and saying what to check.
    fn refused(&self, err: Error, status: StatusCode) -> Error {
        let what = if status.is_redirection() {
            "redirected to a login page: the Cloudflare Access edge did not accept the service token"
        } else if self.inner.auth.is_cloudflare() {
            "the Cloudflare Access edge or the server refused the service token"
        } else {
            "the server refused the credentials"
        };
        let message = format!("{} ({what}; {})", err.message(), self.inner.auth_hint);
        err.with_kind(ErrorKind::Auth).with_transient(false).with_message(message)
    }

    fn send(
        &self,
        agent: &Agent,
        method: &Method,
        url: &str,
        body: Option<&[u8]>,
        credential: Option<&Credential>,
        context: &str,
    ) -> Result<Response<Body>, Error> {
        let builder = http::Request::builder()
            .method(method.clone())
            .uri(url)
            .header(header::ACCEPT, "application/json");
        let builder = self.inner.auth.apply(builder, credential);
        let invalid = |err: http::Error| Error::new(ErrorKind::InvalidUrl, format!("{context}: {err}"));
        match body {
            Some(bytes) if !bytes.is_empty() => {
                let request =
                    builder.header(header::CONTENT_TYPE, "application/json").body(bytes).map_err(invalid)?;
                run(agent, request, context)
            }
            Some(bytes) => run(agent, builder.body(bytes).map_err(invalid)?, context),
            None => run(agent, builder.body(()).map_err(invalid)?, context),
        }
    }
}

fn run(
    agent: &Agent,
    request: http::Request<impl ureq::AsSendBody>,
    context: &str,
) -> Result<Response<Body>, Error> {
    agent.run(request).map_err(|err| Error::from_ureq(context, err))
}

/// Accepts only absolute `http`/`https` URLs with a host.
///
/// ```
/// assert!(dragonfly_api::check_http_url("https://dragonfly.vipyrsec.com").is_ok());
/// assert!(dragonfly_api::check_http_url("ftp://example.com/x").is_err());
/// ```
pub fn check_http_url(url: &str) -> Result<(), Error> {
    let invalid = |why: &str| Error::new(ErrorKind::InvalidUrl, format!("invalid URL `{url}`: {why}"));
    let uri: http::Uri = url.parse().map_err(|_| invalid("not a URL"))?;
    match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("http" | "https") => {}
        Some(_) => return Err(invalid("only http and https are supported")),
        None => return Err(invalid("no scheme")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_types_are_thread_safe() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Client>();
        assert_send_sync::<Error>();
        assert_send_sync::<crate::Job>();
        assert_send_sync::<crate::JobResult>();
    }

    #[test]
    fn only_http_urls() {
        assert!(check_http_url("https://files.pythonhosted.org/packages/a/b.tar.gz").is_ok());
        assert!(check_http_url("HTTP://127.0.0.1:8000/x").is_ok());
        for bad in ["ftp://example.com/x", "file:///etc/passwd", "/relative", "", "https://", "not a url"] {
            let err = check_http_url(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidUrl, "{bad}");
            assert!(!err.is_transient());
        }
    }
}
