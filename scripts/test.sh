#!/usr/bin/env bash
# The whole test suite: unit, property, policy (native and wasm32) and end-to-end tests, then the
# real-client devnet (Lodestar → eb → three EthereumJS ELs, scripts/devnet.sh).
# It installs what the tests need: the wasm32 target (to rebuild the policies), promtool
# (Debian's `prometheus` package, to check eb's metrics exposition) and, through devnet.sh, the
# clients from npm (Node.js and npm are on the machine).
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
scripts/devnet.sh
