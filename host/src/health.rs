//! Health checks: a loop per EL asks `eth_syncing` every interval (jittered), or at once when
//! live traffic saw a failure, and keeps the node's state machine and the primary current.
//! On (re)connect it asks `engine_getClientVersionV1` for the client code that votes carry.

use crate::nodes::{Node, NodeState, Nodes};
use crate::readiness;
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
        Reply::Refused(_) | Reply::Unreachable(_) | Reply::TooLarge(_) | Reply::Redirected(_) => {
            (NodeState::Offline, Some(timed.reply.failure()))
        }
    };
    if state != before {
        match state {
            NodeState::Synced | NodeState::Syncing => {
                tracing::info!(node = %node.url, ?state, "EL state");
            }
            _ => {
                tracing::warn!(node = %node.url, ?state, error = error.as_deref().unwrap_or(""), "EL state")
            }
        }
    }
    node.set_state(state, error);
    if state.is_up() && !before.is_up() {
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
        let before = node.health().state;
        let state = check(&node).await;
        if state.is_up() && !before.is_up() {
            readiness::recheck(&nodes, &node).await;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::testing;
    use std::sync::Mutex;

    /// An EL whose `eth_syncing` answer can be changed; it identifies itself as Reth.
    fn el(answer: Arc<Mutex<(Duration, Reply)>>) -> Arc<testing::Scripted> {
        testing::scripted(Box::new(move |body| {
            if body.windows(16).any(|w| w == b"getClientVersion") {
                let who =
                    r#"{"result":[{"code":"RH","name":"reth","version":"1.9.0","commit":"0x01"}]}"#;
                return (
                    Duration::ZERO,
                    Reply::Body(Bytes::from_static(who.as_bytes())),
                );
            }
            answer.lock().expect("answer").clone()
        }))
    }

    fn body(text: &'static str) -> (Duration, Reply) {
        (
            Duration::from_millis(3),
            Reply::Body(Bytes::from_static(text.as_bytes())),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn checks_walk_the_state_machine() {
        let answer = Arc::new(Mutex::new(body(r#"{"result":false}"#)));
        let nodes = testing::nodes(&[el(Arc::clone(&answer))], Duration::from_secs(1));
        let node = &nodes.snapshot()[0];
        let steps = [
            (body(r#"{"result":false}"#), NodeState::Synced),
            (
                body(r#"{"result":{"currentBlock":"0x1"}}"#),
                NodeState::Syncing,
            ),
            (body(r#"{"result":"nonsense"}"#), NodeState::Offline),
            (
                (Duration::from_secs(60), Reply::Timeout),
                NodeState::Offline,
            ),
            (
                (Duration::ZERO, Reply::AuthRejected(401)),
                NodeState::AuthFailed,
            ),
            (
                (Duration::ZERO, Reply::Unreachable("refused".into())),
                NodeState::Offline,
            ),
            (body(r#"{"result":true}"#), NodeState::Syncing),
        ];
        for (reply, expected) in steps {
            *answer.lock().expect("answer") = reply;
            assert_eq!(check(node).await, expected);
            assert_eq!(node.health().state, expected);
        }
        let health = node.health();
        assert_eq!(
            health.client_version.as_deref(),
            Some("reth 1.9.0"),
            "learned on reconnect"
        );
        assert_eq!(health.client, ClientCode::from_letters("RH").expect("code"));
        assert!(health.last_error.is_none(), "cleared once up again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_node_is_rechecked_early_but_never_in_a_tight_loop() {
        let answer = Arc::new(Mutex::new((
            Duration::ZERO,
            Reply::Unreachable("refused".into()),
        )));
        let transport = el(Arc::clone(&answer));
        let nodes = testing::nodes(&[Arc::clone(&transport)], Duration::from_secs(1));
        let node = Arc::clone(&nodes.snapshot()[0]);
        let interval = Duration::from_secs(5);
        tokio::spawn(run(Arc::clone(&nodes), Arc::clone(&node), interval));
        let checks = || {
            transport
                .seen
                .lock()
                .expect("seen")
                .iter()
                .filter(|b| b.windows(11).any(|w| w == b"eth_syncing"))
                .count()
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!((checks(), node.health().state), (1, NodeState::Offline));
        for _ in 0..20 {
            node.recheck.notify_one();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // 2 s of failures asked for a recheck every 100 ms: at most one per MIN_RECHECK_GAP.
        assert!((4..=5).contains(&checks()), "{} checks in 2 s", checks());
        *answer.lock().expect("answer") = body(r#"{"result":false}"#);
        tokio::time::sleep(interval * 2).await;
        assert_eq!(node.health().state, NodeState::Synced);
        assert_eq!(
            nodes.primary_id(),
            Some(node.id),
            "the loop keeps the primary current"
        );
    }
}
