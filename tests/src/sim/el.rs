//! A scripted EL behind eb's real [`Transport`] seam: it reads each body with its own JSON
//! parsing, answers from its [`ElScript`] on tokio's paused clock, keeps its own builds, and logs
//! every call it receives and answers to the [`Trace`].

use super::schedule::{Answer, ElScript, OutageKind};
use super::trace::{Event, Trace};
use bytes::Bytes;
use eb::upstream::{Reply, Timed, Transport};
use futures_util::future::BoxFuture;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// An EL's answer to `engine_getClientVersionV1` and `eth_syncing` takes this long.
const QUICK: Duration = Duration::from_millis(1);

/// One simulated EL.
pub struct SimEl {
    index: usize,
    script: ElScript,
    start: Instant,
    trace: Arc<Trace>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// State-changing calls received.
    received: usize,
    /// Its builds: its payloadId → the head it built on.
    builds: HashMap<String, String>,
    /// Builds made so far (for fresh ids).
    built: u64,
    /// The outage it last forgot its builds in.
    forgot_in: Option<usize>,
}

/// What one body asks for, read by the EL itself.
struct Request {
    id: Value,
    method: String,
    params: Value,
}

fn request(body: &[u8]) -> Option<Request> {
    let value: Value = serde_json::from_slice(body).ok()?;
    Some(Request {
        id: value.get("id").cloned().unwrap_or(Value::Null),
        method: value.get("method")?.as_str()?.to_owned(),
        params: value.get("params").cloned().unwrap_or(Value::Null),
    })
}

/// The hash a state-changing call is about: newPayload's `blockHash`, forkchoiceUpdated's head.
pub fn subject(method: &str, params: &Value) -> Option<String> {
    let hash = if method.starts_with("engine_newPayload") {
        &params[0]["blockHash"]
    } else {
        &params[0]["headBlockHash"]
    };
    hash.as_str().map(str::to_owned)
}

impl SimEl {
    /// EL number `index` behaving as `script`, its clock from `start`.
    pub fn new(index: usize, script: ElScript, start: Instant, trace: Arc<Trace>) -> Arc<SimEl> {
        Arc::new(SimEl {
            index,
            script,
            start,
            trace,
            state: Mutex::new(State::default()),
        })
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// The outage covering `at_ms` (its index and kind), if any.
    fn outage(&self, at_ms: u64) -> Option<(usize, OutageKind, u64)> {
        self.script
            .outages
            .iter()
            .enumerate()
            .find(|(_, o)| (o.from_ms..o.until_ms).contains(&at_ms))
            .map(|(i, o)| (i, o.kind, o.until_ms))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The result (or error) for `request`, and how long after `now_ms` it comes.
    fn answer(&self, request: &Request, now_ms: u64) -> (u64, Result<Value, Value>) {
        let method = request.method.as_str();
        if method == "eth_syncing" {
            let syncing = matches!(self.outage(now_ms), Some((_, OutageKind::Syncing, _)));
            let result = if syncing {
                json!({"startingBlock":"0x0","currentBlock":"0x0","highestBlock":"0x10"})
            } else {
                json!(false)
            };
            return (QUICK.as_millis() as u64, Ok(result));
        }
        if method == "engine_getClientVersionV1" {
            let name = format!("sim-el-{}", self.index);
            return (
                QUICK.as_millis() as u64,
                Ok(json!([{"code":"GE","name":name,"version":"v1.0.0","commit":"0x00000000"}])),
            );
        }
        if method == "eth_blockNumber" {
            return (QUICK.as_millis() as u64, Ok(json!("0x1")));
        }
        if method.starts_with("engine_getPayload") {
            let id = request.params[0].as_str().unwrap_or_default();
            let head = self.lock().builds.get(id).cloned();
            return match head {
                Some(head) => (
                    2,
                    Ok(json!({
                        "executionPayload": {"parentHash": head, "blockHash": format!("0x{:064x}", 0xb000 + self.index)},
                        "blockValue": format!("0x{:x}", self.index + 1),
                        "blobsBundle": {"commitments": [], "proofs": [], "blobs": []},
                        "shouldOverrideBuilder": false,
                        "executionRequests": []
                    })),
                ),
                None => (
                    2,
                    Err(json!({"code": -38001, "message": "Unknown payload"})),
                ),
            };
        }
        let newpayload = method.starts_with("engine_newPayload");
        let forkchoice = method.starts_with("engine_forkchoiceUpdated");
        if !newpayload && !forkchoice {
            return (
                QUICK.as_millis() as u64,
                Err(json!({"code": -32601, "message": "Method not found"})),
            );
        }
        let step = {
            let mut state = self.lock();
            let step = self.script.answers[state.received % self.script.answers.len()];
            state.received += 1;
            step
        };
        let hash = subject(method, &request.params).unwrap_or_default();
        let parent = if newpayload {
            request.params[0]["parentHash"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        } else {
            hash.clone()
        };
        let status = |status: &str, lvh: Option<&str>| json!({"status": status, "latestValidHash": lvh, "validationError": if status.starts_with("INVALID") { json!("sim: bad block") } else { Value::Null }});
        let payload_status = match step.answer {
            Answer::Valid => status("VALID", Some(&hash)),
            Answer::Invalid => status("INVALID", Some(&parent)),
            Answer::Syncing => status("SYNCING", None),
            Answer::Accepted if newpayload => status("ACCEPTED", None),
            Answer::Accepted => status("SYNCING", None),
            Answer::InvalidBlockHash if newpayload => status("INVALID_BLOCK_HASH", None),
            Answer::InvalidBlockHash => status("INVALID", Some(&parent)),
            Answer::Error => {
                return (
                    step.latency_ms,
                    Err(json!({"code": -32000, "message": "sim: internal error"})),
                )
            }
        };
        let result = if newpayload {
            payload_status
        } else {
            let builds = !request.params[1].is_null() && step.answer == Answer::Valid;
            let payload_id = builds.then(|| {
                let mut state = self.lock();
                state.built += 1;
                let id = format!("0x{:02x}{:014x}", self.index, state.built);
                state.builds.insert(id.clone(), hash.clone());
                id
            });
            json!({"payloadStatus": payload_status, "payloadId": payload_id})
        };
        (step.latency_ms, Ok(result))
    }
}

impl Transport for SimEl {
    fn post(&self, body: Bytes, timeout: Duration, _: usize) -> BoxFuture<'static, Timed> {
        let now_ms = self.now_ms();
        let outage = self.outage(now_ms);
        if let Some((i, OutageKind::Down { forgets }, _)) = outage {
            let mut state = self.lock();
            if forgets && state.forgot_in != Some(i) {
                state.forgot_in = Some(i);
                state.builds.clear();
            }
            drop(state);
            if let Some(request) = request(&body) {
                self.trace.push(Event::Refused {
                    el: self.index,
                    at_ms: now_ms,
                    method: request.method,
                });
            }
            return Box::pin(async {
                Timed {
                    reply: Reply::Refused("sim: connection refused".into()),
                    latency: Duration::ZERO,
                }
            });
        }
        let Some(request) = request(&body) else {
            return Box::pin(async {
                Timed {
                    reply: Reply::Unreachable("sim: unreadable request".into()),
                    latency: Duration::ZERO,
                }
            });
        };
        let (latency_ms, outcome) = self.answer(&request, now_ms);
        let answer_ms = match outage {
            Some((_, OutageKind::Hang, until_ms)) => (now_ms + latency_ms).max(until_ms),
            _ => now_ms + latency_ms,
        };
        let delay = Duration::from_millis(answer_ms - now_ms);
        let text = match outcome {
            Ok(result) => json!({"jsonrpc": "2.0", "id": request.id, "result": result}),
            Err(error) => json!({"jsonrpc": "2.0", "id": request.id, "error": error}),
        }
        .to_string();
        let seq = self.trace.push(Event::Received {
            el: self.index,
            at_ms: now_ms,
            method: request.method.clone(),
            body: body.clone(),
        });
        let (trace, index) = (Arc::clone(&self.trace), self.index);
        Box::pin(async move {
            if delay > timeout {
                tokio::time::sleep(timeout).await;
                trace.push(Event::TimedOut {
                    el: index,
                    at_ms: now_ms + timeout.as_millis() as u64,
                    call: seq,
                });
                return Timed {
                    reply: Reply::Timeout,
                    latency: timeout,
                };
            }
            tokio::time::sleep(delay).await;
            trace.push(Event::Answered {
                el: index,
                at_ms: answer_ms,
                call: seq,
                text: text.clone(),
            });
            Timed {
                reply: Reply::Body(Bytes::from(text)),
                latency: delay,
            }
        })
    }
}
