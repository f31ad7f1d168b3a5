//! One call to one EL: fresh JWT, the CL's bytes, a timeout; the outcome classified. The
//! [`Transport`] trait is the seam between eb and the network: [`Http`] is the real one, and
//! unit tests plug in scripted transports that answer on tokio's (paused) clock.

use crate::auth::Minter;
use bytes::{Bytes, BytesMut};
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
    /// The answer was larger than the call's limit (bytes); read no further than that.
    TooLarge(usize),
    /// HTTP 3xx: a redirect, never followed.
    Redirected(u16),
    /// The connection could not be made (refused, unroutable, TLS refused): the EL never got
    /// the call.
    Refused(String),
    /// A reset or broken answer, another HTTP status: the EL may have the call.
    Unreachable(String),
}

impl Reply {
    /// Whether the EL never took the call: the connection could not be made, or it refused
    /// eb's token. A timeout, a reset mid-call or an HTTP error status is not: the EL may have
    /// the call (and an EL answering some call with HTTP 500 would refuse its replay forever).
    pub fn never_taken(&self) -> bool {
        matches!(self, Reply::Refused(_) | Reply::AuthRejected(_))
    }

    /// Why a reply is not an answer, for logs and error messages.
    pub fn failure(&self) -> String {
        match self {
            Reply::Body(_) => "unreadable answer".to_owned(),
            Reply::Timeout => "timeout".to_owned(),
            Reply::AuthRejected(status) => format!("HTTP {status}: eb's token refused"),
            Reply::TooLarge(limit) => format!("answer larger than {limit} bytes"),
            Reply::Redirected(status) => format!("HTTP {status}: redirects are not followed"),
            Reply::Refused(e) | Reply::Unreachable(e) => e.clone(),
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

/// How large an EL's answer may be, per kind of call. A newPayload or forkchoiceUpdated answer
/// is a payload status (a few hundred bytes, a validation error at most); a getPayload with
/// blobs, getPayloadBodies or getBlobs answer carries whole blocks and blobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnswerLimits {
    /// newPayload and forkchoiceUpdated answers, in bytes.
    pub vote: usize,
    /// Every other answer (getPayload, getPayloadBodies, getBlobs, reads), in bytes.
    pub other: usize,
}

impl Default for AnswerLimits {
    /// 1 MiB for votes; 256 MiB for the rest: a getPayloadV5 at 128 blobs is ~35 MB of hex
    /// (blob, commitment and 128 cell proofs each) beside a payload of at most 10 MiB RLP
    /// (EIP-7934) as ~20 MB of hex; 32 getPayloadBodies of 10 MiB bodies are ~640 MB of hex in
    /// theory, ~64 MB for mainnet's blocks today.
    fn default() -> AnswerLimits {
        AnswerLimits {
            vote: 1 << 20,
            other: 256 << 20,
        }
    }
}

/// Sends one JSON-RPC body to one EL and classifies what comes back.
pub trait Transport: Send + Sync {
    /// Posts `body`, waiting at most `timeout` and reading at most `max_answer` bytes.
    fn post(&self, body: Bytes, timeout: Duration, max_answer: usize) -> BoxFuture<'static, Timed>;
}

/// An HTTP client for EL calls (keep-alive pools per EL). `https` URLs are checked with rustls
/// against the system's root certificates, or with `ca` only (a private CA or a self-signed
/// certificate). Redirects are never followed: a 3xx is a failed call, so an EL cannot make eb
/// send a body (or count a vote) anywhere else.
pub fn client(ca: Option<&Certificate>) -> Client {
    // One process-wide crypto provider; installing it again is a no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true);
    let builder = match ca {
        Some(ca) => builder.tls_certs_only([ca.clone()]),
        None => builder,
    };
    builder.build().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot build the TLS client; https ELs will fail");
        Client::builder()
            .redirect(reqwest::redirect::Policy::none())
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

/// What reading an answer's body gave.
enum Read {
    Whole(Bytes),
    TooLarge,
}

/// Reads `response`'s body into one buffer (sized from its Content-Length), refusing it as soon
/// as it is known to pass `limit` bytes: from the header, or from the chunks read so far.
async fn read_bounded(mut response: reqwest::Response, limit: usize) -> reqwest::Result<Read> {
    let declared = response.content_length().unwrap_or(0);
    if declared > limit as u64 {
        return Ok(Read::TooLarge);
    }
    let mut buffer = BytesMut::with_capacity(declared as usize);
    while let Some(chunk) = response.chunk().await? {
        if buffer.len() + chunk.len() > limit {
            return Ok(Read::TooLarge);
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(Read::Whole(buffer.freeze()))
}

impl Transport for Http {
    fn post(&self, body: Bytes, timeout: Duration, max_answer: usize) -> BoxFuture<'static, Timed> {
        let start = Instant::now();
        let request = self
            .client
            .post(self.url.clone())
            .header(AUTHORIZATION, self.minter.bearer())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        Box::pin(async move {
            let reply = tokio::time::timeout(timeout, async {
                let response = request.send().await?;
                let status = response.status();
                Ok::<_, reqwest::Error>(match status {
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                        Reply::AuthRejected(status.as_u16())
                    }
                    _ if status.is_redirection() => Reply::Redirected(status.as_u16()),
                    _ if !status.is_success() => {
                        Reply::Unreachable(format!("HTTP {}", status.as_u16()))
                    }
                    _ => match read_bounded(response, max_answer).await? {
                        Read::Whole(body) => Reply::Body(body),
                        Read::TooLarge => Reply::TooLarge(max_answer),
                    },
                })
            })
            .await
            .unwrap_or(Ok(Reply::Timeout))
            .unwrap_or_else(|e| match error_chain(&e) {
                why if e.is_connect() => Reply::Refused(why),
                why => Reply::Unreachable(why),
            });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_call_that_never_reached_the_el_is_not_taken() {
        let unreachable = |e: &str| Reply::Unreachable(e.to_owned());
        assert!(Reply::Refused("connection failed: Connection refused".into()).never_taken());
        assert!(Reply::AuthRejected(401).never_taken());
        for taken in [
            unreachable("HTTP 500"),
            unreachable("broken response body: reset"),
            Reply::Timeout,
            Reply::Redirected(307),
            Reply::TooLarge(1),
            Reply::Body(Bytes::new()),
        ] {
            assert!(!taken.never_taken(), "{taken:?}");
        }
    }
}
