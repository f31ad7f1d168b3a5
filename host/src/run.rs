//! Start and stop: load the policy, bind both listeners, serve until a signal, then drain.

use crate::app::App;
use crate::config::{AdminAuth, AdminToken, Config};
use crate::policy::{LoadError, Policy, PolicySource, WasmPolicy};
use crate::record::Recorder;
use crate::serve::{serve, ConnLimits};
use crate::{admin, fd_limit, server};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long in-flight calls may take to finish after a shutdown signal.
pub const DRAIN: Duration = Duration::from_secs(10);

/// Why eb could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The policy was refused.
    #[error("policy {name} refused: {source}")]
    Policy {
        /// The policy's name.
        name: String,
        /// Why.
        source: LoadError,
    },
    /// The vote recording could not be opened.
    #[error("cannot open the vote recording {path}: {source}")]
    Record {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The admin token file could not be created.
    #[error("--admin-token: {0}")]
    AdminToken(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// eb with its listeners bound, ready to serve.
pub struct Bound {
    /// The application state.
    pub app: Arc<App>,
    engine: TcpListener,
    admin: TcpListener,
    engine_limits: ConnLimits,
    admin_limits: ConnLimits,
}

impl Bound {
    /// Loads the policy, builds the app, starts health checks and binds both listeners.
    pub async fn bind(config: Config) -> Result<Bound, StartError> {
        let load = |source: &PolicySource| {
            WasmPolicy::load(source, &config.policy_config).map_err(|e| StartError::Policy {
                name: source.name(),
                source: e,
            })
        };
        let policy = load(&config.policy)?;
        let shadow = match &config.shadow_policy {
            Some(source) => Some(Arc::new(load(source)?) as Arc<dyn Policy>),
            None => None,
        };
        let (listen, admin_addr) = (config.listen, config.admin);
        let open_files = fd_limit::raise();
        let (mut engine_limits, mut admin_limits) =
            (config.engine_connections, config.admin_connections);
        (engine_limits.max_connections, admin_limits.max_connections) = fd_limit::share(
            open_files,
            engine_limits.max_connections,
            admin_limits.max_connections,
        );
        if engine_limits.max_connections < config.engine_connections.max_connections {
            tracing::warn!(
                open_files,
                engine_connections = engine_limits.max_connections,
                asked = config.engine_connections.max_connections,
                "open-files limit too low for --max-connections: raise LimitNOFILE (ulimit -n)"
            );
        } else {
            tracing::info!(
                open_files,
                engine_connections = engine_limits.max_connections,
                admin_connections = admin_limits.max_connections,
                "connection limits"
            );
        }
        let bind = |what, addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { what, addr, source })
        };
        let engine = bind("engine API", listen).await?;
        let admin = bind("admin API", admin_addr).await?;
        let recorder = match &config.record_votes {
            None => None,
            Some(path) => Some(Recorder::open(path, config.record_max_bytes).map_err(
                |source| StartError::Record {
                    path: path.display().to_string(),
                    source,
                },
            )?),
        };
        let admin_token = match &config.admin_auth {
            AdminAuth::Token(token) => Some(token.clone()),
            AdminAuth::Open => None,
            AdminAuth::Create(path) => {
                let token = AdminToken::create(path).map_err(StartError::AdminToken)?;
                tracing::info!(path = %path.display(), "admin token created");
                Some(token)
            }
        };
        let app = App::new(config, admin_token, Arc::new(policy), shadow, recorder);
        app.start_health();
        Ok(Bound {
            app,
            engine,
            admin,
            engine_limits,
            admin_limits,
        })
    }

    /// The engine API's address.
    pub fn engine_addr(&self) -> SocketAddr {
        self.engine
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The admin API's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight calls finish
    /// (at most [`DRAIN`]).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (engine_addr, admin_addr) = (self.engine_addr(), self.admin_addr());
        let policy = self.app.policy.current();
        tracing::info!(
            engine = %engine_addr,
            admin = %admin_addr,
            nodes = self.app.nodes.snapshot().len(),
            policy = %policy.info().name,
            policy_sha256 = %policy.info().sha256,
            "eb listening"
        );
        let counted = self
            .app
            .nodes
            .snapshot()
            .iter()
            .filter(|n| !n.do_not_use)
            .count();
        if counted == 2 && !admin::ignores_behind(&policy.info().config) {
            tracing::info!(
                "two counted ELs: while one catches up (after an upgrade, a prune, a resync) its \
                 SYNCING ties the other's VALID and every answer is SYNCING, so the validator \
                 misses its duties; --policy-config behind=ignore lets the synced EL decide alone"
            );
        }
        #[cfg(unix)]
        reload_on_sighup(Arc::clone(&self.app));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let engine = serve(
            self.engine,
            server::router(Arc::clone(&self.app.endpoint)),
            self.engine_limits,
            "engine",
            stopped.clone(),
        );
        let admin = serve(
            self.admin,
            admin::router(Arc::clone(&self.app)),
            self.admin_limits,
            "admin",
            stopped,
        );
        // The cluster's resync (write-back, lease renewal) and its watch of the other
        // replicas' changes live as long as the servers: a replica that stops serving stops
        // leading.
        let resync = Arc::clone(&self.app.cluster).resync();
        let follow = Arc::clone(&self.app).follow_cluster();
        let servers = async {
            tokio::select! {
                _ = async { tokio::join!(engine, admin) } => {}
                () = resync => {}
                () = follow => {}
            }
        };
        tokio::pin!(servers);
        tokio::select! {
            () = &mut servers => return,
            () = shutdown => {}
        }
        tracing::info!("shutting down: no new requests, finishing in-flight calls");
        let _ = stop.send(true);
        if tokio::time::timeout(DRAIN, servers).await.is_err() {
            tracing::warn!("in-flight calls still running after {DRAIN:?}; exiting");
        }
        self.app.cluster.resign().await;
    }
}

/// Reloads the policy on every SIGHUP (the handler is installed before eb says it listens).
#[cfg(unix)]
fn reload_on_sighup(app: Arc<App>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload with POST /policy/reload");
        return;
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let _ = app.reload_policy(true).await;
        }
    });
}

/// A future that resolves on SIGINT or SIGTERM. The handlers are installed when this is called
/// (inside the runtime), not when the future is first polled, so a signal that comes right
/// after eb says it is listening is never missed.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                _ => {
                    tracing::warn!("cannot install signal handlers; stop eb with SIGKILL");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
