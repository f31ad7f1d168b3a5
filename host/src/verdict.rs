//! The verdict stage: what the collected votes, the verdict memory and the payload builds make
//! of one state-changing call, as one [`Settled`] value that [`answer`](crate::answer) only
//! renders. Verdicts are counted and logged here, once.

use crate::cluster::{Claim, Cluster, SharedVerdict};
use crate::fanout::{Collected, VoteCall};
use crate::memory::{Kind, Recall, Remembered, VerdictMemory};
use crate::metrics::Metrics;
use crate::payloads::PayloadIds;
use crate::policy::is_counted_invalid;
use bytes::Bytes;
use policy_sdk::fixture::{describe_verdict, describe_votes};
use policy_sdk::{Outcome, Status, VoteKind};
use std::sync::Arc;

/// How one state-changing call ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Answer with the followed EL's result verbatim; a build gets eb's `payload_id` (set only
    /// when the followed vote is VALID and some VALID EL started a build).
    Follow {
        /// The followed vote's status.
        status: Status,
        /// The EL's result (JSON text).
        result: Bytes,
        /// eb's payloadId for a build.
        payload_id: Option<String>,
    },
    /// eb answered this block VALID or INVALID before: the same answer again. A build
    /// remembered VALID gets eb's `payload_id` for the builds the VALID ELs started now (a
    /// VALID answer without one would leave the CL nothing to propose).
    Remembered {
        /// The status eb gave then (VALID or INVALID).
        status: Status,
        /// The result eb gave then.
        result: Bytes,
        /// eb's payloadId for a build.
        payload_id: Option<String>,
    },
    /// A synthetic SYNCING: no verdict to follow, or a policy fault.
    Syncing,
    /// Every EL refused the call with the same JSON-RPC error (a malformed request, an
    /// unsupported fork): that error, so the CL does not import the block optimistically.
    UnanimousError(Bytes),
}

impl Settled {
    /// The status the CL is answered with; `None` for a JSON-RPC error.
    pub fn status(&self) -> Option<Status> {
        match self {
            Settled::Follow { status, .. } | Settled::Remembered { status, .. } => Some(*status),
            Settled::Syncing => Some(Status::Syncing),
            Settled::UnanimousError(_) => None,
        }
    }
}

/// The verdict stage's state: final answers already given, and the builds eb hands ids for;
/// both shared with the other replicas through `cluster`.
pub struct Verdicts {
    memory: VerdictMemory,
    payloads: Arc<PayloadIds>,
    cluster: Arc<Cluster>,
    metrics: Arc<Metrics>,
}

impl Verdicts {
    /// The stage, minting payloadIds into `payloads` and sharing answers through `cluster`.
    pub fn new(
        payloads: Arc<PayloadIds>,
        cluster: Arc<Cluster>,
        metrics: Arc<Metrics>,
    ) -> Verdicts {
        Verdicts {
            memory: VerdictMemory::default(),
            payloads,
            cluster,
            metrics,
        }
    }

    /// Settles `call` from what its fan-out `collected`, and tells each EL whether the block
    /// was validated (answered VALID, or voted VALID by a counted EL), so that an EL without a
    /// VALID on it is known to be behind, whatever its `eth_syncing` says.
    pub async fn settle(&self, call: &VoteCall<'_>, collected: &Collected) -> Settled {
        let settled = self.answer(call, collected).await;
        let received = &collected.collector.received;
        let remembered_valid = matches!(
            settled,
            Settled::Remembered {
                status: Status::Valid,
                ..
            }
        );
        let validated = remembered_valid
            || received
                .iter()
                .any(|r| r.vote.is_counted() && r.vote.status == Status::Valid);
        let payload = call.kind == VoteKind::NewPayload;
        for r in received {
            if let Some(node) = collected.nodes.get(usize::from(r.vote.node)) {
                node.note_vote(&r.vote, validated, payload);
            }
        }
        settled
    }

    /// Settles a forkchoiceUpdated not forwarded (another replica leads, driving another head)
    /// from the final answer given for its head, by this replica or another (waiting a moment
    /// for the leader's); SYNCING without one. No build is made.
    pub async fn held(&self, call: &VoteCall<'_>, head: &str) -> Settled {
        self.cluster.held().await;
        let kind = Kind::of(call.kind);
        let remembered = match self.memory.get(kind, head) {
            Some(remembered) => Some(remembered),
            None => self
                .cluster
                .await_verdict(kind.name(), head)
                .await
                .map(|shared| self.adopt(kind, head, shared)),
        };
        tracing::info!(method = %call.method, block = %head.get(..12).unwrap_or(head),
            answer = remembered.as_ref().map_or("SYNCING", |r| r.status.name()),
            "another replica leads on another head: answered without forwarding");
        match remembered {
            Some(Remembered { status, result }) => Settled::Remembered {
                status,
                result,
                payload_id: None,
            },
            None => Settled::Syncing,
        }
    }

    async fn answer(&self, call: &VoteCall<'_>, collected: &Collected) -> Settled {
        log_decision(call, collected);
        let followed = collected.followed();
        if let Some(hash) = call.block_hash {
            let (status, result) = match followed {
                Some(r) => (Some(r.vote.status), r.result.clone().unwrap_or_default()),
                None => (None, Bytes::new()),
            };
            let kind = Kind::of(call.kind);
            let recall = match (self.memory.recall(kind, hash, status, &result), status) {
                (Recall::First, Some(status)) => self.share(kind, hash, status, &result).await,
                (recall, _) => recall,
            };
            if let Recall::Keep { remembered, flip } = recall {
                return self.keep(call, collected, hash, remembered, flip).await;
            }
        }
        let (action, status) = match followed {
            Some(r) => ("follow", r.vote.status.name()),
            None => ("syncing", "SYNCING"),
        };
        let labels = vec![
            ("method", call.kind.name().to_owned()),
            ("action", action.to_owned()),
            ("status", status.to_owned()),
            ("reason", collected.decision.verdict.reason().to_string()),
        ];
        self.metrics.verdicts.get_or_create(&labels).inc();
        match followed {
            Some(r) => Settled::Follow {
                status: r.vote.status,
                result: r.result.clone().unwrap_or_default(),
                payload_id: self.build(call, collected, r.vote.status).await,
            },
            None => unanimous_error(collected).map_or(Settled::Syncing, Settled::UnanimousError),
        }
    }

    /// Offers this replica's first final answer for `hash` to the cluster: another replica's
    /// earlier answer of the opposite status is adopted and kept (never turned around).
    async fn share(&self, kind: Kind, hash: &str, status: Status, result: &Bytes) -> Recall {
        let Claim::Earlier(earlier) = self.cluster.claim(kind.name(), hash, status, result).await
        else {
            return Recall::Answer;
        };
        if earlier.status().normalized() == status.normalized() {
            return Recall::Answer;
        }
        tracing::warn!(block = %hash, replica = %earlier.replica, theirs = earlier.status().name(),
            ours = status.name(), "another replica answered this block otherwise first");
        let remembered = self.adopt(kind, hash, earlier);
        Recall::Keep {
            remembered,
            flip: true,
        }
    }

    /// Remembers another replica's final answer for `hash` as this replica's own.
    fn adopt(&self, kind: Kind, hash: &str, shared: SharedVerdict) -> Remembered {
        let remembered = Remembered {
            status: shared.status(),
            result: Bytes::from(shared.result),
        };
        self.memory.adopt(kind, hash, remembered.clone());
        remembered
    }

    /// The answer for a block answered VALID or INVALID before (by this replica or another).
    async fn keep(
        &self,
        call: &VoteCall<'_>,
        collected: &Collected,
        hash: &str,
        remembered: Remembered,
        flip: bool,
    ) -> Settled {
        if flip {
            self.metrics.verdict_flips.inc();
        }
        // Safety over consistency: a block answered VALID before is SYNCING now while an
        // INVALID is counted (an INVALID answer is kept, whatever the ELs say now).
        let counted_invalid = collected
            .collector
            .received
            .iter()
            .any(|r| is_counted_invalid(&r.vote));
        if remembered.status == Status::Valid && counted_invalid {
            tracing::warn!(method = %call.method, block = %hash,
                "answered VALID before, an INVALID is counted now: SYNCING");
            return Settled::Syncing;
        }
        if flip {
            tracing::warn!(method = %call.method, block = %hash, kept = remembered.status.name(),
                "ELs now vote the opposite of the final answer already given; keeping it");
        }
        let payload_id = match remembered.status {
            Status::Valid => self.build(call, collected, Status::Valid).await,
            _ => None,
        };
        Settled::Remembered {
            status: remembered.status,
            result: remembered.result,
            payload_id,
        }
    }

    /// eb's payloadId for a build whose followed vote is VALID: every VALID EL's own build, and
    /// those whose VALID comes late; shared with the other replicas before it is answered.
    async fn build(
        &self,
        call: &VoteCall<'_>,
        collected: &Collected,
        status: Status,
    ) -> Option<String> {
        if call.kind != VoteKind::ForkchoiceUpdatedWithAttributes || status != Status::Valid {
            return None;
        }
        let builders: Vec<(u64, String)> = collected
            .collector
            .received
            .iter()
            .filter(|r| r.vote.status == Status::Valid)
            .filter_map(|r| {
                let node = collected.nodes.get(usize::from(r.vote.node))?;
                Some((node.id, r.payload_id.clone()?))
            })
            .collect();
        let head = call.block_hash.map(str::to_owned);
        let id = match &collected.late_builders {
            Some(late) => late.insert(&self.payloads, head, builders),
            None => (!builders.is_empty()).then(|| self.payloads.insert(head, builders)),
        }?;
        if let Some(build) = self.payloads.get(&id) {
            let by_url = build
                .builders
                .iter()
                .filter_map(|(node, el_id)| {
                    let node = collected.nodes.iter().find(|n| n.id == *node)?;
                    Some((node.url.clone(), el_id.clone()))
                })
                .collect();
            self.cluster.publish_build(&id, build.head, by_url).await;
        }
        Some(id)
    }
}

/// The error object every EL answered with, when all answered the same JSON-RPC error code
/// (and the policy did not fault).
fn unanimous_error(collected: &Collected) -> Option<Bytes> {
    let received = &collected.collector.received;
    let first = received.first()?;
    let unanimous = received.iter().all(|r| {
        r.vote.outcome == Outcome::RpcError && r.vote.rpc_error_code == first.vote.rpc_error_code
    });
    (unanimous && collected.decision.fault.is_none())
        .then(|| first.error.clone())
        .flatten()
}

fn log_decision(call: &VoteCall<'_>, collected: &Collected) {
    let fault = &collected.decision.fault;
    if !(fault.is_some() || tracing::enabled!(tracing::Level::INFO)) {
        return;
    }
    let ballot = collected.collector.ballot(collected.elapsed_ms, "");
    let verdict = describe_verdict(&ballot, collected.decision.verdict);
    let block = call.block_hash.map_or("-", |h| h.get(..12).unwrap_or(h));
    let votes = describe_votes(&ballot);
    match fault {
        None => tracing::info!(method = %call.method, block, %votes, %verdict, "decision"),
        Some(fault) => {
            tracing::warn!(method = %call.method, block, %votes, %verdict, %fault, "policy fault, answered SYNCING")
        }
    }
}
