#!/usr/bin/env bash
# The whole test suite: unit, property, policy (native and wasm32) and end-to-end tests.
# It installs what the tests need: the wasm32 target (to rebuild the policies) and promtool
# (Debian's `prometheus` package, to check eb's metrics exposition).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-unknown-unknown
if ! command -v promtool >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
cargo test --workspace --locked
