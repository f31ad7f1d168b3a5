//! A real current consensus client in front of eb: Prysm's beacon node and validator (64
//! interop validators, 4-second slots) at Fulu, its genesis made by `prysmctl` from geth's
//! developer genesis, its Engine API endpoint eb.

use super::Chain;
use crate::devnet::observe::Beacon;
use crate::devnet::process::{free_ports, tail, Service};
use crate::devnet::until;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Seconds per slot.
pub const SLOT: Duration = Duration::from_secs(4);
/// Validators in the genesis state, all run by the one validator client.
const VALIDATORS: u32 = 64;
/// Seconds from genesis creation to the first slot (the ELs, eb and Prysm start meanwhile).
const GENESIS_DELAY: u32 = 25;

/// The chain config: every fork at epoch 0 (Fulu), the mainnet preset, 4-second slots.
const CONFIG: &str = "CONFIG_NAME: interop
PRESET_BASE: mainnet
GENESIS_FORK_VERSION: 0x20000089
ALTAIR_FORK_EPOCH: 0
ALTAIR_FORK_VERSION: 0x20000090
BELLATRIX_FORK_EPOCH: 0
BELLATRIX_FORK_VERSION: 0x20000091
TERMINAL_TOTAL_DIFFICULTY: 0
CAPELLA_FORK_EPOCH: 0
CAPELLA_FORK_VERSION: 0x20000092
DENEB_FORK_EPOCH: 0
DENEB_FORK_VERSION: 0x20000093
ELECTRA_FORK_EPOCH: 0
ELECTRA_FORK_VERSION: 0x20000094
FULU_FORK_EPOCH: 0
FULU_FORK_VERSION: 0x20000095
SECONDS_PER_SLOT: 4
SLOT_DURATION_MS: 4000
DEPOSIT_CONTRACT_ADDRESS: 0x00000000219ab540356cBB839Cbe05303d7705Fa
DEPOSIT_CHAIN_ID: 1337
DEPOSIT_NETWORK_ID: 1337
";

/// The geth genesis for a Prysm chain: `prysmctl testnet generate-genesis` writes the beacon
/// genesis state (`genesis.ssz`) and sets the fork times of `geth_genesis` to its genesis time.
pub fn genesis(prysm: &Path, work: &Path, geth_genesis: &Value) -> Result<Value, String> {
    std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
    let write = |name: &str, text: &str| {
        std::fs::write(work.join(name), text).map_err(|e| format!("{name}: {e}"))
    };
    write("config.yml", CONFIG)?;
    write("geth-genesis-in.json", &geth_genesis.to_string())?;
    let out = Command::new(prysm.join("prysmctl"))
        .current_dir(work)
        .args(["testnet", "generate-genesis", "--fork", "fulu"])
        .args(["--num-validators", &VALIDATORS.to_string()])
        .args(["--genesis-time-delay", &GENESIS_DELAY.to_string()])
        .args(["--chain-config-file", "config.yml"])
        .args(["--geth-genesis-json-in", "geth-genesis-in.json"])
        .args(["--geth-genesis-json-out", "geth-genesis.json"])
        .args(["--output-ssz", "genesis.ssz"])
        .output()
        .map_err(|e| format!("prysmctl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "prysmctl generate-genesis: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = std::fs::read_to_string(work.join("geth-genesis.json"))
        .map_err(|e| format!("geth-genesis.json: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("geth-genesis.json: {e}"))
}

/// Prysm's two processes and its beacon API.
pub struct Prysm {
    /// The beacon node's REST API.
    pub api: Beacon,
    beacon: Service,
    validator: Service,
}

impl Prysm {
    /// Starts the beacon node (its execution endpoint: eb, with the CL's secret) and the
    /// validator client, in `chain.work`; waits until the beacon API answers.
    pub async fn start(prysm: &Path, chain: &Chain) -> Result<Prysm, String> {
        let work = &chain.work;
        let [rpc, http, tcp, quic, beacon_metrics, validator_metrics]: [u16; 6] = free_ports()?;
        let path = |name: &str| work.join(name).display().to_string();
        let beacon_args: Vec<String> = vec![
            format!("--datadir={}", path("beacon")),
            format!("--genesis-state={}", path("genesis.ssz")),
            format!("--chain-config-file={}", path("config.yml")),
            format!("--execution-endpoint={}", chain.engine.url()),
            format!("--jwt-secret={}", path("cl.hex")),
            "--chain-id=1337".into(),
            "--min-sync-peers=0".into(),
            "--bootstrap-node=".into(),
            "--no-discovery".into(),
            "--interop-eth1data-votes".into(),
            "--contract-deployment-block=0".into(),
            "--minimum-peers-per-subnet=0".into(),
            "--suggested-fee-recipient=0x0000000000000000000000000000000000000001".into(),
            "--accept-terms-of-use".into(),
            "--force-clear-db".into(),
            "--rpc-host=127.0.0.1".into(),
            format!("--rpc-port={rpc}"),
            "--http-host=127.0.0.1".into(),
            format!("--http-port={http}"),
            "--p2p-local-ip=127.0.0.1".into(),
            format!("--p2p-tcp-port={tcp}"),
            format!("--p2p-quic-port={quic}"),
            "--monitoring-host=127.0.0.1".into(),
            format!("--monitoring-port={beacon_metrics}"),
        ];
        let beacon = Service::start(
            "prysm beacon-chain",
            &prysm.join("beacon-chain"),
            &beacon_args,
            work,
            &work.join("beacon.log"),
        )?;
        let validator_args: Vec<String> = vec![
            format!("--datadir={}", path("validator")),
            format!("--chain-config-file={}", path("config.yml")),
            format!("--beacon-rpc-provider=127.0.0.1:{rpc}"),
            format!("--interop-num-validators={VALIDATORS}"),
            "--interop-start-index=0".into(),
            "--accept-terms-of-use".into(),
            "--force-clear-db".into(),
            "--monitoring-host=127.0.0.1".into(),
            format!("--monitoring-port={validator_metrics}"),
        ];
        let validator = Service::start(
            "prysm validator",
            &prysm.join("validator"),
            &validator_args,
            work,
            &work.join("validator.log"),
        )?;
        let prysm = Prysm {
            api: Beacon::new(&format!("http://127.0.0.1:{http}")),
            beacon,
            validator,
        };
        let api = &prysm.api;
        until("Prysm's beacon API", Duration::from_secs(60), || async {
            api.version().await.ok()
        })
        .await?;
        Ok(prysm)
    }

    /// The last lines of both logs.
    pub fn logs(&self) -> String {
        [&self.beacon, &self.validator]
            .iter()
            .map(|s| format!("--- {}\n{}\n", s.name(), tail(s.log(), 12)))
            .collect()
    }

    /// The beacon node's and the validator's exit, if either has exited.
    pub fn exited(&self) -> Option<String> {
        [&self.beacon, &self.validator].into_iter().find_map(|s| {
            let status = s.exited()?;
            Some(format!(
                "{} exited ({status}); see {}",
                s.name(),
                s.log().display()
            ))
        })
    }
}
