//! One HTTP call to one EL: fresh JWT, the CL's bytes, a timeout; the outcome classified.

use crate::auth::Minter;
use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Client, StatusCode, Url};
use std::time::{Duration, Instant};

/// How a call to an EL ended.
#[derive(Clone, Debug)]
pub enum Reply {
    /// HTTP 2xx with a body (not yet checked to be JSON).
    Body(Bytes),
    /// No complete answer within the timeout.
    Timeout,
    /// HTTP 401/403: the EL refused eb's token (wrong secret, clock skew).
    AuthRejected(u16),
    /// Connection refused or reset, another HTTP status, or a broken body.
    Unreachable(String),
}

/// A reply with the time it took.
#[derive(Clone, Debug)]
pub struct Timed {
    /// The reply.
    pub reply: Reply,
    /// Time from sending to the complete answer (or to giving up).
    pub latency: Duration,
}

/// The HTTP client shared by all EL calls (keep-alive pools per EL).
pub fn client() -> Client {
    Client::builder()
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .build()
        .unwrap_or_else(|_| Client::new())
}

/// Posts `body` to `url` with a fresh token from `minter`, waiting at most `timeout`.
pub async fn post(
    client: &Client,
    url: &Url,
    minter: &Minter,
    body: Bytes,
    timeout: Duration,
) -> Timed {
    let start = Instant::now();
    let request = client
        .post(url.clone())
        .header(AUTHORIZATION, minter.bearer())
        .header(CONTENT_TYPE, "application/json")
        .body(body);
    let reply = match tokio::time::timeout(timeout, async {
        let response = request.send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        Ok::<_, reqwest::Error>((status, body))
    })
    .await
    {
        Err(_) => Reply::Timeout,
        Ok(Err(e)) => Reply::Unreachable(describe(&e)),
        Ok(Ok((status, _)))
            if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) =>
        {
            Reply::AuthRejected(status.as_u16())
        }
        Ok(Ok((status, body))) if status.is_success() => Reply::Body(body),
        Ok(Ok((status, _))) => Reply::Unreachable(format!("HTTP {}", status.as_u16())),
    };
    Timed {
        reply,
        latency: start.elapsed(),
    }
}

/// A reqwest error without the URL (which may carry credentials).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "broken response body"
    } else if error.is_request() {
        "request failed"
    } else {
        "transport error"
    };
    let mut source = std::error::Error::source(error);
    let mut detail = String::new();
    while let Some(e) = source {
        detail = e.to_string();
        source = e.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}
