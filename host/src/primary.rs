//! Reads go to one EL: the primary first, then the next healthy EL when a call fails in
//! transport (timeout, refused, HTTP error, unreadable answer), all inside the call's budget.
//! A JSON-RPC error is an answer and is returned as is.

use crate::app::App;
use crate::rpc::{self, code, Call, ElAnswer};
use crate::upstream::{Reply, Timed};

/// The EL's answer re-addressed to the CL's id, or `None` if it is not a JSON-RPC answer.
fn readdress(call: &Call<'_>, timed: &Timed) -> Option<Vec<u8>> {
    let Reply::Body(body) = &timed.reply else {
        return None;
    };
    match serde_json::from_slice::<ElAnswer<'_>>(body).ok()? {
        ElAnswer { error: Some(e), .. } => Some(rpc::error_raw(call.id, e.get())),
        ElAnswer {
            result: Some(r), ..
        } => Some(rpc::result(call.id, r.get())),
        _ => None,
    }
}

fn describe(reply: &Reply) -> String {
    match reply {
        Reply::Body(_) => "unreadable answer".to_owned(),
        Reply::Timeout => "timeout".to_owned(),
        Reply::AuthRejected(status) => format!("HTTP {status}"),
        Reply::Unreachable(e) => e.clone(),
    }
}

/// Sends a read to the primary, failing over to the next EL in [`read_order`](crate::nodes::Nodes::read_order).
pub async fn read(app: &App, call: &Call<'_>) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + crate::route::budget(&call.method);
    let mut last = "no usable execution client".to_owned();
    for node in app.nodes.read_order() {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            break;
        }
        let timed = node.call(call.bytes.clone(), remaining).await;
        node.observe(&timed);
        if let Some(answer) = readdress(call, &timed) {
            return answer;
        }
        last = format!("{}: {}", node.name, describe(&timed.reply));
    }
    rpc::error(
        call.id,
        code::SERVER_ERROR,
        &format!("no execution client answered ({last})"),
    )
}

/// Sends to every usable EL at once (`eth_sendRawTransaction`: any EL may build the next
/// block); answers with the first answer in read order.
pub async fn broadcast(app: &App, call: &Call<'_>) -> Vec<u8> {
    let budget = crate::route::budget(&call.method);
    let order = app.nodes.read_order();
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
        .find_map(|timed| readdress(call, timed))
        .unwrap_or_else(|| rpc::error(call.id, code::SERVER_ERROR, "no execution client answered"))
}
