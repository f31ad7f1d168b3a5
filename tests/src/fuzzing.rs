//! The checks behind eb's fuzz targets (`tests/fuzz`, run with `cargo +nightly fuzz`) and the
//! stable regression test that replays their corpora. Each takes arbitrary bytes, must never
//! panic, and asserts what must hold for any input.

use bytes::Bytes;
use eb::config::{redact, NodeConfig};
use eb::rpc::{parse, Incoming};
use policy_sdk::abi::RECORD_SIZE;
use policy_sdk::{Input, Verdict, Vote};
use std::time::Duration;

/// The JSON-RPC reader: any body is either refused or read into calls whose forwarded bytes are
/// the body itself (single) or a slice of it (batch).
pub fn rpc(data: &[u8]) {
    let body = Bytes::copy_from_slice(data);
    match parse(&body, &body) {
        Ok(Incoming::Single(Ok(call))) => assert_eq!(call.bytes, body),
        Ok(Incoming::Batch(calls)) => {
            assert!(!calls.is_empty() && calls.len() <= eb::rpc::MAX_BATCH);
            for call in calls.iter().flatten() {
                let inside = data
                    .windows(call.bytes.len().max(1))
                    .any(|w| w == &call.bytes[..]);
                assert!(inside, "a batch element's bytes come from the body");
            }
        }
        Ok(Incoming::Single(Err(_))) | Err(_) => {}
    }
}

/// The `--nodes` spec parser: never panics; an accepted spec has an http URL, a timeout within
/// bounds, and a display form without credentials.
pub fn node_spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let defaults = eb::config::NodeDefaults {
        secret: eb::auth::JwtSecret::from_hex(&"11".repeat(32)).expect("hex"),
        timeout: Duration::from_millis(1000),
        straggler: eb::straggler::Straggler::Auto,
        queue: eb::queue::Limits::default(),
        answers: eb::upstream::AnswerLimits::default(),
    };
    if let Ok(node) = NodeConfig::parse(text, &defaults) {
        assert!(
            matches!(node.url.scheme(), "http" | "https"),
            "{}",
            node.url
        );
        assert!(!node.timeout.is_zero() && node.timeout <= eb::route::MAX_EL_TIMEOUT);
        let shown = redact(&node.url);
        if let Some(password) = node.url.password() {
            assert!(
                !shown.contains(password) || shown.contains("***"),
                "{shown}"
            );
        }
        assert!(!shown.contains('?'), "no query in {shown}");
    }
}

/// The ABI: any input is refused or read without panicking; votes re-encode to the same
/// record; any verdict the decoder accepts encodes back to the same `i64`.
pub fn abi(data: &[u8]) {
    if let Ok(input) = Input::parse(data) {
        let _ = input.context();
        let _ = input.config();
        for vote in input.votes() {
            let mut record = [0u8; RECORD_SIZE];
            vote.encode(&mut record);
            assert_eq!(Vote::decode(&record), vote);
        }
        let _ = input.fastest(policy_sdk::Status::Valid);
        let _ = policy_sdk::tally::Tally::of(&input).majority(600);
    }
    if let Some(raw) = data.get(..8) {
        let raw = i64::from_le_bytes(raw.try_into().unwrap_or([0; 8]));
        if let Some(verdict) = Verdict::decode(raw) {
            assert_eq!(verdict.encode(), raw);
        }
    }
}
