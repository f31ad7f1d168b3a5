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
/// primary's hedge delay has passed, the first other one. An error (say "already known": peered
/// ELs pass transactions on, so one may have it from a peer before eb's copy arrives) is the
/// answer only when no EL accepted the transaction. Every call runs to its end even after the
/// answer.
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
    let mut refused: Option<(usize, Answer)> = None;
    let mut hedged = false;
    loop {
        tokio::select! {
            next = answers.recv() => match next {
                Some((rank, Some(answer))) => {
                    let kept = if answer.is_ok() { &mut best } else { &mut refused };
                    if answer.is_ok() && (rank == 0 || hedged) {
                        return answer;
                    }
                    if kept.as_ref().is_none_or(|(r, _)| rank < *r) {
                        *kept = Some((rank, answer));
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
    best.or(refused)
        .map(|(_, answer)| answer)
        .unwrap_or_else(|| Err(EngineError::NoAnswer("no execution client answered".into())))
}

#[cfg(test)]
mod tests {
    use super::broadcast;
    use crate::error::EngineError;
    use crate::nodes::testing::{answering, scripted, synced_nodes};
    use crate::rpc::single;
    use crate::upstream::Reply;
    use bytes::Bytes;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_send_one_el_already_has_is_answered_with_the_accepting_els_hash() {
        let known = scripted(Box::new(|_| {
            let body =
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"already known"}}"#;
            (
                Duration::from_millis(1),
                Reply::Body(Bytes::from_static(body.as_bytes())),
            )
        }));
        let els = [known, answering(Duration::from_millis(20), r#""0xhash""#)];
        let nodes = synced_nodes(&els, Duration::from_secs(1));
        let body = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["0x02"]}"#,
        );
        let answer = broadcast(&nodes, &single(&body)).await;
        assert_eq!(answer.as_deref().ok(), Some(&b"\"0xhash\""[..]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_every_el_refuses_is_answered_with_the_primarys_error() {
        let refusing = || {
            scripted(Box::new(|_| {
                let body =
                    r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"nonce too low"}}"#;
                (
                    Duration::from_millis(1),
                    Reply::Body(Bytes::from_static(body.as_bytes())),
                )
            }))
        };
        let nodes = synced_nodes(&[refusing(), refusing()], Duration::from_secs(1));
        let body = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["0x02"]}"#,
        );
        let answer = broadcast(&nodes, &single(&body)).await;
        assert!(
            matches!(&answer, Err(EngineError::Upstream(error)) if error.ends_with(b"\"nonce too low\"}")),
            "{answer:?}"
        );
    }
}
