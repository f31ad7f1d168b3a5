//! One EL's ordered queue of state-changing calls: delivered one at a time in the order the CL
//! sent them, bounded by calls and by bytes. When a hung EL's queue is full the oldest calls
//! make room for the new ones (each dropped call is answered at once as unreachable and
//! counted): an EL that comes back gets the newest calls still queued, in CL order, and
//! catches up on the rest from its peers. Calls it missed by refusing them are replayed to it
//! first when it answers again ([`replay`](crate::replay)).

use crate::replay::Missed;
use crate::upstream::{Reply, Timed, Transport};
use bytes::Bytes;
use policy_sdk::VoteKind;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

/// How much one queue may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Calls waiting, at most.
    pub calls: usize,
    /// Bytes of calls waiting, at most (a single larger call is still taken).
    pub bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            calls: 256,
            bytes: 64 << 20,
        }
    }
}

struct Job {
    kind: VoteKind,
    body: Bytes,
    timeout: Duration,
    reply: oneshot::Sender<Timed>,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    bytes: usize,
    dropped: u64,
    busy_since: Option<Instant>,
    busy_kind: Option<VoteKind>,
    closed: bool,
    replayed: u64,
    replay_dropped: u64,
    replay_pending: bool,
}

/// What a queue holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Depth {
    /// Calls waiting (not counting the one being delivered).
    pub calls: usize,
    /// Their bytes.
    pub bytes: usize,
    /// Calls dropped since start to make room.
    pub dropped: u64,
    /// How long the call being delivered has been out.
    pub busy_for: Option<Duration>,
    /// The kind of the call being delivered.
    pub busy_kind: Option<VoteKind>,
    /// Missed calls replayed to the EL since start.
    pub replayed: u64,
    /// Missed calls that could not be kept for replay (past the limits).
    pub replay_dropped: u64,
    /// Missed calls wait to be replayed: the next call's answer comes after them.
    pub replay_pending: bool,
}

/// The queue; [`deliver`] drains it.
pub struct CallQueue {
    state: Mutex<State>,
    ready: Notify,
    limits: Limits,
}

impl CallQueue {
    /// An empty queue with `limits`.
    pub fn new(limits: Limits) -> CallQueue {
        CallQueue {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            limits,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a `kind` call behind the ones waiting; returns the receiver of its reply and how
    /// many of the oldest calls were dropped to make room.
    pub fn push(
        &self,
        kind: VoteKind,
        body: Bytes,
        timeout: Duration,
    ) -> (oneshot::Receiver<Timed>, usize) {
        let (reply, receiver) = oneshot::channel();
        let mut state = self.lock();
        if state.closed {
            let _ = reply.send(unreachable("the node was removed"));
            return (receiver, 0);
        }
        let mut dropped = 0;
        while !state.jobs.is_empty()
            && (state.jobs.len() >= self.limits.calls
                || state.bytes + body.len() > self.limits.bytes)
        {
            if let Some(old) = state.jobs.pop_front() {
                state.bytes -= old.body.len();
                let _ = old
                    .reply
                    .send(unreachable("dropped: the call queue overflowed"));
                dropped += 1;
            }
        }
        state.dropped += dropped as u64;
        state.bytes += body.len();
        state.jobs.push_back(Job {
            kind,
            body,
            timeout,
            reply,
        });
        drop(state);
        self.ready.notify_one();
        (receiver, dropped)
    }

    /// What the queue holds now.
    pub fn depth(&self) -> Depth {
        let state = self.lock();
        Depth {
            calls: state.jobs.len(),
            bytes: state.bytes,
            dropped: state.dropped,
            busy_for: state.busy_since.map(|since| since.elapsed()),
            busy_kind: state.busy_kind,
            replayed: state.replayed,
            replay_dropped: state.replay_dropped,
            replay_pending: state.replay_pending,
        }
    }

    /// No more calls are taken; the worker stops once the waiting ones are delivered.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// The next call to deliver, or `None` once closed and empty.
    async fn next(&self) -> Option<Job> {
        loop {
            {
                let mut state = self.lock();
                if let Some(job) = state.jobs.pop_front() {
                    state.bytes -= job.body.len();
                    state.busy_since = Some(Instant::now());
                    state.busy_kind = Some(job.kind);
                    return Some(job);
                }
                if state.closed {
                    return None;
                }
            }
            // A push between the check and here left a permit: no wake-up is lost.
            self.ready.notified().await;
        }
    }

    fn done(&self) {
        let mut state = self.lock();
        state.busy_since = None;
        state.busy_kind = None;
    }
}

fn unreachable(why: &str) -> Timed {
    Timed {
        reply: Reply::Unreachable(why.to_owned()),
        latency: Duration::ZERO,
    }
}

/// The ordered worker: one call at a time, in queue order, until the queue is closed; each
/// answer read up to `max_answer` bytes. A call the EL never took ([`Reply::never_taken`]) is
/// answered as such and kept; before the next call, the kept ones are replayed to it in order
/// (their answers go to no one). When one is not taken again, the next call is not sent either:
/// it is answered with that refusal and kept behind them.
pub async fn deliver(queue: Arc<CallQueue>, transport: Arc<dyn Transport>, max_answer: usize) {
    let mut missed = Missed::new(queue.limits.calls, queue.limits.bytes);
    while let Some(job) = queue.next().await {
        let mut refused = None;
        while let Some(body) = missed.next() {
            let replay = transport.post(body.clone(), job.timeout, max_answer).await;
            if replay.reply.never_taken() {
                refused = Some(replay);
                break;
            }
            missed.delivered();
            queue.lock().replayed += 1;
        }
        // Still not taking calls: this one waits its turn behind the missed ones, so the EL
        // never gets a call before one the CL sent earlier.
        let timed = match refused {
            Some(refused) => refused,
            None => {
                transport
                    .post(job.body.clone(), job.timeout, max_answer)
                    .await
            }
        };
        if timed.reply.never_taken() {
            let dropped = missed.keep(job.kind, job.body);
            queue.lock().replay_dropped += dropped as u64;
        }
        queue.lock().replay_pending = !missed.is_empty();
        queue.done();
        let _ = job.reply.send(timed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        calls: 3,
        bytes: 10,
    };

    fn failure(timed: &Timed) -> Option<&str> {
        match &timed.reply {
            Reply::Unreachable(why) => Some(why),
            _ => None,
        }
    }

    #[tokio::test]
    async fn overflow_drops_the_oldest_by_count_and_by_bytes() {
        let queue = CallQueue::new(LIMITS);
        let second = Duration::from_secs(1);
        let (first, _) = queue.push(VoteKind::NewPayload, Bytes::from_static(b"aaaa"), second);
        let (_b, _) = queue.push(VoteKind::NewPayload, Bytes::from_static(b"bbbb"), second);
        assert_eq!(queue.depth().bytes, 8);
        let (_c, dropped) = queue.push(VoteKind::NewPayload, Bytes::from_static(b"cc"), second);
        assert_eq!(dropped, 0, "10 bytes fit");
        let (_d, dropped) = queue.push(VoteKind::NewPayload, Bytes::from_static(b"d"), second);
        assert_eq!(dropped, 1, "a fourth call exceeds the count");
        let first = first.await.expect("answered at once");
        assert_eq!(failure(&first), Some("dropped: the call queue overflowed"));
        let (_e, dropped) = queue.push(
            VoteKind::NewPayload,
            Bytes::from_static(b"eeeeeeee"),
            second,
        );
        assert_eq!(dropped, 2, "8 more bytes need two calls' room");
        let depth = queue.depth();
        assert_eq!((depth.calls, depth.bytes, depth.dropped), (2, 9, 3));
        let (_big, dropped) = queue.push(VoteKind::NewPayload, Bytes::from(vec![0; 64]), second);
        assert_eq!(dropped, 2, "a call larger than the limit empties the queue");
        assert_eq!(queue.depth().calls, 1, "and is still taken");
    }

    #[tokio::test]
    async fn a_closed_queue_refuses_new_calls() {
        let queue = CallQueue::new(LIMITS);
        queue.close();
        let (refused, _) = queue.push(
            VoteKind::NewPayload,
            Bytes::from_static(b"x"),
            Duration::from_secs(1),
        );
        let refused = refused.await.expect("answered");
        assert_eq!(failure(&refused), Some("the node was removed"));
        assert!(queue.next().await.is_none(), "the worker stops");
    }
}

#[cfg(test)]
mod replay_tests {
    use super::*;
    use futures_util::future::BoxFuture;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// An EL that refuses every connection while `down`, and keeps what it took.
    #[derive(Default)]
    struct Restarting {
        down: AtomicBool,
        taken: Mutex<Vec<Bytes>>,
    }

    impl Transport for Restarting {
        fn post(&self, body: Bytes, _: Duration, _: usize) -> BoxFuture<'static, Timed> {
            let reply = if self.down.load(Ordering::Relaxed) {
                Reply::Refused("connection failed: refused".into())
            } else {
                self.taken.lock().expect("taken").push(body);
                Reply::Body(Bytes::from_static(b"{}"))
            };
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                Timed {
                    reply,
                    latency: Duration::from_millis(2),
                }
            })
        }
    }

    /// Refuses its first `refusals` connections, then takes every call.
    struct Returning {
        refusals: std::sync::atomic::AtomicUsize,
        taken: Mutex<Vec<Bytes>>,
    }

    impl Transport for Returning {
        fn post(&self, body: Bytes, _: Duration, _: usize) -> BoxFuture<'static, Timed> {
            let refuse = self
                .refusals
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok();
            let reply = if refuse {
                Reply::Refused("connection failed: refused".into())
            } else {
                self.taken.lock().expect("taken").push(body);
                Reply::Body(Bytes::from_static(b"{}"))
            };
            Box::pin(async move {
                Timed {
                    reply,
                    latency: Duration::from_millis(1),
                }
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_el_back_between_a_refused_replay_and_the_next_call_still_gets_them_in_order() {
        // p1 is refused; before p2 its replay is refused too, and the EL is back right after:
        // p2 must not overtake p1.
        let el = Arc::new(Returning {
            refusals: std::sync::atomic::AtomicUsize::new(2),
            taken: Mutex::new(Vec::new()),
        });
        let queue = Arc::new(CallQueue::new(Limits::default()));
        tokio::spawn(deliver(Arc::clone(&queue), el.clone(), 1 << 20));
        for body in ["p1", "p2", "p3"] {
            let (reply, _) = queue.push(
                VoteKind::NewPayload,
                Bytes::from_static(body.as_bytes()),
                Duration::from_secs(1),
            );
            reply.await.expect("answered");
        }
        let taken: Vec<Bytes> = el.taken.lock().expect("taken").clone();
        assert_eq!(taken, ["p1", "p2", "p3"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_returning_el_gets_what_it_missed_in_order_before_the_next_call() {
        let el = Arc::new(Restarting::default());
        let queue = Arc::new(CallQueue::new(Limits::default()));
        tokio::spawn(deliver(Arc::clone(&queue), el.clone(), 1 << 20));
        let second = Duration::from_secs(1);
        let send = |kind, body: &'static str| {
            let (reply, _) = queue.push(kind, Bytes::from_static(body.as_bytes()), second);
            reply
        };
        assert!(matches!(
            send(VoteKind::NewPayload, "p1")
                .await
                .expect("answered")
                .reply,
            Reply::Body(_)
        ));
        el.down.store(true, Ordering::Relaxed);
        for (kind, body) in [
            (VoteKind::NewPayload, "p2"),
            (VoteKind::ForkchoiceUpdated, "f2"),
            (VoteKind::NewPayload, "p3"),
            (VoteKind::ForkchoiceUpdatedWithAttributes, "f3"),
        ] {
            let missed = send(kind, body).await.expect("answered");
            assert!(
                matches!(missed.reply, Reply::Refused(_)),
                "{body}: refused, answered as such"
            );
        }
        el.down.store(false, Ordering::Relaxed);
        assert!(matches!(
            send(VoteKind::NewPayload, "p4")
                .await
                .expect("answered")
                .reply,
            Reply::Body(_)
        ));
        let taken: Vec<Bytes> = el.taken.lock().expect("taken").clone();
        assert_eq!(
            taken,
            ["p1", "p2", "p3", "f3", "p4"],
            "missed payloads, the latest forkchoice, then the new call"
        );
        let depth = queue.depth();
        assert_eq!((depth.replayed, depth.replay_dropped), (3, 0));
    }
}
