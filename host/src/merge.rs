//! Calls every EL answers for itself, merged into one answer: `engine_exchangeCapabilities`
//! (the methods every answering EL supports) and `engine_getClientVersionV1` (every EL's
//! entries in one flat array, as `identification.md` asks of multiplexers). ELs that have not
//! answered shortly after the first one are left out.

use crate::error::{Answer, EngineError};
use crate::health::record_client;
use crate::hedge;
use crate::nodes::{Node, Nodes};
use crate::rpc::Call;
use crate::upstream::{Reply, Timed};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::sync::Arc;
use tokio::time::Instant;

/// Sends `call` to every EL at once; waits for all within the call's budget, but once one has
/// answered, at most [`hedge::MAX`] more: a hung EL does not hold the merged answer.
async fn ask_all(nodes: &Nodes, call: &Call<'_>) -> Vec<(Arc<Node>, Timed)> {
    let budget = crate::route::budget(&call.method);
    let mut asked: FuturesUnordered<_> = nodes
        .snapshot()
        .iter()
        .map(|node| {
            let (node, body) = (Arc::clone(node), call.bytes.clone());
            async move {
                let timed = node.call(body, budget).await;
                node.observe(&timed);
                (node, timed)
            }
        })
        .collect();
    let mut replies = Vec::with_capacity(asked.len());
    let mut cutoff = Instant::now() + budget;
    loop {
        tokio::select! {
            next = asked.next() => match next {
                Some(reply) => {
                    if matches!(reply.1.reply, Reply::Body(_)) {
                        cutoff = cutoff.min(Instant::now() + hedge::MAX);
                    }
                    replies.push(reply);
                }
                None => break,
            },
            () = tokio::time::sleep_until(cutoff) => break,
        }
    }
    replies
}

/// The `result` of each reply that has one, as `T`.
fn results<T: serde::de::DeserializeOwned>(replies: &[(Arc<Node>, Timed)]) -> Vec<(&Arc<Node>, T)> {
    #[derive(serde::Deserialize)]
    struct Answer<T> {
        result: T,
    }
    replies
        .iter()
        .filter_map(|(node, timed)| match &timed.reply {
            Reply::Body(body) => serde_json::from_slice::<Answer<T>>(body)
                .ok()
                .map(|a| (node, a.result)),
            _ => None,
        })
        .collect()
}

fn nobody() -> Answer {
    Err(EngineError::NoAnswer("no execution client answered".into()))
}

/// `value` as a result's JSON text.
fn json(value: &impl serde::Serialize) -> Answer {
    Ok(Bytes::from(
        serde_json::to_vec(value).unwrap_or_else(|_| b"[]".to_vec()),
    ))
}

/// `engine_exchangeCapabilities`: the intersection of the answering ELs' lists, in the first
/// list's order, never listing `engine_exchangeCapabilities` itself.
pub async fn capabilities(nodes: &Nodes, call: &Call<'_>) -> Answer {
    let replies = ask_all(nodes, call).await;
    let lists = results::<Vec<String>>(&replies);
    let Some(((_, first), rest)) = lists.split_first() else {
        return nobody();
    };
    let common: Vec<&String> = first
        .iter()
        .filter(|m| m.as_str() != "engine_exchangeCapabilities")
        .filter(|m| rest.iter().all(|(_, list)| list.contains(m)))
        .collect();
    json(&common)
}

/// `engine_getClientVersionV1`: every answering EL's entries, flattened, in node order.
pub async fn client_versions(nodes: &Nodes, call: &Call<'_>) -> Answer {
    let replies = ask_all(nodes, call).await;
    let lists = results::<Vec<serde_json::Value>>(&replies);
    if lists.is_empty() {
        return nobody();
    }
    for (node, entries) in &lists {
        record_client(node, entries.first());
    }
    let all: Vec<&serde_json::Value> = lists.iter().flat_map(|(_, entries)| entries).collect();
    json(&all)
}
