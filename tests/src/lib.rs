//! Shared helpers for eb's end-to-end tests: mock ELs, eb on loopback, request builders,
//! paths to fixtures and proptest strategies.

pub mod arb;
pub mod devnet;
pub mod engine;
pub mod fuzzing;
pub mod mock_el;
pub mod proxy;

use std::path::PathBuf;

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
