//! The replicated devnet's scenario: Lodestar with two eb replicas as its `--execution.urls`
//! (`a` first), sharing a 3-member etcd. Replica `a` is SIGKILLed the moment it answered a
//! forkchoiceUpdated with attributes; replica `b` must serve that build's getPayload and lead,
//! the chain must lose at most one slot, and `a` restarted must rejoin.

use super::observe::{follows_valid, recorded, Admin};
use super::scenarios::{missed_slots, slots};
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
            break;
        }
        if Instant::now() > deadline {
            return Err("replica a answered no forkchoiceUpdated with attributes".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    devnet.kill_eb();
    let killed = Instant::now();
    let (kill_slot, _) = devnet.beacon.syncing().await?;
    let replica = devnet.replica.as_ref().ok_or("not a replicated devnet")?;
    let b = &replica.admin;
    let failover = devnet
        .until("replica b to lead", slots(10), || async {
            (role(b).await.as_deref() == Some("leader")).then(|| killed.elapsed())
        })
        .await?;
    let beacon = &devnet.beacon;
    let watched_to = devnet
        .until(
            "blocks after replica a was killed",
            slots(WATCH_SLOTS + 6),
            || async {
                let (head, _) = beacon.syncing().await.ok()?;
                (head >= kill_slot + WATCH_SLOTS).then_some(head)
            },
        )
        .await?;
    let missed = missed_slots(devnet, kill_slot + 1, watched_to).await?;
    let served = metric(b, r#"eb_cluster_shared_builds_served_total{replica="a"}"#).await;
    if missed.len() > 1 {
        return Err(format!(
            "slots without a block after replica a was killed at slot {kill_slot}: {missed:?}"
        ));
    }
    if served < 1.0 {
        return Err("replica b served no build replica a made (the CL's getPayload)".into());
    }

    devnet.restart_eb()?;
    let restarted = Instant::now();
    let admin = &devnet.admin;
    let rejoined_as = devnet
        .until("replica a to rejoin the cluster", slots(15), || async {
            let status = admin.status().await.ok()?;
            let up = status["cluster"]["store_up"] == true;
            let role = status["cluster"]["role"].as_str()?.to_owned();
            (up && (role == "follower" || role == "leader")).then_some(role)
        })
        .await?;
    let rejoined_s = restarted.elapsed().as_secs_f64();
    let (restart_slot, _) = devnet.beacon.syncing().await?;
    let beacon = &devnet.beacon;
    let watched_to = devnet
        .until(
            "blocks after replica a rejoined",
            slots(WATCH_SLOTS + 6),
            || async {
                let (head, _) = beacon.syncing().await.ok()?;
                (head >= restart_slot + WATCH_SLOTS).then_some(head)
            },
        )
        .await?;
    let missed_after_restart = missed_slots(devnet, restart_slot + 1, watched_to).await?;
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
    if missed_after_restart.len() > 1 {
        return Err(format!(
            "slots without a block after replica a rejoined at slot {restart_slot}: {missed_after_restart:?}"
        ));
    }
    Ok(json!({
        "replicas": 2,
        "killed_at_slot": kill_slot,
        "missed_after_kill": missed,
        "failover_s": (failover.as_secs_f64() * 100.0).round() / 100.0,
        "shared_build_served": served,
        "rejoined_as": rejoined_as,
        "rejoined_s": (rejoined_s * 10.0).round() / 10.0,
        "missed_after_rejoin": missed_after_restart,
        "leader_after_rejoin": leader_after,
        "cross_replica_disagreements": disagreements,
        "seconds": (start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    }))
}
