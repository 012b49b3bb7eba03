//! ureq agents, response checks and the oauth2 transport.

use std::cell::Cell;
use std::io::Read;
use std::time::Duration;

use ureq::http::{self, HeaderMap, Response, StatusCode};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::{Agent, Body, Proxy};

use crate::config::ClientConfig;
use crate::error::{Error, ErrorKind};

/// Longest `Retry-After` honoured; longer values are clamped.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60 * 60);
/// How much of an error body is read for the message.
const ERROR_SNIPPET_BYTES: u64 = 4096;
/// How much of an error body is shown in the message.
const ERROR_SNIPPET_CHARS: usize = 200;

/// The two agents a client needs, sharing TLS, proxy and timeouts.
pub(crate) struct Agents {
    /// Control server and identity providers: follows no redirects.
    pub api: Agent,
    /// Package index pages: follows a few redirects.
    pub public: Agent,
    /// Distribution downloads: follows no redirects itself (the client
    /// checks where each one leads first).
    pub download: Agent,
    /// The control server's optional scan cache: as `api`, within the
    /// cache's budget per request.
    pub scan_cache: Agent,
}

impl Agents {
    pub(crate) fn new(config: &ClientConfig) -> Result<Self, Error> {
        let tls = tls_config(config)?;
        let proxy = if config.proxy_from_env { Proxy::try_from_env() } else { None };
        let base = || {
            Agent::config_builder()
                .http_status_as_error(false)
                .user_agent(config.user_agent.as_str())
                .tls_config(tls.clone())
                .proxy(proxy.clone())
                .timeout_connect(Some(config.connect_timeout))
                .timeout_recv_response(Some(config.read_timeout))
                .timeout_per_read(Some(config.read_timeout))
                .timeout_per_write(Some(config.read_timeout))
        };
        let api = base()
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_global(config.request_timeout)
            .build()
            .new_agent();
        let scan_cache = base()
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_global(Some(config.scan_cache_timeout))
            .build()
            .new_agent();
        let public = base()
            .max_redirects(config.max_redirects)
            .timeout_global(config.download_timeout)
            .build()
            .new_agent();
        let download_config = base()
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_global(config.download_timeout)
            .build();
        let download = if config.allow_private_downloads {
            download_config.new_agent()
        } else {
            let connector = ureq::unversioned::transport::DefaultConnector::new();
            Agent::with_parts(download_config, connector, crate::destination::PublicOnly::default())
        };
        Ok(Agents { api, public, download, scan_cache })
    }
}

/// The platform's trust store (as `SSL_CERT_FILE` / `SSL_CERT_DIR` point
/// to, or the system's), or Mozilla's roots where there is none; plus the
/// certificates of `config.ca_cert` when set.
fn tls_config(config: &ClientConfig) -> Result<TlsConfig, Error> {
    let mut roots: Vec<Certificate<'static>> = platform_roots();
    if roots.is_empty() {
        log::debug!("no platform trust store; trusting the bundled Mozilla roots");
        roots.extend(
            webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .map(|der| Certificate::from_der(der.as_ref()).to_owned()),
        );
    }
    if let Some(path) = &config.ca_cert {
        let extra = read_ca_file(path)?;
        log::debug!("trusting {} extra CA certificate(s) from {}", extra.len(), path.display());
        roots.extend(extra);
    }
    Ok(TlsConfig::builder().root_certs(RootCerts::from(roots)).build())
}

/// The certificates of the platform's trust store; unreadable entries are
/// skipped (and logged).
fn platform_roots() -> Vec<Certificate<'static>> {
    let found = rustls_native_certs::load_native_certs();
    for err in &found.errors {
        log::debug!("trust store: {err}");
    }
    found.certs.iter().map(|der| Certificate::from_der(der.as_ref()).to_owned()).collect()
}

/// Every certificate of a PEM file; an unreadable file, bad PEM or no
/// certificate is a configuration error.
fn read_ca_file(path: &std::path::Path) -> Result<Vec<Certificate<'static>>, Error> {
    let pem = std::fs::read(path).map_err(|err| {
        Error::new(ErrorKind::Config, format!("cannot read CA certificate `{}`: {err}", path.display()))
            .with_source(err)
    })?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(cert)) => certs.push(cert.to_owned()),
            Ok(_) => {}
            Err(err) => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("invalid PEM in CA certificate `{}`: {err}", path.display()),
                )
                .with_source(err));
            }
        }
    }
    if certs.is_empty() {
        return Err(Error::new(ErrorKind::Config, format!("no certificate found in `{}`", path.display())));
    }
    Ok(certs)
}

/// The `Retry-After` delay, when given in seconds.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    let seconds: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// Turns a non-2xx response into a classified error with a short body excerpt.
pub(crate) fn check_status(context: &str, response: &mut Response<Body>) -> Result<(), Error> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    Err(status_error(context, response))
}

pub(crate) fn status_error(context: &str, response: &mut Response<Body>) -> Error {
    let status = response.status();
    let wait = retry_after(response.headers());
    let mut snippet = Vec::new();
    // The body only decorates the message: a failed read leaves it out.
    let _ = response.body_mut().as_reader().take(ERROR_SNIPPET_BYTES).read_to_end(&mut snippet);
    let text: String = String::from_utf8_lossy(&snippet)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(ERROR_SNIPPET_CHARS)
        .collect();
    let mut message = format!("{context}: server returned {}", describe(status));
    // An HTML page (a proxy's, an edge's login page) says nothing useful.
    if !text.is_empty() && !text.starts_with('<') {
        message.push_str(": ");
        message.push_str(&text);
    }
    Error::from_status(status.as_u16(), wait, message)
}

fn describe(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// Reads a whole body, failing with [`ErrorKind::TooLarge`] past `limit` bytes.
pub(crate) fn read_limited(context: &str, body: &mut Body, limit: u64) -> Result<Vec<u8>, Error> {
    body.with_config().limit(limit).read_to_vec().map_err(|err| Error::from_ureq(context, err))
}

/// Decodes a JSON body as `T`; failures are [`ErrorKind::Malformed`].
pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(context: &str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|err| {
        Error::new(ErrorKind::Malformed, format!("{context}: malformed response: {err}")).with_source(err)
    })
}

/// oauth2's HTTP transport: one token request over the API agent.
///
/// 4xx answers go to oauth2 with their body (RFC 6749 error JSON); 3xx,
/// 408, 429 and 5xx become classified errors right here so that a failed
/// login keeps its status and transience. The last status is remembered for
/// error messages.
pub(crate) struct TokenHttp {
    agent: Agent,
    max_body: u64,
    last_status: Cell<Option<u16>>,
}

impl TokenHttp {
    pub(crate) fn new(agent: Agent, max_body: u64) -> Self {
        TokenHttp { agent, max_body, last_status: Cell::new(None) }
    }

    pub(crate) fn last_status(&self) -> Option<u16> {
        self.last_status.get()
    }
}

impl oauth2::SyncHttpClient for TokenHttp {
    type Error = Error;

    fn call(&self, request: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, Error> {
        let context = format!("{} {}", request.method(), request.uri());
        let mut response = self.agent.run(request).map_err(|err| Error::from_ureq(&context, err))?;
        let status = response.status();
        self.last_status.set(Some(status.as_u16()));
        if status.is_redirection()
            || status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            return Err(status_error(&context, &mut response));
        }
        let (parts, mut body) = response.into_parts();
        let bytes = read_limited(&context, &mut body, self.max_body)?;
        Ok(http::Response::from_parts(parts, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(http::header::RETRY_AFTER, "999999".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        headers.insert(http::header::RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn extra_ca_file_is_checked() {
        let dir = std::env::temp_dir().join(format!("dragonfly-api-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = ClientConfig::new("http://127.0.0.1:1", crate::Auth::None);

        config.ca_cert = Some(dir.join("missing.pem"));
        let err = Agents::new(&config).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Config);

        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        config.ca_cert = Some(empty);
        let err = Agents::new(&config).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("no certificate"), "{err}");

        // A well-formed PEM block: parsing happens here, validation at handshake time.
        let cert = dir.join("ca.pem");
        let der = webpki_root_certs::TLS_SERVER_ROOT_CERTS[0].as_ref();
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der);
        let body: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        std::fs::write(
            &cert,
            format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", body.join("\n")),
        )
        .unwrap();
        config.ca_cert = Some(cert);
        assert!(Agents::new(&config).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
