//! The devnet scenarios, each asserted: it returns a report of what it saw, or an error saying
//! what did not happen.

use super::observe::{follows_valid, liar_counted, liar_ignored, node_state, primary, recorded};
use super::{now_ms, Devnet, ELS, LIAR, SLOT, SLOTS_PER_EPOCH};
use policy_sdk::fixture::{Action, Case};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// Slots in a row that must have blocks on the happy path.
const HAPPY_SLOTS: u64 = 20;
/// Transactions sent through eb on the happy path.
const TRANSACTIONS: usize = 5;
/// Slots to watch after the primary EL is killed.
const KILL_WATCH_SLOTS: u64 = 8;
/// Slots the primary EL stays frozen.
const FREEZE_SLOTS: u64 = 12;
/// Longest eb may take to answer a newPayload while an EL is frozen.
const FROZEN_ANSWER_MS: u32 = 1_000;
/// newPayload decisions to see in each phase of the lying-EL scenario.
const LIAR_DECISIONS: usize = 3;

/// `n` slots of time.
pub(crate) fn slots(n: u64) -> Duration {
    SLOT * n as u32
}

/// Seconds since `start`, to a tenth.
pub(crate) fn seconds(start: Instant) -> f64 {
    (start.elapsed().as_secs_f64() * 10.0).round() / 10.0
}

/// Which of `from..=to` have no block.
pub(crate) async fn missed_slots(devnet: &Devnet, from: u64, to: u64) -> Result<Vec<u64>, String> {
    let mut missed = Vec::new();
    for slot in from..=to {
        if !devnet.beacon.has_block(slot).await? {
            missed.push(slot);
        }
    }
    Ok(missed)
}

/// Waits `watch` slots past `from` (`what` happened then): the last slot watched, and the
/// slots without a block since (at most one).
pub(crate) async fn blocks_after(
    devnet: &Devnet,
    from: u64,
    watch: u64,
    what: &str,
) -> Result<(u64, Vec<u64>), String> {
    let beacon = &devnet.beacon;
    let watched_to = devnet
        .until(
            &format!("blocks after {what}"),
            slots(watch + 6),
            || async {
                let (head, _) = beacon.syncing().await.ok()?;
                (head >= from + watch).then_some(head)
            },
        )
        .await?;
    let missed = missed_slots(devnet, from + 1, watched_to).await?;
    if missed.len() > 1 {
        return Err(format!(
            "slots without a block after {what} at slot {from}: {missed:?}"
        ));
    }
    Ok((watched_to, missed))
}

/// What the devnet's report leads with: the CL's version, each EL's (`web3_clientVersion`), and
/// the blocks in the CL's chain so far.
pub async fn summary(devnet: &Devnet) -> Result<Value, String> {
    let cl = devnet.beacon.version().await?;
    let mut els = Vec::new();
    for el in &devnet.els {
        els.push(el.rpc.call("web3_clientVersion", json!([])).await?);
    }
    let (head, _) = devnet.beacon.syncing().await?;
    let missed = missed_slots(devnet, 1, head).await?;
    Ok(json!({"cl": cl, "els": els, "blocks": head - missed.len() as u64, "blob_blocks": 0}))
}

/// The longest run of consecutive slots with blocks in `1..=head`, and the slots without.
async fn block_runs(devnet: &Devnet, head: u64) -> Result<(u64, Vec<u64>), String> {
    let missed = missed_slots(devnet, 1, head).await?;
    let mut longest = 0;
    let mut previous = 0;
    for gap in missed.iter().copied().chain([head + 1]) {
        longest = longest.max(gap - previous - 1);
        previous = gap;
    }
    Ok((longest, missed))
}

/// Where the chain is once the three ELs and the CL agree on a head (waiting up to `limit`):
/// the CL's head slot and finalized epoch, and each EL's latest block.
pub(crate) async fn chain(devnet: &Devnet, limit: Duration) -> Result<Value, String> {
    let heads = devnet.same_head(limit).await?;
    let (head_slot, _) = devnet.beacon.syncing().await?;
    let finalized_epoch = devnet.beacon.finalized_epoch().await?;
    let head = |(number, hash): &(u64, String)| json!({"number": number, "hash": hash});
    Ok(json!({
        "head_slot": head_slot,
        "finalized_epoch": finalized_epoch,
        "common_head": head(&heads[0]),
        "el_heads": heads.iter().map(head).collect::<Vec<_>>(),
    }))
}

/// 1. Blocks in ≥ 20 consecutive slots, a finalized epoch, the transactions included on every
///    EL, and the three ELs on the CL's head.
pub async fn happy_path(devnet: &Devnet) -> Result<Value, String> {
    let start = Instant::now();
    let beacon = &devnet.beacon;
    devnet
        .until("the first block", Duration::from_secs(120), || async {
            beacon.syncing().await.ok().filter(|s| s.0 > 0)
        })
        .await?;
    let txs = devnet.sign_transactions(TRANSACTIONS)?;
    for (raw, hash) in &txs {
        let answer = devnet
            .engine
            .call("eth_sendRawTransaction", json!([raw]))
            .await?;
        if answer != *hash {
            return Err(format!(
                "eth_sendRawTransaction through eb answered {answer}, expected {hash}"
            ));
        }
    }
    let (head, finalized) = devnet
        .until(
            &format!("a finalized epoch and {HAPPY_SLOTS}+ slots"),
            slots(6 * SLOTS_PER_EPOCH),
            || async {
                let (head, _) = beacon.syncing().await.ok()?;
                let finalized = beacon.finalized_epoch().await.ok()?;
                (finalized >= 1 && head > HAPPY_SLOTS + 2).then_some((head, finalized))
            },
        )
        .await?;
    let (longest, missed) = block_runs(devnet, head).await?;
    if longest < HAPPY_SLOTS {
        return Err(format!(
            "longest run of slots with blocks is {longest} (< {HAPPY_SLOTS}); slots without: {missed:?}"
        ));
    }
    for el in &devnet.els {
        for (_, hash) in &txs {
            let receipt = devnet
                .until(
                    &format!("receipt of {hash} on EL {}", el.index),
                    slots(4),
                    || async {
                        el.rpc
                            .call("eth_getTransactionReceipt", json!([hash]))
                            .await
                            .ok()
                            .filter(|r| !r.is_null())
                    },
                )
                .await?;
            if receipt["status"] != "0x1" {
                return Err(format!(
                    "EL {}: transaction {hash} failed: {receipt}",
                    el.index
                ));
            }
        }
    }
    Ok(json!({
        "seconds": seconds(start),
        "checked_slots": [1, head],
        "longest_run_of_slots_with_blocks": longest,
        "slots_without_block": missed,
        "finalized_epoch_reached": finalized,
        "transactions_included": txs.len(),
        "chain": chain(devnet, slots(5)).await?,
    }))
}

/// The newPayload decisions recorded after `since_ms`.
pub(crate) fn new_payloads_since(votes: &Path, since_ms: u64) -> Vec<Case> {
    recorded(votes)
        .into_iter()
        .filter(|c| c.method == "newPayload" && c.recorded_at_ms.unwrap_or(0) > since_ms)
        .collect()
}

/// 2. The primary EL is killed: blocks go on (at most the slot in flight is missed), eb shows
///    the EL offline and another primary; restarted, it is synced and votes VALID again.
pub async fn primary_killed(devnet: &mut Devnet) -> Result<Value, String> {
    let start = Instant::now();
    let status = devnet.admin.status().await?;
    let victim = primary(&status).ok_or_else(|| format!("eb has no primary: {status}"))?;
    let (kill_slot, _) = devnet.beacon.syncing().await?;
    devnet.kill_el(victim);
    let killed_ms = now_ms();
    let admin = &devnet.admin;
    let new_primary = devnet
        .until(
            "eb to mark the killed EL offline and pick another primary",
            slots(10),
            || async {
                let status = admin.status().await.ok()?;
                let (state, _) = node_state(&status, victim);
                let now = primary(&status)?;
                (state == "offline" && now != victim).then_some(now)
            },
        )
        .await?;
    let what = format!("EL {victim} was killed");
    let (watched_to, missed) = blocks_after(devnet, kill_slot, KILL_WATCH_SLOTS, &what).await?;
    let restarted = Instant::now();
    devnet.restart_el(victim).await?;
    let restarted_ms = now_ms();
    let admin = &devnet.admin;
    devnet
        .until(
            "the restarted EL to be synced in eb's status",
            slots(15),
            || async {
                let status = admin.status().await.ok()?;
                (node_state(&status, victim).0 == "synced").then_some(())
            },
        )
        .await?;
    let votes = devnet.paths.votes();
    devnet
        .until(
            "the restarted EL to vote VALID on newPayload",
            slots(30),
            || async {
                new_payloads_since(&votes, restarted_ms)
                    .iter()
                    .find(|c| {
                        c.votes
                            .iter()
                            .any(|v| v.node == victim as u16 && v.status == "VALID")
                    })
                    .map(|_| ())
            },
        )
        .await?;
    let caught_up_s = seconds(restarted);
    let down: Vec<Case> = recorded(&votes)
        .into_iter()
        .filter(|c| {
            let at = c.recorded_at_ms.unwrap_or(0);
            c.method == "newPayload" && at > killed_ms && at < restarted_ms
        })
        .collect();
    Ok(json!({
        "seconds": seconds(start),
        "killed_el": victim,
        "killed_at_slot": kill_slot,
        "new_primary": new_primary,
        "watched_slots": [kill_slot + 1, watched_to],
        "slots_without_block": missed,
        "new_payload_verdicts_while_down": {
            "valid": down.iter().filter(|c| follows_valid(c)).count(),
            "other": down.iter().filter(|c| !follows_valid(c)).count(),
        },
        "restart_to_valid_vote_seconds": caught_up_s,
        "chain": chain(devnet, slots(10)).await?,
    }))
}

/// 3. The primary EL frozen with SIGSTOP for [`FREEZE_SLOTS`] slots, then resumed: while frozen
///    a block in every slot (at most one missed), the CL's head follows and the chain keeps
///    finalizing, and eb answers every newPayload in under a second (it still queues every call
///    for the frozen EL); resumed, the EL takes its queued calls, catches up, is on the CL's head
///    and votes VALID again.
pub async fn frozen_el(devnet: &Devnet) -> Result<Value, String> {
    let start = Instant::now();
    let status = devnet.admin.status().await?;
    let victim = primary(&status).ok_or_else(|| format!("eb has no primary: {status}"))?;
    let url = status["nodes"][victim]["url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let late_votes = |text: &str| {
        crate::proxy::sample(text, &format!(r#"eb_late_votes_total{{node="{url}"}}"#))
            .unwrap_or(0.0)
    };
    // eb's own histogram of its answer times, newPayload (V1/V2 in this devnet).
    let answers = |text: &str, le: &str| -> f64 {
        let le = format!(r#"le="{le}""#);
        text.lines()
            .filter(|l| l.starts_with("eb_answer_seconds_bucket{"))
            .filter(|l| l.contains(r#"method="engine_newPayloadV"#) && l.contains(&le))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let before = devnet.admin.metrics().await?;
    let late_before = late_votes(&before);
    let (freeze_slot, _) = devnet.beacon.syncing().await?;
    let finalized_before = devnet.beacon.finalized_epoch().await?;
    devnet.freeze_el(victim, true);
    let frozen_ms = now_ms();
    let frozen_at = Instant::now();
    let beacon = &devnet.beacon;
    let admin = &devnet.admin;
    let most_queued = std::cell::Cell::new(0u64);
    let watched_to = devnet
        .until(
            "slots to pass with the EL frozen",
            slots(FREEZE_SLOTS + 8),
            || async {
                if let Ok(status) = admin.status().await {
                    let queued = status["nodes"][victim]["queue"]["calls"]
                        .as_u64()
                        .unwrap_or(0);
                    most_queued.set(most_queued.get().max(queued));
                }
                let (head, _) = beacon.syncing().await.ok()?;
                (head >= freeze_slot + FREEZE_SLOTS && frozen_at.elapsed() >= slots(FREEZE_SLOTS))
                    .then_some(head)
            },
        )
        .await?;
    let finalized_frozen = devnet.beacon.finalized_epoch().await?;
    let during = devnet.admin.metrics().await?;
    let under_1s = answers(&during, "1.0") - answers(&before, "1.0");
    let all = answers(&during, "+Inf") - answers(&before, "+Inf");
    let status = devnet.admin.status().await?;
    let frozen_state = node_state(&status, victim).0;
    devnet.freeze_el(victim, false);
    let thawed_ms = now_ms();
    let missed = missed_slots(devnet, freeze_slot + 1, watched_to).await?;
    if missed.len() > 1 {
        return Err(format!(
            "slots without a block while EL {victim} was frozen (slot {freeze_slot} on): {missed:?}"
        ));
    }
    if finalized_frozen <= finalized_before {
        return Err(format!(
            "the chain stopped finalizing while EL {victim} was frozen: epoch {finalized_before} → {finalized_frozen}"
        ));
    }
    if all == 0.0 || under_1s < all {
        return Err(format!(
            "eb answered {all} newPayloads while the EL was frozen, {under_1s} of them within 1 s"
        ));
    }
    if most_queued.get() == 0 {
        return Err(format!("eb never queued a call for the frozen EL {victim}"));
    }
    let thawed = Instant::now();
    let admin = &devnet.admin;
    devnet
        .until("the resumed EL's queue to drain", slots(20), || async {
            let status = admin.status().await.ok()?;
            (status["nodes"][victim]["queue"]["calls"].as_u64() == Some(0)).then_some(())
        })
        .await?;
    // A decision is written to the recording once its late votes are in: read it now.
    let votes = devnet.paths.votes();
    let frozen: Vec<Case> = new_payloads_since(&votes, frozen_ms)
        .into_iter()
        .filter(|c| c.recorded_at_ms.unwrap_or(0) < thawed_ms)
        .collect();
    let slowest = frozen.iter().map(|c| c.elapsed_ms).max().unwrap_or(0);
    if frozen.is_empty() || slowest >= FROZEN_ANSWER_MS {
        return Err(format!(
            "{} newPayload decisions while frozen, the slowest in {slowest} ms (limit {FROZEN_ANSWER_MS} ms)",
            frozen.len()
        ));
    }
    let not_valid = frozen.iter().filter(|c| !follows_valid(c)).count();
    devnet
        .until(
            "the resumed EL to vote VALID on newPayload",
            slots(30),
            || async {
                new_payloads_since(&votes, thawed_ms)
                    .iter()
                    .find(|c| {
                        c.votes
                            .iter()
                            .any(|v| v.node == victim as u16 && v.status == "VALID" && !v.late)
                    })
                    .map(|_| ())
            },
        )
        .await?;
    let caught_up_s = seconds(thawed);
    let chain = chain(devnet, slots(10)).await?;
    let late_after = late_votes(&devnet.admin.metrics().await?);
    Ok(json!({
        "seconds": seconds(start),
        "frozen_el": victim,
        "frozen_at_slot": freeze_slot,
        "watched_slots": [freeze_slot + 1, watched_to],
        "slots_without_block": missed,
        "finalized_epoch": [finalized_before, finalized_frozen],
        "state_in_eb_while_frozen": frozen_state,
        "new_payload_decisions_while_frozen": frozen.len(),
        "new_payload_not_valid_while_frozen": not_valid,
        "slowest_new_payload_decision_ms": slowest,
        "new_payload_answers_while_frozen": {"total": all, "within_1s": under_1s},
        "most_calls_queued_for_it": most_queued.get(),
        "its_late_answers": late_after - late_before,
        "thaw_to_valid_vote_seconds": caught_up_s,
        "chain": chain,
    }))
}

/// What the stand-in's lies did, from [`lie_until_optimistic`].
pub(crate) struct Lied {
    /// The CL's head slot when the lying began, and when it was seen to work.
    pub slots: (u64, u64),
    /// When it was seen to work.
    pub until_ms: u64,
    /// The newPayload decisions made meanwhile.
    pub cases: Vec<Case>,
    /// Whether the CL went optimistic.
    pub optimistic: bool,
}

/// Makes the stand-in lie until `LIAR_DECISIONS` newPayload decisions counted the lie and the
/// CL went optimistic.
pub(crate) async fn lie_until_optimistic(devnet: &Devnet) -> Result<Lied, String> {
    let (lie_slot, _) = devnet.beacon.syncing().await?;
    let since = now_ms();
    devnet.standin.lie();
    let votes = devnet.paths.votes();
    let beacon = &devnet.beacon;
    let optimistic_seen = std::cell::Cell::new(false);
    devnet
        .until(
            "the CL to be answered SYNCING for the lied-about blocks and go optimistic",
            slots(20),
            || async {
                if beacon.syncing().await.is_ok_and(|s| s.1) {
                    optimistic_seen.set(true);
                }
                let lied = new_payloads_since(&votes, since)
                    .into_iter()
                    .filter(liar_counted)
                    .count();
                (lied >= LIAR_DECISIONS && optimistic_seen.get()).then_some(())
            },
        )
        .await?;
    let (switch_slot, _) = devnet.beacon.syncing().await?;
    let until_ms = now_ms();
    let cases = new_payloads_since(&votes, since)
        .into_iter()
        .filter(|c| c.recorded_at_ms.unwrap_or(0) <= until_ms)
        .collect();
    Ok(Lied {
        slots: (lie_slot, switch_slot),
        until_ms,
        cases,
        optimistic: optimistic_seen.get(),
    })
}

/// 3. One EL lies (VALID → INVALID on newPayload): the CL is answered SYNCING, never VALID, and
///    goes optimistic; re-adding that EL as `#do-not-use` (hot, through the admin API) restores
///    VALID answers and the CL leaves optimistic mode.
pub async fn lying_el(devnet: &Devnet) -> Result<Value, String> {
    let start = Instant::now();
    let Lied {
        slots: (lie_slot, switch_slot),
        until_ms: switch_ms,
        cases: lying,
        optimistic: optimistic_seen,
    } = lie_until_optimistic(devnet).await?;
    let votes = devnet.paths.votes();
    let beacon = &devnet.beacon;

    let spec = format!(
        "{}#jwt-secret={}#client=EJ#do-not-use",
        devnet.standin.url,
        devnet.paths.work.join(format!("el{LIAR}.hex")).display()
    );
    devnet.admin.remove_node(LIAR).await?;
    devnet.admin.add_node(&spec).await?;
    devnet
        .until(
            "VALID answers with the liar ignored, and the CL no longer optimistic",
            slots(20),
            || async {
                let ignored = new_payloads_since(&votes, switch_ms)
                    .into_iter()
                    .filter(liar_ignored)
                    .count();
                let optimistic = beacon.syncing().await.ok()?.1;
                (ignored >= LIAR_DECISIONS && !optimistic).then_some(())
            },
        )
        .await?;
    let after: Vec<Case> = new_payloads_since(&votes, switch_ms)
        .into_iter()
        .filter(liar_ignored)
        .collect();

    // The safety claim, over the whole recording: no VALID answer while the lie was counted.
    let all = recorded(&votes);
    let unsafe_valid: Vec<&str> = all
        .iter()
        .filter(|c| c.method == "newPayload" && liar_counted(c) && follows_valid(c))
        .map(|c| c.name.as_str())
        .collect();
    if !unsafe_valid.is_empty() {
        return Err(format!(
            "VALID answered beside the liar's counted INVALID: {unsafe_valid:?}"
        ));
    }
    let not_valid_after: Vec<&str> = after
        .iter()
        .filter(|c| !follows_valid(c))
        .map(|c| c.name.as_str())
        .collect();
    if !not_valid_after.is_empty() {
        return Err(format!(
            "not VALID with the liar ignored: {not_valid_after:?}"
        ));
    }
    let count = |cases: &[Case], f: fn(&Case) -> bool| cases.iter().filter(|c| f(c)).count();
    Ok(json!({
        "seconds": seconds(start),
        "lies_told": devnet.standin.lies(),
        "lying_from_slot": lie_slot,
        "do_not_use_from_slot": switch_slot,
        "while_lie_counted": {
            "new_payload_decisions": lying.len(),
            "valid": count(&lying, follows_valid),
            "syncing": count(&lying, |c| c.expect.action == Action::Syncing),
            "cl_went_optimistic": optimistic_seen,
        },
        "after_do_not_use": {
            "new_payload_decisions": after.len(),
            "valid": count(&after, follows_valid),
            "syncing": count(&after, |c| c.expect.action == Action::Syncing),
        },
        "requests_through_stand_in": devnet.standin.forwarded(),
        "chain": chain(devnet, slots(5)).await?,
    }))
}

/// 4. The recording replays through `eb policy test` (default policy) with 0 mismatches.
///
/// Call after eb has stopped, so the recording is complete.
pub fn replay(devnet: &Devnet) -> Result<Value, String> {
    let start = Instant::now();
    let votes = devnet.paths.votes();
    let recording = recorded(&votes);
    let cases = recording.len();
    let mut command = std::process::Command::new(&devnet.paths.eb);
    command.args(["policy", "test"]);
    if let Some(policy) = &devnet.paths.policy {
        command.arg("--policy").arg(policy);
    }
    let output = command
        .arg(&votes)
        .output()
        .map_err(|e| format!("eb policy test: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout.lines().last().unwrap_or_default().to_owned();
    if !output.status.success() || cases == 0 || summary != format!("{cases} passed, 0 failed") {
        return Err(format!(
            "eb policy test {} ({cases} cases): {}\n{stdout}{}",
            votes.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let methods = |m: &str| recording.iter().filter(|c| c.method == m).count();
    Ok(json!({
        "seconds": seconds(start),
        "cases": cases,
        "new_payload": methods("newPayload"),
        "forkchoice_updated": methods("forkchoiceUpdated") + methods("forkchoiceUpdatedWithAttributes"),
        "summary": summary,
        "els": ELS,
    }))
}
