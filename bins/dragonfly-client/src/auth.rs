//! Which authentication scheme the settings describe, and the checks that
//! name the setting an operator must fix.

use std::fmt;

use anyhow::{Result, bail};
use dragonfly_api::{Auth, Grant, Secret};
use serde::{Deserialize, Serialize};

/// `DRAGONFLY_AUTH_MODE`: which scheme to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// `auto` (default): the scheme the credentials describe. A user name
    /// or password means Auth0; a client id and secret alone, a Cloudflare
    /// Access service token.
    #[default]
    Auto,
    /// `auth0`.
    Auth0,
    /// `cloudflare`.
    Cloudflare,
    /// `token`: a static bearer token from `DRAGONFLY_TOKEN`.
    Token,
    /// `none`.
    None,
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthMode::Auto => "auto",
            AuthMode::Auth0 => "auth0",
            AuthMode::Cloudflare => "cloudflare",
            AuthMode::Token => "token",
            AuthMode::None => "none",
        })
    }
}

/// `DRAGONFLY_GRANT_TYPE`: which OAuth2 grant Auth0 mode uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// `password` (default).
    #[default]
    Password,
    /// `client_credentials`.
    ClientCredentials,
}

/// The authentication settings as read, before validation.
#[derive(Debug)]
pub struct AuthSettings<'a> {
    /// `DRAGONFLY_AUTH_MODE`.
    pub mode: AuthMode,
    /// `DRAGONFLY_GRANT_TYPE`.
    pub grant: GrantType,
    /// `DRAGONFLY_AUTH0_DOMAIN`.
    pub auth0_domain: &'a str,
    /// `DRAGONFLY_AUDIENCE`.
    pub audience: &'a str,
    /// `DRAGONFLY_CLIENT_ID`.
    pub client_id: Option<&'a str>,
    /// `DRAGONFLY_CLIENT_SECRET`.
    pub client_secret: Option<&'a Secret>,
    /// `DRAGONFLY_USERNAME`.
    pub username: Option<&'a str>,
    /// `DRAGONFLY_PASSWORD`.
    pub password: Option<&'a Secret>,
    /// `DRAGONFLY_TOKEN`.
    pub token: Option<&'a Secret>,
}

impl AuthSettings<'_> {
    /// The scheme in use: the explicit mode, or in `auto` the one the
    /// credentials describe.
    pub fn effective_mode(&self) -> Result<AuthMode> {
        let given = |value: Option<&str>| value.is_some_and(|v| !v.trim().is_empty());
        let given_secret = |value: Option<&Secret>| value.is_some_and(|v| !v.is_empty());
        if self.mode != AuthMode::Auto {
            return Ok(self.mode);
        }
        if given(self.username) || given_secret(self.password) || self.grant == GrantType::ClientCredentials {
            return Ok(AuthMode::Auth0);
        }
        if given(self.client_id) || given_secret(self.client_secret) {
            return Ok(AuthMode::Cloudflare);
        }
        bail!(
            "no credentials are set: for Cloudflare Access set DRAGONFLY_CLIENT_ID and \
             DRAGONFLY_CLIENT_SECRET (the service token); for Auth0 set those and \
             DRAGONFLY_USERNAME and DRAGONFLY_PASSWORD; or set DRAGONFLY_AUTH_MODE=none \
             for a server without authentication"
        )
    }

    /// What to tell an operator whose credentials the server refuses.
    pub fn hint(&self) -> Option<String> {
        match self.effective_mode().ok()? {
            AuthMode::Cloudflare => Some(
                "check DRAGONFLY_CLIENT_ID and DRAGONFLY_CLIENT_SECRET, the Cloudflare Access service token"
                    .to_owned(),
            ),
            AuthMode::Auth0 => Some(
                "check DRAGONFLY_CLIENT_ID, DRAGONFLY_CLIENT_SECRET, DRAGONFLY_USERNAME, DRAGONFLY_PASSWORD \
                 and DRAGONFLY_AUDIENCE"
                    .to_owned(),
            ),
            AuthMode::Token => Some("check DRAGONFLY_TOKEN".to_owned()),
            AuthMode::Auto | AuthMode::None => None,
        }
    }

    /// Checks that the chosen mode has what it needs and builds the [`Auth`].
    /// The error names the missing setting, never a value.
    pub fn to_auth(&self) -> Result<Auth> {
        fn text<'a>(value: Option<&'a str>, name: &str) -> Result<&'a str> {
            match value {
                Some(value) if !value.trim().is_empty() => Ok(value),
                _ => bail!("{name} is not set"),
            }
        }
        fn secret(value: Option<&Secret>, name: &str) -> Result<Secret> {
            match value {
                Some(value) if !value.is_empty() => Ok(value.clone()),
                _ => bail!("{name} is not set"),
            }
        }
        Ok(match self.effective_mode()? {
            AuthMode::None => Auth::None,
            AuthMode::Token => Auth::Token(secret(self.token, "DRAGONFLY_TOKEN")?),
            AuthMode::Cloudflare => Auth::Cloudflare {
                client_id: text(self.client_id, "DRAGONFLY_CLIENT_ID")?.to_owned(),
                client_secret: secret(self.client_secret, "DRAGONFLY_CLIENT_SECRET")?,
            },
            AuthMode::Auth0 | AuthMode::Auto => {
                let grant = match self.grant {
                    GrantType::ClientCredentials => Grant::ClientCredentials,
                    GrantType::Password => Grant::Password {
                        username: text(self.username, "DRAGONFLY_USERNAME")?.to_owned(),
                        password: secret(self.password, "DRAGONFLY_PASSWORD")?,
                    },
                };
                Auth::Auth0 {
                    domain: text(Some(self.auth0_domain), "DRAGONFLY_AUTH0_DOMAIN")?.to_owned(),
                    audience: self.audience.to_owned(),
                    client_id: text(self.client_id, "DRAGONFLY_CLIENT_ID")?.to_owned(),
                    client_secret: secret(self.client_secret, "DRAGONFLY_CLIENT_SECRET")?,
                    grant,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AuthSettings<'static> {
        AuthSettings {
            mode: AuthMode::Auto,
            grant: GrantType::Password,
            auth0_domain: dragonfly_api::DEFAULT_AUTH0_DOMAIN,
            audience: dragonfly_api::DEFAULT_AUDIENCE,
            client_id: None,
            client_secret: None,
            username: None,
            password: None,
            token: None,
        }
    }

    #[test]
    fn auto_picks_the_scheme_the_credentials_describe() {
        let secret = Secret::new("s");
        let service_token =
            AuthSettings { client_id: Some("id"), client_secret: Some(&secret), ..settings() };
        assert!(matches!(service_token.to_auth().unwrap(), Auth::Cloudflare { .. }));
        let account = AuthSettings { username: Some("node"), password: Some(&secret), ..service_token };
        assert!(matches!(account.to_auth().unwrap(), Auth::Auth0 { grant: Grant::Password { .. }, .. }));
        let half = AuthSettings { username: Some("node"), ..settings() };
        assert!(half.to_auth().unwrap_err().to_string().contains("DRAGONFLY_PASSWORD"));
        let nothing = settings().to_auth().unwrap_err().to_string();
        for name in
            ["DRAGONFLY_CLIENT_ID", "DRAGONFLY_CLIENT_SECRET", "DRAGONFLY_USERNAME", "DRAGONFLY_AUTH_MODE"]
        {
            assert!(nothing.contains(name), "{nothing}");
        }
        // An explicit mode wins.
        let forced = AuthSettings { mode: AuthMode::Auth0, ..service_token };
        assert!(forced.to_auth().unwrap_err().to_string().contains("DRAGONFLY_USERNAME"));
        assert!(service_token.hint().unwrap().contains("Cloudflare Access"));
    }

    #[test]
    fn validation_names_the_missing_setting() {
        let err = AuthSettings { mode: AuthMode::Auth0, ..settings() }.to_auth().unwrap_err();
        assert!(err.to_string().contains("DRAGONFLY_USERNAME"), "{err}");

        let secret = Secret::new("pw-very-secret");
        let client_credentials = AuthSettings {
            grant: GrantType::ClientCredentials,
            client_id: Some("id"),
            client_secret: Some(&secret),
            ..settings()
        };
        assert!(!format!("{client_credentials:?}").contains("pw-very-secret"));
        match client_credentials.to_auth().unwrap() {
            Auth::Auth0 { domain, grant: Grant::ClientCredentials, .. } => {
                assert_eq!(domain, dragonfly_api::DEFAULT_AUTH0_DOMAIN)
            }
            other => panic!("unexpected {other:?}"),
        }

        let cloudflare = AuthSettings { mode: AuthMode::Cloudflare, client_id: Some("id"), ..settings() };
        assert!(cloudflare.to_auth().unwrap_err().to_string().contains("DRAGONFLY_CLIENT_SECRET"));
        let empty = Secret::new("");
        let token = AuthSettings { mode: AuthMode::Token, token: Some(&empty), ..settings() };
        assert!(token.to_auth().is_err());
    }

    #[test]
    fn modes_read_and_print_alike() {
        for mode in [AuthMode::Auto, AuthMode::Auth0, AuthMode::Cloudflare, AuthMode::Token, AuthMode::None] {
            let text = mode.to_string();
            let back: AuthMode = serde_json::from_value(serde_json::Value::String(text)).unwrap();
            assert_eq!(back, mode);
        }
    }
}
