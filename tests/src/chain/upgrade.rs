//! A rolling EL upgrade under a real CL, as an operator with two ELs does it: Prysm (Fulu) in
//! front of eb and two geths, both on the older geth. geth 1 (EL 2) is shut down (SIGTERM) for
//! some slots (5 by default) and started on the newer geth on the same datadir; once eb counts its
//! votes again, the same for geth 0 (EL 1, the primary). Run in four setups: with and without
//! `behind=ignore`, the geths peered with each other and not (then only eb's catch-up replay
//! brings a restarted geth back to the head).

use super::prysm::{self, Prysm, SLOT};
use super::scenarios::Outcomes;
use super::with_prysm::{head_at, missed};
use super::{genesis, Chain, Fork, Layout};
use crate::devnet::scenarios::seconds;
use crate::devnet::until;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Slots proposed before the first shutdown.
const WARMUP_SLOTS: u64 = 3;
/// Slots each geth stays down by default.
pub const DOWN_SLOTS: u64 = 5;
/// The goal for a geth without peers: its votes count again within this many slots of its
/// restart.
const REJOIN_GOAL_SLOTS: u32 = 2;
/// Slots a restarted geth may take to count again before the run fails.
const REJOIN_LIMIT_SLOTS: u32 = 15;
/// Slots proposed after the second geth counts again, still inside the measured window.
const TAIL_SLOTS: u64 = 2;
/// How long a geth gets to shut down cleanly before SIGKILL.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// One way to run the upgrade.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    /// Its name in the report.
    pub name: &'static str,
    /// eb runs with `--policy-config behind=ignore`.
    pub ignore_behind: bool,
    /// The geths are static peers of each other.
    pub peered: bool,
}

/// The four setups, each on a fresh chain.
pub const SETUPS: [Setup; 4] = [
    Setup {
        name: "behind=ignore, peered",
        ignore_behind: true,
        peered: true,
    },
    Setup {
        name: "behind=count, peered",
        ignore_behind: false,
        peered: true,
    },
    Setup {
        name: "behind=ignore, not peered",
        ignore_behind: true,
        peered: false,
    },
    Setup {
        name: "behind=count, not peered",
        ignore_behind: false,
        peered: false,
    },
];

/// What to run: the geth both ELs start on and the one each is upgraded to, eb, Prysm, how
/// long each geth stays down, and which setups.
pub struct Plan<'a> {
    /// Both geths start on this one.
    pub from: &'a Path,
    /// Each geth is restarted on this one.
    pub to: &'a Path,
    /// eb.
    pub eb: &'a Path,
    /// Prysm's folder.
    pub prysm: &'a Path,
    /// Slots each geth stays down.
    pub down_slots: u64,
    /// The setups to run, in this order.
    pub setups: Vec<Setup>,
}

/// `geth --version`'s version number (`1.17.10`).
pub fn geth_version(geth: &Path) -> Result<String, String> {
    let out = Command::new(geth)
        .arg("--version")
        .output()
        .map_err(|e| format!("{}: {e}", geth.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|word| {
            let number = word.split('-').next()?;
            (number.split('.').count() == 3 && number.split('.').all(|p| p.parse::<u32>().is_ok()))
                .then(|| number.to_owned())
        })
        .ok_or_else(|| format!("{} --version: no version in {text:?}", geth.display()))
}

/// The CL-facing newPayload and forkchoiceUpdated answers with `status`, summed over methods.
fn answered(vote_answers: &Value, status: &str) -> u64 {
    vote_answers
        .as_object()
        .map_or(0, |m| m.values().filter_map(|s| s[status].as_u64()).sum())
}

/// Waits until eb counts geth `index`'s votes again and it is not behind (it voted VALID on a
/// block), and the geth's own head is Prysm's; the seconds since `since`.
async fn rejoined(
    chain: &Chain,
    prysm: &Prysm,
    index: usize,
    since: Instant,
) -> Result<f64, String> {
    let geth = &chain.geths[index].rpc;
    until(
        &format!("eb to count geth {index} again, on Prysm's head"),
        SLOT * REJOIN_LIMIT_SLOTS,
        || async {
            let status = chain.admin.status().await.ok()?;
            let node = &status["nodes"][index];
            if node["votes_count"] != true || node["behind"] != false {
                return None;
            }
            let head = prysm.api.head_execution_hash().await.ok()?;
            (geth.block("latest").await.ok()?.1 == head).then(|| seconds(since))
        },
    )
    .await
}

/// Shuts geth `index` down for `down_slots` slots, starts it on `to` on the same datadir and
/// waits until eb counts it again and reports the new version.
async fn upgrade(
    chain: &mut Chain,
    prysm: &Prysm,
    index: usize,
    to: &Path,
    version: &str,
    down_slots: u64,
) -> Result<Value, String> {
    let (from, _) = prysm.api.syncing().await?;
    let shutdown = chain.shut_down(index, SHUTDOWN_GRACE);
    head_at(prysm, from + down_slots, SLOT * down_slots as u32 * 3).await?;
    let restarted = Instant::now();
    chain.restart(index, Some(to)).await?;
    let rejoin_s = rejoined(chain, prysm, index, restarted).await?;
    // eb asks for the client version again after it saw the EL restart (health checks).
    let admin = &chain.admin;
    let reported = until(
        &format!("eb to report geth {index}'s new version {version}"),
        SLOT * 5,
        || async {
            let status = admin.status().await.ok()?;
            let reported = status["nodes"][index]["client_version"]
                .as_str()?
                .to_owned();
            reported.contains(version).then_some(reported)
        },
    )
    .await?;
    Ok(json!({
        "el": index,
        "down_from_slot": from,
        "shutdown_s": shutdown.as_secs_f64(),
        "rejoin_s": rejoin_s,
        "client_version": reported,
    }))
}

/// The rolling upgrade on a running chain: geth 1, then geth 0 (the primary). Checks the goals
/// of `setup`; the run's figures.
async fn rolling(
    chain: &mut Chain,
    prysm: &Prysm,
    setup: Setup,
    to: &Path,
    down_slots: u64,
) -> Result<Value, String> {
    let version = geth_version(to)?;
    head_at(prysm, WARMUP_SLOTS, SLOT * 40).await?;
    let (first, _) = prysm.api.syncing().await?;
    let before = chain.admin.vote_answers().await?;
    let mut els = Vec::new();
    for index in [1, 0] {
        els.push(upgrade(chain, prysm, index, to, &version, down_slots).await?);
    }
    let (last, _) = prysm.api.syncing().await?;
    let end = head_at(prysm, last + TAIL_SLOTS, SLOT * TAIL_SLOTS as u32 * 3).await?;
    let after = chain.admin.vote_answers().await?;
    let empty = missed(prysm, first + 1, end).await?;
    let syncing = answered(&after, "SYNCING") - answered(&before, "SYNCING");
    let invalid = answered(&after, "INVALID") - answered(&before, "INVALID");
    let status = chain.admin.status().await?;
    let nodes = status["nodes"].as_array().cloned().unwrap_or_default();
    let queue = |field: &str| -> u64 {
        nodes
            .iter()
            .filter_map(|n| n["queue"][field].as_u64())
            .sum()
    };
    let rejoin: Vec<&Value> = els.iter().map(|el| &el["rejoin_s"]).collect();
    let figures = json!({
        "behind": if setup.ignore_behind { "ignore" } else { "count" },
        "peered": setup.peered,
        "slots": format!("{}..={end}", first + 1),
        "missed_slots": empty.len(),
        "slots_without_block": empty,
        "syncing_answers": syncing,
        "invalid_answers": invalid,
        "rejoin_s": rejoin,
        "replayed": queue("replayed"),
        "replay_dropped": queue("replay_dropped"),
        "upgrades": els,
    });
    if invalid > 0 {
        return Err(format!(
            "{invalid} INVALID answers on a valid chain: {figures}"
        ));
    }
    if setup.ignore_behind && (!empty.is_empty() || syncing > 0) {
        return Err(format!(
            "with behind=ignore: {} slots without a block and {syncing} SYNCING answers (0 wanted): {figures}",
            empty.len()
        ));
    }
    let goal = (SLOT * REJOIN_GOAL_SLOTS).as_secs_f64();
    if !setup.peered && rejoin.iter().any(|r| r.as_f64().is_none_or(|s| s > goal)) {
        return Err(format!(
            "not peered: a geth took more than {REJOIN_GOAL_SLOTS} slots ({goal} s) to count again: {figures}"
        ));
    }
    Ok(figures)
}

/// One setup on a fresh chain in `work`: its outcome, with every log's tail when it failed.
async fn run_setup(plan: &Plan<'_>, work: &Path, setup: Setup) -> Result<Value, String> {
    let genesis = prysm::genesis(plan.prysm, work, &genesis(plan.from, Fork::Osaka)?)?;
    let mut eb_args = Vec::new();
    if setup.ignore_behind {
        eb_args = vec!["--policy-config".to_owned(), "behind=ignore".to_owned()];
    }
    let layout = Layout {
        els: 2,
        peered: setup.peered,
        liar: false,
        eb_args,
    };
    let mut chain = Chain::start(plan.from, plan.eb, work, Fork::Osaka, &genesis, &layout).await?;
    let prysm = Prysm::start(plan.prysm, &chain).await?;
    let mut outcomes = Outcomes::default();
    let outcome = rolling(&mut chain, &prysm, setup, plan.to, plan.down_slots).await;
    let figures = outcome.as_ref().ok().cloned();
    outcomes.record(setup.name, outcome);
    outcomes.recording(&mut chain).await;
    let mut report = figures.unwrap_or_default();
    report["name"] = json!(setup.name);
    outcomes
        .finish(report)
        .map_err(|e| format!("{e}\n{}{}", chain.logs(), prysm.logs()))
}

/// The plan's setups, one after another, each in its own folder under `work`; the report (the
/// JSON object `eb-chain` prints last).
pub async fn run(plan: &Plan<'_>, work: &Path) -> Result<Value, String> {
    let start = Instant::now();
    let mut runs = Vec::new();
    for (i, &setup) in plan.setups.iter().enumerate() {
        let folder = work.join(format!("run{i}"));
        let report = run_setup(plan, &folder, setup).await.map_err(|e| {
            format!(
                "{}: {e}\n(data and logs in {})",
                setup.name,
                folder.display()
            )
        })?;
        runs.push(report);
    }
    Ok(json!({
        "scenario": "rolling upgrade",
        "fork": Fork::Osaka.name(),
        "cl": "prysm",
        "from": geth_version(plan.from)?,
        "to": geth_version(plan.to)?,
        "down_slots": plan.down_slots,
        "runs": runs,
        "seconds": seconds(start),
    }))
}
