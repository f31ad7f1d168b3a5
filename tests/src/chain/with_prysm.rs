//! The scenarios with Prysm as the CL (Fulu, `prysm.rs`) in front of eb and the three geths:
//! Prysm's validators propose and import every block through eb while transfers, a withdrawal
//! request and blob transactions are sent through eb; then eb's primary geth is frozen and the
//! validators keep proposing.

use super::driver::check_blobs;
use super::prysm::{Prysm, SLOT};
use super::scenarios::{quantiles, Outcomes};
use super::txs::{self, Plan, Tx};
use super::Chain;
use crate::devnet::observe::{primary, recorded};
use crate::devnet::scenarios::seconds;
use crate::devnet::{now_ms, until, CHAIN_ID};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// Slots the happy path runs.
pub const SLOTS: u64 = 32;
/// Blob transactions, one per slot from the first.
const BLOB_TXS: usize = 10;
/// Blocks that must carry blobs.
const BLOB_BLOCKS: usize = 8;
/// Slots eb's primary geth stays frozen.
const FROZEN_SLOTS: u64 = 6;
/// Slots without a block allowed in a phase (the first slot after genesis may go unproposed).
const MISSED_ALLOWED: usize = 1;

/// Waits until Prysm's head is at `slot` or past it; fails at once when Prysm has exited.
pub(super) async fn head_at(prysm: &Prysm, slot: u64, limit: Duration) -> Result<u64, String> {
    let api = &prysm.api;
    let head = until(&format!("Prysm's head at slot {slot}"), limit, || async {
        if prysm.exited().is_some() {
            return Some(None);
        }
        let (head, _) = api.syncing().await.ok()?;
        (head >= slot).then_some(Some(head))
    })
    .await?;
    head.ok_or_else(|| prysm.exited().unwrap_or_default())
}

/// The slots in `from..=to` without a block.
pub(super) async fn missed(prysm: &Prysm, from: u64, to: u64) -> Result<Vec<u64>, String> {
    let mut missed = Vec::new();
    for slot in from..=to {
        if !prysm.api.has_block(slot).await? {
            missed.push(slot);
        }
    }
    Ok(missed)
}

/// Waits until every geth's latest block is Prysm's head's execution block.
async fn same_head(chain: &Chain, prysm: &Prysm, limit: Duration) -> Result<String, String> {
    until("every geth on Prysm's head", limit, || async {
        let head = prysm.api.head_execution_hash().await.ok()?;
        for el in &chain.geths {
            if el.rpc.block("latest").await.ok()?.1 != head {
                return None;
            }
        }
        Some(head)
    })
    .await
}

/// 1. `SLOTS` slots proposed by Prysm's validators through eb, at most `MISSED_ALLOWED` without
///    a block; transfers and a withdrawal request sent through eb, and a blob transaction in
///    each of the first slots (its blobs read back through eb's getBlobsV2). Then every
///    transaction is included and successful on every geth, ≥ `BLOB_BLOCKS` beacon blocks carry
///    blobs (all sent), one carries the withdrawal request, and every geth is on Prysm's head.
pub async fn happy_path(chain: &Chain, prysm: &Prysm, txs: &[Tx]) -> Result<Value, String> {
    let start = Instant::now();
    head_at(prysm, 1, Duration::from_secs(120)).await?;
    let (blob_txs, others): (Vec<&Tx>, Vec<&Tx>) = txs.iter().partition(|t| t.kind == "blob");
    for tx in &others {
        chain.send(tx).await?;
    }
    for tx in &blob_txs {
        let (slot, _) = prysm.api.syncing().await?;
        chain.send(tx).await?;
        if !check_blobs(chain, tx).await? {
            return Err(format!("getBlobsV2 through eb served none of {}", tx.hash));
        }
        head_at(prysm, slot + 1, SLOT * 3).await?;
    }
    let head = head_at(prysm, SLOTS, SLOT * SLOTS as u32 * 2).await?;
    let empty = missed(prysm, 1, head).await?;
    if empty.len() > MISSED_ALLOWED {
        return Err(format!("slots without a block: {empty:?}"));
    }
    let head_hash = same_head(chain, prysm, SLOT * 3).await?;
    for (i, el) in chain.geths.iter().enumerate() {
        for tx in txs {
            let receipt = el
                .rpc
                .call("eth_getTransactionReceipt", json!([tx.hash]))
                .await?;
            if receipt["status"] != "0x1" {
                return Err(format!(
                    "geth {i}: {} transaction {} not included and successful: {receipt}",
                    tx.kind, tx.hash
                ));
            }
        }
    }
    let (mut blob_blocks, mut blobs, mut withdrawals, mut transactions) = (0, 0, 0, 0);
    for slot in 1..=head {
        let Some(block) = prysm.api.block(slot).await? else {
            continue;
        };
        let body = &block["body"];
        let commitments = body["blob_kzg_commitments"].as_array().map_or(0, Vec::len);
        blob_blocks += usize::from(commitments > 0);
        blobs += commitments;
        withdrawals += body["execution_requests"]["withdrawals"]
            .as_array()
            .map_or(0, Vec::len);
        transactions += body["execution_payload"]["transactions"]
            .as_array()
            .map_or(0, Vec::len);
    }
    let sent_blobs: usize = blob_txs.iter().map(|t| t.blobs.len()).sum();
    if blob_blocks < BLOB_BLOCKS || blobs != sent_blobs {
        return Err(format!(
            "{blobs} of {sent_blobs} blobs in beacon blocks, in {blob_blocks} blocks (≥ {BLOB_BLOCKS} wanted)"
        ));
    }
    let wanted = others.iter().filter(|t| t.kind == "withdrawal").count();
    if withdrawals != wanted {
        return Err(format!(
            "{withdrawals} withdrawal requests in beacon blocks, {wanted} sent"
        ));
    }
    Ok(json!({
        "seconds": seconds(start),
        "head_slot": head,
        "blocks": head as usize - empty.len(),
        "slots_without_block": empty,
        "blob_blocks": blob_blocks,
        "blobs": blobs,
        "transactions": transactions,
        "withdrawal_requests": withdrawals,
        "head": head_hash,
    }))
}

/// 2. eb's primary geth frozen (SIGSTOP) for `FROZEN_SLOTS` slots: the validators still
///    propose (at most `MISSED_ALLOWED` slots without a block); eb's newPayload decisions in
///    that time are reported from the recording; after SIGCONT every geth is on Prysm's head.
pub async fn frozen_el(chain: &Chain, prysm: &Prysm) -> Result<Value, String> {
    let start = Instant::now();
    let frozen = primary(&chain.admin.status().await?).ok_or("eb names no primary")?;
    let (from, _) = prysm.api.syncing().await?;
    let since = now_ms();
    chain.freeze(frozen, true);
    let reached = head_at(prysm, from + FROZEN_SLOTS, SLOT * FROZEN_SLOTS as u32 * 2).await;
    let until_ms = now_ms();
    chain.freeze(frozen, false);
    let to = reached?;
    let empty = missed(prysm, from + 1, to).await?;
    if empty.len() > MISSED_ALLOWED {
        return Err(format!(
            "slots without a block while geth {frozen} was frozen: {empty:?}"
        ));
    }
    same_head(chain, prysm, SLOT * 10).await?;
    let cases = recorded(&chain.work.join("votes.jsonl"));
    let mut times: Vec<f64> = cases
        .iter()
        .filter(|c| c.method == "newPayload")
        .filter(|c| (since..=until_ms).contains(&c.recorded_at_ms.unwrap_or(0)))
        .map(|c| f64::from(c.elapsed_ms))
        .collect();
    times.sort_by(f64::total_cmp);
    Ok(json!({
        "seconds": seconds(start),
        "frozen": frozen,
        "slots": format!("{}..={to}", from + 1),
        "slots_without_block": empty,
        "new_payload_decisions": times.len(),
        "new_payload_decision_ms": quantiles(&times),
    }))
}

/// Every Prysm scenario on one chain, and the report (the JSON object `eb-chain` prints last).
pub async fn run(chain: &mut Chain, prysm: &Prysm, txgen: &Path) -> Result<Value, String> {
    let start = Instant::now();
    let plan = Plan {
        transfers: 5,
        withdrawals: 1,
        blob_txs: BLOB_TXS,
        sidecar_version: 1,
    };
    let txs = txs::sign(txgen, CHAIN_ID, &plan)?;
    let mut outcomes = Outcomes::default();
    let happy = happy_path(chain, prysm, &txs).await;
    let totals = happy.as_ref().ok().cloned().unwrap_or_default();
    let passed = outcomes.record("happy path with Prysm", happy);
    let versions = outcomes.identities(chain).await;
    if passed {
        let frozen = frozen_el(chain, prysm).await;
        outcomes.record("primary geth frozen under Prysm", frozen);
    }
    let cl = prysm.api.version().await.unwrap_or_default();
    let (answers, _) = outcomes.recording(chain).await;
    outcomes.finish(json!({
        "fork": chain.fork.name(),
        "cl": cl,
        "els": versions,
        "slots": totals["head_slot"],
        "blocks": totals["blocks"],
        "blob_blocks": totals["blob_blocks"],
        "blobs": totals["blobs"],
        "eb_requests_total": answers,
        "seconds": seconds(start),
    }))
}
