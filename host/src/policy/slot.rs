//! The active policy and its reload: the `--policy` file validated (ABI, conformance cases, the
//! operator's `--policy-fixtures`) and swapped in atomically, or refused with the reason while
//! the active policy stays. Decisions already running keep the policy they started with.

use super::{LoadError, Policy, PolicySource, WasmPolicy};
use crate::metrics::Metrics;
use policy_sdk::fixture;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The module could not be loaded or failed validation.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The `--policy-fixtures` could not be read.
    #[error("cannot read the policy fixtures: {0}")]
    Fixtures(String),
    /// The module decides some of the `--policy-fixtures` differently.
    #[error("fails its fixtures:\n{0}")]
    FailsFixtures(String),
    /// The reload task itself failed.
    #[error("reload task failed: {0}")]
    Task(String),
}

/// Where the active policy comes from and where a reload looks.
pub struct PolicySlot {
    active: RwLock<Arc<dyn Policy>>,
    source: PolicySource,
    config: String,
    fixtures: Option<PathBuf>,
    metrics: Arc<Metrics>,
    shadow: Option<Box<PolicySlot>>,
}

impl PolicySlot {
    /// A slot holding `policy`, loaded from `source` with `config`.
    pub fn new(
        policy: Arc<dyn Policy>,
        source: PolicySource,
        config: String,
        fixtures: Option<PathBuf>,
        metrics: Arc<Metrics>,
    ) -> PolicySlot {
        PolicySlot {
            active: RwLock::new(policy),
            source,
            config,
            fixtures,
            metrics,
            shadow: None,
        }
    }

    /// This slot with a shadow policy (`--shadow-policy`, from `source`): it decides every
    /// ballot beside the active one and never answers; a reload reloads it too.
    pub fn with_shadow(mut self, shadow: Arc<dyn Policy>, source: PolicySource) -> PolicySlot {
        let metrics = Arc::clone(&self.metrics);
        let config = self.config.clone();
        self.shadow = Some(Box::new(PolicySlot::new(
            shadow, source, config, None, metrics,
        )));
        self
    }

    /// The shadow policy, if there is one.
    pub fn shadow(&self) -> Option<Arc<dyn Policy>> {
        self.shadow.as_ref().map(|slot| slot.current())
    }

    /// The embedded default policy, never reloaded (unit tests).
    #[cfg(test)]
    pub(crate) fn embedded(metrics: Arc<Metrics>) -> PolicySlot {
        let policy = WasmPolicy::load(&PolicySource::Embedded, "").expect("the default policy");
        PolicySlot::new(
            Arc::new(policy),
            PolicySource::Embedded,
            String::new(),
            None,
            metrics,
        )
    }

    /// The active policy.
    pub fn current(&self) -> Arc<dyn Policy> {
        Arc::clone(&self.active.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn set(&self, policy: Arc<dyn Policy>) {
        *self.active.write().unwrap_or_else(|p| p.into_inner()) = policy;
    }

    /// Reloads the `--policy` file, then the shadow's; on any failure that policy stays.
    pub async fn reload(&self) -> Result<Arc<dyn Policy>, ReloadError> {
        let active = self.reload_active().await;
        if let Some(shadow) = &self.shadow {
            // Its outcome is logged and counted; the answer is about the active policy.
            let _ = Box::pin(shadow.reload_active()).await;
        }
        active
    }

    async fn reload_active(&self) -> Result<Arc<dyn Policy>, ReloadError> {
        let (source, config) = (self.source.clone(), self.config.clone());
        let fixtures = self.fixtures.clone();
        let loaded = tokio::task::spawn_blocking(move || load_checked(&source, &config, fixtures))
            .await
            .map_err(|e| ReloadError::Task(e.to_string()))
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
                self.set(Arc::clone(&policy));
                Ok(policy)
            }
            Err(reason) => {
                tracing::warn!(%reason, "policy reload refused; the active policy stays");
                Err(reason)
            }
        }
    }
}

/// Loads a module and replays the operator's fixtures on it.
fn load_checked(
    source: &PolicySource,
    config: &str,
    fixtures: Option<PathBuf>,
) -> Result<WasmPolicy, ReloadError> {
    let policy = WasmPolicy::load(source, config)?;
    if let Some(dir) = fixtures {
        let cases = fixture::load(&[dir]).map_err(|e| ReloadError::Fixtures(e.to_string()))?;
        let report = fixture::run(&cases, |ballot| {
            let decision = policy.decide(ballot);
            decision
                .fault
                .map_or(Ok(decision.verdict), |f| Err(f.to_string()))
        });
        if !report.failures.is_empty() {
            return Err(ReloadError::FailsFixtures(report.to_string()));
        }
    }
    Ok(policy)
}
