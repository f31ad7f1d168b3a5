//! payloadIds: on a build every EL starts its own and returns its own id; eb hands the CL one id
//! of its own and remembers which EL built what. `getPayload` goes to the builders with their
//! own ids: the primary's build first, the others on failure, inside the 1 s budget
//! (`--get-payload best-value`: all at once, the highest `blockValue` built on the right head).

use crate::cli::GetPayloadMode;
use crate::cluster::Cluster;
use crate::error::{Answer, EngineError};
use crate::hedge;
use crate::nodes::{Node, Nodes};
use crate::rpc::Call;
use crate::upstream::Reply;
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Deserialize;
use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Builds remembered at most.
pub const MAX_BUILDS: usize = 128;
/// How long a build stays retrievable (builds stop improving after one slot anyway).
pub const BUILD_TTL: Duration = Duration::from_secs(60);

/// One build: eb's id → each builder's own id.
#[derive(Clone, Debug)]
pub struct Build {
    /// eb's payloadId, `0x` + 16 hex digits.
    pub id: String,
    /// The head the CL asked to build on.
    pub head: Option<String>,
    /// (node id, that EL's payloadId), in answer order.
    pub builders: Vec<(u64, String)>,
    created: Instant,
}

/// The bounded, expiring map of builds.
pub struct PayloadIds {
    builds: Mutex<VecDeque<Build>>,
    seed: u64,
    counter: AtomicU64,
}

impl Default for PayloadIds {
    fn default() -> Self {
        PayloadIds {
            builds: Mutex::new(VecDeque::with_capacity(MAX_BUILDS)),
            seed: RandomState::new().hash_one(std::process::id()),
            counter: AtomicU64::new(0),
        }
    }
}

/// A bijective 64-bit mix (splitmix64's finaliser): distinct counters give distinct ids.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl PayloadIds {
    /// Remembers a build and returns eb's id for it.
    pub fn insert(&self, head: Option<String>, builders: Vec<(u64, String)>) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let id = format!("0x{:016x}", mix(self.seed.wrapping_add(n)));
        self.remember(id.clone(), head, builders);
        id
    }

    /// Remembers a build another replica called `id` (from the cluster store).
    pub fn adopt(&self, id: &str, head: Option<String>, builders: Vec<(u64, String)>) -> Build {
        let id = id.to_ascii_lowercase();
        self.remember(id, head, builders)
    }

    fn remember(&self, id: String, head: Option<String>, builders: Vec<(u64, String)>) -> Build {
        let mut builds = self.builds.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        builds.retain(|b| now.duration_since(b.created) < BUILD_TTL);
        if builds.len() == MAX_BUILDS {
            builds.pop_front();
        }
        let build = Build {
            id,
            head,
            builders,
            created: now,
        };
        builds.push_back(build.clone());
        build
    }

    /// The build eb called `id`, if remembered and not expired.
    pub fn get(&self, id: &str) -> Option<Build> {
        let builds = self.builds.lock().unwrap_or_else(|p| p.into_inner());
        builds
            .iter()
            .find(|b| b.id.eq_ignore_ascii_case(id) && b.created.elapsed() < BUILD_TTL)
            .cloned()
    }

    /// Adds `builder` (node id, its own payloadId) to build `id`, unless that node is among its
    /// builders already; whether it was added.
    fn join(&self, id: &str, builder: (u64, String)) -> bool {
        let mut builds = self.builds.lock().unwrap_or_else(|p| p.into_inner());
        let Some(build) = builds.iter_mut().find(|b| b.id == id) else {
            return false;
        };
        if build.builders.iter().any(|(node, _)| *node == builder.0) {
            return false;
        }
        build.builders.push(builder);
        true
    }

    /// Builds remembered now.
    pub fn len(&self) -> usize {
        self.builds.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no build is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The builders of one forkchoiceUpdated-with-attributes call whose VALID answer came after
/// the verdict (a cut or straggling EL): they join eb's build for that call, so that a
/// getPayload can fail over to them too. A builder that comes before the build is made waits
/// and joins it when it is made; without a build (no VALID answer) they are dropped.
#[derive(Default)]
pub struct LateBuilders(Mutex<Joining>);

enum Joining {
    Waiting(Vec<(u64, String)>),
    Joined {
        payloads: Arc<PayloadIds>,
        id: String,
    },
}

impl Default for Joining {
    fn default() -> Self {
        Joining::Waiting(Vec::new())
    }
}

impl LateBuilders {
    /// A builder (node id, its own payloadId) whose VALID answer came late.
    pub fn add(&self, builder: (u64, String)) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *state {
            Joining::Waiting(waiting) => waiting.push(builder),
            Joining::Joined { payloads, id } => {
                if payloads.join(id, builder.clone()) {
                    tracing::info!(build = %id, node = builder.0, "a late builder joined the build");
                }
            }
        }
    }

    /// Remembers the build with `builders` and the late ones so far in `payloads`; later ones
    /// join it as they come. eb's id for it; `None` (nothing remembered) without any builder.
    pub fn insert(
        &self,
        payloads: &Arc<PayloadIds>,
        head: Option<String>,
        mut builders: Vec<(u64, String)>,
    ) -> Option<String> {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Joining::Waiting(waiting) = &mut *state {
            for builder in waiting.drain(..) {
                if !builders.iter().any(|(node, _)| *node == builder.0) {
                    builders.push(builder);
                }
            }
        }
        if builders.is_empty() {
            return None;
        }
        let id = payloads.insert(head, builders);
        *state = Joining::Joined {
            payloads: Arc::clone(payloads),
            id: id.clone(),
        };
        Some(id)
    }
}

/// The request a builder gets: the CL's method and id with the builder's own payloadId.
fn builder_request(call: &Call<'_>, el_id: &str) -> Bytes {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(call.id.get().as_bytes());
    out.extend_from_slice(br#","method":"#);
    out.extend_from_slice(
        serde_json::Value::from(call.method.as_ref())
            .to_string()
            .as_bytes(),
    );
    out.extend_from_slice(br#","params":["#);
    out.extend_from_slice(serde_json::Value::from(el_id).to_string().as_bytes());
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}

/// `engine_getPayloadV*`: asks the builders of the build eb called `params[0]`.
/// A build another replica made is fetched from the cluster store (and remembered here).
pub async fn get_payload(
    nodes: &Nodes,
    payloads: &PayloadIds,
    cluster: &Cluster,
    mode: GetPayloadMode,
    call: &Call<'_>,
) -> Answer {
    let Some(requested) = call.params.first_string.as_deref() else {
        return Err(EngineError::UnknownPayload("Unknown payload"));
    };
    let (build, shared) = match payloads.get(requested) {
        Some(build) => (build, None),
        None => {
            let Some(shared) = cluster.find_build(requested).await else {
                return Err(EngineError::UnknownPayload("Unknown payload"));
            };
            let snapshot = nodes.snapshot();
            let builders = shared
                .builders
                .iter()
                .filter_map(|(url, el_id)| {
                    let node = snapshot.iter().find(|n| n.url == *url)?;
                    Some((node.id, el_id.clone()))
                })
                .collect();
            let build = payloads.adopt(requested, shared.head.clone(), builders);
            (build, Some(shared))
        }
    };
    let answer = fetch(nodes, mode, call, build).await;
    if let (Ok(_), Some(shared)) = (&answer, &shared) {
        tracing::info!(build = %requested, replica = %shared.replica, "served a build another replica made");
        cluster.served_shared(shared);
    }
    answer
}

/// Asks the builders of `build`.
async fn fetch(nodes: &Nodes, mode: GetPayloadMode, call: &Call<'_>, build: Build) -> Answer {
    let nodes_set = nodes;
    let nodes = nodes.snapshot();
    let mut builders: Vec<(Arc<Node>, String)> = build
        .builders
        .iter()
        .filter_map(|(id, el_id)| {
            nodes
                .iter()
                .find(|n| n.id == *id)
                .map(|n| (Arc::clone(n), el_id.clone()))
        })
        .collect();
    let order: Vec<u64> = nodes_set.read_order().iter().map(|n| n.id).collect();
    builders.sort_by_key(|(n, _)| {
        order
            .iter()
            .position(|id| *id == n.id)
            .unwrap_or(usize::MAX)
    });
    if builders.is_empty() {
        return Err(EngineError::UnknownPayload(
            "Unknown payload: its builders are gone",
        ));
    }
    let budget = crate::route::budget(&call.method);
    let answer = match mode {
        GetPayloadMode::PrimaryFirst => first_success(call, builders, budget).await,
        GetPayloadMode::BestValue => {
            best_value(call, builders, budget, build.head.as_deref()).await
        }
    };
    answer.unwrap_or_else(|| {
        Err(EngineError::NoAnswer(
            "no builder answered getPayload in time".into(),
        ))
    })
}

type Asked = std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send>>;

fn ask(call: &Call<'_>, node: Arc<Node>, el_id: &str, timeout: Duration) -> Asked {
    let body = builder_request(call, el_id);
    Box::pin(async move {
        let timed = node.call(body, timeout).await;
        node.observe(&timed);
        timed.reply
    })
}

/// Asks builders in order, hedging: the next one starts when the previous fails or after its
/// hedge delay (at most a third of the budget); the first result wins (else the last error).
async fn first_success(
    call: &Call<'_>,
    builders: Vec<(Arc<Node>, String)>,
    budget: Duration,
) -> Option<Answer> {
    let candidates = builders
        .into_iter()
        .map(|(node, el_id)| {
            let body = builder_request(call, &el_id);
            (node, body)
        })
        .collect();
    hedge::first_answer(candidates, budget, budget / 3)
        .await
        .ok()
}

#[derive(Deserialize)]
struct Built {
    #[serde(rename = "executionPayload", default)]
    execution_payload: Option<Parent>,
    #[serde(rename = "parentHash", default)]
    parent_hash: Option<String>,
    #[serde(rename = "blockValue", default)]
    block_value: Option<String>,
}

#[derive(Deserialize)]
struct Parent {
    #[serde(rename = "parentHash")]
    parent_hash: String,
}

/// A QUANTITY as a sortable key: (significant digits, lowercase digits).
fn quantity_key(hex: &str) -> (usize, String) {
    let digits = hex
        .trim_start_matches("0x")
        .trim_start_matches('0')
        .to_ascii_lowercase();
    (digits.len(), digits)
}

/// Asks every builder at once; keeps the highest `blockValue` among payloads whose parent is
/// the head the CL asked to build on (else the last error).
async fn best_value(
    call: &Call<'_>,
    builders: Vec<(Arc<Node>, String)>,
    budget: Duration,
    head: Option<&str>,
) -> Option<Answer> {
    let deadline = Instant::now() + budget;
    let mut asked: FuturesUnordered<Asked> = builders
        .into_iter()
        .map(|(node, el_id)| ask(call, node, &el_id, budget))
        .collect();
    let mut best: Option<((usize, String), Bytes)> = None;
    let mut last = None;
    loop {
        tokio::select! {
            next = asked.next() => match next.map(|reply| hedge::answer_of(&reply)) {
                None => break,
                Some(Some(Ok(result))) => {
                    let Ok(built) = serde_json::from_slice::<Built>(&result) else { continue };
                    let parent = built.execution_payload.map(|p| p.parent_hash).or(built.parent_hash);
                    let on_head = match (head, parent.as_deref()) {
                        (Some(head), Some(parent)) => head.eq_ignore_ascii_case(parent),
                        _ => false,
                    };
                    if !on_head {
                        tracing::warn!("a builder returned a payload not built on the requested head");
                        continue;
                    }
                    let key = quantity_key(built.block_value.as_deref().unwrap_or("0x0"));
                    if best.as_ref().is_none_or(|(k, _)| key > *k) {
                        best = Some((key, result));
                    }
                }
                Some(Some(Err(error))) => last = Some(Err(error)),
                Some(None) => {}
            },
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    best.map(|(_, result)| Ok(result)).or(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_8_byte_data() {
        let ids = PayloadIds::default();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let id = ids.insert(None, vec![(0, "0x01".into())]);
            assert_eq!(id.len(), 18);
            assert!(id.starts_with("0x") && id[2..].bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(seen.insert(id));
        }
        assert_eq!(ids.len(), MAX_BUILDS, "bounded");
    }

    #[test]
    fn remembers_recent_builds_only() {
        let ids = PayloadIds::default();
        let first = ids.insert(Some("0xhead".into()), vec![(3, "0xel".into())]);
        let got = ids
            .get(&first.to_uppercase().replace("0X", "0x"))
            .expect("remembered");
        assert_eq!(got.builders, [(3, "0xel".to_owned())]);
        for _ in 0..MAX_BUILDS {
            ids.insert(None, Vec::new());
        }
        assert!(ids.get(&first).is_none(), "evicted");
        assert!(ids.get("0x0000000000000000").is_none());
    }

    #[test]
    fn late_builders_join_the_build_before_and_after_it_is_made() {
        let payloads = Arc::new(PayloadIds::default());
        let late = LateBuilders::default();
        late.add((2, "0x02".into()));
        let nobody = LateBuilders::default();
        assert_eq!(
            nobody.insert(&payloads, None, Vec::new()),
            None,
            "no build without a builder"
        );
        let id = late
            .insert(&payloads, None, vec![(0, "0x00".into())])
            .expect("a build");
        late.add((1, "0x01".into()));
        late.add((1, "0x0b".into()));
        let builders = payloads.get(&id).expect("remembered").builders;
        assert_eq!(
            builders,
            [
                (0, "0x00".to_owned()),
                (2, "0x02".to_owned()),
                (1, "0x01".to_owned())
            ],
            "the answered builder first, each late one once, in arrival order"
        );
        nobody.add((1, "0x01".into()));
        assert_eq!(
            payloads.len(),
            1,
            "a builder after no build was made joins nothing"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn builds_expire_after_their_ttl() {
        let ids = PayloadIds::default();
        let old = ids.insert(None, vec![(0, "0x01".into())]);
        tokio::time::advance(BUILD_TTL - Duration::from_millis(1)).await;
        let fresh = ids.insert(None, vec![(1, "0x02".into())]);
        assert!(ids.get(&old).is_some(), "just inside its TTL");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(ids.get(&old).is_none(), "expired");
        assert!(ids.get(&fresh).is_some());
        ids.insert(None, Vec::new());
        assert_eq!(ids.len(), 2, "an insert drops expired builds");
    }

    #[test]
    fn block_values_compare_as_numbers() {
        assert!(quantity_key("0x10") > quantity_key("0xf"));
        assert!(quantity_key("0xA") == quantity_key("0xa"));
        assert!(quantity_key("0x0") < quantity_key("0x1"));
    }
}
