//! The routing table: every method eb can be asked, what it does with it, and how long the CL
//! waits (the timeouts of the Engine API spec, `src/engine/common.md` in ethereum/execution-apis).
//!
//! Matching is by method family, not by exact version, so `engine_newPayloadV7` routes as a vote
//! without a code change.

use crate::params::Params;
use policy_sdk::VoteKind;
use std::time::Duration;

/// What eb does with a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// State-changing: every EL, in order; votes → policy → answer. A forkchoiceUpdated with
    /// payload attributes is the kind `ForkchoiceUpdatedWithAttributes` (a build).
    Vote(VoteKind),
    /// `engine_getPayloadV*`: to the EL(s) that built the payload, with their own ids.
    ByPayloadId,
    /// `engine_exchangeCapabilities`: every EL, intersection of their lists.
    Capabilities,
    /// `engine_getClientVersionV*`: every EL, all entries in one flat array.
    ClientVersions,
    /// `eth_sendRawTransaction`: every EL (so any builder has the transaction), primary's answer.
    Broadcast,
    /// `engine_getBlobsV*`: the primary, and the other ELs for the blobs it lacks.
    Blobs,
    /// Everything else: the primary EL, then the next healthy one on failure.
    Primary,
}

/// Time eb keeps for itself between the last EL deadline and the CL's.
pub const MARGIN: Duration = Duration::from_millis(500);
/// Longest any EL may be given (the longest CL deadline minus [`MARGIN`]).
pub const MAX_EL_TIMEOUT: Duration = Duration::from_millis(7_500);

/// The version suffix of `method` when it is `<family>V<n>`.
fn version_of(method: &str, family: &str) -> Option<u8> {
    method.strip_prefix(family)?.strip_prefix('V')?.parse().ok()
}

/// Routes `method` with its `params`; the second value is its version suffix (0 when it has
/// none).
pub fn route(method: &str, params: &Params) -> (Route, u8) {
    let families = [
        ("engine_newPayload", Route::Vote(VoteKind::NewPayload)),
        (
            "engine_forkchoiceUpdated",
            Route::Vote(VoteKind::ForkchoiceUpdated),
        ),
        ("engine_getPayload", Route::ByPayloadId),
        ("engine_getClientVersion", Route::ClientVersions),
        ("engine_getBlobs", Route::Blobs),
    ];
    for (family, route) in families {
        if let Some(version) = version_of(method, family) {
            let route = match route {
                Route::Vote(VoteKind::ForkchoiceUpdated) if params.has_second => {
                    Route::Vote(VoteKind::ForkchoiceUpdatedWithAttributes)
                }
                other => other,
            };
            return (route, version);
        }
    }
    match method {
        "engine_exchangeCapabilities" => (Route::Capabilities, 0),
        "eth_sendRawTransaction" => (Route::Broadcast, 0),
        _ => (Route::Primary, 0),
    }
}

/// How long the CL waits for `method` (the spec's minimum; unknown methods get 8 s).
pub fn cl_deadline(method: &str) -> Duration {
    let secs = |s| Duration::from_secs(s);
    if let Some(v) = version_of(method, "engine_newPayload") {
        return if v >= 5 { secs(6) } else { secs(8) };
    }
    let one_second = [
        "engine_getPayload",
        "engine_getBlobs",
        "engine_getClientVersion",
        "engine_exchangeTransitionConfiguration",
        "engine_getInclusionList",
    ];
    if one_second.iter().any(|f| version_of(method, f).is_some())
        || method == "engine_exchangeCapabilities"
    {
        return secs(1);
    }
    if [
        "engine_getPayloadBodiesByHash",
        "engine_getPayloadBodiesByRange",
    ]
    .iter()
    .any(|f| version_of(method, f).is_some())
    {
        return secs(10);
    }
    secs(8)
}

/// The time eb has to answer `method`: the CL's deadline minus [`MARGIN`], or minus a fifth of
/// it for the 1-second calls.
pub fn budget(method: &str) -> Duration {
    let deadline = cl_deadline(method);
    deadline - MARGIN.min(deadline / 5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_every_method_family_through_the_newest_fork() {
        let table = [
            ("engine_newPayloadV1", Route::Vote(VoteKind::NewPayload), 1),
            ("engine_newPayloadV6", Route::Vote(VoteKind::NewPayload), 6),
            ("engine_newPayloadV7", Route::Vote(VoteKind::NewPayload), 7),
            (
                "engine_forkchoiceUpdatedV3",
                Route::Vote(VoteKind::ForkchoiceUpdated),
                3,
            ),
            (
                "engine_forkchoiceUpdatedV5",
                Route::Vote(VoteKind::ForkchoiceUpdated),
                5,
            ),
            ("engine_getPayloadV6", Route::ByPayloadId, 6),
            ("engine_getPayloadBodiesByHashV2", Route::Primary, 0),
            ("engine_getPayloadBodiesByRangeV1", Route::Primary, 0),
            ("engine_getBlobsV2", Route::Blobs, 2),
            ("engine_getBlobsV4", Route::Blobs, 4),
            ("engine_getInclusionListV1", Route::Primary, 0),
            ("engine_exchangeCapabilities", Route::Capabilities, 0),
            ("engine_getClientVersionV1", Route::ClientVersions, 1),
            (
                "engine_exchangeTransitionConfigurationV1",
                Route::Primary,
                0,
            ),
            ("eth_sendRawTransaction", Route::Broadcast, 0),
            ("eth_blockNumber", Route::Primary, 0),
            ("engine_somethingNewV1", Route::Primary, 0),
            ("engine_newPayload", Route::Primary, 0),
            ("engine_newPayloadVx", Route::Primary, 0),
        ];
        let none = Params::default();
        for (method, expected, version) in table {
            assert_eq!(route(method, &none), (expected, version), "{method}");
        }
        let attributes = Params {
            has_second: true,
            ..Params::default()
        };
        assert_eq!(
            route("engine_forkchoiceUpdatedV3", &attributes),
            (Route::Vote(VoteKind::ForkchoiceUpdatedWithAttributes), 3)
        );
        assert_eq!(
            route("engine_newPayloadV4", &attributes),
            (Route::Vote(VoteKind::NewPayload), 4),
            "newPayload's later params are not attributes"
        );
    }

    #[test]
    fn deadlines_follow_the_spec() {
        let s = Duration::from_secs;
        let table = [
            ("engine_newPayloadV4", s(8)),
            ("engine_newPayloadV5", s(6)),
            ("engine_newPayloadV9", s(6)),
            ("engine_forkchoiceUpdatedV5", s(8)),
            ("engine_getPayloadV6", s(1)),
            ("engine_getBlobsV2", s(1)),
            ("engine_getPayloadBodiesByRangeV2", s(10)),
            ("engine_exchangeCapabilities", s(1)),
            ("engine_getClientVersionV1", s(1)),
            ("engine_getInclusionListV1", s(1)),
            ("eth_getBlockByNumber", s(8)),
        ];
        for (method, deadline) in table {
            assert_eq!(cl_deadline(method), deadline, "{method}");
        }
        assert_eq!(budget("engine_newPayloadV4"), Duration::from_millis(7500));
        assert_eq!(budget("engine_getPayloadV4"), Duration::from_millis(800));
        assert_eq!(budget("engine_newPayloadV5"), Duration::from_millis(5500));
        assert_eq!(budget("engine_newPayloadV4"), MAX_EL_TIMEOUT);
    }
}
