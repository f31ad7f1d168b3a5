//! The ELs eb drives: each with its own secret, timeout, straggler setting, ordered call queue
//! and health state, and the choice of the primary among them.

use crate::auth::Minter;
use crate::config::{redact, NodeConfig};
use crate::metrics::Metrics;
pub use crate::node_state::NodeState;
use crate::queue::{self, CallQueue};
use crate::straggler::Straggler;
use crate::upstream::{self, AnswerLimits, Http, Reply, Timed, Transport};
use bytes::Bytes;
use policy_sdk::abi::Health as VoteHealth;
use policy_sdk::{ClientCode, Outcome, Status, Vote, VoteKind};
use reqwest::{Client, Url};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{oneshot, watch, Notify};
use tokio::time::Instant;

/// Busy with one call for longer than this, an EL cannot answer a call queued behind it in
/// time for the attestation: the fan-out cuts it at once.
pub const HUNG_AFTER: Duration = Duration::from_secs(1);

/// What eb knows about one EL.
#[derive(Clone, Debug)]
pub struct Health {
    /// Current state.
    pub state: NodeState,
    /// Latency EWMA over health checks and live calls, in milliseconds.
    pub latency_ms: Option<f64>,
    /// Latency EWMA of answered state-changing calls, in milliseconds, per kind: newPayload,
    /// then forkchoiceUpdated (the straggler rule's "typical" time).
    pub vote_latency_ms: [Option<f64>; 2],
    /// When the EL last answered anything.
    pub last_answer: Option<Instant>,
    /// Client code from `engine_getClientVersionV1`.
    pub client: ClientCode,
    /// `name version` from `engine_getClientVersionV1`.
    pub client_version: Option<String>,
    /// The last failure, for `/status`.
    pub last_error: Option<String>,
}

/// Weight of the newest sample in the latency EWMAs.
const EWMA_WEIGHT: f64 = 0.2;

/// Which EWMA a vote kind's answer time goes into.
fn latency_slot(kind: VoteKind) -> usize {
    usize::from(kind != VoteKind::NewPayload)
}

fn ewma(old: Option<f64>, sample: f64) -> Option<f64> {
    Some(old.map_or(sample, |old| old + EWMA_WEIGHT * (sample - old)))
}

/// A drain in progress: the EL's votes do not count, it is never primary, and it still gets
/// every call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drain {
    /// Since when.
    pub since: Instant,
    /// Whether it has been down or behind since the drain began; its next VALID vote on a
    /// block another EL validated then ends the drain (it is back on the chain).
    pub was_away: bool,
}

/// One EL.
pub struct Node {
    /// Stable id (indices shift when nodes are removed).
    pub id: u64,
    /// The URL, redacted for display (logs, metrics, `/status`).
    pub url: String,
    /// The URL as configured (compared when nodes are added).
    endpoint: Url,
    /// Its secret's fingerprint (compared when nodes are added through the admin API).
    secret: [u8; 32],
    /// The configured timeout.
    pub timeout: Duration,
    /// `#do-not-use`.
    pub do_not_use: bool,
    /// How long a verdict waits for this EL once the others decide it.
    pub straggler: Straggler,
    transport: Arc<dyn Transport>,
    answers: AnswerLimits,
    queue: Arc<CallQueue>,
    health: Mutex<Health>,
    /// Wakes the health loop for an early check.
    pub recheck: Notify,
    removed: AtomicBool,
    behind: AtomicBool,
    drain: Mutex<Option<Drain>>,
    lag: AtomicU64,
    missing_capabilities: Mutex<Vec<String>>,
    cut: AtomicU64,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("url", &self.url)
            .finish()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.queue.close();
    }
}

impl Node {
    /// Creates the node and starts its ordered worker (needs a tokio runtime); the worker
    /// stops once the node is dropped and its queue delivered.
    pub fn spawn(
        id: u64,
        config: &NodeConfig,
        transport: Arc<dyn Transport>,
        metrics: Arc<Metrics>,
    ) -> Arc<Node> {
        let queue = Arc::new(CallQueue::new(config.queue));
        tokio::spawn(queue::deliver(
            Arc::clone(&queue),
            Arc::clone(&transport),
            config.answers.vote,
        ));
        metrics.init_node(&redact(&config.url));
        Arc::new(Node {
            id,
            url: redact(&config.url),
            endpoint: config.url.clone(),
            secret: config.secret.fingerprint(),
            timeout: config.timeout,
            do_not_use: config.do_not_use,
            straggler: config.straggler,
            transport,
            answers: config.answers,
            queue,
            health: Mutex::new(Health {
                state: NodeState::Unknown,
                latency_ms: None,
                vote_latency_ms: [None; 2],
                last_answer: None,
                client: config.client.unwrap_or(ClientCode::UNKNOWN),
                client_version: config.client.map(|_| "declared (#client)".to_owned()),
                last_error: None,
            }),
            recheck: Notify::new(),
            removed: AtomicBool::new(false),
            behind: AtomicBool::new(false),
            drain: Mutex::new(None),
            lag: AtomicU64::new(0),
            missing_capabilities: Mutex::new(Vec::new()),
            cut: AtomicU64::new(0),
            metrics,
        })
    }

    /// Queues a state-changing call behind the ones already queued for this EL; the receiver
    /// gets the reply. A full queue drops its oldest calls, loudly.
    pub fn enqueue(
        &self,
        kind: VoteKind,
        body: Bytes,
        timeout: Duration,
    ) -> oneshot::Receiver<Timed> {
        let (receiver, dropped) = self.queue.push(kind, body, timeout);
        if dropped > 0 {
            self.metrics
                .queue_dropped
                .get_or_create(&vec![("node", self.url.clone())])
                .inc_by(dropped as u64);
            let depth = self.queue.depth();
            tracing::warn!(node = %self.url, dropped, queued = depth.calls, queued_bytes = depth.bytes,
                "EL call queue full: oldest calls dropped (the EL catches up from its peers)");
        }
        receiver
    }

    /// Counts a vote of this EL that was not waited for (`reason` as in `eb_el_cut_total`).
    pub fn count_cut(&self, reason: &str) {
        self.cut.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .cut_votes
            .get_or_create(&vec![
                ("node", self.url.clone()),
                ("reason", reason.to_owned()),
            ])
            .inc();
    }

    /// Whether its votes may count: not `#do-not-use`, not draining.
    pub fn counts(&self) -> bool {
        !self.do_not_use && self.draining().is_none()
    }

    /// The drain in progress, if any.
    pub fn draining(&self) -> Option<Drain> {
        *self.drain.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts (`true`) or ends (`false`) a drain; `false` when it was already so.
    pub fn set_draining(&self, on: bool) -> bool {
        let mut drain = self.drain.lock().unwrap_or_else(|p| p.into_inner());
        if drain.is_some() == on {
            return false;
        }
        *drain = on.then(|| Drain {
            since: Instant::now(),
            was_away: false,
        });
        true
    }

    /// Validated blocks (newPayload) since this EL last voted VALID on one: how far behind it is.
    pub fn lag(&self) -> u64 {
        self.lag.load(Ordering::Relaxed)
    }

    /// Whether eb sees this EL behind the chain: on a block another EL validated it voted
    /// SYNCING or ACCEPTED, or gave no answer (down, hung, cut: it missed that block), and it
    /// has not voted VALID since. Its `eth_syncing` may say synced all along.
    pub fn is_behind(&self) -> bool {
        self.behind.load(Ordering::Relaxed)
    }

    /// Learns from one of its votes, given whether the block was `validated` (answered VALID,
    /// or voted VALID by a counted EL): VALID means caught up; SYNCING, ACCEPTED or no answer
    /// on a validated block means behind.
    /// On a newPayload (`payload`) it also keeps [`lag`](Self::lag); a drained EL that was
    /// away rejoins on its first VALID on a validated block.
    pub fn note_vote(&self, vote: &Vote, validated: bool, payload: bool) {
        let missed = matches!(
            vote.outcome,
            Outcome::Timeout | Outcome::Unreachable | Outcome::Cut
        );
        let behind = match vote.status.normalized() {
            Status::Valid => false,
            Status::Syncing | Status::Accepted if validated => true,
            _ if missed && validated => true,
            _ => return,
        };
        if payload {
            if behind {
                self.lag.fetch_add(1, Ordering::Relaxed);
            } else {
                self.lag.store(0, Ordering::Relaxed);
            }
        }
        self.note_drain(behind, validated);
        if self.behind.swap(behind, Ordering::Relaxed) != behind {
            if behind {
                tracing::warn!(node = %self.url, "EL behind: no VALID on a block another EL validated");
            } else {
                tracing::info!(node = %self.url, "EL caught up: VALID again");
            }
        }
    }

    /// The methods the CL lists that this EL's `engine_exchangeCapabilities` lacked last time.
    pub fn missing_capabilities(&self) -> Vec<String> {
        self.missing_capabilities
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records what this EL lacks of the CL's methods; a change is logged (warn while it
    /// lacks any) and `eb_el_missing_capabilities` set.
    pub fn set_missing_capabilities(&self, missing: Vec<String>) {
        let mut known = self
            .missing_capabilities
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if *known == missing {
            return;
        }
        let client = self.health().client_version.unwrap_or_default();
        if missing.is_empty() {
            tracing::info!(node = %self.url, %client, "EL now offers every method the CL lists");
        } else {
            tracing::warn!(node = %self.url, %client, missing = %missing.join(","),
                "EL lacks methods the CL lists: not ready for the fork that needs them");
        }
        self.metrics
            .missing_capabilities
            .get_or_create(&vec![("node", self.url.clone())])
            .set(missing.len() as i64);
        *known = missing;
    }

    /// A drained EL that was away (down or behind) and now votes VALID on a validated block is
    /// back on the chain: the drain ends.
    fn note_drain(&self, behind: bool, validated: bool) {
        let mut drain = self.drain.lock().unwrap_or_else(|p| p.into_inner());
        let Some(current) = drain.as_mut() else {
            return;
        };
        if behind {
            current.was_away = true;
        } else if current.was_away && validated {
            *drain = None;
            tracing::info!(node = %self.url, "drained EL back on the chain: its votes count again");
        }
    }

    /// Votes of this EL not waited for since start.
    pub fn cut_count(&self) -> u64 {
        self.cut.load(Ordering::Relaxed)
    }

    /// What the EL's ordered queue holds now.
    pub fn queue_depth(&self) -> queue::Depth {
        self.queue.depth()
    }

    /// Sends a call now, outside the ordered queue (reads, merges, health checks).
    pub async fn call(&self, body: Bytes, timeout: Duration) -> Timed {
        self.transport.post(body, timeout, self.answers.other).await
    }

    /// A copy of the current health.
    pub fn health(&self) -> Health {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The EL's health as a policy sees it: its state, or hung while one call has been out
    /// longer than [`HUNG_AFTER`] or, once it answers again, while the calls it missed wait to
    /// be replayed (the next call's answer comes after them).
    pub fn vote_health(&self) -> VoteHealth {
        let depth = self.queue.depth();
        if depth.busy_for >= Some(HUNG_AFTER) {
            return VoteHealth::Hung;
        }
        match self.lock().state {
            NodeState::Offline => VoteHealth::Offline,
            NodeState::AuthFailed => VoteHealth::AuthFailed,
            _ if depth.replay_pending => VoteHealth::Hung,
            NodeState::Unknown => VoteHealth::Unknown,
            NodeState::Synced => VoteHealth::Synced,
            NodeState::Syncing => VoteHealth::Syncing,
        }
    }

    /// Feeds a live call's outcome into the health state: latency into the EWMA; a failure
    /// asks the health loop for an early recheck. An answer from an EL marked offline or
    /// refusing eb's token is evidence it is back: it is no longer cut (state unknown) from
    /// the next call on, and the early recheck says which state it is in.
    pub fn observe(&self, timed: &Timed) {
        match &timed.reply {
            Reply::Body(_) => {
                self.record_latency(timed);
                let mut health = self.lock();
                if matches!(health.state, NodeState::Offline | NodeState::AuthFailed) {
                    health.state = NodeState::Unknown;
                    drop(health);
                    self.metrics.set_state(&self.url, NodeState::Unknown);
                    self.recheck.notify_one();
                }
            }
            Reply::AuthRejected(status) => {
                self.metrics.set_state(&self.url, NodeState::AuthFailed);
                let mut health = self.lock();
                health.state = NodeState::AuthFailed;
                health.last_error = Some(format!("HTTP {status}: eb's token refused"));
            }
            Reply::TooLarge(_) => self.refuse("too_large", timed.reply.failure()),
            Reply::Redirected(_) => self.refuse("redirect", timed.reply.failure()),
            Reply::Timeout | Reply::Refused(_) | Reply::Unreachable(_) => self.recheck.notify_one(),
        }
    }

    /// Counts an answer eb did not take (`reason` as in `eb_el_refused_answers_total`) and says
    /// why, in the log and in `/status`.
    pub fn refuse(&self, reason: &str, why: String) {
        tracing::warn!(node = %self.url, reason, error = %why, "EL answer refused");
        self.metrics
            .refused_answers
            .get_or_create(&vec![
                ("node", self.url.clone()),
                ("reason", reason.to_owned()),
            ])
            .inc();
        self.lock().last_error = Some(why);
    }

    /// [`observe`](Self::observe) for a state-changing call of `kind`: an answer also feeds
    /// the EWMA the straggler rule reads.
    pub fn observe_vote(&self, kind: VoteKind, timed: &Timed) {
        self.observe(timed);
        if let Reply::Body(_) = timed.reply {
            let mut health = self.lock();
            let typical = &mut health.vote_latency_ms[latency_slot(kind)];
            *typical = ewma(*typical, timed.latency.as_secs_f64() * 1e3);
        }
    }

    /// How long this EL's `kind` calls usually take to answer, if it has answered one.
    pub fn typical_latency(&self, kind: VoteKind) -> Option<Duration> {
        self.lock().vote_latency_ms[latency_slot(kind)].map(|ms| Duration::from_secs_f64(ms / 1e3))
    }

    /// How long a `kind` call to this EL is expected to take: its usual time for `kind`, or,
    /// while it is busy with a call whose kind usually takes longer, that (the new call waits
    /// behind it in the ordered queue).
    pub fn expected_latency(&self, kind: VoteKind) -> Option<Duration> {
        let own = self.typical_latency(kind);
        let ahead = self
            .queue
            .depth()
            .busy_kind
            .and_then(|busy| self.typical_latency(busy));
        own.max(ahead)
    }

    /// Feeds an answered call's latency into the EWMA and the latency histogram.
    pub fn record_latency(&self, timed: &Timed) {
        self.metrics
            .el_latency
            .get_or_create(&vec![("node", self.url.clone())])
            .observe(timed.latency.as_secs_f64());
        let mut health = self.lock();
        health.latency_ms = ewma(health.latency_ms, timed.latency.as_secs_f64() * 1e3);
        health.last_answer = Some(Instant::now());
    }

    /// Records a health check's verdict; a drained EL seen down is away (see [`Drain`]).
    pub fn set_state(&self, state: NodeState, error: Option<String>) {
        self.metrics.set_state(&self.url, state);
        if matches!(state, NodeState::Offline | NodeState::AuthFailed) {
            if let Some(drain) = self
                .drain
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut()
            {
                drain.was_away = true;
            }
        }
        let mut health = self.lock();
        health.state = state;
        if error.is_some() || state.is_up() {
            health.last_error = error;
        }
    }

    /// Records the client identity from `engine_getClientVersionV1`.
    pub fn set_client(&self, client: ClientCode, version: String) {
        let mut health = self.lock();
        health.client = client;
        health.client_version = Some(version);
    }

    /// Whether the node was removed (its health loop stops).
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    fn mark_removed(&self) {
        self.removed.store(true, Ordering::Release);
        self.recheck.notify_one();
    }
}

/// The HTTP transport of the EL `config` describes: the shared client, or one of its own for
/// an EL with its own CA.
fn http(client: &Client, config: &NodeConfig) -> Arc<dyn Transport> {
    let client = match &config.ca {
        Some(ca) => upstream::client(Some(ca)),
        None => client.clone(),
    };
    Arc::new(Http {
        client,
        url: config.url.clone(),
        minter: Minter::new(&config.secret),
    })
}

/// The configured ELs, the primary among them, and the HTTP client they share.
pub struct Nodes {
    list: RwLock<Arc<Vec<Arc<Node>>>>,
    primary: watch::Sender<Option<u64>>,
    next_id: AtomicU64,
    client: Client,
    metrics: Arc<Metrics>,
    /// The CL's last `engine_exchangeCapabilities` request, asked again of a restarted EL.
    asked_capabilities: Mutex<Option<Bytes>>,
}

/// Why a node could not be added or removed.
#[derive(Debug, thiserror::Error)]
pub enum NodesError {
    /// The URL is configured already.
    #[error("{0} is configured already")]
    Duplicate(String),
    /// No node at that index.
    #[error("no node at index {0}")]
    NoSuchIndex(usize),
    /// eb cannot run without ELs.
    #[error("cannot remove the last node")]
    LastNode,
    /// Draining it would leave no EL whose votes count.
    #[error("draining node {0} would leave no EL whose votes count")]
    LastCounted(usize),
    /// A policy ballot holds at most this many ELs.
    #[error("at most {0} nodes")]
    TooMany(usize),
    /// The node's secret is the CL's or another node's.
    #[error("{0}: its secret is already used by the CL or another node (--allow-shared-secrets)")]
    SharedSecret(String),
}

impl Nodes {
    /// Starts a worker for each configured node.
    pub fn new(configs: &[NodeConfig], metrics: Arc<Metrics>) -> Nodes {
        let client = upstream::client(None);
        let list: Vec<Arc<Node>> = configs
            .iter()
            .enumerate()
            .map(|(i, c)| Node::spawn(i as u64, c, http(&client, c), Arc::clone(&metrics)))
            .collect();
        Nodes {
            next_id: AtomicU64::new(list.len() as u64),
            list: RwLock::new(Arc::new(list)),
            primary: watch::channel(None).0,
            client,
            metrics,
            asked_capabilities: Mutex::new(None),
        }
    }

    /// Nodes already built with [`Node::spawn`] on transports of the caller's (scripted ELs in
    /// tests and the simulation).
    pub fn from_list(list: Vec<Arc<Node>>, metrics: Arc<Metrics>) -> Nodes {
        Nodes {
            next_id: AtomicU64::new(list.len() as u64),
            list: RwLock::new(Arc::new(list)),
            primary: watch::channel(None).0,
            client: upstream::client(None),
            metrics,
            asked_capabilities: Mutex::new(None),
        }
    }

    /// The current nodes, in `--nodes` order (index = the vote's node number).
    pub fn snapshot(&self) -> Arc<Vec<Arc<Node>>> {
        Arc::clone(&self.list.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Adds every node of `configs`, or none: a URL configured already (or twice in
    /// `configs`), more than a ballot holds, or, unless `shared_with` is `None`, a secret that
    /// is `shared_with` (the CL's fingerprint) or another node's refuses them all. Returns the
    /// new nodes so the caller can start their health loops.
    pub fn add_all(
        &self,
        configs: &[NodeConfig],
        shared_with: Option<[u8; 32]>,
    ) -> Result<Vec<Arc<Node>>, NodesError> {
        let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
        if list.len() + configs.len() > policy_sdk::abi::MAX_VOTES {
            return Err(NodesError::TooMany(policy_sdk::abi::MAX_VOTES));
        }
        let mut urls: Vec<&Url> = list.iter().map(|n| &n.endpoint).collect();
        let mut secrets: Vec<[u8; 32]> = list.iter().map(|n| n.secret).collect();
        secrets.extend(shared_with);
        for config in configs {
            if urls.contains(&&config.url) {
                return Err(NodesError::Duplicate(redact(&config.url)));
            }
            urls.push(&config.url);
            if shared_with.is_some() {
                let secret = config.secret.fingerprint();
                if secrets.contains(&secret) {
                    return Err(NodesError::SharedSecret(redact(&config.url)));
                }
                secrets.push(secret);
            }
        }
        let added: Vec<Arc<Node>> = configs
            .iter()
            .map(|config| {
                Node::spawn(
                    self.next_id.fetch_add(1, Ordering::Relaxed),
                    config,
                    http(&self.client, config),
                    Arc::clone(&self.metrics),
                )
            })
            .collect();
        let mut next = list.as_ref().clone();
        next.extend(added.iter().cloned());
        *list = Arc::new(next);
        Ok(added)
    }

    /// Removes the node at `index`; calls already queued for it still go out.
    pub fn remove(&self, index: usize) -> Result<Arc<Node>, NodesError> {
        let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
        if index >= list.len() {
            return Err(NodesError::NoSuchIndex(index));
        }
        if list.len() == 1 {
            return Err(NodesError::LastNode);
        }
        let mut next = list.as_ref().clone();
        let node = next.remove(index);
        node.mark_removed();
        *list = Arc::new(next);
        drop(list);
        self.update_primary();
        Ok(node)
    }

    /// Keeps the CL's `engine_exchangeCapabilities` request (its bytes) for [`asked_capabilities`](Self::asked_capabilities).
    pub fn set_asked_capabilities(&self, body: Bytes) {
        *self
            .asked_capabilities
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(body);
    }

    /// The CL's last `engine_exchangeCapabilities` request, if it sent one.
    pub fn asked_capabilities(&self) -> Option<Bytes> {
        self.asked_capabilities
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts (`on`) or ends the drain of the node at `index` (see [`Drain`]); refused when it
    /// would leave no EL whose votes count. Returns the node and whether anything changed.
    pub fn drain(&self, index: usize, on: bool) -> Result<(Arc<Node>, bool), NodesError> {
        let list = self.snapshot();
        let node = list.get(index).ok_or(NodesError::NoSuchIndex(index))?;
        let others_count = list.iter().any(|n| n.id != node.id && n.counts());
        if on && !others_count {
            return Err(NodesError::LastCounted(index));
        }
        let changed = node.set_draining(on);
        self.update_primary();
        Ok((Arc::clone(node), changed))
    }

    /// The primary's id now.
    pub fn primary_id(&self) -> Option<u64> {
        *self.primary.borrow()
    }

    /// Re-chooses the primary from the current health states.
    pub fn update_primary(&self) {
        let nodes = self.snapshot();
        let current = self.primary_id();
        let chosen = choose_primary(&nodes, current);
        if chosen != current {
            let name = |id: Option<u64>| {
                id.and_then(|id| nodes.iter().find(|n| n.id == id))
                    .map_or_else(|| "none".to_owned(), |n| n.url.clone())
            };
            tracing::info!(from = %name(current), to = %name(chosen), "primary EL changed");
            self.metrics.primary_changes.inc();
            self.primary.send_replace(chosen);
        }
    }

    /// Nodes to try for a read, best first: the primary (unless hung), then Synced ones by
    /// latency, then Syncing, Unknown, hung or draining, Offline, AuthFailed; never
    /// `#do-not-use` nodes.
    pub fn read_order(&self) -> Vec<Arc<Node>> {
        let primary = self.primary_id();
        let mut nodes: Vec<(u8, f64, Arc<Node>)> = self
            .snapshot()
            .iter()
            .filter(|n| !n.do_not_use)
            .map(|n| {
                let health = n.vote_health();
                let rank = match health {
                    VoteHealth::Hung => 4,
                    _ if n.draining().is_some() => 4,
                    _ if Some(n.id) == primary => 0,
                    VoteHealth::Synced => 1,
                    VoteHealth::Syncing => 2,
                    VoteHealth::Unknown => 3,
                    VoteHealth::Offline => 5,
                    VoteHealth::AuthFailed => 6,
                };
                let latency = n.health().latency_ms.unwrap_or(f64::MAX);
                (rank, latency, Arc::clone(n))
            })
            .collect();
        nodes.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        nodes.into_iter().map(|(_, _, n)| n).collect()
    }
}

/// A challenger must be this many times faster than the primary to replace it.
const HYSTERESIS: f64 = 2.0;

/// The primary: a Synced, usable node with the lowest latency; the current one stays while it
/// is Synced unless another is [`HYSTERESIS`] times faster. With no Synced node, a Syncing one.
pub fn choose_primary(nodes: &[Arc<Node>], current: Option<u64>) -> Option<u64> {
    let usable: Vec<(u64, NodeState, f64)> = nodes
        .iter()
        .filter(|n| n.counts())
        .map(|n| {
            let h = n.health();
            (n.id, h.state, h.latency_ms.unwrap_or(f64::MAX))
        })
        .collect();
    let fastest = |state| {
        usable
            .iter()
            .filter(|(_, s, _)| *s == state)
            .min_by(|a, b| a.2.total_cmp(&b.2))
            .copied()
    };
    let best = fastest(NodeState::Synced);
    let incumbent = usable
        .iter()
        .find(|(id, s, _)| Some(*id) == current && *s == NodeState::Synced);
    match (incumbent, best) {
        (Some(&(id, _, latency)), Some((best_id, _, best_latency))) => {
            if best_latency * HYSTERESIS < latency {
                Some(best_id)
            } else {
                Some(id)
            }
        }
        (None, Some((id, _, _))) => Some(id),
        (_, None) => fastest(NodeState::Syncing).map(|(id, _, _)| id),
    }
}

/// Nodes on scripted transports, for unit tests on tokio's paused clock (no sockets).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::auth::JwtSecret;
    use futures_util::future::BoxFuture;

    /// How a scripted EL answers one body: after `delay`, with `reply`.
    pub type Script = Box<dyn Fn(&[u8]) -> (Duration, Reply) + Send + Sync>;

    /// A transport that answers from a script and keeps every body it was sent.
    pub struct Scripted {
        script: Script,
        /// Bodies received, in order.
        pub seen: Mutex<Vec<Bytes>>,
    }

    impl Transport for Scripted {
        fn post(&self, body: Bytes, timeout: Duration, _: usize) -> BoxFuture<'static, Timed> {
            let (delay, reply) = (self.script)(&body);
            self.seen.lock().expect("seen").push(body);
            Box::pin(async move {
                if delay > timeout {
                    tokio::time::sleep(timeout).await;
                    return Timed {
                        reply: Reply::Timeout,
                        latency: timeout,
                    };
                }
                tokio::time::sleep(delay).await;
                Timed {
                    reply,
                    latency: delay,
                }
            })
        }
    }

    /// A scripted EL.
    pub fn scripted(script: Script) -> Arc<Scripted> {
        Arc::new(Scripted {
            script,
            seen: Mutex::new(Vec::new()),
        })
    }

    /// Answers every call with `result` (JSON text) after `delay`.
    pub fn answering(delay: Duration, result: &'static str) -> Arc<Scripted> {
        scripted(Box::new(move |_| {
            let body = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{result}}}"#);
            (delay, Reply::Body(Bytes::from(body)))
        }))
    }

    /// The config of test node `i` (a placeholder URL that is never dialled).
    pub fn config(i: usize, timeout: Duration, do_not_use: bool) -> NodeConfig {
        config_with(i, timeout, do_not_use, Straggler::Auto)
    }

    fn config_with(
        i: usize,
        timeout: Duration,
        do_not_use: bool,
        straggler: Straggler,
    ) -> NodeConfig {
        NodeConfig {
            url: Url::parse(&format!("http://127.0.0.1:{}/", 9000 + i)).expect("url"),
            secret: JwtSecret::from_hex(&"11".repeat(32)).expect("hex"),
            secret_path: None,
            timeout,
            do_not_use,
            straggler,
            queue: crate::queue::Limits::default(),
            answers: AnswerLimits::default(),
            ca: None,
            client: None,
        }
    }

    /// Nodes on the given transports, each with `timeout`, all synced (node 0 the primary).
    pub fn synced_nodes(transports: &[Arc<Scripted>], timeout: Duration) -> Arc<Nodes> {
        let nodes = nodes(transports, timeout);
        for node in nodes.snapshot().iter() {
            node.set_state(NodeState::Synced, None);
        }
        nodes.update_primary();
        nodes
    }

    /// Nodes on the given transports, each with `timeout`.
    pub fn nodes(transports: &[Arc<Scripted>], timeout: Duration) -> Arc<Nodes> {
        nodes_with(transports, timeout, Straggler::Auto)
    }

    /// Nodes on the given transports, each with `timeout` and `straggler`.
    pub fn nodes_with(
        transports: &[Arc<Scripted>],
        timeout: Duration,
        straggler: Straggler,
    ) -> Arc<Nodes> {
        let metrics = Arc::new(Metrics::default());
        let list = transports
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let transport: Arc<dyn Transport> = Arc::clone(t) as Arc<dyn Transport>;
                Node::spawn(
                    i as u64,
                    &config_with(i, timeout, false, straggler),
                    transport,
                    Arc::clone(&metrics),
                )
            })
            .collect();
        Arc::new(Nodes::from_list(list, metrics))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn set(nodes: &Nodes, index: usize, state: NodeState, latency_ms: f64) {
        let node = &nodes.snapshot()[index];
        node.set_state(state, None);
        node.lock().latency_ms = Some(latency_ms);
    }

    #[tokio::test(start_paused = true)]
    async fn a_declared_client_code_stands_until_the_el_names_itself() {
        let mut config = config(0, Duration::from_secs(1), false);
        config.client = ClientCode::from_letters("EJ");
        let transport: Arc<dyn Transport> = answering(Duration::ZERO, "false");
        let node = Node::spawn(0, &config, transport, Arc::new(Metrics::default()));
        assert_eq!(
            node.health().client,
            ClientCode::from_letters("EJ").expect("code")
        );
        node.set_client(ClientCode::from_letters("GE").expect("code"), "geth".into());
        assert_eq!(node.health().client.letters(), Some(*b"GE"));
    }

    #[tokio::test(start_paused = true)]
    async fn primary_is_the_fastest_synced_node_with_hysteresis() {
        let els: Vec<_> = (0..3).map(|_| answering(Duration::ZERO, "false")).collect();
        let nodes = nodes(&els, Duration::from_secs(1));
        assert_eq!(nodes.primary_id(), None, "nothing checked yet");
        set(&nodes, 0, NodeState::Synced, 10.0);
        set(&nodes, 1, NodeState::Synced, 6.0);
        set(&nodes, 2, NodeState::Syncing, 1.0);
        nodes.update_primary();
        assert_eq!(nodes.primary_id(), Some(1), "fastest Synced, never Syncing");
        set(&nodes, 0, NodeState::Synced, 4.0);
        nodes.update_primary();
        assert_eq!(nodes.primary_id(), Some(1), "not twice as fast: no change");
        set(&nodes, 0, NodeState::Synced, 2.0);
        nodes.update_primary();
        assert_eq!(nodes.primary_id(), Some(0), "twice as fast: takes over");
        set(&nodes, 0, NodeState::Offline, 2.0);
        set(&nodes, 1, NodeState::Offline, 6.0);
        nodes.update_primary();
        assert_eq!(nodes.primary_id(), Some(2), "no Synced node: a Syncing one");
        let order: Vec<u64> = nodes.read_order().iter().map(|n| n.id).collect();
        assert_eq!(order, [2, 0, 1], "primary first, then by state and latency");
    }

    #[tokio::test(start_paused = true)]
    async fn ordered_worker_delivers_in_queue_order_and_a_full_queue_drops_the_oldest() {
        let el = answering(Duration::from_millis(100), "true");
        let nodes = nodes(&[Arc::clone(&el)], Duration::from_secs(1));
        let node = &nodes.snapshot()[0];
        let calls = crate::queue::Limits::default().calls;
        let mut receivers = Vec::new();
        // Nothing runs between these sends: the worker has taken none yet.
        for i in 0..=calls {
            receivers.push(node.enqueue(
                VoteKind::NewPayload,
                Bytes::from(i.to_string()),
                Duration::from_secs(1),
            ));
        }
        let oldest = receivers.remove(0).await.expect("answered");
        assert!(matches!(oldest.reply, Reply::Unreachable(ref e) if e.starts_with("dropped")));
        assert_eq!(node.queue_depth().dropped, 1);
        for receiver in receivers {
            assert!(matches!(
                receiver.await.expect("reply").reply,
                Reply::Body(_)
            ));
        }
        let seen: Vec<String> = el
            .seen
            .lock()
            .expect("seen")
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        let expected: Vec<String> = (1..=calls).map(|i| i.to_string()).collect();
        assert_eq!(seen, expected, "one at a time, in order");
    }

    #[tokio::test(start_paused = true)]
    async fn an_el_busy_with_one_call_for_a_second_is_hung() {
        let nodes = nodes(
            &[answering(Duration::from_secs(5), "true")],
            Duration::from_secs(7),
        );
        let node = &nodes.snapshot()[0];
        let answer = node.enqueue(
            VoteKind::NewPayload,
            Bytes::from_static(b"{}"),
            Duration::from_secs(7),
        );
        tokio::time::sleep(HUNG_AFTER - Duration::from_millis(1)).await;
        assert_eq!(node.vote_health(), VoteHealth::Unknown);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(node.vote_health(), VoteHealth::Hung);
        node.set_state(NodeState::Synced, None);
        assert_eq!(
            node.vote_health(),
            VoteHealth::Hung,
            "hung beats the health check"
        );
        answer.await.expect("answered");
        assert_eq!(node.vote_health(), VoteHealth::Synced, "idle again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_stops_counting_and_ends_once_the_el_is_back_on_the_chain() {
        let second = Duration::from_secs(1);
        let nodes = synced_nodes(
            &[
                answering(Duration::ZERO, "false"),
                answering(Duration::ZERO, "false"),
            ],
            second,
        );
        let vote = |status| Vote::answered(1, status);
        assert!(matches!(
            nodes.drain(5, true),
            Err(NodesError::NoSuchIndex(5))
        ));
        let (node, changed) = nodes.drain(1, true).expect("drained");
        assert!(changed && !node.counts());
        assert!(matches!(
            nodes.drain(0, true),
            Err(NodesError::LastCounted(0))
        ));
        assert_eq!(nodes.primary_id(), Some(0));
        node.note_vote(&vote(Status::Valid), true, true);
        assert!(
            node.draining().is_some(),
            "still up before its maintenance: stays drained"
        );
        node.set_state(NodeState::Offline, None);
        assert!(node.draining().is_some_and(|d| d.was_away));
        node.note_vote(&vote(Status::Syncing), true, true);
        node.note_vote(&vote(Status::Syncing), true, true);
        assert_eq!(
            (node.lag(), node.is_behind()),
            (2, true),
            "two validated blocks behind"
        );
        node.note_vote(&vote(Status::Valid), false, true);
        assert!(
            node.draining().is_some(),
            "a VALID nobody else validated is not the chain"
        );
        node.note_vote(&vote(Status::Valid), true, true);
        assert!(
            node.draining().is_none() && node.counts(),
            "back on the chain: rejoined"
        );
        assert_eq!((node.lag(), node.is_behind()), (0, false));
        assert!(nodes.drain(1, true).expect("drained").1);
        assert!(nodes.drain(1, false).expect("resumed").1 && node.counts());
        assert!(
            !nodes.drain(1, false).expect("no drain").1,
            "nothing to end"
        );
        node.set_state(NodeState::Synced, None);
        let (first, _) = nodes.drain(0, true).expect("the other counts");
        assert!(!first.counts());
        assert_eq!(
            nodes.primary_id(),
            Some(1),
            "a draining EL is never primary"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_from_an_el_marked_down_makes_its_votes_count_again() {
        let nodes = nodes(
            &[answering(Duration::ZERO, "false")],
            Duration::from_secs(1),
        );
        let node = &nodes.snapshot()[0];
        let answer = Timed {
            reply: Reply::Body(Bytes::from_static(b"{}")),
            latency: Duration::from_millis(2),
        };
        for (down, cut) in [
            (NodeState::Offline, VoteHealth::Offline),
            (NodeState::AuthFailed, VoteHealth::AuthFailed),
        ] {
            node.set_state(down, Some("down".into()));
            assert_eq!(node.vote_health(), cut, "{down:?}");
            node.observe(&answer);
            assert_eq!(
                node.vote_health(),
                VoteHealth::Unknown,
                "{down:?}: not cut any more"
            );
        }
        node.set_state(NodeState::Syncing, None);
        node.observe(&answer);
        assert_eq!(
            node.vote_health(),
            VoteHealth::Syncing,
            "a known state stays"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn additions_are_all_or_nothing_and_the_last_node_stays() {
        let nodes = nodes(
            &[answering(Duration::ZERO, "false")],
            Duration::from_secs(1),
        );
        let second = Duration::from_secs(1);
        let fresh = |i| config(i, second, false);
        let same = config(0, second, false);
        assert!(matches!(
            nodes.add_all(&[fresh(1), same], None),
            Err(NodesError::Duplicate(_))
        ));
        assert!(matches!(
            nodes.add_all(&[fresh(1), fresh(1)], None),
            Err(NodesError::Duplicate(_))
        ));
        let too_many: Vec<NodeConfig> = (1..=policy_sdk::abi::MAX_VOTES).map(fresh).collect();
        assert!(matches!(
            nodes.add_all(&too_many, None),
            Err(NodesError::TooMany(_))
        ));
        // Every test config has the same secret: refused unless sharing is allowed.
        let cl = [7u8; 32];
        assert!(matches!(
            nodes.add_all(&[fresh(1)], Some(cl)),
            Err(NodesError::SharedSecret(_))
        ));
        let mut own = fresh(2);
        own.secret = crate::auth::JwtSecret::from_hex(&"22".repeat(32)).expect("hex");
        let mut cls = fresh(3);
        cls.secret = crate::auth::JwtSecret::from_hex(&"33".repeat(32)).expect("hex");
        let cl = cls.secret.fingerprint();
        assert!(matches!(
            nodes.add_all(&[own.clone(), cls], Some(cl)),
            Err(NodesError::SharedSecret(_))
        ));
        assert_eq!(
            nodes.snapshot().len(),
            1,
            "nothing was added by a refused batch"
        );
        assert!(matches!(nodes.remove(3), Err(NodesError::NoSuchIndex(3))));
        assert!(matches!(nodes.remove(0), Err(NodesError::LastNode)));
        let added = nodes.add_all(&[own], Some(cl)).expect("added");
        assert_eq!(added.len(), 1);
        let added = nodes.add_all(&[fresh(1)], None).expect("shared allowed");
        assert_eq!(added[0].id, 2, "ids go on from the last node added");
        assert_eq!(nodes.remove(0).expect("removed").id, 0);
        assert_eq!(nodes.snapshot().len(), 2);
    }
}
