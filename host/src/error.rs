//! The one error type of the engine side and its JSON-RPC encoding. Every refusal eb itself
//! answers the CL with is an [`EngineError`]; its code and message are chosen here and nowhere
//! else (as reth maps its engine errors to the spec's codes in one place).

use bytes::Bytes;
use std::borrow::Cow;

/// What the CL is answered instead of a result.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The body is not JSON.
    #[error("Parse error")]
    Parse,
    /// The JSON is not a request, or the body was refused before reading.
    #[error("{0}")]
    InvalidRequest(Cow<'static, str>),
    /// The CL's token was refused (answered with HTTP 401).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// `getPayload` with a payloadId eb does not know (or whose builders are gone).
    #[error("{0}")]
    UnknownPayload(&'static str),
    /// No EL gave a usable answer in time.
    #[error("{0}")]
    NoAnswer(String),
    /// An EL's own JSON-RPC error object, passed on verbatim (its raw JSON text).
    #[error("execution client error")]
    Upstream(Bytes),
}

/// JSON-RPC and Engine API error codes.
pub mod code {
    /// Body is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// JSON is not a request.
    pub const INVALID_REQUEST: i64 = -32600;
    /// Generic server error (the only code that carries `data.err`).
    pub const SERVER_ERROR: i64 = -32000;
    /// getPayload with an unknown payloadId.
    pub const UNKNOWN_PAYLOAD: i64 = -38001;
}

impl EngineError {
    /// The JSON-RPC code (for an EL's own error: the code it sent, if readable).
    pub fn code(&self) -> Option<i64> {
        Some(match self {
            EngineError::Parse => code::PARSE_ERROR,
            EngineError::InvalidRequest(_) => code::INVALID_REQUEST,
            EngineError::Unauthorized(_) | EngineError::NoAnswer(_) => code::SERVER_ERROR,
            EngineError::UnknownPayload(_) => code::UNKNOWN_PAYLOAD,
            EngineError::Upstream(raw) => return error_code(raw),
        })
    }

    /// The error object as JSON text: `{code, message}`, plus `data.err` for -32000 as the spec
    /// asks; an EL's own error object unchanged.
    pub fn to_json(&self) -> Cow<'_, str> {
        let code = match self {
            EngineError::Upstream(raw) => return String::from_utf8_lossy(raw),
            other => other.code().unwrap_or(code::SERVER_ERROR),
        };
        let message = self.to_string();
        let object = if code == code::SERVER_ERROR {
            serde_json::json!({"code": code, "message": message, "data": {"err": message}})
        } else {
            serde_json::json!({"code": code, "message": message})
        };
        Cow::Owned(object.to_string())
    }
}

/// The code of a JSON-RPC error object (its JSON text).
pub fn error_code(error: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Code {
        code: i64,
    }
    serde_json::from_slice::<Code>(error).ok().map(|c| c.code)
}

/// What eb answers one call with: the raw JSON text of a `result` (often a zero-copy slice of an
/// EL's answer), or an error.
pub type Answer = Result<Bytes, EngineError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_code_and_server_errors_carry_data_err() {
        let cases = [
            (EngineError::Parse, -32700),
            (EngineError::InvalidRequest("no method".into()), -32600),
            (EngineError::Unauthorized("no token".into()), -32000),
            (EngineError::UnknownPayload("Unknown payload"), -38001),
            (
                EngineError::NoAnswer("no execution client answered".into()),
                -32000,
            ),
        ];
        for (error, code) in cases {
            let value: serde_json::Value = serde_json::from_str(&error.to_json()).expect("json");
            assert_eq!(value["code"], code, "{error:?}");
            assert_eq!(value["message"], error.to_string());
            assert_eq!(
                value["data"]["err"].is_string(),
                code == -32000,
                "{error:?}"
            );
        }
        let el = EngineError::Upstream(Bytes::from_static(br#"{"code":-38005,"message":"x"}"#));
        assert_eq!(el.code(), Some(-38005));
        assert_eq!(el.to_json(), r#"{"code":-38005,"message":"x"}"#);
    }
}
