//! Proptest strategies for ballots.

use policy_sdk::abi::{Health, VOTE_KINDS as KINDS};
use policy_sdk::ballot::Ballot;
use policy_sdk::{ClientCode, Context, Outcome, Status, Vote, VoteFlags, VoteKind};
use proptest::prelude::*;

/// A vote of any kind from `node`; VALID and INVALID weighted up, as they decide most.
pub fn vote(node: u16) -> impl Strategy<Value = Vote> {
    (
        prop_oneof![3 => 0usize..2, 2 => 2usize..KINDS.len()],
        prop::bool::weighted(0.1),
        0u8..3,
        0usize..4,
        0u32..5_000,
        0u8..6,
        0u8..4,
    )
        .prop_map(
            move |(kind, do_not_use, group, client, latency_us, health, catching_up)| {
                let (status, outcome) = KINDS[kind];
                let invalid = status.normalized() == Status::Invalid;
                let lvh_group = if invalid { group } else { 0 };
                Vote {
                    node,
                    status,
                    outcome,
                    flags: VoteFlags::default()
                        .with(VoteFlags::DO_NOT_USE, do_not_use)
                        .with(VoteFlags::LVH_PRESENT, lvh_group != 0)
                        .with(VoteFlags::NODE_SYNCING, catching_up == 1)
                        .with(VoteFlags::NODE_BEHIND, catching_up == 2),
                    lvh_group,
                    client: ClientCode::from_letters(["GE", "NM", "BU", "RH"][client])
                        .unwrap_or_default(),
                    latency_us,
                    rpc_error_code: if outcome == Outcome::RpcError {
                        -32603
                    } else {
                        0
                    },
                    health: Health::from_u8(health),
                    typical_latency_us: latency_us / 2,
                }
            },
        )
}

/// `n` votes from nodes `0..n`.
pub fn votes(n: usize) -> impl Strategy<Value = Vec<Vote>> {
    (0..n as u16).map(vote).collect::<Vec<_>>()
}

/// A FINAL ballot of 0 to `max` votes.
pub fn final_ballot(max: usize) -> impl Strategy<Value = Ballot> {
    (0..=max)
        .prop_flat_map(votes)
        .prop_map(|votes| ballot(votes, 0))
}

/// A ballot over `votes` with `pending` more to come (FINAL when none), shaped as eb sends it:
/// a pending record for each EL still out, after the votes.
pub fn ballot(mut votes: Vec<Vote>, pending: u16) -> Ballot {
    let first = votes.len() as u16;
    votes.extend((first..first + pending).map(|node| Vote::failed(node, Outcome::Pending)));
    Ballot {
        context: Context {
            kind: VoteKind::NewPayload,
            method_version: 4,
            nodes_configured: first + pending,
            pending,
            is_final: pending == 0,
            elapsed_ms: 0,
        },
        votes,
        config: String::new(),
    }
}
