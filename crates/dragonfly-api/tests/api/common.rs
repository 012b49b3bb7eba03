//! Shared helpers for the mockito-based tests.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use dragonfly_api::{Auth, Client, ClientConfig, Grant, Secret};
use mockito::{Mock, ServerGuard};

pub const CLIENT_SECRET: &str = "cs-TOPSECRET-1111";
pub const PASSWORD: &str = "pw-TOPSECRET-2222";
pub const STATIC_TOKEN: &str = "st-TOPSECRET-3333";
pub const CF_SECRET: &str = "cf-TOPSECRET-4444";

/// A configuration for a loopback server: no proxy, short timeouts, fast backoff.
pub fn config(server: &ServerGuard, auth: Auth) -> ClientConfig {
    let mut config = ClientConfig::new(server.url(), auth);
    config.proxy_from_env = false;
    // Downloads come from the mock server, on loopback.
    config.allow_private_downloads = true;
    config.connect_timeout = Duration::from_secs(5);
    config.read_timeout = Duration::from_secs(10);
    config.login_backoff = dragonfly_api::Backoff::new(Duration::from_millis(20), Duration::from_millis(200));
    config
}

pub fn client(server: &ServerGuard, auth: Auth) -> Client {
    Client::new(config(server, auth)).unwrap()
}

/// A client whose login backoff (250 ms to 5 s) is wide enough for a test
/// to act inside its window on a slow machine.
pub fn patient_client(server: &ServerGuard, auth: Auth) -> Client {
    let mut config = config(server, auth);
    config.login_backoff = dragonfly_api::Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
    Client::new(config).unwrap()
}

pub fn auth0(server: &ServerGuard, grant: Grant) -> Auth {
    Auth::Auth0 {
        domain: server.url(),
        audience: "https://dragonfly.example".into(),
        client_id: "node-client".into(),
        client_secret: Secret::new(CLIENT_SECRET),
        grant,
    }
}

pub fn password_grant() -> Grant {
    Grant::Password { username: "node-user".into(), password: Secret::new(PASSWORD) }
}

/// A token endpoint handing out `tok-1`, `tok-2`, ... with `expires_in`; returns the call counter.
pub fn token_endpoint(server: &mut ServerGuard, expires_in: u64) -> (Mock, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let mock = server
        .mock("POST", "/oauth/token")
        .with_header("content-type", "application/json")
        .with_body_from_request(move |_| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            format!(r#"{{"access_token":"tok-{n}","expires_in":{expires_in},"token_type":"Bearer"}}"#)
                .into_bytes()
        })
        .create();
    (mock, calls)
}

pub const RULES_JSON: &str = r#"{"hash":"abc123","rules":{"a.yara":"rule a { condition: true }"}}"#;

/// An unsigned JWT with the given `exp`.
pub fn jwt_with_exp(exp: u64) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.c2ln",
        engine.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        engine.encode(format!(r#"{{"exp":{exp},"sub":"service-token"}}"#))
    )
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}
