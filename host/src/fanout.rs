//! Fan-out of a state-changing call: queued to every EL in order, replies turned into votes as
//! they arrive, the policy asked after each one until it gives a verdict; at the deadline the
//! missing replies become TIMEOUT votes and the policy must decide. Calls still in flight after
//! the verdict are never cancelled: they finish in the background as late votes.

use crate::app::App;
use crate::nodes::Node;
use crate::policy::{Decision, Policy};
use crate::route;
use crate::upstream::Timed;
use crate::votes::{receive, Collector};
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
    /// The policy that decided.
    pub policy: Arc<dyn Policy>,
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
    let mut collector = Collector::new(call.method, call.version, nodes.len());
    let mut arrived = vec![false; nodes.len()];
    let elapsed_ms = || start.elapsed().as_millis().min(u128::from(u32::MAX)) as u32;
    let block_hash = call.block_hash.as_deref();
    let decision = loop {
        tokio::select! {
            next = replies.next() => {
                let Some((index, reply)) = next else {
                    break policy.decide(&collector.ballot(elapsed_ms(), &config));
                };
                arrived[index] = true;
                let node = &nodes[index];
                let received = match reply {
                    Ok(timed) => {
                        node.observe(&timed);
                        receive(index as u16, node, call.method, &timed, block_hash)
                    }
                    Err(_) => failed(index, node, Outcome::Unreachable),
                };
                collector.push(received);
                let decision = policy.decide(&collector.ballot(elapsed_ms(), &config));
                if decision.verdict != Verdict::Wait {
                    break decision;
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                for (index, node) in nodes.iter().enumerate().filter(|(i, _)| !arrived[*i]) {
                    let mut timeout = failed(index, node, Outcome::Timeout);
                    timeout.vote.latency_us = budget.as_micros() as u32;
                    collector.push(timeout);
                }
                break policy.decide(&collector.ballot(elapsed_ms(), &config));
            }
        }
    };
    if !replies.is_empty() {
        tokio::spawn(finish_late(
            Arc::clone(&nodes),
            replies,
            call.method_name.to_owned(),
        ));
    }
    Collected {
        collector,
        decision,
        policy,
        nodes,
    }
}

fn failed(index: usize, node: &Node, outcome: Outcome) -> crate::votes::Received {
    let mut vote = Vote::failed(index as u16, outcome);
    vote.client = node.health().client;
    vote.flags = vote
        .flags
        .with(policy_sdk::VoteFlags::DO_NOT_USE, node.do_not_use);
    crate::votes::Received {
        vote,
        result: None,
        error: None,
        lvh: None,
        payload_id: None,
    }
}

/// Lets the replies that come after the verdict finish: their latency still feeds health.
async fn finish_late(
    nodes: Arc<Vec<Arc<Node>>>,
    mut replies: FuturesUnordered<Pending>,
    method: String,
) {
    while let Some((index, reply)) = replies.next().await {
        if let Ok(timed) = reply {
            let node = &nodes[index];
            node.observe(&timed);
            tracing::debug!(node = %node.name, %method, latency_ms = timed.latency.as_millis() as u64, "late vote");
        }
    }
}
