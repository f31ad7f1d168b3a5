//! The Engine API endpoint the CL talks to: auth → body → JSON-RPC (single or batch) →
//! dispatch. Every answer is JSON-RPC JSON with the CL's id, including refusals.

use crate::app::App;
use crate::rpc::{self, code, BodyError, Incoming};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use std::sync::Arc;

/// The engine router (no socket: tests drive it with `oneshot`).
pub fn router(app: Arc<App>) -> Router {
    let limit = app.max_body;
    Router::new()
        .route("/", post(handle))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn handle(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Err(e) = app.verifier.verify(authorization) {
        tracing::warn!(reason = %e, "CL request refused");
        return json(
            StatusCode::UNAUTHORIZED,
            rpc::error(
                rpc::null(),
                code::SERVER_ERROR,
                &format!("unauthorized: {e}"),
            ),
        );
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("request body larger than {} MiB", app.max_body >> 20)
            } else {
                rejection.body_text()
            };
            return json(
                status,
                rpc::error(rpc::null(), code::INVALID_REQUEST, &message),
            );
        }
    };
    let answer = match rpc::parse(&body, &body) {
        Err(BodyError::Parse) => rpc::error(rpc::null(), code::PARSE_ERROR, "Parse error"),
        Err(BodyError::Invalid(reason)) => rpc::error(rpc::null(), code::INVALID_REQUEST, reason),
        Ok(Incoming::Single(Ok(call))) => app.dispatch(&call).await,
        Ok(Incoming::Single(Err(invalid))) => {
            rpc::error(invalid.id, code::INVALID_REQUEST, invalid.reason)
        }
        Ok(Incoming::Batch(items)) => {
            // Futures are first polled in batch order, so state-changing calls are queued to
            // every EL in the order the CL listed them.
            let answers = futures_util::future::join_all(items.iter().map(|item| async {
                match item {
                    Ok(call) => app.dispatch(call).await,
                    Err(invalid) => rpc::error(invalid.id, code::INVALID_REQUEST, invalid.reason),
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
