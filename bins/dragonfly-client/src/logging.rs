//! Logging set-up: `env_logger`, filtered by `RUST_LOG`, as text or one
//! JSON object per line.

use std::io::Write;

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
    match format {
        LogFormat::Text => {
            builder.format_timestamp_millis();
        }
        LogFormat::Json => {
            builder.format(|buf, record| {
                let line = json_line(
                    &buf.timestamp_millis().to_string(),
                    record.level().as_str(),
                    record.target(),
                    &record.args().to_string(),
                );
                writeln!(buf, "{line}")
            });
        }
    }
    let _ = builder.try_init();
}

/// One JSON log object. A message starting with `name==version: ` (how the
/// node prefixes a job's lines) also gets `package` and `version` fields.
pub fn json_line(timestamp: &str, level: &str, target: &str, message: &str) -> String {
    let mut object = serde_json::json!({
        "timestamp": timestamp,
        "level": level,
        "target": target,
        "message": message,
    });
    if let Some((spec, _)) = message.split_once(": ")
        && let Some((name, version)) = spec.split_once("==")
        && !name.contains(' ')
        && !version.contains(' ')
    {
        object["package"] = name.into();
        object["version"] = version.into();
    }
    object.to_string()
}

#[cfg(test)]
mod tests {
    use super::json_line;

    #[test]
    fn json_lines_parse_and_carry_the_job() {
        let line =
            json_line("2026-01-01T00:00:00.000Z", "INFO", "node", "requests==2.32.3: score 0 rules []");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["package"], "requests");
        assert_eq!(value["version"], "2.32.3");
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["message"], "requests==2.32.3: score 0 rules []");
        let plain: serde_json::Value =
            serde_json::from_str(&json_line("t", "WARN", "x", "a \"quoted\" line\n")).unwrap();
        assert!(plain.get("package").is_none());
        assert_eq!(plain["message"], "a \"quoted\" line\n");
    }
}
