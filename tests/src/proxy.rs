//! eb itself in a test: real listeners on `127.0.0.1:0` in front of mock ELs, a CL-side client
//! that signs its own tokens, and the admin API.

use crate::mock_el::MockEl;
use clap::Parser;
use eb::app::App;
use eb::auth::{JwtSecret, Minter};
use eb::cli::Cli;
use eb::config::Config;
use eb::run::Bound;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// The CL's secret in every test.
pub const CL_SECRET: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";

/// A fresh temp directory for one proxy's secret files.
fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "eb-tests-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Writes the CL's secret (`cl.hex`) and each EL's (`el{i}.hex`) into `dir`; returns the CL's
/// secret file and the `--nodes` value (EL i's spec followed by `node_options[i]`).
pub fn write_secrets(dir: &Path, els: &[&MockEl], node_options: &[&str]) -> (PathBuf, String) {
    let cl = dir.join("cl.hex");
    std::fs::write(&cl, CL_SECRET).expect("write secret");
    let nodes: Vec<String> = els
        .iter()
        .enumerate()
        .map(|(i, el)| {
            let secret = dir.join(format!("el{i}.hex"));
            std::fs::write(&secret, &el.secret_hex).expect("write secret");
            let options = node_options.get(i).copied().unwrap_or("");
            format!("{}#jwt-secret={}{options}", el.url(), secret.display())
        })
        .collect();
    (cl, nodes.join(","))
}

/// The value of the sample line starting with `series` (name and labels) in Prometheus text.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A running eb.
pub struct Proxy {
    /// Engine API address.
    pub engine: SocketAddr,
    /// Admin API address.
    pub admin: SocketAddr,
    /// The app, for looking inside.
    pub app: Arc<App>,
    /// Where its secret files are.
    pub dir: PathBuf,
    /// The admin token eb requires for mutating calls (`None` with `--admin-no-token`).
    pub admin_token: Option<String>,
    minter: Minter,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    /// Starts eb in front of `els`; `node_options[i]` is appended to EL i's spec (e.g.
    /// `#timeout=200`); `extra` are more command-line flags.
    pub async fn start(els: &[&MockEl], node_options: &[&str], extra: &[&str]) -> Proxy {
        Self::try_start(els, node_options, extra)
            .await
            .expect("eb starts")
    }

    /// Like [`start`](Self::start), returning the start error instead of panicking.
    pub async fn try_start(
        els: &[&MockEl],
        node_options: &[&str],
        extra: &[&str],
    ) -> Result<Proxy, String> {
        let dir = temp_dir();
        let (cl, nodes) = write_secrets(&dir, els, node_options);
        let cl_path = cl.display().to_string();
        let mut argv = vec![
            "eb",
            "--jwt-secret",
            &cl_path,
            "--nodes",
            &nodes,
            "--port",
            "0",
            "--health-interval",
            "1",
        ];
        if !extra.contains(&"--admin-addr") {
            argv.extend_from_slice(&["--admin-addr", "127.0.0.1:0"]);
        }
        // eb writes its admin token there at start, unless the test names its own.
        let own_token = dir.join("admin-token").display().to_string();
        let token_file = match extra.iter().position(|a| *a == "--admin-token") {
            Some(i) => extra.get(i + 1).map(|p| (*p).to_owned()),
            None if extra.contains(&"--admin-no-token") => None,
            None => {
                argv.extend_from_slice(&["--admin-token", &own_token]);
                Some(own_token.clone())
            }
        };
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let config = Config::from_args(&cli.run).map_err(|e| e.to_string())?;
        let bound = Bound::bind(config).await.map_err(|e| e.to_string())?;
        let admin_token = token_file.map(|path| {
            std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("eb wrote no admin token to {path}: {e}"))
                .trim()
                .to_owned()
        });
        let (engine, admin, app) = (
            bound.engine_addr(),
            bound.admin_addr(),
            Arc::clone(&bound.app),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(bound.run(async move {
            let _ = stopped.await;
        }));
        Ok(Proxy {
            engine,
            admin,
            app,
            dir,
            admin_token,
            minter: Minter::new(&JwtSecret::from_hex(CL_SECRET).expect("hex")),
            client: crate::client(),
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// A fresh CL token header value.
    pub fn token(&self) -> String {
        self.minter.bearer()
    }

    /// Sends raw bytes with an optional `Authorization` header; returns status and body text.
    pub async fn send(
        &self,
        body: impl Into<reqwest::Body>,
        authorization: Option<&str>,
    ) -> (u16, String) {
        let mut request = self
            .client
            .post(format!("http://{}/", self.engine))
            .header("content-type", "application/json")
            .body(body);
        if let Some(auth) = authorization {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.expect("eb answers");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    /// Sends one JSON-RPC request with a valid token; returns the parsed answer.
    pub async fn call(&self, request: &Value) -> Value {
        let (status, text) = self.send(request.to_string(), Some(&self.token())).await;
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// eb's Prometheus metrics (`GET /metrics`, classic text format).
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("text")
    }

    /// `GET` on the admin API.
    pub async fn admin_get(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("http://{}{path}", self.admin))
            .send()
            .await
            .expect("admin answers");
        serde_json::from_str(&response.text().await.expect("body")).expect("json")
    }

    /// A request to the admin API with `token`, or (`None`) with eb's own admin token;
    /// returns status and JSON.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let token = token.or(self.admin_token.as_deref());
        self.admin_with(method, path, body, token).await
    }

    /// A request to the admin API without a token.
    pub async fn admin_without_token(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.admin_with(method, path, body, None).await
    }

    async fn admin_with(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("http://{}{path}", self.admin));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("admin answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Adds a node through `POST /nodes`: `url` with `secret_hex` (written to a file of its
    /// own) and extra `#options`; returns the HTTP status.
    pub async fn add_node(&self, url: &str, secret_hex: &str, options: &str) -> u16 {
        static N: AtomicUsize = AtomicUsize::new(0);
        let file = self
            .dir
            .join(format!("added{}.hex", N.fetch_add(1, Ordering::Relaxed)));
        std::fs::write(&file, secret_hex).expect("write secret");
        let spec = format!("{url}#jwt-secret={}{options}", file.display());
        let body = serde_json::json!({ "nodes": [spec] });
        self.admin(reqwest::Method::POST, "/nodes", Some(body), None)
            .await
            .0
    }

    /// Waits (at most 10 s, checking every 20 ms) until `done` holds.
    pub async fn wait_until(&self, what: &str, mut done: impl FnMut(&App) -> bool) {
        for _ in 0..500 {
            if done(&self.app) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting until {what}");
    }

    /// Stops eb at once, without draining: its listeners and their calls are dropped where
    /// they are (what it wrote to etcd before is all another replica has).
    pub async fn kill(mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Stops eb and waits for it to drain.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
