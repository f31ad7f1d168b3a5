//! The composition root: builds each stage from the config with the state it owns, and keeps
//! the handles the admin API and the health loops need. No stage depends on this module.

use crate::auth::Verifier;
use crate::cluster::{Change, Cluster, EtcdStore, LocalStore, Store};
use crate::config::{AddedSecrets, AdminToken, Config, NodeConfig, NodeDefaults};
use crate::dispatch::Engine;
use crate::health;
use crate::metrics::Metrics;
use crate::nodes::{Node, Nodes, NodesError};
use crate::payloads::PayloadIds;
use crate::policy::{Policy, PolicySlot, ReloadError};
use crate::record::Recorder;
use crate::server::Endpoint;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

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
    /// What this replica shares with the others (a local store standalone).
    pub cluster: Arc<Cluster>,
    /// Token for mutating admin calls (`None`: `--admin-no-token`).
    pub admin_token: Option<AdminToken>,
    health_interval: Duration,
    node_defaults: NodeDefaults,
    added_secrets: AddedSecrets,
}

/// Why a node could not be added at run time.
#[derive(Debug, thiserror::Error)]
pub enum AddNodeError {
    /// The spec does not parse (`URL[#jwt-secret=..][#timeout=..][#do-not-use]`).
    #[error("{0}")]
    Spec(String),
    /// Its secret file is outside the secret directories, or it names none.
    #[error("{0}")]
    Secret(String),
    /// The node set refused it.
    #[error(transparent)]
    Nodes(#[from] NodesError),
}

impl App {
    /// Builds every stage and starts each EL's ordered worker (needs a tokio runtime); health
    /// loops start with [`App::start_health`], the cluster's resync with the servers.
    pub fn new(
        config: Config,
        admin_token: Option<AdminToken>,
        policy: Arc<dyn Policy>,
        shadow: Option<Arc<dyn Policy>>,
        recorder: Option<Recorder>,
    ) -> Arc<App> {
        let metrics = Arc::new(Metrics::default());
        let nodes = Arc::new(Nodes::new(&config.nodes, Arc::clone(&metrics)));
        let slot = PolicySlot::new(
            policy,
            config.policy,
            config.policy_config,
            config.policy_fixtures,
            Arc::clone(&metrics),
        );
        let policy = Arc::new(match (shadow, config.shadow_policy) {
            (Some(shadow), Some(source)) => slot.with_shadow(shadow, source),
            _ => slot,
        });
        let settings = &config.cluster;
        let store: Arc<dyn Store> = if settings.etcd.is_empty() {
            Arc::new(LocalStore::default())
        } else {
            Arc::new(EtcdStore::new(settings.etcd.clone(), settings.ca.as_ref()))
        };
        let cluster = Arc::new(Cluster::new(
            store,
            &settings.name,
            &settings.replica,
            settings.timeout,
            Arc::clone(&metrics),
        ));
        let info = policy.current().info().clone();
        cluster.set_policy(&info.name, &info.sha256);
        let engine = Engine::new(
            Arc::clone(&nodes),
            Arc::clone(&policy),
            Arc::clone(&metrics),
            recorder.map(Arc::new),
            config.get_payload,
            Arc::clone(&cluster),
        );
        let payloads = engine.payloads();
        let endpoint = Endpoint {
            verifier: Verifier::new(&config.cl_secret),
            max_body: config.max_body,
            body_timeout: config.body_timeout,
            engine,
        };
        Arc::new(App {
            endpoint: Arc::new(endpoint),
            nodes,
            policy,
            metrics,
            payloads,
            cluster,
            admin_token,
            health_interval: config.health_interval,
            node_defaults: config.node_defaults,
            added_secrets: config.added_secrets,
        })
    }

    /// Reloads the `--policy` file; with `announce`, the other replicas reload theirs too.
    pub async fn reload_policy(&self, announce: bool) -> Result<Arc<dyn Policy>, ReloadError> {
        let policy = self.policy.reload().await?;
        let info = policy.info();
        self.cluster.set_policy(&info.name, &info.sha256);
        if announce {
            self.cluster.announce(Change::ReloadPolicy).await;
        }
        Ok(policy)
    }

    /// Applies the changes other replicas make through their admin API, as they come, until
    /// the runtime stops.
    pub async fn follow_cluster(self: Arc<Self>) {
        let (apply, mut changes) = mpsc::unbounded_channel();
        let applying = async {
            while let Some(change) = changes.recv().await {
                self.apply(change).await;
            }
        };
        tokio::join!(self.cluster.follow(apply), applying);
    }

    /// Applies a change another replica made (by URL: indexes are per replica).
    async fn apply(&self, change: Change) {
        let index_of = |url: &str| {
            self.nodes
                .snapshot()
                .iter()
                .position(|n| n.url == url)
                .ok_or_else(|| format!("no node {url} here"))
        };
        fn done<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<(), String> {
            result.map(drop).map_err(|e| e.to_string())
        }
        let applied = match &change {
            Change::AddNodes { specs } => {
                let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
                done(self.add_nodes(&specs))
            }
            Change::RemoveNode { url } => index_of(url).and_then(|i| done(self.nodes.remove(i))),
            Change::Drain { url, on } => index_of(url).and_then(|i| done(self.nodes.drain(i, *on))),
            Change::ReloadPolicy => done(self.reload_policy(false).await),
        };
        match applied {
            Ok(()) => tracing::info!(?change, "applied a change made on another replica"),
            Err(error) => {
                tracing::warn!(?change, %error, "a change made on another replica was not applied here")
            }
        }
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

    /// Adds nodes from executionbackup specs (`URL[#jwt-secret=..][#timeout=..][#do-not-use]`),
    /// all or none: every spec is parsed and its secret checked before any is added. Starts
    /// their health loops.
    pub fn add_nodes(&self, specs: &[&str]) -> Result<Vec<Arc<Node>>, AddNodeError> {
        let mut configs = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let config = NodeConfig::parse(spec, &self.node_defaults)
                .map_err(|e| AddNodeError::Spec(format!("node {i}: {e}")))?;
            self.added_secrets
                .check_source(&config)
                .map_err(AddNodeError::Secret)?;
            configs.push(config);
        }
        let shared_with = (!self.added_secrets.shared).then_some(self.added_secrets.cl);
        let added = self.nodes.add_all(&configs, shared_with)?;
        for node in &added {
            self.watch(Arc::clone(node));
        }
        Ok(added)
    }
}
