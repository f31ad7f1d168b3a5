//! Reads go to one EL: the primary first, then the next healthy EL when a call fails in
//! transport (timeout, refused, HTTP error, unreadable answer), all inside the call's budget.
//! A JSON-RPC error is an answer and is returned as is.

use crate::error::{Answer, EngineError};
use crate::nodes::Nodes;
use crate::rpc::{Call, ElAnswer};
use crate::upstream::{Reply, Timed};
use tokio::time::Instant;

/// The EL's answer as eb's, or `None` if it is not a JSON-RPC answer.
fn answer_of(timed: &Timed) -> Option<Answer> {
    let Reply::Body(body) = &timed.reply else {
        return None;
    };
    serde_json::from_slice::<ElAnswer<'_>>(body)
        .ok()?
        .into_answer(body)
}

/// Sends a read to the primary, failing over to the next EL in [`read_order`](Nodes::read_order).
pub async fn read(nodes: &Nodes, call: &Call<'_>) -> Answer {
    let deadline = Instant::now() + crate::route::budget(&call.method);
    let mut last = "no usable execution client".to_owned();
    for node in nodes.read_order() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        let timed = node.call(call.bytes.clone(), remaining).await;
        node.observe(&timed);
        if let Some(answer) = answer_of(&timed) {
            return answer;
        }
        last = format!("{}: {}", node.url, timed.reply.failure());
    }
    Err(EngineError::NoAnswer(format!(
        "no execution client answered ({last})"
    )))
}

/// Sends to every usable EL at once (`eth_sendRawTransaction`: any EL may build the next
/// block); answers with the first answer in read order.
pub async fn broadcast(nodes: &Nodes, call: &Call<'_>) -> Answer {
    let budget = crate::route::budget(&call.method);
    let order = nodes.read_order();
    let replies = futures_util::future::join_all(order.iter().map(|node| {
        let body = call.bytes.clone();
        async move {
            let timed = node.call(body, budget).await;
            node.observe(&timed);
            timed
        }
    }))
    .await;
    replies
        .iter()
        .find_map(answer_of)
        .unwrap_or_else(|| Err(EngineError::NoAnswer("no execution client answered".into())))
}
