//! `eb-floor`: the floor a multiplexer's per-call cost is measured against, a fan-out that does
//! nothing else. It reads the CL's body once, sends the same bytes to every EL (each with a
//! fresh token), answers with the first EL answer and lets the others finish. No CL token
//! check, no parsing, no policy, no ordering, no health: whatever eb spends beyond this is what
//! its promises cost. `eb-bench` runs it beside eb in the same session.
//!
//! ```text
//! eb-floor --nodes URL#jwt-secret=PATH[,…] --port PORT
//! ```

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use clap::Parser;
use eb::auth::{JwtSecret, Minter};
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::process::ExitCode;
use std::sync::Arc;

/// A fan-out that does nothing else.
#[derive(Debug, Parser)]
struct Args {
    /// The ELs, executionbackup-style: `url#jwt-secret=PATH`, comma-separated.
    #[arg(long)]
    nodes: String,
    /// Port on 127.0.0.1.
    #[arg(long)]
    port: u16,
}

/// One EL: its URL and the minter for its secret.
struct El {
    url: String,
    minter: Minter,
}

struct Floor {
    els: Vec<El>,
    client: reqwest::Client,
}

/// `url#jwt-secret=PATH` → the EL.
fn el(spec: &str) -> Result<El, String> {
    let (url, rest) = spec
        .split_once("#jwt-secret=")
        .ok_or_else(|| format!("{spec}: no #jwt-secret=PATH"))?;
    let path = rest.split('#').next().unwrap_or_default();
    let hex = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let secret = JwtSecret::from_hex(hex.trim()).ok_or_else(|| format!("{path}: not a secret"))?;
    Ok(El {
        url: url.to_owned(),
        minter: Minter::new(&secret),
    })
}

/// Sends `body` to every EL; the first answer's bytes, the rest finish in the background.
async fn fan_out(State(floor): State<Arc<Floor>>, body: Bytes) -> Response {
    let mut answers: FuturesUnordered<_> = floor
        .els
        .iter()
        .map(|el| {
            let request = floor
                .client
                .post(&el.url)
                .header(header::AUTHORIZATION, el.minter.bearer())
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            async move { request.send().await?.bytes().await }
        })
        .collect();
    while let Some(answer) = answers.next().await {
        if let Ok(bytes) = answer {
            tokio::spawn(async move { while answers.next().await.is_some() {} });
            return ([(header::CONTENT_TYPE, "application/json")], bytes).into_response();
        }
    }
    (StatusCode::BAD_GATEWAY, "no EL answered").into_response()
}

async fn run(args: Args) -> Result<(), String> {
    let els = args.nodes.split(',').map(el).collect::<Result<_, _>>()?;
    let floor = Arc::new(Floor {
        els,
        client: eb_tests::client_builder()
            .timeout(std::time::Duration::from_secs(8))
            .build()
            .map_err(|e| e.to_string())?,
    });
    let app = axum::Router::new()
        .route("/", axum::routing::post(fan_out))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(floor);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|e| format!("127.0.0.1:{}: {e}", args.port))?;
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("eb-floor: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eb-floor: {e}");
            ExitCode::FAILURE
        }
    }
}
