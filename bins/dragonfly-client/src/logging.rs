//! Logging set-up: `env_logger`, filtered by `RUST_LOG`, as text or one
//! JSON object per line. A record's key-values (`package`, `version`, ...)
//! become `name==version: ` before a text line and fields of a JSON line.
//!
//! Every record, whatever its target, is cleaned before it is written:
//! known secrets, bearer tokens, Cloudflare cookies and URL userinfo become
//! `***`, and in text lines control characters are escaped (so that a
//! package version holding a newline cannot forge a line) and overlong
//! messages are cut.

use std::io::Write;
use std::sync::RwLock;

use log::kv::{Key, Value, VisitSource};

use crate::config::LogFormat;

/// Initialises the global text logger once; later calls do nothing.
pub fn init(default_filter: &str) {
    init_with_format(default_filter, LogFormat::Text);
}

/// Initialises the global logger with `format`; later calls do nothing.
pub fn init_with_format(default_filter: &str, format: LogFormat) {
    let env = env_logger::Env::default().default_filter_or(default_filter);
    let mut builder = env_logger::Builder::from_env(env);
    // At trace level ureq dumps raw HTTP traffic, credentials included.
    if std::env::var("RUST_LOG").is_ok_and(|filter| filter.to_ascii_lowercase().contains("trace")) {
        builder.filter_module("ureq_proto", log::LevelFilter::Debug);
        builder.filter_module("ureq", log::LevelFilter::Debug);
    }
    builder.format(move |buf, record| {
        let mut fields = Fields::of(record);
        for (_, value) in &mut fields.0 {
            *value = redact(value);
        }
        let message = redact(&record.args().to_string());
        let timestamp = buf.timestamp_millis().to_string();
        let line = match format {
            LogFormat::Text => {
                text_line(&timestamp, record.level().as_str(), record.target(), &fields, &message)
            }
            LogFormat::Json => {
                json_line(&timestamp, record.level().as_str(), record.target(), &fields, cut(&message))
            }
        };
        writeln!(buf, "{line}")
    });
    let _ = builder.try_init();
}

/// Secrets of the configuration, never to be logged.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Longest message of a text line, in bytes; the rest is cut.
const MAX_MESSAGE_BYTES: usize = 8 << 10;

/// Adds secrets that every later record is cleaned of.
pub fn hide_secrets<'a>(secrets: impl IntoIterator<Item = &'a str>) {
    let mut known = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    // Very short values would blank out ordinary words.
    known.extend(secrets.into_iter().filter(|s| s.len() >= 4).map(str::to_owned));
    known.sort_by_key(|s| std::cmp::Reverse(s.len()));
    known.dedup();
}

/// `text` with known secrets, bearer tokens, Cloudflare cookies and URL
/// userinfo replaced by `***`.
pub fn redact(text: &str) -> String {
    let mut out = text.to_owned();
    for secret in SECRETS.read().unwrap_or_else(|e| e.into_inner()).iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    const MARKERS: [&str; 9] = [
        "Bearer ",
        "bearer ",
        "CF_Authorization=",
        "access_token\":\"",
        "access_token\": \"",
        "refresh_token\":\"",
        "refresh_token\": \"",
        "id_token\":\"",
        "id_token\": \"",
    ];
    for marker in MARKERS {
        out = mask_after(&out, marker, |c| c.is_ascii_alphanumeric() || "-._~+/=".contains(c));
    }
    mask_userinfo(&out)
}

/// Replaces the run of `keep` characters after each `marker` with `***`.
fn mask_after(text: &str, marker: &str, keep: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        let after = at + marker.len();
        out.push_str(&rest[..after]);
        let tail = &rest[after..];
        let end = tail.find(|c: char| !keep(c)).unwrap_or(tail.len());
        if end > 0 {
            out.push_str("***");
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// `scheme://user:pass@host` to `scheme://***@host`.
fn mask_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let after = at + 3;
        out.push_str(&rest[..after]);
        let tail = &rest[after..];
        let authority_end =
            tail.find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace()).unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(user_end) => {
                out.push_str("***");
                rest = &tail[user_end..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// `text` cut to at most [`MAX_MESSAGE_BYTES`], at a character boundary.
fn cut(text: &str) -> &str {
    if text.len() <= MAX_MESSAGE_BYTES {
        return text;
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` with control characters and the invisible characters of
/// [`is_invisible`] escaped, cut after `max` bytes.
pub(crate) fn printable(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 16);
    for (i, c) in text.char_indices() {
        if i >= max {
            out.push_str(&format!("... ({} bytes more)", text.len() - i));
            break;
        }
        if c.is_control() || is_invisible(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters that reorder or hide text on a terminal: bidirectional
/// marks, embeddings, overrides and isolates, zero-width characters, line
/// and paragraph separators, the byte-order mark.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// A record's key-values, in order.
#[derive(Debug, Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    fn of(record: &log::Record<'_>) -> Fields {
        let mut fields = Fields::default();
        // Visiting a record's own key-values does not fail.
        let _ = record.key_values().visit(&mut fields);
        fields
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

impl<'kvs> VisitSource<'kvs> for Fields {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        self.0.push((key.as_str().to_owned(), value.to_string()));
        Ok(())
    }
}

/// `[timestamp LEVEL target] name==version: message`, with other fields
/// after the message as `key=value`.
pub fn text_line(timestamp: &str, level: &str, target: &str, fields: &Fields, message: &str) -> String {
    let mut line = format!("[{timestamp} {level:<5} {target}] ");
    if let (Some(package), Some(version)) = (fields.get("package"), fields.get("version")) {
        line.push_str(&format!("{}=={}: ", printable(package, 256), printable(version, 256)));
    }
    line.push_str(&printable(message, MAX_MESSAGE_BYTES));
    for (key, value) in fields.0.iter().filter(|(k, _)| k != "package" && k != "version") {
        line.push_str(&format!(" {key}={}", printable(value, 1024)));
    }
    line
}

/// One JSON log object: timestamp, level, target, message and every field.
pub fn json_line(timestamp: &str, level: &str, target: &str, fields: &Fields, message: &str) -> String {
    let mut object = serde_json::json!({
        "timestamp": timestamp,
        "level": level,
        "target": target,
        "message": message,
    });
    for (key, value) in &fields.0 {
        object[key.as_str()] = value.as_str().into();
    }
    object.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_what_can_act_on_a_terminal() {
        let text = "a\x1b[2Jb\u{202e}c\u{200b}d\u{2028}e\u{feff}f\u{61c}g h\u{e9}";
        assert_eq!(
            printable(text, 1000),
            "a\\u{1b}[2Jb\\u{202e}c\\u{200b}d\\u{2028}e\\u{feff}f\\u{61c}g h\u{e9}"
        );
        assert_eq!(printable("abcdef", 3), "abc... (3 bytes more)");
    }

    fn job_fields() -> Fields {
        Fields(vec![("package".into(), "requests".into()), ("version".into(), "2.32.3".into())])
    }

    #[test]
    fn json_lines_parse_and_carry_the_job() {
        let line = json_line("2026-01-01T00:00:00.000Z", "INFO", "node", &job_fields(), "score 0 rules []");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["package"], "requests");
        assert_eq!(value["version"], "2.32.3");
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["message"], "score 0 rules []");
        let plain: serde_json::Value =
            serde_json::from_str(&json_line("t", "WARN", "x", &Fields::default(), "a \"quoted\" line\n"))
                .unwrap();
        assert!(plain.get("package").is_none());
        assert_eq!(plain["message"], "a \"quoted\" line\n");
    }

    #[test]
    fn text_lines_start_with_the_job() {
        let line = text_line("t", "INFO", "node", &job_fields(), "score 5");
        assert_eq!(line, "[t INFO  node] requests==2.32.3: score 5");
        let other = Fields(vec![("attempt".into(), "2".into())]);
        assert_eq!(text_line("t", "WARN", "x", &other, "hi"), "[t WARN  x] hi attempt=2");
    }

    #[test]
    fn text_lines_can_not_be_forged_or_grow_without_bound() {
        let forged = Fields(vec![
            ("package".into(), "evil".into()),
            ("version".into(), "1\n[t INFO  node] ok".into()),
        ]);
        let line = text_line("t", "INFO", "node", &forged, "done\r\n");
        assert_eq!(line, "[t INFO  node] evil==1\\n[t INFO  node] ok: done\\r\\n");
        assert!(!line.contains('\n'));
        let long = "a".repeat(1 << 20);
        let line = text_line("t", "INFO", "node", &Fields::default(), &long);
        assert!(line.len() < MAX_MESSAGE_BYTES + 100, "{}", line.len());
        assert!(line.ends_with(&format!("... ({} bytes more)", (1 << 20) - MAX_MESSAGE_BYTES)));
    }

    #[test]
    fn secrets_tokens_cookies_and_userinfo_are_redacted() {
        hide_secrets(["s3cret-value.access", "ab"]);
        assert_eq!(redact("cf-access-client-secret: s3cret-value.access"), "cf-access-client-secret: ***");
        assert_eq!(
            redact("authorization: Bearer eyJhbGci.eyJzdWIi.sig_-x\r\n"),
            "authorization: Bearer ***\r\n"
        );
        assert_eq!(
            redact("cookie: CF_Authorization=abc.def; other=1"),
            "cookie: CF_Authorization=***; other=1"
        );
        assert_eq!(redact(r#"{"access_token":"tok.en","x":1}"#), r#"{"access_token":"***","x":1}"#);
        assert_eq!(
            redact("GET https://user:pa55@files.example/p/a.whl and http://h/x"),
            "GET https://***@files.example/p/a.whl and http://h/x"
        );
        // Too short to be hidden safely.
        assert_eq!(redact("ab cd"), "ab cd");
    }
}
