//! The promises every simulated run must keep, each a function over the finished [`Run`]
//! returning what broke it. The ELs' side comes from what the simulated ELs logged (their own
//! parsing), eb's side from its answers and its vote recording.

use super::trace::Event;
use super::world::{CallKind, ClCall, Run};
use eb::route::cl_deadline;
use eb::straggler::CAP;
use policy_sdk::fixture::Action;
use policy_sdk::rules::DEFAULT_PERMILLE;
use policy_sdk::tally::threshold;
use serde_json::Value;
use std::collections::HashMap;

/// A broken promise: which, and about what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The property's function name.
    pub property: &'static str,
    /// The call it is about (index into [`Run::calls`]), if one.
    pub call: Option<usize>,
    /// What happened.
    pub detail: String,
}

/// A property: what in a run breaks it.
pub type Property = fn(&Run) -> Vec<Violation>;

/// Every property, in the order they are checked.
pub const PROPERTIES: [(&str, Property); 10] = [
    (
        "never_valid_beside_a_counted_invalid",
        never_valid_beside_a_counted_invalid,
    ),
    (
        "a_final_answer_is_never_turned_around",
        a_final_answer_is_never_turned_around,
    ),
    ("a_policy_fault_is_syncing", a_policy_fault_is_syncing),
    (
        "an_invalid_answer_carries_an_els_latest_valid_hash",
        an_invalid_answer_carries_an_els_latest_valid_hash,
    ),
    (
        "no_answer_is_later_than_the_cl_deadline",
        no_answer_is_later_than_the_cl_deadline,
    ),
    (
        "a_quorum_in_time_is_answered_within_the_straggler_cap",
        a_quorum_in_time_is_answered_within_the_straggler_cap,
    ),
    (
        "each_el_gets_state_changing_calls_in_cl_order_at_most_once",
        each_el_gets_state_changing_calls_in_cl_order_at_most_once,
    ),
    (
        "every_call_is_delivered_or_counted_as_dropped",
        every_call_is_delivered_or_counted_as_dropped,
    ),
    (
        "queues_stay_within_their_limits",
        queues_stay_within_their_limits,
    ),
    (
        "a_build_is_served_only_by_its_builders_on_its_head",
        a_build_is_served_only_by_its_builders_on_its_head,
    ),
];

/// Checks every property of `run`.
pub fn check(run: &Run) -> Vec<Violation> {
    PROPERTIES.iter().flat_map(|(_, p)| p(run)).collect()
}

fn violation(property: &'static str, call: Option<usize>, detail: String) -> Violation {
    Violation {
        property,
        call,
        detail,
    }
}

fn is_vote(call: &ClCall) -> bool {
    matches!(
        call.kind,
        CallKind::NewPayload | CallKind::Forkchoice | CallKind::Build
    )
}

/// The payload status of a vote answer (newPayload's result, or forkchoiceUpdated's
/// `payloadStatus`), if it is one.
pub fn payload_status(kind: CallKind, answer: &Value) -> Option<&Value> {
    let result = answer.get("result")?;
    let status = match kind {
        CallKind::NewPayload => result,
        _ => result.get("payloadStatus")?,
    };
    status.get("status").is_some().then_some(status)
}

/// The status eb answered a vote call with (`None`: an error).
pub fn answered_status(call: &ClCall) -> Option<&str> {
    payload_status(call.kind, &call.answer)?["status"].as_str()
}

/// Each EL's answers to CL call `index`: (EL, ms from the CL's call, the answer's JSON).
pub fn el_answers(run: &Run, index: usize) -> Vec<(usize, u64, Value)> {
    let call = &run.calls[index];
    let received: Vec<usize> = run
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::Received { body, .. } if *body == call.body))
        .map(|(i, _)| i)
        .collect();
    run.events
        .iter()
        .filter_map(|e| match e {
            Event::Answered {
                el,
                at_ms,
                call: r,
                text,
            } if received.contains(r) => Some((
                *el,
                at_ms.saturating_sub(call.sent_ms),
                serde_json::from_str(text).unwrap_or(Value::Null),
            )),
            _ => None,
        })
        .collect()
}

/// Safety: eb never answers VALID while the ballot it decided held a counted INVALID (an
/// answer, in time, from an EL that is not `#do-not-use`).
pub fn never_valid_beside_a_counted_invalid(run: &Run) -> Vec<Violation> {
    let mut out = Vec::new();
    for (i, call) in run.calls.iter().enumerate().filter(|(_, c)| is_vote(c)) {
        if answered_status(call) != Some("VALID") {
            continue;
        }
        let Some(case) = run
            .recordings
            .iter()
            .find(|c| c.request_id.as_deref() == Some(&call.id))
        else {
            out.push(violation(
                "never_valid_beside_a_counted_invalid",
                Some(i),
                "answered VALID, but eb recorded no decision for it".into(),
            ));
            continue;
        };
        let invalid = case
            .votes
            .iter()
            .find(|v| !v.late && !v.do_not_use && v.status.starts_with("INVALID"));
        if let Some(vote) = invalid {
            out.push(violation(
                "never_valid_beside_a_counted_invalid",
                Some(i),
                format!(
                    "answered VALID beside EL {}'s counted {}",
                    vote.node, vote.status
                ),
            ));
        }
    }
    out
}

/// Safety: once eb answered VALID or INVALID for a block (as a payload, or as a head), it never
/// answers the opposite for it.
pub fn a_final_answer_is_never_turned_around(run: &Run) -> Vec<Violation> {
    let mut first: HashMap<(bool, &str), (usize, &str)> = HashMap::new();
    let mut out = Vec::new();
    for (i, call) in run.calls.iter().enumerate().filter(|(_, c)| is_vote(c)) {
        let (Some(hash), Some(status)) = (call.hash.as_deref(), answered_status(call)) else {
            continue;
        };
        let status = if status.starts_with("INVALID") {
            "INVALID"
        } else {
            status
        };
        if status != "VALID" && status != "INVALID" {
            continue;
        }
        let key = (call.kind == CallKind::NewPayload, hash);
        match first.get(&key) {
            Some(&(before, earlier)) if earlier != status => out.push(violation(
                "a_final_answer_is_never_turned_around",
                Some(i),
                format!("answered {status}, after {earlier} for the same block at call {before}"),
            )),
            Some(_) => {}
            None => {
                first.insert(key, (i, status));
            }
        }
    }
    out
}

/// Safety: a decision the policy faulted on (or a host fault) is answered SYNCING.
pub fn a_policy_fault_is_syncing(run: &Run) -> Vec<Violation> {
    let fault = policy_sdk::abi::REASON_HOST_FAULT;
    run.recordings
        .iter()
        .filter(|case| case.expect.reason == Some(fault))
        .filter_map(|case| {
            let i = run
                .calls
                .iter()
                .position(|c| case.request_id.as_deref() == Some(&c.id))?;
            let status = answered_status(&run.calls[i]);
            (case.expect.action != Action::Syncing || status.is_some_and(|s| s != "SYNCING")).then(
                || {
                    violation(
                        "a_policy_fault_is_syncing",
                        Some(i),
                        format!("a faulted decision answered {status:?}"),
                    )
                },
            )
        })
        .collect()
}

/// Safety: an INVALID answer's `latestValidHash` is one an EL gave for that block.
pub fn an_invalid_answer_carries_an_els_latest_valid_hash(run: &Run) -> Vec<Violation> {
    let mut out = Vec::new();
    for (i, call) in run.calls.iter().enumerate().filter(|(_, c)| is_vote(c)) {
        let Some(status) = payload_status(call.kind, &call.answer) else {
            continue;
        };
        if !status["status"]
            .as_str()
            .unwrap_or("")
            .starts_with("INVALID")
        {
            continue;
        }
        let lvh = &status["latestValidHash"];
        // Any EL's INVALID for the same block and kind, in this call or an earlier one
        // (verdict memory answers a remembered result).
        let given = run.calls[..=i]
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.hash == call.hash
                    && (c.kind == CallKind::NewPayload) == (call.kind == CallKind::NewPayload)
            })
            .flat_map(|(j, c)| {
                el_answers(run, j)
                    .into_iter()
                    .filter_map(move |(_, _, answer)| payload_status(c.kind, &answer).cloned())
            })
            .any(|s| s["status"] == status["status"] && s["latestValidHash"] == *lvh);
        if !given {
            out.push(violation(
                "an_invalid_answer_carries_an_els_latest_valid_hash",
                Some(i),
                format!(
                    "answered {} with latestValidHash {lvh}, which no EL gave",
                    status["status"]
                ),
            ));
        }
    }
    out
}

/// Liveness: every call is answered within the CL's deadline for its method.
pub fn no_answer_is_later_than_the_cl_deadline(run: &Run) -> Vec<Violation> {
    run.calls
        .iter()
        .enumerate()
        .filter_map(|(i, call)| {
            let took = call.answered_ms - call.sent_ms;
            let deadline = cl_deadline(call.method).as_millis() as u64;
            (took > deadline).then(|| {
                violation(
                    "no_answer_is_later_than_the_cl_deadline",
                    Some(i),
                    format!("answered after {took} ms, past the CL's {deadline} ms"),
                )
            })
        })
        .collect()
}

/// Liveness: once the default rule's majority of ELs answered one status within T of the CL's
/// call, eb answers by T plus the straggler cap.
pub fn a_quorum_in_time_is_answered_within_the_straggler_cap(run: &Run) -> Vec<Violation> {
    let n = run.schedule.els.len() as u32;
    let quorum = threshold(n, DEFAULT_PERMILLE).max(1) as usize;
    let cap = CAP.as_millis() as u64;
    let mut out = Vec::new();
    for (i, call) in run.calls.iter().enumerate().filter(|(_, c)| is_vote(c)) {
        let mut answers = el_answers(run, i);
        answers.sort_by_key(|(_, at, _)| *at);
        let mut seen: HashMap<String, usize> = HashMap::new();
        let in_time = answers.iter().find_map(|(_, at, answer)| {
            let status = payload_status(call.kind, answer)?["status"].as_str()?;
            let count = seen.entry(status.to_owned()).or_default();
            *count += 1;
            (*count >= quorum).then_some(*at)
        });
        let took = call.answered_ms - call.sent_ms;
        if let Some(t) = in_time.filter(|t| took > t + cap) {
            out.push(violation(
                "a_quorum_in_time_is_answered_within_the_straggler_cap",
                Some(i),
                format!(
                    "{quorum} of {n} ELs answered alike within {t} ms, eb answered after {took} ms"
                ),
            ));
        }
    }
    out
}

/// Each EL's state-changing calls, as CL call indices in the order it received them.
fn received_calls(run: &Run, el: usize) -> Vec<usize> {
    run.events
        .iter()
        .filter_map(|e| match e {
            Event::Received { el: e, body, .. } if *e == el => {
                run.calls.iter().position(|c| is_vote(c) && c.body == *body)
            }
            _ => None,
        })
        .collect()
}

/// Delivery: each EL receives the state-changing calls in the CL's order, each at most once.
pub fn each_el_gets_state_changing_calls_in_cl_order_at_most_once(run: &Run) -> Vec<Violation> {
    (0..run.schedule.els.len())
        .filter_map(|el| {
            let got = received_calls(run, el);
            let pair = got.windows(2).find(|w| w[0] >= w[1])?;
            Some(violation(
                "each_el_gets_state_changing_calls_in_cl_order_at_most_once",
                Some(pair[1]),
                format!("EL {el} received call {} after call {}", pair[1], pair[0]),
            ))
        })
        .collect()
}

/// Delivery: once every EL is back, each has received every newPayload and the last
/// forkchoiceUpdated, except the calls its queue counted as dropped.
pub fn every_call_is_delivered_or_counted_as_dropped(run: &Run) -> Vec<Violation> {
    let last_forkchoice = run
        .calls
        .iter()
        .rposition(|c| matches!(c.kind, CallKind::Forkchoice | CallKind::Build));
    let wanted: Vec<usize> = run
        .calls
        .iter()
        .enumerate()
        .filter(|(i, c)| c.kind == CallKind::NewPayload || Some(*i) == last_forkchoice)
        .map(|(i, _)| i)
        .collect();
    (0..run.schedule.els.len())
        .filter_map(|el| {
            let got = received_calls(run, el);
            let missing: Vec<usize> = wanted
                .iter()
                .copied()
                .filter(|i| !got.contains(i))
                .collect();
            let depth = &run.depths[el];
            let counted = depth.dropped + depth.replay_dropped;
            (missing.len() as u64 > counted).then(|| {
                violation(
                    "every_call_is_delivered_or_counted_as_dropped",
                    missing.first().copied(),
                    format!(
                        "EL {el} never received calls {missing:?}; {counted} counted as dropped"
                    ),
                )
            })
        })
        .collect()
}

/// Delivery: no EL's queue holds more calls or bytes than its limits.
pub fn queues_stay_within_their_limits(run: &Run) -> Vec<Violation> {
    run.max_queued
        .iter()
        .zip(&run.limits)
        .enumerate()
        .filter(|(_, ((calls, bytes), limits))| *calls > limits.calls || *bytes > limits.bytes)
        .map(|(el, ((calls, bytes), limits))| {
            violation(
                "queues_stay_within_their_limits",
                None,
                format!(
                    "EL {el}'s queue held {calls} calls / {bytes} B, limits {} / {} B",
                    limits.calls, limits.bytes
                ),
            )
        })
        .collect()
}

/// Builds: a getPayload for eb's payloadId is a payload built on that build's head by an EL
/// that answered its build VALID; a payloadId eb never gave is -38001.
pub fn a_build_is_served_only_by_its_builders_on_its_head(run: &Run) -> Vec<Violation> {
    let property = "a_build_is_served_only_by_its_builders_on_its_head";
    let mut out = Vec::new();
    for (i, call) in run.calls.iter().enumerate() {
        if call.kind != CallKind::GetPayload {
            continue;
        }
        let Some(build) = call.build else {
            if call.answer["error"]["code"] != -38001 {
                out.push(violation(
                    property,
                    Some(i),
                    format!("an unknown payloadId answered {}", call.answer),
                ));
            }
            continue;
        };
        let Some(payload) = call.answer["result"].get("executionPayload") else {
            continue;
        };
        let head = run.calls[build].hash.as_deref().unwrap_or_default();
        if payload["parentHash"] != head {
            out.push(violation(
                property,
                Some(i),
                format!(
                    "a payload on {} for a build on {head}",
                    payload["parentHash"]
                ),
            ));
        }
        let served_by = payload["blockHash"]
            .as_str()
            .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
            .map(|n| n.wrapping_sub(0xb000) as usize);
        let builders: Vec<usize> = el_answers(run, build)
            .into_iter()
            .filter(|(_, _, a)| a["result"]["payloadId"].is_string())
            .map(|(el, _, _)| el)
            .collect();
        if !served_by.is_some_and(|el| builders.contains(&el)) {
            out.push(violation(
                property,
                Some(i),
                format!("served by EL {served_by:?}, the builders were {builders:?}"),
            ));
        }
    }
    out
}
