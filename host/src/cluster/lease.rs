//! The leader lease: one replica at a time moves the ELs' forkchoice, so that several CLs
//! sharing the ELs through their own replicas do not make it flip-flop.
//!
//! The leader holds a lease of [`LEASE_TTL`] in the store, renewed every resync tick while its
//! CL is calling, with the head it last drove as the lease's record. A follower forwards a
//! forkchoiceUpdated only for that head (builds included: they are made on the leader's head);
//! any other head is answered from the shared verdicts and not forwarded, and the follower asks
//! for the lease. A leader whose CL is quiet hands it over to a replica that asks; a follower
//! whose CL calls while no replica holds the lease takes it on that call. So a CL failing over
//! to another replica (and back) is served within a lease period. With the store down every
//! replica acts alone (liveness before coordination).

use super::{decode, encode, Cluster};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The leader lease's life: a leader that stops renewing is replaced within it.
pub const LEASE_TTL: Duration = Duration::from_secs(2);
/// A replica whose CL made no state-changing call for this long (a slot) stops renewing the
/// lease, so that a replica whose CL still calls can take it.
pub const CL_QUIET: Duration = Duration::from_secs(12);
/// A leader whose CL made no state-changing call for this long hands the lease over at once
/// when another replica asks for it (that replica's CL calls about a head this one does not
/// drive: one CL moved from this replica to that one).
pub const HANDOVER_QUIET: Duration = LEASE_TTL;
/// How long a follower's ask for the lease stands (between this and twice it).
const ASK_TTL: Duration = LEASE_TTL;

/// The lease's record: who leads, and the head it last drove the ELs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leader {
    /// The leading replica's name.
    pub replica: String,
    /// The head of its last forwarded forkchoiceUpdated.
    pub head: Option<String>,
}

/// Who leads, as this replica last learnt it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lead {
    /// This replica holds the lease.
    Ours,
    /// Another replica does.
    Other(Leader),
    /// The store did not answer: this replica acts alone.
    Unknown,
}

/// This replica's side of the lease.
pub(super) struct LeaseState {
    /// Who holds the lease in the store: the replica's name and this process's incarnation, so a
    /// restarted replica does not take over the lease of the process it replaces.
    holder: String,
    /// When this replica's CL last made a state-changing call.
    called: Option<Instant>,
    /// When this replica last asked the leader for the lease.
    asked: Option<Instant>,
    /// The head this replica last forwarded a forkchoiceUpdated for.
    driven: Option<String>,
    /// The last answer of the store, and when it came.
    lead: Lead,
    renewed: Option<Instant>,
}

impl LeaseState {
    pub(super) fn new(replica: &str) -> LeaseState {
        static INCARNATION: AtomicU64 = AtomicU64::new(0);
        let n = INCARNATION.fetch_add(1, Ordering::Relaxed);
        LeaseState {
            holder: format!("{replica}#{}.{n}", std::process::id()),
            called: None,
            asked: None,
            driven: None,
            lead: Lead::Unknown,
            renewed: None,
        }
    }
}

impl Cluster {
    /// Notes a state-changing call from this replica's CL (the lease is renewed while they come).
    pub fn called(&self) {
        self.lease().called = Some(Instant::now());
    }

    /// Whether this replica may forward a forkchoiceUpdated for `head`: it leads (taking a free
    /// lease now), the leader drives `head` already, or the store does not answer.
    pub async fn may_drive(&self, head: &str) -> bool {
        let fresh = {
            let lease = self.lease();
            let recent = lease.renewed.is_some_and(|at| at.elapsed() < LEASE_TTL / 2);
            (lease.lead == Lead::Ours && recent).then_some(Lead::Ours)
        };
        let lead = match fresh {
            Some(lead) => lead,
            None => self.lead().await,
        };
        match lead {
            Lead::Ours | Lead::Unknown => true,
            Lead::Other(leader) => leader
                .head
                .is_some_and(|driven| driven.eq_ignore_ascii_case(head)),
        }
    }

    /// Notes that this replica forwarded a forkchoiceUpdated for `head`; a leader publishes its
    /// new head at once.
    pub fn drove(self: &Arc<Self>, head: &str) {
        let publish = {
            let mut lease = self.lease();
            let changed = lease.driven.as_deref() != Some(head);
            if changed {
                lease.driven = Some(head.to_owned());
            }
            changed && lease.lead == Lead::Ours
        };
        if publish {
            let cluster = Arc::clone(self);
            tokio::spawn(async move { cluster.lead().await });
        }
    }

    /// Asks the leader for the lease: this replica's CL calls about a head the leader does not
    /// drive (at most once per half [`ASK_TTL`]).
    pub async fn ask_to_lead(&self) {
        {
            let mut lease = self.lease();
            if lease.asked.is_some_and(|at| at.elapsed() < ASK_TTL / 2) {
                return;
            }
            lease.asked = Some(Instant::now());
        }
        let key = self.key("leader", "ask");
        let value = self.replica.clone().into_bytes();
        let put = self.store.put(key, value, ASK_TTL);
        // Not queued when the store is down: an ask is worth nothing later.
        let _ = self.bounded("ask", put).await;
    }

    /// Renews (or takes) the lease while this replica's CL calls; lets it lapse when the CL is
    /// quiet, and hands it over when its CL is quiet and another replica asks for it.
    pub(super) async fn renew(&self) {
        let (quiet, ours) = {
            let lease = self.lease();
            let quiet = lease.called.map_or(Duration::MAX, |at| at.elapsed());
            (quiet, lease.lead == Lead::Ours)
        };
        if ours && quiet >= HANDOVER_QUIET {
            let ask = self.store.get(self.key("leader", "ask"));
            if let Ok(Some(asker)) = self.bounded("ask", ask).await {
                if asker != self.replica.as_bytes() {
                    let asker = String::from_utf8_lossy(&asker).into_owned();
                    tracing::info!(%asker, "this replica's CL is quiet and another replica's calls: handing the leader lease over");
                    self.resign().await;
                    return;
                }
            }
        }
        // A lease held is renewed through the CL's pauses; a free one is taken on the tick only
        // while the CL calls (so that one handed over is not taken back).
        if quiet < HANDOVER_QUIET || (ours && quiet < CL_QUIET) {
            self.lead().await;
            return;
        }
        let mut lease = self.lease();
        if lease.lead == Lead::Ours {
            tracing::info!(
                "no call from this replica's CL for a slot: letting the leader lease lapse"
            );
            lease.lead = Lead::Unknown;
            lease.renewed = None;
            self.metrics.cluster_leader.set(0);
        }
    }

    /// Who leads now: one bounded store call that keeps this replica's lease, takes a free one,
    /// or reads the leader's record.
    async fn lead(&self) -> Lead {
        let (holder, record) = {
            let lease = self.lease();
            let record = Leader {
                replica: self.replica.clone(),
                head: lease.driven.clone(),
            };
            (lease.holder.clone(), encode(&record))
        };
        let key = self.key("leader", "lease");
        let held = self
            .bounded("hold", self.store.hold(key, holder, record, LEASE_TTL))
            .await;
        let lead = match held {
            Ok(None) => Lead::Ours,
            Ok(Some(record)) => decode::<Leader>(&record).map_or(Lead::Unknown, Lead::Other),
            Err(_) => Lead::Unknown,
        };
        let mut lease = self.lease();
        if (lease.lead == Lead::Ours) != (lead == Lead::Ours) {
            match &lead {
                Lead::Ours => tracing::info!("this replica leads: its CL drives the ELs"),
                Lead::Other(leader) => {
                    tracing::warn!(leader = %leader.replica, "another replica leads")
                }
                Lead::Unknown => tracing::warn!("lease unknown: acting alone"),
            }
        }
        self.metrics
            .cluster_leader
            .set(i64::from(lead == Lead::Ours));
        lease.renewed = (lead == Lead::Ours).then(Instant::now);
        lease.lead = lead.clone();
        lead
    }

    /// Gives up the lease if this replica holds it (on shutdown: another replica whose CL
    /// calls takes it at once instead of after [`LEASE_TTL`]).
    pub async fn resign(&self) {
        let holder = {
            let mut lease = self.lease();
            if lease.lead != Lead::Ours {
                return;
            }
            lease.lead = Lead::Unknown;
            lease.renewed = None;
            lease.holder.clone()
        };
        self.metrics.cluster_leader.set(0);
        let key = self.key("leader", "lease");
        if self
            .bounded("release", self.store.release(key, holder))
            .await
            .is_ok()
        {
            tracing::info!("leader lease released");
        }
    }

    /// The leader as last learnt: its name (this replica's when it leads).
    pub(super) fn leader(&self) -> Option<String> {
        match &self.lease().lead {
            Lead::Ours => Some(self.replica.clone()),
            Lead::Other(leader) => Some(leader.replica.clone()),
            Lead::Unknown => None,
        }
    }

    /// Who this process is in the store's leases and records.
    pub(super) fn holder(&self) -> String {
        self.lease().holder.clone()
    }

    /// Whether this replica holds the lease, as last learnt.
    pub(super) fn leads(&self) -> bool {
        self.lease().lead == Lead::Ours
    }

    fn lease(&self) -> std::sync::MutexGuard<'_, LeaseState> {
        self.lease.lock().unwrap_or_else(|p| p.into_inner())
    }
}
