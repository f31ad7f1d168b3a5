//! The replicated devnet's scenario: Lodestar with two eb replicas as its `--execution.urls`
//! (`a` first), sharing a 3-member etcd. Replica `a` is SIGKILLed the moment it answered a
//! forkchoiceUpdated with attributes; replica `b` must serve that build's getPayload and lead,
//! the chain must lose at most one slot, and `a` restarted must rejoin.

use super::observe::{follows_valid, recorded, Admin};
use super::scenarios::{blocks_after, slots};
use super::Devnet;
use crate::proxy::sample;
use policy_sdk::fixture::{Action, Case};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Slots watched after the kill, and after the restart.
const WATCH_SLOTS: u64 = 6;

/// A replica's `/status.cluster.role`.
async fn role(admin: &Admin) -> Option<String> {
    let status = admin.status().await.ok()?;
    status["cluster"]["role"].as_str().map(str::to_owned)
}

/// A replica's metric sample (0 when absent).
async fn metric(admin: &Admin, series: &str) -> f64 {
    let text = admin.metrics().await.unwrap_or_default();
    sample(&text, series).unwrap_or(0.0)
}

/// Final answers (VALID or INVALID) by block hash, from a recording.
fn final_answers(cases: &[Case]) -> HashMap<String, bool> {
    cases
        .iter()
        .filter(|c| c.pending == 0 && c.expect.action == Action::Follow)
        .filter_map(|c| {
            let valid = follows_valid(c);
            let invalid = c.expect.status.as_deref() == Some("INVALID");
            let hash = c.block_hash.clone()?.to_ascii_lowercase();
            (valid || invalid).then_some((format!("{}:{hash}", c.method), valid))
        })
        .collect()
}

/// Blocks one replica's recording answered VALID and the other's INVALID.
fn opposite_answers(a: &[Case], b: &[Case]) -> usize {
    let (a, b) = (final_answers(a), final_answers(b));
    a.iter()
        .filter(|(block, valid)| b.get(*block).is_some_and(|other| other != *valid))
        .count()
}

/// Waits until the chain has blocks through replica `a`, leading; kills `a` right after it
/// answers a build; checks the chain, `b`'s shared build and lease, then restarts `a`.
pub async fn replica_killed(devnet: &mut Devnet) -> Result<Value, String> {
    let start = Instant::now();
    let (beacon, admin) = (&devnet.beacon, &devnet.admin);
    devnet
        .until("blocks through replica a, leading", slots(40), || async {
            let (head, _) = beacon.syncing().await.ok()?;
            (head >= 4 && role(admin).await.as_deref() == Some("leader")).then_some(())
        })
        .await?;
    let builds = || async {
        let status = admin.status().await.ok()?;
        status["payload_builds"].as_u64()
    };
    let before = builds().await.ok_or("replica a has no payload_builds")?;
    let deadline = Instant::now() + slots(10);
    loop {
        if builds().await.is_some_and(|n| n > before) {
            // The build is counted before its answer is written: give the answer time to
            // reach Lodestar (its getPayload comes at the next slot's start, a second later),
            // or a kill in between makes Lodestar ask replica b for a new build instead.
            tokio::time::sleep(Duration::from_millis(100)).await;
            break;
        }
        if Instant::now() > deadline {
            return Err("replica a answered no forkchoiceUpdated with attributes".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (kill_slot, failover, missed) = kill_a(devnet).await?;
    let replica = devnet.replica.as_ref().ok_or("not a replicated devnet")?;
    let b = &replica.admin;
    let served = metric(b, r#"eb_cluster_shared_builds_served_total{replica="a"}"#).await;
    if served < 1.0 {
        return Err("replica b served no build replica a made (the CL's getPayload)".into());
    }

    let (rejoined_as, rejoined_s) = rejoin(devnet).await?;
    let (restart_slot, _) = devnet.beacon.syncing().await?;
    let (_, missed_after_restart) =
        blocks_after(devnet, restart_slot, WATCH_SLOTS, "replica a rejoined").await?;
    let leader_after = devnet.admin.status().await?["cluster"]["leader"].clone();

    let replica = devnet.replica.as_ref().ok_or("not a replicated devnet")?;
    let conflicts = metric(&devnet.admin, "eb_cluster_conflicts_total").await
        + metric(&replica.admin, "eb_cluster_conflicts_total").await;
    let opposite = opposite_answers(&recorded(&devnet.paths.votes()), &recorded(&replica.votes));
    let disagreements = conflicts as usize + opposite;
    if disagreements > 0 {
        return Err(format!(
            "the replicas answered {opposite} blocks oppositely; {conflicts} write-back conflicts"
        ));
    }
    Ok(json!({
        "replicas": 2,
        "killed_at_slot": kill_slot,
        "missed_after_kill": missed,
        "failover_s": (failover.as_secs_f64() * 100.0).round() / 100.0,
        "shared_build_served": served,
        "rejoined_as": rejoined_as,
        "rejoined_s": rejoined_s,
        "missed_after_rejoin": missed_after_restart,
        "leader_after_rejoin": leader_after,
        "cross_replica_disagreements": disagreements,
        "seconds": (start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    }))
}

/// SIGKILLs replica `a`, waits until `b` leads and [`WATCH_SLOTS`] more slots passed: the
/// slot of the kill, the time until `b` led, and the slots without a block (at most one).
async fn kill_a(devnet: &mut Devnet) -> Result<(u64, Duration, Vec<u64>), String> {
    devnet.kill_eb();
    let killed = Instant::now();
    let (kill_slot, _) = devnet.beacon.syncing().await?;
    let b = &devnet
        .replica
        .as_ref()
        .ok_or("not a replicated devnet")?
        .admin;
    let failover = devnet
        .until("replica b to lead", slots(10), || async {
            (role(b).await.as_deref() == Some("leader")).then(|| killed.elapsed())
        })
        .await?;
    let (_, missed) = blocks_after(devnet, kill_slot, WATCH_SLOTS, "replica a was killed").await?;
    Ok((kill_slot, failover, missed))
}

/// Restarts replica `a` and waits until it is back in the cluster: its role then, and the
/// seconds it took.
async fn rejoin(devnet: &mut Devnet) -> Result<(String, f64), String> {
    devnet.restart_eb()?;
    let restarted = Instant::now();
    let admin = &devnet.admin;
    let role = devnet
        .until("replica a to rejoin the cluster", slots(15), || async {
            let status = admin.status().await.ok()?;
            let up = status["cluster"]["store_up"] == true;
            let role = status["cluster"]["role"].as_str()?.to_owned();
            (up && (role == "follower" || role == "leader")).then_some(role)
        })
        .await?;
    Ok((
        role,
        (restarted.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    ))
}

/// The heads of the forkchoiceUpdated calls a replica forwarded (its recording).
fn forwarded_heads(cases: &[Case]) -> Vec<String> {
    cases
        .iter()
        .filter(|c| c.method.starts_with("forkchoiceUpdated"))
        .filter_map(|c| c.block_hash.as_deref().map(str::to_ascii_lowercase))
        .collect()
}

/// Two beacon nodes on the same ELs: the first (the validators) through replicas `a` and `b`,
/// the second (no validators, peered with the first) through `b` alone. While `a` leads, `b`
/// forwards no forkchoiceUpdated for a head `a` did not drive, and the second node stays on the
/// head; `a` killed, `b` leads and the chain goes on.
pub async fn two_cls(devnet: &mut Devnet) -> Result<Value, String> {
    let start = Instant::now();
    let replica = devnet.replica.as_ref().ok_or("not a replicated devnet")?;
    let second = replica
        .second_beacon
        .as_ref()
        .ok_or("no second beacon node")?;
    let (beacon, a, b) = (&devnet.beacon, &devnet.admin, &replica.admin);
    let on_one_head = || async {
        let first = beacon.head_execution_hash().await.ok()?;
        (second.head_execution_hash().await.ok()? == first).then_some(first)
    };
    devnet
        .until(
            "both beacon nodes on one head, replica a leading",
            slots(60),
            || async {
                let (head, _) = beacon.syncing().await.ok()?;
                let leads = role(a).await.as_deref() == Some("leader");
                (head >= 4 && leads && on_one_head().await.is_some()).then_some(())
            },
        )
        .await?;
    let (from, _) = beacon.syncing().await?;
    devnet
        .until(
            "blocks while replica a leads",
            slots(WATCH_SLOTS + 6),
            || async {
                let (head, _) = beacon.syncing().await.ok()?;
                (head >= from + WATCH_SLOTS).then_some(())
            },
        )
        .await?;
    devnet
        .until("the second beacon node on the head", slots(3), on_one_head)
        .await?;
    let (a_heads, b_heads) = (
        forwarded_heads(&recorded(&devnet.paths.votes())),
        forwarded_heads(&recorded(&replica.votes)),
    );
    let foreign: Vec<&String> = b_heads.iter().filter(|h| !a_heads.contains(h)).collect();
    if !foreign.is_empty() {
        return Err(format!(
            "replica b forwarded forkchoiceUpdated for heads replica a never drove: {foreign:?}"
        ));
    }
    let held_b = metric(b, "eb_cluster_held_total").await;

    let (kill_slot, failover, missed) = kill_a(devnet).await?;
    let replica = devnet.replica.as_ref().ok_or("not a replicated devnet")?;
    let second = replica
        .second_beacon
        .as_ref()
        .ok_or("no second beacon node")?;
    let beacon = &devnet.beacon;
    devnet
        .until(
            "the second beacon node on the head after the kill",
            slots(3),
            || async {
                let first = beacon.head_execution_hash().await.ok()?;
                (second.head_execution_hash().await.ok()? == first).then_some(())
            },
        )
        .await?;
    let (rejoined_as, rejoined_s) = rejoin(devnet).await?;
    Ok(json!({
        "replicas": 2,
        "beacon_nodes": 2,
        "forkchoice_forwarded": {"a": a_heads.len(), "b": b_heads.len()},
        "b_forwarded_heads_a_did_not_drive": foreign.len(),
        "b_held": held_b,
        "killed_at_slot": kill_slot,
        "failover_s": (failover.as_secs_f64() * 100.0).round() / 100.0,
        "missed_after_kill": missed,
        "second_node_on_head": true,
        "rejoined_as": rejoined_as,
        "rejoined_s": rejoined_s,
        "seconds": (start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    }))
}
