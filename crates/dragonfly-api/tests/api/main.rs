//! Integration tests against mockito servers on 127.0.0.1.

mod auth;
mod common;
mod downloads;
mod endpoints;
mod pypi;
mod secrets;
