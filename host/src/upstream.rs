//! One call to one EL: fresh JWT, the CL's bytes, a timeout; the outcome classified. The
//! [`Transport`] trait is the seam between eb and the network: [`Http`] is the real one, and
//! unit tests plug in scripted transports that answer on tokio's (paused) clock.

use crate::auth::Minter;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Certificate, Client, StatusCode, Url};
use std::time::Duration;
use tokio::time::Instant;

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

impl Reply {
    /// Why a reply is not an answer, for logs and error messages.
    pub fn failure(&self) -> String {
        match self {
            Reply::Body(_) => "unreadable answer".to_owned(),
            Reply::Timeout => "timeout".to_owned(),
            Reply::AuthRejected(status) => format!("HTTP {status}: eb's token refused"),
            Reply::Unreachable(e) => e.clone(),
        }
    }
}

/// A reply with the time it took.
#[derive(Clone, Debug)]
pub struct Timed {
    /// The reply.
    pub reply: Reply,
    /// Time from sending to the complete answer (or to giving up).
    pub latency: Duration,
}

/// Sends one JSON-RPC body to one EL and classifies what comes back.
pub trait Transport: Send + Sync {
    /// Posts `body`, waiting at most `timeout`.
    fn post(&self, body: Bytes, timeout: Duration) -> BoxFuture<'static, Timed>;
}

/// An HTTP client for EL calls (keep-alive pools per EL). `https` URLs are checked with rustls
/// against the system's root certificates, or with `ca` only (a private CA or a self-signed
/// certificate).
pub fn client(ca: Option<&Certificate>) -> Client {
    // One process-wide crypto provider; installing it again is a no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = Client::builder()
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true);
    let builder = match ca {
        Some(ca) => builder.tls_certs_only([ca.clone()]),
        None => builder,
    };
    builder.build().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot build the TLS client; https ELs will fail");
        Client::builder()
            .tls_certs_only([])
            .build()
            .unwrap_or_default()
    })
}

/// An EL's Engine API over HTTP, each call with a fresh token from its own secret.
pub struct Http {
    /// The shared client.
    pub client: Client,
    /// The EL's URL.
    pub url: Url,
    /// Mints tokens with the EL's secret.
    pub minter: Minter,
}

impl Transport for Http {
    fn post(&self, body: Bytes, timeout: Duration) -> BoxFuture<'static, Timed> {
        let start = Instant::now();
        let request = self
            .client
            .post(self.url.clone())
            .header(AUTHORIZATION, self.minter.bearer())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        Box::pin(async move {
            let reply = match tokio::time::timeout(timeout, async {
                let response = request.send().await?;
                let status = response.status();
                let body = response.bytes().await?;
                Ok::<_, reqwest::Error>((status, body))
            })
            .await
            {
                Err(_) => Reply::Timeout,
                Ok(Err(e)) => Reply::Unreachable(error_chain(&e)),
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
        })
    }
}

/// A reqwest error and its innermost cause, without the URL (which may carry credentials).
fn error_chain(error: &reqwest::Error) -> String {
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
