//! Client configuration: the server, the authentication scheme and the limits.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, ErrorKind};
use crate::secret::Secret;

/// The default control server (`DRAGONFLY_BASE_URL`).
pub const DEFAULT_BASE_URL: &str = "https://dragonfly.vipyrsec.com";
/// The default Auth0 tenant (`DRAGONFLY_AUTH0_DOMAIN`).
pub const DEFAULT_AUTH0_DOMAIN: &str = "vipyrsec.us.auth0.com";
/// The default Auth0 audience (`DRAGONFLY_AUDIENCE`).
pub const DEFAULT_AUDIENCE: &str = "https://dragonfly.vipyrsec.com";
/// The default PyPI JSON API root.
pub const DEFAULT_PYPI_INDEX: &str = "https://pypi.org/pypi";

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
    /// Path of an extra PEM CA certificate (file may hold several),
    /// trusted besides the built-in Mozilla roots.
    pub ca_cert: Option<PathBuf>,
    /// Largest JSON response body accepted. Default 64 MiB.
    pub max_response_bytes: u64,
    /// Redirects followed by downloads and PyPI look-ups (API calls and
    /// logins follow none). Default 5.
    pub max_redirects: u32,
    /// `User-Agent` header. Default `dragonfly-client/<version>`.
    pub user_agent: String,
    /// Delay after the first failed login; it doubles with each further
    /// failure (with jitter), up to [`login_backoff_max`](Self::login_backoff_max). Default 2 s.
    pub login_backoff_base: Duration,
    /// Longest delay between failed logins. Default 10 min.
    pub login_backoff_max: Duration,
    /// Use `ALL_PROXY` / `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` from the
    /// environment. Default true.
    pub proxy_from_env: bool,
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
            ca_cert: None,
            max_response_bytes: 64 * 1024 * 1024,
            max_redirects: 5,
            user_agent: concat!("dragonfly-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            login_backoff_base: Duration::from_secs(2),
            login_backoff_max: Duration::from_secs(10 * 60),
            proxy_from_env: true,
        }
    }
}

/// `DRAGONFLY_AUTH_MODE`: which scheme to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// `auth0` (default).
    #[default]
    Auth0,
    /// `cloudflare`.
    Cloudflare,
    /// `token`: a static bearer token from `DRAGONFLY_TOKEN`.
    Token,
    /// `none`.
    None,
}

impl FromStr for AuthMode {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self, Error> {
        match value.trim().to_ascii_lowercase().as_str() {
            "auth0" => Ok(AuthMode::Auth0),
            "cloudflare" => Ok(AuthMode::Cloudflare),
            "token" => Ok(AuthMode::Token),
            "none" => Ok(AuthMode::None),
            other => Err(Error::new(
                ErrorKind::Config,
                format!("unknown auth mode `{other}` (expected auth0, cloudflare, token or none)"),
            )),
        }
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthMode::Auth0 => "auth0",
            AuthMode::Cloudflare => "cloudflare",
            AuthMode::Token => "token",
            AuthMode::None => "none",
        })
    }
}

/// `DRAGONFLY_GRANT_TYPE`: which OAuth2 grant Auth0 mode uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// `password` (default).
    #[default]
    Password,
    /// `client_credentials`.
    ClientCredentials,
}

impl FromStr for GrantType {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self, Error> {
        match value.trim().to_ascii_lowercase().as_str() {
            "password" => Ok(GrantType::Password),
            "client_credentials" => Ok(GrantType::ClientCredentials),
            other => Err(Error::new(
                ErrorKind::Config,
                format!("unknown grant type `{other}` (expected password or client_credentials)"),
            )),
        }
    }
}

impl fmt::Display for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GrantType::Password => "password",
            GrantType::ClientCredentials => "client_credentials",
        })
    }
}

/// The authentication settings as a node reads them (environment or
/// `Config.toml`), before validation. `Debug` masks secrets.
///
/// ```
/// use dragonfly_api::{Auth, AuthMode, AuthSettings};
///
/// let settings = AuthSettings {
///     mode: AuthMode::Token,
///     token: Some("abc".into()),
///     ..AuthSettings::default()
/// };
/// assert!(matches!(settings.into_auth()?, Auth::Token(_)));
/// # Ok::<(), dragonfly_api::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// `DRAGONFLY_AUTH_MODE`.
    pub mode: AuthMode,
    /// `DRAGONFLY_GRANT_TYPE`.
    pub grant: GrantType,
    /// `DRAGONFLY_AUTH0_DOMAIN`.
    pub auth0_domain: String,
    /// `DRAGONFLY_AUDIENCE`.
    pub audience: String,
    /// `DRAGONFLY_CLIENT_ID`.
    pub client_id: Option<String>,
    /// `DRAGONFLY_CLIENT_SECRET`.
    pub client_secret: Option<Secret>,
    /// `DRAGONFLY_USERNAME`.
    pub username: Option<String>,
    /// `DRAGONFLY_PASSWORD`.
    pub password: Option<Secret>,
    /// `DRAGONFLY_TOKEN`.
    pub token: Option<Secret>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            mode: AuthMode::default(),
            grant: GrantType::default(),
            auth0_domain: DEFAULT_AUTH0_DOMAIN.to_owned(),
            audience: DEFAULT_AUDIENCE.to_owned(),
            client_id: None,
            client_secret: None,
            username: None,
            password: None,
            token: None,
        }
    }
}

impl AuthSettings {
    /// Checks that the chosen mode has what it needs and builds the [`Auth`].
    /// The error names the missing setting, never a value.
    pub fn into_auth(self) -> Result<Auth, Error> {
        fn required<T>(value: Option<T>, name: &str, is_empty: impl Fn(&T) -> bool) -> Result<T, Error> {
            match value {
                Some(value) if !is_empty(&value) => Ok(value),
                _ => Err(Error::new(ErrorKind::Config, format!("{name} is not set"))),
            }
        }
        let text = |value: &String| value.trim().is_empty();
        let secret = |value: &Secret| value.is_empty();
        match self.mode {
            AuthMode::None => Ok(Auth::None),
            AuthMode::Token => Ok(Auth::Token(required(self.token, "DRAGONFLY_TOKEN", secret)?)),
            AuthMode::Cloudflare => Ok(Auth::Cloudflare {
                client_id: required(self.client_id, "DRAGONFLY_CLIENT_ID", text)?,
                client_secret: required(self.client_secret, "DRAGONFLY_CLIENT_SECRET", secret)?,
            }),
            AuthMode::Auth0 => {
                let grant = match self.grant {
                    GrantType::ClientCredentials => Grant::ClientCredentials,
                    GrantType::Password => Grant::Password {
                        username: required(self.username, "DRAGONFLY_USERNAME", text)?,
                        password: required(self.password, "DRAGONFLY_PASSWORD", secret)?,
                    },
                };
                Ok(Auth::Auth0 {
                    domain: required(Some(self.auth0_domain), "DRAGONFLY_AUTH0_DOMAIN", text)?,
                    audience: self.audience,
                    client_id: required(self.client_id, "DRAGONFLY_CLIENT_ID", text)?,
                    client_secret: required(self.client_secret, "DRAGONFLY_CLIENT_SECRET", secret)?,
                    grant,
                })
            }
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
    fn parses_modes_and_grants() {
        assert_eq!("auth0".parse::<AuthMode>().unwrap(), AuthMode::Auth0);
        assert_eq!("Cloudflare".parse::<AuthMode>().unwrap(), AuthMode::Cloudflare);
        assert_eq!("token".parse::<AuthMode>().unwrap(), AuthMode::Token);
        assert_eq!("none".parse::<AuthMode>().unwrap(), AuthMode::None);
        assert_eq!("nope".parse::<AuthMode>().unwrap_err().kind(), ErrorKind::Config);
        assert_eq!("password".parse::<GrantType>().unwrap(), GrantType::Password);
        assert_eq!("client_credentials".parse::<GrantType>().unwrap(), GrantType::ClientCredentials);
        assert!("implicit".parse::<GrantType>().is_err());
        for mode in [AuthMode::Auth0, AuthMode::Cloudflare, AuthMode::Token, AuthMode::None] {
            assert_eq!(mode.to_string().parse::<AuthMode>().unwrap(), mode);
        }
    }

    #[test]
    fn token_url_from_domain() {
        assert_eq!(auth0_token_url("vipyrsec.us.auth0.com"), "https://vipyrsec.us.auth0.com/oauth/token");
        assert_eq!(auth0_token_url("http://127.0.0.1:8000/"), "http://127.0.0.1:8000/oauth/token");
    }

    #[test]
    fn settings_validation_names_the_missing_setting() {
        let err = AuthSettings::default().into_auth().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("DRAGONFLY_USERNAME"), "{err}");

        let settings = AuthSettings {
            grant: GrantType::ClientCredentials,
            client_id: Some("id".into()),
            client_secret: Some("pw-very-secret".into()),
            ..AuthSettings::default()
        };
        assert!(!format!("{settings:?}").contains("pw-very-secret"));
        match settings.into_auth().unwrap() {
            Auth::Auth0 { domain, grant: Grant::ClientCredentials, .. } => {
                assert_eq!(domain, DEFAULT_AUTH0_DOMAIN)
            }
            other => panic!("unexpected {other:?}"),
        }

        let cloudflare = AuthSettings {
            mode: AuthMode::Cloudflare,
            client_id: Some("id".into()),
            ..AuthSettings::default()
        };
        assert!(cloudflare.into_auth().unwrap_err().to_string().contains("DRAGONFLY_CLIENT_SECRET"));
        let token = AuthSettings { mode: AuthMode::Token, token: Some("".into()), ..AuthSettings::default() };
        assert!(token.into_auth().is_err());
    }
}
