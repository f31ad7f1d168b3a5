//! One simulated run: the ELs of a [`Schedule`] behind eb's real engine (fan-out, votes,
//! policy, verdict memory, ordered queues with catch-up replay, health loops, builds), driven by
//! the schedule's CL, on a paused tokio clock with no sockets.

use super::el::SimEl;
use super::schedule::{Extra, Schedule, SLOT_MS};
use super::trace::{Event, Trace};
use bytes::Bytes;
use eb::auth::JwtSecret;
use eb::cli::GetPayloadMode;
use eb::cluster::Cluster;
use eb::config::NodeConfig;
use eb::dispatch::Engine;
use eb::metrics::Metrics;
use eb::nodes::{Node, Nodes};
use eb::policy::{Policy, PolicySlot, PolicySource};
use eb::queue::{Depth, Limits};
use eb::record::{Recorder, DEFAULT_MAX_BYTES};
use eb::rpc::{self, Incoming};
use eb::straggler::Straggler;
use eb::upstream::{AnswerLimits, Transport};
use policy_sdk::fixture::Case;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often each EL's health is checked in the simulation.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// What a CL call asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// `engine_newPayloadV4`.
    NewPayload,
    /// `engine_forkchoiceUpdatedV3` without attributes.
    Forkchoice,
    /// `engine_forkchoiceUpdatedV3` with attributes (a build).
    Build,
    /// `engine_getPayloadV5`.
    GetPayload,
    /// `eth_blockNumber`.
    Read,
}

/// One call the CL made and what eb answered.
#[derive(Clone, Debug)]
pub struct ClCall {
    /// What it asked.
    pub kind: CallKind,
    /// Its method.
    pub method: &'static str,
    /// Its JSON-RPC id (unique per call), as raw JSON.
    pub id: String,
    /// newPayload's block, forkchoiceUpdated's head.
    pub hash: Option<String>,
    /// getPayload's payloadId.
    pub payload_id: Option<String>,
    /// getPayload: the build call whose answer gave the payloadId.
    pub build: Option<usize>,
    /// Its exact bytes.
    pub body: Bytes,
    /// When it was sent (simulated ms).
    pub sent_ms: u64,
    /// When eb answered.
    pub answered_ms: u64,
    /// eb's answer.
    pub answer: Value,
}

/// A finished run.
pub struct Run {
    /// The schedule it ran.
    pub schedule: Schedule,
    /// The CL's calls, in order.
    pub calls: Vec<ClCall>,
    /// Everything, in order.
    pub events: Vec<Event>,
    /// eb's recording of each decision (`--record-votes`).
    pub recordings: Vec<Case>,
    /// Each EL's queue at the end.
    pub depths: Vec<Depth>,
    /// Each EL's queue limits.
    pub limits: Vec<Limits>,
    /// The most calls and bytes each EL's queue held after a CL call.
    pub max_queued: Vec<(usize, usize)>,
}

/// The hash of block `n` of the simulated chain (block 0 is genesis).
pub fn block_hash(n: u64) -> String {
    format!("0x{n:064x}")
}

fn node_config(index: usize, script: &super::schedule::ElScript) -> NodeConfig {
    NodeConfig {
        // Never dialled: the transport is the simulated EL.
        url: format!("http://127.0.0.1:{}/", 9000 + index)
            .parse()
            .unwrap_or_else(|_| unreachable!("a literal URL")),
        secret: JwtSecret::from_hex(&"11".repeat(32)).unwrap_or_else(|| unreachable!("hex")),
        secret_path: None,
        timeout: Duration::from_millis(script.timeout_ms),
        do_not_use: false,
        straggler: Straggler::Auto,
        queue: Limits {
            calls: script.queue_calls.max(1),
            bytes: 64 << 20,
        },
        answers: AnswerLimits::default(),
        ca: None,
        client: None,
    }
}

/// The CL of a run: its calls so far, and the chain it follows.
struct Cl<'a> {
    engine: &'a Engine,
    nodes: &'a Nodes,
    trace: &'a Trace,
    start: Instant,
    calls: Vec<ClCall>,
    head: u64,
    max_queued: Vec<(usize, usize)>,
}

impl Cl<'_> {
    async fn call(
        &mut self,
        kind: CallKind,
        hash: Option<String>,
        params: Value,
        build: Option<usize>,
    ) {
        let method = match kind {
            CallKind::NewPayload => "engine_newPayloadV4",
            CallKind::Forkchoice | CallKind::Build => "engine_forkchoiceUpdatedV3",
            CallKind::GetPayload => "engine_getPayloadV5",
            CallKind::Read => "eth_blockNumber",
        };
        let index = self.calls.len();
        let id = (1000 + index).to_string();
        let body = Bytes::from(
            json!({"jsonrpc": "2.0", "id": 1000 + index, "method": method, "params": params})
                .to_string(),
        );
        let sent_ms = self.start.elapsed().as_millis() as u64;
        self.trace.push(Event::ClCall {
            call: index,
            at_ms: sent_ms,
        });
        let answer = match rpc::parse(&body, &body) {
            Ok(Incoming::Single(Ok(call))) => self.engine.dispatch(&call).await,
            _ => unreachable!("the simulated CL sends well-formed single calls"),
        };
        let answered_ms = self.start.elapsed().as_millis() as u64;
        self.trace.push(Event::ClAnswer {
            call: index,
            at_ms: answered_ms,
        });
        for (max, node) in self.max_queued.iter_mut().zip(self.nodes.snapshot().iter()) {
            let depth = node.queue_depth();
            *max = (max.0.max(depth.calls), max.1.max(depth.bytes));
        }
        self.calls.push(ClCall {
            kind,
            method,
            id,
            payload_id: params[0].as_str().map(str::to_owned),
            hash,
            build,
            body,
            sent_ms,
            answered_ms,
            answer: serde_json::from_slice(&answer).unwrap_or(Value::Null),
        });
    }

    async fn new_payload(&mut self, n: u64) {
        let params = json!([{
            "parentHash": block_hash(n.saturating_sub(1)),
            "blockHash": block_hash(n),
            "blockNumber": format!("0x{n:x}"),
            "transactions": [],
            "withdrawals": [],
        }, [], block_hash(0), []]);
        self.call(CallKind::NewPayload, Some(block_hash(n)), params, None)
            .await;
    }

    async fn forkchoice(&mut self, head: u64, build: bool) {
        let state = json!({
            "headBlockHash": block_hash(head),
            "safeBlockHash": block_hash(head.saturating_sub(1)),
            "finalizedBlockHash": block_hash(0),
        });
        let attributes = build.then(|| {
            json!({
                "timestamp": format!("0x{:x}", head * 4 + 4),
                "prevRandao": block_hash(0),
                "suggestedFeeRecipient": "0x0000000000000000000000000000000000000001",
                "withdrawals": [],
                "parentBeaconBlockRoot": block_hash(0),
            })
        });
        let kind = if build {
            CallKind::Build
        } else {
            CallKind::Forkchoice
        };
        self.call(
            kind,
            Some(block_hash(head)),
            json!([state, attributes]),
            None,
        )
        .await;
    }

    /// The last build eb gave a payloadId for, and that id.
    fn last_build(&self) -> Option<(usize, String)> {
        self.calls.iter().enumerate().rev().find_map(|(i, c)| {
            let id = c.answer["result"]["payloadId"].as_str()?;
            (c.kind == CallKind::Build).then(|| (i, id.to_owned()))
        })
    }

    async fn extra(&mut self, extra: Extra) {
        match extra {
            Extra::GetPayload => {
                if let Some((build, id)) = self.last_build() {
                    self.call(CallKind::GetPayload, None, json!([id]), Some(build))
                        .await;
                }
            }
            Extra::UnknownPayload => {
                self.call(
                    CallKind::GetPayload,
                    None,
                    json!(["0xdeadbeefdeadbeef"]),
                    None,
                )
                .await;
            }
            Extra::Reorg(back) => {
                self.forkchoice(self.head.saturating_sub(back.into()), false)
                    .await
            }
            Extra::Repeat(back) if u64::from(back) < self.head => {
                self.new_payload(self.head - u64::from(back)).await;
            }
            Extra::Repeat(_) => {}
            Extra::Read => self.call(CallKind::Read, None, json!([]), None).await,
        }
    }
}

/// Runs `schedule` with `policy` deciding, on a fresh paused runtime.
pub fn run(schedule: &Schedule, policy: Arc<dyn Policy>) -> Run {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap_or_else(|e| panic!("a tokio runtime: {e}"));
    runtime.block_on(run_in(schedule, policy))
}

async fn run_in(schedule: &Schedule, policy: Arc<dyn Policy>) -> Run {
    let start = Instant::now();
    let trace = Arc::new(Trace::default());
    let metrics = Arc::new(Metrics::default());
    let list: Vec<Arc<Node>> = schedule
        .els
        .iter()
        .enumerate()
        .map(|(i, script)| {
            let el = SimEl::new(i, script.clone(), start, Arc::clone(&trace));
            let transport: Arc<dyn Transport> = el;
            Node::spawn(
                i as u64,
                &node_config(i, script),
                transport,
                Arc::clone(&metrics),
            )
        })
        .collect();
    let nodes = Arc::new(Nodes::from_list(list, Arc::clone(&metrics)));
    for node in nodes.snapshot().iter() {
        tokio::spawn(eb::health::run(
            Arc::clone(&nodes),
            Arc::clone(node),
            HEALTH_INTERVAL,
        ));
    }
    let recording = std::env::temp_dir().join(format!(
        "eb-sim-{}-{:?}.jsonl",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_file(&recording);
    let recorder = Recorder::open(&recording, DEFAULT_MAX_BYTES)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", recording.display()));
    let slot = PolicySlot::new(
        policy,
        PolicySource::Embedded,
        String::new(),
        None,
        Arc::clone(&metrics),
    );
    let cluster = Arc::new(Cluster::standalone("sim", Arc::clone(&metrics)));
    let engine = Engine::new(
        Arc::clone(&nodes),
        Arc::new(slot),
        metrics,
        Some(Arc::new(recorder)),
        GetPayloadMode::PrimaryFirst,
        cluster,
    );
    let mut cl = Cl {
        engine: &engine,
        nodes: &nodes,
        trace: &trace,
        start,
        calls: Vec::new(),
        head: 0,
        max_queued: vec![(0, 0); schedule.els.len()],
    };
    // Two settling slots once every outage is over: the returning ELs get what they missed.
    let settle_from = schedule.last_outage_ms() / SLOT_MS + 1;
    let last = (schedule.slots.len() as u64).max(settle_from) + 2;
    for n in 1..=last {
        tokio::time::sleep_until(start + Duration::from_millis(n * SLOT_MS)).await;
        let slot = schedule.slots.get(n as usize - 1);
        for extra in slot.map(|s| s.extra.clone()).unwrap_or_default() {
            cl.extra(extra).await;
        }
        cl.new_payload(n).await;
        cl.head = n;
        cl.forkchoice(n, slot.is_some_and(|s| s.build)).await;
    }
    let (calls, max_queued) = (cl.calls, cl.max_queued);
    // Let every call in flight finish (each EL answers or times out): at most 8 s per call
    // queued, in simulated time.
    for _ in 0..(16 * calls.len() * schedule.els.len()).max(20) {
        let idle = nodes.snapshot().iter().all(|n| {
            let depth = n.queue_depth();
            depth.calls == 0 && depth.busy_for.is_none()
        });
        if idle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The recordings of the last calls are written as their answers arrive.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let depths = nodes.snapshot().iter().map(|n| n.queue_depth()).collect();
    let limits = schedule
        .els
        .iter()
        .enumerate()
        .map(|(i, s)| node_config(i, s).queue)
        .collect();
    drop(engine);
    let recordings = std::fs::read_to_string(&recording)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let _ = std::fs::remove_file(&recording);
    Run {
        schedule: schedule.clone(),
        calls,
        events: trace.events(),
        recordings,
        depths,
        limits,
        max_queued,
    }
}
