//! EL replies → votes. Each reply becomes an ABI [`Vote`] for the policy plus the parts of the
//! answer eb may return to the CL (the raw result, an error object, the EL's payloadId).

use crate::nodes::{Node, NodeState};
use crate::policy::Ballot;
use crate::rpc::{error_code, ElAnswer};
use crate::upstream::{Reply, Timed};
use policy_sdk::{Context, Method, Outcome, Status, Vote, VoteFlags};
use serde::Deserialize;
use serde_json::value::RawValue;

/// One EL's reply, classified.
#[derive(Debug)]
pub struct Received {
    /// The vote as the policy sees it (`lvh_group` is set by [`Collector::push`]).
    pub vote: Vote,
    /// The EL's `result`, returned verbatim when the policy follows this vote.
    pub result: Option<Box<RawValue>>,
    /// The EL's error object, when it answered with one.
    pub error: Option<Box<RawValue>>,
    /// The answer's `latestValidHash`.
    pub lvh: Option<String>,
    /// The EL's own payloadId (forkchoiceUpdated with attributes).
    pub payload_id: Option<String>,
}

#[derive(Deserialize)]
struct PayloadStatus {
    status: String,
    #[serde(rename = "latestValidHash", default)]
    latest_valid_hash: Option<String>,
    #[serde(rename = "validationError", default)]
    validation_error: Option<String>,
}

#[derive(Deserialize)]
struct ForkchoiceResult {
    #[serde(rename = "payloadStatus")]
    payload_status: PayloadStatus,
    #[serde(rename = "payloadId", default)]
    payload_id: Option<String>,
}

fn parse_status(text: &str) -> Option<Status> {
    Some(match text {
        "VALID" => Status::Valid,
        "INVALID" => Status::Invalid,
        "SYNCING" => Status::Syncing,
        "ACCEPTED" => Status::Accepted,
        "INVALID_BLOCK_HASH" => Status::InvalidBlockHash,
        _ => return None,
    })
}

/// A vote without an answer from the node at `index`, with the node's client code and flags.
pub fn failed(index: u16, node: &Node, outcome: Outcome) -> Received {
    let health = node.health();
    let mut vote = Vote::failed(index, outcome);
    vote.client = health.client;
    vote.flags = VoteFlags::default()
        .with(VoteFlags::DO_NOT_USE, node.do_not_use)
        .with(VoteFlags::NODE_SYNCING, health.state == NodeState::Syncing);
    Received {
        vote,
        result: None,
        error: None,
        lvh: None,
        payload_id: None,
    }
}

/// Classifies `timed`, the reply of the node at `index` to a `method` call about `block_hash`.
pub fn receive(
    index: u16,
    node: &Node,
    method: Method,
    timed: &Timed,
    block_hash: Option<&str>,
) -> Received {
    let mut received = failed(index, node, Outcome::Malformed);
    received.vote.latency_us = u32::try_from(timed.latency.as_micros()).unwrap_or(u32::MAX);
    let body = match &timed.reply {
        Reply::Body(body) => body,
        Reply::Timeout => {
            received.vote.outcome = Outcome::Timeout;
            return received;
        }
        Reply::AuthRejected(_) | Reply::Unreachable(_) => {
            received.vote.outcome = Outcome::Unreachable;
            return received;
        }
    };
    let Ok(answer) = serde_json::from_slice::<ElAnswer<'_>>(body) else {
        return received;
    };
    match (answer.result, answer.error) {
        (_, Some(error)) => {
            received.vote.outcome = Outcome::RpcError;
            received.vote.rpc_error_code = error_code(error).map_or(0, |c| c as i32);
            received.error = Some(error.to_owned());
        }
        (Some(result), None) => {
            let parsed = match method {
                Method::NewPayload => serde_json::from_str::<PayloadStatus>(result.get())
                    .ok()
                    .map(|s| (s, None)),
                _ => serde_json::from_str::<ForkchoiceResult>(result.get())
                    .ok()
                    .map(|r| (r.payload_status, r.payload_id)),
            };
            if let Some((status, payload_id)) = parsed {
                if let Some(code) = parse_status(&status.status) {
                    let flags = received.vote.flags;
                    let is_block = matches!((&status.latest_valid_hash, block_hash),
                        (Some(lvh), Some(block)) if lvh.eq_ignore_ascii_case(block));
                    received.vote.status = code;
                    received.vote.outcome = Outcome::Answered;
                    received.vote.flags = flags
                        .with(VoteFlags::LVH_PRESENT, status.latest_valid_hash.is_some())
                        .with(VoteFlags::LVH_IS_BLOCK, is_block)
                        .with(
                            VoteFlags::VALIDATION_ERROR,
                            status.validation_error.is_some(),
                        );
                    received.lvh = status.latest_valid_hash;
                    received.payload_id = payload_id;
                    received.result = Some(result.to_owned());
                }
            }
        }
        (None, None) => {}
    }
    received
}

/// The votes of one call as they arrive, ready to be asked about at any point.
#[derive(Debug)]
pub struct Collector {
    method: Method,
    version: u8,
    nodes: u16,
    lvh_groups: Vec<String>,
    /// Replies in arrival order (vote i of the ballot is `received[i]`).
    pub received: Vec<Received>,
}

impl Collector {
    /// An empty collector for a call to `nodes` ELs.
    pub fn new(method: Method, version: u8, nodes: usize) -> Collector {
        Collector {
            method,
            version,
            nodes: nodes as u16,
            lvh_groups: Vec::new(),
            received: Vec::with_capacity(nodes),
        }
    }

    /// Adds a reply, giving it the lvh group its `latestValidHash` belongs to.
    pub fn push(&mut self, mut received: Received) {
        if let Some(lvh) = &received.lvh {
            let group = match self
                .lvh_groups
                .iter()
                .position(|g| g.eq_ignore_ascii_case(lvh))
            {
                Some(i) => i + 1,
                None => {
                    self.lvh_groups.push(lvh.clone());
                    self.lvh_groups.len()
                }
            };
            received.vote.lvh_group = u8::try_from(group).unwrap_or(u8::MAX);
        }
        self.received.push(received);
    }

    /// The ballot so far.
    pub fn ballot(&self, elapsed_ms: u32, config: &str) -> Ballot {
        let pending = self.nodes.saturating_sub(self.received.len() as u16);
        Ballot {
            context: Context {
                method: self.method,
                method_version: self.version,
                nodes_configured: self.nodes,
                pending,
                is_final: pending == 0,
                elapsed_ms,
            },
            votes: self.received.iter().map(|r| r.vote).collect(),
            config: config.to_owned(),
        }
    }
}
