//! Reads go to one EL: the primary first, hedged to the next EL in
//! [`read_order`](Nodes::read_order) when it fails in transport (timeout, refused, HTTP error,
//! unreadable answer) or is slow past its hedge delay, all inside the call's budget. A JSON-RPC
//! error is an answer and is returned as is.

use crate::error::{Answer, EngineError};
use crate::hedge::{self, answer_of};
use crate::nodes::Nodes;
use crate::rpc::Call;
use std::sync::Arc;
use tokio::time::Instant;

/// Sends a read to the primary, hedging to the next ELs.
pub async fn read(nodes: &Nodes, call: &Call<'_>) -> Answer {
    let candidates = nodes
        .read_order()
        .into_iter()
        .map(|node| (node, call.bytes.clone()))
        .collect();
    let budget = crate::route::budget(&call.method);
    hedge::first_answer(candidates, budget, hedge::MAX)
        .await
        .unwrap_or_else(|last| {
            Err(EngineError::NoAnswer(format!(
                "no execution client answered ({last})"
            )))
        })
}

/// Sends to every usable EL at once (`eth_sendRawTransaction`: any EL may build the next
/// block) and answers with the best-ranked answer in read order: the primary's, or once the
/// primary's hedge delay has passed, the first other one. Every call runs to its end even
/// after the answer.
pub async fn broadcast(nodes: &Nodes, call: &Call<'_>) -> Answer {
    let budget = crate::route::budget(&call.method);
    let deadline = Instant::now() + budget;
    let order = nodes.read_order();
    let Some(primary) = order.first() else {
        return Err(EngineError::NoAnswer("no usable execution client".into()));
    };
    let hedge_at = Instant::now() + hedge::hedge_after(primary);
    let (sent, mut answers) = tokio::sync::mpsc::channel(order.len());
    for (rank, node) in order.iter().enumerate() {
        let (node, body, sent) = (Arc::clone(node), call.bytes.clone(), sent.clone());
        tokio::spawn(async move {
            let timed = node.call(body, budget).await;
            node.observe(&timed);
            let _ = sent.send((rank, answer_of(&timed.reply))).await;
        });
    }
    drop(sent);
    let mut best: Option<(usize, Answer)> = None;
    let mut hedged = false;
    loop {
        tokio::select! {
            next = answers.recv() => match next {
                Some((rank, Some(answer))) => {
                    if rank == 0 || hedged {
                        return answer;
                    }
                    if best.as_ref().is_none_or(|(r, _)| rank < *r) {
                        best = Some((rank, answer));
                    }
                }
                Some((_, None)) => {}
                None => break,
            },
            () = tokio::time::sleep_until(hedge_at), if !hedged => {
                hedged = true;
                if let Some((_, answer)) = best.take() {
                    return answer;
                }
            }
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    best.map(|(_, answer)| answer)
        .unwrap_or_else(|| Err(EngineError::NoAnswer("no execution client answered".into())))
}
