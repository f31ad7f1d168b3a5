//! JSON-RPC 2.0 framing: the CL's body → calls (single or batch), and answers back to bytes.
//!
//! Calls borrow from the request body: params are never re-serialised, and the bytes forwarded
//! to the ELs are the CL's own bytes (a zero-copy slice of the body for batch elements).

use crate::error::{Answer, EngineError};
use crate::params::Params;
use bytes::Bytes;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Largest batch eb accepts; a larger one is refused whole with -32600.
pub const MAX_BATCH: usize = 1024;

/// One request, borrowed from the body.
#[derive(Debug)]
pub struct Call<'a> {
    /// The id as sent (number, string or null); `null` when absent.
    pub id: &'a RawValue,
    /// The method name.
    pub method: Cow<'a, str>,
    /// What eb routes on from the params (read in the same pass).
    pub params: Params,
    /// The request's own bytes, to forward unchanged.
    pub bytes: Bytes,
}

/// A body element that is not a valid request; answered with -32600.
#[derive(Debug)]
pub struct Invalid<'a> {
    /// The id, if one could be read.
    pub id: &'a RawValue,
    /// Why it is invalid.
    pub reason: &'static str,
}

impl Invalid<'_> {
    /// The -32600 answer, with the id if one could be read.
    pub fn answer(&self) -> Vec<u8> {
        encode(
            self.id,
            &Err(EngineError::InvalidRequest(self.reason.into())),
        )
    }
}

/// What the CL sent.
#[derive(Debug)]
pub enum Incoming<'a> {
    /// One request object.
    Single(Result<Call<'a>, Invalid<'a>>),
    /// A batch (array) of request objects.
    Batch(Vec<Result<Call<'a>, Invalid<'a>>>),
}

/// Why a body could not be read at all (answered once, with id null).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON (-32700).
    Parse,
    /// Empty batch, too large a batch, or not an object or array (-32600).
    Invalid(&'static str),
}

#[derive(Deserialize)]
struct RawCall<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(default)]
    params: Option<Params>,
}

/// The JSON `null`, as a raw value.
pub fn null() -> &'static RawValue {
    // A constant, valid JSON literal: the conversion cannot fail.
    const NULL: &str = "null";
    serde_json::from_str::<&RawValue>(NULL).unwrap_or_else(|_| unreachable!("null is JSON"))
}

/// Reads one request object from `text`, which is `bytes` (or the part of it to forward).
fn call<'a>(text: &'a [u8], bytes: Bytes) -> Result<Call<'a>, Invalid<'a>> {
    if text.trim_ascii_start().first() != Some(&b'{') {
        return Err(Invalid {
            id: null(),
            reason: "request is not an object",
        });
    }
    let parsed: RawCall<'a> = serde_json::from_slice(text).map_err(|_| Invalid {
        id: null(),
        reason: "malformed request (method must be a string, params an array or an object)",
    })?;
    let id: &'a RawValue = match parsed.id {
        Some(id) => id,
        None => null(),
    };
    if !matches!(
        id.get().as_bytes().first(),
        Some(b'"' | b'n' | b'-' | b'0'..=b'9')
    ) {
        return Err(Invalid {
            id: null(),
            reason: "id must be a number, a string or null",
        });
    }
    let method = parsed.method.ok_or(Invalid {
        id,
        reason: "no method",
    })?;
    Ok(Call {
        id,
        method,
        params: parsed.params.unwrap_or_default(),
        bytes,
    })
}

/// Reads a request body (`text` is `body`'s bytes, borrowed for the calls). serde_json checks
/// UTF-8 where it reads strings, so the body is not validated twice.
pub fn parse<'a>(text: &'a [u8], body: &Bytes) -> Result<Incoming<'a>, BodyError> {
    if text.trim_ascii_start().first() == Some(&b'[') {
        let elements: Vec<&RawValue> =
            serde_json::from_slice(text).map_err(|_| BodyError::Parse)?;
        if elements.is_empty() {
            return Err(BodyError::Invalid("empty batch"));
        }
        if elements.len() > MAX_BATCH {
            return Err(BodyError::Invalid("batch larger than 1024 requests"));
        }
        Ok(Incoming::Batch(
            elements
                .into_iter()
                .map(|raw| call(raw.get().as_bytes(), body.slice_ref(raw.get().as_bytes())))
                .collect(),
        ))
    } else {
        // One pass over the body; only a request that fails is scanned again, to tell
        // "not JSON" (-32700) from "not a request" (-32600).
        match call(text, body.clone()) {
            Err(_) if serde_json::from_slice::<IgnoredAny>(text).is_err() => Err(BodyError::Parse),
            single => Ok(Incoming::Single(single)),
        }
    }
}

/// `{"jsonrpc":"2.0","id":<id>,"<member>":<value>}`, written directly from raw JSON text.
fn envelope(id: &RawValue, member: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + id.get().len() + value.len());
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id.get().as_bytes());
    out.extend_from_slice(b",\"");
    out.extend_from_slice(member);
    out.extend_from_slice(b"\":");
    out.extend_from_slice(value);
    out.push(b'}');
    out
}

/// The answer to one call, with the CL's id: `{"jsonrpc":"2.0","id":<id>,"result":<result>}` or
/// `{…,"error":<error>}`. The only place answers are encoded.
pub fn encode(id: &RawValue, answer: &Answer) -> Vec<u8> {
    match answer {
        Ok(result) => envelope(id, b"result", result),
        Err(error) => envelope(id, b"error", error.to_json().as_bytes()),
    }
}

/// The answer to a body that could not be read as calls (id null).
pub fn refuse(error: &EngineError) -> Vec<u8> {
    encode(null(), &Err(error.clone()))
}

/// The parts of an EL's answer eb looks at.
#[derive(Debug, Deserialize)]
pub struct ElAnswer<'a> {
    /// `id`, as the EL wrote it.
    #[serde(borrow, default)]
    pub id: Option<&'a RawValue>,
    /// `result`, if present (a JSON `null` result is present, as `null`).
    #[serde(borrow, default, deserialize_with = "present")]
    pub result: Option<&'a RawValue>,
    /// `error`, if present and not null.
    #[serde(borrow, default)]
    pub error: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

impl ElAnswer<'_> {
    /// The EL's answer as eb's: its result or its error object, as zero-copy slices of `body`
    /// (the bytes this answer was read from); `None` when it has neither.
    pub fn into_answer(self, body: &Bytes) -> Option<Answer> {
        match (self.result, self.error) {
            (_, Some(error)) => Some(Err(EngineError::Upstream(
                body.slice_ref(error.get().as_bytes()),
            ))),
            (Some(result), None) => Some(Ok(body.slice_ref(result.get().as_bytes()))),
            (None, None) => None,
        }
    }
}

/// One call read from `body`, for tests of the stages that take a [`Call`].
#[cfg(test)]
pub(crate) fn single(body: &Bytes) -> Call<'_> {
    match parse(body, body) {
        Ok(Incoming::Single(Ok(call))) => call,
        _ => panic!("not one valid call: {body:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &'static str) -> Result<Incoming<'static>, BodyError> {
        let body = Bytes::from_static(text.as_bytes());
        parse(text.as_bytes(), &body)
    }

    #[test]
    fn keeps_ids_of_every_type_as_sent() {
        for (text, id) in [
            (
                r#"{"jsonrpc":"2.0","id":7,"method":"eth_chainId","params":[]}"#,
                "7",
            ),
            (
                r#"{"jsonrpc":"2.0","id":"a-1","method":"eth_chainId"}"#,
                r#""a-1""#,
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"eth_chainId"}"#,
                "null",
            ),
            (r#"{"jsonrpc":"2.0","method":"eth_chainId"}"#, "null"),
            (r#"{"id":1.5e3,"method":"x"}"#, "1.5e3"),
        ] {
            match parsed(text) {
                Ok(Incoming::Single(Ok(call))) => {
                    assert_eq!(call.id.get(), id);
                    assert_eq!(call.bytes, text.as_bytes());
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn batch_elements_forward_their_own_bytes() {
        let text = r#"[{"id":1,"method":"a","params":[1]} , {"id":2,"method":"b"}, 3, {"id":4}]"#;
        let Ok(Incoming::Batch(calls)) = parsed(text) else {
            panic!("a batch")
        };
        assert_eq!(calls.len(), 4);
        let first = calls[0].as_ref().expect("valid");
        assert_eq!(
            first.bytes,
            r#"{"id":1,"method":"a","params":[1]}"#.as_bytes()
        );
        assert!(!first.params.has_second);
        assert_eq!(calls[1].as_ref().map(|c| c.method.as_ref()).ok(), Some("b"));
        assert_eq!(
            calls[2].as_ref().err().map(|e| e.reason),
            Some("request is not an object")
        );
        let missing = calls[3].as_ref().expect_err("invalid");
        assert_eq!((missing.id.get(), missing.reason), ("4", "no method"));
    }

    #[test]
    fn refuses_bodies_that_are_not_requests() {
        assert_eq!(parsed("").err(), Some(BodyError::Parse));
        assert_eq!(parsed("{").err(), Some(BodyError::Parse));
        assert_eq!(parsed("[]").err(), Some(BodyError::Invalid("empty batch")));
        assert!(matches!(parsed("42"), Ok(Incoming::Single(Err(_)))));
        assert!(matches!(
            parsed(r#"{"id":{},"method":"x"}"#),
            Ok(Incoming::Single(Err(_)))
        ));
        assert!(matches!(
            parsed(r#"{"id":1,"method":"x","params":3}"#),
            Ok(Incoming::Single(Err(_)))
        ));
        let big = format!("[{}]", vec!["1"; MAX_BATCH + 1].join(","));
        let body = Bytes::from(big.clone());
        assert!(matches!(
            parse(big.as_bytes(), &body),
            Err(BodyError::Invalid(_))
        ));
    }

    #[test]
    fn null_results_are_results() {
        let a: ElAnswer<'_> = serde_json::from_str(r#"{"id":1,"result":null}"#).expect("json");
        assert_eq!(a.result.map(RawValue::get), Some("null"));
        let a: ElAnswer<'_> =
            serde_json::from_str(r#"{"id":1,"error":{"code":-1}}"#).expect("json");
        assert!(a.result.is_none() && a.error.is_some());
    }

    #[test]
    fn encodes_answers_with_the_cl_id() {
        let id = serde_json::from_str::<&RawValue>(r#""x""#).expect("json");
        assert_eq!(
            encode(id, &Ok(Bytes::from_static(b"true"))),
            br#"{"jsonrpc":"2.0","id":"x","result":true}"#
        );
        let e: serde_json::Value =
            serde_json::from_slice(&encode(id, &Err(EngineError::NoAnswer("boom".into()))))
                .expect("json");
        assert_eq!(
            (e["id"].as_str(), &e["error"]["data"]["err"]),
            (Some("x"), &"boom".into())
        );
        let e: serde_json::Value =
            serde_json::from_slice(&refuse(&EngineError::Parse)).expect("json");
        assert_eq!(
            (e["error"]["code"].as_i64(), e["id"].is_null()),
            (Some(-32700), true)
        );
    }

    #[test]
    fn el_answers_become_zero_copy_slices_of_their_body() {
        let body = Bytes::from_static(br#"{"jsonrpc":"2.0","id":9,"result":{"a":[1,2]}}"#);
        let answer: ElAnswer<'_> = serde_json::from_slice(&body).expect("json");
        let Some(Ok(result)) = answer.into_answer(&body) else {
            panic!("a result")
        };
        assert_eq!(&result[..], br#"{"a":[1,2]}"#);
        assert_eq!(result.as_ptr(), body[33..].as_ptr(), "a slice, not a copy");
        let body = Bytes::from_static(br#"{"id":9,"error":{"code":-1,"message":"m"}}"#);
        let answer: ElAnswer<'_> = serde_json::from_slice(&body).expect("json");
        assert!(
            matches!(answer.into_answer(&body), Some(Err(EngineError::Upstream(e))) if &e[..] == br#"{"code":-1,"message":"m"}"#)
        );
    }
}
