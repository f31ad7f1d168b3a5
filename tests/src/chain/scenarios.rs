//! The geth chain's scenarios, each asserted: it returns a report of what it saw, or an error
//! saying what did not happen. They run in order on one chain: happy path, capabilities and
//! client codes, the primary killed and restarted, an EL frozen, a lying EL, then the replay.

use super::driver::{check_blobs, quantity, Built, Driver};
use super::txs::{self, Plan, Tx};
use super::{Chain, Fork, ELS, LIAR};
use crate::devnet::observe::{follows_valid, liar_counted, liar_ignored, primary, recorded};
use crate::devnet::scenarios::seconds;
use crate::devnet::{until, CHAIN_ID};
use policy_sdk::fixture::Case;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// Slots of the happy path.
pub const HAPPY_SLOTS: u64 = 32;
/// Blob transactions, one sent before each of the first slots.
const BLOB_TXS: usize = 10;
/// Blocks that must carry blobs.
const BLOB_BLOCKS: usize = 8;
/// Slots run while the primary geth is dead.
const DEAD_SLOTS: u64 = 4;
/// Slots a restarted or thawed geth gets to catch up.
const CATCH_UP_SLOTS: u64 = 20;
/// Slots run while a geth is frozen.
const FROZEN_SLOTS: u64 = 6;
/// Slots in each phase of the lying-EL scenario.
const LIAR_SLOTS: u64 = 3;
/// Longest eb may take to answer newPayload while a geth is frozen (it is cut after the
/// straggler floor, then at once once hung): a behavioural bound, the numbers are reported.
const FROZEN_ANSWER: Duration = Duration::from_secs(2);

fn summary(slots: &[Built]) -> Value {
    let max = slots
        .iter()
        .map(|s| s.new_payload_time)
        .max()
        .unwrap_or_default();
    json!({
        "slots": slots.len(),
        "new_payload": slots.iter().map(|s| s.new_payload.as_str()).collect::<Vec<_>>(),
        "slowest_new_payload_ms": (max.as_secs_f64() * 1e4).round() / 10.0,
    })
}

/// Each geth's latest block hash.
async fn heads(chain: &Chain) -> Result<Vec<String>, String> {
    let mut heads = Vec::new();
    for el in &chain.geths {
        heads.push(el.rpc.block("latest").await?.1);
    }
    Ok(heads)
}

/// Runs slots (each answered VALID) until geth `index` is on the driver's head, at most
/// `CATCH_UP_SLOTS`; the slots it took.
async fn catch_up(chain: &Chain, driver: &mut Driver, index: usize) -> Result<u64, String> {
    for extra in 1..=CATCH_UP_SLOTS {
        driver.valid_slot(chain).await?;
        let rpc = &chain.geths[index].rpc;
        let parent = driver.parent.clone();
        let caught = until("the geth to follow", Duration::from_secs(3), || async {
            let (_, head) = rpc.block("latest").await.ok()?;
            (head == parent).then_some(())
        })
        .await;
        if caught.is_ok() {
            return Ok(extra);
        }
    }
    Err(format!(
        "geth {index} not on the head after {CATCH_UP_SLOTS} slots"
    ))
}

/// 1. `HAPPY_SLOTS` slots, all VALID; transfers and a withdrawal request sent through eb before
///    the first, one blob transaction before each of the first `BLOB_TXS` (its blobs read back
///    through eb's getBlobs while pooled). Then every transaction is included on every geth,
///    blobs are in ≥ `BLOB_BLOCKS` blocks, the withdrawal request is in a block's
///    executionRequests, and every geth holds the driver's blocks.
pub async fn happy_path(chain: &Chain, driver: &mut Driver, txs: &[Tx]) -> Result<Value, String> {
    let start = Instant::now();
    let (blob_txs, others): (Vec<&Tx>, Vec<&Tx>) = txs.iter().partition(|t| t.kind == "blob");
    for tx in &others {
        chain.send(tx).await?;
    }
    let mut served = 0;
    for n in 0..HAPPY_SLOTS as usize {
        if let Some(tx) = blob_txs.get(n) {
            chain.send(tx).await?;
            served += usize::from(check_blobs(chain, tx).await?);
        }
        driver.valid_slot(chain).await?;
    }
    let built = &driver.built;
    for (i, el) in chain.geths.iter().enumerate() {
        for slot in built {
            let block = el
                .rpc
                .call(
                    "eth_getBlockByNumber",
                    json!([format!("0x{:x}", slot.number), false]),
                )
                .await?;
            if block["hash"].as_str() != Some(&slot.hash) {
                return Err(format!(
                    "geth {i} has {} at #{}",
                    block["hash"], slot.number
                ));
            }
            if quantity(&block["blobGasUsed"]) != Some(0x20000 * slot.blobs as u64) {
                return Err(format!(
                    "geth {i}: #{} blob gas {}",
                    slot.number, block["blobGasUsed"]
                ));
            }
        }
    }
    let mut succeeded = 0;
    for (i, el) in chain.geths.iter().enumerate() {
        succeeded = 0;
        for tx in txs {
            let receipt = el
                .rpc
                .call("eth_getTransactionReceipt", json!([tx.hash]))
                .await?;
            if receipt["blockHash"].as_str().is_none() {
                return Err(format!(
                    "geth {i}: {} transaction {} not included",
                    tx.kind, tx.hash
                ));
            }
            succeeded += usize::from(receipt["status"] == "0x1");
        }
    }
    if succeeded != txs.len() {
        return Err(format!(
            "{succeeded} of {} transactions succeeded",
            txs.len()
        ));
    }
    // geth 1.17's pool keeps cell proofs only, so its getBlobsV1 (Prague) serves no blob; from
    // Osaka on, getBlobsV2 must serve every one.
    if chain.fork != Fork::Prague && served != blob_txs.len() {
        return Err(format!(
            "getBlobsV2 served {served} of {} blob transactions",
            blob_txs.len()
        ));
    }
    let blob_blocks = built.iter().filter(|s| s.blobs > 0).count();
    let blobs: usize = built.iter().map(|s| s.blobs).sum();
    let sent_blobs: usize = blob_txs.iter().map(|t| t.blobs.len()).sum();
    if blob_blocks < BLOB_BLOCKS || blobs != sent_blobs {
        return Err(format!(
            "{blobs} of {sent_blobs} blobs included, in {blob_blocks} blocks (≥ {BLOB_BLOCKS} wanted)"
        ));
    }
    // EIP-7002: type 0x01, then source address (20 bytes), validator key (48), amount (8).
    let source = "f39fd6e51aad88f6f4ce6ab8827279cfffb92266";
    let withdrawals: Vec<&String> = built
        .iter()
        .flat_map(|s| &s.requests)
        .filter(|r| r.starts_with("0x01") && r[4..].starts_with(source))
        .collect();
    let wanted = others.iter().filter(|t| t.kind == "withdrawal").count();
    if withdrawals.len() != wanted || withdrawals.iter().any(|r| r.len() != 4 + 2 * 76) {
        return Err(format!(
            "{} withdrawal requests in executionRequests, {wanted} sent: {withdrawals:?}",
            withdrawals.len()
        ));
    }
    let heads = heads(chain).await?;
    if heads.iter().any(|h| *h != driver.parent) {
        return Err(format!(
            "geth heads {heads:?}, the driver's {}",
            driver.parent
        ));
    }
    Ok(json!({
        "seconds": seconds(start),
        "slots": built.len(),
        "blocks": built.len(),
        "blob_blocks": blob_blocks,
        "blobs": blobs,
        "transactions": built.iter().map(|s| s.transactions).sum::<usize>(),
        "transactions_succeeded": succeeded,
        "blocks_with_requests": built.iter().filter(|s| !s.requests.is_empty()).count(),
        "withdrawal_requests": withdrawals.len(),
        "get_blobs_checked": blob_txs.len().min(HAPPY_SLOTS as usize),
        "get_blobs_served": served,
    }))
}

/// 2. `engine_exchangeCapabilities` through eb is the intersection of the geths' own lists.
pub async fn capabilities(chain: &Chain) -> Result<Value, String> {
    let asked: Vec<String> = [
        "engine_newPayloadV4",
        "engine_newPayloadV5",
        "engine_forkchoiceUpdatedV3",
        "engine_forkchoiceUpdatedV4",
        "engine_getPayloadV4",
        "engine_getPayloadV5",
        "engine_getPayloadV6",
        "engine_getBlobsV1",
        "engine_getBlobsV2",
        "engine_getBlobsV3",
        "engine_getClientVersionV1",
    ]
    .map(String::from)
    .to_vec();
    let mut through: Vec<Value> = chain
        .engine
        .call("engine_exchangeCapabilities", json!([asked]))
        .await?
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut common: Option<Vec<Value>> = None;
    for el in &chain.geths {
        let own = el
            .authrpc
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
    common.sort_by_key(Value::to_string);
    through.sort_by_key(Value::to_string);
    if through != common {
        return Err(format!(
            "through eb {through:?}, the geths' intersection {common:?}"
        ));
    }
    Ok(json!({"through_eb": through}))
}

/// The ELs' `getClientVersionV1` through eb: `name version` of each.
pub async fn client_versions(chain: &Chain) -> Result<Vec<String>, String> {
    let versions = chain
        .engine
        .call(
            "engine_getClientVersionV1",
            json!([{"code": "EB", "name": "eb-chain", "version": "0", "commit": "0x00000000"}]),
        )
        .await?;
    let versions = versions.as_array().cloned().unwrap_or_default();
    if versions.len() != ELS || versions.iter().any(|v| v["code"] != "GE") {
        return Err(format!("getClientVersionV1 through eb: {versions:?}"));
    }
    Ok(versions
        .iter()
        .map(|v| {
            format!(
                "{} {}",
                v["name"].as_str().unwrap_or("?"),
                v["version"].as_str().unwrap_or("?")
            )
        })
        .collect())
}

/// 3. eb's primary geth SIGKILLed: `DEAD_SLOTS` slots still VALID from the other two; then it
///    is restarted on its data and catches up from its peers while the chain goes on.
pub async fn primary_killed(chain: &mut Chain, driver: &mut Driver) -> Result<Value, String> {
    let start = Instant::now();
    let killed = primary(&chain.admin.status().await?).ok_or("eb names no primary")?;
    chain.kill(killed);
    let from = driver.built.len();
    for _ in 0..DEAD_SLOTS {
        driver.valid_slot(chain).await?;
    }
    let dead = summary(&driver.built[from..]);
    let head_before = chain.geths[killed].rpc.block("latest").await.ok();
    chain.restart(killed, None).await?;
    let (number, _) = chain.geths[killed].rpc.block("latest").await?;
    let restarted_at = number;
    let slots = catch_up(chain, driver, killed).await?;
    let new_primary = primary(&chain.admin.status().await?);
    Ok(json!({
        "seconds": seconds(start),
        "killed": killed,
        "while_dead": dead,
        "restarted_at_block": restarted_at,
        "head_seen_while_dead": head_before.map(|h| h.0),
        "caught_up_after_slots": slots,
        "primary_after": new_primary,
    }))
}

/// 4. eb's primary geth frozen (SIGSTOP) for `FROZEN_SLOTS` slots: every newPayload answered
///    VALID within `FROZEN_ANSWER`; after SIGCONT it follows the head again.
pub async fn frozen_el(chain: &mut Chain, driver: &mut Driver) -> Result<Value, String> {
    let start = Instant::now();
    let frozen = primary(&chain.admin.status().await?).ok_or("eb names no primary")?;
    chain.freeze(frozen, true);
    let from = driver.built.len();
    let mut outcome = Ok(());
    for _ in 0..FROZEN_SLOTS {
        if let Err(e) = driver.valid_slot(chain).await {
            outcome = Err(e);
            break;
        }
    }
    chain.freeze(frozen, false);
    outcome?;
    let slots = &driver.built[from..];
    if let Some(slow) = slots.iter().find(|s| s.new_payload_time > FROZEN_ANSWER) {
        return Err(format!(
            "slot {}: newPayload took {:?} with geth {frozen} frozen",
            slow.slot, slow.new_payload_time
        ));
    }
    let while_frozen = summary(slots);
    let caught = catch_up(chain, driver, frozen).await?;
    Ok(json!({
        "seconds": seconds(start),
        "frozen": frozen,
        "while_frozen": while_frozen,
        "caught_up_after_slots": caught,
    }))
}

/// 5. The stand-in in front of geth `LIAR` turns its VALID newPayload answers into INVALID:
///    eb answers SYNCING, never VALID; once the node is re-added with `#do-not-use`, VALID again.
pub async fn lying_el(chain: &Chain, driver: &mut Driver) -> Result<Value, String> {
    let start = Instant::now();
    let standin = chain.standin()?;
    standin.lie();
    let from = driver.built.len();
    for _ in 0..LIAR_SLOTS {
        driver.slot(chain).await?;
    }
    let lying = &driver.built[from..];
    if let Some(wrong) = lying.iter().find(|s| s.new_payload != "SYNCING") {
        return Err(format!(
            "slot {}: newPayload answered {} while geth {LIAR} lied",
            wrong.slot, wrong.new_payload
        ));
    }
    let while_lying = summary(lying);
    let spec = format!(
        "{}#jwt-secret={}#do-not-use",
        standin.url,
        chain.work.join(format!("el{LIAR}.hex")).display()
    );
    chain.admin.remove_node(LIAR).await?;
    chain.admin.add_node(&spec).await?;
    let admin = &chain.admin;
    until("the liar back in eb", Duration::from_secs(30), || async {
        let status = admin.status().await.ok()?;
        let nodes = status["nodes"].as_array()?;
        (nodes.len() == ELS).then_some(())
    })
    .await?;
    let from = driver.built.len();
    for _ in 0..LIAR_SLOTS {
        driver.valid_slot(chain).await?;
    }
    Ok(json!({
        "seconds": seconds(start),
        "lies_told": standin.lies(),
        "while_lying": while_lying,
        "after_do_not_use": summary(&driver.built[from..]),
    }))
}

/// What the recording shows: no VALID newPayload beside the liar's counted INVALID, and every
/// answered vote carrying geth's client code.
pub fn safety_and_codes(cases: &[Case]) -> Result<Value, String> {
    let unsafe_valid: Vec<&str> = cases
        .iter()
        .filter(|c| c.method == "newPayload" && liar_counted(c) && follows_valid(c))
        .map(|c| c.name.as_str())
        .collect();
    if !unsafe_valid.is_empty() {
        return Err(format!(
            "VALID beside the liar's counted INVALID: {unsafe_valid:?}"
        ));
    }
    let answered = ["VALID", "INVALID", "SYNCING", "ACCEPTED"];
    let uncoded: Vec<&str> = cases
        .iter()
        .filter(|c| {
            c.votes
                .iter()
                .any(|v| answered.contains(&v.status.as_str()) && v.client.as_deref() != Some("GE"))
        })
        .map(|c| c.name.as_str())
        .collect();
    if !uncoded.is_empty() {
        return Err(format!("votes without geth's client code in {uncoded:?}"));
    }
    let ignored = cases.iter().filter(|c| liar_ignored(c)).count();
    Ok(json!({"decisions": cases.len(), "liar_ignored_decisions": ignored}))
}

/// eb's added latency on newPayload: its answer time seen by the driver minus the fastest EL's
/// own time in that decision, over `slots`, in ms.
fn added_latency(cases: &[Case], slots: &[Built]) -> Result<Value, String> {
    let mut added: Vec<f64> = slots
        .iter()
        .filter_map(|slot| {
            let case = cases.iter().find(|c| {
                c.method == "newPayload" && c.block_hash.as_deref() == Some(&slot.hash)
            })?;
            let fastest = case
                .votes
                .iter()
                .filter(|v| !v.late && v.status == "VALID")
                .map(|v| v.latency_ms)
                .reduce(f64::min)?;
            Some(slot.new_payload_time.as_secs_f64() * 1e3 - fastest)
        })
        .collect();
    if added.is_empty() || added.len() != slots.len() {
        return Err(format!(
            "{} of {} newPayloads found in the recording",
            added.len(),
            slots.len()
        ));
    }
    added.sort_by(f64::total_cmp);
    Ok(quantiles(&added))
}

/// p50, p99 and max of sorted `values`, rounded to 0.01.
pub fn quantiles(sorted: &[f64]) -> Value {
    let q = |q: f64| {
        sorted
            .get(((sorted.len().max(1) - 1) as f64 * q) as usize)
            .map_or(0.0, |v| (v * 100.0).round() / 100.0)
    };
    json!({"p50": q(0.5), "p99": q(0.99), "max": q(1.0)})
}

/// `eb policy test` over the recording: its summary line, an error when a case failed.
pub fn replay(votes: &Path) -> Result<Value, String> {
    let (report, passed) =
        eb::cli::policy::test(None, "", &[votes.to_owned()]).map_err(|e| e.to_string())?;
    let summary = report.lines().last().unwrap_or_default().to_owned();
    if passed {
        Ok(json!(summary))
    } else {
        Err(summary)
    }
}

/// The scenarios' outcomes as the report lists them, and the first failure.
#[derive(Default)]
pub struct Outcomes {
    list: Vec<Value>,
    failure: Option<String>,
}

impl Outcomes {
    /// Adds one scenario's outcome; whether it passed.
    pub fn record(&mut self, name: &str, outcome: Result<Value, String>) -> bool {
        let passed = outcome.is_ok();
        match outcome {
            Ok(detail) => self
                .list
                .push(json!({"name": name, "passed": true, "detail": detail})),
            Err(e) => {
                self.list
                    .push(json!({"name": name, "passed": false, "error": e}));
                self.failure.get_or_insert(format!("{name}: {e}"));
            }
        }
        passed
    }

    /// The checks every run makes beside its own: getClientVersionV1 and exchangeCapabilities
    /// through eb; the ELs' `name version`.
    pub async fn identities(&mut self, chain: &Chain) -> Vec<String> {
        let els = client_versions(chain).await;
        let versions = els.clone().unwrap_or_default();
        self.record("getClientVersionV1 through eb", els.map(|v| json!(v)));
        self.record(
            "exchangeCapabilities is the geths' intersection",
            capabilities(chain).await,
        );
        versions
    }

    /// Stops eb (its recording is then complete), checks and replays the recording; eb's
    /// `eb_requests_total` and the recorded decisions.
    pub async fn recording(&mut self, chain: &mut Chain) -> (Value, Vec<Case>) {
        let answers = chain.admin.answers().await.unwrap_or_default();
        chain.stop_eb();
        let votes = chain.work.join("votes.jsonl");
        let cases = recorded(&votes);
        self.record(
            "recording: safety and client codes",
            safety_and_codes(&cases),
        );
        self.record("replay with eb policy test", replay(&votes));
        (answers, cases)
    }

    /// `report` with the scenarios in it, or the first failure with the report.
    pub fn finish(self, mut report: Value) -> Result<Value, String> {
        report["scenarios"] = json!(self.list);
        match self.failure {
            None => Ok(report),
            Some(e) => Err(format!("{e}\n{report:#}")),
        }
    }
}

/// Every scenario on one chain, its blob transactions with sidecars of `sidecar_version`, and
/// the report (the JSON object `eb-chain` prints last).
pub async fn run(chain: &mut Chain, txgen: &Path, sidecar_version: u8) -> Result<Value, String> {
    let start = Instant::now();
    let plan = Plan {
        transfers: 5,
        withdrawals: 1,
        blob_txs: BLOB_TXS,
        sidecar_version,
    };
    let txs = txs::sign(txgen, CHAIN_ID, &plan)?;
    let mut driver = Driver::at_genesis(chain).await?;
    let mut outcomes = Outcomes::default();
    let happy = happy_path(chain, &mut driver, &txs).await;
    let happy_slots = driver.built.clone();
    let totals = happy.as_ref().ok().cloned().unwrap_or_default();
    let passed = outcomes.record("happy path", happy);
    let versions = outcomes.identities(chain).await;
    let passed = passed
        && outcomes.record(
            "primary geth killed and restarted",
            primary_killed(chain, &mut driver).await,
        );
    let passed = passed
        && outcomes.record(
            "geth frozen (SIGSTOP) and thawed",
            frozen_el(chain, &mut driver).await,
        );
    if passed {
        let lying = lying_el(chain, &mut driver).await;
        outcomes.record("lying geth, then #do-not-use", lying);
    }
    let (answers, cases) = outcomes.recording(chain).await;
    let latency = added_latency(&cases, &happy_slots);
    let latency_report = latency.clone().unwrap_or_default();
    outcomes.record("recording: eb's added latency on newPayload", latency);
    outcomes.finish(json!({
        "fork": chain.fork.name(),
        "cl": "driver",
        "els": versions,
        "slots": driver.slot,
        "blocks": driver.built.iter().filter(|s| s.new_payload != "INVALID").count(),
        "blob_blocks": driver.built.iter().filter(|s| s.blobs > 0).count(),
        "blobs": driver.built.iter().map(|s| s.blobs).sum::<usize>(),
        "happy_path": totals,
        "new_payload_added_ms": latency_report,
        "eb_requests_total": answers,
        "seconds": seconds(start),
    }))
}
