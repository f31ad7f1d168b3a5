//! The engine's data path for one call, after auth and framing: route → the stage that answers
//! it → one JSON-RPC answer, counted by its typed outcome.
//!
//! State-changing calls go fan-out → votes → policy → verdict → answer; builds are fetched from
//! their builders; reads go to the primary; merged calls to every EL.

use crate::answer;
use crate::cli::GetPayloadMode;
use crate::cluster::Cluster;
use crate::error::Answer;
use crate::fanout::{Fanout, VoteCall};
use crate::metrics::{InFlight, Metrics};
use crate::nodes::Nodes;
use crate::payloads::{self, PayloadIds};
use crate::policy::PolicySlot;
use crate::record::Recorder;
use crate::route::{route, Route};
use crate::rpc::{self, Call};
use crate::verdict::{Settled, Verdicts};
use crate::{merge, primary};
use policy_sdk::VoteKind;
use std::sync::Arc;
use tokio::time::Instant;

/// Everything a call needs past the CL's token: the stages, each with its own state.
pub struct Engine {
    nodes: Arc<Nodes>,
    fanout: Fanout,
    verdicts: Verdicts,
    payloads: Arc<PayloadIds>,
    cluster: Arc<Cluster>,
    get_payload: GetPayloadMode,
    metrics: Arc<Metrics>,
}

impl Engine {
    /// The engine over `nodes`: votes decided by `policy` (and recorded by `recorder`), builds
    /// fetched with the `get_payload` strategy, builds and final answers shared through
    /// `cluster`.
    pub fn new(
        nodes: Arc<Nodes>,
        policy: Arc<PolicySlot>,
        metrics: Arc<Metrics>,
        recorder: Option<Arc<Recorder>>,
        get_payload: GetPayloadMode,
        cluster: Arc<Cluster>,
    ) -> Engine {
        let payloads = Arc::new(PayloadIds::default());
        Engine {
            fanout: Fanout::new(Arc::clone(&nodes), policy, Arc::clone(&metrics), recorder),
            verdicts: Verdicts::new(
                Arc::clone(&payloads),
                Arc::clone(&cluster),
                Arc::clone(&metrics),
            ),
            nodes,
            payloads,
            cluster,
            get_payload,
            metrics,
        }
    }

    /// The builds eb handed payloadIds for.
    pub fn payloads(&self) -> Arc<PayloadIds> {
        Arc::clone(&self.payloads)
    }

    /// Answers one call (never fails: every outcome is a JSON-RPC answer with the CL's id).
    pub async fn dispatch(&self, call: &Call<'_>) -> Vec<u8> {
        let _in_flight = InFlight::start(&self.metrics.in_flight);
        let start = Instant::now();
        let answer = self.answer(call).await;
        let method: String = call.method.chars().take(48).collect();
        self.metrics
            .answer_seconds
            .get_or_create(&vec![("method", method.clone())])
            .observe(start.elapsed().as_secs_f64());
        let kind = if answer.is_ok() { "result" } else { "error" };
        self.metrics
            .requests
            .get_or_create(&vec![("method", method), ("answer", kind.to_owned())])
            .inc();
        rpc::encode(call.id, &answer)
    }

    async fn answer(&self, call: &Call<'_>) -> Answer {
        let nodes = &self.nodes;
        match route(&call.method, &call.params) {
            (Route::Vote(kind), version) => self.vote(call, kind, version).await,
            (Route::ByPayloadId, _) => {
                let (payloads, mode) = (&self.payloads, self.get_payload);
                payloads::get_payload(nodes, payloads, &self.cluster, mode, call).await
            }
            (Route::Capabilities, _) => merge::capabilities(nodes, call).await,
            (Route::ClientVersions, _) => merge::client_versions(nodes, call).await,
            (Route::Broadcast, _) => primary::broadcast(nodes, call).await,
            (Route::Blobs, version) => merge::blobs(nodes, call, version).await,
            (Route::Primary, _) => primary::read(nodes, call).await,
        }
    }

    async fn vote(&self, call: &Call<'_>, kind: VoteKind, version: u8) -> Answer {
        let vote = VoteCall {
            method: &call.method,
            kind,
            version,
            id: call.id.get(),
            body: call.bytes.clone(),
            block_hash: call.params.hash.as_deref(),
        };
        let settled = self.settle(&vote).await;
        if let Some(status) = settled.status() {
            let labels = vec![
                ("method", kind.name().to_owned()),
                ("status", status.name().to_owned()),
            ];
            self.metrics.vote_answers.get_or_create(&labels).inc();
        }
        answer::render(settled, kind, version)
    }

    /// Fans `vote` out and settles it; a forkchoiceUpdated another replica's CL drives
    /// elsewhere is settled without forwarding it.
    async fn settle(&self, vote: &VoteCall<'_>) -> Settled {
        self.cluster.called();
        let head = vote
            .block_hash
            .filter(|_| vote.kind != VoteKind::NewPayload);
        if let Some(head) = head {
            if !self.cluster.may_drive(head).await {
                return self.verdicts.held(vote, head).await;
            }
        }
        let collected = self.fanout.run(vote).await;
        if let Some(head) = head {
            self.cluster.drove(head);
        }
        self.verdicts.settle(vote, &collected).await
    }
}
