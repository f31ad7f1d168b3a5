//! Health checks: a loop per EL asks `eth_syncing` every interval (jittered), or at once when
//! live traffic saw a failure, and keeps the node's state machine and the primary current.
//! On (re)connect it asks `engine_getClientVersionV1` for the client code that votes carry.

use crate::nodes::{Node, NodeState, Nodes};
use crate::upstream::Reply;
use bytes::Bytes;
use policy_sdk::ClientCode;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Shortest time between two checks of one node when live traffic keeps failing.
pub const MIN_RECHECK_GAP: Duration = Duration::from_millis(500);

/// How long one health check may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

const SYNCING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"eth_syncing","params":[]}"#;

fn client_version_request() -> String {
    serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "engine_getClientVersionV1",
        "params": [{"code": "EB", "name": "eb", "version": env!("CARGO_PKG_VERSION"), "commit": "0x00000000"}]
    })
    .to_string()
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    result: Option<serde_json::Value>,
}

/// One check: classifies the node and records it; returns the new state.
pub async fn check(node: &Node) -> NodeState {
    let before = node.health().state;
    let timed = node
        .call(Bytes::from_static(SYNCING.as_bytes()), CHECK_TIMEOUT)
        .await;
    // Not `observe`: a failed check must not ask for another check at once (that loops).
    if let Reply::Body(_) = &timed.reply {
        node.record_latency(&timed);
    }
    let (state, error) = match &timed.reply {
        Reply::Body(body) => match serde_json::from_slice::<Answer>(body)
            .ok()
            .and_then(|a| a.result)
        {
            Some(serde_json::Value::Bool(false)) => (NodeState::Synced, None),
            Some(serde_json::Value::Bool(true) | serde_json::Value::Object(_)) => {
                (NodeState::Syncing, None)
            }
            _ => (
                NodeState::Offline,
                Some("eth_syncing: unusable answer".to_owned()),
            ),
        },
        Reply::AuthRejected(status) => (
            NodeState::AuthFailed,
            Some(format!(
                "HTTP {status}: eb's token refused (check #jwt-secret)"
            )),
        ),
        Reply::Timeout => (NodeState::Offline, Some("eth_syncing: timeout".to_owned())),
        Reply::Unreachable(e) => (NodeState::Offline, Some(e.clone())),
    };
    if state != before {
        match state {
            NodeState::Synced | NodeState::Syncing => {
                tracing::info!(node = %node.name, ?state, "EL state");
            }
            _ => {
                tracing::warn!(node = %node.name, ?state, error = error.as_deref().unwrap_or(""), "EL state")
            }
        }
    }
    node.set_state(state, error);
    let reconnected = matches!(state, NodeState::Synced | NodeState::Syncing)
        && !matches!(before, NodeState::Synced | NodeState::Syncing);
    if reconnected {
        learn_client(node).await;
    }
    state
}

/// Asks the node who it is; the first entry's code goes into its votes.
pub async fn learn_client(node: &Node) {
    let timed = node
        .call(Bytes::from(client_version_request()), CHECK_TIMEOUT)
        .await;
    if let Reply::Body(body) = timed.reply {
        if let Some(serde_json::Value::Array(entries)) = serde_json::from_slice::<Answer>(&body)
            .ok()
            .and_then(|a| a.result)
        {
            record_client(node, entries.first());
        }
    }
}

/// Records a `ClientVersionV1` entry as the node's identity.
pub fn record_client(node: &Node, entry: Option<&serde_json::Value>) {
    let Some(entry) = entry else { return };
    let field = |name| entry.get(name).and_then(|v| v.as_str()).unwrap_or_default();
    if let Some(code) = ClientCode::from_letters(field("code")) {
        node.set_client(
            code,
            format!("{} {}", field("name"), field("version"))
                .trim()
                .to_owned(),
        );
    }
}

/// Runs the health loop of `node` until it is removed.
pub async fn run(nodes: Arc<Nodes>, node: Arc<Node>, interval: Duration) {
    // Spread the nodes' checks over the interval, and jitter each period by ±10%.
    let mut jitter = node.id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    while !node.is_removed() {
        check(&node).await;
        nodes.update_primary();
        jitter = jitter.rotate_left(17) ^ 0x2545_F491_4F6C_DD1D;
        let spread = interval.as_millis() as u64 / 5;
        let pause = interval.as_millis() as u64 - spread / 2 + jitter % spread.max(1);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(pause)) => {}
            // Live traffic saw a failure: check early, but at most every MIN_RECHECK_GAP.
            () = node.recheck.notified() => tokio::time::sleep(MIN_RECHECK_GAP).await,
        }
    }
}

/// Checks every node once now (`POST /recheck`) and updates the primary.
pub async fn recheck_all(nodes: &Nodes) {
    let all = nodes.snapshot();
    futures_util::future::join_all(all.iter().map(|n| check(n))).await;
    nodes.update_primary();
}
