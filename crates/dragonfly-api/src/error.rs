//! The error type: every failure is classified so callers can decide to retry.

use std::io;
use std::sync::Arc;
use std::time::Duration;

/// What went wrong, broadly. Use [`Error::is_transient`] to decide on a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Occurs when the connection failed: DNS, refused, reset, proxy, HTTP framing.
    Network,
    /// Occurs when a connect, read or overall timeout ran out.
    Timeout,
    /// Occurs when the server answered with an unexpected HTTP status
    /// (see [`Error::status`]); 5xx, 408 and 429 are transient.
    Status,
    /// Occurs when authentication failed: a rejected or failed login, or a
    /// 401/403 from the API that renewing the credential did not fix.
    Auth,
    /// Occurs on HTTP 409: the result is no longer wanted (finished, dead-lettered, lease lost).
    Conflict,
    /// Occurs on HTTP 404.
    NotFound,
    /// Occurs when a body is larger than the configured limit.
    TooLarge,
    /// Occurs when a response could not be decoded (bad JSON, bad compression).
    Malformed,
    /// Occurs when a URL is not a valid `http` or `https` URL.
    InvalidUrl,
    /// Occurs when an argument is invalid, such as a package name with odd characters.
    InvalidInput,
    /// Occurs when TLS failed, for example on an untrusted certificate.
    Tls,
    /// Occurs on a redirect that was not followed, or too many redirects.
    Redirect,
    /// Occurs when a download (or a redirect of one) would reach a
    /// loopback, private, link-local or unspecified address and
    /// [`ClientConfig::allow_private_downloads`](crate::ClientConfig::allow_private_downloads) is off.
    PrivateAddress,
    /// Occurs when the client configuration is invalid (missing credentials, unreadable CA file).
    Config,
}

/// An error from the control-server client.
///
/// The message never contains credentials. Classification:
/// [`is_transient`](Error::is_transient) is true for network errors,
/// timeouts, HTTP 5xx, 408 and 429, and for logins that failed for one of
/// those reasons; everything else (other 4xx including 404 and 409, malformed
/// bodies, rejected credentials, bad configuration) is permanent.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    status: Option<u16>,
    retry_after: Option<Duration>,
    transient: bool,
    #[source]
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let transient = matches!(kind, ErrorKind::Network | ErrorKind::Timeout);
        Error { kind, message: message.into(), status: None, retry_after: None, transient, source: None }
    }

    /// An error for an HTTP status the caller did not expect.
    pub(crate) fn from_status(status: u16, retry_after: Option<Duration>, message: String) -> Self {
        let kind = match status {
            401 | 403 => ErrorKind::Auth,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            300..=399 => ErrorKind::Redirect,
            _ => ErrorKind::Status,
        };
        let transient = status >= 500 || status == 408 || status == 429;
        Error {
            kind,
            message,
            status: Some(status),
            retry_after: if transient { retry_after } else { None },
            transient,
            source: None,
        }
    }

    /// Classifies a ureq error; `context` starts the message (e.g. "GET /rules").
    pub(crate) fn from_ureq(context: &str, err: ureq::Error) -> Self {
        use ureq::Error as E;
        let kind = match &err {
            E::Timeout(_) => ErrorKind::Timeout,
            // Only the download resolver refuses with this kind.
            E::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => ErrorKind::PrivateAddress,
            E::Io(io) => io_kind(io),
            E::BadUri(_) | E::RequireHttpsOnly(_) => ErrorKind::InvalidUrl,
            E::Http(_) => ErrorKind::InvalidInput,
            E::Tls(_) | E::Pem(_) | E::Rustls(_) | E::TlsRequired => ErrorKind::Tls,
            E::TooManyRedirects | E::RedirectFailed => ErrorKind::Redirect,
            E::BodyExceedsLimit(_) => ErrorKind::TooLarge,
            E::Decompress(..) | E::LargeResponseHeader(..) => ErrorKind::Malformed,
            E::InvalidProxyUrl => ErrorKind::Config,
            _ => ErrorKind::Network,
        };
        let detail = match (&err, kind) {
            (E::BodyExceedsLimit(limit), _) => format!("body exceeds the limit of {limit} bytes"),
            (_, ErrorKind::Timeout) => format!("timed out ({err})"),
            _ => err.to_string(),
        };
        Error::new(kind, format!("{context}: {detail}")).with_source(err)
    }

    pub(crate) fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    pub(crate) fn with_transient(mut self, transient: bool) -> Self {
        self.transient = transient;
        self
    }

    pub(crate) fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    pub(crate) fn with_status(mut self, status: Option<u16>) -> Self {
        self.status = status;
        self
    }

    pub(crate) fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    pub(crate) fn with_message(mut self, message: String) -> Self {
        self.message = message;
        self
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// Whether retrying later may succeed (network, timeouts, 5xx, 408, 429).
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// How long to wait before retrying, when known: the server's
    /// `Retry-After` (on 429/5xx), or the time left in the login backoff.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The HTTP status code, when a server answered.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The broad category.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

fn io_kind(err: &io::Error) -> ErrorKind {
    match err.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ErrorKind::Timeout,
        _ => ErrorKind::Network,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classification() {
        let cases = [
            (500, ErrorKind::Status, true),
            (503, ErrorKind::Status, true),
            (429, ErrorKind::Status, true),
            (408, ErrorKind::Status, true),
            (400, ErrorKind::Status, false),
            (401, ErrorKind::Auth, false),
            (403, ErrorKind::Auth, false),
            (404, ErrorKind::NotFound, false),
            (409, ErrorKind::Conflict, false),
            (302, ErrorKind::Redirect, false),
        ];
        for (status, kind, transient) in cases {
            let err = Error::from_status(status, Some(Duration::from_secs(3)), "x".into());
            assert_eq!(err.kind(), kind, "{status}");
            assert_eq!(err.is_transient(), transient, "{status}");
            assert_eq!(err.status(), Some(status));
            // Retry-After only means something on a transient answer.
            assert_eq!(err.retry_after().is_some(), transient, "{status}");
        }
    }

    #[test]
    fn ureq_classification() {
        let timeout = Error::from_ureq("GET /x", ureq::Error::Io(io::ErrorKind::TimedOut.into()));
        assert_eq!(timeout.kind(), ErrorKind::Timeout);
        assert!(timeout.is_transient());
        let refused = Error::from_ureq("GET /x", ureq::Error::Io(io::ErrorKind::ConnectionRefused.into()));
        assert_eq!(refused.kind(), ErrorKind::Network);
        assert!(refused.is_transient());
        let too_large = Error::from_ureq("GET /x", ureq::Error::BodyExceedsLimit(10));
        assert_eq!(too_large.kind(), ErrorKind::TooLarge);
        assert!(!too_large.is_transient());
        let bad_uri = Error::from_ureq("GET", ureq::Error::BadUri("nope".into()));
        assert_eq!(bad_uri.kind(), ErrorKind::InvalidUrl);
        assert!(!bad_uri.is_transient());
        assert!(std::error::Error::source(&bad_uri).is_some());
    }
}
