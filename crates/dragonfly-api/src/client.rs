//! The control-server client.

use std::fmt;
use std::sync::Arc;

use ureq::http::{self, Method, Response, StatusCode, header};
use ureq::{Agent, Body};

use crate::auth::{Authenticator, Credential};
use crate::config::ClientConfig;
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
        let auth = Authenticator::new(&config, &base_url, agents.api.clone())?;
        Ok(Client {
            inner: Arc::new(Inner { base_url, auth, agents, max_response_bytes: config.max_response_bytes }),
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

    /// Whether an unexpired credential is held (always true without login).
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
    /// Only `http` and `https` URLs; a few redirects are followed. A declared
    /// `Content-Length` over `max_bytes` is refused before reading, and
    /// reading stops as soon as more than `max_bytes` arrived (after
    /// decompression): both give [`ErrorKind::TooLarge`].
    pub fn download(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, Error> {
        let context = format!("GET {url}");
        let mut response = self.get_public(url, &context)?;
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

    /// GET a public JSON document (no credentials, redirects allowed).
    pub(crate) fn get_public_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, Error> {
        let context = format!("GET {url}");
        let mut response = self.get_public(url, &context)?;
        let bytes = read_limited(&context, response.body_mut(), self.inner.max_response_bytes)?;
        decode_json(&context, &bytes)
    }

    fn get_public(&self, url: &str, context: &str) -> Result<Response<Body>, Error> {
        check_http_url(url)?;
        let request = http::Request::get(url)
            .body(())
            .map_err(|err| Error::new(ErrorKind::InvalidUrl, format!("{context}: {err}")))?;
        let mut response = run(&self.inner.agents.public, request, context)?;
        check_status(context, &mut response)?;
        Ok(response)
    }

    /// One API call: credential, request, one renewal and retry on 401,
    /// status check, size-limited body.
    fn api(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Vec<u8>, Error> {
        let auth = &self.inner.auth;
        self.api_inner(&method, path, body.as_deref()).map_err(|err| auth.redact(err))
    }

    fn api_inner(&self, method: &Method, path: &str, body: Option<&[u8]>) -> Result<Vec<u8>, Error> {
        let auth = &self.inner.auth;
        let context = format!("{method} {path}");
        let url = format!("{}{path}", self.inner.base_url);
        let credential = auth.credential()?;
        log::debug!("{context}");
        let mut response = self.send(method, &url, body, credential.as_ref(), &context)?;
        if response.status() == StatusCode::UNAUTHORIZED && auth.can_renew() {
            if let Some(credential) = &credential {
                log::info!("{context}: 401, renewing the credential");
                auth.invalidate(credential.generation);
            }
            let credential = auth.credential()?;
            response = self.send(method, &url, body, credential.as_ref(), &context)?;
            if response.status() == StatusCode::UNAUTHORIZED {
                let err = status_error(&context, &mut response);
                if let Some(credential) = &credential {
                    auth.reject(credential.generation, &err);
                }
                return Err(err);
            }
        }
        check_status(&context, &mut response)?;
        auth.confirm();
        read_limited(&context, response.body_mut(), self.inner.max_response_bytes)
    }

    fn send(
        &self,
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
        let agent = &self.inner.agents.api;
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
