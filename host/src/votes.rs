//! EL replies → votes. Each reply becomes an ABI [`Vote`] for the policy plus the parts of the
//! answer eb may return to the CL (the raw result, an error object, the EL's payloadId).

use crate::error::error_code;
use crate::nodes::{Node, NodeState};
use crate::policy::Ballot;
use crate::rpc::ElAnswer;
use crate::upstream::{Reply, Timed};
use bytes::Bytes;
use policy_sdk::{Context, Outcome, Status, Verdict, Vote, VoteFlags, VoteKind};
use serde::Deserialize;
use serde_json::value::RawValue;

/// One EL's reply, classified.
#[derive(Debug)]
pub struct Received {
    /// The vote as the policy sees it (`lvh_group` is set by [`Collector::push`]).
    pub vote: Vote,
    /// The EL's `result` (a slice of its answer), returned verbatim when the policy follows
    /// this vote.
    pub result: Option<Bytes>,
    /// The EL's error object (a slice of its answer), when it answered with one.
    pub error: Option<Bytes>,
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

/// A vote without an answer from the node at `index` to a `kind` call, with what eb knows of
/// the node: its client code, flags, health and typical answer time for such calls.
pub fn failed(index: u16, node: &Node, kind: VoteKind, outcome: Outcome) -> Received {
    let health = node.health();
    let mut vote = Vote::failed(index, outcome);
    vote.client = health.client;
    vote.flags = VoteFlags::default()
        .with(VoteFlags::DO_NOT_USE, !node.counts())
        .with(VoteFlags::NODE_SYNCING, health.state == NodeState::Syncing)
        .with(VoteFlags::NODE_BEHIND, node.is_behind());
    vote.health = node.vote_health();
    vote.typical_latency_us = node
        .typical_latency(kind)
        .map_or(0, |t| u32::try_from(t.as_micros()).unwrap_or(u32::MAX));
    Received {
        vote,
        result: None,
        error: None,
        lvh: None,
        payload_id: None,
    }
}

/// What a vote answers: the call's kind, the CL's JSON-RPC id (raw JSON, as sent) and the
/// block (newPayload) or head (forkchoiceUpdated) it names.
#[derive(Clone, Copy, Debug)]
pub struct Question<'a> {
    /// The kind of call.
    pub kind: VoteKind,
    /// The CL's id, which the EL's answer must carry.
    pub id: &'a str,
    /// The block or head hash.
    pub block_hash: Option<&'a str>,
}

/// Whether an answer's id (`None`: absent or null) is the request's: the same JSON text, or
/// the same value written otherwise (`"\u0031"` is `"1"`).
fn same_id(answered: Option<&RawValue>, asked: &str) -> bool {
    let answered = answered.map_or("null", RawValue::get);
    answered == asked
        || matches!(
            (
                serde_json::from_str::<serde_json::Value>(answered),
                serde_json::from_str::<serde_json::Value>(asked),
            ),
            (Ok(a), Ok(b)) if a == b
        )
}

/// Classifies `timed`, the reply of the node at `index` to `question`. An answer that is not
/// JSON-RPC, carries another id than the request's, or is past the size limit is `Malformed`.
pub fn receive(index: u16, node: &Node, question: Question<'_>, timed: &Timed) -> Received {
    let Question {
        kind, block_hash, ..
    } = question;
    let mut received = failed(index, node, kind, Outcome::Malformed);
    received.vote.latency_us = u32::try_from(timed.latency.as_micros()).unwrap_or(u32::MAX);
    let body = match &timed.reply {
        Reply::Body(body) => body,
        Reply::Timeout => {
            received.vote.outcome = Outcome::Timeout;
            return received;
        }
        Reply::AuthRejected(_)
        | Reply::Refused(_)
        | Reply::Unreachable(_)
        | Reply::Redirected(_) => {
            received.vote.outcome = Outcome::Unreachable;
            return received;
        }
        Reply::TooLarge(_) => return received,
    };
    let Ok(answer) = serde_json::from_slice::<ElAnswer<'_>>(body) else {
        return received;
    };
    if !same_id(answer.id, question.id) {
        let id = answer.id.map_or("null", RawValue::get);
        let why = format!(
            "answer id {id:.40} is not the request's {:.40}",
            question.id
        );
        node.refuse("wrong_id", why);
        return received;
    }
    match (answer.result, answer.error) {
        (_, Some(error)) => {
            received.vote.outcome = Outcome::RpcError;
            received.vote.rpc_error_code =
                error_code(error.get().as_bytes()).map_or(0, |c| c as i32);
            received.error = Some(body.slice_ref(error.get().as_bytes()));
        }
        (Some(result), None) => {
            let parsed = match kind {
                VoteKind::NewPayload => serde_json::from_str::<PayloadStatus>(result.get())
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
                    received.result = Some(body.slice_ref(result.get().as_bytes()));
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
    kind: VoteKind,
    version: u8,
    lvh_groups: Vec<String>,
    /// The pending record of each node, sent while its vote is still out (ABI 1.1).
    pending: Vec<Vote>,
    /// Which nodes' votes are in.
    counted: Vec<bool>,
    /// Replies in arrival order (vote i of the ballot is `received[i]`).
    pub received: Vec<Received>,
}

impl Collector {
    /// An empty collector for a call to the nodes whose pending records are `pending` (one per
    /// node, in node order).
    pub fn new(kind: VoteKind, version: u8, pending: Vec<Vote>) -> Collector {
        Collector {
            kind,
            version,
            lvh_groups: Vec::new(),
            counted: vec![false; pending.len()],
            received: Vec::with_capacity(pending.len()),
            pending,
        }
    }

    /// Whether node `index`'s vote is in.
    pub fn has(&self, index: usize) -> bool {
        self.counted.get(index).copied().unwrap_or(true)
    }

    /// The kind of call the votes are about.
    pub fn kind(&self) -> VoteKind {
        self.kind
    }

    /// Nodes whose votes are still out.
    pub fn outstanding(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.counted.len()).filter(|&i| !self.counted[i])
    }

    /// Adds a reply, giving it the lvh group its `latestValidHash` belongs to.
    pub fn push(&mut self, mut received: Received) {
        if let Some(seen) = self.counted.get_mut(usize::from(received.vote.node)) {
            *seen = true;
        }
        self.group(&mut received);
        self.received.push(received);
    }

    /// Whether node `index`'s vote is in as not waited for ([`Outcome::Cut`]).
    pub fn is_cut(&self, index: usize) -> bool {
        self.cut_at(index).is_some()
    }

    fn cut_at(&self, index: usize) -> Option<usize> {
        self.received
            .iter()
            .position(|r| usize::from(r.vote.node) == index && r.vote.outcome == Outcome::Cut)
    }

    /// Puts a reply in the place of its node's cut vote (an EL not waited for answered before
    /// the verdict after all); nothing changes if that node's vote was not cut.
    pub fn replace_cut(&mut self, mut received: Received) {
        if let Some(at) = self.cut_at(usize::from(received.vote.node)) {
            self.group(&mut received);
            self.received[at] = received;
        }
    }

    /// Gives `received` the lvh group its `latestValidHash` belongs to.
    fn group(&mut self, received: &mut Received) {
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
    }

    /// The reply the decision follows, if it follows one that carries an answer.
    pub fn followed(&self, verdict: Verdict) -> Option<&Received> {
        match verdict {
            Verdict::Follow { vote, .. } => self
                .received
                .get(usize::from(vote))
                .filter(|r| r.result.is_some()),
            _ => None,
        }
    }

    /// The ballot so far: the votes in, then a pending record per node still out.
    pub fn ballot(&self, elapsed_ms: u32, config: &str) -> Ballot {
        self.ballot_with(elapsed_ms, config, Outcome::Pending)
    }

    /// The ballot as it would be if every vote still out were cut now (FINAL).
    pub fn ballot_if_cut(&self, elapsed_ms: u32, config: &str) -> Ballot {
        self.ballot_with(elapsed_ms, config, Outcome::Cut)
    }

    fn ballot_with(&self, elapsed_ms: u32, config: &str, outstanding: Outcome) -> Ballot {
        let out: Vec<Vote> = self
            .outstanding()
            .map(|i| Vote {
                outcome: outstanding,
                ..self.pending[i]
            })
            .collect();
        let pending = if outstanding == Outcome::Pending {
            out.len() as u16
        } else {
            0
        };
        let votes = self.received.iter().map(|r| r.vote).chain(out).collect();
        Ballot {
            context: Context {
                kind: self.kind,
                method_version: self.version,
                nodes_configured: self.pending.len() as u16,
                pending,
                is_final: pending == 0,
                elapsed_ms,
            },
            votes,
            config: config.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::testing;
    use std::sync::Arc;
    use std::time::Duration;

    const BLOCK: &str = "0xbb";

    fn timed(reply: Reply) -> Timed {
        Timed {
            reply,
            latency: Duration::from_micros(1_500),
        }
    }

    /// A question about `BLOCK` asked with id 1.
    fn ask(kind: VoteKind) -> Question<'static> {
        Question {
            kind,
            id: "1",
            block_hash: Some(BLOCK),
        }
    }

    fn body(text: &str) -> Timed {
        timed(Reply::Body(Bytes::from(text.to_owned())))
    }

    /// A VALID answer carrying `id`.
    fn valid_as(id: &str) -> String {
        format!(r#"{{"id":{id},"result":{{"status":"VALID","latestValidHash":null}}}}"#)
    }

    fn one_node() -> Arc<crate::nodes::Nodes> {
        testing::nodes(
            &[testing::answering(Duration::ZERO, "false")],
            Duration::from_secs(1),
        )
    }

    #[tokio::test]
    async fn replies_become_votes_with_their_answer_parts() {
        let nodes = one_node();
        let node = &nodes.snapshot()[0];
        let valid = receive(
            0,
            node,
            ask(VoteKind::NewPayload),
            &body(
                r#"{"id":1,"result":{"status":"VALID","latestValidHash":"0xBB","validationError":null}}"#,
            ),
        );
        assert_eq!(
            (valid.vote.status, valid.vote.outcome),
            (Status::Valid, Outcome::Answered)
        );
        assert!(
            valid.vote.flags.has(VoteFlags::LVH_PRESENT)
                && valid.vote.flags.has(VoteFlags::LVH_IS_BLOCK)
        );
        assert_eq!(valid.vote.latency_us, 1_500);
        assert_eq!(
            valid.result.as_deref(),
            Some(&br#"{"status":"VALID","latestValidHash":"0xBB","validationError":null}"#[..])
        );
        let build = receive(
            0,
            node,
            ask(VoteKind::ForkchoiceUpdatedWithAttributes),
            &body(
                r#"{"id":1,"result":{"payloadStatus":{"status":"VALID","latestValidHash":null,"validationError":null},"payloadId":"0x01"}}"#,
            ),
        );
        assert_eq!(build.payload_id.as_deref(), Some("0x01"));
        let error = receive(
            0,
            node,
            ask(VoteKind::NewPayload),
            &body(r#"{"id":1,"error":{"code":-38005,"message":"Unsupported fork"}}"#),
        );
        assert_eq!(
            (error.vote.outcome, error.vote.rpc_error_code),
            (Outcome::RpcError, -38005)
        );
        assert!(error.error.is_some() && error.result.is_none());
        for (reply, outcome) in [
            (body("<html>"), Outcome::Malformed),
            (
                body(r#"{"id":1,"result":{"status":"MAYBE"}}"#),
                Outcome::Malformed,
            ),
            (body(&valid_as(r#""1""#)), Outcome::Malformed),
            (body(&valid_as("2")), Outcome::Malformed),
            (body(&valid_as("null")), Outcome::Malformed),
            (body(r#"{"result":{"status":"VALID"}}"#), Outcome::Malformed),
            (timed(Reply::TooLarge(1 << 20)), Outcome::Malformed),
            (timed(Reply::Redirected(307)), Outcome::Unreachable),
            (timed(Reply::Timeout), Outcome::Timeout),
            (timed(Reply::AuthRejected(401)), Outcome::Unreachable),
        ] {
            let vote = receive(0, node, ask(VoteKind::NewPayload), &reply).vote;
            assert_eq!((vote.status, vote.outcome), (Status::None, outcome));
        }
    }

    #[test]
    fn an_answer_carries_the_request_id_as_sent_or_as_the_same_value() {
        let raw = |text: &str| serde_json::from_str::<&RawValue>(text).map(|r| r.get().to_owned());
        for (answered, asked, same) in [
            ("1", "1", true),
            (r#""a1""#, r#""a1""#, true),
            (r#""\u0031""#, r#""1""#, true),
            ("1", r#""1""#, false),
            ("2", "1", false),
            ("null", "1", false),
        ] {
            let answered = raw(answered).expect("json");
            let value = serde_json::from_str::<&RawValue>(&answered).expect("json");
            let value = (answered != "null").then_some(value);
            assert_eq!(same_id(value, asked), same, "{answered} vs {asked}");
        }
        assert!(
            same_id(None, "null"),
            "a null id is answered with null or none"
        );
    }

    #[tokio::test]
    async fn the_collector_groups_equal_latest_valid_hashes_and_counts_pending() {
        let nodes = one_node();
        let node = &nodes.snapshot()[0];
        let invalid = |lvh: &'static str| {
            let text = format!(
                r#"{{"id":1,"result":{{"status":"INVALID","latestValidHash":"{lvh}","validationError":"bad"}}}}"#
            );
            receive(
                0,
                node,
                ask(VoteKind::NewPayload),
                &timed(Reply::Body(Bytes::from(text))),
            )
        };
        let pending = (0..4).map(|i| Vote::failed(i, Outcome::Pending)).collect();
        let mut collector = Collector::new(VoteKind::NewPayload, 4, pending);
        for (i, lvh) in ["0xaa", "0xcc", "0xAA"].into_iter().enumerate() {
            let mut vote = invalid(lvh);
            vote.vote.node = i as u16;
            collector.push(vote);
        }
        let groups: Vec<u8> = collector
            .received
            .iter()
            .map(|r| r.vote.lvh_group)
            .collect();
        assert_eq!(groups, [1, 2, 1]);
        let ballot = collector.ballot(12, "majority=0.6");
        assert_eq!(
            (ballot.context.pending, ballot.context.is_final),
            (1, false)
        );
        let last = ballot.votes.last().map(|v| (v.node, v.outcome));
        assert_eq!(
            last,
            Some((3, Outcome::Pending)),
            "a pending record for node 3"
        );
        let cut = collector.ballot_if_cut(12, "");
        assert!(cut.context.is_final && cut.context.pending == 0);
        assert_eq!(cut.votes.last().map(|v| v.outcome), Some(Outcome::Cut));
        assert_eq!(
            (ballot.context.elapsed_ms, ballot.config.as_str()),
            (12, "majority=0.6")
        );
        let follow = Verdict::Follow { vote: 1, reason: 0 };
        assert_eq!(
            collector.followed(follow).map(|r| r.lvh.as_deref()),
            Some(Some("0xcc"))
        );
    }
}
