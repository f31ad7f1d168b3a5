//! Shared helpers for eb's end-to-end tests.
