//! Logging set-up: `env_logger`, filtered by `RUST_LOG`, as text or one
//! JSON object per line. A record's key-values (`package`, `version`, ...)
//! become `name==version: ` before a text line and fields of a JSON line.

use std::io::Write;

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
        let fields = Fields::of(record);
        let timestamp = buf.timestamp_millis().to_string();
        let line = match format {
            LogFormat::Text => {
                text_line(&timestamp, record.level().as_str(), record.target(), &fields, record.args())
            }
            LogFormat::Json => json_line(
                &timestamp,
                record.level().as_str(),
                record.target(),
                &fields,
                &record.args().to_string(),
            ),
        };
        writeln!(buf, "{line}")
    });
    let _ = builder.try_init();
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
pub fn text_line(
    timestamp: &str,
    level: &str,
    target: &str,
    fields: &Fields,
    message: &std::fmt::Arguments<'_>,
) -> String {
    let mut line = format!("[{timestamp} {level:<5} {target}] ");
    if let (Some(package), Some(version)) = (fields.get("package"), fields.get("version")) {
        line.push_str(&format!("{package}=={version}: "));
    }
    line.push_str(&message.to_string());
    for (key, value) in fields.0.iter().filter(|(k, _)| k != "package" && k != "version") {
        line.push_str(&format!(" {key}={value}"));
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
        let line = text_line("t", "INFO", "node", &job_fields(), &format_args!("score {}", 5));
        assert_eq!(line, "[t INFO  node] requests==2.32.3: score 5");
        let other = Fields(vec![("attempt".into(), "2".into())]);
        assert_eq!(text_line("t", "WARN", "x", &other, &format_args!("hi")), "[t WARN  x] hi attempt=2");
    }
}
