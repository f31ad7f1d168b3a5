//! Fan-out of a state-changing call: queued to every EL in order, replies turned into votes as
//! they arrive, the policy asked after each one until it gives a verdict; at the deadline the
//! missing replies become TIMEOUT votes and the policy must decide. Calls still in flight after
//! the verdict are never cancelled: they finish in the background as late votes.

use crate::app::App;
use crate::metrics::Metrics;
use crate::nodes::Node;
use crate::policy::Decision;
use crate::record::Recorder;
use crate::route;
use crate::upstream::Timed;
use crate::votes::{failed, receive, Collector};
use futures_util::stream::{FuturesUnordered, StreamExt};
use policy_sdk::{Method, Outcome, Verdict, Vote};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// A call about to be fanned out.
pub struct Fanout<'a> {
    /// The JSON-RPC method name (for its deadline).
    pub method_name: &'a str,
    /// The kind of vote.
    pub method: Method,
    /// The method version.
    pub version: u8,
    /// The CL's request bytes, shared by every EL.
    pub body: bytes::Bytes,
    /// The block (newPayload) or head (forkchoiceUpdated) hash.
    pub block_hash: Option<String>,
}

/// What the fan-out collected and what the policy decided.
pub struct Collected {
    /// The replies, in arrival order (indices match the decision's vote numbers).
    pub collector: Collector,
    /// The policy's decision.
    pub decision: Decision,
    /// The ELs the call went to, by vote node index.
    pub nodes: Arc<Vec<Arc<Node>>>,
}

type Pending = std::pin::Pin<
    Box<dyn std::future::Future<Output = (usize, Result<Timed, oneshot::error::RecvError>)> + Send>,
>;

/// Fans `call` out to every EL and returns the verdict before the CL's deadline.
pub async fn fan_out(app: &App, call: Fanout<'_>) -> Collected {
    let nodes = app.nodes.snapshot();
    let budget = route::budget(call.method_name);
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + budget);
    let mut replies: FuturesUnordered<Pending> = FuturesUnordered::new();
    for (index, node) in nodes.iter().enumerate() {
        let receiver = node.enqueue(call.body.clone(), node.timeout.min(budget));
        replies.push(Box::pin(async move { (index, receiver.await) }));
    }
    let policy = app.policy();
    let config = policy.info().config.clone();
    let metrics = &app.metrics;
    let decide = |ballot: &crate::policy::Ballot| {
        let started = Instant::now();
        let decision = policy.decide(ballot);
        metrics
            .decision_seconds
            .observe(started.elapsed().as_secs_f64());
        if let Some(fault) = &decision.fault {
            metrics
                .policy_faults
                .get_or_create(&vec![("kind", fault.kind().to_owned())])
                .inc();
        }
        decision
    };
    let mut collector = Collector::new(call.method, call.version, nodes.len());
    let mut arrived = vec![false; nodes.len()];
    let elapsed_ms = || start.elapsed().as_millis().min(u128::from(u32::MAX)) as u32;
    let block_hash = call.block_hash.as_deref();
    let decision = loop {
        tokio::select! {
            next = replies.next() => {
                let Some((index, reply)) = next else {
                    break decide(&collector.ballot(elapsed_ms(), &config));
                };
                arrived[index] = true;
                let node = &nodes[index];
                let received = match reply {
                    Ok(timed) => {
                        node.observe(&timed);
                        receive(index as u16, node, call.method, &timed, block_hash)
                    }
                    Err(_) => failed(index as u16, node, Outcome::Unreachable),
                };
                count_vote(metrics, node, &received.vote);
                collector.push(received);
                let decision = decide(&collector.ballot(elapsed_ms(), &config));
                if decision.verdict != Verdict::Wait {
                    break decision;
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                for (index, node) in nodes.iter().enumerate().filter(|(i, _)| !arrived[*i]) {
                    let mut timeout = failed(index as u16, node, Outcome::Timeout);
                    timeout.vote.latency_us = budget.as_micros() as u32;
                    count_vote(metrics, node, &timeout.vote);
                    collector.push(timeout);
                }
                break decide(&collector.ballot(elapsed_ms(), &config));
            }
        }
    };
    let record = app.recorder.as_ref().map(|recorder| {
        let pending = nodes.len().saturating_sub(collector.received.len()) as u16;
        let case = crate::record::case(
            call.method,
            call.method_name,
            call.version,
            nodes.len() as u16,
            pending,
            &config,
            block_hash,
            &collector.received,
            &decision,
            &policy.info().sha256,
        );
        (Arc::clone(recorder), case)
    });
    if !replies.is_empty() {
        tokio::spawn(finish_late(
            replies,
            Late {
                nodes: Arc::clone(&nodes),
                method: call.method,
                method_name: call.method_name.to_owned(),
                block_hash: call.block_hash.clone(),
                metrics: Arc::clone(&app.metrics),
                record,
            },
        ));
    } else if let Some((recorder, case)) = record {
        recorder.write(&case);
    }
    Collected {
        collector,
        decision,
        nodes,
    }
}

/// `eb_votes_total{node, status, outcome}`.
fn count_vote(metrics: &Metrics, node: &Node, vote: &Vote) {
    let outcome = match vote.outcome {
        Outcome::Answered => "answered",
        Outcome::Timeout => "timeout",
        Outcome::Unreachable => "unreachable",
        Outcome::RpcError => "rpc_error",
        Outcome::Malformed => "malformed",
    };
    let labels = vec![
        ("node", node.name.clone()),
        ("status", vote.status.name().to_owned()),
        ("outcome", outcome.to_owned()),
    ];
    metrics.votes.get_or_create(&labels).inc();
}

/// What the replies after the verdict still need.
struct Late {
    nodes: Arc<Vec<Arc<Node>>>,
    method: Method,
    method_name: String,
    block_hash: Option<String>,
    metrics: Arc<Metrics>,
    record: Option<(Arc<Recorder>, policy_sdk::fixture::Case)>,
}

/// Lets the replies that come after the verdict finish: their latency still feeds health, and
/// the recording gets them as late votes.
async fn finish_late(mut replies: FuturesUnordered<Pending>, mut late: Late) {
    while let Some((index, reply)) = replies.next().await {
        late.metrics.late_votes.inc();
        let Ok(timed) = reply else { continue };
        let node = &late.nodes[index];
        node.observe(&timed);
        tracing::debug!(node = %node.name, method = %late.method_name, latency_ms = timed.latency.as_millis() as u64, "late vote");
        if let Some((_, case)) = &mut late.record {
            let received = receive(
                index as u16,
                node,
                late.method,
                &timed,
                late.block_hash.as_deref(),
            );
            case.votes.push(crate::record::vote_spec(&received, true));
        }
    }
    if let Some((recorder, case)) = late.record {
        recorder.write(&case);
    }
}
