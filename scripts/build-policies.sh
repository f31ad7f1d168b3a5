#!/usr/bin/env bash
# Builds the Rust policies for wasm32-unknown-unknown into target/wasm32-unknown-unknown/policy/.
# With --update, also refreshes the committed policies/default.wasm that eb embeds.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
cargo build --quiet --target wasm32-unknown-unknown --profile policy \
  -p eb-policy-default -p eb-policy-unanimous -p eb-policy-client-diverse
out=target/wasm32-unknown-unknown/policy
if [ "${1:-}" = "--update" ]; then
  cp "$out/eb_policy_default.wasm" policies/default.wasm
  echo "policies/default.wasm updated ($(wc -c < policies/default.wasm) bytes)"
fi
