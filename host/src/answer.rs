//! The answer the CL gets: the followed EL's result verbatim (with eb's payloadId for a build),
//! or a synthetic SYNCING. Always JSON-RPC with the CL's own id.

use crate::fanout::Collected;
use crate::rpc;
use policy_sdk::{Method, Outcome, Status, Verdict};
use serde_json::value::RawValue;

/// `PayloadStatus` SYNCING for `method` version `version` (V2 shape from newPayloadV6 and
/// forkchoiceUpdatedV5 on, which adds `inclusionListSatisfied`).
pub fn syncing_result(method: Method, version: u8) -> &'static str {
    match (method, version) {
        (Method::NewPayload, v) if v >= 6 => {
            r#"{"status":"SYNCING","latestValidHash":null,"validationError":null,"inclusionListSatisfied":null}"#
        }
        (Method::NewPayload, _) => {
            r#"{"status":"SYNCING","latestValidHash":null,"validationError":null}"#
        }
        (_, v) if v >= 5 => {
            r#"{"payloadStatus":{"status":"SYNCING","latestValidHash":null,"validationError":null,"inclusionListSatisfied":null},"payloadId":null}"#
        }
        _ => {
            r#"{"payloadStatus":{"status":"SYNCING","latestValidHash":null,"validationError":null},"payloadId":null}"#
        }
    }
}

/// The answer for a fanned-out call. `payload_id` is eb's id for a build the policy accepted.
pub fn answer(
    id: &RawValue,
    collected: &Collected,
    method: Method,
    version: u8,
    payload_id: Option<&str>,
) -> Vec<u8> {
    let received = &collected.collector.received;
    if let Verdict::Follow { vote, .. } = collected.decision.verdict {
        if let Some(result) = received
            .get(usize::from(vote))
            .and_then(|r| r.result.as_deref())
        {
            if method == Method::ForkchoiceUpdatedWithAttributes {
                return rpc::result(id, &with_payload_id(result.get(), payload_id));
            }
            return rpc::result(id, result.get());
        }
    }
    // Every EL refused the call with the same JSON-RPC error (a malformed request, an
    // unsupported fork): that error is the answer, not SYNCING, so the CL does not import.
    let first_error = received.first().and_then(|r| r.error.as_deref());
    let unanimous = !received.is_empty()
        && received.iter().all(|r| {
            r.vote.outcome == Outcome::RpcError
                && r.vote.rpc_error_code == received[0].vote.rpc_error_code
        });
    match first_error {
        Some(error) if unanimous && collected.decision.fault.is_none() => {
            rpc::error_raw(id, error.get())
        }
        _ => rpc::result(id, syncing_result(method, version)),
    }
}

/// A forkchoiceUpdated result with `payloadId` replaced by eb's own id (null unless VALID).
pub fn with_payload_id(result: &str, payload_id: Option<&str>) -> String {
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(result) else {
        return result.to_owned();
    };
    let valid = value["payloadStatus"]["status"] == Status::Valid.name();
    if let Some(object) = value.as_object_mut() {
        let id = payload_id
            .filter(|_| valid)
            .map_or(serde_json::Value::Null, |p| p.into());
        object.insert("payloadId".to_owned(), id);
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncing_results_are_valid_json_of_the_right_shape() {
        for (method, version, has_status_object, v2) in [
            (Method::NewPayload, 4, false, false),
            (Method::NewPayload, 6, false, true),
            (Method::ForkchoiceUpdated, 3, true, false),
            (Method::ForkchoiceUpdatedWithAttributes, 5, true, true),
        ] {
            let value: serde_json::Value =
                serde_json::from_str(syncing_result(method, version)).expect("json");
            let status = if has_status_object {
                &value["payloadStatus"]
            } else {
                &value
            };
            assert_eq!(status["status"], "SYNCING");
            assert!(status["latestValidHash"].is_null());
            assert_eq!(status.get("inclusionListSatisfied").is_some(), v2);
            if has_status_object {
                assert!(value["payloadId"].is_null());
            }
        }
    }

    #[test]
    fn payload_id_is_rewritten_only_for_valid_builds() {
        let valid = serde_json::from_str::<&RawValue>(
            r#"{"payloadStatus":{"status":"VALID","latestValidHash":"0x01","validationError":null},"payloadId":"0xaaaa"}"#,
        )
        .expect("json");
        let out: serde_json::Value =
            serde_json::from_str(&with_payload_id(valid.get(), Some("0x00000000000000ff")))
                .expect("json");
        assert_eq!(out["payloadId"], "0x00000000000000ff");
        assert_eq!(out["payloadStatus"]["latestValidHash"], "0x01");
        let syncing = serde_json::from_str::<&RawValue>(
            r#"{"payloadStatus":{"status":"SYNCING","latestValidHash":null,"validationError":null},"payloadId":"0xaaaa"}"#,
        )
        .expect("json");
        let out: serde_json::Value =
            serde_json::from_str(&with_payload_id(syncing.get(), Some("0x00000000000000ff")))
                .expect("json");
        assert!(out["payloadId"].is_null());
    }
}
