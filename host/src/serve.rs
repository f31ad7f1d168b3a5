//! Serving one listener over HTTP/1.1 with hyper: a header timeout that also closes idle
//! keep-alive connections, at most a set number of connections at once, and a graceful drain
//! on shutdown.
//!
//! At the cap, a new connection takes the place of the oldest one that has not proven itself
//! (the engine API marks a connection [`Trust`]ed once a request on it passes the JWT check):
//! a flood of connections without a token cannot keep the CL out, and eb never holds more
//! sockets than the cap, so the file descriptors its ELs need stay free. Only when every
//! connection is trusted does a new one wait in the kernel's accept queue.

use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};
use tower::ServiceExt;

/// How one listener treats its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time a connection has to send a complete request head, counted from when it opens or
    /// from its last answer: slow headers and idle keep-alive connections are closed after it.
    pub header_timeout: Duration,
}

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Between two "connection limit reached" warnings of one listener.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// One connection's standing, in each of its requests' extensions.
#[derive(Debug, Default)]
pub struct Trust {
    trusted: AtomicBool,
    evict: Notify,
}

impl Trust {
    /// Marks the connection as proven (a request on it passed authentication): it is never
    /// evicted to make room.
    pub fn mark(&self) {
        self.trusted.store(true, Ordering::Relaxed);
    }

    fn is_trusted(&self) -> bool {
        self.trusted.load(Ordering::Relaxed)
    }
}

/// The open connections, oldest first.
#[derive(Default)]
struct Open {
    next_id: u64,
    list: VecDeque<(u64, Arc<Trust>)>,
}

impl Open {
    fn add(&mut self) -> (u64, Arc<Trust>) {
        let id = self.next_id;
        self.next_id += 1;
        let trust = Arc::new(Trust::default());
        self.list.push_back((id, Arc::clone(&trust)));
        (id, trust)
    }

    fn remove(&mut self, id: u64) {
        self.list.retain(|(other, _)| *other != id);
    }

    /// Closes the oldest connection not trusted yet; `false` when every one is trusted.
    fn evict_oldest_untrusted(&mut self) -> bool {
        let Some(at) = self.list.iter().position(|(_, t)| !t.is_trusted()) else {
            return false;
        };
        if let Some((_, trust)) = self.list.remove(at) {
            trust.evict.notify_one();
        }
        true
    }
}

/// Serves `router` on `listener` until `stop` turns true, then waits for the connections in
/// flight (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    what: &'static str,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let open = Arc::new(Mutex::new(Open::default()));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut last_warning: Option<tokio::time::Instant> = None;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        let stream = match stream {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(listener = what, error = %e, "accept failed; retrying");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if last_warning.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    last_warning = Some(tokio::time::Instant::now());
                    tracing::warn!(
                        listener = what,
                        max = limits.max_connections,
                        "connection limit reached: the oldest connections without a token \
                         make room (warned once a minute)"
                    );
                }
                lock(&open).evict_oldest_untrusted();
                // The evicted connection's slot once it is gone, or (none could be evicted)
                // the next one to close.
                let permit = tokio::select! {
                    permit = Arc::clone(&slots).acquire_owned() => permit.ok(),
                    _ = stop.wait_for(|s| *s) => None,
                };
                let Some(permit) = permit else { break };
                permit
            }
        };
        // Answers are small and latency-bound: no Nagle delay.
        let _ = stream.set_nodelay(true);
        let (id, trust) = lock(&open).add();
        let marked = Arc::clone(&trust);
        let service = router
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(Arc::clone(&marked));
                request
            });
        let connection = graceful
            .watch(http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)));
        let open = Arc::clone(&open);
        tokio::spawn(async move {
            tokio::select! {
                result = connection => {
                    if let Err(e) = result {
                        tracing::debug!(listener = what, error = %e, "connection closed");
                    }
                }
                () = trust.evict.notified() => {
                    tracing::debug!(listener = what, "connection evicted to make room");
                }
            }
            lock(&open).remove(id);
            drop(permit);
        });
    }
    graceful.shutdown().await;
}

fn lock(open: &Mutex<Open>) -> std::sync::MutexGuard<'_, Open> {
    open.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    use futures_util::FutureExt;

    #[test]
    fn the_oldest_untrusted_connection_makes_room() {
        let mut open = Open::default();
        let (a, first) = open.add();
        let (_, second) = open.add();
        let (_, third) = open.add();
        first.mark();
        assert!(open.evict_oldest_untrusted());
        let ids: Vec<u64> = open.list.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [0, 2], "the second (oldest untrusted) went");
        assert!(
            second.evict.notified().now_or_never().is_some(),
            "told to close"
        );
        assert!(
            third.evict.notified().now_or_never().is_none(),
            "left alone"
        );
        third.mark();
        assert!(!open.evict_oldest_untrusted(), "every one left is trusted");
        open.remove(a);
        assert_eq!(open.list.len(), 1);
    }
}
