#!/usr/bin/env bash
# The whole test suite: unit, property, policy (native and wasm32) and end-to-end tests, then the
# real-client devnet (Lodestar → eb → three EthereumJS ELs, scripts/devnet.sh; again with a geth
# and the client-diverse policy, --diverse; again with two eb replicas sharing an etcd as
# Lodestar's fallback URLs, one SIGKILLed, --replicas; with a second beacon node, --two-cls), geth behind eb at Prague, Osaka and Amsterdam
# (scripts/devnet.sh --fork F), Prysm → eb → geth at Osaka, and a rolling upgrade of two geths
# (v1.16.9 → v1.17.10) under Prysm, with and without behind=ignore, peered and not.
# It installs what the tests need: the wasm32 target (to rebuild the policies), promtool
# (Debian's `prometheus` package, to check eb's metrics exposition), mscgen (Debian's, to render
# the simulation's sequence charts), etcd (Debian's `etcd-server`: the cluster tests start a
# 3-member etcd on loopback) and, through devnet.sh, the
# clients from npm (Node.js and npm are on the machine), and geth and Prysm from the Go module
# proxy (Go is on the machine).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-unknown-unknown
if ! command -v promtool >/dev/null || ! command -v mscgen >/dev/null || ! command -v etcd >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus mscgen etcd-server >/dev/null
fi
cargo test --workspace --locked
scripts/devnet.sh
# Client diversity: EL 2 is geth, eb runs policies/client-diverse.
scripts/devnet.sh --diverse
# Two eb replicas sharing a 3-member etcd, as Lodestar's --execution.urls; the one it uses is
# SIGKILLed right after it answered a build.
scripts/devnet.sh --replicas
# And a second beacon node (no validators, peered) through replica b alone: one replica at a time
# moves the ELs' forkchoice.
scripts/devnet.sh --replicas --two-cls
# geth behind eb at the forks mainnet runs and the next one (eb-chain: a scripted CL), then at
# Osaka with a real current CL (Prysm).
for fork in prague osaka amsterdam; do
  scripts/devnet.sh --fork "$fork"
done
scripts/devnet.sh --fork osaka --cl prysm
scripts/devnet.sh --fork osaka --cl prysm --upgrade
