//! `cargo xtask bench`.

use anyhow::{Result, bail};

pub fn run(_args: &[String]) -> Result<()> {
    bail!("the benchmark is not available in this build")
}
