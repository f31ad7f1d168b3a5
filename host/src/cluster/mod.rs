//! The cluster stage: what eb replicas share through a [`Store`] — the builds eb handed
//! payloadIds for, the first final answer (VALID or INVALID) given for each block, the leader
//! lease ([`lease`]), the admin changes made on each replica ([`changes`]) and the replicas
//! themselves with their policies ([`replicas`]).
//!
//! A standalone eb runs the same code over a [`LocalStore`]; `--etcd` puts an [`EtcdStore`] in
//! its place. Every store call on an answer's path is bounded by `--etcd-timeout`: a store that
//! fails or is slow is marked down, answers come from the replica's own state at once, and what
//! it decided is queued and written back when the store answers again (liveness before
//! coordination; a write-back that finds another replica's different answer is a conflict,
//! counted and logged).

pub mod changes;
pub mod etcd;
pub mod lease;
pub mod local;
pub mod replicas;

pub use changes::Change;
pub use etcd::EtcdStore;
pub use local::LocalStore;
pub use replicas::ReplicaInfo;

use lease::LeaseState;
use replicas::{policy_mismatch, Roster, REPLICA_EVERY};

use crate::metrics::Metrics;
use futures_util::future::BoxFuture;
use policy_sdk::Status;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long a shared build is kept at least (a build is fetched within its slot).
pub const BUILD_TTL: Duration = Duration::from_secs(60);
/// How long a shared final answer is kept at least: 600 slots, far past finality (two epochs),
/// after which no CL asks about a block again.
pub const VERDICT_TTL: Duration = Duration::from_secs(2 * 3600);
/// Decisions queued for write-back at most while the store is down (the oldest are dropped).
pub const MAX_PENDING: usize = 4096;
/// How often a down store is probed, and the queue written back.
pub const RESYNC_INTERVAL: Duration = Duration::from_millis(500);
/// How long a held forkchoiceUpdated waits at most for the leader's answer for its head (two
/// CLs get a new block at about the same time; the leader answers once its ELs did).
pub const HELD_WAIT: Duration = Duration::from_millis(200);
/// How often it looks meanwhile.
const HELD_POLL: Duration = Duration::from_millis(25);

/// The store calls timed in `eb_etcd_request_seconds{op}`.
const OPS: [&str; 11] = [
    "put_build",
    "get_build",
    "claim_verdict",
    "get_verdict",
    "hold",
    "release",
    "ask",
    "announce",
    "list",
    "ping",
    "write_back",
];

/// What a store call returns.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// A key-value store with expiring keys and put-if-absent: what replicas coordinate through.
pub trait Store: Send + Sync {
    /// The value at `key`, if any.
    fn get(&self, key: String) -> StoreFuture<'_, Option<Vec<u8>>>;
    /// Writes `value` at `key`, kept at least `ttl` (and at most twice that).
    fn put(&self, key: String, value: Vec<u8>, ttl: Duration) -> StoreFuture<'_, ()>;
    /// Writes `value` at `key` unless the key exists: `None` when written, else the value
    /// already there.
    fn create(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<'_, Option<Vec<u8>>>;
    /// Holds the lease at `key` for `holder`, with `value` as its record: a lease `holder`
    /// holds is kept `ttl` more (its record replaced by `value`), a free one is taken. `None`
    /// when `holder` holds it now, else the record of the one that does.
    fn hold(
        &self,
        key: String,
        holder: String,
        value: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<'_, Option<Vec<u8>>>;
    /// The values of every key under `prefix`.
    fn list(&self, prefix: String) -> StoreFuture<'_, Vec<Vec<u8>>>;
    /// Sends each value written under `prefix` after store revision `after` (`0`: from now on)
    /// to `sink`, with its revision, until the watch breaks (an error: watch again from the
    /// last revision seen).
    fn watch(
        &self,
        prefix: String,
        after: u64,
        sink: mpsc::UnboundedSender<(u64, Vec<u8>)>,
    ) -> StoreFuture<'_, ()>;
    /// Gives up the lease at `key` if `holder` holds it (another may take it at once).
    fn release(&self, key: String, holder: String) -> StoreFuture<'_, ()>;
    /// Whether the store answers (and, for etcd, has a leader).
    fn ping(&self) -> StoreFuture<'_, ()>;
    /// What `/status` shows of the store: its kind and endpoints.
    fn describe(&self) -> StoreInfo;
}

/// The store as `/status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct StoreInfo {
    /// `local` (standalone) or `etcd`.
    pub kind: &'static str,
    /// The etcd client URLs (none for the local store).
    pub endpoints: Vec<String>,
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No endpoint could be reached.
    #[error("{0}")]
    Unreachable(String),
    /// The store answered with an error.
    #[error("store refused: {0}")]
    Refused(String),
    /// The store's answer does not parse.
    #[error("store answer malformed: {0}")]
    Malformed(String),
    /// No answer within the bound.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The store is marked down: not asked until a probe answers.
    #[error("store down")]
    Down,
}

/// A build as replicas share it: the builders are named by URL (node ids are per process).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedBuild {
    /// The replica that made it.
    pub replica: String,
    /// The head the CL asked to build on.
    pub head: Option<String>,
    /// (EL URL as eb shows it, that EL's payloadId).
    pub builders: Vec<(String, String)>,
}

/// A final answer as replicas share it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedVerdict {
    /// The replica that gave it first.
    pub replica: String,
    /// VALID or INVALID, as the ABI's status code.
    pub status: u8,
    /// The result answered (JSON text).
    pub result: String,
}

impl SharedVerdict {
    /// The status it records.
    pub fn status(&self) -> Status {
        Status::from_u8(self.status)
    }
}

/// What the store says of a final answer this replica is about to give.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// No replica answered this block before: this answer is the shared one now.
    First,
    /// A replica answered it before (this one's answer may be the same).
    Earlier(SharedVerdict),
    /// The store is down or slow: answered alone, queued for write-back.
    Alone,
}

/// A decision the store has not taken yet.
#[derive(Clone)]
enum Pending {
    Put {
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    },
    Verdict {
        key: String,
        value: Vec<u8>,
    },
}

/// Decisions waiting, oldest first, each numbered so that the one written back is the one
/// removed (the oldest may have been dropped meanwhile).
#[derive(Default)]
struct Queue {
    waiting: VecDeque<(u64, Pending)>,
    next: u64,
}

/// `/status.cluster`.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterStatus {
    /// `standalone` (local store), `leader` or `follower` (etcd; `alone` while the store does
    /// not answer).
    pub role: &'static str,
    /// This replica's name.
    pub replica: String,
    /// The leading replica, as last learnt (none while the store does not answer).
    pub leader: Option<String>,
    /// The key prefix replicas of one cluster share.
    pub cluster: String,
    /// The store.
    pub store: StoreInfo,
    /// Whether the store answered last time it was asked.
    pub store_up: bool,
    /// Decisions waiting to be written back.
    pub pending: usize,
    /// The replicas running, as last listed, with their policies.
    pub replicas: Vec<ReplicaInfo>,
    /// Whether the replicas run different policies (their answers may differ).
    pub policy_mismatch: bool,
}

/// The cluster stage: the store, this replica's name, and what waits for write-back.
pub struct Cluster {
    store: Arc<dyn Store>,
    prefix: String,
    replica: String,
    bound: Duration,
    up: AtomicBool,
    pending: Mutex<Queue>,
    lease: Mutex<LeaseState>,
    announced: AtomicU64,
    roster: Mutex<Roster>,
    metrics: Arc<Metrics>,
}

impl Cluster {
    /// The stage over `store`, keys under `/<cluster>/`, answers waiting at most `bound` for it.
    pub fn new(
        store: Arc<dyn Store>,
        cluster: &str,
        replica: &str,
        bound: Duration,
        metrics: Arc<Metrics>,
    ) -> Cluster {
        metrics.etcd_up.set(1);
        metrics.init_cluster(replica, &OPS);
        Cluster {
            store,
            prefix: format!("/{cluster}/"),
            replica: replica.to_owned(),
            bound,
            up: AtomicBool::new(true),
            pending: Mutex::new(Queue::default()),
            lease: Mutex::new(LeaseState::new(replica)),
            announced: AtomicU64::new(0),
            roster: Mutex::new(Roster::new(replica)),
            metrics,
        }
    }

    /// A standalone eb's stage: a local store, never down.
    pub fn standalone(replica: &str, metrics: Arc<Metrics>) -> Cluster {
        Cluster::new(
            Arc::new(LocalStore::default()),
            "eb",
            replica,
            Duration::from_millis(50),
            metrics,
        )
    }

    /// This replica's name.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Shares build `id` before its payloadId is answered.
    pub async fn publish_build(
        &self,
        id: &str,
        head: Option<String>,
        builders: Vec<(String, String)>,
    ) {
        let build = SharedBuild {
            replica: self.replica.clone(),
            head,
            builders,
        };
        let key = self.key("build", &id.to_ascii_lowercase());
        let value = encode(&build);
        self.put("put_build", key, value, BUILD_TTL).await;
    }

    /// Writes `value` at `key` (bounded), or queues it for write-back.
    async fn put(&self, op: &'static str, key: String, value: Vec<u8>, ttl: Duration) {
        let put = self.store.put(key.clone(), value.clone(), ttl);
        if self.bounded(op, put).await.is_err() {
            self.defer(Pending::Put { key, value, ttl });
        }
    }

    /// The build another replica called `id`, if the store has it.
    pub async fn find_build(&self, id: &str) -> Option<SharedBuild> {
        let key = self.key("build", &id.to_ascii_lowercase());
        let value = self
            .bounded("get_build", self.store.get(key))
            .await
            .ok()??;
        decode::<SharedBuild>(&value)
    }

    /// Counts a getPayload served from `build`, made by another replica.
    pub fn served_shared(&self, build: &SharedBuild) {
        self.metrics
            .shared_builds_served
            .get_or_create(&vec![("replica", build.replica.clone())])
            .inc();
    }

    /// Offers this replica's first final answer for block `hash` (`kind`: `payload` or `head`)
    /// as the shared one.
    pub async fn claim(&self, kind: &str, hash: &str, status: Status, result: &[u8]) -> Claim {
        let verdict = SharedVerdict {
            replica: self.replica.clone(),
            status: status as u8,
            result: String::from_utf8_lossy(result).into_owned(),
        };
        let key = self.key(kind, &hash.to_ascii_lowercase());
        let value = encode(&verdict);
        let create = self.store.create(key.clone(), value.clone(), VERDICT_TTL);
        match self.bounded("claim_verdict", create).await {
            Ok(None) => Claim::First,
            Ok(Some(earlier)) => match decode::<SharedVerdict>(&earlier) {
                Some(earlier) => Claim::Earlier(earlier),
                None => {
                    tracing::warn!(%key, "a shared verdict does not parse; answering alone");
                    Claim::Alone
                }
            },
            Err(_) => {
                self.defer(Pending::Verdict { key, value });
                Claim::Alone
            }
        }
    }

    /// The final answer a replica gave first for block `hash` (`kind`: `payload` or `head`).
    pub async fn find_verdict(&self, kind: &str, hash: &str) -> Option<SharedVerdict> {
        let key = self.key(kind, &hash.to_ascii_lowercase());
        let value = self
            .bounded("get_verdict", self.store.get(key))
            .await
            .ok()??;
        decode::<SharedVerdict>(&value)
    }

    /// [`Cluster::find_verdict`], looking again for at most [`HELD_WAIT`] while the store
    /// answers and has none.
    pub async fn await_verdict(&self, kind: &str, hash: &str) -> Option<SharedVerdict> {
        let start = Instant::now();
        loop {
            if let Some(verdict) = self.find_verdict(kind, hash).await {
                return Some(verdict);
            }
            if start.elapsed() + HELD_POLL > HELD_WAIT || !self.up.load(Ordering::Relaxed) {
                return None;
            }
            tokio::time::sleep(HELD_POLL).await;
        }
    }

    /// Counts a forkchoiceUpdated answered without forwarding it (another replica leads, on
    /// another head), and asks that leader for the lease.
    pub async fn held(&self) {
        self.metrics.cluster_held.inc();
        self.ask_to_lead().await;
    }

    /// `/status.cluster`.
    pub fn status(&self) -> ClusterStatus {
        let store = self.store.describe();
        let store_up = self.up.load(Ordering::Relaxed);
        let replicas = self.replicas();
        ClusterStatus {
            role: match (store.kind, store_up, self.leads()) {
                ("local", ..) => "standalone",
                (_, false, _) => "alone",
                (_, true, true) => "leader",
                (_, true, false) => "follower",
            },
            replica: self.replica.clone(),
            leader: self.leader(),
            cluster: self.prefix.trim_matches('/').to_owned(),
            store,
            store_up,
            pending: self.pending_len(),
            policy_mismatch: policy_mismatch(&replicas),
            replicas,
        }
    }

    /// Probes a down store, writes back what waits and renews the leader lease, every
    /// [`RESYNC_INTERVAL`], and this replica's record every [`REPLICA_EVERY`] ticks, until the
    /// runtime stops.
    pub async fn resync(self: Arc<Self>) {
        let mut tick = tokio::time::interval(RESYNC_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for n in 0u32.. {
            tick.tick().await;
            self.resync_once().await;
            self.renew().await;
            if n % REPLICA_EVERY == 0 {
                self.publish_replica().await;
            }
        }
    }

    /// One probe and write-back round.
    pub async fn resync_once(&self) {
        if !self.up.load(Ordering::Relaxed) {
            let start = Instant::now();
            let answered = self.store.ping().await;
            self.observe("ping", start);
            match answered {
                Ok(()) => {
                    tracing::info!("cluster store answers again");
                    self.set_up(true);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cluster store still down");
                    return;
                }
            }
        }
        // Each decision leaves the queue once written: it counts as pending until then.
        while let Some((n, next)) = self.first_pending() {
            if let Err(e) = self.write_back(&next).await {
                tracing::warn!(error = %e, "cluster write-back failed; retrying later");
                self.set_up(false);
                return;
            }
            self.written(n);
        }
    }

    async fn write_back(&self, pending: &Pending) -> Result<(), StoreError> {
        let start = Instant::now();
        let result = match pending {
            Pending::Put { key, value, ttl } => {
                self.store.put(key.clone(), value.clone(), *ttl).await
            }
            Pending::Verdict { key, value } => {
                let earlier = self
                    .store
                    .create(key.clone(), value.clone(), VERDICT_TTL)
                    .await?;
                if let Some(earlier) = earlier.as_deref().and_then(decode::<SharedVerdict>) {
                    let ours = decode::<SharedVerdict>(value);
                    if ours.map(|v| v.status().normalized()) != Some(earlier.status().normalized())
                    {
                        self.metrics.cluster_conflicts.inc();
                        tracing::warn!(%key, other = %earlier.replica, theirs = earlier.status().name(),
                            "while the store was down another replica answered this block otherwise");
                    }
                }
                Ok(())
            }
        };
        self.observe("write_back", start);
        result
    }

    /// Runs `op` unless the store is down, at most `bound`; marks the store down on failure.
    async fn bounded<T>(
        &self,
        op: &'static str,
        call: StoreFuture<'_, T>,
    ) -> Result<T, StoreError> {
        if !self.up.load(Ordering::Relaxed) {
            return Err(StoreError::Down);
        }
        let start = Instant::now();
        let result = match tokio::time::timeout(self.bound, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout(self.bound)),
        };
        self.observe(op, start);
        if let Err(e) = &result {
            if self.up.load(Ordering::Relaxed) {
                tracing::warn!(op, error = %e, "cluster store down: answering from this replica's state");
            }
            self.set_up(false);
        }
        result
    }

    fn observe(&self, op: &'static str, start: Instant) {
        self.metrics
            .etcd_request_seconds
            .get_or_create(&vec![("op", op.to_owned())])
            .observe(start.elapsed().as_secs_f64());
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
        self.metrics.etcd_up.set(i64::from(up));
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn defer(&self, pending: Pending) {
        let mut queue = self.queue();
        if queue.waiting.len() == MAX_PENDING {
            queue.waiting.pop_front();
            tracing::warn!("cluster write-back queue full: the oldest decision is not shared");
        }
        let n = queue.next;
        queue.next += 1;
        queue.waiting.push_back((n, pending));
        self.metrics.cluster_pending.set(queue.waiting.len() as i64);
    }

    fn first_pending(&self) -> Option<(u64, Pending)> {
        self.queue().waiting.front().cloned()
    }

    fn written(&self, n: u64) {
        let mut queue = self.queue();
        queue.waiting.retain(|(m, _)| *m != n);
        self.metrics.cluster_pending.set(queue.waiting.len() as i64);
    }

    fn pending_len(&self) -> usize {
        self.queue().waiting.len()
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}/{id}", self.prefix)
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Option<T> {
    serde_json::from_slice(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::future::{self, FutureExt};

    /// A local store that can be made to hang (a member without quorum) or come back.
    #[derive(Default)]
    struct Flaky {
        inner: LocalStore,
        hang: AtomicBool,
    }

    impl Flaky {
        fn or_hang<'a, T: Send + 'a>(&'a self, call: StoreFuture<'a, T>) -> StoreFuture<'a, T> {
            if self.hang.load(Ordering::Relaxed) {
                future::pending().boxed()
            } else {
                call
            }
        }
    }

    impl Store for Flaky {
        fn get(&self, key: String) -> StoreFuture<'_, Option<Vec<u8>>> {
            self.or_hang(self.inner.get(key))
        }
        fn put(&self, key: String, value: Vec<u8>, ttl: Duration) -> StoreFuture<'_, ()> {
            self.or_hang(self.inner.put(key, value, ttl))
        }
        fn create(
            &self,
            key: String,
            value: Vec<u8>,
            ttl: Duration,
        ) -> StoreFuture<'_, Option<Vec<u8>>> {
            self.or_hang(self.inner.create(key, value, ttl))
        }
        fn hold(
            &self,
            key: String,
            holder: String,
            value: Vec<u8>,
            ttl: Duration,
        ) -> StoreFuture<'_, Option<Vec<u8>>> {
            self.or_hang(self.inner.hold(key, holder, value, ttl))
        }
        fn release(&self, key: String, holder: String) -> StoreFuture<'_, ()> {
            self.or_hang(self.inner.release(key, holder))
        }
        fn list(&self, prefix: String) -> StoreFuture<'_, Vec<Vec<u8>>> {
            self.or_hang(self.inner.list(prefix))
        }
        fn watch(
            &self,
            prefix: String,
            after: u64,
            sink: mpsc::UnboundedSender<(u64, Vec<u8>)>,
        ) -> StoreFuture<'_, ()> {
            self.or_hang(self.inner.watch(prefix, after, sink))
        }
        fn ping(&self) -> StoreFuture<'_, ()> {
            self.or_hang(self.inner.ping())
        }
        fn describe(&self) -> StoreInfo {
            StoreInfo {
                kind: "flaky",
                endpoints: vec!["test".into()],
            }
        }
    }

    const BOUND: Duration = Duration::from_millis(200);

    fn replicas(store: &Arc<Flaky>) -> (Cluster, Cluster, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        let replica = |name| {
            let store: Arc<dyn Store> = Arc::clone(store) as Arc<dyn Store>;
            Cluster::new(store, "test", name, BOUND, Arc::clone(&metrics))
        };
        (replica("a"), replica("b"), metrics)
    }

    /// Lets the tasks spawned so far run (the local store answers when polled).
    async fn run_spawned() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_replica_leads_and_a_follower_forwards_only_the_leaders_head() {
        let store = Arc::new(Flaky::default());
        let (a, b, metrics) = replicas(&store);
        let a = Arc::new(a);
        a.called();
        assert!(
            a.may_drive("0xH1").await,
            "a free lease is taken on the call"
        );
        a.drove("0xH1");
        run_spawned().await;
        assert_eq!(a.status().role, "leader");
        b.called();
        assert!(!b.may_drive("0xH2").await, "another head: not forwarded");
        assert_eq!(b.status().role, "follower");
        assert_eq!(b.status().leader.as_deref(), Some("a"));
        assert!(
            b.may_drive("0xh1").await,
            "the leader's head, published at once"
        );
        a.drove("0xH2");
        run_spawned().await;
        assert!(b.may_drive("0xH2").await, "the leader's new head");
        assert!(!b.may_drive("0xH1").await, "and no longer its old one");
        assert!(metrics.encode().contains("eb_cluster_leader 1"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_call_waits_a_moment_for_the_leaders_answer() {
        let store = Arc::new(Flaky::default());
        let (a, b, _) = replicas(&store);
        let b = Arc::new(b);
        let waiting = tokio::spawn({
            let b = Arc::clone(&b);
            async move { b.await_verdict("head", "0xH").await }
        });
        tokio::time::advance(HELD_WAIT / 2).await;
        a.claim("head", "0xH", Status::Valid, b"v").await;
        let found = waiting.await.expect("joined").expect("found");
        assert_eq!(found.replica, "a");
        let start = Instant::now();
        assert_eq!(b.await_verdict("head", "0xother").await, None);
        assert!(
            start.elapsed() <= HELD_WAIT,
            "bounded: {:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lapsed_lease_is_taken_by_the_replica_whose_cl_calls() {
        let store = Arc::new(Flaky::default());
        let (a, b, _) = replicas(&store);
        a.called();
        a.renew().await;
        assert!(a.leads());
        b.called();
        // A stops renewing (killed): its lease holds until its TTL is past, then B takes it.
        tokio::time::advance(lease::LEASE_TTL - Duration::from_millis(1)).await;
        assert!(!b.may_drive("0xH").await, "A's lease still holds");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(
            b.may_drive("0xH").await,
            "lapsed: B takes it on its CL's call"
        );
        assert!(b.leads());
        a.called();
        assert!(
            !a.may_drive("0xother").await,
            "A, back, learns it no longer leads"
        );
        assert_eq!(a.status().leader.as_deref(), Some("b"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_that_resigns_is_replaced_at_once() {
        let store = Arc::new(Flaky::default());
        let (a, b, _) = replicas(&store);
        a.called();
        a.renew().await;
        b.called();
        b.resign().await;
        assert!(
            !b.may_drive("0xH").await,
            "a follower's resign changes nothing"
        );
        a.resign().await;
        assert!(!a.leads());
        assert!(
            b.may_drive("0xH").await,
            "taken without waiting for the TTL"
        );
        assert!(b.leads());
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_leader_hands_the_lease_to_the_replica_that_asks() {
        let store = Arc::new(Flaky::default());
        let (a, b, _) = replicas(&store);
        a.called();
        a.renew().await;
        b.called();
        assert!(!b.may_drive("0xB").await);
        b.held().await;
        a.called();
        a.renew().await;
        assert!(a.leads(), "its CL calls: an ask changes nothing");
        tokio::time::advance(lease::HANDOVER_QUIET).await;
        b.called();
        b.held().await;
        a.renew().await;
        assert!(!a.leads(), "quiet, asked: handed over");
        tokio::time::advance(RESYNC_INTERVAL).await;
        a.renew().await;
        assert!(!a.leads(), "and not taken back on the next tick");
        assert!(
            b.may_drive("0xB").await,
            "the asker takes it on its CL's call"
        );
        assert!(b.leads());
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_whose_cl_is_quiet_lets_the_lease_lapse() {
        let store = Arc::new(Flaky::default());
        let (a, b, metrics) = replicas(&store);
        a.called();
        a.renew().await;
        tokio::time::advance(lease::CL_QUIET - Duration::from_secs(1)).await;
        a.renew().await;
        assert!(a.leads(), "renewed while the CL calls");
        tokio::time::advance(Duration::from_secs(1)).await;
        a.renew().await;
        assert!(!a.leads(), "a slot without a call");
        assert!(metrics.encode().contains("eb_cluster_leader 0"));
        b.called();
        b.renew().await;
        assert!(!b.leads(), "A's last renewal holds its TTL");
        tokio::time::advance(lease::LEASE_TTL).await;
        b.called();
        b.renew().await;
        assert!(b.leads(), "taken by the replica whose CL calls");
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_store_every_replica_drives_alone() {
        let store = Arc::new(Flaky::default());
        let (a, b, _) = replicas(&store);
        a.called();
        a.renew().await;
        store.hang.store(true, Ordering::Relaxed);
        b.called();
        let start = Instant::now();
        assert!(b.may_drive("0xH").await, "liveness before coordination");
        assert_eq!(start.elapsed(), BOUND);
        assert_eq!(b.status().role, "alone");
        assert_eq!(b.status().leader, None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_final_answer_is_the_shared_one() {
        let store = Arc::new(Flaky::default());
        let (a, b, _) = replicas(&store);
        assert_eq!(
            a.claim("payload", "0xAB", Status::Valid, b"v").await,
            Claim::First
        );
        let earlier = SharedVerdict {
            replica: "a".into(),
            status: Status::Valid as u8,
            result: "v".into(),
        };
        assert_eq!(
            b.claim("payload", "0xab", Status::Invalid, b"i").await,
            Claim::Earlier(earlier),
            "hashes are case-insensitive; B learns A's answer"
        );
        assert_eq!(
            b.claim("head", "0xab", Status::Invalid, b"i").await,
            Claim::First,
            "a head and a payload are apart"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_build_made_on_one_replica_is_found_on_another() {
        let store = Arc::new(Flaky::default());
        let (a, b, metrics) = replicas(&store);
        let builders = vec![("http://el1/".to_owned(), "0x01".to_owned())];
        a.publish_build("0xAA", Some("0xhead".into()), builders.clone())
            .await;
        let found = b.find_build("0xaa").await.expect("shared");
        assert_eq!(found.replica, "a");
        assert_eq!(found.head.as_deref(), Some("0xhead"));
        assert_eq!(found.builders, builders);
        assert_eq!(b.find_build("0xbb").await, None);
        b.served_shared(&found);
        let text = metrics.encode();
        assert!(
            text.contains(r#"eb_cluster_shared_builds_served_total{replica="a"} 1"#),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_store_costs_one_bound_then_nothing_until_it_answers() {
        let store = Arc::new(Flaky::default());
        let (a, b, metrics) = replicas(&store);
        store.hang.store(true, Ordering::Relaxed);
        let start = Instant::now();
        assert_eq!(
            a.claim("payload", "0x01", Status::Valid, b"v").await,
            Claim::Alone
        );
        assert_eq!(start.elapsed(), BOUND, "waited exactly the bound");
        assert!(!a.status().store_up);
        let start = Instant::now();
        a.publish_build("0xaa", None, Vec::new()).await;
        assert_eq!(
            a.claim("payload", "0x02", Status::Invalid, b"i").await,
            Claim::Alone
        );
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "a store known down is not waited for"
        );
        assert_eq!(a.status().pending, 3);
        assert!(metrics.encode().contains("eb_etcd_up 0"));

        // Meanwhile B, which the store answered before it hung, gave the opposite for 0x02.
        store.hang.store(false, Ordering::Relaxed);
        assert_eq!(
            b.claim("payload", "0x02", Status::Valid, b"v").await,
            Claim::First
        );
        a.resync_once().await;
        assert!(a.status().store_up, "the probe answered");
        assert_eq!(a.status().pending, 0, "everything written back");
        assert_eq!(
            b.claim("payload", "0x01", Status::Invalid, b"i").await,
            Claim::Earlier(SharedVerdict {
                replica: "a".into(),
                status: Status::Valid as u8,
                result: "v".into()
            }),
            "A's answer given alone is shared now"
        );
        assert!(b.find_build("0xaa").await.is_some(), "and its build");
        let text = metrics.encode();
        assert!(text.contains("eb_cluster_conflicts_total 1"), "{text}");
        assert!(text.contains("eb_etcd_up 1"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_still_down_keeps_what_waits() {
        let store = Arc::new(Flaky::default());
        let (a, _, _) = replicas(&store);
        store.hang.store(true, Ordering::Relaxed);
        a.claim("payload", "0x01", Status::Valid, b"v").await;
        let probe = tokio::time::timeout(Duration::from_secs(1), a.resync_once()).await;
        assert!(probe.is_err(), "the probe hangs with the store");
        assert_eq!(a.status().pending, 1, "nothing lost");
        assert!(!a.status().store_up);
    }

    #[tokio::test(start_paused = true)]
    async fn write_back_is_bounded_and_drops_the_oldest() {
        let store = Arc::new(Flaky::default());
        let (a, b, _) = replicas(&store);
        store.hang.store(true, Ordering::Relaxed);
        for i in 0..MAX_PENDING + 1 {
            a.claim("payload", &format!("0x{i:x}"), Status::Valid, b"v")
                .await;
        }
        assert_eq!(a.status().pending, MAX_PENDING);
        store.hang.store(false, Ordering::Relaxed);
        a.resync_once().await;
        assert_eq!(
            b.claim("payload", "0x0", Status::Valid, b"v").await,
            Claim::First,
            "the oldest was dropped"
        );
        assert!(matches!(
            b.claim("payload", "0x1", Status::Valid, b"v").await,
            Claim::Earlier(_)
        ));
    }
}
