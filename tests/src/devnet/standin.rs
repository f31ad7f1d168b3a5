//! A fault-injecting stand-in in front of one EL's engine port: it forwards every request as is
//! (eb's JWT included) and, once told to lie, turns the EL's VALID answers to `engine_newPayload*`
//! into INVALID. Everything else passes through untouched.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// What the stand-in is doing.
#[derive(Default)]
struct Counters {
    lying: AtomicBool,
    forwarded: AtomicU64,
    lies: AtomicU64,
}

/// A running stand-in.
pub struct StandIn {
    /// Its URL (what eb is given instead of the EL's engine URL).
    pub url: String,
    state: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    counters: Counters,
}

impl StandIn {
    /// Starts forwarding to `upstream` (honestly, until [`StandIn::lie`]).
    pub async fn start(upstream: &str) -> std::io::Result<StandIn> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Shared {
            upstream: upstream.to_owned(),
            client: crate::client(),
            counters: Counters::default(),
        });
        let router = axum::Router::new()
            .fallback(forward)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(StandIn { url, state, task })
    }

    /// From now on, VALID newPayload answers become INVALID.
    pub fn lie(&self) {
        self.state.counters.lying.store(true, Ordering::SeqCst);
    }

    /// From now on, forwards answers as they are again.
    pub fn honest(&self) {
        self.state.counters.lying.store(false, Ordering::SeqCst);
    }

    /// Requests forwarded so far.
    pub fn forwarded(&self) -> u64 {
        self.state.counters.forwarded.load(Ordering::SeqCst)
    }

    /// VALID answers turned into INVALID so far.
    pub fn lies(&self) -> u64 {
        self.state.counters.lies.load(Ordering::SeqCst)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    shared.counters.forwarded.fetch_add(1, Ordering::SeqCst);
    let mut request = shared
        .client
        .post(&shared.upstream)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.clone());
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        request = request.header(header::AUTHORIZATION, auth);
    }
    let (status, answer) = match request.send().await {
        Ok(response) => {
            let status = response.status();
            match response.bytes().await {
                Ok(bytes) => (status, bytes),
                Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
            }
        }
        Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
    };
    let answer = if shared.counters.lying.load(Ordering::SeqCst) {
        match falsify(&body, &answer) {
            Some(lie) => {
                shared.counters.lies.fetch_add(1, Ordering::SeqCst);
                Bytes::from(lie.to_string())
            }
            None => answer,
        }
    } else {
        answer
    };
    let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    (status, [(header::CONTENT_TYPE, "application/json")], answer).into_response()
}

/// The lie for a VALID newPayload answer: INVALID, the payload's parent as the latest valid
/// block. `None` when the call is not a newPayload or the EL did not say VALID.
fn falsify(request: &[u8], answer: &[u8]) -> Option<Value> {
    let request: Value = serde_json::from_slice(request).ok()?;
    if !request["method"].as_str()?.starts_with("engine_newPayload") {
        return None;
    }
    let mut answer: Value = serde_json::from_slice(answer).ok()?;
    if answer["result"]["status"] != "VALID" {
        return None;
    }
    answer["result"] = json!({
        "status": "INVALID",
        "latestValidHash": request["params"][0]["parentHash"],
        "validationError": "eb-devnet stand-in: injected fault",
    });
    Some(answer)
}

#[cfg(test)]
mod tests {
    use super::falsify;
    use serde_json::json;

    #[test]
    fn only_valid_new_payload_answers_are_falsified() {
        let np = json!({"method": "engine_newPayloadV2", "params": [{"parentHash": "0xp"}]});
        let valid = json!({"jsonrpc": "2.0", "id": 1, "result": {"status": "VALID", "latestValidHash": "0xb"}});
        let lie = falsify(np.to_string().as_bytes(), valid.to_string().as_bytes());
        assert_eq!(
            lie.map(|l| l["result"].clone()),
            Some(
                json!({"status": "INVALID", "latestValidHash": "0xp", "validationError": "eb-devnet stand-in: injected fault"})
            )
        );
        let syncing = json!({"result": {"status": "SYNCING", "latestValidHash": null}});
        assert_eq!(
            falsify(np.to_string().as_bytes(), syncing.to_string().as_bytes()),
            None
        );
        let fcu = json!({"method": "engine_forkchoiceUpdatedV2", "params": []});
        assert_eq!(
            falsify(fcu.to_string().as_bytes(), valid.to_string().as_bytes()),
            None
        );
    }
}
