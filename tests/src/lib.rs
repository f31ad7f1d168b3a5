//! Shared helpers for eb's end-to-end tests: mock ELs, eb on loopback, request builders,
//! paths to fixtures and proptest strategies.

pub mod arb;
pub mod chain;
pub mod devnet;
pub mod engine;
pub mod etcd;
pub mod fuzzing;
pub mod mock_el;
pub mod proxy;
pub mod sim;
pub mod tls;

use std::path::PathBuf;

/// An HTTP client for talking to eb and the mocks. eb's HTTP stack is built with rustls and no
/// default crypto provider, so one is installed first (once per process).
pub fn client() -> reqwest::Client {
    client_builder().build().expect("an HTTP client")
}

/// [`client`]'s builder, for clients with options of their own.
pub fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// `tests/fixtures/<rest>`.
pub fn fixture(rest: &str) -> PathBuf {
    workspace().join("tests/fixtures").join(rest)
}
