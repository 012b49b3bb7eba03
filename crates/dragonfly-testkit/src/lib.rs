//! Test kit for the Dragonfly node: a stateful fake control server on
//! loopback ([`server`]) and generated package fixtures ([`fixtures`]).
//!
//! Nothing here is meant for production; it exists so that tests, the demo
//! and benchmarks can run the real node without credentials or a network.

pub mod fixtures;
mod rng;
pub mod server;

pub use fixtures::Distribution;
