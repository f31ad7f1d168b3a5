//! The application state and the dispatch of one call by its route.

use crate::answer::{answer, with_payload_id};
use crate::auth::{JwtSecret, Verifier};
use crate::cli::GetPayloadMode;
use crate::config::{AdminToken, Config, NodeConfig};
use crate::fanout::{fan_out, Fanout};
use crate::memory::{Kind, Recall, VerdictMemory};
use crate::metrics::{InFlight, Metrics};
use crate::nodes::{Node, Nodes, NodesError};
use crate::payloads::{self, PayloadIds};
use crate::policy::{Policy, PolicySource, WasmPolicy};
use crate::record::Recorder;
use crate::route::{route, Route};
use crate::rpc::Call;
use crate::{health, merge, primary};
use policy_sdk::fixture;
use policy_sdk::fixture::{describe, describe_votes};
use policy_sdk::{Method, Status};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Everything a request handler needs.
pub struct App {
    /// The ELs.
    pub nodes: Arc<Nodes>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    policy: RwLock<Arc<dyn Policy>>,
    /// Checks the CL's tokens.
    pub verifier: Verifier,
    /// Builds and their payloadIds.
    pub payloads: PayloadIds,
    /// Final answers given per block, never turned around.
    pub memory: VerdictMemory,
    /// `--record-votes`.
    pub recorder: Option<Arc<Recorder>>,
    /// getPayload strategy.
    pub get_payload: GetPayloadMode,
    /// Largest CL request body.
    pub max_body: usize,
    /// Token for mutating admin calls.
    pub admin_token: Option<AdminToken>,
    /// Health check period.
    pub health_interval: Duration,
    default_secret: JwtSecret,
    default_timeout: Duration,
    policy_source: PolicySource,
    policy_config: String,
    policy_fixtures: Option<std::path::PathBuf>,
}

impl App {
    /// Builds the app and starts each EL's ordered worker (needs a tokio runtime); health
    /// loops start with [`App::start_health`].
    pub fn new(config: Config, policy: Arc<dyn Policy>, recorder: Option<Recorder>) -> Arc<App> {
        let default_timeout = config
            .nodes
            .first()
            .map_or(crate::route::MAX_EL_TIMEOUT, |n| n.timeout);
        let metrics = Arc::new(Metrics::default());
        Arc::new(App {
            nodes: Arc::new(Nodes::new(&config.nodes, Arc::clone(&metrics))),
            metrics,
            policy: RwLock::new(policy),
            verifier: Verifier::new(&config.cl_secret),
            payloads: PayloadIds::default(),
            memory: VerdictMemory::default(),
            recorder: recorder.map(Arc::new),
            get_payload: config.get_payload,
            max_body: config.max_body,
            admin_token: config.admin_token,
            health_interval: config.health_interval,
            default_secret: config.cl_secret,
            default_timeout,
            policy_source: config.policy,
            policy_config: config.policy_config,
            policy_fixtures: config.policy_fixtures,
        })
    }

    /// Starts the health loop of every node.
    pub fn start_health(self: &Arc<Self>) {
        for node in self.nodes.snapshot().iter() {
            self.watch(Arc::clone(node));
        }
    }

    fn watch(&self, node: Arc<Node>) {
        tokio::spawn(health::run(
            Arc::clone(&self.nodes),
            node,
            self.health_interval,
        ));
    }

    /// The active policy.
    pub fn policy(&self) -> Arc<dyn Policy> {
        Arc::clone(&self.policy.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces the active policy (decisions already running keep the old one).
    pub fn set_policy(&self, policy: Arc<dyn Policy>) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = policy;
    }

    /// Reloads the `--policy` file: validates it (ABI, conformance cases, and the
    /// `--policy-fixtures` if set) and swaps it in atomically; on any failure the active policy
    /// stays and the reason is returned.
    pub async fn reload_policy(&self) -> Result<Arc<dyn Policy>, String> {
        let (source, config) = (self.policy_source.clone(), self.policy_config.clone());
        let fixtures = self.policy_fixtures.clone();
        let loaded = tokio::task::spawn_blocking(move || -> Result<WasmPolicy, String> {
            let policy = WasmPolicy::load(&source, &config).map_err(|e| e.to_string())?;
            if let Some(dir) = fixtures {
                let cases = fixture::load(&[dir]).map_err(|e| e.to_string())?;
                let report = fixture::run(&cases, |ballot| {
                    let decision = policy.decide(ballot);
                    decision
                        .fault
                        .map_or(Ok(decision.verdict), |f| Err(f.to_string()))
                });
                if !report.failures.is_empty() {
                    return Err(format!("fails its fixtures:\n{report}"));
                }
            }
            Ok(policy)
        })
        .await
        .map_err(|e| format!("reload task failed: {e}"))
        .and_then(|loaded| loaded);
        let result = if loaded.is_ok() { "ok" } else { "refused" };
        self.metrics
            .policy_reloads
            .get_or_create(&vec![("result", result.to_owned())])
            .inc();
        match loaded {
            Ok(policy) => {
                let policy: Arc<dyn Policy> = Arc::new(policy);
                tracing::info!(policy = %policy.info().name, sha256 = %policy.info().sha256, "policy reloaded");
                self.set_policy(Arc::clone(&policy));
                Ok(policy)
            }
            Err(reason) => {
                tracing::warn!(%reason, "policy reload refused; the active policy stays");
                Err(reason)
            }
        }
    }

    /// Adds a node from an executionbackup spec (`URL[#jwt-secret=..][#timeout=..][#do-not-use]`).
    pub fn add_node(&self, spec: &str) -> Result<Arc<Node>, String> {
        let config = NodeConfig::parse(spec, &self.default_secret, self.default_timeout)?;
        let node = self.nodes.add(&config).map_err(|e| e.to_string())?;
        self.watch(Arc::clone(&node));
        Ok(node)
    }

    /// Removes the node at `index`.
    pub fn remove_node(&self, index: usize) -> Result<Arc<Node>, NodesError> {
        self.nodes.remove(index)
    }

    /// Answers one call (never fails: every outcome is a JSON-RPC answer).
    pub async fn dispatch(&self, call: &Call<'_>) -> Vec<u8> {
        let _in_flight = InFlight::start(&self.metrics.in_flight);
        let answer = self.route(call).await;
        let method: String = call.method.chars().take(48).collect();
        let error_at = 22 + call.id.get().len();
        let kind = if answer.get(error_at..error_at + 8) == Some(b",\"error\"") {
            "error"
        } else {
            "result"
        };
        self.metrics
            .requests
            .get_or_create(&vec![("method", method), ("answer", kind.to_owned())])
            .inc();
        answer
    }

    async fn route(&self, call: &Call<'_>) -> Vec<u8> {
        let (route, version) = route(&call.method);
        match route {
            Route::Vote(method) => self.vote(call, method, version).await,
            Route::ByPayloadId => payloads::get_payload(self, call).await,
            Route::Capabilities => merge::capabilities(self, call).await,
            Route::ClientVersions => merge::client_versions(self, call).await,
            Route::Broadcast => primary::broadcast(self, call).await,
            Route::Primary => primary::read(self, call).await,
        }
    }

    async fn vote(&self, call: &Call<'_>, method: Method, version: u8) -> Vec<u8> {
        let params = &call.params;
        let method = match method {
            Method::ForkchoiceUpdated if params.has_second => {
                Method::ForkchoiceUpdatedWithAttributes
            }
            other => other,
        };
        let collected = fan_out(
            self,
            Fanout {
                method_name: &call.method,
                method,
                version,
                body: call.bytes.clone(),
                block_hash: params.hash.clone(),
            },
        )
        .await;
        let received = &collected.collector.received;
        let followed = match collected.decision.verdict {
            policy_sdk::Verdict::Follow { vote, .. } => received.get(usize::from(vote)),
            _ => None,
        };
        if let Some(hash) = &params.hash {
            let status = followed.map(|r| r.vote.status);
            let result = followed
                .and_then(|r| r.result.as_deref())
                .map_or("", |r| r.get());
            if let Recall::Keep { remembered, flip } =
                self.memory.recall(Kind::of(method), hash, status, result)
            {
                if flip {
                    self.metrics.verdict_flips.inc();
                    tracing::warn!(method = %call.method, block = %hash, kept = remembered.status.name(),
                        "ELs now vote the opposite of the final answer already given; keeping it");
                }
                log_decision(call, &collected, Some(hash));
                let result = match method {
                    Method::ForkchoiceUpdatedWithAttributes => {
                        with_payload_id(&remembered.result, None)
                    }
                    _ => remembered.result,
                };
                return crate::rpc::result(call.id, &result);
            }
        }
        let followed_valid = matches!(collected.decision.verdict,
            policy_sdk::Verdict::Follow { vote, .. }
                if received.get(usize::from(vote)).is_some_and(|r| r.vote.status == Status::Valid));
        let payload_id = if method == Method::ForkchoiceUpdatedWithAttributes && followed_valid {
            let builders: Vec<(u64, String)> = received
                .iter()
                .filter(|r| r.vote.status == Status::Valid)
                .filter_map(|r| {
                    let node = collected.nodes.get(usize::from(r.vote.node))?;
                    Some((node.id, r.payload_id.clone()?))
                })
                .collect();
            (!builders.is_empty()).then(|| self.payloads.insert(params.hash.clone(), builders))
        } else {
            None
        };
        log_decision(call, &collected, params.hash.as_deref());
        let (action, status) = match followed {
            Some(r) => ("follow", r.vote.status.name()),
            None => ("syncing", "SYNCING"),
        };
        let reason = collected.decision.verdict.reason().to_string();
        let labels = vec![
            ("method", method.name().to_owned()),
            ("action", action.to_owned()),
            ("status", status.to_owned()),
            ("reason", reason),
        ];
        self.metrics.verdicts.get_or_create(&labels).inc();
        answer(call.id, &collected, method, version, payload_id.as_deref())
    }
}

fn log_decision(call: &Call<'_>, collected: &crate::fanout::Collected, hash: Option<&str>) {
    let fault = collected.decision.fault.is_some();
    if !(fault || tracing::enabled!(tracing::Level::INFO)) {
        return;
    }
    let ballot = collected.collector.ballot(0, "");
    let verdict = describe(&ballot, collected.decision.verdict);
    let block = hash.map_or("-", |h| h.get(..12).unwrap_or(h));
    let votes = describe_votes(&ballot);
    match &collected.decision.fault {
        None => tracing::info!(method = %call.method, block, %votes, %verdict, "decision"),
        Some(fault) => {
            tracing::warn!(method = %call.method, block, %votes, %verdict, %fault, "policy fault, answered SYNCING")
        }
    }
}
