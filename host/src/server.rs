//! The Engine API endpoint the CL talks to: auth (from the headers, before any of the body is
//! read) → body (bounded in size and time) → JSON-RPC (single or batch) → dispatch. Every
//! answer is JSON-RPC JSON with the CL's id, including refusals.

use crate::auth::Verifier;
use crate::dispatch::Engine;
use crate::error::EngineError;
use crate::rpc::{self, BodyError, Incoming};
use crate::serve::Trust;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::sync::Arc;
use std::time::Duration;

/// What the endpoint needs: the CL's token check, the body's bounds, and the engine.
pub struct Endpoint {
    /// Checks the CL's tokens.
    pub verifier: Verifier,
    /// Largest CL request body, in bytes.
    pub max_body: usize,
    /// Time the CL has to send the whole body once its headers are in.
    pub body_timeout: Duration,
    /// Answers the calls.
    pub engine: Engine,
}

/// The engine router (no socket: it can be driven with `tower::ServiceExt::oneshot`).
pub fn router(endpoint: Arc<Endpoint>) -> Router {
    Router::new().route("/", post(handle)).with_state(endpoint)
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn refusal(status: StatusCode, error: &EngineError) -> Response {
    json(status, rpc::refuse(error))
}

/// The request body, or the refusal to answer instead: past `limit` bytes (from
/// Content-Length before reading, or while reading), not complete within `timeout`, or broken.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, Response> {
    let too_large = || {
        let message = format!("request body larger than {} MiB", limit >> 20);
        refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            &EngineError::InvalidRequest(message.into()),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => {
            let message = format!("cannot read the request body: {e}");
            Err(refusal(
                StatusCode::BAD_REQUEST,
                &EngineError::InvalidRequest(message.into()),
            ))
        }
        Err(_) => {
            let message = format!(
                "request body not received within {} ms",
                timeout.as_millis()
            );
            Err(refusal(
                StatusCode::REQUEST_TIMEOUT,
                &EngineError::InvalidRequest(message.into()),
            ))
        }
    }
}

async fn handle(State(endpoint): State<Arc<Endpoint>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Err(e) = endpoint.verifier.verify(authorization) {
        tracing::warn!(reason = %e, "CL request refused");
        // Nothing of the body is read: the connection closes after this answer.
        let refused = EngineError::Unauthorized(e.to_string());
        return refusal(StatusCode::UNAUTHORIZED, &refused);
    }
    if let Some(trust) = parts.extensions.get::<Arc<Trust>>() {
        trust.mark();
    }
    let body = match read_body(
        &parts.headers,
        body,
        endpoint.max_body,
        endpoint.body_timeout,
    )
    .await
    {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let engine = &endpoint.engine;
    let answer = match rpc::parse(&body, &body) {
        Err(BodyError::Parse) => rpc::refuse(&EngineError::Parse),
        Err(BodyError::Invalid(reason)) => rpc::refuse(&EngineError::InvalidRequest(reason.into())),
        Ok(Incoming::Single(Ok(call))) => engine.dispatch(&call).await,
        Ok(Incoming::Single(Err(invalid))) => invalid.answer(),
        Ok(Incoming::Batch(items)) => {
            // Futures are first polled in batch order, so state-changing calls are queued to
            // every EL in the order the CL listed them.
            let answers = futures_util::future::join_all(items.iter().map(|item| async {
                match item {
                    Ok(call) => engine.dispatch(call).await,
                    Err(invalid) => invalid.answer(),
                }
            }))
            .await;
            let mut out =
                Vec::with_capacity(answers.iter().map(|a| a.len() + 1).sum::<usize>() + 2);
            out.push(b'[');
            for (i, answer) in answers.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(answer);
            }
            out.push(b']');
            out
        }
    };
    json(StatusCode::OK, answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{JwtSecret, Minter};
    use crate::cli::GetPayloadMode;
    use crate::cluster::Cluster;
    use crate::metrics::Metrics;
    use crate::nodes::testing;
    use crate::policy::PolicySlot;
    use axum::body::Body;
    use axum::http::Request;
    use std::time::Duration;
    use tower::ServiceExt;

    /// The router over one scripted EL that answers every call with `true`, no socket.
    fn app(secret: &JwtSecret) -> Router {
        let nodes = testing::nodes(
            &[testing::answering(Duration::ZERO, "true")],
            Duration::from_secs(1),
        );
        let metrics = Arc::new(Metrics::default());
        let policy = Arc::new(PolicySlot::embedded(Arc::clone(&metrics)));
        let cluster = Arc::new(Cluster::standalone("test", Arc::clone(&metrics)));
        let engine = Engine::new(
            nodes,
            policy,
            metrics,
            None,
            GetPayloadMode::PrimaryFirst,
            cluster,
        );
        router(Arc::new(Endpoint {
            verifier: Verifier::new(secret),
            max_body: 1 << 10,
            body_timeout: Duration::from_secs(1),
            engine,
        }))
    }

    async fn post(
        router: Router,
        token: Option<String>,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let mut request = Request::post("/").header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, token);
        }
        let response = router
            .oneshot(request.body(Body::from(body.to_owned())).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).expect("JSON answer"))
    }

    #[tokio::test]
    async fn refusals_and_batches_are_json_rpc_with_the_right_status() {
        let secret = JwtSecret::from_hex(&"42".repeat(32)).expect("hex");
        let token = || Some(Minter::new(&secret).bearer());
        let call = r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#;

        let (status, answer) = post(app(&secret), None, call).await;
        assert_eq!(
            (status, &answer["error"]["code"]),
            (StatusCode::UNAUTHORIZED, &(-32000).into())
        );
        let forged =
            Some(Minter::new(&JwtSecret::from_hex(&"43".repeat(32)).expect("hex")).bearer());
        assert_eq!(
            post(app(&secret), forged, call).await.0,
            StatusCode::UNAUTHORIZED
        );

        let (status, answer) = post(app(&secret), token(), call).await;
        assert_eq!(
            (status, &answer["id"], &answer["result"]),
            (StatusCode::OK, &1.into(), &true.into())
        );

        let batch = format!(r#"[{call}, {{"id":"b"}}, 3]"#);
        let (_, answers) = post(app(&secret), token(), &batch).await;
        assert_eq!(answers[0]["result"], true);
        assert_eq!(
            (&answers[1]["id"], &answers[1]["error"]["code"]),
            (&"b".into(), &(-32600).into())
        );
        assert_eq!(answers[2]["error"]["code"], -32600);

        assert_eq!(
            post(app(&secret), token(), "{nope").await.1["error"]["code"],
            -32700
        );
        let (status, answer) = post(app(&secret), token(), &"x".repeat(2048)).await;
        assert_eq!(
            (status, &answer["error"]["code"]),
            (StatusCode::PAYLOAD_TOO_LARGE, &(-32600).into())
        );
    }
}
