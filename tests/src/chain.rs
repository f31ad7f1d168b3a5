//! geth ELs behind eb, driven by a scripted consensus client at a fork mainnet runs (Prague,
//! Osaka) or the next one (Amsterdam): per slot forkchoiceUpdated with payload attributes →
//! getPayload → newPayload (with the payload's executionRequests) → forkchoiceUpdated, every
//! call through eb, every answer checked, and the ELs' own view of the chain checked against it.
//!
//! The genesis is geth's own developer genesis (`geth --dev dumpgenesis`: every system contract
//! Prague needs, all forks at block 0), cut back to the fork under test.

use crate::devnet::observe::{recorded, Admin, Rpc};
use crate::devnet::process::{free_ports, tail, Service};
use crate::devnet::{sign_transfers, until, write_secret};
use eb::auth::Minter;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// ELs in the chain.
pub const ELS: usize = 3;
/// The prefunded test account of `tests/devnet/sign-txs.cjs`.
const FUNDED: &str = "f39fd6e51aad88f6f4ce6ab8827279cfffb92266";

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

    fn name(self) -> &'static str {
        match self {
            Fork::Prague => "prague",
            Fork::Osaka => "osaka",
            Fork::Amsterdam => "amsterdam",
        }
    }
}

/// geth's developer genesis cut to `fork`, with the test account funded and time set to now.
fn genesis(geth: &Path, fork: Fork) -> Result<Value, String> {
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
    genesis["alloc"][FUNDED] = json!({"balance": format!("0x{}", "ff".repeat(20))});
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    genesis["timestamp"] = json!(format!("0x{:x}", now.saturating_sub(60)));
    Ok(genesis)
}

/// A running chain: the geths, eb in front, and clients for each.
pub struct Chain {
    /// The fork.
    pub fork: Fork,
    /// eb's Engine API, with a CL token.
    pub engine: Rpc,
    /// eb's admin API.
    pub admin: Admin,
    /// Each geth's plain JSON-RPC.
    pub rpcs: Vec<Rpc>,
    /// Each geth's Engine API, with its own token.
    pub authrpcs: Vec<Rpc>,
    /// Where data, logs and the recording are.
    pub work: PathBuf,
    geths: Vec<Service>,
    eb: Option<Service>,
}

impl Chain {
    /// Starts `ELS` geths at `fork` and eb (with `--record-votes`) in front of them.
    pub async fn start(geth: &Path, eb: &Path, work: &Path, fork: Fork) -> Result<Chain, String> {
        std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
        let genesis_path = work.join("genesis.json");
        std::fs::write(&genesis_path, genesis(geth, fork)?.to_string())
            .map_err(|e| e.to_string())?;
        let ports: [u16; 3 * ELS + 2] = free_ports()?;
        let cl = write_secret(&work.join("cl.hex"))?;
        let (mut geths, mut rpcs, mut authrpcs, mut specs) = (vec![], vec![], vec![], vec![]);
        for i in 0..ELS {
            let (auth, http, p2p) = (ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]);
            let data = work.join(format!("el{i}"));
            let secret_path = work.join(format!("el{i}.hex"));
            let secret = write_secret(&secret_path)?;
            let init = Command::new(geth)
                .arg("--datadir")
                .arg(&data)
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
                &secret_path.display().to_string(),
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
                "--ipcdisable",
                "--syncmode",
                "full",
                // A small cache: the default (1 GiB) also sizes the write-ahead logs (~280 MB each).
                "--cache",
                "64",
            ]
            .map(String::from)
            .to_vec();
            let log = work.join(format!("el{i}.log"));
            geths.push(Service::start(
                &format!("geth {i}"),
                geth,
                &args,
                work,
                &log,
            )?);
            rpcs.push(Rpc::new(&format!("http://127.0.0.1:{http}"), None));
            authrpcs.push(Rpc::new(
                &format!("http://127.0.0.1:{auth}"),
                Some(Minter::new(&secret)),
            ));
            specs.push(format!(
                "http://127.0.0.1:{auth}#jwt-secret={}",
                secret_path.display()
            ));
        }
        let (eb_port, admin_port) = (ports[3 * ELS], ports[3 * ELS + 1]);
        let args: Vec<String> = [
            "--jwt-secret",
            &work.join("cl.hex").display().to_string(),
            "--nodes",
            &specs.join(","),
            "--port",
            &eb_port.to_string(),
            "--admin-addr",
            &format!("127.0.0.1:{admin_port}"),
            "--record-votes",
            &work.join("votes.jsonl").display().to_string(),
        ]
        .map(String::from)
        .to_vec();
        let eb = Service::start("eb", eb, &args, work, &work.join("eb.log"))?;
        let chain = Chain {
            fork,
            engine: Rpc::new(
                &format!("http://127.0.0.1:{eb_port}"),
                Some(Minter::new(&cl)),
            ),
            admin: Admin::new(&format!("http://127.0.0.1:{admin_port}")),
            rpcs,
            authrpcs,
            work: work.to_owned(),
            geths,
            eb: Some(eb),
        };
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

    /// The last lines of every log.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for service in self.geths.iter().chain(&self.eb) {
            out.push_str(&format!(
                "--- {}\n{}\n",
                service.name(),
                tail(service.log(), 12)
            ));
        }
        out
    }

    /// Stops eb (its recording is then complete).
    pub fn stop_eb(&mut self) {
        if let Some(eb) = self.eb.take() {
            eb.stop(Duration::from_secs(10));
        }
    }
}

/// What one slot did.
pub struct Slot {
    /// The block number built.
    pub number: u64,
    /// Its hash.
    pub hash: String,
    /// Transactions in it.
    pub transactions: usize,
    /// Execution requests it carries.
    pub requests: usize,
    /// eb's newPayload answer time.
    pub new_payload: Duration,
}

fn status_of(result: &Value) -> &str {
    result["status"]
        .as_str()
        .or_else(|| result["payloadStatus"]["status"].as_str())
        .unwrap_or("-")
}

/// Builds and imports one block on `parent` at `timestamp` through eb, checking every answer.
pub async fn slot(chain: &Chain, n: u64, parent: &str, timestamp: u64) -> Result<Slot, String> {
    let (np, fcu, gp) = chain.fork.versions();
    let state =
        json!({"headBlockHash": parent, "safeBlockHash": parent, "finalizedBlockHash": parent});
    let root = format!("0x{:064x}", 1_000 + n);
    let mut attributes = json!({
        "timestamp": format!("0x{timestamp:x}"), "prevRandao": format!("0x{n:064x}"),
        "suggestedFeeRecipient": "0x0000000000000000000000000000000000000001",
        "withdrawals": [], "parentBeaconBlockRoot": root,
    });
    let mut build = json!([state, attributes]);
    if chain.fork == Fork::Amsterdam {
        attributes["slotNumber"] = json!(format!("0x{n:x}"));
        attributes["targetGasLimit"] = json!("0x3938700");
        build = json!([state, attributes, "0x0000000000000000000000000000000f"]);
    }
    let fcu_method = format!("engine_forkchoiceUpdatedV{fcu}");
    let started = chain.engine.call(&fcu_method, build).await?;
    if status_of(&started) != "VALID" {
        return Err(format!("slot {n}: the build answered {started}"));
    }
    let id = started["payloadId"]
        .as_str()
        .ok_or_else(|| format!("slot {n}: no payloadId in {started}"))?
        .to_owned();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let built = chain
        .engine
        .call(&format!("engine_getPayloadV{gp}"), json!([id]))
        .await?;
    let payload = built["executionPayload"].clone();
    let requests = built["executionRequests"].clone();
    let hash = payload["blockHash"].as_str().unwrap_or_default().to_owned();
    let number = payload["blockNumber"]
        .as_str()
        .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
        .ok_or_else(|| format!("slot {n}: no block number in {built}"))?;
    let t = Instant::now();
    let imported = chain
        .engine
        .call(
            &format!("engine_newPayloadV{np}"),
            json!([payload, [], root, requests]),
        )
        .await?;
    let new_payload = t.elapsed();
    if status_of(&imported) != "VALID" {
        return Err(format!("slot {n}: newPayload answered {imported}"));
    }
    let head = json!({"headBlockHash": hash, "safeBlockHash": hash, "finalizedBlockHash": parent});
    let mut params = json!([head, null]);
    if chain.fork == Fork::Amsterdam {
        params = json!([head, null, "0x0000000000000000000000000000000f"]);
    }
    let followed = chain.engine.call(&fcu_method, params).await?;
    if status_of(&followed) != "VALID" {
        return Err(format!("slot {n}: forkchoiceUpdated answered {followed}"));
    }
    Ok(Slot {
        number,
        hash,
        transactions: payload["transactions"].as_array().map_or(0, Vec::len),
        requests: requests.as_array().map_or(0, Vec::len),
        new_payload,
    })
}

/// The happy path: `slots` blocks through eb, `txs` transfers sent through eb and included on
/// every EL, every EL on the driver's head; then `exchangeCapabilities` through eb equals the
/// intersection of the geths' own lists, the client codes reach the votes, and the recording
/// replays with 0 mismatches.
pub async fn run(
    chain: &mut Chain,
    clients: &Path,
    slots: u64,
    txs: usize,
) -> Result<Value, String> {
    let start = Instant::now();
    let genesis = chain
        .engine
        .call("eth_getBlockByNumber", json!(["latest", false]))
        .await?;
    let mut parent = genesis["hash"].as_str().unwrap_or_default().to_owned();
    let mut timestamp = genesis["timestamp"]
        .as_str()
        .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0);
    let signed = sign_transfers(clients, crate::devnet::CHAIN_ID, txs)?;
    for (raw, _) in &signed {
        chain
            .engine
            .call("eth_sendRawTransaction", json!([raw]))
            .await?;
    }
    let (mut blocks, mut included, mut with_requests, mut times) = (0, 0, 0, Vec::new());
    for n in 1..=slots {
        timestamp += 12;
        let slot = slot(chain, n, &parent, timestamp).await?;
        blocks += 1;
        included += slot.transactions;
        with_requests += usize::from(slot.requests > 0);
        times.push(slot.new_payload);
        parent = slot.hash;
    }
    let mut succeeded = 0;
    for (i, rpc) in chain.rpcs.iter().enumerate() {
        let (_, head) = rpc.block("latest").await?;
        if head != parent {
            return Err(format!("geth {i} is on {head}, the driver on {parent}"));
        }
        succeeded = 0;
        for (_, hash) in &signed {
            let receipt = rpc.call("eth_getTransactionReceipt", json!([hash])).await?;
            if receipt["blockHash"].as_str().is_none() {
                return Err(format!("geth {i}: transaction {hash} not included"));
            }
            succeeded += usize::from(receipt["status"] == "0x1");
        }
        // Amsterdam reprices state growth: a 21,000-gas transfer to a new account is included
        // but fails there (status 0); before it, every transfer succeeds.
        if chain.fork != Fork::Amsterdam && succeeded != signed.len() {
            return Err(format!(
                "geth {i}: {succeeded} of {} transfers succeeded",
                signed.len()
            ));
        }
    }
    let asked: Vec<String> = [
        "engine_newPayloadV4",
        "engine_newPayloadV5",
        "engine_forkchoiceUpdatedV3",
        "engine_forkchoiceUpdatedV4",
        "engine_getPayloadV4",
        "engine_getPayloadV5",
        "engine_getPayloadV6",
        "engine_getBlobsV2",
        "engine_getBlobsV3",
        "engine_getClientVersionV1",
    ]
    .map(String::from)
    .to_vec();
    let through_eb = chain
        .engine
        .call("engine_exchangeCapabilities", json!([asked]))
        .await?;
    let mut common: Option<Vec<Value>> = None;
    for rpc in &chain.authrpcs {
        let own = rpc
            .call("engine_exchangeCapabilities", json!([asked]))
            .await?;
        let own = own.as_array().cloned().unwrap_or_default();
        common = Some(match common {
            None => own,
            Some(so_far) => so_far.into_iter().filter(|m| own.contains(m)).collect(),
        });
    }
    let mut common: Vec<Value> = common
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m != "engine_exchangeCapabilities")
        .collect();
    let mut through: Vec<Value> = through_eb.as_array().cloned().unwrap_or_default();
    common.sort_by_key(Value::to_string);
    through.sort_by_key(Value::to_string);
    let capabilities = through == common;
    let versions = chain
        .engine
        .call(
            "engine_getClientVersionV1",
            json!([{"code": "EB", "name": "eb-chain", "version": "0", "commit": "0x00000000"}]),
        )
        .await?;
    let els: Vec<String> = versions
        .as_array()
        .map(|v| {
            v.iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e["name"].as_str().unwrap_or("?"),
                        e["version"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    chain.stop_eb();
    let votes = chain.work.join("votes.jsonl");
    let cases = recorded(&votes);
    let codes = cases
        .iter()
        .flat_map(|c| &c.votes)
        .all(|v| v.client.as_deref() == Some("GE"));
    let (report, replay) = eb::cli::policy::test(None, "", &[votes]).map_err(|e| e.to_string())?;
    times.sort();
    let ms = |q: f64| {
        times
            .get(((times.len().max(1) - 1) as f64 * q) as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let scenarios = json!([
        {"name": "happy path", "passed": true},
        {"name": "exchangeCapabilities is the geths' intersection", "passed": capabilities},
        {"name": "client codes reach the votes", "passed": codes},
        {"name": "replay", "passed": replay, "summary": report.lines().last()},
    ]);
    let report = json!({
        "fork": chain.fork.name(), "cl": "driver", "els": els, "blocks": blocks, "blob_blocks": 0,
        "transactions": included, "transactions_succeeded": succeeded,
        "blocks_with_requests": with_requests,
        "new_payload_through_eb_ms": {"p50": ms(0.5), "p99": ms(0.99)},
        "seconds": (start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        "scenarios": scenarios,
    });
    if !(capabilities && codes && replay) {
        return Err(format!("a check failed: {report:#}"));
    }
    Ok(report)
}
