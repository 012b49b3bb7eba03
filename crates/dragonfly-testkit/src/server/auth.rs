//! Authentication: fake JWTs, the Auth0 token endpoint, Cloudflare Access.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use super::AuthMode;
use crate::rng::Rng;

/// Name of the Cloudflare Access cookie.
pub(crate) const CF_COOKIE: &str = "CF_Authorization";

/// Issued tokens and cookies with their expiry.
#[derive(Debug)]
pub(crate) struct Tokens {
    live: HashMap<String, Instant>,
    /// Tokens signed with a key the server has since rotated out: it can
    /// no longer verify them.
    unverifiable: std::collections::HashSet<String>,
    rng: Rng,
}

/// What the server makes of a request's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allowed,
    /// No valid credential: 401 (or the edge's refusal).
    Refused,
    /// A token this server issued but can no longer verify: 500.
    Unverifiable,
}

impl Tokens {
    pub fn new(seed: u64) -> Tokens {
        Tokens { live: HashMap::new(), unverifiable: std::collections::HashSet::new(), rng: Rng::new(seed) }
    }

    /// The signing key rotates: tokens issued so far stay unexpired but can
    /// no longer be verified.
    pub fn rotate_key(&mut self) {
        self.unverifiable.extend(self.live.drain().map(|(token, _)| token));
    }

    /// Whether `token` was signed with a key rotated out since.
    pub fn is_unverifiable(&self, token: &str) -> bool {
        self.unverifiable.contains(token)
    }

    /// Issues a fake JWT carrying `claims` plus `iat`/`exp`, valid for `ttl`.
    pub fn issue(&mut self, mut claims: serde_json::Map<String, Value>, ttl: Duration) -> String {
        let now = Instant::now();
        self.live.retain(|_, deadline| *deadline > now);
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        claims.insert("iat".into(), json!(unix));
        claims.insert("exp".into(), json!(unix + ttl_secs(ttl)));
        claims.insert("jti".into(), json!(format!("{:016x}", self.rng.next_u64())));
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": "dragonfly-fake"});
        let signature: Vec<u8> = (0..4).flat_map(|_| self.rng.next_u64().to_le_bytes()).collect();
        let token = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string()),
            URL_SAFE_NO_PAD.encode(signature)
        );
        self.live.insert(token.clone(), now + ttl);
        token
    }

    /// The token was issued by this server, is not revoked and not expired.
    pub fn is_valid(&self, token: &str) -> bool {
        self.live.get(token).is_some_and(|deadline| *deadline > Instant::now())
    }

    pub fn revoke_all(&mut self) {
        self.live.clear();
    }
}

/// A token lifetime in whole seconds, rounded up (never 0 for a live token).
pub(crate) fn ttl_secs(ttl: Duration) -> u64 {
    ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)
}

/// Request headers, looked up case-insensitively.
pub(crate) struct Headers<'a>(pub &'a [tiny_http::Header]);

impl Headers<'_> {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|header| header.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|header| header.value.as_str())
    }

    pub fn bearer(&self) -> Option<&str> {
        let value = self.get("Authorization")?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .filter(|header| header.field.equiv("Cookie"))
            .flat_map(|header| header.value.as_str().split(';'))
            .find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                (key == name).then_some(value)
            })
    }

    /// Client id and secret from an HTTP Basic header (RFC 6749 2.3.1:
    /// both form-urlencoded before joining).
    pub fn basic(&self) -> Option<(String, String)> {
        let value = self.get("Authorization")?;
        let (scheme, encoded) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        Some((form_decode(id), form_decode(secret)))
    }
}

fn form_decode(text: &str) -> String {
    form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

/// An OAuth2 error answer: `(status, body)`.
pub(crate) type Rejection = (u16, Value);

fn oauth_error(status: u16, error: &str, description: &str) -> Rejection {
    (status, json!({"error": error, "error_description": description}))
}

/// Parameters of a token request, from a form or JSON body.
pub(crate) fn token_params(headers: &Headers<'_>, body: &[u8]) -> Result<HashMap<String, String>, Rejection> {
    let is_json =
        headers.get("Content-Type").is_some_and(|value| value.to_ascii_lowercase().contains("json"));
    let mut params = HashMap::new();
    if is_json {
        let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
            return Err(oauth_error(400, "invalid_request", "body is not a JSON object"));
        };
        for (key, value) in object {
            if let Value::String(value) = value {
                params.insert(key, value);
            }
        }
    } else {
        for (key, value) in form_urlencoded::parse(body) {
            params.insert(key.into_owned(), value.into_owned());
        }
    }
    if let Some((id, secret)) = headers.basic() {
        params.entry("client_id".into()).or_insert(id);
        params.entry("client_secret".into()).or_insert(secret);
    }
    Ok(params)
}

/// Checks an Auth0-style token request against `mode`; on success returns
/// the claims to put in the token.
pub(crate) fn check_token_request(
    mode: &AuthMode,
    params: &HashMap<String, String>,
    issuer: &str,
) -> Result<serde_json::Map<String, Value>, Rejection> {
    let param = |key: &str| params.get(key).map(String::as_str);
    let grant_type = param("grant_type").unwrap_or_default();
    if !matches!(grant_type, "password" | "client_credentials") {
        return Err(oauth_error(
            400,
            "unsupported_grant_type",
            "grant_type must be password or client_credentials",
        ));
    }
    let mut claims = serde_json::Map::new();
    claims.insert("iss".into(), json!(issuer));
    claims.insert("gty".into(), json!(grant_type));
    match mode {
        AuthMode::Auth0 { client_id, client_secret, username, password, audience } => {
            let (Some(id), Some(secret)) = (param("client_id"), param("client_secret")) else {
                return Err(oauth_error(401, "invalid_client", "client credentials missing"));
            };
            if id != client_id || secret != client_secret {
                return Err(oauth_error(401, "access_denied", "Unauthorized"));
            }
            if param("audience") != Some(audience.as_str()) {
                return Err(oauth_error(403, "access_denied", "Service not enabled within domain"));
            }
            if grant_type == "password" {
                if param("username") != Some(username.as_str())
                    || param("password") != Some(password.as_str())
                {
                    return Err(oauth_error(403, "invalid_grant", "Wrong email or password."));
                }
                claims.insert("sub".into(), json!(format!("auth0|{username}")));
            } else {
                claims.insert("sub".into(), json!(format!("{client_id}@clients")));
            }
            claims.insert("aud".into(), json!(audience));
            Ok(claims)
        }
        // Open server: any credentials get a token.
        AuthMode::None => {
            claims.insert("sub".into(), json!(param("username").unwrap_or("anonymous")));
            claims.insert("aud".into(), json!(param("audience").unwrap_or_default()));
            Ok(claims)
        }
        AuthMode::Cloudflare { .. } | AuthMode::Token(_) => {
            Err(oauth_error(404, "not_found", "no token endpoint on this server"))
        }
    }
}

/// The Cloudflare service-token headers match.
pub(crate) fn cf_headers_match(headers: &Headers<'_>, client_id: &str, client_secret: &str) -> bool {
    headers.get("CF-Access-Client-Id") == Some(client_id)
        && headers.get("CF-Access-Client-Secret") == Some(client_secret)
}

/// What an API request's credentials are worth under `mode`.
pub(crate) fn api_verdict(mode: &AuthMode, tokens: &Tokens, headers: &Headers<'_>) -> Verdict {
    let allowed = match mode {
        AuthMode::None => true,
        AuthMode::Token(expected) => headers.bearer() == Some(expected.as_str()),
        AuthMode::Auth0 { .. } => match headers.bearer() {
            Some(token) if tokens.is_unverifiable(token) => return Verdict::Unverifiable,
            Some(token) => tokens.is_valid(token),
            None => false,
        },
        AuthMode::Cloudflare { client_id, client_secret } => {
            headers.cookie(CF_COOKIE).is_some_and(|token| tokens.is_valid(token))
                || headers.get("Cf-Access-Jwt-Assertion").is_some_and(|token| tokens.is_valid(token))
                || cf_headers_match(headers, client_id, client_secret)
        }
    };
    if allowed { Verdict::Allowed } else { Verdict::Refused }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(field: &str, value: &str) -> tiny_http::Header {
        match tiny_http::Header::from_bytes(field.as_bytes(), value.as_bytes()) {
            Ok(header) => header,
            Err(()) => panic!("bad test header"),
        }
    }

    #[test]
    fn header_helpers() {
        let list =
            [header("authorization", "Bearer abc "), header("Cookie", "a=1; CF_Authorization=tok; b=2")];
        let headers = Headers(&list);
        assert_eq!(headers.bearer(), Some("abc"));
        assert_eq!(headers.cookie(CF_COOKIE), Some("tok"));
        assert_eq!(headers.cookie("c"), None);

        let basic = [header("Authorization", &format!("Basic {}", STANDARD.encode("my+id:s%3Acret")))];
        assert_eq!(Headers(&basic).basic(), Some(("my id".to_owned(), "s:cret".to_owned())));
    }

    #[test]
    fn issued_tokens_expire_and_revoke() {
        let mut tokens = Tokens::new(1);
        let token = tokens.issue(serde_json::Map::new(), Duration::from_secs(60));
        assert!(tokens.is_valid(&token));
        assert!(!tokens.is_valid("other"));
        let payload = token.split('.').nth(1).unwrap_or_default();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap_or_default()).unwrap_or_default();
        assert_eq!(claims["exp"].as_u64(), claims["iat"].as_u64().map(|iat| iat + 60));
        let expired = tokens.issue(serde_json::Map::new(), Duration::ZERO);
        assert!(!tokens.is_valid(&expired));
        tokens.revoke_all();
        assert!(!tokens.is_valid(&token));
    }

    #[test]
    fn ttl_rounds_up() {
        assert_eq!(ttl_secs(Duration::from_millis(1)), 1);
        assert_eq!(ttl_secs(Duration::from_secs(3600)), 3600);
    }
}
