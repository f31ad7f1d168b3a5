//! Fan-out of a state-changing call: queued to every EL in order, replies turned into votes as
//! they arrive, the policy asked after each one until it gives a verdict.
//!
//! The verdict waits only for ELs that can answer in time. An EL that is offline, refuses
//! eb's token or is hung on an earlier call still gets the call, but its vote is cut at once.
//! Once the votes in hand would decide the call, the others get until the straggler deadline
//! ([`crate::straggler`]) and are then cut. A policy may also ask to be woken at a time it names
//! (`Wake`). At the CL's deadline every missing vote is a timeout and the policy must decide.
//! Calls still in flight after the verdict are never cancelled: they finish as late votes,
//! counted per node, and one that contradicts the answer given is logged and counted.

use crate::metrics::Metrics;
use crate::nodes::{Node, Nodes};
use crate::payloads::LateBuilders;
use crate::policy::{Ballot, Decision, Policy, PolicySlot};
use crate::record::{self, Recorded, Recorder};
use crate::route;
use crate::upstream::Timed;
use crate::votes::{failed, receive, Collector, Question, Received};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use policy_sdk::abi::Health;
use policy_sdk::fixture::{describe_verdict, describe_votes, Case, Expect};
use policy_sdk::{Outcome, Status, Verdict, Vote, VoteKind};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// A state-changing call about to be fanned out.
pub struct VoteCall<'a> {
    /// The JSON-RPC method name (for its deadline, logs and recordings).
    pub method: &'a str,
    /// The kind of vote.
    pub kind: VoteKind,
    /// The method version.
    pub version: u8,
    /// The CL's JSON-RPC id (raw JSON), which every EL's answer must carry.
    pub id: &'a str,
    /// The CL's request bytes, shared by every EL.
    pub body: Bytes,
    /// The block (newPayload) or head (forkchoiceUpdated) hash.
    pub block_hash: Option<&'a str>,
}

/// What the fan-out collected and what the policy decided.
pub struct Collected {
    /// The votes the decision saw, in arrival order (indices match the decision's vote
    /// numbers; pending records are not among them).
    pub collector: Collector,
    /// The policy's decision.
    pub decision: Decision,
    /// The ELs the call went to, by vote node index.
    pub nodes: Arc<Vec<Arc<Node>>>,
    /// Milliseconds from fan-out to the decision.
    pub elapsed_ms: u32,
    /// A build's builders whose VALID answer comes after the verdict (forkchoiceUpdated with
    /// attributes only).
    pub late_builders: Option<Arc<LateBuilders>>,
}

impl VoteCall<'_> {
    /// What each EL's answer is a vote on.
    pub fn question(&self) -> Question<'_> {
        Question {
            kind: self.kind,
            id: self.id,
            block_hash: self.block_hash,
        }
    }
}

impl Collected {
    /// The reply the verdict follows, if it follows one.
    pub fn followed(&self) -> Option<&Received> {
        self.collector.followed(self.decision.verdict)
    }
}

type Reply = (usize, Result<Timed, oneshot::error::RecvError>);
type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send>>;

/// The fan-out stage: the ELs, the policy that decides, and where decisions are counted and
/// recorded.
pub struct Fanout {
    nodes: Arc<Nodes>,
    policy: Arc<PolicySlot>,
    metrics: Arc<Metrics>,
    recorder: Option<Arc<Recorder>>,
}

/// Why a vote was not waited for, as `eb_el_cut_total{reason}` says it.
fn cut_reason(health: Health) -> &'static str {
    match health {
        Health::Offline | Health::AuthFailed | Health::Hung => health.name(),
        _ => "straggler",
    }
}

impl Fanout {
    /// The stage over `nodes`, deciding with the slot's active policy.
    pub fn new(
        nodes: Arc<Nodes>,
        policy: Arc<PolicySlot>,
        metrics: Arc<Metrics>,
        recorder: Option<Arc<Recorder>>,
    ) -> Fanout {
        Fanout {
            nodes,
            policy,
            metrics,
            recorder,
        }
    }

    /// Fans `call` out to every EL and returns the verdict before the CL's deadline.
    pub async fn run(&self, call: &VoteCall<'_>) -> Collected {
        let nodes = self.nodes.snapshot();
        let budget = route::budget(call.method);
        let start = Instant::now();
        let deadline = start + budget;
        // Each node's record as the policy sees it while its vote is out: health taken now.
        let records: Vec<Vote> = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| failed(i as u16, node, call.kind, Outcome::Pending).vote)
            .collect();
        let mut replies: FuturesUnordered<Pending> = FuturesUnordered::new();
        for (index, node) in nodes.iter().enumerate() {
            let receiver = node.enqueue(call.kind, call.body.clone(), node.timeout.min(budget));
            replies.push(Box::pin(async move { (index, receiver.await) }));
        }
        let policy = self.policy.current();
        let config = policy.info().config.clone();
        let mut collector = Collector::new(call.kind, call.version, records.clone());
        let unable = |i: usize| {
            matches!(
                records[i].health,
                Health::Offline | Health::AuthFailed | Health::Hung
            ) && nodes[i].straggler.cuts_unhealthy()
        };
        // Cut the ELs that cannot answer in time, unless no EL could: then wait as before.
        if !(0..nodes.len()).all(unable) {
            for i in (0..nodes.len()).filter(|&i| unable(i)) {
                self.cut(&mut collector, &nodes, i, Outcome::Cut);
            }
        }
        let elapsed = || start.elapsed();
        let mut early_late: Vec<Reply> = Vec::new();
        // When a verdict first became available (time since fan-out), and until when the ELs
        // still out are waited for from then.
        let mut ready_at: Option<Duration> = None;
        let mut straggler_at: Option<Instant> = None;
        let mut wake_at: Option<Instant> = None;
        let (decision, elapsed_ms, decided) = loop {
            let now = elapsed();
            let elapsed_ms = millis(now);
            // The policy is first asked once there is a vote to ask about (or nothing to wait for).
            if !collector.received.is_empty() || collector.outstanding().next().is_none() {
                let ballot = collector.ballot(elapsed_ms, &config);
                let decision = self.decide(&*policy, &ballot);
                match decision.verdict {
                    _ if ballot.context.is_final => break (decision, elapsed_ms, ballot),
                    Verdict::Wait => {}
                    Verdict::Wake { at_ms } => {
                        let at = start + Duration::from_millis(at_ms.into());
                        wake_at = Some(at).filter(|at| *at > start + now);
                    }
                    _ => break (decision, elapsed_ms, ballot),
                }
                match ready_at {
                    None => {
                        straggler_at = self
                            .straggler_deadline(&*policy, &collector, &nodes, &config, now, start);
                        ready_at = straggler_at.map(|_| now);
                    }
                    // Each vote leaves fewer ELs out: the latest of their bounds may come sooner
                    // (a known-slow EL is not kept waiting for a fast one's floor).
                    Some(ready) => {
                        straggler_at =
                            straggler_bound(&collector, &nodes, ready).map(|u| start + u);
                    }
                }
            }
            let timer = [Some(deadline), straggler_at, wake_at]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(deadline);
            let vote_of = |index: usize, reply: Result<Timed, _>| {
                let node = &nodes[index];
                let received = match reply {
                    Ok(timed) => {
                        node.observe_vote(call.kind, &timed);
                        receive(index as u16, node, call.question(), &timed)
                    }
                    Err(_) => failed(index as u16, node, call.kind, Outcome::Unreachable),
                };
                self.count_vote(node, &received.vote);
                received
            };
            tokio::select! {
                next = replies.next() => match next {
                    Some((index, reply)) if !collector.has(index) => {
                        collector.push(vote_of(index, reply));
                    }
                    // Cut at fan-out for its health, it answered before the verdict: it counts.
                    Some((index, Ok(timed))) if collector.is_cut(index) => {
                        collector.replace_cut(vote_of(index, Ok(timed)));
                    }
                    Some(late) => early_late.push(late),
                    None => {}
                },
                () = tokio::time::sleep_until(timer) => {
                    let now = Instant::now();
                    let missing: Vec<usize> = collector.outstanding().collect();
                    if now >= deadline {
                        for i in missing {
                            let mut timeout = failed(i as u16, &nodes[i], call.kind, Outcome::Timeout);
                            timeout.vote.latency_us = budget.as_micros() as u32;
                            self.count_vote(&nodes[i], &timeout.vote);
                            collector.push(timeout);
                        }
                    } else if straggler_at.is_some_and(|t| now >= t) {
                        for i in missing {
                            self.cut(&mut collector, &nodes, i, Outcome::Cut);
                        }
                    } else {
                        wake_at = None;
                    }
                }
            }
        };
        let shadow = self.shadow(&*policy, &decided, &decision);
        let late_builders = (call.kind == VoteKind::ForkchoiceUpdatedWithAttributes)
            .then(|| Arc::new(LateBuilders::default()));
        let collected = Collected {
            collector,
            decision,
            nodes,
            elapsed_ms,
            late_builders: late_builders.clone(),
        };
        let mut late = Late {
            nodes: Arc::clone(&collected.nodes),
            kind: call.kind,
            method: call.method.to_owned(),
            id: call.id.to_owned(),
            block_hash: call.block_hash.map(str::to_owned),
            answered: collected.followed().map(|r| r.vote.status),
            late_builders,
            metrics: Arc::clone(&self.metrics),
            record: self.recorder.as_ref().map(|recorder| {
                let received = &collected.collector.received;
                let seen = collected.collector.ballot(elapsed_ms, &config);
                let about = Recorded {
                    method: call.method,
                    kind: call.kind,
                    version: call.version,
                    id: call.id,
                    nodes: collected.nodes.len() as u16,
                    pending: seen.context.pending,
                    config: &config,
                    block_hash: call.block_hash,
                    elapsed_ms,
                    policy_sha256: &policy.info().sha256,
                };
                let reason = collected.decision.verdict.reason();
                let pending = &seen.votes[received.len()..];
                let mut case =
                    record::case(&about, received, pending, collected.followed(), reason);
                case.shadow = shadow;
                (Arc::clone(recorder), case)
            }),
        };
        for reply in early_late {
            late.take(reply);
        }
        if replies.is_empty() {
            late.finish();
        } else {
            tokio::spawn(finish_late(replies, late));
        }
        collected
    }

    /// Counts node `index`'s vote as not waited for (its call still runs).
    fn cut(&self, collector: &mut Collector, nodes: &[Arc<Node>], index: usize, outcome: Outcome) {
        let node = &nodes[index];
        let cut = failed(index as u16, node, collector.kind(), outcome);
        node.count_cut(cut_reason(cut.vote.health));
        self.count_vote(node, &cut.vote);
        collector.push(cut);
    }

    /// When the votes still out stop being waited for: once the votes in hand would give a
    /// verdict to follow, each outstanding EL's straggler bound from `ready` (the latest of
    /// them); `None` while nothing would be decided, or when an EL is to be waited for.
    fn straggler_deadline(
        &self,
        policy: &dyn Policy,
        collector: &Collector,
        nodes: &[Arc<Node>],
        config: &str,
        ready: Duration,
        start: Instant,
    ) -> Option<Instant> {
        let if_cut = policy.decide(&collector.ballot_if_cut(millis(ready), config));
        if if_cut.fault.is_some() || !matches!(if_cut.verdict, Verdict::Follow { .. }) {
            return None;
        }
        straggler_bound(collector, nodes, ready).map(|until| start + until)
    }

    /// The shadow policy's answer to the ballot the active one decided, where the CL would have
    /// got another answer: counted, logged at info with both verdicts, returned for the
    /// recording. `None` without a shadow or when they agree.
    fn shadow(&self, active: &dyn Policy, ballot: &Ballot, decision: &Decision) -> Option<Expect> {
        let shadow = self.policy.shadow()?;
        let theirs = shadow.decide(ballot).verdict;
        let (ours, shadows) = (
            Expect::of(ballot, decision.verdict),
            Expect::of(ballot, theirs),
        );
        if ours.answers_like(&shadows) {
            return None;
        }
        let (active_name, shadow_name) = (&active.info().name, &shadow.info().name);
        self.metrics
            .shadow_disagreements
            .get_or_create(&vec![
                ("active", active_name.clone()),
                ("shadow", shadow_name.clone()),
            ])
            .inc();
        tracing::info!(
            active = %active_name,
            shadow = %shadow_name,
            answered = %describe_verdict(ballot, decision.verdict),
            shadow_would = %describe_verdict(ballot, theirs),
            votes = %describe_votes(ballot),
            "the shadow policy would have answered otherwise"
        );
        Some(shadows)
    }

    /// Asks `policy` about `ballot`, timing it and counting faults.
    fn decide(&self, policy: &dyn Policy, ballot: &Ballot) -> Decision {
        let started = Instant::now();
        let decision = policy.decide(ballot);
        self.metrics
            .decision_seconds
            .observe(started.elapsed().as_secs_f64());
        if let Some(fault) = &decision.fault {
            self.metrics
                .policy_faults
                .get_or_create(&vec![("kind", fault.kind().to_owned())])
                .inc();
        }
        decision
    }

    /// `eb_votes_total{node, status, outcome}`.
    fn count_vote(&self, node: &Node, vote: &Vote) {
        let labels = vec![
            ("node", node.url.clone()),
            ("status", vote.status.name().to_owned()),
            ("outcome", outcome_name(vote.outcome).to_owned()),
        ];
        self.metrics.votes.get_or_create(&labels).inc();
    }
}

/// An outcome's label in `eb_votes_total`.
fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Answered => "answered",
        Outcome::Timeout => "timeout",
        Outcome::Unreachable => "unreachable",
        Outcome::RpcError => "rpc_error",
        Outcome::Malformed => "malformed",
        Outcome::Cut => "cut",
        Outcome::Pending => "pending",
    }
}

fn millis(d: Duration) -> u32 {
    d.as_millis().min(u128::from(u32::MAX)) as u32
}

/// Until when (time since fan-out) a verdict available at `ready` waits for the ELs still out:
/// the latest of their straggler bounds; `None` when one is to be waited for.
fn straggler_bound(
    collector: &Collector,
    nodes: &[Arc<Node>],
    ready: Duration,
) -> Option<Duration> {
    let mut until = ready;
    for i in collector.outstanding() {
        let expected = nodes[i].expected_latency(collector.kind());
        until = until.max(nodes[i].straggler.until(ready, expected)?);
    }
    Some(until)
}

/// The replies that come after the verdict, and what they are checked against.
struct Late {
    nodes: Arc<Vec<Arc<Node>>>,
    kind: VoteKind,
    method: String,
    id: String,
    block_hash: Option<String>,
    /// The status of the answer given (`None`: SYNCING or an error).
    answered: Option<Status>,
    late_builders: Option<Arc<LateBuilders>>,
    metrics: Arc<Metrics>,
    record: Option<(Arc<Recorder>, Case)>,
}

impl Late {
    /// One late reply: it feeds health, is counted per node, is logged and counted when it
    /// contradicts the answer given, joins the recording, and a VALID build joins eb's build.
    fn take(&mut self, (index, reply): Reply) {
        let node = &self.nodes[index];
        let labels = vec![("node", node.url.clone())];
        self.metrics.late_votes.get_or_create(&labels).inc();
        let Ok(timed) = reply else { return };
        node.observe_vote(self.kind, &timed);
        let question = Question {
            kind: self.kind,
            id: &self.id,
            block_hash: self.block_hash.as_deref(),
        };
        let received = receive(index as u16, node, question, &timed);
        let status = received.vote.status.normalized();
        if let (Some(late), Status::Valid, Some(id)) =
            (&self.late_builders, status, &received.payload_id)
        {
            late.add((node.id, id.clone()));
        }
        node.note_vote(
            &received.vote,
            self.answered.map(Status::normalized) == Some(Status::Valid),
            self.kind == VoteKind::NewPayload,
        );
        let contradicts = matches!(
            (self.answered.map(Status::normalized), status),
            (Some(Status::Valid), Status::Invalid) | (Some(Status::Invalid), Status::Valid)
        );
        if contradicts {
            self.metrics
                .late_contradictions
                .get_or_create(&labels)
                .inc();
            tracing::warn!(node = %node.url, method = %self.method, block = self.block_hash.as_deref().unwrap_or("-"),
                late = status.name(), answered = self.answered.map_or("-", Status::name),
                "a late vote contradicts the answer given");
        } else {
            tracing::debug!(node = %node.url, method = %self.method, latency_ms = timed.latency.as_millis() as u64, "late vote");
        }
        if let Some((_, case)) = &mut self.record {
            case.votes.push(record::vote_spec(
                &received.vote,
                received.lvh.as_deref(),
                true,
            ));
        }
    }

    /// Writes the recording, late votes included.
    fn finish(self) {
        if let Some((recorder, case)) = self.record {
            recorder.write(&case);
        }
    }
}

/// Lets the replies that come after the verdict finish.
async fn finish_late(mut replies: FuturesUnordered<Pending>, mut late: Late) {
    while let Some(reply) = replies.next().await {
        late.take(reply);
    }
    late.finish();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::testing::{self, Scripted};
    use crate::nodes::NodeState;
    use crate::policy::PolicySource;
    use crate::straggler::Straggler;
    use crate::upstream::Reply;
    use policy_sdk::Status;
    use std::time::Duration;

    const BLOCK: &str = "0x00000000000000000000000000000000000000000000000000000000000000aa";

    /// An EL answering newPayload with `status` after `delay_ms`.
    fn el(status: &'static str, delay_ms: u64) -> Arc<Scripted> {
        testing::scripted(Box::new(move |_| {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":1,"result":{{"status":"{status}","latestValidHash":"{BLOCK}","validationError":null}}}}"#
            );
            (
                Duration::from_millis(delay_ms),
                Reply::Body(Bytes::from(body)),
            )
        }))
    }

    /// The fan-out over `els` (each with `timeout` and `straggler`), deciding with `policy`.
    fn fanout_with(
        els: &[Arc<Scripted>],
        timeout: Duration,
        straggler: Straggler,
        policy: Option<Arc<dyn Policy>>,
    ) -> (Fanout, Arc<Nodes>) {
        let nodes = testing::nodes_with(els, timeout, straggler);
        let metrics = Arc::new(Metrics::default());
        let slot = match policy {
            None => PolicySlot::embedded(Arc::clone(&metrics)),
            Some(policy) => PolicySlot::new(
                policy,
                PolicySource::Embedded,
                String::new(),
                None,
                Arc::clone(&metrics),
            ),
        };
        let fanout = Fanout::new(Arc::clone(&nodes), Arc::new(slot), metrics, None);
        (fanout, nodes)
    }

    /// The fan-out over `els` on the defaults, deciding with the embedded default policy.
    fn fanout(els: &[Arc<Scripted>], timeout: Duration) -> Fanout {
        fanout_with(els, timeout, Straggler::Auto, None).0
    }

    fn call(body: &'static str) -> VoteCall<'static> {
        VoteCall {
            method: "engine_newPayloadV4",
            kind: VoteKind::NewPayload,
            version: 4,
            id: "1",
            body: Bytes::from_static(body.as_bytes()),
            block_hash: Some(BLOCK),
        }
    }

    fn followed_status(collected: &Collected) -> Option<Status> {
        collected.followed().map(|r| r.vote.status)
    }

    /// (node, outcome, health) of each vote the decision saw.
    fn votes(collected: &Collected) -> Vec<(u16, Outcome, Health)> {
        let received = &collected.collector.received;
        received
            .iter()
            .map(|r| (r.vote.node, r.vote.outcome, r.vote.health))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_el_is_cut_at_the_straggler_deadline_and_still_gets_the_call() {
        let slow = el("VALID", 3_000);
        let fanout = fanout(
            &[el("VALID", 10), el("VALID", 12), Arc::clone(&slow)],
            route::MAX_EL_TIMEOUT,
        );
        let collected = fanout.run(&call("{}")).await;
        assert_eq!(followed_status(&collected), Some(Status::Valid));
        let floor = crate::straggler::FLOOR.as_millis() as u32;
        assert_eq!(
            collected.elapsed_ms,
            10 + floor,
            "the first VALID would decide (the default rule counts answers): the floor past it"
        );
        assert_eq!(votes(&collected)[2], (2, Outcome::Cut, Health::Unknown));
        assert_eq!(
            slow.seen.lock().expect("seen").len(),
            1,
            "it still got the call"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slower_el_with_history_is_waited_for_twice_its_usual_time() {
        let (fanout, nodes) = fanout_with(
            &[el("VALID", 10), el("VALID", 12), el("VALID", 300)],
            route::MAX_EL_TIMEOUT,
            Straggler::Auto,
            None,
        );
        let first = fanout.run(&call("{}")).await;
        assert_eq!(first.elapsed_ms, 210, "no history yet: the floor");
        // The cut call's answer still arrives and teaches eb the EL's usual time.
        let learnt = || nodes.snapshot()[2].typical_latency(VoteKind::NewPayload);
        while learnt().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let second = fanout.run(&call("{}")).await;
        assert_eq!(
            second.elapsed_ms, 300,
            "waited for (2 × 300 ms from fan-out), it answered at 300"
        );
        assert_eq!(votes(&second)[2].1, Outcome::Answered);
    }

    /// An EL answering VALID after the delay in `delay_ms` at the time of each call.
    fn el_with_delay(delay_ms: Arc<std::sync::atomic::AtomicU64>) -> Arc<Scripted> {
        testing::scripted(Box::new(move |_| {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":1,"result":{{"status":"VALID","latestValidHash":"{BLOCK}","validationError":null}}}}"#
            );
            let delay = delay_ms.load(std::sync::atomic::Ordering::Relaxed);
            (Duration::from_millis(delay), Reply::Body(Bytes::from(body)))
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn a_known_slow_el_costs_nothing_and_counts_again_once_its_usual_time_is_back() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let delay = Arc::new(AtomicU64::new(3_000));
        let slow_el = el_with_delay(Arc::clone(&delay));
        let (fanout, nodes) = fanout_with(
            &[el("VALID", 10), el("VALID", 12), Arc::clone(&slow_el)],
            route::MAX_EL_TIMEOUT,
            Straggler::Auto,
            None,
        );
        let slow = Arc::clone(&nodes.snapshot()[2]);
        let usual = || slow.typical_latency(VoteKind::NewPayload);
        // Runs one call and lets the slow EL's answer (late or not) arrive.
        let answered_at = || slow.health().last_answer;
        let run = || async {
            let before = answered_at();
            let collected = fanout.run(&call("{}")).await;
            while answered_at() == before {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            collected
        };
        let first = run().await;
        assert_eq!(first.elapsed_ms, 210, "no history yet: the floor");
        let second = run().await;
        assert_eq!(
            second.elapsed_ms, 12,
            "its usual time (3 s) is past the cap: cut as soon as the others decide"
        );
        assert_eq!(votes(&second)[2], (2, Outcome::Cut, Health::Unknown));
        // Fast again: each late answer brings its usual time down; while it is past the cap the
        // EL is still cut at once, from the first call under it on it is waited for and counts.
        delay.store(20, Ordering::Relaxed);
        let mut cut_calls = 0;
        loop {
            let past_cap = usual().is_some_and(|u| u > crate::straggler::CAP);
            let collected = run().await;
            let outcome = votes(&collected)[2].1;
            if !past_cap {
                assert_eq!(outcome, Outcome::Answered);
                assert_eq!(collected.elapsed_ms, 20, "waited for, as any EL");
                break;
            }
            assert_eq!(outcome, Outcome::Cut);
            assert_eq!(collected.elapsed_ms, 12);
            cut_calls += 1;
            assert!(cut_calls < 20, "its usual time never came back");
        }
        assert_eq!(
            cut_calls, 5,
            "3 s → under 1 s in five 20 ms answers (EWMA weight 0.2)"
        );
        let calls = 3 + cut_calls;
        assert_eq!(
            slow.cut_count(),
            2 + cut_calls as u64,
            "cut on every call but the last"
        );
        let seen = slow_el.seen.lock().expect("seen").len();
        assert_eq!(seen, calls, "it received every call");
    }

    /// An EL answering newPayload after `new_payload_ms` and forkchoiceUpdated after `fcu_ms`,
    /// VALID; a forkchoiceUpdated body contains "forkchoice".
    fn el_by_kind(new_payload_ms: u64, fcu_ms: u64) -> Arc<Scripted> {
        testing::scripted(Box::new(move |body| {
            let status = format!(
                r#"{{"status":"VALID","latestValidHash":"{BLOCK}","validationError":null}}"#
            );
            let fcu = body.windows(10).any(|w| w == b"forkchoice");
            let (delay, result) = match fcu {
                true => (
                    fcu_ms,
                    format!(r#"{{"payloadStatus":{status},"payloadId":null}}"#),
                ),
                false => (new_payload_ms, status),
            };
            let body = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{result}}}"#);
            (Duration::from_millis(delay), Reply::Body(Bytes::from(body)))
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_behind_a_known_slow_call_in_the_queue_is_not_waited_for() {
        let (fanout, nodes) = fanout_with(
            &[el_by_kind(10, 10), el_by_kind(12, 12), el_by_kind(3_000, 5)],
            route::MAX_EL_TIMEOUT,
            Straggler::Auto,
            None,
        );
        let slow = Arc::clone(&nodes.snapshot()[2]);
        fanout.run(&call("{}")).await;
        while slow.typical_latency(VoteKind::NewPayload).is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let payload = fanout.run(&call("{}")).await;
        assert_eq!(
            payload.elapsed_ms, 12,
            "known slow on newPayload: cut at once"
        );
        let fcu = VoteCall {
            method: "engine_forkchoiceUpdatedV3",
            kind: VoteKind::ForkchoiceUpdated,
            body: Bytes::from_static(br#"{"method":"engine_forkchoiceUpdatedV3"}"#),
            ..call("{}")
        };
        let collected = fanout.run(&fcu).await;
        assert_eq!(followed_status(&collected), Some(Status::Valid));
        assert_eq!(
            collected.elapsed_ms, 12,
            "its forkchoiceUpdated (5 ms) waits behind a 3 s newPayload: not waited for"
        );
        assert_eq!(votes(&collected)[2].1, Outcome::Cut);
    }

    #[tokio::test(start_paused = true)]
    async fn straggler_wait_keeps_the_verdict_waiting_for_every_el() {
        let (fanout, _) = fanout_with(
            &[el("VALID", 10), el("VALID", 12), el("VALID", 3_000)],
            route::MAX_EL_TIMEOUT,
            Straggler::Wait,
            None,
        );
        let collected = fanout.run(&call("{}")).await;
        assert_eq!(followed_status(&collected), Some(Status::Valid));
        assert_eq!(collected.elapsed_ms, 3_000);
        assert_eq!(votes(&collected)[2].1, Outcome::Answered);
    }

    #[tokio::test(start_paused = true)]
    async fn an_el_known_offline_is_cut_at_once() {
        let (fanout, nodes) = fanout_with(
            &[el("VALID", 10), el("VALID", 12), el("VALID", 3_600_000)],
            route::MAX_EL_TIMEOUT,
            Straggler::Auto,
            None,
        );
        nodes.snapshot()[2].set_state(NodeState::Offline, None);
        let collected = fanout.run(&call("{}")).await;
        assert_eq!(followed_status(&collected), Some(Status::Valid));
        assert_eq!(collected.elapsed_ms, 12, "as fast as the healthy ELs");
        assert_eq!(votes(&collected)[0], (2, Outcome::Cut, Health::Offline));
        assert_eq!(nodes.snapshot()[2].cut_count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn when_every_el_looks_down_the_verdict_still_waits_for_them() {
        let (fanout, nodes) = fanout_with(
            &[el("VALID", 10), el("VALID", 12)],
            route::MAX_EL_TIMEOUT,
            Straggler::Auto,
            None,
        );
        for node in nodes.snapshot().iter() {
            node.set_state(NodeState::Offline, None);
        }
        let collected = fanout.run(&call("{}")).await;
        assert_eq!(
            followed_status(&collected),
            Some(Status::Valid),
            "they were back"
        );
        assert_eq!(collected.elapsed_ms, 12);
    }

    #[tokio::test(start_paused = true)]
    async fn an_el_cut_for_its_health_that_answers_before_the_verdict_counts() {
        // Found by the simulation: an EL marked hung whose earlier call ended as the next one
        // went out answered that one at once, and was not counted.
        let (fanout, nodes) = fanout_with(
            &[el("VALID", 10), el("VALID", 300), el("INVALID", 5)],
            route::MAX_EL_TIMEOUT,
            Straggler::Auto,
            None,
        );
        nodes.snapshot()[2].set_state(NodeState::Offline, None);
        let collected = fanout.run(&call("{}")).await;
        let (node, outcome, _) = votes(&collected)[0];
        assert_eq!(
            (node, outcome),
            (2, Outcome::Answered),
            "its answer took the place of its cut vote"
        );
        assert_eq!(collected.collector.received[0].vote.status, Status::Invalid);
        assert_eq!(
            collected.followed().map(|r| r.vote.status),
            None,
            "an INVALID beside a VALID is SYNCING, not the VALID"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_el_is_cut_at_once_once_busy_past_a_second() {
        let hung = el("VALID", 3_600_000);
        let fanout = fanout(
            &[el("VALID", 10), el("VALID", 12), Arc::clone(&hung)],
            route::MAX_EL_TIMEOUT,
        );
        let first = fanout.run(&call(r#"{"n":1}"#)).await;
        assert_eq!(first.elapsed_ms, 210, "unknown yet: the straggler deadline");
        tokio::time::sleep(crate::nodes::HUNG_AFTER).await;
        let second = fanout.run(&call(r#"{"n":2}"#)).await;
        assert_eq!(second.elapsed_ms, 12, "busy for over a second: cut at once");
        assert_eq!(votes(&second)[0], (2, Outcome::Cut, Health::Hung));
        assert_eq!(followed_status(&second), Some(Status::Valid));
    }

    #[tokio::test(start_paused = true)]
    async fn with_straggler_wait_a_missing_el_is_a_timeout_after_its_own_timeout() {
        let (fanout, _) = fanout_with(
            &[el("VALID", 5), el("VALID", 7), el("VALID", 3_600_000)],
            Duration::from_millis(2_000),
            Straggler::Wait,
            None,
        );
        let collected = fanout.run(&call("{}")).await;
        assert_eq!(
            followed_status(&collected),
            Some(Status::Valid),
            "2 of 2 counted"
        );
        assert_eq!(votes(&collected)[2].1, Outcome::Timeout);
        assert_eq!(collected.elapsed_ms, 2_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flapping_el_costs_nothing_whether_it_refuses_answers_or_catches_up() {
        let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let refusing = Arc::clone(&down);
        let flapping = testing::scripted(Box::new(move |_| {
            if refusing.load(std::sync::atomic::Ordering::Relaxed) {
                (
                    Duration::from_millis(1),
                    Reply::Refused("connection failed: refused".into()),
                )
            } else {
                let body = format!(
                    r#"{{"id":1,"result":{{"status":"VALID","latestValidHash":"{BLOCK}","validationError":null}}}}"#
                );
                (Duration::from_millis(8), Reply::Body(Bytes::from(body)))
            }
        }));
        let fanout = fanout(
            &[el("VALID", 10), el("VALID", 12), flapping],
            route::MAX_EL_TIMEOUT,
        );
        // Refused; back, with the refused call to replay first (its vote is cut at once, not
        // waited for behind the replay); caught up; refused again.
        for (n, up, outcome) in [
            (0, false, Outcome::Unreachable),
            (1, true, Outcome::Cut),
            (2, true, Outcome::Answered),
            (3, false, Outcome::Unreachable),
        ] {
            down.store(!up, std::sync::atomic::Ordering::Relaxed);
            let collected = fanout.run(&call("{}")).await;
            assert_eq!(followed_status(&collected), Some(Status::Valid), "call {n}");
            assert_eq!(collected.elapsed_ms, 12, "call {n}: the healthy ELs' time");
            let flapper = votes(&collected)
                .into_iter()
                .find(|v| v.0 == 2)
                .map(|v| v.1);
            assert_eq!(flapper, Some(outcome), "call {n}");
            // Let the flapper's worker finish (replays and late votes) before the next call.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A policy with its own straggler rule: wait until 100 ms, then follow the first answer.
    struct WakeAt100(crate::policy::PolicyInfo);

    impl Policy for WakeAt100 {
        fn decide(&self, ballot: &Ballot) -> Decision {
            let verdict = if ballot.context.elapsed_ms < 100 && !ballot.context.is_final {
                Verdict::Wake { at_ms: 100 }
            } else {
                match ballot.votes.iter().position(Vote::is_answer) {
                    Some(i) => Verdict::Follow {
                        vote: i as u16,
                        reason: 7,
                    },
                    None => Verdict::Syncing { reason: 7 },
                }
            };
            Decision::checked(ballot, verdict, 0)
        }

        fn info(&self) -> &crate::policy::PolicyInfo {
            &self.0
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_policy_is_woken_at_the_time_it_names() {
        let info = crate::policy::PolicyInfo {
            name: "wake".into(),
            sha256: String::new(),
            size: 0,
            config: String::new(),
            loaded_at: std::time::SystemTime::UNIX_EPOCH,
        };
        let (fanout, _) = fanout_with(
            &[el("VALID", 10), el("VALID", 5_000)],
            route::MAX_EL_TIMEOUT,
            Straggler::Wait,
            Some(Arc::new(WakeAt100(info))),
        );
        let collected = fanout.run(&call("{}")).await;
        assert_eq!(
            collected.elapsed_ms, 100,
            "asked again at 100 ms without a new vote"
        );
        assert_eq!(collected.followed().map(|r| r.vote.node), Some(0));
        assert_eq!(collected.decision.verdict.reason(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn the_policy_waits_then_decides_once_an_invalid_majority_is_certain() {
        let slow = el("VALID", 5_000);
        let fanout = fanout(
            &[el("INVALID", 10), el("INVALID", 20), Arc::clone(&slow)],
            route::MAX_EL_TIMEOUT,
        );
        let collected = fanout.run(&call(r#"{"id":7}"#)).await;
        assert_eq!(followed_status(&collected), Some(Status::Invalid));
        assert_eq!(
            collected.elapsed_ms, 20,
            "Wait after one vote, INVALID after two"
        );
        assert_eq!(collected.collector.received.len(), 2);
        let seen = slow.seen.lock().expect("seen").clone();
        assert_eq!(
            seen,
            [Bytes::from_static(br#"{"id":7}"#)],
            "the straggler still got the call"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_deadline_every_missing_vote_is_a_timeout_and_the_answer_syncing() {
        let hung = || el("VALID", 3_600_000);
        let fanout = fanout(&[hung(), hung(), hung()], route::MAX_EL_TIMEOUT);
        let collected = fanout.run(&call("{}")).await;
        assert_eq!(collected.followed().map(|r| r.vote.node), None);
        assert!(matches!(
            collected.decision.verdict,
            Verdict::Syncing { .. }
        ));
        assert_eq!(
            u128::from(collected.elapsed_ms),
            route::budget("engine_newPayloadV4").as_millis()
        );
        let outcomes: Vec<Outcome> = collected
            .collector
            .received
            .iter()
            .map(|r| r.vote.outcome)
            .collect();
        assert_eq!(outcomes, [Outcome::Timeout; 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn every_el_gets_the_same_bytes_in_call_order() {
        let els = [el("VALID", 30), el("VALID", 1), el("VALID", 15)];
        let fanout = fanout(&els, route::MAX_EL_TIMEOUT);
        let (one, two) = (call(r#"{"n":1}"#), call(r#"{"n":2}"#));
        let (first, second) = tokio::join!(fanout.run(&one), fanout.run(&two));
        assert_eq!(followed_status(&first), Some(Status::Valid));
        assert_eq!(followed_status(&second), Some(Status::Valid));
        for el in &els {
            let seen = el.seen.lock().expect("seen").clone();
            assert_eq!(seen, [&br#"{"n":1}"#[..], &br#"{"n":2}"#[..]]);
        }
    }
}
