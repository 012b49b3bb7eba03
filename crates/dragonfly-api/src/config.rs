//! Client configuration: the server, the authentication scheme and the limits.

use std::path::PathBuf;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::secret::Secret;

/// The production control server.
pub const DEFAULT_BASE_URL: &str = "https://dragonfly.vipyrsec.com";
/// The production Auth0 tenant.
pub const DEFAULT_AUTH0_DOMAIN: &str = "vipyrsec.us.auth0.com";
/// The production Auth0 audience.
pub const DEFAULT_AUDIENCE: &str = "https://dragonfly.vipyrsec.com";

/// How the client authenticates to the control server. `Debug` masks secrets.
#[derive(Clone, Debug)]
pub enum Auth {
    /// No credentials (local test servers).
    None,
    /// A static bearer token, sent as `Authorization: Bearer <token>`.
    Token(Secret),
    /// Auth0 OAuth2 token, sent as a bearer token and renewed before it expires.
    Auth0 {
        /// Tenant domain: a bare domain means `https://`; a URL with scheme
        /// and port (`http://127.0.0.1:8000`) is used as is.
        domain: String,
        /// API audience requested in the token.
        audience: String,
        /// OAuth2 client id.
        client_id: String,
        /// OAuth2 client secret.
        client_secret: Secret,
        /// Which OAuth2 grant to use.
        grant: Grant,
    },
    /// Cloudflare Access service token: the `CF-Access-Client-*` headers and
    /// the `CF_Authorization` cookie they earn.
    Cloudflare {
        /// `CF-Access-Client-Id`.
        client_id: String,
        /// `CF-Access-Client-Secret`.
        client_secret: Secret,
    },
}

/// The OAuth2 grant used with [`Auth::Auth0`].
#[derive(Clone, Debug)]
pub enum Grant {
    /// Resource-owner password grant with a provisioned node account.
    Password {
        /// Account name.
        username: String,
        /// Account password.
        password: Secret,
    },
    /// Client-credentials grant (machine-to-machine clients).
    ClientCredentials,
}

/// Settings of a [`Client`](crate::Client).
///
/// ```
/// use dragonfly_api::{Auth, ClientConfig};
///
/// let config = ClientConfig::new("http://127.0.0.1:8000", Auth::None);
/// assert_eq!(config.max_response_bytes, 64 * 1024 * 1024);
/// assert!(config.user_agent.starts_with("dragonfly-client/"));
/// ```
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Control-server base URL (`http` or `https`), without a trailing `/`.
    pub base_url: String,
    /// Authentication scheme.
    pub auth: Auth,
    /// Longest time to establish a connection (including TLS). Default 10 s.
    pub connect_timeout: Duration,
    /// Longest wait for the server on every request: for the response
    /// headers, and for each read of the body. Default 60 s.
    pub read_timeout: Duration,
    /// Overall limit on one API or token call, body included. Default 5 min.
    pub request_timeout: Option<Duration>,
    /// Overall limit on one download. Default 15 min.
    pub download_timeout: Option<Duration>,
    /// Overall limit on one `/scan-cache` call, the protocol's budget per
    /// request. Default 750 ms.
    pub scan_cache_timeout: Duration,
    /// Path of an extra PEM CA certificate (file may hold several),
    /// trusted besides the built-in Mozilla roots.
    pub ca_cert: Option<PathBuf>,
    /// Largest JSON response body accepted. Default 64 MiB.
    pub max_response_bytes: u64,
    /// Redirects followed by downloads and PyPI look-ups (API calls and
    /// logins follow none). Default 5.
    pub max_redirects: u32,
    /// Download from loopback, private, link-local and unspecified
    /// addresses (cloud metadata services among them). Default false: a
    /// job's URL must not make the node fetch from its own network.
    pub allow_private_downloads: bool,
    /// `User-Agent` header. Default `dragonfly-client/<version>`.
    pub user_agent: String,
    /// Waits between failed logins: 2 s after the first, doubling (with
    /// jitter) up to 10 min by default.
    pub login_backoff: Backoff,
    /// Use `ALL_PROXY` / `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` from the
    /// environment. Default true.
    pub proxy_from_env: bool,
    /// What an operator should check when the server or its edge refuses
    /// the credentials (the binary names its settings here). Default: a
    /// generic hint.
    pub auth_hint: Option<String>,
}

impl ClientConfig {
    /// A configuration with the defaults listed on each field.
    pub fn new(base_url: impl Into<String>, auth: Auth) -> Self {
        ClientConfig {
            base_url: base_url.into(),
            auth,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            request_timeout: Some(Duration::from_secs(5 * 60)),
            download_timeout: Some(Duration::from_secs(15 * 60)),
            scan_cache_timeout: Duration::from_millis(750),
            ca_cert: None,
            max_response_bytes: 64 * 1024 * 1024,
            max_redirects: 5,
            allow_private_downloads: false,
            user_agent: concat!("dragonfly-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            login_backoff: Backoff::new(Duration::from_secs(2), Duration::from_secs(10 * 60)),
            proxy_from_env: true,
            auth_hint: None,
        }
    }
}

/// The token endpoint for an Auth0 domain setting.
pub(crate) fn auth0_token_url(domain: &str) -> String {
    let domain = domain.trim().trim_end_matches('/');
    if domain.contains("://") {
        format!("{domain}/oauth/token")
    } else {
        format!("https://{domain}/oauth/token")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_url_from_domain() {
        assert_eq!(auth0_token_url("vipyrsec.us.auth0.com"), "https://vipyrsec.us.auth0.com/oauth/token");
        assert_eq!(auth0_token_url("http://127.0.0.1:8000/"), "http://127.0.0.1:8000/oauth/token");
    }
}
