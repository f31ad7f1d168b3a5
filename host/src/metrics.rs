//! Prometheus metrics (OpenMetrics text on the admin listener's `GET /metrics`). The names here
//! are the ones `contrib/grafana-dashboard.json` queries; a test keeps the two in step.

use crate::node_state::NodeState;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// Label sets: a list of (name, value) pairs.
pub type Labels = Vec<(&'static str, String)>;

/// Builds latency histograms from 50 µs to ~13 s.
#[derive(Clone, Copy)]
pub struct LatencyBuckets;

impl MetricConstructor<Histogram> for LatencyBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.000_05, 2.0, 19))
    }
}

/// Builds CL answer-time histograms on the boundaries validator duties care about (5 ms to 8 s).
#[derive(Clone, Copy)]
pub struct AnswerBuckets;

impl MetricConstructor<Histogram> for AnswerBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0])
    }
}

/// Every metric eb exports.
pub struct Metrics {
    registry: Registry,
    /// `eb_requests_total{method, answer}`: CL calls answered, by result or error.
    pub requests: Family<Labels, Counter>,
    /// `eb_answer_seconds{method}`: time to answer the CL, by method.
    pub answer_seconds: Family<Labels, Histogram, AnswerBuckets>,
    /// `eb_vote_answers_total{method, status}`: newPayload and forkchoiceUpdated answers given
    /// to the CL, by the status answered (after verdict memory; errors are not counted).
    pub vote_answers: Family<Labels, Counter>,
    /// `eb_verdicts_total{method, action, status, reason}`.
    pub verdicts: Family<Labels, Counter>,
    /// `eb_votes_total{node, status, outcome}`.
    pub votes: Family<Labels, Counter>,
    /// `eb_el_latency_seconds{node}`: every EL call that got an answer.
    pub el_latency: Family<Labels, Histogram, LatencyBuckets>,
    /// `eb_el_state{node, state}`: 1 for the node's current state.
    pub el_state: Family<Labels, Gauge>,
    /// `eb_policy_decision_seconds`: one policy decision, including encoding.
    pub decision_seconds: Histogram,
    /// `eb_policy_faults_total{kind}`.
    pub policy_faults: Family<Labels, Counter>,
    /// `eb_primary_changes_total`.
    pub primary_changes: Counter,
    /// `eb_payload_builds`: builds in the payloadId map.
    pub payload_builds: Gauge,
    /// `eb_in_flight_calls`: CL calls being answered.
    pub in_flight: Gauge,
    /// `eb_late_votes_total{node}`: EL answers that came after the verdict.
    pub late_votes: Family<Labels, Counter>,
    /// `eb_late_contradictions_total{node}`: late votes opposite to the answer given (INVALID
    /// after VALID, or VALID after INVALID).
    pub late_contradictions: Family<Labels, Counter>,
    /// `eb_el_cut_total{node, reason}`: votes not waited for (offline, auth_failed, hung,
    /// straggler).
    pub cut_votes: Family<Labels, Counter>,
    /// `eb_el_queue_dropped_total{node}`: queued calls dropped because the queue was full.
    pub queue_dropped: Family<Labels, Counter>,
    /// `eb_el_queue_calls{node}`: calls waiting in the EL's ordered queue (set when scraped).
    pub queue_calls: Family<Labels, Gauge>,
    /// `eb_el_queue_bytes{node}`: their bytes (set when scraped).
    pub queue_bytes: Family<Labels, Gauge>,
    /// `eb_el_last_answer_age_seconds{node}`: time since the EL last answered (set when
    /// scraped; absent before its first answer).
    pub last_answer_age: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// `eb_verdict_flips_total`: ELs voting the opposite of a final answer already given.
    pub verdict_flips: Counter,
    /// `eb_policy_reloads_total{result}`.
    pub policy_reloads: Family<Labels, Counter>,
    /// `eb_el_refused_answers_total{node, reason}`: EL answers eb did not take (`too_large`,
    /// `wrong_id`, `redirect`).
    pub refused_answers: Family<Labels, Counter>,
    /// `eb_el_missing_capabilities{node}`: methods the CL lists that the EL's
    /// `engine_exchangeCapabilities` lacked last time (fork readiness).
    pub missing_capabilities: Family<Labels, Gauge>,
    /// `eb_el_head_lag_blocks{node}`: validated blocks since the EL last voted VALID on one
    /// (set when scraped).
    pub head_lag: Family<Labels, Gauge>,
    /// `eb_shadow_disagreements_total{active, shadow}`: ballots the shadow policy would have
    /// answered otherwise.
    pub shadow_disagreements: Family<Labels, Counter>,
    /// `eb_etcd_up`: 1 while the cluster store answers (always 1 standalone: the local store).
    pub etcd_up: Gauge,
    /// `eb_etcd_request_seconds{op}`: cluster store calls (`put_build`, `get_build`,
    /// `claim_verdict`, `get_verdict`, `hold`, `release`, `ask`, `announce`, `list`, `ping`,
    /// `write_back`).
    pub etcd_request_seconds: Family<Labels, Histogram, LatencyBuckets>,
    /// `eb_cluster_shared_builds_served_total{replica}`: getPayload calls answered for a build
    /// another replica made, by that replica.
    pub shared_builds_served: Family<Labels, Counter>,
    /// `eb_cluster_conflicts_total`: write-backs that found another replica's different final
    /// answer for the same block.
    pub cluster_conflicts: Counter,
    /// `eb_cluster_pending`: decisions waiting to be written back to the store.
    pub cluster_pending: Gauge,
    /// `eb_cluster_leader`: 1 while this replica holds the leader lease.
    pub cluster_leader: Gauge,
    /// `eb_cluster_held_total`: forkchoiceUpdated calls answered without forwarding them (another
    /// replica leads, driving another head).
    pub cluster_held: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("eb"),
            requests: Family::default(),
            answer_seconds: Family::new_with_constructor(AnswerBuckets),
            vote_answers: Family::default(),
            verdicts: Family::default(),
            votes: Family::default(),
            el_latency: Family::new_with_constructor(LatencyBuckets),
            el_state: Family::default(),
            decision_seconds: Histogram::new(exponential_buckets(0.000_001, 2.0, 16)),
            policy_faults: Family::default(),
            primary_changes: Counter::default(),
            payload_builds: Gauge::default(),
            in_flight: Gauge::default(),
            late_votes: Family::default(),
            late_contradictions: Family::default(),
            cut_votes: Family::default(),
            queue_dropped: Family::default(),
            queue_calls: Family::default(),
            queue_bytes: Family::default(),
            last_answer_age: Family::default(),
            verdict_flips: Counter::default(),
            policy_reloads: Family::default(),
            refused_answers: Family::default(),
            missing_capabilities: Family::default(),
            head_lag: Family::default(),
            shadow_disagreements: Family::default(),
            etcd_up: Gauge::default(),
            etcd_request_seconds: Family::new_with_constructor(LatencyBuckets),
            shared_builds_served: Family::default(),
            cluster_conflicts: Counter::default(),
            cluster_pending: Gauge::default(),
            cluster_leader: Gauge::default(),
            cluster_held: Counter::default(),
        };
        let r = &mut m.registry;
        r.register(
            "requests",
            "CL calls answered, by method and answer kind",
            m.requests.clone(),
        );
        r.register_with_unit(
            "answer",
            "Time to answer the CL, by method",
            Unit::Seconds,
            m.answer_seconds.clone(),
        );
        r.register(
            "vote_answers",
            "newPayload and forkchoiceUpdated answers given to the CL, by status",
            m.vote_answers.clone(),
        );
        r.register(
            "verdicts",
            "Policy verdicts on state-changing calls",
            m.verdicts.clone(),
        );
        r.register(
            "votes",
            "EL votes by node, status and outcome",
            m.votes.clone(),
        );
        r.register_with_unit(
            "el_latency",
            "EL call latency",
            Unit::Seconds,
            m.el_latency.clone(),
        );
        r.register(
            "el_state",
            "EL health state (1 = current)",
            m.el_state.clone(),
        );
        r.register_with_unit(
            "policy_decision",
            "One policy decision",
            Unit::Seconds,
            m.decision_seconds.clone(),
        );
        r.register(
            "policy_faults",
            "Policy faults answered as SYNCING, by kind",
            m.policy_faults.clone(),
        );
        r.register(
            "primary_changes",
            "Changes of the primary EL",
            m.primary_changes.clone(),
        );
        r.register(
            "payload_builds",
            "Builds in the payloadId map",
            m.payload_builds.clone(),
        );
        r.register(
            "in_flight_calls",
            "CL calls being answered",
            m.in_flight.clone(),
        );
        r.register(
            "late_votes",
            "EL answers that arrived after the verdict",
            m.late_votes.clone(),
        );
        r.register(
            "late_contradictions",
            "Late votes opposite to the answer given",
            m.late_contradictions.clone(),
        );
        r.register(
            "el_cut",
            "Votes not waited for, by node and reason",
            m.cut_votes.clone(),
        );
        r.register(
            "el_queue_dropped",
            "Queued calls dropped because the EL's queue was full",
            m.queue_dropped.clone(),
        );
        r.register(
            "el_queue_calls",
            "Calls waiting in the EL's ordered queue",
            m.queue_calls.clone(),
        );
        r.register(
            "el_queue_bytes",
            "Bytes of calls waiting in the EL's ordered queue",
            m.queue_bytes.clone(),
        );
        r.register_with_unit(
            "el_last_answer_age",
            "Time since the EL last answered",
            Unit::Seconds,
            m.last_answer_age.clone(),
        );
        r.register(
            "verdict_flips",
            "Votes opposite to a final answer already given",
            m.verdict_flips.clone(),
        );
        r.register(
            "policy_reloads",
            "Policy reloads by result",
            m.policy_reloads.clone(),
        );
        r.register(
            "el_refused_answers",
            "EL answers not taken (too large, wrong id, a redirect), by node and reason",
            m.refused_answers.clone(),
        );
        r.register(
            "el_missing_capabilities",
            "Methods the CL lists that the EL lacks (fork readiness)",
            m.missing_capabilities.clone(),
        );
        r.register(
            "el_head_lag_blocks",
            "Validated blocks since the EL last voted VALID on one",
            m.head_lag.clone(),
        );
        r.register(
            "shadow_disagreements",
            "Ballots the shadow policy would have answered otherwise",
            m.shadow_disagreements.clone(),
        );
        r.register(
            "etcd_up",
            "1 while the cluster store answers",
            m.etcd_up.clone(),
        );
        r.register_with_unit(
            "etcd_request",
            "Cluster store calls, by operation",
            Unit::Seconds,
            m.etcd_request_seconds.clone(),
        );
        r.register(
            "cluster_shared_builds_served",
            "getPayload calls answered for a build another replica made",
            m.shared_builds_served.clone(),
        );
        r.register(
            "cluster_conflicts",
            "Write-backs that found another replica's different final answer",
            m.cluster_conflicts.clone(),
        );
        r.register(
            "cluster_pending",
            "Decisions waiting to be written back to the cluster store",
            m.cluster_pending.clone(),
        );
        r.register(
            "cluster_leader",
            "1 while this replica holds the leader lease",
            m.cluster_leader.clone(),
        );
        r.register(
            "cluster_held",
            "forkchoiceUpdated calls answered without forwarding them: another replica leads",
            m.cluster_held.clone(),
        );
        m
    }
}

impl Metrics {
    /// Creates the cluster store's series at zero (each of `ops`, and builds of `replica`
    /// served), so a dashboard shows 0 instead of no data.
    pub fn init_cluster(&self, replica: &str, ops: &[&str]) {
        for op in ops {
            let labels = vec![("op", (*op).to_owned())];
            drop(self.etcd_request_seconds.get_or_create(&labels));
        }
        let labels = vec![("replica", replica.to_owned())];
        drop(self.shared_builds_served.get_or_create(&labels));
    }

    /// Creates `node`'s per-EL series at zero, so a dashboard shows 0 for an EL that has had no
    /// cut, late or dropped call yet instead of no data.
    pub fn init_node(&self, node: &str) {
        let labels = vec![("node", node.to_owned())];
        drop(self.late_votes.get_or_create(&labels));
        drop(self.late_contradictions.get_or_create(&labels));
        drop(self.queue_dropped.get_or_create(&labels));
        drop(self.queue_calls.get_or_create(&labels));
        drop(self.queue_bytes.get_or_create(&labels));
        drop(self.missing_capabilities.get_or_create(&labels));
        drop(self.head_lag.get_or_create(&labels));
        for reason in ["offline", "auth_failed", "hung", "straggler"] {
            let labels = vec![("node", node.to_owned()), ("reason", reason.to_owned())];
            drop(self.cut_votes.get_or_create(&labels));
        }
        for reason in ["too_large", "wrong_id", "redirect"] {
            let labels = vec![("node", node.to_owned()), ("reason", reason.to_owned())];
            drop(self.refused_answers.get_or_create(&labels));
        }
    }

    /// Sets `eb_el_state` for `node`: 1 for `state`, 0 for the others.
    pub fn set_state(&self, node: &str, state: NodeState) {
        for s in NodeState::ALL {
            let labels = vec![("node", node.to_owned()), ("state", s.label().to_owned())];
            self.el_state
                .get_or_create(&labels)
                .set(i64::from(s == state));
        }
    }

    /// The OpenMetrics exposition text (what Prometheus asks for).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// The classic Prometheus text format (version 0.0.4) for clients that do not ask for
    /// OpenMetrics (curl, `promtool check metrics`): counters' HELP/TYPE name the `_total`
    /// sample, and there are no `# UNIT` or `# EOF` lines.
    pub fn encode_classic(&self) -> String {
        let open = self.encode();
        let mut counters = std::collections::HashSet::new();
        for line in open.lines() {
            if let Some(name) = line
                .strip_prefix("# TYPE ")
                .and_then(|t| t.strip_suffix(" counter"))
            {
                counters.insert(name.to_owned());
            }
        }
        let mut out = String::with_capacity(open.len());
        for line in open.lines() {
            if line.starts_with("# UNIT ") || line == "# EOF" {
                continue;
            }
            let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
                let rest = line.strip_prefix(prefix)?;
                let (name, tail) = rest.split_once(' ')?;
                counters
                    .contains(name)
                    .then(|| format!("{prefix}{name}_total {tail}"))
            });
            out.push_str(renamed.as_deref().unwrap_or(line));
            out.push('\n');
        }
        out
    }
}

/// Runs `f` counting it in `eb_in_flight_calls`.
pub struct InFlight<'a>(&'a Gauge);

impl<'a> InFlight<'a> {
    /// Counts one more call in flight until dropped.
    pub fn start(gauge: &'a Gauge) -> InFlight<'a> {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_registered_families() {
        let m = Metrics::default();
        m.verdict_flips.inc();
        m.votes
            .get_or_create(&vec![
                ("node", "n".into()),
                ("status", "VALID".into()),
                ("outcome", "answered".into()),
            ])
            .inc();
        m.set_state("n", NodeState::Synced);
        let node = vec![("node", "n".to_owned())];
        m.last_answer_age.get_or_create(&node).set(0.25);
        m.queue_calls.get_or_create(&node).set(3);
        m.late_votes.get_or_create(&node).inc();
        let method = vec![("method", "engine_newPayloadV4".to_owned())];
        m.answer_seconds.get_or_create(&method).observe(0.3);
        {
            let _call = InFlight::start(&m.in_flight);
            assert_eq!(m.in_flight.get(), 1);
        }
        assert_eq!(m.in_flight.get(), 0);
        let text = m.encode();
        assert!(text.contains("eb_verdict_flips_total 1"), "{text}");
        assert!(
            text.contains(r#"eb_votes_total{node="n",status="VALID",outcome="answered"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"eb_el_state{node="n",state="synced"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("# TYPE eb_policy_decision_seconds histogram"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
        assert!(
            text.contains(r#"eb_el_last_answer_age_seconds{node="n"} 0.25"#),
            "{text}"
        );
        assert!(text.contains(r#"eb_el_queue_calls{node="n"} 3"#), "{text}");
        assert!(
            text.contains(r#"eb_late_votes_total{node="n"} 1"#),
            "{text}"
        );
        let classic = m.encode_classic();
        assert!(
            classic.contains("# TYPE eb_verdict_flips_total counter"),
            "{classic}"
        );
        assert!(!classic.contains("# EOF") && !classic.contains("# UNIT"));
    }
}
