//! Client diversity for real: Lodestar → eb (`policies/client-diverse`) → two EthereumJS and one
//! geth (EL [`LIAR`], behind the stand-in). The policy answers VALID only when both clients
//! vote VALID, so a geth that lies or stops answering costs liveness (SYNCING: the CL stops
//! attesting and proposing on that head) and never safety.

use super::observe::{follows_valid, liar_counted, recorded};
use super::scenarios::{
    chain, lie_until_optimistic, missed_slots, new_payloads_since, seconds, slots, Lied,
};
use super::{now_ms, Devnet, LIAR};
use policy_sdk::fixture::{Action, Case};
use serde_json::{json, Value};
use std::time::Instant;

/// Slots geth stays frozen.
const FREEZE_SLOTS: u64 = 6;
/// VALID newPayload decisions to see once geth is back.
const VALID_AGAIN: usize = 2;
/// The client-diverse policy's reason for "VALID majority, too few distinct clients".
const TOO_FEW_CLIENTS: u32 = 30;

/// Whether a decision was a SYNCING for too few distinct clients.
fn too_few_clients(case: &Case) -> bool {
    case.expect.action == Action::Syncing && case.expect.reason == Some(TOO_FEW_CLIENTS)
}

/// Whether geth's answer was not in the ballot.
fn without_geth(case: &Case) -> bool {
    let answered = ["VALID", "INVALID", "SYNCING", "ACCEPTED"];
    !case
        .votes
        .iter()
        .any(|v| v.node == LIAR as u16 && !v.late && answered.contains(&v.status.as_str()))
}

/// Waits for `VALID_AGAIN` VALID newPayload decisions after `since_ms` and the CL out of
/// optimistic mode; those decisions.
async fn valid_again(devnet: &Devnet, since_ms: u64, what: &str) -> Result<Vec<Case>, String> {
    let votes = devnet.paths.votes();
    let beacon = &devnet.beacon;
    devnet
        .until(what, slots(20), || async {
            let valid: Vec<Case> = new_payloads_since(&votes, since_ms)
                .into_iter()
                .filter(follows_valid)
                .collect();
            let optimistic = beacon.syncing().await.ok()?.1;
            (valid.len() >= VALID_AGAIN && !optimistic).then_some(valid)
        })
        .await
}

/// The answers of `cases`, counted.
fn answers(cases: &[Case]) -> Value {
    let count = |f: fn(&Case) -> bool| cases.iter().filter(|c| f(c)).count();
    json!({
        "decisions": cases.len(),
        "valid": count(follows_valid),
        "syncing_too_few_clients": count(too_few_clients),
        "syncing": count(|c| c.expect.action == Action::Syncing),
    })
}

/// 2. geth lies (VALID → INVALID on newPayload): every such decision is SYNCING, never VALID,
///    and Lodestar goes optimistic; once geth is honest again, VALID again and Lodestar leaves
///    optimistic mode.
pub async fn lying_geth(devnet: &Devnet) -> Result<Value, String> {
    let start = Instant::now();
    let Lied {
        slots: (from, to),
        until_ms,
        cases,
        optimistic,
    } = lie_until_optimistic(devnet).await?;
    devnet.standin.honest();
    if let Some(wrong) = cases.iter().find(|c| liar_counted(c) && follows_valid(c)) {
        return Err(format!(
            "VALID beside geth's counted INVALID: {}",
            wrong.name
        ));
    }
    let after = valid_again(devnet, until_ms, "VALID again with geth honest").await?;
    Ok(json!({
        "seconds": seconds(start),
        "lies_told": devnet.standin.lies(),
        "lying_slots": [from, to],
        "while_lying": answers(&cases),
        "cl_went_optimistic": optimistic,
        "after_honest": answers(&after),
        "chain": chain(devnet, slots(5)).await?,
    }))
}

/// 3. geth frozen (SIGSTOP) for `FREEZE_SLOTS` slots: with only EthereumJS answering, no
///    decision is VALID (the builds get no payloadId, so no block is proposed: the policy's
///    price); after SIGCONT, VALID again and all ELs on the CL's head.
pub async fn frozen_geth(devnet: &Devnet) -> Result<Value, String> {
    let start = Instant::now();
    let (from, _) = devnet.beacon.syncing().await?;
    let since = now_ms();
    devnet.freeze_el(LIAR, true);
    tokio::time::sleep(slots(FREEZE_SLOTS)).await;
    devnet.freeze_el(LIAR, false);
    let thawed = now_ms();
    let after = valid_again(devnet, thawed, "VALID again with geth thawed").await?;
    // Decisions made without geth's answer (it was cut, or answered late): lines are written
    // once every EL answered, so these come in after the thaw.
    let frozen: Vec<Case> = recorded(&devnet.paths.votes())
        .into_iter()
        .filter(|c| c.recorded_at_ms.unwrap_or(0) > since && without_geth(c))
        .collect();
    if frozen.is_empty() {
        return Err("no decision was made without geth".into());
    }
    if let Some(valid) = frozen.iter().find(|c| follows_valid(c)) {
        return Err(format!("VALID from EthereumJS alone: {}", valid.name));
    }
    let empty = missed_slots(devnet, from + 1, from + FREEZE_SLOTS).await?;
    Ok(json!({
        "seconds": seconds(start),
        "frozen_from_slot": from,
        "while_frozen": answers(&frozen),
        "slots_without_block": empty,
        "after_thaw": answers(&after),
        "chain": chain(devnet, slots(10)).await?,
    }))
}
