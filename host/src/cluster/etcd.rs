//! The etcd store, over etcd's v3 JSON gateway (`POST /v3/kv/range`, `/v3/kv/put`,
//! `/v3/kv/txn`, `/v3/lease/*`, and `/v3/watch`, whose answer is a stream of JSON lines; keys
//! and values base64).
//!
//! The gateway rather than gRPC: the `etcd-client` crate needs `protoc` at build time, which a
//! fresh machine running `cargo run` does not have, and the gateway reuses eb's reqwest and
//! rustls. Endpoints are tried in order from the last one that answered. Expiring keys share
//! one lease per TTL, granted again once half its life is gone (one grant per half-TTL instead
//! of one per key), so a key lives between its TTL and twice that. A held lease (the leader's)
//! is a lease of its own, kept alive by `/v3/lease/keepalive` while its holder renews it.

use super::{Store, StoreError, StoreFuture, StoreInfo};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use futures_util::future::FutureExt;
use reqwest::{Certificate, Client};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// One request's limit inside the store (the cluster stage bounds answers much tighter).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// etcd, through its JSON gateway at `endpoints`.
pub struct EtcdStore {
    client: Client,
    endpoints: Vec<String>,
    preferred: AtomicUsize,
    leases: Mutex<HashMap<u64, (i64, Instant)>>,
    held: Mutex<HashMap<String, Held>>,
}

/// A lease this store holds: who holds it, etcd's lease id, and the record last written.
#[derive(Clone)]
struct Held {
    holder: String,
    lease: i64,
    record: Vec<u8>,
}

#[derive(Deserialize, Default)]
struct RangeResponse {
    #[serde(default)]
    kvs: Vec<KeyValue>,
}

#[derive(Deserialize)]
struct KeyValue {
    #[serde(default)]
    value: String,
    #[serde(default)]
    mod_revision: Option<String>,
}

/// One line of a watch's answer.
#[derive(Deserialize)]
struct WatchLine {
    #[serde(default)]
    result: Option<WatchResult>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WatchResult {
    #[serde(default)]
    canceled: bool,
    #[serde(default)]
    cancel_reason: String,
    #[serde(default)]
    events: Vec<WatchEvent>,
}

#[derive(Deserialize)]
struct WatchEvent {
    /// `PUT` is etcd's default and left out of the JSON; `DELETE` is named.
    #[serde(rename = "type", default)]
    kind: Option<String>,
    kv: Option<KeyValue>,
}

#[derive(Deserialize)]
struct KeepAlive {
    #[serde(default)]
    result: Option<LeaseTtl>,
}

/// A keepalive's answer: `TTL` is missing once the lease is gone.
#[derive(Deserialize)]
struct LeaseTtl {
    #[serde(rename = "TTL", default)]
    ttl: Option<String>,
}

#[derive(Deserialize)]
struct TxnResponse {
    #[serde(default)]
    succeeded: bool,
    #[serde(default)]
    responses: Vec<ResponseOp>,
}

#[derive(Deserialize)]
struct ResponseOp {
    #[serde(default, alias = "responseRange")]
    response_range: Option<RangeResponse>,
}

#[derive(Deserialize)]
struct LeaseGrant {
    #[serde(rename = "ID")]
    id: String,
}

#[derive(Deserialize)]
struct GatewayError {
    #[serde(default)]
    message: String,
}

impl EtcdStore {
    /// The store at `endpoints` (`http://` or `https://` client URLs; `ca`: the only CA an
    /// https endpoint's certificate may chain to).
    pub fn new(endpoints: Vec<String>, ca: Option<&Certificate>) -> EtcdStore {
        let client = crate::upstream::client(ca);
        EtcdStore {
            client,
            endpoints: endpoints
                .into_iter()
                .map(|e| e.trim_end_matches('/').to_owned())
                .collect(),
            preferred: AtomicUsize::new(0),
            leases: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
        }
    }

    /// POSTs `body` to `path` on the first endpoint that answers, from the preferred one.
    async fn post<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        body: Value,
    ) -> Result<T, StoreError> {
        let text = self
            .first_answer(path, &body.to_string(), true, |answer| answer.bytes())
            .await?;
        serde_json::from_slice(&text).map_err(|e| StoreError::Malformed(e.to_string()))
    }

    /// POSTs `body` to `path` on each endpoint in turn from the preferred one, until one
    /// answers with success and `read` takes its answer: a member that cannot be reached, has
    /// no leader (a server error) or breaks off its answer leaves it to the next. With `whole`
    /// the exchange is bounded by [`REQUEST_TIMEOUT`]; without, only until the answer starts
    /// (a watch streams on).
    async fn first_answer<T, F, Fut>(
        &self,
        path: &str,
        body: &str,
        whole: bool,
        read: F,
    ) -> Result<T, StoreError>
    where
        F: Fn(reqwest::Response) -> Fut,
        Fut: std::future::Future<Output = Result<T, reqwest::Error>>,
    {
        let first = self.preferred.load(Ordering::Relaxed);
        let mut unreachable = Vec::new();
        for step in 0..self.endpoints.len() {
            let i = (first + step) % self.endpoints.len();
            let endpoint = &self.endpoints[i];
            let mut request = self
                .client
                .post(format!("{endpoint}{path}"))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_owned());
            if whole {
                request = request.timeout(REQUEST_TIMEOUT);
            }
            let response = match tokio::time::timeout(REQUEST_TIMEOUT, request.send()).await {
                Ok(Ok(response)) => response,
                Ok(Err(e)) => {
                    unreachable.push(format!("{endpoint}: {e}"));
                    continue;
                }
                Err(_) => {
                    unreachable.push(format!("{endpoint}: no answer within {REQUEST_TIMEOUT:?}"));
                    continue;
                }
            };
            let status = response.status();
            if !status.is_success() {
                let text = response.bytes().await.unwrap_or_default();
                let message = serde_json::from_slice::<GatewayError>(&text)
                    .map(|e| e.message)
                    .unwrap_or_else(|_| String::from_utf8_lossy(&text).chars().take(200).collect());
                if status.is_server_error() {
                    // A member without a leader or shutting down: the next may do better.
                    unreachable.push(format!("{endpoint}: {status} {message}"));
                    continue;
                }
                return Err(StoreError::Refused(format!("{status} {message}")));
            }
            match read(response).await {
                Ok(answer) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(answer);
                }
                Err(e) => unreachable.push(format!("{endpoint}: {e}")),
            }
        }
        Err(StoreError::Unreachable(unreachable.join("; ")))
    }

    /// A lease that keeps a key at least `ttl`.
    async fn lease(&self, ttl: Duration) -> Result<i64, StoreError> {
        let secs = ttl.as_secs().max(1);
        let now = Instant::now();
        let current = {
            let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
            leases.get(&secs).copied()
        };
        if let Some((id, granted)) = current {
            if now.duration_since(granted) < ttl {
                return Ok(id);
            }
        }
        let id = self.grant(2 * secs).await?;
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(secs, (id, now));
        Ok(id)
    }

    /// A new lease of `secs` seconds.
    async fn grant(&self, secs: u64) -> Result<i64, StoreError> {
        let grant: LeaseGrant = self
            .post("/v3/lease/grant", json!({ "TTL": secs.to_string() }))
            .await?;
        grant
            .id
            .parse()
            .map_err(|_| StoreError::Malformed(format!("lease ID {:?}", grant.id)))
    }

    /// Forgets the lease for `ttl` after a failed write: it may be gone (expired while etcd had
    /// no quorum, or etcd's data was reset), and the next write grants a new one.
    fn forget_lease(&self, ttl: Duration) {
        let secs = ttl.as_secs().max(1);
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&secs);
    }

    async fn put_with_lease(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let lease = self.lease(ttl).await?;
        self.put_on(key, &value, lease)
            .await
            .inspect_err(|_| self.forget_lease(ttl))
    }

    /// Writes `value` at `key`, kept while `lease` lives.
    async fn put_on(&self, key: String, value: &[u8], lease: i64) -> Result<(), StoreError> {
        let body = json!({ "key": B64.encode(key), "value": B64.encode(value), "lease": lease.to_string() });
        self.post::<Value>("/v3/kv/put", body).await.map(|_| ())
    }

    async fn create_with_lease(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let lease = self.lease(ttl).await?;
        self.create_on(key, &value, lease)
            .await
            .inspect_err(|_| self.forget_lease(ttl))
    }

    /// Writes `value` at `key` (kept while `lease` lives) unless the key exists: `None` when
    /// written, else the value already there.
    async fn create_on(
        &self,
        key: String,
        value: &[u8],
        lease: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let key = B64.encode(key);
        let txn = json!({
            "compare": [{ "key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0" }],
            "success": [{ "request_put": { "key": key, "value": B64.encode(value), "lease": lease.to_string() } }],
            "failure": [{ "request_range": { "key": key } }],
        });
        let answer: TxnResponse = self.post("/v3/kv/txn", txn).await?;
        if answer.succeeded {
            return Ok(None);
        }
        let earlier = answer
            .responses
            .into_iter()
            .find_map(|r| r.response_range)
            .and_then(|r| r.kvs.into_iter().next());
        match earlier {
            Some(kv) => decode(&kv.value).map(Some),
            // The key expired between the compare and the range: nothing is there now.
            None => Ok(None),
        }
    }

    /// [`Store::hold`]: a lease held is kept alive, or its record rewritten when it changed; a
    /// free one is taken with a lease of its own.
    async fn hold_lease(
        &self,
        key: String,
        holder: String,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mine = self
            .held()
            .get(&key)
            .filter(|held| held.holder == holder)
            .cloned();
        if let Some(held) = mine {
            // A new record is written on the lease (which fails once etcd no longer has it);
            // an unchanged one is kept alive.
            let kept = if held.record == value {
                self.keep_alive(held.lease).await?
            } else {
                match self.put_on(key.clone(), &value, held.lease).await {
                    Ok(()) => {
                        let record = value;
                        self.held().insert(key, Held { record, ..held });
                        return Ok(None);
                    }
                    Err(StoreError::Refused(_)) => false,
                    Err(e) => return Err(e),
                }
            };
            if kept {
                return Ok(None);
            }
            self.held().remove(&key);
        }
        if let Some(record) = self.range(key.clone()).await? {
            return Ok(Some(record));
        }
        let lease = self.grant(ttl.as_secs().max(1)).await?;
        let earlier = self.create_on(key.clone(), &value, lease).await?;
        if earlier.is_none() {
            let held = Held {
                holder,
                lease,
                record: value,
            };
            self.held().insert(key, held);
        }
        Ok(earlier)
    }

    /// Keeps `lease` alive one more TTL: `false` when etcd no longer has it.
    async fn keep_alive(&self, lease: i64) -> Result<bool, StoreError> {
        let answer: KeepAlive = self
            .post("/v3/lease/keepalive", json!({ "ID": lease.to_string() }))
            .await?;
        let ttl = answer.result.and_then(|r| r.ttl);
        Ok(ttl
            .and_then(|t| t.parse::<i64>().ok())
            .is_some_and(|t| t > 0))
    }

    /// [`Store::list`]: one range over the prefix.
    async fn list_prefix(&self, prefix: String) -> Result<Vec<Vec<u8>>, StoreError> {
        let body =
            json!({ "key": B64.encode(&prefix), "range_end": B64.encode(prefix_end(&prefix)) });
        let answer: RangeResponse = self.post("/v3/kv/range", body).await?;
        answer.kvs.iter().map(|kv| decode(&kv.value)).collect()
    }

    /// [`Store::watch`]: one `/v3/watch` stream from the first endpoint that answers, read
    /// line by line.
    async fn watch_prefix(
        &self,
        prefix: String,
        after: u64,
        sink: mpsc::UnboundedSender<(u64, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let mut create =
            json!({ "key": B64.encode(&prefix), "range_end": B64.encode(prefix_end(&prefix)) });
        if after > 0 {
            create["start_revision"] = json!((after + 1).to_string());
        }
        let body = json!({ "create_request": create }).to_string();
        let mut response = self
            .first_answer("/v3/watch", &body, false, |answer| {
                std::future::ready(Ok::<_, reqwest::Error>(answer))
            })
            .await?;
        let mut buffer = Vec::new();
        loop {
            let chunk = response
                .chunk()
                .await
                .map_err(|e| StoreError::Unreachable(format!("watch: {e}")))?
                .ok_or_else(|| StoreError::Unreachable("watch ended".into()))?;
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let line: WatchLine = serde_json::from_slice(&line)
                    .map_err(|e| StoreError::Malformed(format!("watch line: {e}")))?;
                if let Some(error) = line.error {
                    return Err(StoreError::Refused(format!("watch: {error}")));
                }
                let Some(result) = line.result else { continue };
                if result.canceled {
                    return Err(StoreError::Refused(format!(
                        "watch canceled: {}",
                        result.cancel_reason
                    )));
                }
                for event in result.events {
                    let Some(kv) = event.kv.filter(|_| event.kind.is_none()) else {
                        continue;
                    };
                    let revision = kv
                        .mod_revision
                        .as_deref()
                        .and_then(|r| r.parse().ok())
                        .unwrap_or(0);
                    let value = decode(&kv.value)?;
                    if sink.send((revision, value)).is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn range(&self, key: String) -> Result<Option<Vec<u8>>, StoreError> {
        let answer: RangeResponse = self
            .post("/v3/kv/range", json!({ "key": B64.encode(key) }))
            .await?;
        answer
            .kvs
            .into_iter()
            .next()
            .map(|kv| decode(&kv.value))
            .transpose()
    }
}

/// The end of the key range of every key starting with `prefix` (its last byte plus one).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every key: etcd's "\0" range end.
    vec![0]
}

fn decode(value: &str) -> Result<Vec<u8>, StoreError> {
    B64.decode(value)
        .map_err(|e| StoreError::Malformed(format!("value not base64: {e}")))
}

impl Store for EtcdStore {
    fn get(&self, key: String) -> StoreFuture<'_, Option<Vec<u8>>> {
        self.range(key).boxed()
    }

    fn put(&self, key: String, value: Vec<u8>, ttl: Duration) -> StoreFuture<'_, ()> {
        self.put_with_lease(key, value, ttl).boxed()
    }

    fn create(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<'_, Option<Vec<u8>>> {
        self.create_with_lease(key, value, ttl).boxed()
    }

    fn hold(
        &self,
        key: String,
        holder: String,
        value: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<'_, Option<Vec<u8>>> {
        self.hold_lease(key, holder, value, ttl).boxed()
    }

    fn list(&self, prefix: String) -> StoreFuture<'_, Vec<Vec<u8>>> {
        self.list_prefix(prefix).boxed()
    }

    fn watch(
        &self,
        prefix: String,
        after: u64,
        sink: mpsc::UnboundedSender<(u64, Vec<u8>)>,
    ) -> StoreFuture<'_, ()> {
        self.watch_prefix(prefix, after, sink).boxed()
    }

    fn release(&self, key: String, holder: String) -> StoreFuture<'_, ()> {
        async move {
            let held = self.held().remove(&key);
            match held {
                Some(held) if held.holder == holder => {
                    let revoke = json!({ "ID": held.lease.to_string() });
                    self.post::<Value>("/v3/lease/revoke", revoke)
                        .await
                        .map(|_| ())
                }
                Some(other) => {
                    self.held().insert(key, other);
                    Ok(())
                }
                None => Ok(()),
            }
        }
        .boxed()
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        async move {
            // A linearizable read: answered only by a member with a quorum behind it.
            self.range("/eb-ping".to_owned()).await.map(|_| ())
        }
        .boxed()
    }

    fn describe(&self) -> StoreInfo {
        StoreInfo {
            kind: "etcd",
            endpoints: self.endpoints.clone(),
        }
    }
}
