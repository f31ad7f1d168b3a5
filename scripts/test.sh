#!/usr/bin/env bash
# The whole test suite: unit, property, policy (native and wasm32) and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-unknown-unknown
cargo test --workspace --locked
