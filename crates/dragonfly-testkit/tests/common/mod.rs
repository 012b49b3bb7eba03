//! Helpers shared by the test kit's integration tests: a plain HTTP client.

use std::time::Duration;

use serde_json::Value;

/// A ureq agent that returns every status as a response.
pub fn agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build();
    ureq::Agent::new_with_config(config)
}

/// Sends `body` as JSON (the workspace's ureq has no `json` feature).
pub fn send_json(
    request: ureq::RequestBuilder<ureq::typestate::WithBody>,
    body: &Value,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    request.content_type("application/json").send(body.to_string())
}
