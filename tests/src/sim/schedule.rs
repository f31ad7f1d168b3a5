//! A simulation's input: how each EL behaves and what the CL calls, as plain data that proptest
//! generates and shrinks and that a failure writes out as JSON to replay.

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

/// Milliseconds between the CL's slots in the simulation.
pub const SLOT_MS: u64 = 4_000;

/// One generated run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Schedule {
    /// The ELs, in `--nodes` order (1 to 7).
    pub els: Vec<ElScript>,
    /// The CL's slots, in order.
    pub slots: Vec<Slot>,
    /// The policy deciding.
    #[serde(default)]
    pub policy: SimPolicy,
}

/// Which policy decides a simulated run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SimPolicy {
    /// The embedded default policy (the 0.6-majority rule).
    #[default]
    Default,
    /// A policy that follows the first answer, whatever it is (eb's own checks must hold).
    Reckless,
}

/// How one EL behaves.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ElScript {
    /// Its timeout in eb (`#timeout=`), in milliseconds.
    pub timeout_ms: u64,
    /// Its queue's limit on calls waiting (eb's default is 256; small ones exercise drops).
    pub queue_calls: usize,
    /// Its answer to the n-th state-changing call it receives is `answers[n % len]`.
    pub answers: Vec<Step>,
    /// Spans of simulated time in which it misbehaves.
    pub outages: Vec<Outage>,
}

/// One answer to one state-changing call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Milliseconds from receiving the call to answering it.
    pub latency_ms: u64,
    /// What it answers.
    pub answer: Answer,
}

/// An EL's answer to newPayload or forkchoiceUpdated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// VALID, `latestValidHash` the block.
    Valid,
    /// INVALID, `latestValidHash` the parent.
    Invalid,
    /// SYNCING.
    Syncing,
    /// ACCEPTED (newPayload; forkchoiceUpdated answers SYNCING instead).
    Accepted,
    /// INVALID_BLOCK_HASH, `latestValidHash` null.
    InvalidBlockHash,
    /// A JSON-RPC error object.
    Error,
}

/// A span of misbehaviour, in simulated milliseconds from the start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outage {
    /// Start.
    pub from_ms: u64,
    /// End (exclusive).
    pub until_ms: u64,
    /// What happens in it.
    pub kind: OutageKind,
}

/// What an EL does in an outage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutageKind {
    /// Every call received in it is answered no sooner than its end.
    Hang,
    /// Connection refused (restarting); `forgets`: back without its builds.
    Down {
        /// Whether it comes back without the builds it made before.
        forgets: bool,
    },
    /// `eth_syncing` says it is syncing (its engine answers unchanged).
    Syncing,
}

/// What the CL does in one slot, in order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Slot {
    /// Calls before the slot's block: builds, reorgs, repeats, reads.
    pub extra: Vec<Extra>,
    /// Whether the slot's forkchoiceUpdated asks for a build.
    pub build: bool,
}

/// A CL call beside the slot's newPayload and forkchoiceUpdated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Extra {
    /// getPayload for the last build eb gave a payloadId for.
    GetPayload,
    /// getPayload for a payloadId eb never gave.
    UnknownPayload,
    /// forkchoiceUpdated back to the block `n` slots before the head (a reorg).
    Reorg(u8),
    /// newPayload again for the block `n` slots before the head.
    Repeat(u8),
    /// `eth_blockNumber`, a read routed to the primary.
    Read,
}

impl Schedule {
    /// The last simulated millisecond any outage covers.
    pub fn last_outage_ms(&self) -> u64 {
        self.els
            .iter()
            .flat_map(|el| el.outages.iter().map(|o| o.until_ms))
            .max()
            .unwrap_or(0)
    }
}

fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        12 => Just(Answer::Valid),
        3 => Just(Answer::Invalid),
        3 => Just(Answer::Syncing),
        1 => Just(Answer::Accepted),
        1 => Just(Answer::InvalidBlockHash),
        1 => Just(Answer::Error),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let latency = prop_oneof![
        6 => 0u64..50,
        3 => 50u64..400,
        2 => 400u64..3_000,
        1 => 3_000u64..9_000,
    ];
    (latency, answer()).prop_map(|(latency_ms, answer)| Step { latency_ms, answer })
}

fn outage(span_ms: u64) -> impl Strategy<Value = Outage> {
    let kind = prop_oneof![
        Just(OutageKind::Hang),
        any::<bool>().prop_map(|forgets| OutageKind::Down { forgets }),
        Just(OutageKind::Syncing),
    ];
    (0..span_ms, 100u64..3 * SLOT_MS, kind).prop_map(|(from_ms, length, kind)| Outage {
        from_ms,
        until_ms: from_ms + length,
        kind,
    })
}

fn el(span_ms: u64) -> impl Strategy<Value = ElScript> {
    (
        prop_oneof![3 => Just(8_000u64), 1 => 500u64..8_000],
        prop_oneof![4 => Just(256usize), 1 => 1usize..6],
        prop::collection::vec(step(), 1..6),
        prop::collection::vec(outage(span_ms), 0..3),
    )
        .prop_map(|(timeout_ms, queue_calls, answers, outages)| ElScript {
            timeout_ms,
            queue_calls,
            answers,
            outages,
        })
}

fn extra() -> impl Strategy<Value = Extra> {
    prop_oneof![
        3 => Just(Extra::GetPayload),
        1 => Just(Extra::UnknownPayload),
        1 => (1u8..4).prop_map(Extra::Reorg),
        1 => (0u8..4).prop_map(Extra::Repeat),
        1 => Just(Extra::Read),
    ]
}

fn slot() -> impl Strategy<Value = Slot> {
    (
        prop::collection::vec(extra(), 0..3),
        prop::bool::weighted(0.4),
    )
        .prop_map(|(extra, build)| Slot { extra, build })
}

/// Schedules of 1 to `max_els` ELs over 1 to 8 slots.
pub fn schedule(max_els: usize) -> impl Strategy<Value = Schedule> {
    (1..=max_els, 1usize..=8).prop_flat_map(|(els, slots)| {
        let span_ms = slots as u64 * SLOT_MS;
        (
            prop::collection::vec(el(span_ms), els),
            prop::collection::vec(slot(), slots),
            prop_oneof![9 => Just(SimPolicy::Default), 1 => Just(SimPolicy::Reckless)],
        )
            .prop_map(|(els, slots, policy)| Schedule { els, slots, policy })
    })
}
