//! The replicas of a cluster as each publishes itself: its name, eb version and active policy,
//! under `/<cluster>/replica/<name>` with a lease of [`REPLICA_TTL`] kept while it runs. Each
//! replica lists them every [`REPLICA_EVERY`] resync ticks, for `/status`, and warns when their
//! policies differ.

use super::{decode, encode, Cluster};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A replica's record outlives its last renewal by this much at most.
pub const REPLICA_TTL: Duration = Duration::from_secs(6);
/// Records are renewed and listed every this many resync ticks (2 s).
pub const REPLICA_EVERY: u32 = 4;

/// A replica as `/status.cluster.replicas` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    /// Its name.
    pub replica: String,
    /// Its eb version.
    pub version: String,
    /// Its active policy's name.
    pub policy: String,
    /// Its active policy's SHA-256 (hex).
    pub policy_sha256: String,
}

/// This replica's record and the replicas as last listed.
pub(super) struct Roster {
    own: ReplicaInfo,
    listed: Vec<ReplicaInfo>,
}

impl Roster {
    pub(super) fn new(replica: &str) -> Roster {
        let own = ReplicaInfo {
            replica: replica.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ..ReplicaInfo::default()
        };
        Roster {
            own,
            listed: Vec::new(),
        }
    }
}

impl Cluster {
    /// Notes the policy now active on this replica (published with its next renewal).
    pub fn set_policy(&self, name: &str, sha256: &str) {
        let mut roster = self.roster();
        roster.own.policy = name.to_owned();
        roster.own.policy_sha256 = sha256.to_owned();
    }

    /// Renews this replica's record and lists the others'.
    pub(super) async fn publish_replica(&self) {
        let own = self.roster().own.clone();
        let key = self.key("replica", &self.replica);
        let hold = self
            .store
            .hold(key, self.holder(), encode(&own), REPLICA_TTL);
        if let Ok(Some(other)) = self.bounded("hold", hold).await {
            let other = decode::<ReplicaInfo>(&other).unwrap_or_default();
            tracing::warn!(replica = %other.replica,
                "another eb process holds this replica's name: give each replica its own --replica");
        }
        let Ok(listed) = self
            .bounded("list", self.store.list(self.key("replica", "")))
            .await
        else {
            return;
        };
        let listed: Vec<ReplicaInfo> = listed.iter().filter_map(|v| decode(v)).collect();
        let mut roster = self.roster();
        let was = policy_mismatch(&roster.listed);
        if policy_mismatch(&listed) && !was {
            let policies: Vec<String> = listed
                .iter()
                .map(|r| format!("{}={}", r.replica, short(&r.policy_sha256)))
                .collect();
            tracing::warn!(policies = %policies.join(" "),
                "the replicas run different policies: their answers may differ");
        }
        roster.listed = listed;
    }

    /// The replicas as last listed (this one alone until the first listing).
    pub fn replicas(&self) -> Vec<ReplicaInfo> {
        let roster = self.roster();
        if roster.listed.is_empty() {
            return vec![roster.own.clone()];
        }
        roster.listed.clone()
    }

    fn roster(&self) -> std::sync::MutexGuard<'_, Roster> {
        self.roster.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether the replicas listed run more than one policy.
pub fn policy_mismatch(replicas: &[ReplicaInfo]) -> bool {
    replicas
        .windows(2)
        .any(|pair| pair[0].policy_sha256 != pair[1].policy_sha256)
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}
