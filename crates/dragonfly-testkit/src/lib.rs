//! Test kit for the Dragonfly node: a stateful fake control server on
//! loopback ([`server`]), generated package fixtures ([`fixtures`]) and an
//! HTTPS file server with a CA of its own ([`tls`]).
//!
//! Nothing here is meant for production; it exists so that tests, the demo
//! and benchmarks can run the real node without credentials or a network.

pub mod fixtures;
mod rng;
pub mod server;
pub mod tls;

pub use fixtures::Distribution;
