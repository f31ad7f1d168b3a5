//! Admin changes made on one replica (nodes added or removed, drains, policy reloads), shared
//! with the others through a watch: each replica writes what it changed under
//! `/<cluster>/change/`, watches that prefix, and hands the other replicas' changes to its app.

use super::{decode, encode, Cluster, StoreError, RESYNC_INTERVAL};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long an announced change is kept: a replica whose watch broke for less than this
/// misses none.
pub const CHANGE_TTL: Duration = Duration::from_secs(60);
/// A watch is opened again this often, from the last revision seen (a connection that died
/// silently costs at most this).
pub const WATCH_RENEW: Duration = Duration::from_secs(60);

/// A change to a replica's node set or policy, made through its admin API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// `POST /nodes`: the specs as given (secret files by path: the same path on every host).
    AddNodes {
        /// `URL[#jwt-secret=..][#timeout=..][#do-not-use]`.
        specs: Vec<String>,
    },
    /// `DELETE /nodes/{index}`, by URL (indexes are per replica).
    RemoveNode {
        /// The node's URL as `/status` shows it.
        url: String,
    },
    /// `POST /nodes/{index}/drain` (`on`) or `/resume`.
    Drain {
        /// The node's URL as `/status` shows it.
        url: String,
        /// Draining from now (`true`) or not.
        on: bool,
    },
    /// `POST /policy/reload` or SIGHUP: each replica reloads its own `--policy` file.
    ReloadPolicy,
}

/// A change as replicas share it.
#[derive(Serialize, Deserialize)]
struct Announced {
    replica: String,
    change: Change,
}

impl Cluster {
    /// Shares `change`, made on this replica, with the others (queued for write-back while the
    /// store is down).
    pub async fn announce(&self, change: Change) {
        let n = self.announced.fetch_add(1, Ordering::Relaxed);
        let holder = self.holder();
        let key = self.key("change", &format!("{holder}/{n}"));
        let announced = Announced {
            replica: self.replica.clone(),
            change,
        };
        self.put("announce", key, encode(&announced), CHANGE_TTL)
            .await;
    }

    /// Sends each change another replica announces to `apply`, until `apply` is closed;
    /// watches again after a break, from the last revision seen.
    pub async fn follow(&self, apply: mpsc::UnboundedSender<Change>) {
        let prefix = self.key("change", "");
        let mut after = 0;
        let mut broken = false;
        while !apply.is_closed() {
            let (sink, mut seen) = mpsc::unbounded_channel();
            let watch =
                tokio::time::timeout(WATCH_RENEW, self.store.watch(prefix.clone(), after, sink));
            let forward = async {
                while let Some((revision, value)) = seen.recv().await {
                    after = after.max(revision);
                    let Some(announced) = decode::<Announced>(&value) else {
                        tracing::warn!("a shared change does not parse; ignored");
                        continue;
                    };
                    if announced.replica != self.replica {
                        tracing::debug!(replica = %announced.replica, "a change from another replica");
                        let _ = apply.send(announced.change);
                    }
                }
            };
            let (watched, ()) = tokio::join!(watch, forward);
            match watched {
                // Renewed on time, or the watcher is gone.
                Err(_) | Ok(Ok(())) => broken = false,
                Ok(Err(e)) => {
                    if !broken {
                        tracing::warn!(error = %e, "watch of shared changes broke; watching again");
                    }
                    broken = true;
                    if matches!(e, StoreError::Refused(_)) {
                        // Compacted or canceled: from now on (what came between is missed).
                        after = 0;
                    }
                    tokio::time::sleep(RESYNC_INTERVAL).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::LocalStore;
    use crate::metrics::Metrics;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_change_made_on_one_replica_reaches_the_others_once() {
        let store = Arc::new(LocalStore::default());
        let metrics = Arc::new(Metrics::default());
        let replica = |name| {
            let store: Arc<dyn crate::cluster::Store> = Arc::clone(&store) as _;
            let bound = Duration::from_millis(50);
            Arc::new(Cluster::new(store, "t", name, bound, Arc::clone(&metrics)))
        };
        let (a, b) = (replica("a"), replica("b"));
        let (to_b, mut on_b) = mpsc::unbounded_channel();
        let (to_a, mut on_a) = mpsc::unbounded_channel();
        let follow_b = tokio::spawn({
            let b = Arc::clone(&b);
            async move { b.follow(to_b).await }
        });
        let follow_a = tokio::spawn({
            let a = Arc::clone(&a);
            async move { a.follow(to_a).await }
        });
        tokio::task::yield_now().await;
        let drain = Change::Drain {
            url: "http://el1/".into(),
            on: true,
        };
        a.announce(drain.clone()).await;
        a.announce(Change::ReloadPolicy).await;
        assert_eq!(on_b.recv().await, Some(drain));
        assert_eq!(on_b.recv().await, Some(Change::ReloadPolicy));
        assert!(
            on_a.try_recv().is_err(),
            "a replica's own change is not applied again"
        );

        // Renewed watches resume after the last revision: nothing twice, nothing lost.
        tokio::time::advance(WATCH_RENEW + Duration::from_secs(1)).await;
        tokio::task::yield_now().await;
        let add = Change::AddNodes {
            specs: vec!["http://el3/#jwt-secret=/s/el3.hex".into()],
        };
        a.announce(add.clone()).await;
        assert_eq!(on_b.recv().await, Some(add));
        assert!(on_b.try_recv().is_err());
        follow_a.abort();
        follow_b.abort();
    }
}
