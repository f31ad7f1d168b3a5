//! geth ELs behind eb, driven by a scripted consensus client at a fork mainnet runs (Prague,
//! Osaka) or the next one (Amsterdam): per slot forkchoiceUpdated with payload attributes →
//! getPayload → newPayload (versioned hashes, executionRequests) → forkchoiceUpdated, every call
//! through eb, every answer checked, and the ELs' own view of the chain checked against it
//! (`driver.rs`); transfers, blob transactions and a withdrawal request sent through eb
//! (`txs.rs`); the scenarios of `scenarios.rs`; with Prysm as the CL, `with_prysm.rs` and a
//! rolling upgrade of two geths (`upgrade.rs`).
//!
//! The genesis is geth's own developer genesis (`geth --dev dumpgenesis`: every system contract
//! Prague needs, all forks at block 0), cut back to the fork under test.

pub mod driver;
pub mod prysm;
pub mod scenarios;
pub mod txs;
pub mod upgrade;
pub mod with_prysm;

use crate::devnet::observe::{Admin, Rpc};
use crate::devnet::process::{free_port_list, tail, Service};
use crate::devnet::standin::StandIn;
use crate::devnet::{until, write_secret};
use eb::auth::Minter;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// ELs in the chain.
pub const ELS: usize = 3;
pub use crate::devnet::LIAR;
/// The prefunded accounts of `tests/devnet/txgen`: transfers and requests, blob transactions.
const FUNDED: [&str; 2] = [
    "f39fd6e51aad88f6f4ce6ab8827279cfffb92266",
    "70997970c51812dc3a010c7d01b50e0d17dc79c8",
];

/// The fork the chain runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Fork {
    /// Prague/Electra: newPayloadV4, forkchoiceUpdatedV3, getPayloadV4.
    Prague,
    /// Osaka/Fulu: newPayloadV4, forkchoiceUpdatedV3, getPayloadV5.
    Osaka,
    /// Amsterdam/Glamsterdam: newPayloadV5, forkchoiceUpdatedV4 (+ custodyColumns), getPayloadV6.
    Amsterdam,
}

impl Fork {
    /// (newPayload, forkchoiceUpdated, getPayload) versions.
    pub fn versions(self) -> (u8, u8, u8) {
        match self {
            Fork::Prague => (4, 3, 4),
            Fork::Osaka => (4, 3, 5),
            Fork::Amsterdam => (5, 4, 6),
        }
    }

    /// The getBlobs version: V1 (blob proofs) at Prague, V2 (cell proofs) from Osaka on.
    pub fn get_blobs(self) -> u8 {
        if self == Fork::Prague {
            1
        } else {
            2
        }
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Fork::Prague => "prague",
            Fork::Osaka => "osaka",
            Fork::Amsterdam => "amsterdam",
        }
    }
}

/// geth's developer genesis cut to `fork`, with the test accounts funded and time set to now.
pub fn genesis(geth: &Path, fork: Fork) -> Result<Value, String> {
    let out = Command::new(geth)
        .args(["--dev", "dumpgenesis"])
        .output()
        .map_err(|e| format!("{}: {e}", geth.display()))?;
    let mut genesis: Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("geth --dev dumpgenesis: {e}"))?;
    let config = genesis["config"]
        .as_object_mut()
        .ok_or("geth's dev genesis has no config")?;
    let blobs = json!({"target": 6, "max": 9, "baseFeeUpdateFraction": 5_007_716});
    for later in ["bogotaTime", "amsterdamTime", "osakaTime"] {
        config.remove(later);
    }
    if fork != Fork::Prague {
        config.insert("osakaTime".into(), json!(0));
        config["blobSchedule"]["osaka"] = blobs.clone();
    }
    if fork == Fork::Amsterdam {
        config.insert("amsterdamTime".into(), json!(0));
        config["blobSchedule"]["amsterdam"] = blobs;
    }
    for account in FUNDED {
        genesis["alloc"][account] = json!({"balance": format!("0x{}", "ff".repeat(20))});
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    genesis["timestamp"] = json!(format!("0x{:x}", now.saturating_sub(60)));
    Ok(genesis)
}

/// One geth: its process, how to start it again, and its endpoints.
pub struct Geth {
    /// Its plain JSON-RPC.
    pub rpc: Rpc,
    /// Its Engine API, with its own token.
    pub authrpc: Rpc,
    /// Its `enode://` address.
    pub enode: String,
    binary: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    launches: u32,
    service: Option<Service>,
}

/// How a chain is laid out.
#[derive(Clone, Debug)]
pub struct Layout {
    /// geths behind eb.
    pub els: usize,
    /// Whether the geths are static peers of each other; if not, each learns the chain from eb
    /// alone.
    pub peered: bool,
    /// Whether eb reaches geth `LIAR` through the stand-in (needs `els > LIAR`).
    pub liar: bool,
    /// eb's flags beside the nodes, ports, admin token and recording.
    pub eb_args: Vec<String>,
}

impl Default for Layout {
    /// `ELS` peered geths, the stand-in in front of geth `LIAR`, eb's defaults.
    fn default() -> Layout {
        Layout {
            els: ELS,
            peered: true,
            liar: true,
            eb_args: Vec::new(),
        }
    }
}

/// A running chain: the geths, the stand-in in front of geth `LIAR` (if laid out), eb in front
/// of them all.
pub struct Chain {
    /// The fork.
    pub fork: Fork,
    /// eb's Engine API, with a CL token.
    pub engine: Rpc,
    /// eb's admin API.
    pub admin: Admin,
    /// The geths.
    pub geths: Vec<Geth>,
    /// Where data, logs and the recording are.
    pub work: PathBuf,
    standin: Option<StandIn>,
    peered: bool,
    eb: Option<Service>,
}

impl Chain {
    /// Starts `layout.els` geths on `genesis` at `fork`, the stand-in and eb (with
    /// `--record-votes`) in front of them.
    pub async fn start(
        geth: &Path,
        eb: &Path,
        work: &Path,
        fork: Fork,
        genesis: &Value,
        layout: &Layout,
    ) -> Result<Chain, String> {
        let els = layout.els;
        std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
        if work.join("el0").exists() {
            return Err(format!(
                "{} holds an earlier chain (el0/): give an empty or new --work folder",
                work.display()
            ));
        }
        let genesis_path = work.join("genesis.json");
        std::fs::write(&genesis_path, genesis.to_string()).map_err(|e| e.to_string())?;
        let ports = free_port_list(3 * els + 2)?;
        let cl = write_secret(&work.join("cl.hex"))?;
        let mut geths = Vec::new();
        for i in 0..els {
            let (auth, http, p2p) = (ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]);
            let data = work.join(format!("el{i}"));
            let secret = write_secret(&work.join(format!("el{i}.hex")))?;
            let init = Command::new(geth)
                .arg("--datadir")
                .arg(&data)
                .args(["--state.scheme", "hash"])
                .arg("init")
                .arg(&genesis_path)
                .output()
                .map_err(|e| e.to_string())?;
            if !init.status.success() {
                return Err(format!(
                    "geth init: {}",
                    String::from_utf8_lossy(&init.stderr)
                ));
            }
            let args: Vec<String> = [
                "--datadir",
                &data.display().to_string(),
                "--authrpc.addr",
                "127.0.0.1",
                "--authrpc.port",
                &auth.to_string(),
                "--authrpc.jwtsecret",
                &work.join(format!("el{i}.hex")).display().to_string(),
                "--http",
                "--http.addr",
                "127.0.0.1",
                "--http.port",
                &http.to_string(),
                "--http.api",
                "eth,net,admin",
                "--nodiscover",
                "--port",
                &p2p.to_string(),
                "--nat",
                "none",
                "--ipcdisable",
                "--syncmode",
                "full",
                // Every block's state on disk: a SIGKILLed geth restarts at its head. (With the
                // default path scheme a young chain's state lives only in memory; a killed geth
                // rewinds to genesis, turns to snap sync, which fails among three peers, and
                // marks the next head INVALID.)
                "--state.scheme",
                "hash",
                "--gcmode",
                "archive",
                // A small cache: the default (1 GiB) also sizes the write-ahead logs (~280 MB each).
                "--cache",
                "64",
            ]
            .map(String::from)
            .to_vec();
            let mut el = Geth {
                rpc: Rpc::new(&format!("http://127.0.0.1:{http}"), None),
                authrpc: Rpc::new(
                    &format!("http://127.0.0.1:{auth}"),
                    Some(Minter::new(&secret)),
                ),
                enode: String::new(),
                binary: geth.to_owned(),
                args,
                log: PathBuf::new(),
                launches: 0,
                service: None,
            };
            el.launch(work, i)?;
            geths.push(el);
        }
        for el in &mut geths {
            let rpc = &el.rpc;
            let info = until("geth's node info", Duration::from_secs(30), || async {
                rpc.call("admin_nodeInfo", json!([])).await.ok()
            })
            .await?;
            el.enode = info["enode"].as_str().unwrap_or_default().to_owned();
        }
        let standin = match layout.liar && LIAR < els {
            true => Some(
                StandIn::start(&engine_url(&ports, LIAR))
                    .await
                    .map_err(|e| format!("stand-in: {e}"))?,
            ),
            false => None,
        };
        let specs: Vec<String> = (0..els)
            .map(|i| {
                let url = match (&standin, i == LIAR) {
                    (Some(standin), true) => standin.url.clone(),
                    _ => engine_url(&ports, i),
                };
                format!(
                    "{url}#jwt-secret={}",
                    work.join(format!("el{i}.hex")).display()
                )
            })
            .collect();
        let (eb_port, admin_port) = (ports[3 * els], ports[3 * els + 1]);
        let mut args: Vec<String> = [
            "--jwt-secret",
            &work.join("cl.hex").display().to_string(),
            "--nodes",
            &specs.join(","),
            "--port",
            &eb_port.to_string(),
            "--admin-addr",
            &format!("127.0.0.1:{admin_port}"),
            "--admin-token",
            &work.join("admin-token").display().to_string(),
            "--record-votes",
            &work.join("votes.jsonl").display().to_string(),
        ]
        .map(String::from)
        .to_vec();
        args.extend(layout.eb_args.iter().cloned());
        let eb = Service::start("eb", eb, &args, work, &work.join("eb.log"))?;
        let chain = Chain {
            fork,
            engine: Rpc::new(
                &format!("http://127.0.0.1:{eb_port}"),
                Some(Minter::new(&cl)),
            ),
            admin: Admin::new(
                &format!("http://127.0.0.1:{admin_port}"),
                &work.join("admin-token"),
            ),
            geths,
            work: work.to_owned(),
            standin,
            peered: layout.peered,
            eb: Some(eb),
        };
        for i in 0..els {
            chain.peer(i).await?;
        }
        let admin = &chain.admin;
        until(
            "eb to reach every geth",
            Duration::from_secs(60),
            || async {
                let status = admin.status().await.ok()?;
                let nodes = status["nodes"].as_array()?;
                nodes
                    .iter()
                    .all(|n| matches!(n["state"].as_str(), Some("synced" | "syncing")))
                    .then_some(())
            },
        )
        .await?;
        Ok(chain)
    }

    /// The stand-in eb reaches geth `LIAR` through.
    pub fn standin(&self) -> Result<&StandIn, String> {
        self.standin
            .as_ref()
            .ok_or_else(|| "this chain has no stand-in (Layout::liar)".to_owned())
    }

    /// Adds every other geth as a static peer of geth `index` (geth redials static peers, so a
    /// restarted one is found again); nothing when the chain is laid out without peering.
    async fn peer(&self, index: usize) -> Result<(), String> {
        if !self.peered {
            return Ok(());
        }
        for (j, other) in self.geths.iter().enumerate() {
            if j != index {
                self.geths[index]
                    .rpc
                    .call("admin_addPeer", json!([other.enode]))
                    .await?;
            }
        }
        Ok(())
    }

    /// The last lines of every log.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, el) in self.geths.iter().enumerate() {
            out.push_str(&format!("--- geth {i}\n{}\n", tail(&el.log, 12)));
        }
        if let Some(service) = &self.eb {
            out.push_str(&format!("--- eb\n{}\n", tail(service.log(), 12)));
        }
        out
    }

    /// Sends `tx` through eb's `eth_sendRawTransaction`.
    pub async fn send(&self, tx: &txs::Tx) -> Result<(), String> {
        self.engine
            .call("eth_sendRawTransaction", json!([tx.raw]))
            .await
            .map(drop)
    }

    /// SIGKILLs geth `index`: a crash, not a shutdown.
    pub fn kill(&mut self, index: usize) {
        if let Some(service) = self.geths[index].service.take() {
            service.kill();
        }
    }

    /// SIGTERMs geth `index` (a clean shutdown, SIGKILL after `grace`); how long it took.
    pub fn shut_down(&mut self, index: usize, grace: Duration) -> Duration {
        self.geths[index]
            .service
            .take()
            .map_or(Duration::ZERO, |service| service.stop(grace))
    }

    /// Starts geth `index` again on its data and ports (with `binary` from now on, if given: an
    /// upgrade), and peers it.
    pub async fn restart(&mut self, index: usize, binary: Option<&Path>) -> Result<(), String> {
        let work = self.work.clone();
        let el = &mut self.geths[index];
        if let Some(binary) = binary {
            el.binary = binary.to_owned();
        }
        el.launch(&work, index)?;
        let rpc = &self.geths[index].rpc;
        until("the restarted geth", Duration::from_secs(30), || async {
            rpc.call("admin_nodeInfo", json!([])).await.ok()
        })
        .await?;
        self.peer(index).await
    }

    /// SIGSTOPs geth `index` (sockets stay open), or with `frozen` false SIGCONTs it.
    pub fn freeze(&self, index: usize, frozen: bool) {
        if let Some(service) = &self.geths[index].service {
            service.freeze(frozen);
        }
    }

    /// Stops eb (its recording is then complete).
    pub fn stop_eb(&mut self) {
        if let Some(eb) = self.eb.take() {
            eb.stop(Duration::from_secs(10));
        }
    }
}

impl Geth {
    /// Starts the process; the first run logs to `el{index}.log`, a restart to `el{index}.N.log`.
    fn launch(&mut self, work: &Path, index: usize) -> Result<(), String> {
        self.log = match self.launches {
            0 => work.join(format!("el{index}.log")),
            n => work.join(format!("el{index}.{n}.log")),
        };
        self.launches += 1;
        self.service = Some(Service::start(
            &format!("geth {index}"),
            &self.binary,
            &self.args,
            work,
            &self.log,
        )?);
        Ok(())
    }
}

/// geth `index`'s Engine API URL (its ports are three in a row from `3 * index`).
fn engine_url(ports: &[u16], index: usize) -> String {
    format!("http://127.0.0.1:{}", ports[3 * index])
}
