//! The admin API, on its own listener (loopback by default): status in executionbackup's shape
//! plus eb's own fields, rechecks, adding and removing nodes. Mutating calls need the
//! `--admin-token` when one is set.

use crate::app::App;
use crate::health;
use crate::nodes::NodeState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

/// The admin router.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/recheck", post(recheck))
        .route("/nodes", post(add_nodes))
        .route("/add_nodes", post(add_nodes))
        .route("/nodes/{index}", delete(remove_node))
        .route("/policy/reload", post(reload_policy))
        .with_state(app)
}

/// `None` when the call may go ahead, else the 401 answer.
fn denied(app: &App, headers: &HeaderMap) -> Option<Response> {
    let token = app.admin_token.as_ref()?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    (!token.accepts(given)).then(|| problem(StatusCode::UNAUTHORIZED, "admin token required"))
}

fn problem(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// `GET /status`.
async fn status(State(app): State<Arc<App>>) -> Json<Value> {
    Json(status_json(&app))
}

/// The status document: executionbackup's fields, then eb's.
pub fn status_json(app: &App) -> Value {
    let nodes = app.nodes.snapshot();
    let primary = app.nodes.primary_id();
    let mut response_times = serde_json::Map::new();
    let (mut alive, mut syncing, mut dead) = (Vec::new(), Vec::new(), Vec::new());
    let mut detail = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let h = node.health();
        if let Some(ms) = h.latency_ms {
            response_times.insert(node.name.clone(), json!(ms));
        }
        match h.state {
            NodeState::Synced => alive.push(node.name.clone()),
            NodeState::Syncing => syncing.push(node.name.clone()),
            _ => dead.push(node.name.clone()),
        }
        detail.push(json!({
            "index": index,
            "url": node.name,
            "state": h.state,
            "latency_ms": h.latency_ms,
            "client": h.client.letters().map(|l| String::from_utf8_lossy(&l).into_owned()),
            "client_version": h.client_version,
            "do_not_use": node.do_not_use,
            "timeout_ms": node.timeout.as_millis() as u64,
            "primary": Some(node.id) == primary,
            "last_error": h.last_error,
        }));
    }
    let policy = app.policy();
    let info = policy.info();
    json!({
        "response_times": response_times,
        "alive_nodes": alive,
        "syncing_nodes": syncing,
        "dead_nodes": dead,
        "primary_node": nodes.iter().find(|n| Some(n.id) == primary).map(|n| n.name.clone()),
        "nodes": detail,
        "policy": {
            "name": info.name,
            "sha256": info.sha256,
            "size": info.size,
            "config": info.config,
            "loaded_at": info.loaded_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        },
        "payload_builds": app.payloads.len(),
        "version": env!("CARGO_PKG_VERSION"),
    })
}

/// `GET /metrics`: OpenMetrics when the scraper asks for it (Prometheus does), the classic
/// text format otherwise.
async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    app.metrics.payload_builds.set(app.payloads.len() as i64);
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("application/openmetrics-text") {
        let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        ([(header::CONTENT_TYPE, kind)], app.metrics.encode()).into_response()
    } else {
        let kind = "text/plain; version=0.0.4; charset=utf-8";
        ([(header::CONTENT_TYPE, kind)], app.metrics.encode_classic()).into_response()
    }
}

/// `POST /recheck`: checks every node now.
async fn recheck(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(denied) = denied(&app, &headers) {
        return denied;
    }
    health::recheck_all(&app.nodes).await;
    Json(status_json(&app)).into_response()
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

/// `POST /nodes` and executionbackup's `POST /add_nodes`.
async fn add_nodes(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(denied) = denied(&app, &headers) {
        return denied;
    }
    let specs = match serde_json::from_slice::<NodeList>(&body) {
        Ok(NodeList::Object { nodes } | NodeList::Bare(nodes)) => nodes.into_vec(),
        Err(_) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "expected {\"nodes\": [\"URL#jwt-secret=PATH#timeout=MS\", ...]}",
            )
        }
    };
    let mut added = Vec::new();
    for spec in specs.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        match app.add_node(spec) {
            Ok(node) => {
                tracing::info!(node = %node.name, "node added");
                added.push(node.name.clone());
            }
            Err(e) => {
                let status = if e.contains("configured already") {
                    StatusCode::CONFLICT
                } else {
                    StatusCode::BAD_REQUEST
                };
                return (status, Json(json!({ "error": e, "added": added }))).into_response();
            }
        }
    }
    Json(json!({ "added": added })).into_response()
}

/// `POST /policy/reload` (also on SIGHUP).
async fn reload_policy(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(denied) = denied(&app, &headers) {
        return denied;
    }
    match app.reload_policy().await {
        Ok(policy) => Json(json!({
            "reloaded": policy.info().name,
            "sha256": policy.info().sha256,
        }))
        .into_response(),
        Err(reason) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("refused, the active policy stays: {reason}"),
        ),
    }
}

/// `DELETE /nodes/{index}`.
async fn remove_node(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(index): Path<usize>,
) -> Response {
    if let Some(denied) = denied(&app, &headers) {
        return denied;
    }
    match app.remove_node(index) {
        Ok(node) => {
            tracing::info!(node = %node.name, "node removed");
            Json(json!({ "removed": node.name })).into_response()
        }
        Err(e) => problem(StatusCode::NOT_FOUND, &e.to_string()),
    }
}
