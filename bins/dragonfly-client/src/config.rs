//! Node configuration: built-in defaults < `Config.toml` < `DRAGONFLY_*`
//! environment variables, validated once at start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use dragonfly_api::{ClientConfig, Secret};
use dragonfly_engine::{Limits, ReuseMode};
use dragonfly_orchestrator::NodeSettings;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::auth::{AuthMode, AuthSettings, GrantType};

/// Connect and read timeout of each HTTP request, seconds.
const DEFAULT_HTTP_TIMEOUT: u64 = 30;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Every setting of the node. Field names are the `Config.toml` keys; the
/// environment variable is `DRAGONFLY_` + the upper-cased name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Control server base URL.
    pub base_url: String,
    /// `auth0`, `cloudflare`, `token` or `none`.
    pub auth_mode: AuthMode,
    /// `password` or `client_credentials` (Auth0 only).
    pub grant_type: GrantType,
    /// Auth0 tenant domain; may carry a scheme and port for local servers.
    pub auth0_domain: String,
    /// Auth0 audience.
    pub audience: String,
    /// OAuth2 client id, or Cloudflare Access service-token id.
    pub client_id: Option<String>,
    /// OAuth2 client secret, or Cloudflare Access service-token secret.
    pub client_secret: Option<Secret>,
    /// Node account user name (password grant).
    pub username: Option<String>,
    /// Node account password (password grant).
    pub password: Option<Secret>,
    /// Static bearer token (`auth_mode = "token"`).
    pub token: Option<Secret>,
    /// Extra PEM CA certificate to trust.
    pub ca_cert: Option<PathBuf>,
    /// Let distribution URLs (and their redirects) reach loopback,
    /// private and link-local addresses.
    pub allow_private_downloads: bool,
    /// Scanning threads.
    pub threads: usize,
    /// Seconds between job requests while the server has no jobs.
    pub load_duration: u64,
    /// Jobs per request.
    pub bulk_size: usize,
    /// Largest distribution download, in bytes.
    pub max_scan_size: u64,
    /// The most memory the node may use: bytes, or with a KiB/MiB/GiB
    /// suffix (none: the container's limit minus headroom, else half the
    /// physical memory). Config.toml may give a plain number.
    #[serde(default, deserialize_with = "text_or_number")]
    pub memory_limit: Option<String>,
    /// Accepted for compatibility with the original client; has no effect
    /// (work wakes the node at once).
    pub wait_duration: u64,
    /// Per-file scan timeout, seconds.
    pub scan_timeout: u64,
    /// Largest total of uncompressed file bytes per distribution.
    pub max_uncompressed_size: u64,
    /// Largest single uncompressed file, bytes.
    pub max_file_size: u64,
    /// Most archive entries per distribution.
    pub max_entries: u64,
    /// Largest expansion ratio (uncompressed / compressed bytes).
    pub max_expansion_ratio: u64,
    /// Largest tar extension header (GNU long name, PAX header), bytes:
    /// bounds every path read from an archive.
    pub max_header_size: u64,
    /// Connect and read timeout of each HTTP request, seconds.
    pub http_timeout: u64,
    /// The server's lease (job timeout), seconds: the node holds no more
    /// work than it expects to finish within half of it.
    pub lease_timeout: u64,
    /// Seconds between one-line summaries in the log.
    pub summary_interval: u64,
    /// Seconds allowed, after SIGINT/SIGTERM, to finish held jobs and
    /// deliver their results.
    pub grace_period: u64,
    /// Directory caching compiled rules by hash (none: no cache).
    pub rules_cache_dir: Option<PathBuf>,
    /// Scan results reused by content: `off`, `observe` or `reuse`.
    pub scan_reuse: ReuseMode,
    /// Memory for results kept by content, bytes; also the size of the
    /// store under `cache_dir`.
    pub cache_size: u64,
    /// Directory keeping scan results across restarts (none: memory only).
    pub cache_dir: Option<PathBuf>,
    /// Share results with the fleet through the server's scan cache when
    /// it has one.
    pub scan_cache: bool,
    /// Scan-cache requests a second this node makes at most.
    pub scan_cache_rate: u32,
    /// Address for Prometheus metrics and health endpoints (none: off).
    pub metrics_addr: Option<String>,
    /// `text` or `json`.
    pub log_format: LogFormat,
}

impl Default for Config {
    /// The libraries' defaults, in the units of the settings.
    fn default() -> Self {
        let node = NodeSettings::default();
        let limits = &node.limits;
        Config {
            base_url: dragonfly_api::DEFAULT_BASE_URL.into(),
            auth_mode: AuthMode::default(),
            grant_type: GrantType::default(),
            auth0_domain: dragonfly_api::DEFAULT_AUTH0_DOMAIN.into(),
            audience: dragonfly_api::DEFAULT_AUDIENCE.into(),
            client_id: None,
            client_secret: None,
            username: None,
            password: None,
            token: None,
            ca_cert: None,
            allow_private_downloads: false,
            threads: node.threads,
            load_duration: node.load_duration.as_secs(),
            bulk_size: node.bulk_size,
            max_scan_size: node.max_scan_size,
            memory_limit: None,
            wait_duration: 10,
            scan_timeout: node.scan_timeout.as_secs(),
            max_uncompressed_size: limits.max_total_bytes,
            max_file_size: limits.max_file_bytes,
            max_entries: limits.max_entries,
            max_expansion_ratio: limits.max_ratio,
            max_header_size: limits.max_header_bytes,
            http_timeout: DEFAULT_HTTP_TIMEOUT,
            lease_timeout: node.lease_timeout.as_secs(),
            summary_interval: node.summary_interval.as_secs(),
            grace_period: node.grace_period.as_secs(),
            rules_cache_dir: None,
            scan_reuse: node.scan_reuse,
            cache_size: node.cache_size,
            cache_dir: None,
            scan_cache: node.scan_cache,
            scan_cache_rate: node.scan_cache_rate,
            metrics_addr: None,
            log_format: LogFormat::Text,
        }
    }
}

/// Settings that are text, read from the environment without parsing.
const TEXT_KEYS: &[&str] = &[
    "base_url",
    "auth0_domain",
    "audience",
    "client_id",
    "client_secret",
    "username",
    "password",
    "token",
    "metrics_addr",
    "memory_limit",
];

/// Names of the settings that hold secrets.
const SECRET_KEYS: &[&str] = &["client_secret", "password", "token"];

/// Other names operators use for a setting: `(alias, setting)`. The
/// setting's own `DRAGONFLY_` name wins when both are set.
const ALIASES: &[(&str, &str)] =
    &[("DRAGONFLY_CF_ACCESS_CLIENT_ID", "client_id"), ("DRAGONFLY_CF_ACCESS_CLIENT_SECRET", "client_secret")];

impl Config {
    /// Loads defaults < `config_file` (if it exists) < `DRAGONFLY_*`
    /// environment, then validates.
    pub fn load(config_file: &Path) -> Result<Config> {
        // figment reads `DRAGONFLY_PASSWORD=0123` as a number; text settings
        // are taken from the environment verbatim instead.
        let mut verbatim: BTreeMap<&str, String> =
            ALIASES.iter().filter_map(|(alias, key)| std::env::var(alias).ok().map(|v| (*key, v))).collect();
        verbatim.extend(TEXT_KEYS.iter().filter_map(|key| {
            std::env::var(format!("DRAGONFLY_{}", key.to_uppercase())).ok().map(|v| (*key, v))
        }));
        Self::from_figment(
            Figment::from(Serialized::defaults(Config::default()))
                .merge(Toml::file(config_file))
                .merge(Env::prefixed("DRAGONFLY_").ignore(TEXT_KEYS))
                .merge(Serialized::defaults(verbatim)),
        )
    }

    fn from_figment(figment: Figment) -> Result<Config> {
        let config: Config = figment.extract().map_err(|err| {
            let errors: Vec<String> = err
                .into_iter()
                .map(|e| match e.path.last() {
                    // The error kind may quote the value: never for secrets.
                    Some(key) if SECRET_KEYS.contains(&key.as_str()) => {
                        format!("setting `{key}` (DRAGONFLY_{}) is not valid", key.to_uppercase())
                    }
                    Some(key) => format!("setting `{key}` (DRAGONFLY_{}): {}", key.to_uppercase(), e.kind),
                    None => e.to_string(),
                })
                .collect();
            anyhow::anyhow!("invalid configuration: {}", errors.join("; "))
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values and their combinations, naming the setting at fault.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("threads", self.threads as u64),
            ("bulk_size", self.bulk_size as u64),
            ("max_scan_size", self.max_scan_size),
            ("scan_timeout", self.scan_timeout),
            ("max_uncompressed_size", self.max_uncompressed_size),
            ("max_file_size", self.max_file_size),
            ("max_entries", self.max_entries),
            ("max_expansion_ratio", self.max_expansion_ratio),
            ("max_header_size", self.max_header_size),
            ("http_timeout", self.http_timeout),
            ("load_duration", self.load_duration),
            ("lease_timeout", self.lease_timeout),
            ("summary_interval", self.summary_interval),
        ];
        for (key, value) in positive {
            if value == 0 {
                bail!("setting `{key}` (DRAGONFLY_{}) must be at least 1", key.to_uppercase());
            }
        }
        check_url("base_url", &self.base_url)?;
        let auth = self.auth_settings();
        if auth.effective_mode().ok() == Some(AuthMode::Auth0) {
            let domain = if self.auth0_domain.contains("://") {
                self.auth0_domain.clone()
            } else {
                format!("https://{}", self.auth0_domain)
            };
            check_url("auth0_domain", &domain)?;
        }
        auth.to_auth().map_err(|e| match auth.effective_mode() {
            Ok(mode) => {
                anyhow::anyhow!("{e} (required for auth_mode {mode}, grant_type {:?})", self.grant_type)
            }
            Err(_) => e,
        })?;
        if let Some(limit) = &self.memory_limit {
            crate::memory::parse_size(limit)
                .map_err(|e| anyhow::anyhow!("setting `memory_limit` (DRAGONFLY_MEMORY_LIMIT): {e}"))?;
        }
        if let Some(addr) = &self.metrics_addr {
            addr.parse::<std::net::SocketAddr>().map_err(|e| {
                anyhow::anyhow!(
                    "setting `metrics_addr` (DRAGONFLY_METRICS_ADDR) `{addr}` is not host:port: {e}"
                )
            })?;
        }
        if let Some(path) = &self.ca_cert
            && !path.is_file()
        {
            bail!("setting `ca_cert` (DRAGONFLY_CA_CERT): `{}` is not a readable file", path.display());
        }
        Ok(())
    }

    fn auth_settings(&self) -> AuthSettings<'_> {
        AuthSettings {
            mode: self.auth_mode,
            grant: self.grant_type,
            auth0_domain: &self.auth0_domain,
            audience: &self.audience,
            client_id: self.client_id.as_deref(),
            client_secret: self.client_secret.as_ref(),
            username: self.username.as_deref(),
            password: self.password.as_ref(),
            token: self.token.as_ref(),
        }
    }

    /// The API client settings (call after [`Config::validate`]).
    pub fn client_config(&self) -> Result<ClientConfig> {
        let settings = self.auth_settings();
        let mut config = ClientConfig::new(self.base_url.clone(), settings.to_auth()?);
        config.auth_hint = settings.hint();
        config.connect_timeout = Duration::from_secs(self.http_timeout);
        config.read_timeout = Duration::from_secs(self.http_timeout);
        // No call or download may outlast the lease it serves: a result
        // after it is refused, and a stalled call holds up others.
        let lease = Duration::from_secs(self.lease_timeout);
        config.request_timeout = Some((lease / 4).max(Duration::from_secs(5)));
        config.download_timeout = Some((lease * 3 / 4).max(Duration::from_secs(5)));
        config.ca_cert = self.ca_cert.clone();
        config.allow_private_downloads = self.allow_private_downloads;
        Ok(config)
    }

    /// The orchestrator settings.
    pub fn node_settings(&self) -> NodeSettings {
        let secs = Duration::from_secs;
        NodeSettings {
            threads: self.threads,
            bulk_size: self.bulk_size,
            load_duration: secs(self.load_duration),
            lease_timeout: secs(self.lease_timeout),
            max_scan_size: self.max_scan_size,
            limits: Limits {
                max_total_bytes: self.max_uncompressed_size,
                max_file_bytes: self.max_file_size,
                max_entries: self.max_entries,
                max_ratio: self.max_expansion_ratio,
                max_header_bytes: self.max_header_size,
            },
            scan_timeout: secs(self.scan_timeout),
            grace_period: secs(self.grace_period),
            summary_interval: secs(self.summary_interval),
            rules_cache_dir: self.rules_cache_dir.clone(),
            scan_reuse: self.scan_reuse,
            cache_size: self.cache_size,
            cache_dir: self.cache_dir.clone(),
            scan_cache: self.scan_cache,
            scan_cache_rate: self.scan_cache_rate,
            memory_limit: self.effective_memory_limit().map(|(bytes, _)| bytes),
            ..NodeSettings::default()
        }
    }

    /// The memory limit in force and where it came from (call after
    /// [`Config::validate`]).
    pub fn effective_memory_limit(&self) -> Option<(u64, crate::memory::Source)> {
        // Validated already: a bad setting stopped the node at start.
        crate::memory::effective(self.memory_limit.as_deref()).ok().flatten()
    }

    /// The effective configuration as TOML; secrets, and the userinfo of
    /// URLs, show as `***`.
    pub fn to_masked_toml(&self) -> Result<String> {
        Ok(crate::logging::redact(&toml::to_string(self)?))
    }
}

/// A setting given as text or as a number (`memory_limit = 536870912`).
fn text_or_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TextOrNumber {
        Text(String),
        Number(u64),
    }
    Ok(Option::<TextOrNumber>::deserialize(deserializer)?.map(|value| match value {
        TextOrNumber::Text(text) => text,
        TextOrNumber::Number(number) => number.to_string(),
    }))
}

fn check_url(key: &str, url: &str) -> Result<()> {
    dragonfly_api::check_http_url(url)
        .map_err(|err| anyhow::anyhow!("setting `{key}` (DRAGONFLY_{}): {err}", key.to_uppercase()))
}

#[cfg(test)]
// figment's `Jail` closures return its large error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load_in_jail(jail: &Jail) -> Result<Config> {
        Config::load(&jail.directory().join("Config.toml"))
    }

    #[test]
    fn defaults_match_the_protocol() {
        let c = Config::default();
        assert_eq!(c.auth_mode, AuthMode::Auto);
        assert_eq!(c.base_url, "https://dragonfly.vipyrsec.com");
        assert_eq!(c.auth0_domain, "vipyrsec.us.auth0.com");
        assert_eq!(c.audience, "https://dragonfly.vipyrsec.com");
        assert_eq!(
            (c.load_duration, c.bulk_size, c.max_scan_size, c.wait_duration),
            (60, 20, 128_000_000, 10)
        );
        assert!(c.threads >= 1);
    }

    #[test]
    fn environment_wins_over_file_which_wins_over_defaults() {
        Jail::expect_with(|jail| {
            jail.create_file("Config.toml", "auth_mode = \"none\"\nbulk_size = 5\nthreads = 3\n")?;
            jail.set_env("DRAGONFLY_BULK_SIZE", "7");
            let c = load_in_jail(jail).map_err(|e| e.to_string())?;
            assert_eq!((c.bulk_size, c.threads, c.load_duration), (7, 3, 60));
            assert_eq!(c.auth_mode, AuthMode::None);
            Ok(())
        });
    }

    #[test]
    fn invalid_values_name_the_setting() {
        let cases: &[(&str, &str, &str)] = &[
            ("DRAGONFLY_THREADS", "0", "`threads` (DRAGONFLY_THREADS) must be at least 1"),
            ("DRAGONFLY_BASE_URL", "not a url", "`base_url` (DRAGONFLY_BASE_URL)"),
            ("DRAGONFLY_BULK_SIZE", "many", "`bulk_size` (DRAGONFLY_BULK_SIZE)"),
            ("DRAGONFLY_AUTH_MODE", "kerberos", "`auth_mode` (DRAGONFLY_AUTH_MODE)"),
        ];
        for (key, value, expected) in cases {
            Jail::expect_with(|jail| {
                jail.set_env("DRAGONFLY_AUTH_MODE", "none");
                jail.set_env(key, value);
                let err = load_in_jail(jail).unwrap_err().to_string();
                assert!(err.contains(expected), "{key}={value}: {err}");
                Ok(())
            });
        }
    }

    #[test]
    fn a_malformed_secret_is_named_never_quoted() {
        Jail::expect_with(|jail| {
            jail.create_file("Config.toml", "client_secret = [\"s3cr3t-value\"]\n")?;
            let err = load_in_jail(jail).unwrap_err().to_string();
            assert!(err.contains("setting `client_secret` (DRAGONFLY_CLIENT_SECRET) is not valid"), "{err}");
            assert!(!err.contains("s3cr3t"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn password_grant_needs_a_password() {
        Jail::expect_with(|jail| {
            jail.set_env("DRAGONFLY_CLIENT_ID", "id");
            jail.set_env("DRAGONFLY_CLIENT_SECRET", "s");
            jail.set_env("DRAGONFLY_USERNAME", "node");
            let err = load_in_jail(jail).unwrap_err().to_string();
            assert!(err.contains("DRAGONFLY_PASSWORD is not set"), "{err}");
            jail.set_env("DRAGONFLY_GRANT_TYPE", "client_credentials");
            load_in_jail(jail).map_err(|e| e.to_string())?;
            Ok(())
        });
    }

    #[test]
    fn a_service_token_alone_selects_cloudflare_access_also_by_alias() {
        Jail::expect_with(|jail| {
            jail.set_env("DRAGONFLY_CF_ACCESS_CLIENT_ID", "id.access");
            jail.set_env("DRAGONFLY_CF_ACCESS_CLIENT_SECRET", "0123");
            let c = load_in_jail(jail).map_err(|e| e.to_string())?;
            assert_eq!(c.client_id.as_deref(), Some("id.access"));
            assert_eq!(c.client_secret.as_ref().map(Secret::expose), Some("0123"));
            let client = c.client_config().map_err(|e| e.to_string())?;
            assert!(matches!(client.auth, dragonfly_api::Auth::Cloudflare { .. }), "{:?}", client.auth);
            assert!(client.auth_hint.unwrap_or_default().contains("DRAGONFLY_CLIENT_SECRET"));
            // The setting's own name wins over the alias.
            jail.set_env("DRAGONFLY_CLIENT_ID", "id.own");
            let c = load_in_jail(jail).map_err(|e| e.to_string())?;
            assert_eq!(c.client_id.as_deref(), Some("id.own"));
            Ok(())
        });
    }

    #[test]
    fn the_memory_limit_may_be_a_number_or_text() {
        Jail::expect_with(|jail| {
            jail.create_file("Config.toml", "auth_mode = \"none\"\nmemory_limit = 536870912\n")?;
            let c = load_in_jail(jail).map_err(|e| e.to_string())?;
            assert_eq!(c.memory_limit.as_deref(), Some("536870912"));
            jail.set_env("DRAGONFLY_MEMORY_LIMIT", "512Mi");
            let c = load_in_jail(jail).map_err(|e| e.to_string())?;
            assert_eq!(c.effective_memory_limit().map(|(bytes, _)| bytes), Some(512 << 20));
            Ok(())
        });
    }

    #[test]
    fn no_credentials_name_both_ways_to_configure_them() {
        Jail::expect_with(|jail| {
            let err = load_in_jail(jail).unwrap_err().to_string();
            assert!(err.contains("DRAGONFLY_CLIENT_SECRET") && err.contains("DRAGONFLY_USERNAME"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn text_settings_are_read_verbatim() {
        Jail::expect_with(|jail| {
            jail.set_env("DRAGONFLY_AUTH_MODE", "token");
            jail.set_env("DRAGONFLY_TOKEN", "0012345");
            jail.set_env("DRAGONFLY_PASSWORD", "true");
            jail.set_env("DRAGONFLY_THREADS", "3");
            let c = load_in_jail(jail).map_err(|e| e.to_string())?;
            assert_eq!(c.token.as_ref().map(Secret::expose), Some("0012345"));
            assert_eq!(c.password.as_ref().map(Secret::expose), Some("true"));
            assert_eq!(c.threads, 3);
            Ok(())
        });
    }

    #[test]
    fn masked_output_hides_secrets() {
        let config = Config {
            client_secret: Some("cs-very-secret".into()),
            password: Some("pw-very-secret".into()),
            token: Some("tok-very-secret".into()),
            ..Config::default()
        };
        let text = config.to_masked_toml().unwrap();
        for secret in ["cs-very-secret", "pw-very-secret", "tok-very-secret"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("client_secret = \"***\""), "{text}");
        assert!(text.contains("bulk_size = 20"), "{text}");
    }
}
