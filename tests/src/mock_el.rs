//! A mock execution client: a real HTTP server on `127.0.0.1:0` that checks its own JWT secret,
//! answers each method as told (status, latestValidHash, error, delay, garbage, HTTP 500, hang),
//! builds payloads under its own payloadIds, and records every call it receives, in order, with
//! the exact bytes. It shares no code with eb: its token check and its request reader are its
//! own, so a bug in eb's cannot hide on both sides.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How a mock answers the calls it is told to misbehave on.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Answer normally.
    None,
    /// A JSON-RPC error with this code.
    RpcError(i64),
    /// A body that is not JSON.
    Garbage,
    /// JSON cut in the middle.
    Truncated,
    /// HTTP 500.
    Http500,
    /// Never answer.
    Hang,
    /// A well-formed VALID answer (the block's own hash as latestValidHash) padded to this many
    /// bytes with a long validationError, streamed in 64 KiB chunks without a Content-Length;
    /// the chunks eb pulled are counted ([`MockEl::streamed`]).
    Huge(usize),
    /// HTTP 307 to this URL.
    Redirect(String),
    /// A well-formed VALID answer carrying another id than the request's.
    WrongId,
}

/// What the mock does; change it at any time through [`MockEl::set`].
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// Status for newPayload and forkchoiceUpdated.
    pub status: &'static str,
    /// latestValidHash; default: the block's own hash when VALID, null otherwise.
    pub lvh: Option<String>,
    /// Delay before every answer.
    pub delay: Duration,
    /// Extra delay before answering newPayload (a slow EL whose health checks stay fast).
    pub new_payload_delay: Duration,
    /// Fault for engine vote methods (newPayload, forkchoiceUpdated).
    pub vote_fault: Fault,
    /// Fault for every other method.
    pub read_fault: Fault,
    /// `eth_syncing` answers a sync status instead of `false`.
    pub syncing: bool,
    /// Every call, health checks included, is accepted and never answered (a frozen process).
    pub frozen: bool,
    /// Client code for `engine_getClientVersionV1`.
    pub client: &'static str,
    /// `engine_exchangeCapabilities` answer.
    pub capabilities: Vec<&'static str>,
    /// blockValue of built payloads.
    pub block_value: &'static str,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            status: "VALID",
            lvh: None,
            delay: Duration::ZERO,
            new_payload_delay: Duration::ZERO,
            vote_fault: Fault::None,
            read_fault: Fault::None,
            syncing: false,
            frozen: false,
            client: "GE",
            capabilities: vec![
                "engine_newPayloadV4",
                "engine_forkchoiceUpdatedV3",
                "engine_getPayloadV4",
                "engine_getClientVersionV1",
            ],
            block_value: "0x10",
        }
    }
}

/// One call the mock received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The method.
    pub method: String,
    /// What the mock read from the params: `[{"blockHash", "headBlockHash"}, attributes or
    /// null]`, or `[payloadId]`.
    pub params: Value,
    /// The request body exactly as it arrived.
    pub raw: Bytes,
    /// When it arrived.
    pub at: Instant,
}

/// The mock's own Engine API token check: `Bearer <HS256 JWT>` signed with its secret, `iat`
/// within 60 s of now.
struct TokenCheck {
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

impl TokenCheck {
    fn new(secret_hex: &str) -> TokenCheck {
        let key =
            hex::decode(secret_hex.trim().trim_start_matches("0x")).expect("mock secret is hex");
        assert_eq!(key.len(), 32, "a 256-bit secret");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.required_spec_claims.clear();
        TokenCheck {
            key: jsonwebtoken::DecodingKey::from_secret(&key),
            validation,
        }
    }

    fn check(&self, authorization: Option<&str>) -> Result<(), String> {
        #[derive(serde::Deserialize)]
        struct Claims {
            iat: i64,
        }
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or("no bearer token")?;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| e.to_string())?
            .claims;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if (claims.iat - now).abs() > 60 {
            return Err(format!("iat {} is not within 60 s of {now}", claims.iat));
        }
        Ok(())
    }
}

struct Shared {
    name: String,
    tokens: TokenCheck,
    behaviour: Mutex<Behaviour>,
    seen: Mutex<Vec<Seen>>,
    builds: Mutex<HashMap<String, String>>,
    refused_tokens: Mutex<usize>,
    streamed: std::sync::atomic::AtomicUsize,
}

/// A running mock EL.
pub struct MockEl {
    /// Its address.
    pub addr: SocketAddr,
    /// Its JWT secret, hex.
    pub secret_hex: String,
    shared: Arc<Shared>,
    server: Mutex<Option<JoinHandle<()>>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// `n` mocks named `el0`, `el1`, …, all with `secret`, or (`None`) each with its own secret
/// (`0x0101…`, `0x0202…`, …).
pub async fn start_many(n: usize, secret: Option<&str>) -> Vec<MockEl> {
    let mut els = Vec::with_capacity(n);
    for i in 0..n {
        let own = format!("0x{}", format!("{:02x}", i + 1).repeat(32));
        els.push(MockEl::start(&format!("el{i}"), secret.unwrap_or(&own)).await);
    }
    els
}

/// How many forkchoiceUpdated calls for block `head` (a label, as in [`crate::engine::hash`])
/// `els` received, in all.
pub fn forkchoices_for(els: &[MockEl], head: &str) -> usize {
    let head = crate::engine::hash(head);
    els.iter()
        .flat_map(MockEl::seen)
        .filter(|s| s.method.starts_with("engine_forkchoiceUpdated"))
        .filter(|s| s.params[0]["headBlockHash"] == head.as_str())
        .count()
}

/// The references [`Proxy::start`](crate::proxy::Proxy::start) takes.
pub fn refs(els: &[MockEl]) -> Vec<&MockEl> {
    els.iter().collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MockEl {
    /// Starts a mock named `name` (used in its payloadIds) with secret `secret_hex`.
    pub async fn start(name: &str, secret_hex: &str) -> MockEl {
        MockEl::start_with(name, secret_hex, None).await
    }

    /// Starts a mock that speaks HTTPS with `tls` (its certificate and key).
    pub async fn start_tls(name: &str, secret_hex: &str, tls: Arc<rustls::ServerConfig>) -> MockEl {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        MockEl::start_with(name, secret_hex, Some(acceptor)).await
    }

    async fn start_with(
        name: &str,
        secret_hex: &str,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> MockEl {
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            tokens: TokenCheck::new(secret_hex),
            behaviour: Mutex::new(Behaviour::default()),
            seen: Mutex::new(Vec::new()),
            builds: Mutex::new(HashMap::new()),
            refused_tokens: Mutex::new(0),
            streamed: std::sync::atomic::AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mock = MockEl {
            addr,
            secret_hex: secret_hex.to_owned(),
            shared,
            server: Mutex::new(None),
            tls,
        };
        mock.serve(listener);
        mock
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let router = Router::new()
            .route("/", post(handle))
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(Arc::clone(&self.shared));
        // Connections are served inside this task: aborting it (stop) closes every one of them,
        // calls in flight included, as a crashing EL would (axum::serve lets them finish).
        let tls = self.tls.clone();
        let handle = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let service = hyper_util::service::TowerToHyperService::new(router.clone());
                let tls = tls.clone();
                connections.spawn(async move {
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        None => {
                            http.serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                .await
                        }
                        Some(tls) => match tls.accept(stream).await {
                            Ok(stream) => {
                                http.serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                    .await
                            }
                            // eb refused the certificate: the handshake fails, nothing served.
                            Err(_) => return,
                        },
                    };
                });
                while connections.try_join_next().is_some() {}
            }
        });
        *lock(&self.server) = Some(handle);
    }

    /// Bytes of [`Fault::Huge`] answers the reader pulled so far.
    pub fn streamed(&self) -> usize {
        self.shared
            .streamed
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Its URL (`https://` when it speaks TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Changes its behaviour.
    pub fn set(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut lock(&self.shared.behaviour));
    }

    /// Every call received with a valid token, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.shared.seen).clone()
    }

    /// Methods received, in order, without health checks (`eth_syncing`, client version).
    pub fn engine_calls(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .map(|s| s.method)
            .filter(|m| m != "eth_syncing" && m != "engine_getClientVersionV1")
            .collect()
    }

    /// Requests refused for a bad token.
    pub fn refused_tokens(&self) -> usize {
        *lock(&self.shared.refused_tokens)
    }

    /// Stops serving: new connections are refused and calls in flight are cut (their
    /// connections closed without an answer).
    pub fn stop(&self) {
        if let Some(server) = lock(&self.server).take() {
            server.abort();
        }
    }

    /// Serves again on the same port (retrying while the old socket is being released).
    pub async fn restart(&self) {
        self.stop();
        for _ in 0..100 {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket.set_reuseaddr(true).expect("reuseaddr");
            if socket.bind(self.addr).is_ok() {
                if let Ok(listener) = socket.listen(128) {
                    self.serve(listener);
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("cannot rebind {}", self.addr);
    }
}

impl Drop for MockEl {
    fn drop(&mut self) {
        self.stop();
    }
}

fn payload_status(b: &Behaviour, block_hash: Option<&str>) -> Value {
    let lvh = match (&b.lvh, b.status) {
        (Some(lvh), _) => json!(lvh),
        (None, "VALID") => json!(block_hash),
        _ => Value::Null,
    };
    let error = if b.status == "INVALID" {
        json!("mock: invalid block")
    } else {
        Value::Null
    };
    json!({"status": b.status, "latestValidHash": lvh, "validationError": error})
}

async fn handle(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Err(e) = shared.tokens.check(auth) {
        *lock(&shared.refused_tokens) += 1;
        return (StatusCode::UNAUTHORIZED, e).into_response();
    }
    let Some((method, params, id)) = read_request(&body) else {
        return (StatusCode::BAD_REQUEST, "not json").into_response();
    };
    lock(&shared.seen).push(Seen {
        method: method.clone(),
        params: params.clone(),
        raw: body.clone(),
        at: Instant::now(),
    });
    let b = lock(&shared.behaviour).clone();
    let delay = if method.starts_with("engine_newPayload") {
        b.delay + b.new_payload_delay
    } else {
        b.delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let is_vote =
        method.starts_with("engine_newPayload") || method.starts_with("engine_forkchoiceUpdated");
    let health = method == "eth_syncing" || method == "engine_getClientVersionV1";
    let fault = match (is_vote, health) {
        _ if b.frozen => Fault::Hang,
        (true, _) => b.vote_fault.clone(),
        (false, true) => Fault::None,
        (false, false) => b.read_fault.clone(),
    };
    let answer = |result: Value| json!({"jsonrpc": "2.0", "id": id, "result": result});
    let error = |code: i64, message: &str| json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    let body = match fault {
        Fault::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        Fault::Http500 => return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        Fault::Garbage => return (StatusCode::OK, "<html>not json</html>").into_response(),
        Fault::Truncated => {
            return (StatusCode::OK, r#"{"jsonrpc":"2.0","id":1,"result":{"sta"#).into_response()
        }
        Fault::Huge(size) => {
            return huge_answer(&shared, &id, params[0]["blockHash"].as_str(), size)
        }
        Fault::Redirect(to) => {
            return (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response()
        }
        Fault::WrongId => json!({"jsonrpc": "2.0", "id": wrong_id(&id), "result":
            payload_status(&b, params[0]["blockHash"].as_str())}),
        Fault::RpcError(code) => error(code, "mock error"),
        Fault::None => respond(&shared, &b, &method, &params, answer, error),
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn respond(
    shared: &Shared,
    b: &Behaviour,
    method: &str,
    params: &Value,
    answer: impl Fn(Value) -> Value,
    error: impl Fn(i64, &str) -> Value,
) -> Value {
    if method.starts_with("engine_newPayload") {
        return answer(payload_status(b, params[0]["blockHash"].as_str()));
    }
    if method.starts_with("engine_forkchoiceUpdated") {
        let head = params[0]["headBlockHash"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let status = payload_status(b, Some(&head));
        let builds = !params[1].is_null() && b.status == "VALID";
        let payload_id = builds.then(|| {
            let mut all = lock(&shared.builds);
            let id = format!("0x{:0>8}{:08x}", hex_name(&shared.name), all.len() + 1);
            all.insert(id.clone(), head);
            id
        });
        return answer(json!({"payloadStatus": status, "payloadId": payload_id}));
    }
    if method.starts_with("engine_getPayload") && !method.starts_with("engine_getPayloadBodies") {
        let id = params[0].as_str().unwrap_or_default();
        return match lock(&shared.builds).get(id) {
            Some(head) => answer(json!({
                "executionPayload": {"parentHash": head, "blockHash": format!("0xbuilt-by-{}", shared.name)},
                "blockValue": b.block_value,
                "builder": shared.name,
            })),
            None => error(-38001, "Unknown payload"),
        };
    }
    match method {
        "eth_syncing" if b.syncing => {
            answer(json!({"startingBlock": "0x0", "currentBlock": "0x1", "highestBlock": "0x9"}))
        }
        "eth_syncing" => answer(json!(false)),
        "engine_exchangeCapabilities" => answer(json!(b.capabilities)),
        "engine_getClientVersionV1" => answer(json!([{
            "code": b.client, "name": format!("mock-{}", shared.name), "version": "1.0.0", "commit": "0x01020304"
        }])),
        "eth_chainId" => answer(json!("0x1")),
        "eth_blockNumber" => answer(json!("0x2a")),
        "eth_sendRawTransaction" => answer(json!("0xtxhash")),
        "eth_getBlockByNumber" => answer(json!({"number": "0x2a", "servedBy": shared.name})),
        "engine_getBlobsV2" => answer(Value::Null),
        _ => error(-32601, "Method not found"),
    }
}

/// (method, params, id): the mock keeps only the parts it answers from (`[{"blockHash" /
/// "headBlockHash": …}, attributes?]` or `[payloadId]`). Params stay raw JSON and the first one
/// is read into two fields, every other member skipped, so a multi-MiB payload costs a scan,
/// not a tree (benchmarks use this mock too).
fn read_request(body: &[u8]) -> Option<(String, Value, Value)> {
    use serde_json::value::RawValue;
    #[derive(serde::Deserialize)]
    struct Request<'a> {
        #[serde(borrow)]
        method: std::borrow::Cow<'a, str>,
        #[serde(borrow, default)]
        params: Vec<&'a RawValue>,
        #[serde(default)]
        id: Value,
    }
    #[derive(serde::Deserialize)]
    struct First {
        #[serde(rename = "blockHash")]
        block_hash: Option<String>,
        #[serde(rename = "headBlockHash")]
        head_block_hash: Option<String>,
    }
    let request: Request<'_> = serde_json::from_slice(body).ok()?;
    let first = request.params.first().map(|p| p.get());
    let params = match first {
        Some(text) if text.starts_with('"') => json!([serde_json::from_str::<String>(text).ok()?]),
        _ => {
            let hash = first
                .and_then(|text| serde_json::from_str::<First>(text).ok())
                .and_then(|f| f.block_hash.or(f.head_block_hash));
            let attributes = request
                .params
                .get(1)
                .filter(|p| p.get() != "null")
                .map(|_| json!({}));
            json!([{"blockHash": hash, "headBlockHash": hash}, attributes])
        }
    };
    Some((request.method.into_owned(), params, request.id))
}

/// An id that is not `id`.
fn wrong_id(id: &Value) -> Value {
    match id.as_i64() {
        Some(n) => json!(n.wrapping_add(1)),
        None => json!(format!("not-{id}")),
    }
}

/// [`Fault::Huge`]: `{"jsonrpc":"2.0","id":…,"result":{"status":"VALID","latestValidHash":…,
/// "validationError":"xxx…"}}`, `size` bytes in all, generated chunk by chunk as it is read.
fn huge_answer(shared: &Arc<Shared>, id: &Value, block: Option<&str>, size: usize) -> Response {
    const CHUNK: usize = 64 << 10;
    let head = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"result":{{"status":"VALID","latestValidHash":{},"validationError":""#,
        json!(block)
    );
    let tail = r#""}}"#;
    let padding = size.saturating_sub(head.len() + tail.len());
    let chunks = std::iter::once(Bytes::from(head))
        .chain(
            (0..padding.div_ceil(CHUNK))
                .map(move |i| Bytes::from(vec![b'x'; CHUNK.min(padding - i * CHUNK)])),
        )
        .chain(std::iter::once(Bytes::from_static(tail.as_bytes())));
    let counted = Arc::clone(shared);
    let stream = futures_util::stream::iter(chunks.map(move |chunk| {
        counted
            .streamed
            .fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
        Ok::<_, std::convert::Infallible>(chunk)
    }));
    (
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

/// Up to 8 hex digits derived from the mock's name, so payloadIds show who built them.
fn hex_name(name: &str) -> String {
    name.bytes().take(4).map(|b| format!("{b:02x}")).collect()
}
