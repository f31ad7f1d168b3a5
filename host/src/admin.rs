//! The admin API, on its own listener (loopback by default): status in executionbackup's shape
//! plus eb's own fields, metrics (Prometheus, or executionbackup's JSON report), rechecks,
//! adding and removing nodes, policy reload. executionbackup's endpoints keep their shapes
//! (`GET /metrics` with `Accept: application/json`, `GET /recheck`, `POST /add_nodes`).
//! Mutating calls need the `--admin-token` when one is set.

use crate::app::{AddNodeError, App};
use crate::cluster::Change;
use crate::health;
use crate::nodes::{Node, NodeState, NodesError};
use crate::policy::ReloadError;
use crate::straggler::Straggler;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use policy_sdk::abi::Health as VoteHealth;
use policy_sdk::rules;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::UNIX_EPOCH;
use tower_http::timeout::RequestBodyTimeoutLayer;

/// The admin router; request bodies must arrive within the engine's body timeout.
pub fn router(app: Arc<App>) -> Router {
    let body_timeout = app.endpoint.body_timeout;
    Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/recheck", get(recheck).post(recheck))
        .route("/nodes", post(add_nodes))
        .route("/add_nodes", post(add_nodes_and_recheck))
        .route("/nodes/{index}", delete(remove_node))
        .route("/nodes/{index}/drain", post(drain_node))
        .route("/nodes/{index}/resume", post(resume_node))
        .route("/policy/reload", post(reload_policy))
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .with_state(app)
}

/// Why an admin call was refused; the HTTP status comes from the kind.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A mutating call without the `--admin-token` (401).
    #[error("admin token required")]
    Unauthorized,
    /// The body is not what the call takes (400).
    #[error("expected {0}")]
    BadBody(&'static str),
    /// Nodes could not be added: a bad spec (400), a secret it may not use (403), a duplicate
    /// or too many (409). None of the batch was added.
    #[error(transparent)]
    AddNode(#[from] AddNodeError),
    /// A node could not be removed or drained: no such index (404), the last node or the last
    /// counted one (409).
    #[error(transparent)]
    RemoveNode(NodesError),
    /// The new policy was refused; the active one stays (422).
    #[error("refused, the active policy stays: {0}")]
    Reload(#[from] ReloadError),
}

impl AdminError {
    /// The HTTP status for this kind of refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::Unauthorized => StatusCode::UNAUTHORIZED,
            AdminError::BadBody(_) | AdminError::AddNode(AddNodeError::Spec(_)) => {
                StatusCode::BAD_REQUEST
            }
            AdminError::AddNode(
                AddNodeError::Secret(_) | AddNodeError::Nodes(NodesError::SharedSecret(_)),
            ) => StatusCode::FORBIDDEN,
            AdminError::AddNode(AddNodeError::Nodes(_))
            | AdminError::RemoveNode(
                NodesError::LastNode
                | NodesError::Duplicate(_)
                | NodesError::TooMany(_)
                | NodesError::SharedSecret(_),
            ) => StatusCode::CONFLICT,
            AdminError::RemoveNode(NodesError::NoSuchIndex(_)) => StatusCode::NOT_FOUND,
            AdminError::RemoveNode(NodesError::LastCounted(_)) => StatusCode::CONFLICT,
            AdminError::Reload(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    /// The response, with `more` fields beside `error`.
    fn respond(&self, mut more: serde_json::Map<String, Value>) -> Response {
        more.insert("error".to_owned(), Value::from(self.to_string()));
        (self.status(), Json(Value::Object(more))).into_response()
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        self.respond(serde_json::Map::new())
    }
}

/// `Ok` when the call may go ahead.
fn authorize(app: &App, headers: &HeaderMap) -> Result<(), AdminError> {
    let Some(token) = app.admin_token.as_ref() else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if token.accepts(given) {
        Ok(())
    } else {
        Err(AdminError::Unauthorized)
    }
}

/// `GET /status`.
async fn status(State(app): State<Arc<App>>) -> Json<Value> {
    Json(status_json(&app))
}

/// executionbackup's `MetricsReport`, field for field: each node's response time in
/// microseconds, the nodes by state, and the primary ("" while there is none).
pub fn metrics_report(app: &App) -> serde_json::Map<String, Value> {
    let nodes = app.nodes.snapshot();
    let primary = app.nodes.primary_id();
    let mut response_times = serde_json::Map::new();
    let (mut alive, mut syncing, mut dead) = (Vec::new(), Vec::new(), Vec::new());
    for node in nodes.iter() {
        let h = node.health();
        if let Some(ms) = h.latency_ms {
            response_times.insert(node.url.clone(), json!((ms * 1e3).round() as u64));
        }
        match h.state {
            NodeState::Synced => alive.push(node.url.clone()),
            NodeState::Syncing => syncing.push(node.url.clone()),
            _ => dead.push(node.url.clone()),
        }
    }
    let primary_node = nodes
        .iter()
        .find(|n| Some(n.id) == primary)
        .map_or_else(String::new, |n| n.url.clone());
    let mut report = serde_json::Map::new();
    report.insert("response_times".into(), Value::Object(response_times));
    report.insert("alive_nodes".into(), json!(alive));
    report.insert("syncing_nodes".into(), json!(syncing));
    report.insert("dead_nodes".into(), json!(dead));
    report.insert("primary_node".into(), json!(primary_node));
    report
}

/// The status document: executionbackup's `MetricsReport`, then eb's own fields.
pub fn status_json(app: &App) -> Value {
    let nodes = app.nodes.snapshot();
    let primary = app.nodes.primary_id();
    let ignore_behind = ignores_behind(&app.policy.current().info().config);
    let mut detail = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let h = node.health();
        let queue = node.queue_depth();
        let (counts, why) = counting(node, ignore_behind);
        detail.push(json!({
            "index": index,
            "url": node.url,
            "health": node.vote_health().name(),
            "new_payload_latency_ms": h.vote_latency_ms[0],
            "forkchoice_latency_ms": h.vote_latency_ms[1],
            "last_answer_ms_ago": h.last_answer.map(|t| t.elapsed().as_millis() as u64),
            "straggler": straggler_name(node.straggler),
            "cut_votes": node.cut_count(),
            "queue": {
                "calls": queue.calls,
                "bytes": queue.bytes,
                "dropped": queue.dropped,
                "busy_ms": queue.busy_for.map(|d| d.as_millis() as u64),
                "replayed": queue.replayed,
                "replay_dropped": queue.replay_dropped,
            },
            "state": h.state,
            "latency_ms": h.latency_ms,
            "client": h.client.letters().map(|l| String::from_utf8_lossy(&l).into_owned()),
            "client_version": h.client_version,
            "do_not_use": node.do_not_use,
            "behind": node.is_behind(),
            "head_lag_blocks": node.lag(),
            "draining": node.draining().map(|d| json!({
                "since_s": d.since.elapsed().as_secs(),
                "was_away": d.was_away,
            })),
            "missing_capabilities": node.missing_capabilities(),
            "votes_count": counts,
            "votes_count_why": why,
            "timeout_ms": node.timeout.as_millis() as u64,
            "primary": Some(node.id) == primary,
            "last_error": h.last_error,
        }));
    }
    let policy = app.policy.current();
    let info = policy.info();
    let mut status = metrics_report(app);
    let eb = json!({
        "nodes": detail,
        "policy": {
            "name": info.name,
            "sha256": info.sha256,
            "size": info.size,
            "config": info.config,
            "loaded_at": info.loaded_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        },
        "shadow_policy": app.policy.shadow().map(|shadow| json!({
            "name": shadow.info().name,
            "sha256": shadow.info().sha256,
        })),
        "payload_builds": app.payloads.len(),
        "cluster": app.cluster.status(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    if let Value::Object(eb) = eb {
        status.extend(eb);
    }
    Value::Object(status)
}

/// Whether the policy config has `behind=ignore` (the majority rule's option).
pub fn ignores_behind(config: &str) -> bool {
    rules::config_pairs(config.as_bytes()).any(|pair| pair == Ok((b"behind", b"ignore")))
}

/// Whether `node`'s next vote would count, and why, as the majority rule sees it.
fn counting(node: &Node, ignore_behind: bool) -> (bool, &'static str) {
    let health = node.vote_health();
    let catching_up = node.is_behind() || health == VoteHealth::Syncing;
    match health {
        _ if node.do_not_use => (false, "do-not-use: observed, never counted"),
        _ if node.draining().is_some() => (
            false,
            "draining: rejoins once back on the chain, or with POST /nodes/{index}/resume",
        ),
        VoteHealth::Offline | VoteHealth::AuthFailed | VoteHealth::Hung => {
            (false, "cut: not waited for while it cannot answer")
        }
        _ if catching_up && ignore_behind => (
            false,
            "catching up: its SYNCING and ACCEPTED are not counted (behind=ignore)",
        ),
        _ if catching_up => (
            true,
            "catching up, counted: its SYNCING ties a VALID (behind=ignore would not count it)",
        ),
        _ => (true, "counted"),
    }
}

fn straggler_name(straggler: Straggler) -> String {
    match straggler {
        Straggler::Auto => "auto".to_owned(),
        Straggler::Wait => "wait".to_owned(),
        Straggler::Fixed(extra) => format!("{} ms", extra.as_millis()),
    }
}

/// Sets the gauges that are read from the nodes when scraped.
fn sample_gauges(app: &App) {
    let m = &app.metrics;
    m.payload_builds.set(app.payloads.len() as i64);
    for node in app.nodes.snapshot().iter() {
        let labels = vec![("node", node.url.clone())];
        let queue = node.queue_depth();
        m.queue_calls.get_or_create(&labels).set(queue.calls as i64);
        m.queue_bytes.get_or_create(&labels).set(queue.bytes as i64);
        m.head_lag
            .get_or_create(&labels)
            .set(i64::try_from(node.lag()).unwrap_or(i64::MAX));
        if let Some(at) = node.health().last_answer {
            m.last_answer_age
                .get_or_create(&labels)
                .set(at.elapsed().as_secs_f64());
        }
    }
}

/// `GET /metrics`: OpenMetrics when the scraper asks for it (Prometheus does), executionbackup's
/// JSON `MetricsReport` when asked for JSON, the classic text format otherwise.
async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    sample_gauges(&app);
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("application/json") {
        return Json(Value::Object(metrics_report(&app))).into_response();
    }
    if accept.contains("application/openmetrics-text") {
        let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        ([(header::CONTENT_TYPE, kind)], app.metrics.encode()).into_response()
    } else {
        let kind = "text/plain; version=0.0.4; charset=utf-8";
        ([(header::CONTENT_TYPE, kind)], app.metrics.encode_classic()).into_response()
    }
}

/// Checks every node now; executionbackup's `RecheckMetricsReport`: the `MetricsReport` plus
/// `recheck_time`, in microseconds.
async fn recheck_report(app: &App) -> serde_json::Map<String, Value> {
    let start = tokio::time::Instant::now();
    health::recheck_all(&app.nodes).await;
    let took = start.elapsed().as_micros() as u64;
    let mut report = metrics_report(app);
    report.insert("recheck_time".into(), json!(took));
    report
}

/// `GET` or `POST /recheck`.
async fn recheck(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<Value>, AdminError> {
    authorize(&app, &headers)?;
    Ok(Json(Value::Object(recheck_report(&app).await)))
}

/// Node specs to add: `{"nodes": [..]}`, a bare array, or one comma-separated string.
#[derive(Deserialize)]
#[serde(untagged)]
enum NodeList {
    Object { nodes: Specs },
    Bare(Specs),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Specs {
    List(Vec<String>),
    Joined(String),
}

impl Specs {
    fn into_vec(self) -> Vec<String> {
        match self {
            Specs::List(list) => list,
            Specs::Joined(text) => text.split(',').map(str::to_owned).collect(),
        }
    }
}

/// executionbackup's `POST /add_nodes`: adds the nodes, rechecks every node and answers the
/// `RecheckMetricsReport` (with eb's `added` beside it).
async fn add_nodes_and_recheck(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Response> {
    let Json(added) = add_nodes(State(Arc::clone(&app)), headers, body).await?;
    let mut report = recheck_report(&app).await;
    report.insert("added".into(), added["added"].clone());
    Ok(Json(Value::Object(report)))
}

/// `POST /nodes`: adds the nodes, answers `{"added": [...]}`.
async fn add_nodes(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Response> {
    authorize(&app, &headers).map_err(IntoResponse::into_response)?;
    let specs = match serde_json::from_slice::<NodeList>(&body) {
        Ok(NodeList::Object { nodes } | NodeList::Bare(nodes)) => nodes.into_vec(),
        Err(_) => {
            let expected = r#"{"nodes": ["URL#jwt-secret=PATH#timeout=MS", ...]}"#;
            return Err(AdminError::BadBody(expected).into_response());
        }
    };
    let specs: Vec<&str> = specs
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    let nodes = app.add_nodes(&specs).map_err(|e| {
        tracing::warn!(error = %e, "nodes not added");
        let mut more = serde_json::Map::new();
        more.insert("added".to_owned(), json!([]));
        AdminError::from(e).respond(more)
    })?;
    let specs = specs.iter().map(|s| (*s).to_owned()).collect();
    app.cluster.announce(Change::AddNodes { specs }).await;
    let mut added = Vec::with_capacity(nodes.len());
    for node in nodes {
        tracing::info!(node = %node.url, "node added");
        // Checked before the answer: its state and client code are known from its first vote.
        health::check(&node).await;
        added.push(Value::from(node.url.clone()));
    }
    Ok(Json(json!({ "added": added })))
}

/// `POST /policy/reload` (also on SIGHUP).
async fn reload_policy(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<Value>, AdminError> {
    authorize(&app, &headers)?;
    let policy = app.reload_policy(true).await?;
    Ok(Json(json!({
        "reloaded": policy.info().name,
        "sha256": policy.info().sha256,
    })))
}

/// `POST /nodes/{index}/drain`: its votes stop counting at once; it still gets every call and
/// rejoins by itself once back on the chain (or with `/resume`).
async fn drain_node(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(index): Path<usize>,
) -> Result<Json<Value>, AdminError> {
    set_drain(&app, &headers, index, true).await
}

/// `POST /nodes/{index}/resume`: ends a drain.
async fn resume_node(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(index): Path<usize>,
) -> Result<Json<Value>, AdminError> {
    set_drain(&app, &headers, index, false).await
}

async fn set_drain(
    app: &App,
    headers: &HeaderMap,
    index: usize,
    on: bool,
) -> Result<Json<Value>, AdminError> {
    authorize(app, headers)?;
    let (node, changed) = app.nodes.drain(index, on).map_err(AdminError::RemoveNode)?;
    if changed {
        tracing::info!(node = %node.url, draining = on, "drain changed by the admin API");
        let url = node.url.clone();
        app.cluster.announce(Change::Drain { url, on }).await;
    }
    Ok(Json(
        json!({ "node": node.url, "draining": on, "changed": changed }),
    ))
}

/// `DELETE /nodes/{index}`.
async fn remove_node(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(index): Path<usize>,
) -> Result<Json<Value>, AdminError> {
    authorize(&app, &headers)?;
    let node = app.nodes.remove(index).map_err(AdminError::RemoveNode)?;
    tracing::info!(node = %node.url, "node removed");
    let url = node.url.clone();
    app.cluster.announce(Change::RemoveNode { url }).await;
    Ok(Json(json!({ "removed": node.url })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_kind_has_its_status() {
        let cases = [
            (AdminError::Unauthorized, 401),
            (AdminError::BadBody("x"), 400),
            (AdminError::AddNode(AddNodeError::Spec("bad".into())), 400),
            (
                AdminError::AddNode(AddNodeError::Secret("elsewhere".into())),
                403,
            ),
            (
                AdminError::AddNode(AddNodeError::Nodes(NodesError::SharedSecret("u".into()))),
                403,
            ),
            (
                AdminError::AddNode(AddNodeError::Nodes(NodesError::TooMany(64))),
                409,
            ),
            (
                AdminError::AddNode(AddNodeError::Nodes(NodesError::Duplicate("u".into()))),
                409,
            ),
            (AdminError::RemoveNode(NodesError::NoSuchIndex(4)), 404),
            (AdminError::RemoveNode(NodesError::LastNode), 409),
            (
                AdminError::Reload(ReloadError::Fixtures("gone".into())),
                422,
            ),
        ];
        for (error, status) in cases {
            assert_eq!(error.status().as_u16(), status, "{error}");
        }
    }
}
