//! `eb policy explain FIXTURE [--case NAME]`: one decision as a Mermaid sequence chart — the
//! CL's call, each EL's answer and latency, what the policy was asked and answered at each step
//! (Wait, then the verdict), and what the CL got. Operators read a recorded incident instead of
//! grepping logs.

use crate::policy::{Ballot, Policy, PolicySource, WasmPolicy};
use policy_sdk::fixture::{self, status_name, Case};
use policy_sdk::{Verdict, Vote, VoteKind};
use std::fmt::Write as _;
use std::path::Path;

fn who(vote: &Vote) -> String {
    format!("EL{}", vote.node)
}

fn method_name(case: &Case, ballot: &Ballot) -> String {
    let family = match ballot.context.kind {
        VoteKind::NewPayload => "engine_newPayload",
        _ => "engine_forkchoiceUpdated",
    };
    let build = if ballot.context.kind == VoteKind::ForkchoiceUpdatedWithAttributes {
        " with payload attributes"
    } else {
        ""
    };
    let block = case
        .block_hash
        .as_deref()
        .map(|h| format!(" {}", h.get(..12).unwrap_or(h)))
        .unwrap_or_default();
    format!("{family}V{}{build}{block}", ballot.context.method_version)
}

/// The chart for `case` decided by `policy`.
pub fn chart(case: &Case, policy: &dyn Policy) -> Result<String, String> {
    let full = case.ballot().map_err(|e| e.to_string())?;
    let nodes = full.context.nodes_configured;
    let mut out = String::from(
        "sequenceDiagram\n    participant CL\n    participant eb\n    participant policy\n",
    );
    for node in 0..nodes {
        let client = full
            .votes
            .iter()
            .find(|v| v.node == node)
            .and_then(|v| v.client.letters())
            .map(|l| format!(" ({})", String::from_utf8_lossy(&l)))
            .unwrap_or_default();
        let _ = writeln!(out, "    participant EL{node} as EL {node}{client}");
    }
    let call = method_name(case, &full);
    let _ = writeln!(out, "    CL->>eb: {call}");
    for node in 0..nodes {
        let _ = writeln!(out, "    eb->>EL{node}: {call}");
    }
    let mut verdict = None;
    for arrived in 1..=full.votes.len() {
        let vote = &full.votes[arrived - 1];
        let _ = writeln!(
            out,
            "    {}-->>eb: {} ({:.1} ms)",
            who(vote),
            status_name(vote),
            f64::from(vote.latency_us) / 1000.0
        );
        let last = arrived == full.votes.len();
        let mut ballot = full.clone();
        ballot.votes.truncate(arrived);
        let pending = if last {
            full.context.pending
        } else {
            nodes.saturating_sub(arrived as u16)
        };
        ballot.context.pending = pending;
        ballot.context.is_final = pending == 0;
        let decision = policy.decide(&ballot);
        let final_note = if ballot.context.is_final {
            ", FINAL"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "    eb->>policy: {arrived} votes, {pending} pending{final_note}"
        );
        let answer = fixture::describe_verdict(&ballot, decision.verdict);
        let _ = writeln!(out, "    policy-->>eb: {answer}");
        if let Some(fault) = &decision.fault {
            let _ = writeln!(
                out,
                "    Note over eb,policy: policy fault: {fault}; answered SYNCING"
            );
        }
        if decision.verdict != Verdict::Wait {
            verdict = Some((ballot, decision.verdict));
            break;
        }
    }
    if full.votes.is_empty() {
        let decision = policy.decide(&full);
        let _ = writeln!(
            out,
            "    eb->>policy: 0 votes, {} pending",
            full.context.pending
        );
        let _ = writeln!(
            out,
            "    policy-->>eb: {}",
            fixture::describe_verdict(&full, decision.verdict)
        );
        verdict = Some((full.clone(), decision.verdict));
    }
    for late in case.votes.iter().filter(|v| v.late) {
        let _ = writeln!(
            out,
            "    EL{}-->>eb: {} (late, {:.1} ms)",
            late.node, late.status, late.latency_ms
        );
    }
    match &verdict {
        None => {
            let _ = writeln!(
                out,
                "    Note over eb: still waiting for {} votes",
                full.context.pending
            );
        }
        Some((ballot, v)) => {
            let answer = ballot.followed(*v).map_or_else(
                || "SYNCING".to_owned(),
                |vote| format!("{} (EL {}'s answer)", status_name(vote), vote.node),
            );
            let _ = writeln!(out, "    eb-->>CL: {answer}");
        }
    }
    Ok(out)
}

/// Loads the policy and the fixture and draws the chosen case (the first when none is named).
pub fn explain(
    policy: Option<&Path>,
    config: &str,
    fixture: &Path,
    name: Option<&str>,
) -> Result<String, String> {
    let source = policy.map_or(PolicySource::Embedded, |p| PolicySource::File(p.to_owned()));
    let policy = WasmPolicy::load(&source, config)
        .map_err(|e| format!("policy {} refused: {e}", source.name()))?;
    let cases = fixture::load_file(fixture).map_err(|e| e.to_string())?;
    let case = match name {
        Some(name) => cases
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| format!("no case named {name:?} in {}", fixture.display()))?,
        None => cases
            .first()
            .ok_or_else(|| format!("{} holds no case", fixture.display()))?,
    };
    chart(case, &policy)
}
