//! The store of a standalone eb (and of unit tests): an in-process map with expiring keys. Its
//! futures do their work when polled, as a remote store's do: one dropped unpolled wrote nothing.
//! Every write is numbered (the store's revision) and sent to its watchers.

use super::{Store, StoreError, StoreFuture, StoreInfo};
use futures_util::future::{self, FutureExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

/// Keys kept at most; past it, expired keys are dropped, then the earliest-expiring ones.
pub const CAPACITY: usize = 32_768;

/// Writes a watcher may fall behind by before it misses some (and watches again).
const WATCH_BACKLOG: usize = 1024;

/// An in-process map key → (value, expiry), the leases key → (holder, record, expiry), and the
/// writes as watchers see them.
pub struct LocalStore {
    entries: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
    leases: Mutex<HashMap<String, Lease>>,
    revision: AtomicU64,
    writes: broadcast::Sender<(u64, String, Vec<u8>)>,
}

impl Default for LocalStore {
    fn default() -> LocalStore {
        LocalStore {
            entries: Mutex::default(),
            leases: Mutex::default(),
            revision: AtomicU64::new(0),
            writes: broadcast::channel(WATCH_BACKLOG).0,
        }
    }
}

/// A held lease: its holder, its record, and when it lapses.
type Lease = (String, Vec<u8>, Instant);

impl LocalStore {
    fn insert(
        &self,
        map: &mut HashMap<String, (Vec<u8>, Instant)>,
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    ) {
        let revision = self.revision.fetch_add(1, Ordering::Relaxed) + 1;
        // No watcher is no error.
        let _ = self.writes.send((revision, key.clone(), value.clone()));
        let now = Instant::now();
        if map.len() >= CAPACITY && !map.contains_key(&key) {
            map.retain(|_, (_, expiry)| *expiry > now);
            if map.len() >= CAPACITY {
                let earliest = map
                    .iter()
                    .min_by_key(|(_, (_, e))| *e)
                    .map(|(k, _)| k.clone());
                if let Some(earliest) = earliest {
                    map.remove(&earliest);
                }
            }
        }
        map.insert(key, (value, now + ttl));
    }

    fn live(map: &HashMap<String, (Vec<u8>, Instant)>, key: &str) -> Option<Vec<u8>> {
        map.get(key)
            .filter(|(_, expiry)| *expiry > Instant::now())
            .map(|(value, _)| value.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Vec<u8>, Instant)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for LocalStore {
    fn get(&self, key: String) -> StoreFuture<'_, Option<Vec<u8>>> {
        async move { Ok(Self::live(&self.lock(), &key)) }.boxed()
    }

    fn put(&self, key: String, value: Vec<u8>, ttl: Duration) -> StoreFuture<'_, ()> {
        async move {
            self.insert(&mut self.lock(), key, value, ttl);
            Ok(())
        }
        .boxed()
    }

    fn create(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<'_, Option<Vec<u8>>> {
        async move {
            let mut map = self.lock();
            let earlier = Self::live(&map, &key);
            if earlier.is_none() {
                self.insert(&mut map, key, value, ttl);
            }
            Ok(earlier)
        }
        .boxed()
    }

    fn hold(
        &self,
        key: String,
        holder: String,
        value: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<'_, Option<Vec<u8>>> {
        async move {
            let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            match leases.get(&key) {
                Some((other, record, expiry)) if *expiry > now && *other != holder => {
                    Ok(Some(record.clone()))
                }
                _ => {
                    leases.insert(key, (holder, value, now + ttl));
                    Ok(None)
                }
            }
        }
        .boxed()
    }

    fn list(&self, prefix: String) -> StoreFuture<'_, Vec<Vec<u8>>> {
        async move {
            let now = Instant::now();
            let map = self.lock();
            let mut live: Vec<_> = map
                .iter()
                .filter(|(key, (_, expiry))| key.starts_with(&prefix) && *expiry > now)
                .collect();
            live.sort_by(|a, b| a.0.cmp(b.0));
            Ok(live
                .into_iter()
                .map(|(_, (value, _))| value.clone())
                .collect())
        }
        .boxed()
    }

    fn watch(
        &self,
        prefix: String,
        after: u64,
        sink: mpsc::UnboundedSender<(u64, Vec<u8>)>,
    ) -> StoreFuture<'_, ()> {
        let mut writes = self.writes.subscribe();
        async move {
            loop {
                match writes.recv().await {
                    Ok((revision, key, value)) => {
                        if revision > after && key.starts_with(&prefix) {
                            sink.send((revision, value))
                                .map_err(|_| StoreError::Unreachable("watcher gone".into()))?;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        return Err(StoreError::Refused(format!("watcher missed {n} writes")));
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(StoreError::Unreachable("store dropped".into()));
                    }
                }
            }
        }
        .boxed()
    }

    fn release(&self, key: String, holder: String) -> StoreFuture<'_, ()> {
        async move {
            let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
            if leases.get(&key).is_some_and(|(h, ..)| *h == holder) {
                leases.remove(&key);
            }
            Ok(())
        }
        .boxed()
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        future::ready(Ok(())).boxed()
    }

    fn describe(&self) -> StoreInfo {
        StoreInfo {
            kind: "local",
            endpoints: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn create_writes_once_and_keys_expire() {
        let store = LocalStore::default();
        let ttl = Duration::from_secs(10);
        assert_eq!(
            store.create("k".into(), b"a".to_vec(), ttl).await.ok(),
            Some(None)
        );
        assert_eq!(
            store.create("k".into(), b"b".to_vec(), ttl).await.ok(),
            Some(Some(b"a".to_vec())),
            "put-if-absent keeps the first value"
        );
        assert_eq!(store.get("k".into()).await.ok(), Some(Some(b"a".to_vec())));
        tokio::time::advance(ttl).await;
        assert_eq!(store.get("k".into()).await.ok(), Some(None), "expired");
        assert_eq!(
            store.create("k".into(), b"c".to_vec(), ttl).await.ok(),
            Some(None)
        );
        store.put("k".into(), b"d".to_vec(), ttl).await.ok();
        assert_eq!(store.get("k".into()).await.ok(), Some(Some(b"d".to_vec())));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_is_held_by_one_until_it_lapses() {
        let store = LocalStore::default();
        let ttl = Duration::from_secs(2);
        let hold = |holder: &str, record: &str| {
            store.hold("lead".into(), holder.into(), record.into(), ttl)
        };
        assert_eq!(hold("a", "a1").await.ok(), Some(None), "free: taken");
        assert_eq!(
            hold("b", "b1").await.ok(),
            Some(Some(b"a1".to_vec())),
            "held: the holder's record"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(hold("a", "a2").await.ok(), Some(None), "kept");
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(
            hold("b", "b1").await.ok(),
            Some(Some(b"a2".to_vec())),
            "kept from the renewal on, with its new record"
        );
        tokio::time::advance(ttl).await;
        assert_eq!(hold("b", "b1").await.ok(), Some(None), "lapsed: taken");
        assert_eq!(hold("a", "a3").await.ok(), Some(Some(b"b1".to_vec())));
        store.release("lead".into(), "a".into()).await.ok();
        assert_eq!(
            hold("a", "a3").await.ok(),
            Some(Some(b"b1".to_vec())),
            "only the holder releases it"
        );
        store.release("lead".into(), "b".into()).await.ok();
        assert_eq!(hold("a", "a3").await.ok(), Some(None), "released: taken");
    }

    #[tokio::test(start_paused = true)]
    async fn it_stays_bounded() {
        let store = LocalStore::default();
        for i in 0..CAPACITY + 10 {
            let ttl = Duration::from_secs(1 + i as u64);
            store.put(format!("k{i}"), Vec::new(), ttl).await.ok();
        }
        assert_eq!(store.lock().len(), CAPACITY);
        assert_eq!(
            store.get("k0".into()).await.ok(),
            Some(None),
            "earliest-expiring dropped"
        );
        let last = format!("k{}", CAPACITY + 9);
        assert_eq!(store.get(last).await.ok(), Some(Some(Vec::new())));
    }
}
