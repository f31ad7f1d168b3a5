//! The composition root: builds each stage from the config with the state it owns, and keeps
//! the handles the admin API and the health loops need. No stage depends on this module.

use crate::auth::Verifier;
use crate::config::{AdminToken, Config, NodeConfig, NodeDefaults};
use crate::dispatch::Engine;
use crate::health;
use crate::metrics::Metrics;
use crate::nodes::{Node, Nodes, NodesError};
use crate::payloads::PayloadIds;
use crate::policy::{Policy, PolicySlot};
use crate::record::Recorder;
use crate::server::Endpoint;
use std::sync::Arc;
use std::time::Duration;

/// eb's running parts.
pub struct App {
    /// The CL's endpoint: token check, framing, and the engine behind it.
    pub endpoint: Arc<Endpoint>,
    /// The ELs.
    pub nodes: Arc<Nodes>,
    /// The active policy and its reload.
    pub policy: Arc<PolicySlot>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Builds and their payloadIds.
    pub payloads: Arc<PayloadIds>,
    /// Token for mutating admin calls.
    pub admin_token: Option<AdminToken>,
    health_interval: Duration,
    node_defaults: NodeDefaults,
}

/// Why a node could not be added at run time.
#[derive(Debug, thiserror::Error)]
pub enum AddNodeError {
    /// The spec does not parse (`URL[#jwt-secret=..][#timeout=..][#do-not-use]`).
    #[error("{0}")]
    Spec(String),
    /// The node set refused it.
    #[error(transparent)]
    Nodes(#[from] NodesError),
}

impl App {
    /// Builds every stage and starts each EL's ordered worker (needs a tokio runtime); health
    /// loops start with [`App::start_health`].
    pub fn new(config: Config, policy: Arc<dyn Policy>, recorder: Option<Recorder>) -> Arc<App> {
        let metrics = Arc::new(Metrics::default());
        let nodes = Arc::new(Nodes::new(&config.nodes, Arc::clone(&metrics)));
        let policy = Arc::new(PolicySlot::new(
            policy,
            config.policy,
            config.policy_config,
            config.policy_fixtures,
            Arc::clone(&metrics),
        ));
        let engine = Engine::new(
            Arc::clone(&nodes),
            Arc::clone(&policy),
            Arc::clone(&metrics),
            recorder.map(Arc::new),
            config.get_payload,
        );
        let payloads = engine.payloads();
        let endpoint = Endpoint {
            verifier: Verifier::new(&config.cl_secret),
            max_body: config.max_body,
            engine,
        };
        Arc::new(App {
            endpoint: Arc::new(endpoint),
            nodes,
            policy,
            metrics,
            payloads,
            admin_token: config.admin_token,
            health_interval: config.health_interval,
            node_defaults: config.node_defaults,
        })
    }

    /// Starts the health loop of every node.
    pub fn start_health(&self) {
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

    /// Adds a node from an executionbackup spec (`URL[#jwt-secret=..][#timeout=..][#do-not-use]`)
    /// and starts its health loop.
    pub fn add_node(&self, spec: &str) -> Result<Arc<Node>, AddNodeError> {
        let config = NodeConfig::parse(spec, &self.node_defaults).map_err(AddNodeError::Spec)?;
        let node = self.nodes.add(&config)?;
        self.watch(Arc::clone(&node));
        Ok(node)
    }
}
