#!/usr/bin/env bash
# The real-client devnet: Lodestar 1.5.1 (CL) → eb (release build, default policy) → three
# EthereumJS 0.10.5 ELs on loopback, and the scenarios of tests/src/devnet/scenarios.rs.
# Installs the clients from npm into a cache folder (pinned by the committed lock files; reused
# while the lock files are unchanged), builds eb, runs eb-devnet. Extra arguments go to eb-devnet
# (`--hold` keeps the devnet up to try eb by hand; `--work DIR` keeps its data and logs there).
# Usage: scripts/devnet.sh [eb-devnet args…]
set -euo pipefail
cd "$(dirname "$0")/.."
clients="${EB_DEVNET_CLIENTS:-${XDG_CACHE_HOME:-$HOME/.cache}/eb-devnet}"

install() {
  local name="$1" dir="$clients/$1" sum
  sum="$(sha256sum "tests/devnet/$name/package-lock.json" | cut -d' ' -f1)"
  if [ -d "$dir/node_modules" ] && [ "$(cat "$dir/.lock-sha256" 2>/dev/null)" = "$sum" ]; then
    return
  fi
  rm -rf "$dir" && mkdir -p "$dir"
  cp "tests/devnet/$name/package.json" "tests/devnet/$name/package-lock.json" "$dir/"
  # Install scripts build native modules (Lodestar needs snappy's) with node-gyp, against the
  # machine's Node.js headers: nothing is downloaded but the packages.
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$sum" > "$dir/.lock-sha256"
}

if [ -z "${npm_config_nodedir:-}" ] && [ -f /usr/include/node/node.h ]; then
  export npm_config_nodedir=/usr
fi
start=$(date +%s)
install lodestar > "${TMPDIR:-/tmp}/eb-devnet-npm-lodestar.log" 2>&1 &
lodestar=$!
install ethereumjs > "${TMPDIR:-/tmp}/eb-devnet-npm-ethereumjs.log" 2>&1 &
ethereumjs=$!
cargo build --quiet --release --locked -p eb -p eb-tests --bin eb --bin eb-devnet
for job in "$lodestar:lodestar" "$ethereumjs:ethereumjs"; do
  if ! wait "${job%%:*}"; then
    echo "devnet: npm install of ${job#*:} failed:" >&2
    cat "${TMPDIR:-/tmp}/eb-devnet-npm-${job#*:}.log" >&2
    exit 1
  fi
done
echo "devnet: clients and eb ready in $(( $(date +%s) - start )) s" >&2
exec target/release/eb-devnet --clients "$clients" --eb target/release/eb "$@"
