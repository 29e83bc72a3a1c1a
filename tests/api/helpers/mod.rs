//! The harness: the real service on `127.0.0.1:0` with a fresh database per test, typed request
//! helpers, and the envelope checks that every answer goes through.
//!
//! Every answer is checked on arrival ([`TestApp::send`]): it is JSON with `code`, `error.type`,
//! `data` and `request_id`, the `x-request-id` header equals the body's `request_id`, and the
//! HTTP status is the one §2 of the contract gives for the `code`. Tests then state what they
//! expect with [`assert_ok`] or [`assert_error`].
//!
//! By concern: [`database`] (a fresh database per test), [`app`] (the server under test and its
//! builder), [`envelope`] (the checks every answer goes through, and the assertions tests
//! state), [`caller`] (paths, listings and a logged-in app calling the API).

mod app;
mod caller;
mod database;
mod envelope;

pub use app::*;
pub use caller::*;
pub use database::*;
pub use envelope::*;

/// A builder of HTTP clients for the tests. The build's HTTP client takes its TLS
/// cryptography from the process-wide provider, installed here (once) as `contactsd serve`
/// does.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// An HTTP client for the tests (see [`http_client_builder`]).
pub fn http_client() -> reqwest::Client {
    http_client_builder()
        .build()
        .expect("an HTTP client with the default settings")
}

/// Name of the org (and so of its directory) every test app starts with.
pub const TEAM_NAME: &str = "Acme";
