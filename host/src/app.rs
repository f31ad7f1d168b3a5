//! The application state and the dispatch of one call by its route.

use crate::answer::answer;
use crate::auth::{JwtSecret, Verifier};
use crate::cli::GetPayloadMode;
use crate::config::{AdminToken, Config, NodeConfig};
use crate::fanout::{fan_out, Fanout};
use crate::nodes::{Node, Nodes, NodesError};
use crate::payloads::{self, PayloadIds};
use crate::policy::Policy;
use crate::route::{route, Route};
use crate::rpc::Call;
use crate::{health, merge, primary};
use policy_sdk::fixture::{describe, describe_votes};
use policy_sdk::{Method, Status};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Everything a request handler needs.
pub struct App {
    /// The ELs.
    pub nodes: Arc<Nodes>,
    policy: RwLock<Arc<dyn Policy>>,
    /// Checks the CL's tokens.
    pub verifier: Verifier,
    /// Builds and their payloadIds.
    pub payloads: PayloadIds,
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
}

impl App {
    /// Builds the app and starts each EL's ordered worker (needs a tokio runtime); health
    /// loops start with [`App::start_health`].
    pub fn new(config: Config, policy: Arc<dyn Policy>) -> Arc<App> {
        let default_timeout = config
            .nodes
            .first()
            .map_or(crate::route::MAX_EL_TIMEOUT, |n| n.timeout);
        Arc::new(App {
            nodes: Arc::new(Nodes::new(&config.nodes)),
            policy: RwLock::new(policy),
            verifier: Verifier::new(&config.cl_secret),
            payloads: PayloadIds::default(),
            get_payload: config.get_payload,
            max_body: config.max_body,
            admin_token: config.admin_token,
            health_interval: config.health_interval,
            default_secret: config.cl_secret,
            default_timeout,
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
