//! The answer the CL gets for a state-changing call, rendered from its [`Settled`] verdict: the
//! followed EL's result verbatim (with eb's payloadId for a build), the remembered answer, a
//! synthetic SYNCING of the method version's shape, or the ELs' unanimous error.

use crate::error::{Answer, EngineError};
use crate::verdict::Settled;
use bytes::Bytes;
use policy_sdk::{Status, VoteKind};

/// `PayloadStatus` SYNCING for `method` version `version` (V2 shape from newPayloadV6 and
/// forkchoiceUpdatedV5 on, which adds `inclusionListSatisfied`).
pub fn syncing_result(method: VoteKind, version: u8) -> &'static str {
    match (method, version) {
        (VoteKind::NewPayload, v) if v >= 6 => {
            r#"{"status":"SYNCING","latestValidHash":null,"validationError":null,"inclusionListSatisfied":null}"#
        }
        (VoteKind::NewPayload, _) => {
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

/// The answer for a settled state-changing call of `kind`, version `version`.
pub fn render(settled: Settled, kind: VoteKind, version: u8) -> Answer {
    let build = kind == VoteKind::ForkchoiceUpdatedWithAttributes;
    match settled {
        Settled::Follow {
            result, payload_id, ..
        }
        | Settled::Remembered {
            result, payload_id, ..
        } if build => Ok(with_payload_id(&result, payload_id.as_deref())),
        // A head remembered from a build carries that EL's own payloadId: not this call's.
        Settled::Remembered { result, .. } if kind != VoteKind::NewPayload => {
            Ok(with_payload_id(&result, None))
        }
        Settled::Follow { result, .. } | Settled::Remembered { result, .. } => Ok(result),
        Settled::Syncing => Ok(Bytes::from_static(syncing_result(kind, version).as_bytes())),
        Settled::UnanimousError(error) => Err(EngineError::Upstream(error)),
    }
}

/// A forkchoiceUpdated result with `payloadId` replaced by eb's own id (null unless VALID).
fn with_payload_id(result: &Bytes, payload_id: Option<&str>) -> Bytes {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(result) else {
        return result.clone();
    };
    let valid = value["payloadStatus"]["status"] == Status::Valid.name();
    if let Some(object) = value.as_object_mut() {
        let id = payload_id
            .filter(|_| valid)
            .map_or(serde_json::Value::Null, |p| p.into());
        object.insert("payloadId".to_owned(), id);
    }
    Bytes::from(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncing_results_are_valid_json_of_the_right_shape() {
        for (method, version, has_status_object, v2) in [
            (VoteKind::NewPayload, 4, false, false),
            (VoteKind::NewPayload, 6, false, true),
            (VoteKind::ForkchoiceUpdated, 3, true, false),
            (VoteKind::ForkchoiceUpdatedWithAttributes, 5, true, true),
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
        let build = VoteKind::ForkchoiceUpdatedWithAttributes;
        let valid = Bytes::from_static(
            br#"{"payloadStatus":{"status":"VALID","latestValidHash":"0x01","validationError":null},"payloadId":"0xaaaa"}"#,
        );
        let follow = |status: Status, result: &Bytes| Settled::Follow {
            status,
            result: result.clone(),
            payload_id: Some("0x00000000000000ff".into()),
        };
        let json = |answer: Answer| -> serde_json::Value {
            serde_json::from_slice(&answer.expect("a result")).expect("json")
        };
        let out = json(render(follow(Status::Valid, &valid), build, 3));
        assert_eq!(out["payloadId"], "0x00000000000000ff");
        assert_eq!(out["payloadStatus"]["latestValidHash"], "0x01");
        let remembered = |payload_id: Option<&str>| {
            json(render(
                Settled::Remembered {
                    status: Status::Valid,
                    result: valid.clone(),
                    payload_id: payload_id.map(str::to_owned),
                },
                build,
                3,
            ))
        };
        assert!(
            remembered(None)["payloadId"].is_null(),
            "no build started: null, not the EL's own id"
        );
        assert_eq!(
            remembered(Some("0x0000000000000001"))["payloadId"],
            "0x0000000000000001"
        );
        let syncing = Bytes::from_static(
            br#"{"payloadStatus":{"status":"SYNCING","latestValidHash":null,"validationError":null},"payloadId":"0xaaaa"}"#,
        );
        assert!(json(render(follow(Status::Syncing, &syncing), build, 3))["payloadId"].is_null());
        let plain = render(
            follow(Status::Valid, &valid),
            VoteKind::ForkchoiceUpdated,
            3,
        )
        .expect("result");
        assert_eq!(plain, valid, "verbatim when not a build");
        let plain_remembered = render(
            Settled::Remembered {
                status: Status::Valid,
                result: valid.clone(),
                payload_id: None,
            },
            VoteKind::ForkchoiceUpdated,
            3,
        );
        assert!(
            json(plain_remembered)["payloadId"].is_null(),
            "a head remembered from a build does not hand its EL's id to a plain call"
        );
        let payload = Bytes::from_static(br#"{"status":"VALID","latestValidHash":"0x01"}"#);
        let remembered_payload = Settled::Remembered {
            status: Status::Valid,
            result: payload.clone(),
            payload_id: None,
        };
        assert_eq!(
            render(remembered_payload, VoteKind::NewPayload, 4).expect("result"),
            payload,
            "a newPayload answer is verbatim"
        );
        let error = Bytes::from_static(br#"{"code":-38005,"message":"Unsupported fork"}"#);
        assert_eq!(
            render(
                Settled::UnanimousError(error.clone()),
                VoteKind::NewPayload,
                4
            ),
            Err(EngineError::Upstream(error))
        );
    }
}
