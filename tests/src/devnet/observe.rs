//! What the devnet driver reads: the ELs' JSON-RPC, Lodestar's beacon REST API, eb's admin API
//! and eb's engine port (for transactions, with a CL token), and eb's vote recording.

use super::LIAR;
use eb::auth::Minter;
use policy_sdk::fixture::{Action, Case};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// Every call gives up after this long.
const TIMEOUT: Duration = Duration::from_secs(5);

fn client() -> reqwest::Client {
    crate::client_builder()
        .timeout(TIMEOUT)
        .build()
        .unwrap_or_default()
}

async fn read_json(response: reqwest::Response, what: &str) -> Result<Value, String> {
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| format!("{what}: {e}"))?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{what}: HTTP {status}, not JSON ({e})"))?;
    if !status.is_success() {
        return Err(format!("{what}: HTTP {status}: {value}"));
    }
    Ok(value)
}

/// A JSON-RPC endpoint, optionally authenticated.
pub struct Rpc {
    url: String,
    minter: Option<Minter>,
    client: reqwest::Client,
}

impl Rpc {
    /// An endpoint at `url` (`minter`: sign each call with that secret).
    pub fn new(url: &str, minter: Option<Minter>) -> Rpc {
        Rpc {
            url: url.to_owned(),
            minter,
            client: client(),
        }
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls `method`; the `result`, or the error as text.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let mut request = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(minter) = &self.minter {
            request = request.header("authorization", minter.bearer());
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("{method} at {}: {e}", self.url))?;
        let mut answer = read_json(response, method).await?;
        match answer.get("error") {
            Some(error) => Err(format!("{method} at {}: {error}", self.url)),
            None => Ok(answer["result"].take()),
        }
    }

    /// `(number, hash)` of the block `tag` (`"latest"`, `"0x0"`…).
    pub async fn block(&self, tag: &str) -> Result<(u64, String), String> {
        let block = self
            .call("eth_getBlockByNumber", json!([tag, false]))
            .await?;
        let number = block["number"]
            .as_str()
            .and_then(|n| u64::from_str_radix(n.trim_start_matches("0x"), 16).ok())
            .ok_or_else(|| format!("block {tag}: no number in {block}"))?;
        let hash = block["hash"].as_str().unwrap_or_default().to_owned();
        Ok((number, hash))
    }
}

/// A beacon node's REST API (Lodestar's, Prysm's).
pub struct Beacon {
    base: String,
    client: reqwest::Client,
}

impl Beacon {
    /// The API at `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> Beacon {
        Beacon {
            base: base.to_owned(),
            client: client(),
        }
    }

    /// Its base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response, String> {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))
    }

    /// `GET /eth/v1/node/syncing`: `(head slot, optimistic)`.
    pub async fn syncing(&self) -> Result<(u64, bool), String> {
        let path = "/eth/v1/node/syncing";
        let data = read_json(self.get(path).await?, path).await?["data"].take();
        let slot = number(&data["head_slot"]).ok_or_else(|| format!("{path}: {data}"))?;
        Ok((slot, data["is_optimistic"] == true))
    }

    /// `GET /eth/v1/node/identity`: the node's ENR.
    pub async fn enr(&self) -> Result<String, String> {
        self.node_string("/eth/v1/node/identity", "enr").await
    }

    /// The string `data.{field}` of `GET {path}`.
    async fn node_string(&self, path: &str, field: &str) -> Result<String, String> {
        let data = read_json(self.get(path).await?, path).await?;
        data["data"][field]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{path}: no {field} in {data}"))
    }

    /// Whether a block was proposed at `slot`.
    pub async fn has_block(&self, slot: u64) -> Result<bool, String> {
        let response = self.get(&format!("/eth/v1/beacon/headers/{slot}")).await?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            other => Err(format!("header at slot {slot}: HTTP {other}")),
        }
    }

    /// `GET /eth/v1/node/version`: the client's version string.
    pub async fn version(&self) -> Result<String, String> {
        self.node_string("/eth/v1/node/version", "version").await
    }

    /// `GET /eth/v2/beacon/blocks/{slot}`: the block's `message`, or `None` for an empty slot.
    pub async fn block(&self, slot: u64) -> Result<Option<Value>, String> {
        let path = format!("/eth/v2/beacon/blocks/{slot}");
        let response = self.get(&path).await?;
        if response.status().as_u16() == 404 {
            return Ok(None);
        }
        let mut block = read_json(response, &path).await?;
        Ok(Some(block["data"]["message"].take()))
    }

    /// The finalized epoch of the head state.
    pub async fn finalized_epoch(&self) -> Result<u64, String> {
        let path = "/eth/v1/beacon/states/head/finality_checkpoints";
        let data = read_json(self.get(path).await?, path).await?;
        number(&data["data"]["finalized"]["epoch"]).ok_or_else(|| format!("{path}: {data}"))
    }

    /// The execution block hash of the CL's head block.
    pub async fn head_execution_hash(&self) -> Result<String, String> {
        let path = "/eth/v2/beacon/blocks/head";
        let block = read_json(self.get(path).await?, path).await?;
        block["data"]["message"]["body"]["execution_payload"]["block_hash"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{path}: no execution payload"))
    }
}

/// A decimal number sent as a JSON string (the beacon API's convention).
fn number(value: &Value) -> Option<u64> {
    value.as_str()?.parse().ok()
}

/// eb's admin API.
pub struct Admin {
    base: String,
    token_file: std::path::PathBuf,
    client: reqwest::Client,
}

impl Admin {
    /// The admin API at `base`, its token in `token_file` (eb writes it when it starts).
    pub fn new(base: &str, token_file: &std::path::Path) -> Admin {
        Admin {
            base: base.to_owned(),
            token_file: token_file.to_owned(),
            client: client(),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let what = format!("{method} {path}");
        let token = std::fs::read_to_string(&self.token_file)
            .map_err(|e| format!("{what}: admin token {}: {e}", self.token_file.display()))?;
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token.trim());
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.map_err(|e| format!("{what}: {e}"))?;
        read_json(response, &what).await
    }

    /// Its base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /metrics` (the classic text format).
    pub async fn metrics(&self) -> Result<String, String> {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("GET /metrics: {e}"))?
            .text()
            .await
            .map_err(|e| format!("GET /metrics: {e}"))
    }

    /// `eb_requests_total` from `GET /metrics`: `{method: {answer kind: count}}`.
    pub async fn answers(&self) -> Result<Value, String> {
        self.counts("eb_requests_total", "method", "answer").await
    }

    /// `eb_vote_answers_total` from `GET /metrics`: `{method: {status: count}}`, what the CL
    /// was answered on newPayload and forkchoiceUpdated.
    pub async fn vote_answers(&self) -> Result<Value, String> {
        self.counts("eb_vote_answers_total", "method", "status")
            .await
    }

    /// The samples of counter `metric` from `GET /metrics`, as `{outer label: {inner label:
    /// count}}`.
    async fn counts(&self, metric: &str, outer: &str, inner: &str) -> Result<Value, String> {
        let text = self.metrics().await?;
        let mut counts = serde_json::Map::new();
        let prefix = format!("{metric}{{");
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(&prefix) else {
                continue;
            };
            let label = |name: &str| {
                let start = rest.find(&format!("{name}=\""))? + name.len() + 2;
                let len = rest[start..].find('"')?;
                Some(rest[start..start + len].to_owned())
            };
            let count = line.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok());
            if let (Some(outer), Some(inner), Some(count)) = (label(outer), label(inner), count) {
                let entry = counts.entry(outer).or_insert_with(|| json!({}));
                entry[inner] = json!(count as u64);
            }
        }
        Ok(Value::Object(counts))
    }

    /// `GET /status`.
    pub async fn status(&self) -> Result<Value, String> {
        self.send(reqwest::Method::GET, "/status", None).await
    }

    /// `DELETE /nodes/{index}`.
    pub async fn remove_node(&self, index: usize) -> Result<Value, String> {
        let path = format!("/nodes/{index}");
        self.send(reqwest::Method::DELETE, &path, None).await
    }

    /// `POST /nodes` with one node spec.
    pub async fn add_node(&self, spec: &str) -> Result<Value, String> {
        let body = json!({ "nodes": [spec] });
        self.send(reqwest::Method::POST, "/nodes", Some(body)).await
    }
}

/// The state eb reports for node `index` (`synced`, `offline`…), and whether it is the primary.
pub fn node_state(status: &Value, index: usize) -> (String, bool) {
    let node = &status["nodes"][index];
    (
        node["state"].as_str().unwrap_or("missing").to_owned(),
        node["primary"] == true,
    )
}

/// The index of eb's primary node.
pub fn primary(status: &Value) -> Option<usize> {
    status["nodes"]
        .as_array()?
        .iter()
        .position(|n| n["primary"] == true)
}

/// The decisions eb recorded so far (a line still being written is skipped).
pub fn recorded(path: &Path) -> Vec<Case> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Whether eb answered VALID (followed a VALID vote).
pub fn follows_valid(case: &Case) -> bool {
    case.expect.action == Action::Follow && case.expect.status.as_deref() == Some("VALID")
}

/// Whether the liar's INVALID vote is in the ballot (counted: not do-not-use, not late).
pub fn liar_counted(case: &Case) -> bool {
    case.votes
        .iter()
        .any(|v| v.node == LIAR as u16 && v.status == "INVALID" && !v.do_not_use && !v.late)
}

/// Whether the liar's INVALID vote is there but flagged do-not-use.
pub fn liar_ignored(case: &Case) -> bool {
    case.votes
        .iter()
        .any(|v| v.node == LIAR as u16 && v.status == "INVALID" && v.do_not_use)
}
