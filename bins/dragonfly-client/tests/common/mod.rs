//! Helpers shared by the binary's test files.

use std::process::{Child, Command, Output, Stdio};

/// The binary with none of the caller's `DRAGONFLY_*` variables or
/// `RUST_LOG`, so that tests do not depend on the developer's environment.
pub fn clean_bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dragonfly-client"));
    for (key, _) in std::env::vars() {
        if key.starts_with("DRAGONFLY_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    command.stdin(Stdio::null());
    // The test kit's servers are on loopback.
    command.env("DRAGONFLY_ALLOW_PRIVATE_DOWNLOADS", "true");
    command
}

/// The bundled rules as a served rule set (file name -> source).
#[allow(dead_code)]
pub fn bundled_rules() -> std::collections::BTreeMap<String, String> {
    dragonfly_engine::RuleSet::bundled_sources().map(|(n, s)| (n.to_owned(), s.to_owned())).collect()
}

/// `run` against the control server at `url`, without authentication, in
/// the working directory `dir`.
#[allow(dead_code)]
pub fn node_against(url: &str, dir: &std::path::Path) -> Command {
    let mut command = clean_bin();
    command.arg("run").current_dir(dir).env("DRAGONFLY_BASE_URL", url).env("DRAGONFLY_AUTH_MODE", "none");
    command
}

/// A running binary, killed if a test fails half-way.
pub struct Running(Option<Child>);

impl Running {
    /// Takes charge of `child`.
    pub fn new(child: Child) -> Running {
        Running(Some(child))
    }

    /// SIGTERM, as Docker and Kubernetes stop a container; the exit code.
    #[allow(dead_code)]
    pub fn terminate(self) -> Option<i32> {
        self.terminate_with_output().status.code()
    }

    /// Sends SIGTERM without waiting.
    #[allow(dead_code)]
    pub fn signal_term(&self) {
        let child = self.0.as_ref().expect("still running");
        let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(sent.success());
    }

    /// SIGTERM, then everything the process wrote to its piped outputs.
    pub fn terminate_with_output(mut self) -> Output {
        let child = self.0.take().expect("still running");
        let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(killed.success());
        child.wait_with_output().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0
            && matches!(child.try_wait(), Ok(None))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
