//! The scripted consensus client: one slot is forkchoiceUpdated with payload attributes →
//! getPayload → newPayload (versioned hashes from the bundle's commitments, the payload's
//! executionRequests) → forkchoiceUpdated to the new head, every call through eb at the fork's
//! versions, every answer checked against the Engine API's shapes.

use super::txs::{versioned_hash, Tx};
use super::{Chain, Fork};
use crate::devnet::until;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Cell proofs per blob from Osaka on (CELLS_PER_EXT_BLOB).
const CELL_PROOFS: usize = 128;
/// Blob gas per blob (EIP-4844).
const BLOB_GAS: u64 = 0x20000;
/// How long the ELs get to fill a payload before getPayload.
const BUILD_TIME: Duration = Duration::from_millis(200);

/// What one slot did.
#[derive(Debug, Clone)]
pub struct Built {
    /// The slot.
    pub slot: u64,
    /// The block number built.
    pub number: u64,
    /// Its hash.
    pub hash: String,
    /// Transactions in it.
    pub transactions: usize,
    /// Blobs in its bundle.
    pub blobs: usize,
    /// The execution requests it carries.
    pub requests: Vec<String>,
    /// eb's answer to newPayload.
    pub new_payload: String,
    /// How long eb took to answer newPayload, seen from the driver.
    pub new_payload_time: Duration,
    /// eb's answer to the forkchoiceUpdated that made it the head.
    pub head: String,
}

/// The driver's place in the chain.
pub struct Driver {
    /// The last slot run.
    pub slot: u64,
    /// The head block's hash.
    pub parent: String,
    /// The head block's timestamp.
    pub timestamp: u64,
    /// Every slot run, in order.
    pub built: Vec<Built>,
}

fn status_of(result: &Value) -> &str {
    result["status"]
        .as_str()
        .or_else(|| result["payloadStatus"]["status"].as_str())
        .unwrap_or("-")
}

/// A `0x` quantity as a number.
pub fn quantity(value: &Value) -> Option<u64> {
    u64::from_str_radix(value.as_str()?.strip_prefix("0x")?, 16).ok()
}

/// Whether `value` is `0x` bytes (an even number of hex digits).
fn is_data(value: &Value) -> bool {
    value
        .as_str()
        .and_then(|s| s.strip_prefix("0x"))
        .is_some_and(|s| s.len() % 2 == 0 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The custody columns eb-chain asks for at Amsterdam (forkchoiceUpdatedV4's third param).
const CUSTODY_COLUMNS: &str = "0x0000000000000000000000000000000f";

impl Driver {
    /// Starts at the chain's genesis (read through eb).
    pub async fn at_genesis(chain: &Chain) -> Result<Driver, String> {
        let genesis = chain
            .engine
            .call("eth_getBlockByNumber", json!(["latest", false]))
            .await?;
        Ok(Driver {
            slot: 0,
            parent: genesis["hash"].as_str().unwrap_or_default().to_owned(),
            timestamp: quantity(&genesis["timestamp"]).unwrap_or(0),
            built: Vec::new(),
        })
    }

    /// Runs one slot. The build must start (a payloadId) and the payload must have the fork's
    /// shape; what eb answers newPayload and the last forkchoiceUpdated is returned, not judged.
    pub async fn slot(&mut self, chain: &Chain) -> Result<Built, String> {
        self.slot += 1;
        self.timestamp += 12;
        let (n, fork) = (self.slot, chain.fork);
        let (np, fcu, gp) = fork.versions();
        let parent = self.parent.clone();
        let state =
            json!({"headBlockHash": parent, "safeBlockHash": parent, "finalizedBlockHash": parent});
        let root = format!("0x{:064x}", 1_000 + n);
        let mut attributes = json!({
            "timestamp": format!("0x{:x}", self.timestamp), "prevRandao": format!("0x{n:064x}"),
            "suggestedFeeRecipient": "0x0000000000000000000000000000000000000001",
            "withdrawals": [], "parentBeaconBlockRoot": root,
        });
        let fcu_method = format!("engine_forkchoiceUpdatedV{fcu}");
        let build = if fork == Fork::Amsterdam {
            attributes["slotNumber"] = json!(format!("0x{n:x}"));
            attributes["targetGasLimit"] = json!("0x3938700");
            json!([state, attributes, CUSTODY_COLUMNS])
        } else {
            json!([state, attributes])
        };
        let started = chain.engine.call(&fcu_method, build).await?;
        let id = started["payloadId"]
            .as_str()
            .ok_or_else(|| format!("slot {n}: no payloadId in {started}"))?
            .to_owned();
        tokio::time::sleep(BUILD_TIME).await;
        let built = chain
            .engine
            .call(&format!("engine_getPayloadV{gp}"), json!([id]))
            .await?;
        let hashes = check_built(fork, n, &built).map_err(|e| format!("slot {n}: {e}"))?;
        let payload = &built["executionPayload"];
        let requests = built["executionRequests"].clone();
        let hash = payload["blockHash"].as_str().unwrap_or_default().to_owned();
        let t = Instant::now();
        let imported = chain
            .engine
            .call(
                &format!("engine_newPayloadV{np}"),
                json!([payload, hashes, root, requests]),
            )
            .await?;
        let new_payload_time = t.elapsed();
        let head =
            json!({"headBlockHash": hash, "safeBlockHash": hash, "finalizedBlockHash": parent});
        let params = if fork == Fork::Amsterdam {
            json!([head, null, CUSTODY_COLUMNS])
        } else {
            json!([head, null])
        };
        let followed = chain.engine.call(&fcu_method, params).await?;
        let slot = Built {
            slot: n,
            number: quantity(&payload["blockNumber"]).unwrap_or(0),
            hash: hash.clone(),
            transactions: payload["transactions"].as_array().map_or(0, Vec::len),
            blobs: hashes.len(),
            requests: requests
                .as_array()
                .map(|r| {
                    r.iter()
                        .filter_map(|r| r.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            new_payload: status_of(&imported).to_owned(),
            new_payload_time,
            head: status_of(&followed).to_owned(),
        };
        // As a CL does: a block eb did not call INVALID is the head (optimistically if SYNCING).
        if slot.new_payload != "INVALID" {
            self.parent = hash;
        }
        self.built.push(slot.clone());
        Ok(slot)
    }

    /// [`Driver::slot`], which must be answered VALID throughout.
    pub async fn valid_slot(&mut self, chain: &Chain) -> Result<Built, String> {
        let slot = self.slot(chain).await?;
        if slot.new_payload != "VALID" || slot.head != "VALID" {
            return Err(format!(
                "slot {}: newPayload answered {}, forkchoiceUpdated {}",
                slot.slot, slot.new_payload, slot.head
            ));
        }
        Ok(slot)
    }
}

/// Checks a getPayload answer against the fork's shapes; the versioned hashes of its bundle.
fn check_built(fork: Fork, n: u64, built: &Value) -> Result<Vec<String>, String> {
    let payload = &built["executionPayload"];
    let mut data = vec![
        "parentHash",
        "feeRecipient",
        "stateRoot",
        "receiptsRoot",
        "logsBloom",
        "prevRandao",
        "extraData",
        "blockHash",
    ];
    let mut quantities = vec![
        "blockNumber",
        "gasLimit",
        "gasUsed",
        "timestamp",
        "baseFeePerGas",
        "blobGasUsed",
        "excessBlobGas",
    ];
    if fork == Fork::Amsterdam {
        data.push("blockAccessList");
        quantities.push("slotNumber");
    }
    if let Some(bad) = data.iter().find(|f| !is_data(&payload[**f])) {
        return Err(format!(
            "executionPayload.{bad} is not hex bytes in {payload}"
        ));
    }
    if let Some(bad) = quantities
        .iter()
        .find(|f| quantity(&payload[**f]).is_none())
    {
        return Err(format!(
            "executionPayload.{bad} is not a quantity in {payload}"
        ));
    }
    if !payload["transactions"].is_array() || !payload["withdrawals"].is_array() {
        return Err("executionPayload without transactions or withdrawals".into());
    }
    if fork == Fork::Amsterdam && quantity(&payload["slotNumber"]) != Some(n) {
        return Err(format!("slotNumber {} for slot {n}", payload["slotNumber"]));
    }
    if quantity(&built["blockValue"]).is_none() || !built["shouldOverrideBuilder"].is_boolean() {
        return Err(format!(
            "blockValue or shouldOverrideBuilder missing: {built}"
        ));
    }
    let bundle = &built["blobsBundle"];
    let list = |name: &str| bundle[name].as_array().cloned().unwrap_or_default();
    let (commitments, proofs, blobs) = (list("commitments"), list("proofs"), list("blobs"));
    let per_blob = if fork == Fork::Prague { 1 } else { CELL_PROOFS };
    if blobs.len() != commitments.len() || proofs.len() != per_blob * blobs.len() {
        return Err(format!(
            "blobsBundle: {} blobs, {} commitments, {} proofs ({per_blob} per blob expected)",
            blobs.len(),
            commitments.len(),
            proofs.len()
        ));
    }
    if quantity(&payload["blobGasUsed"]) != Some(BLOB_GAS * blobs.len() as u64) {
        return Err(format!(
            "blobGasUsed {} for {} blobs",
            payload["blobGasUsed"],
            blobs.len()
        ));
    }
    let requests = built["executionRequests"]
        .as_array()
        .ok_or("no executionRequests")?;
    // EIP-7685: each request is its type byte and a non-empty body, in ascending type order.
    let types: Vec<&str> = requests
        .iter()
        .map(|r| {
            r.as_str()
                .filter(|r| is_data(&json!(r)) && r.len() > 4)
                .map(|r| &r[2..4])
        })
        .collect::<Option<_>>()
        .ok_or_else(|| format!("malformed executionRequests {requests:?}"))?;
    if types.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("executionRequests out of order: {types:?}"));
    }
    commitments
        .iter()
        .map(|c| c.as_str().and_then(versioned_hash))
        .collect::<Option<_>>()
        .ok_or_else(|| "a commitment is not hex".into())
}

/// Asks eb (engine_getBlobsV1/V2 by fork) for `tx`'s blobs while it is in the pool, and each
/// geth for its own answer once its pool holds them (eb answers a send with the first EL's
/// answer, and blob proofs take a while to verify). Where a geth serves the blobs, eb's answer
/// must be the transaction's blobs and proofs; where none does, eb's must be empty too. Whether
/// they were served.
pub async fn check_blobs(chain: &Chain, tx: &Tx) -> Result<bool, String> {
    let method = format!("engine_getBlobsV{}", chain.fork.get_blobs());
    let through_eb = chain
        .engine
        .call(&method, json!([tx.versioned_hashes]))
        .await?;
    let served = |answer: &Value| {
        answer
            .as_array()
            .is_some_and(|a| a.len() == tx.blobs.len() && a.iter().all(|e| !e.is_null()))
    };
    let mut any_served = false;
    for el in &chain.geths {
        let rpc = &el.authrpc;
        let own = until(
            "a geth's pool to hold the blobs",
            Duration::from_secs(2),
            || async {
                let own = rpc.call(&method, json!([tx.versioned_hashes])).await.ok()?;
                served(&own).then_some(())
            },
        )
        .await;
        any_served |= own.is_ok();
    }
    if !any_served {
        let empty = through_eb.is_null()
            || through_eb
                .as_array()
                .is_some_and(|a| a.iter().all(Value::is_null));
        return if empty {
            Ok(false)
        } else {
            Err(format!(
                "{method}: no geth serves {}'s blobs, eb does",
                tx.hash
            ))
        };
    }
    let (proofs, per_blob) = if chain.fork.get_blobs() == 1 {
        (&tx.blob_proofs, 1)
    } else {
        (&tx.proofs, CELL_PROOFS)
    };
    let items = through_eb
        .as_array()
        .filter(|_| served(&through_eb))
        .ok_or_else(|| format!("{method} through eb: {through_eb:.200}"))?;
    for (i, item) in items.iter().enumerate() {
        let answered: Vec<&str> = if per_blob == 1 {
            item["proof"].as_str().into_iter().collect()
        } else {
            item["proofs"]
                .as_array()
                .map(|p| p.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default()
        };
        let expected = proofs
            .get(i * per_blob..(i + 1) * per_blob)
            .unwrap_or_default();
        if item["blob"].as_str() != tx.blobs.get(i).map(String::as_str) || answered != expected {
            return Err(format!(
                "{method} through eb: blob {i} of {} is not the one sent",
                tx.hash
            ));
        }
    }
    Ok(true)
}
