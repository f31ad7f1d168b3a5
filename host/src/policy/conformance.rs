//! Built-in conformance cases: ballots every policy must decide without faulting.
//!
//! They do not judge *what* a policy decides (that is the operator's choice), only that it
//! answers every shape of ballot eb can send: 0 to 64 votes, every status and outcome, FINAL and
//! not, with and without do-not-use nodes. Run at every load, so a module that traps on a
//! corner case is refused before it decides a real block.

use super::{Ballot, Policy};
use crate::policy::Fault;
use policy_sdk::abi::Health;
use policy_sdk::abi::{MAX_VOTES, VOTE_KINDS as KINDS};
use policy_sdk::{ClientCode, Context, Outcome, Status, Vote, VoteFlags, VoteKind};

/// The outcome of running the conformance cases.
#[derive(Clone, Debug, Default)]
pub struct ConformanceReport {
    /// Cases run.
    pub cases: usize,
    /// Most fuel one case used.
    pub max_fuel: u64,
    /// Cases that faulted, with the fault.
    pub faults: Vec<(String, Fault)>,
}

fn vote(node: usize, kind: usize) -> Vote {
    let (status, outcome) = KINDS[kind % KINDS.len()];
    let clients = ["GE", "NM", "BU", "EG", "RH"];
    Vote {
        node: node as u16,
        status,
        outcome,
        flags: VoteFlags((node % 7 == 6) as u8 * VoteFlags::DO_NOT_USE),
        lvh_group: (status == Status::Invalid) as u8 * (1 + (node % 2) as u8),
        client: ClientCode::from_letters(clients[node % clients.len()]).unwrap_or_default(),
        latency_us: 1000 + 37 * node as u32,
        rpc_error_code: if outcome == Outcome::RpcError {
            -32603
        } else {
            0
        },
        health: Health::from_u8((node % 6) as u8),
        typical_latency_us: 900 + 100 * node as u32,
    }
}

/// The ABI 1.1 record of node `node`, still outstanding.
fn pending(node: usize) -> Vote {
    Vote {
        status: Status::None,
        outcome: Outcome::Pending,
        latency_us: 0,
        ..vote(node, 0)
    }
}

/// The built-in cases, named.
pub fn conformance_cases(config: &str) -> Vec<(String, Ballot)> {
    let mut cases = Vec::new();
    let methods = [
        VoteKind::NewPayload,
        VoteKind::ForkchoiceUpdated,
        VoteKind::ForkchoiceUpdatedWithAttributes,
    ];
    let mut push = |name: String, votes: Vec<Vote>, pending: usize, method: VoteKind| {
        let answered = votes.iter().filter(|v| !v.is_pending()).count();
        let context = Context {
            kind: method,
            method_version: if method == VoteKind::NewPayload { 4 } else { 3 },
            nodes_configured: (answered + pending) as u16,
            pending: pending as u16,
            is_final: pending == 0,
            elapsed_ms: 5,
        };
        cases.push((
            name,
            Ballot {
                context,
                votes,
                config: config.to_owned(),
            },
        ));
    };
    for (m, &method) in methods.iter().enumerate() {
        push(
            format!("{} with no votes", method.name()),
            Vec::new(),
            0,
            method,
        );
        for (kind, &(status, outcome)) in KINDS.iter().enumerate() {
            let label = if outcome == Outcome::Answered {
                status.name()
            } else {
                "failed"
            };
            for n in 1..=5 {
                let all: Vec<Vote> = (0..n).map(|i| vote(i, kind)).collect();
                push(
                    format!("{} {n}x {label} ({kind})", method.name()),
                    all,
                    0,
                    method,
                );
            }
            let mixed: Vec<Vote> = (0..7).map(|i| vote(i, kind + i + m)).collect();
            push(
                format!("{} 7 mixed from {kind}", method.name()),
                mixed.clone(),
                0,
                method,
            );
            let mut part = mixed[..4].to_vec();
            part.extend((4..7).map(pending));
            push(
                format!("{} 4 of 7 in, {kind}", method.name()),
                part,
                3,
                method,
            );
        }
        push(
            format!("{} nothing in, 3 pending", method.name()),
            (0..3).map(pending).collect(),
            3,
            method,
        );
    }
    let full: Vec<Vote> = (0..MAX_VOTES).map(|i| vote(i, i % 3)).collect();
    push(format!("{MAX_VOTES} votes"), full, 0, VoteKind::NewPayload);
    cases
}

/// Runs the conformance cases (with the policy's own config) and reports faults and fuel.
pub fn check_conformance(policy: &dyn Policy) -> ConformanceReport {
    let mut report = ConformanceReport::default();
    for (name, ballot) in conformance_cases(&policy.info().config) {
        let mut decision = policy.decide(&ballot);
        // A wall-clock deadline can be a busy machine, not the module: try that case again.
        for _ in 0..2 {
            if decision.fault != Some(Fault::Deadline) {
                break;
            }
            decision = policy.decide(&ballot);
        }
        report.cases += 1;
        report.max_fuel = report.max_fuel.max(decision.fuel);
        if let Some(fault) = decision.fault {
            report.faults.push((name, fault));
        }
    }
    report
}
