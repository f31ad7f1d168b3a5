//! Fan-out of a state-changing call: queued to every EL in order, replies turned into votes as
//! they arrive, the policy asked after each one until it gives a verdict; at the deadline the
//! missing replies become TIMEOUT votes and the policy must decide. Calls still in flight after
//! the verdict are never cancelled: they finish in the background as late votes.

use crate::metrics::Metrics;
use crate::nodes::{Node, Nodes};
use crate::policy::{Ballot, Decision, Policy, PolicySlot};
use crate::record::{self, Recorded, Recorder};
use crate::route;
use crate::upstream::Timed;
use crate::votes::{failed, receive, Collector, Received};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use policy_sdk::fixture::Case;
use policy_sdk::{Outcome, Verdict, Vote, VoteKind};
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// A state-changing call about to be fanned out.
pub struct VoteCall<'a> {
    /// The JSON-RPC method name (for its deadline, logs and recordings).
    pub method: &'a str,
    /// The kind of vote.
    pub kind: VoteKind,
    /// The method version.
    pub version: u8,
    /// The CL's request bytes, shared by every EL.
    pub body: Bytes,
    /// The block (newPayload) or head (forkchoiceUpdated) hash.
    pub block_hash: Option<&'a str>,
}

/// What the fan-out collected and what the policy decided.
pub struct Collected {
    /// The replies, in arrival order (indices match the decision's vote numbers).
    pub collector: Collector,
    /// The policy's decision.
    pub decision: Decision,
    /// The ELs the call went to, by vote node index.
    pub nodes: Arc<Vec<Arc<Node>>>,
    /// Milliseconds from fan-out to the decision.
    pub elapsed_ms: u32,
}

impl Collected {
    /// The reply the verdict follows, if it follows one.
    pub fn followed(&self) -> Option<&Received> {
        self.collector.followed(self.decision.verdict)
    }
}

type Pending = std::pin::Pin<
    Box<dyn std::future::Future<Output = (usize, Result<Timed, oneshot::error::RecvError>)> + Send>,
>;

/// The fan-out stage: the ELs, the policy that decides, and where decisions are counted and
/// recorded.
pub struct Fanout {
    nodes: Arc<Nodes>,
    policy: Arc<PolicySlot>,
    metrics: Arc<Metrics>,
    recorder: Option<Arc<Recorder>>,
}

impl Fanout {
    /// The stage over `nodes`, deciding with the slot's active policy.
    pub fn new(
        nodes: Arc<Nodes>,
        policy: Arc<PolicySlot>,
        metrics: Arc<Metrics>,
        recorder: Option<Arc<Recorder>>,
    ) -> Fanout {
        Fanout {
            nodes,
            policy,
            metrics,
            recorder,
        }
    }

    /// Fans `call` out to every EL and returns the verdict before the CL's deadline.
    pub async fn run(&self, call: &VoteCall<'_>) -> Collected {
        let nodes = self.nodes.snapshot();
        let budget = route::budget(call.method);
        let start = Instant::now();
        let deadline = start + budget;
        let mut replies: FuturesUnordered<Pending> = FuturesUnordered::new();
        for (index, node) in nodes.iter().enumerate() {
            let receiver = node.enqueue(call.body.clone(), node.timeout.min(budget));
            replies.push(Box::pin(async move { (index, receiver.await) }));
        }
        let policy = self.policy.current();
        let config = policy.info().config.clone();
        let mut collector = Collector::new(call.kind, call.version, nodes.len());
        let mut arrived = vec![false; nodes.len()];
        let elapsed_ms = || start.elapsed().as_millis().min(u128::from(u32::MAX)) as u32;
        let (decision, elapsed_ms) = loop {
            tokio::select! {
                next = replies.next() => {
                    let elapsed = elapsed_ms();
                    let Some((index, reply)) = next else {
                        break (self.decide(&*policy, &collector.ballot(elapsed, &config)), elapsed);
                    };
                    arrived[index] = true;
                    let node = &nodes[index];
                    let received = match reply {
                        Ok(timed) => {
                            node.observe(&timed);
                            receive(index as u16, node, call.kind, &timed, call.block_hash)
                        }
                        Err(_) => failed(index as u16, node, Outcome::Unreachable),
                    };
                    self.count_vote(node, &received.vote);
                    collector.push(received);
                    let decision = self.decide(&*policy, &collector.ballot(elapsed, &config));
                    if decision.verdict != Verdict::Wait {
                        break (decision, elapsed);
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    for (index, node) in nodes.iter().enumerate().filter(|(i, _)| !arrived[*i]) {
                        let mut timeout = failed(index as u16, node, Outcome::Timeout);
                        timeout.vote.latency_us = budget.as_micros() as u32;
                        self.count_vote(node, &timeout.vote);
                        collector.push(timeout);
                    }
                    let elapsed = elapsed_ms();
                    break (self.decide(&*policy, &collector.ballot(elapsed, &config)), elapsed);
                }
            }
        };
        let collected = Collected {
            collector,
            decision,
            nodes,
            elapsed_ms,
        };
        let record = self.recorder.as_ref().map(|recorder| {
            let received = &collected.collector.received;
            let about = Recorded {
                method: call.method,
                kind: call.kind,
                version: call.version,
                nodes: collected.nodes.len() as u16,
                pending: collected.nodes.len().saturating_sub(received.len()) as u16,
                config: &config,
                block_hash: call.block_hash,
                elapsed_ms,
                policy_sha256: &policy.info().sha256,
            };
            let reason = collected.decision.verdict.reason();
            let case = record::case(&about, received, collected.followed(), reason);
            (Arc::clone(recorder), case)
        });
        if !replies.is_empty() {
            tokio::spawn(finish_late(
                replies,
                Late {
                    nodes: Arc::clone(&collected.nodes),
                    kind: call.kind,
                    method: call.method.to_owned(),
                    block_hash: call.block_hash.map(str::to_owned),
                    metrics: Arc::clone(&self.metrics),
                    record,
                },
            ));
        } else if let Some((recorder, case)) = record {
            recorder.write(&case);
        }
        collected
    }

    /// Asks `policy` about `ballot`, timing it and counting faults.
    fn decide(&self, policy: &dyn Policy, ballot: &Ballot) -> Decision {
        let started = Instant::now();
        let decision = policy.decide(ballot);
        self.metrics
            .decision_seconds
            .observe(started.elapsed().as_secs_f64());
        if let Some(fault) = &decision.fault {
            self.metrics
                .policy_faults
                .get_or_create(&vec![("kind", fault.kind().to_owned())])
                .inc();
        }
        decision
    }

    /// `eb_votes_total{node, status, outcome}`.
    fn count_vote(&self, node: &Node, vote: &Vote) {
        let outcome = match vote.outcome {
            Outcome::Answered => "answered",
            Outcome::Timeout => "timeout",
            Outcome::Unreachable => "unreachable",
            Outcome::RpcError => "rpc_error",
            Outcome::Malformed => "malformed",
        };
        let labels = vec![
            ("node", node.url.clone()),
            ("status", vote.status.name().to_owned()),
            ("outcome", outcome.to_owned()),
        ];
        self.metrics.votes.get_or_create(&labels).inc();
    }
}

/// What the replies after the verdict still need.
struct Late {
    nodes: Arc<Vec<Arc<Node>>>,
    kind: VoteKind,
    method: String,
    block_hash: Option<String>,
    metrics: Arc<Metrics>,
    record: Option<(Arc<Recorder>, Case)>,
}

/// Lets the replies that come after the verdict finish: their latency still feeds health, and
/// the recording gets them as late votes.
async fn finish_late(mut replies: FuturesUnordered<Pending>, mut late: Late) {
    while let Some((index, reply)) = replies.next().await {
        late.metrics.late_votes.inc();
        let Ok(timed) = reply else { continue };
        let node = &late.nodes[index];
        node.observe(&timed);
        tracing::debug!(node = %node.url, method = %late.method, latency_ms = timed.latency.as_millis() as u64, "late vote");
        if let Some((_, case)) = &mut late.record {
            let received = receive(
                index as u16,
                node,
                late.kind,
                &timed,
                late.block_hash.as_deref(),
            );
            case.votes.push(record::vote_spec(&received, true));
        }
    }
    if let Some((recorder, case)) = late.record {
        recorder.write(&case);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::testing::{self, Scripted};
    use crate::upstream::Reply;
    use policy_sdk::Status;
    use std::time::Duration;

    const BLOCK: &str = "0x00000000000000000000000000000000000000000000000000000000000000aa";

    /// An EL answering newPayload with `status` after `delay_ms`.
    fn el(status: &'static str, delay_ms: u64) -> Arc<Scripted> {
        testing::scripted(Box::new(move |_| {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":1,"result":{{"status":"{status}","latestValidHash":"{BLOCK}","validationError":null}}}}"#
            );
            (
                Duration::from_millis(delay_ms),
                Reply::Body(Bytes::from(body)),
            )
        }))
    }

    /// The fan-out over `els` (each with `timeout`), deciding with the embedded default policy.
    fn fanout(els: &[Arc<Scripted>], timeout: Duration) -> Fanout {
        let nodes = testing::nodes(els, timeout);
        let metrics = Arc::new(Metrics::default());
        let slot = PolicySlot::embedded(Arc::clone(&metrics));
        Fanout::new(nodes, Arc::new(slot), metrics, None)
    }

    fn call(body: &'static str) -> VoteCall<'static> {
        VoteCall {
            method: "engine_newPayloadV4",
            kind: VoteKind::NewPayload,
            version: 4,
            body: Bytes::from_static(body.as_bytes()),
            block_hash: Some(BLOCK),
        }
    }

    fn followed_status(collected: &Collected) -> Option<Status> {
        collected.followed().map(|r| r.vote.status)
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_el_holds_a_valid_verdict_until_it_answers() {
        let fanout = fanout(
            &[el("VALID", 10), el("VALID", 12), el("VALID", 3_000)],
            route::MAX_EL_TIMEOUT,
        );
        let collected = fanout.run(&call("{}")).await;
        assert_eq!(followed_status(&collected), Some(Status::Valid));
        assert_eq!(collected.collector.received.len(), 3, "every vote counted");
        assert_eq!(
            collected.elapsed_ms, 3_000,
            "a VALID verdict waits for every vote: one late INVALID would make it SYNCING"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_el_counts_as_a_timeout_after_its_own_timeout() {
        let fanout = fanout(
            &[el("VALID", 5), el("VALID", 7), el("VALID", 3_600_000)],
            Duration::from_millis(2_000),
        );
        let collected = fanout.run(&call("{}")).await;
        assert_eq!(
            followed_status(&collected),
            Some(Status::Valid),
            "2 of 2 counted"
        );
        let missing = &collected.collector.received[2].vote;
        assert_eq!((missing.node, missing.outcome), (2, Outcome::Timeout));
        assert_eq!(collected.elapsed_ms, 2_000);
    }

    #[tokio::test(start_paused = true)]
    async fn the_policy_waits_then_decides_once_an_invalid_majority_is_certain() {
        let slow = el("VALID", 5_000);
        let fanout = fanout(
            &[el("INVALID", 10), el("INVALID", 20), Arc::clone(&slow)],
            route::MAX_EL_TIMEOUT,
        );
        let collected = fanout.run(&call(r#"{"id":7}"#)).await;
        assert_eq!(followed_status(&collected), Some(Status::Invalid));
        assert_eq!(
            collected.elapsed_ms, 20,
            "Wait after one vote, INVALID after two"
        );
        assert_eq!(collected.collector.received.len(), 2);
        let seen = slow.seen.lock().expect("seen").clone();
        assert_eq!(
            seen,
            [Bytes::from_static(br#"{"id":7}"#)],
            "the straggler still got the call"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_deadline_every_missing_vote_is_a_timeout_and_the_answer_syncing() {
        let hung = || el("VALID", 3_600_000);
        let fanout = fanout(&[hung(), hung(), hung()], route::MAX_EL_TIMEOUT);
        let collected = fanout.run(&call("{}")).await;
        assert_eq!(collected.followed().map(|r| r.vote.node), None);
        assert!(matches!(
            collected.decision.verdict,
            Verdict::Syncing { .. }
        ));
        assert_eq!(
            u128::from(collected.elapsed_ms),
            route::budget("engine_newPayloadV4").as_millis()
        );
        let outcomes: Vec<Outcome> = collected
            .collector
            .received
            .iter()
            .map(|r| r.vote.outcome)
            .collect();
        assert_eq!(outcomes, [Outcome::Timeout; 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn every_el_gets_the_same_bytes_in_call_order() {
        let els = [el("VALID", 30), el("VALID", 1), el("VALID", 15)];
        let fanout = fanout(&els, route::MAX_EL_TIMEOUT);
        let (one, two) = (call(r#"{"n":1}"#), call(r#"{"n":2}"#));
        let (first, second) = tokio::join!(fanout.run(&one), fanout.run(&two));
        assert_eq!(followed_status(&first), Some(Status::Valid));
        assert_eq!(followed_status(&second), Some(Status::Valid));
        for el in &els {
            let seen = el.seen.lock().expect("seen").clone();
            assert_eq!(seen, [&br#"{"n":1}"#[..], &br#"{"n":2}"#[..]]);
        }
    }
}
