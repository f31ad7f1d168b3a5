#!/usr/bin/env bash
# The real-client devnet: Lodestar 1.5.1 (CL) → eb (release build, default policy) → three
# EthereumJS 0.10.5 ELs on loopback, and the scenarios of tests/src/devnet/scenarios.rs.
# Installs the clients from npm into a cache folder (pinned by the committed lock files; reused
# while the lock files are unchanged), builds eb, runs eb-devnet. Extra arguments go to eb-devnet
# (`--hold` keeps the devnet up to try eb by hand; `--work DIR` keeps its data and logs there).
# With --fork prague|osaka|amsterdam it runs three geth ELs behind eb instead, driven by a
# scripted consensus client at that fork (tests/src/chain/, eb-chain; `--hold` keeps the chain
# up, a slot every 2 s); geth is built from the Go module proxy (`go install`, pinned, cached by
# version: v1.17.10, and v1.16.9 at Prague, whose blob transactions geth 1.17 no longer builds),
# the transaction signer tests/devnet/txgen with `go build` (cached by its sources' hash).
# With --cl prysm (Osaka) a real CL drives them instead: Prysm v7.1.2's beacon node and validator
# at Fulu, built from the Go module proxy through tests/devnet/prysm (cached by version).
# With --cl prysm --upgrade (Osaka) it runs the rolling upgrade instead: two geths behind eb
# start on v1.16.9 and are restarted one by one on v1.17.10, in four setups
# (tests/src/chain/upgrade.rs).
# --fork capella is the default above; with --diverse its EL 2 is geth v1.17.10 and eb runs
# policies/client-diverse (VALID only when EthereumJS and geth agree); with --replicas (an
# eb-devnet argument) two eb replicas sharing a 3-member etcd (Debian's etcd-server) are
# Lodestar's --execution.urls, and the one it uses is SIGKILLed right after it answered a build;
# with --replicas --two-cls a second beacon node (no validators, peered with the first) is
# served by replica b alone (tests/src/devnet/replicas.rs).
# Usage: scripts/devnet.sh [--fork F [--cl driver|prysm [--upgrade]]] [--diverse] [eb-devnet or eb-chain args…]
set -euo pipefail
cd "$(dirname "$0")/.."
clients="${EB_DEVNET_CLIENTS:-${XDG_CACHE_HOME:-$HOME/.cache}/eb-devnet}"
fork=capella
if [ "${1:-}" = "--fork" ]; then
  fork="${2:?--fork needs prague, osaka, amsterdam or capella}"
  shift 2
fi
cl=driver
if [ "${1:-}" = "--cl" ]; then
  cl="${2:?--cl needs driver or prysm}"
  shift 2
fi
upgrade=
if [ "${1:-}" = "--upgrade" ]; then
  [ "$cl" = prysm ] || { echo "devnet: --upgrade runs with --cl prysm" >&2; exit 2; }
  upgrade=1
  shift
fi
diverse=
if [ "${1:-}" = "--diverse" ]; then
  diverse=1
  shift
fi
prysm_version=v7.1.2
prysm="$clients/prysm-$prysm_version"
geth_version=v1.17.10
# The rolling upgrade's starting geth.
old_geth_version=v1.16.9
sidecar_version=1
if [ "$fork" = prague ]; then
  # geth 1.17 keeps only cell-proof sidecars, which no Prague block can carry.
  geth_version=v1.16.9
  sidecar_version=0
fi

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
# geth from the Go module proxy, into a folder named after its version ($1, default
# $geth_version).
install_geth() {
  local version="${1:-$geth_version}"
  local dir="$clients/geth-$version"
  command -v go >/dev/null || { echo "devnet: no go on PATH (the devnets build geth with it)"; return 1; }
  if [ ! -x "$dir/geth" ]; then
    mkdir -p "$dir"
    GOBIN="$dir" go install "github.com/ethereum/go-ethereum/cmd/geth@$version"
  fi
}
install_old_geth() { install_geth "$old_geth_version"; }
# The transaction signer every devnet uses, into a folder named after its sources.
install_txgen() {
  command -v go >/dev/null || { echo "devnet: no go on PATH (the devnets build txgen with it)"; return 1; }
  [ -x "$txgen" ] && return
  mkdir -p "$(dirname "$txgen")"
  (cd tests/devnet/txgen && go build -o "$txgen" .)
}
# txgen after geth: its go.mod pins go-ethereum, whose modules geth's install fetches.
install_geth_and_txgen() { install_geth && install_txgen; }
# Runs install_NAME in the background, its output in a log file; `await_installs` waits for all.
jobs_=""
background() {
  "install_$1" > "${TMPDIR:-/tmp}/eb-devnet-$1.log" 2>&1 &
  jobs_="$jobs_ $!:$1"
}
await_installs() {
  for job in $jobs_; do
    if ! wait "${job%%:*}"; then
      echo "devnet: install of ${job#*:} failed:" >&2
      cat "${TMPDIR:-/tmp}/eb-devnet-${job#*:}.log" >&2
      exit 1
    fi
  done
}
# Prysm's commands, from the wrapper module (Prysm's go.mod has replace directives, which
# `go install pkg@version` refuses); blst is built portable.
install_prysm() {
  [ -x "$prysm/validator" ] && return
  mkdir -p "$prysm.tmp"
  (cd tests/devnet/prysm && CGO_CFLAGS="-O2 -D__BLST_PORTABLE__" go build -trimpath \
    -ldflags "-X github.com/OffchainLabs/prysm/v7/runtime/version.gitTag=$prysm_version" \
    -o "$prysm.tmp/" github.com/OffchainLabs/prysm/v7/cmd/beacon-chain \
    github.com/OffchainLabs/prysm/v7/cmd/validator github.com/OffchainLabs/prysm/v7/cmd/prysmctl)
  rm -rf "$prysm" && mv "$prysm.tmp" "$prysm"
}
txgen="$clients/txgen-$(cat tests/devnet/txgen/go.mod tests/devnet/txgen/go.sum tests/devnet/txgen/main.go | sha256sum | cut -c1-16)/txgen"

start=$(date +%s)
case "$fork" in
  prague|osaka|amsterdam)
    background geth_and_txgen
    cl_args=()
    geth="$clients/geth-$geth_version/geth"
    if [ "$cl" = prysm ]; then
      [ "$fork" = osaka ] || { echo "devnet: --cl prysm runs at osaka (Fulu)" >&2; exit 2; }
      background prysm
      cl_args=(--prysm "$prysm")
    fi
    if [ -n "$upgrade" ]; then
      background old_geth
      cl_args+=(--upgrade-to "$geth")
      geth="$clients/geth-$old_geth_version/geth"
    fi
    cargo build --quiet --release --locked -p eb -p eb-tests --bin eb --bin eb-chain
    await_installs
    echo "devnet: geth $geth_version, txgen, $cl and eb ready in $(( $(date +%s) - start )) s" >&2
    exec target/release/eb-chain --geth "$geth" --txgen "$txgen" \
      --eb target/release/eb --fork "$fork" --sidecar-version "$sidecar_version" "${cl_args[@]}" "$@"
    ;;
  capella) ;;
  *) echo "devnet: unknown fork $fork (prague, osaka, amsterdam or capella)" >&2; exit 2 ;;
esac
install_ethereumjs() { install ethereumjs; }
install_lodestar() { install lodestar; }
background ethereumjs
background lodestar
diverse_args=()
if [ -n "$diverse" ]; then
  background geth_and_txgen
  scripts/build-policies.sh
  diverse_args=(--geth "$clients/geth-$geth_version/geth"
    --policy target/wasm32-unknown-unknown/policy/eb_policy_client_diverse.wasm)
else
  background txgen
fi
cargo build --quiet --release --locked -p eb -p eb-tests --bin eb --bin eb-devnet
await_installs
echo "devnet: clients and eb ready in $(( $(date +%s) - start )) s" >&2
exec target/release/eb-devnet --clients "$clients" --txgen "$txgen" --eb target/release/eb \
  "${diverse_args[@]}" "$@"
