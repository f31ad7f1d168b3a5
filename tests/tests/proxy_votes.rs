//! State-changing calls through the real proxy: each verdict branch with 3 and 5 ELs, per-EL
//! secrets, timeouts, faulty ELs and ordered delivery.

use eb_tests::engine::{forkchoice, hash, new_payload};
use eb_tests::mock_el::{refs, start_many, Fault, MockEl};
use eb_tests::proxy::Proxy;
use serde_json::Value;
use std::time::{Duration, Instant};

/// ELs with distinct secrets (`0x01…`, `0x02…`, …).
async fn els(n: usize) -> Vec<MockEl> {
    start_many(n, None).await
}

fn status(answer: &Value) -> &str {
    answer["result"]["status"].as_str().unwrap_or("<none>")
}

async fn verdict(statuses: &[&'static str]) -> Value {
    let els = els(statuses.len()).await;
    for (el, status) in els.iter().zip(statuses) {
        el.set(|b| b.status = status);
    }
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    let answer = proxy.call(&new_payload(7, 4, "B1")).await;
    for el in &els {
        assert_eq!(
            el.engine_calls(),
            ["engine_newPayloadV4"],
            "every EL gets the call"
        );
    }
    answer
}

#[tokio::test]
async fn each_verdict_branch_with_three_and_five_els() {
    let cases: [(&[&str], &str); 8] = [
        (&["VALID", "VALID", "VALID"], "VALID"),
        (&["VALID", "VALID", "INVALID"], "SYNCING"),
        (&["INVALID", "INVALID", "VALID"], "INVALID"),
        (&["SYNCING", "SYNCING", "VALID"], "SYNCING"),
        (&["ACCEPTED", "ACCEPTED", "VALID"], "ACCEPTED"),
        (&["VALID", "VALID", "VALID", "VALID", "SYNCING"], "VALID"),
        (
            &["VALID", "VALID", "SYNCING", "SYNCING", "ACCEPTED"],
            "SYNCING",
        ),
        (
            &["INVALID", "INVALID", "INVALID", "VALID", "VALID"],
            "INVALID",
        ),
    ];
    for (statuses, expected) in cases {
        let answer = verdict(statuses).await;
        assert_eq!(status(&answer), expected, "{statuses:?}: {answer}");
        assert_eq!(answer["id"], 7);
    }
}

#[tokio::test]
async fn follows_the_el_answer_verbatim() {
    let els = els(3).await;
    for el in &els {
        el.set(|b| {
            b.status = "INVALID";
            b.lvh = Some(hash("parent"));
        });
    }
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    let answer = proxy.call(&new_payload(1, 4, "B1")).await;
    assert_eq!(answer["result"]["status"], "INVALID");
    assert_eq!(answer["result"]["latestValidHash"], hash("parent"));
    assert_eq!(answer["result"]["validationError"], "mock: invalid block");
    let valid = verdict(&["VALID", "VALID", "VALID"]).await;
    assert_eq!(valid["result"]["latestValidHash"], hash("B1"));
}

#[tokio::test]
async fn string_and_null_ids_come_back_as_sent() {
    let els = els(3).await;
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    for id in [
        serde_json::json!("slot-9"),
        Value::Null,
        serde_json::json!(18446744073709551615u64),
    ] {
        let mut request = new_payload(0, 4, "B1");
        request["id"] = id.clone();
        assert_eq!(proxy.call(&request).await["id"], id);
    }
}

#[tokio::test]
async fn per_el_secrets_sign_each_call() {
    let els = els(3).await;
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    assert_eq!(status(&proxy.call(&new_payload(1, 4, "B1")).await), "VALID");
    for el in &els {
        assert_eq!(el.refused_tokens(), 0);
        assert_eq!(el.engine_calls().len(), 1);
    }
}

#[tokio::test]
async fn an_el_with_the_wrong_secret_is_auth_failed_not_dead() {
    let els = els(3).await;
    let wrong = MockEl::start("wrong", &format!("0x{}", "ee".repeat(32))).await;
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    let code = proxy
        .add_node(&wrong.url(), &format!("0x{}", "dd".repeat(32)), "")
        .await;
    assert_eq!(code, 200);
    proxy
        .wait_until("the wrong-secret EL is AuthFailed", |app| {
            app.nodes
                .snapshot()
                .get(3)
                .is_some_and(|n| n.health().state == eb::nodes::NodeState::AuthFailed)
        })
        .await;
    let answer = proxy.call(&new_payload(1, 4, "B1")).await;
    assert_eq!(
        status(&answer),
        "VALID",
        "three good votes of four counted answers"
    );
    assert!(wrong.refused_tokens() > 0);
    assert!(wrong.engine_calls().is_empty());
    let status = proxy.admin_get("/status").await;
    assert_eq!(status["nodes"][3]["state"], "auth_failed");
}

#[tokio::test]
async fn a_slow_el_is_cut_and_the_cl_is_answered_without_it() {
    let els = els(3).await;
    els[2].set(|b| b.delay = Duration::from_secs(3));
    let proxy = Proxy::start(&refs(&els), &["", "", "#timeout=2000"], &[]).await;
    let start = Instant::now();
    let answer = proxy.call(&new_payload(1, 4, "B1")).await;
    let took = start.elapsed();
    // Two VALID; the slow EL is cut (at the straggler deadline or its timeout, whichever comes
    // first) and not counted: VALID is the majority.
    assert_eq!(status(&answer), "VALID", "{answer}");
    assert!(
        took < Duration::from_secs(2),
        "answered without waiting out the slow EL: {took:?}"
    );
    let metrics = proxy.metrics().await;
    let node = format!("{}/", els[2].url());
    assert!(
        metrics.lines().any(|l| l.starts_with("eb_votes_total")
            && l.contains(&node)
            && (l.contains(r#"outcome="cut""#) || l.contains(r#"outcome="timeout""#))),
        "{metrics}"
    );
}

#[tokio::test]
async fn all_els_down_is_syncing() {
    let els = els(3).await;
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    for el in &els {
        el.stop();
    }
    let answer = proxy.call(&new_payload(1, 4, "B1")).await;
    assert_eq!(status(&answer), "SYNCING");
    assert!(answer["result"]["latestValidHash"].is_null());
    let fcu = proxy.call(&forkchoice(2, 3, "B1", false)).await;
    assert_eq!(fcu["result"]["payloadStatus"]["status"], "SYNCING");
    assert!(fcu["result"]["payloadId"].is_null());
}

#[tokio::test]
async fn garbage_500_truncated_and_error_answers_are_votes_not_crashes() {
    for fault in [
        Fault::Garbage,
        Fault::Http500,
        Fault::Truncated,
        Fault::RpcError(-32603),
    ] {
        let els = els(3).await;
        els[0].set(|b| b.vote_fault = fault.clone());
        let proxy = Proxy::start(&refs(&els), &[], &[]).await;
        let answer = proxy.call(&new_payload(1, 4, "B1")).await;
        assert_eq!(status(&answer), "VALID", "{fault:?}: {answer}");
    }
    // One EL answering garbage beside one VALID and one INVALID: a tie among counted votes.
    let els = els(3).await;
    els[0].set(|b| b.vote_fault = Fault::Garbage);
    els[1].set(|b| b.status = "INVALID");
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    assert_eq!(
        status(&proxy.call(&new_payload(1, 4, "B1")).await),
        "SYNCING"
    );
}

#[tokio::test]
async fn unanimous_rpc_errors_are_returned_not_turned_into_syncing() {
    let els = els(3).await;
    for el in &els {
        el.set(|b| b.vote_fault = Fault::RpcError(-38005));
    }
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    let answer = proxy.call(&new_payload(1, 4, "B1")).await;
    assert_eq!(answer["error"]["code"], -38005, "{answer}");
}

#[tokio::test]
async fn a_slow_el_still_receives_every_call_in_order() {
    let els = els(3).await;
    els[1].set(|b| b.delay = Duration::from_millis(300));
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    let (first, second, third) = (
        new_payload(1, 4, "B1"),
        forkchoice(2, 3, "B1", false),
        new_payload(3, 4, "B2"),
    );
    // Each call is sent once eb has queued the one before (a fast EL already has it), while
    // the slow EL is still busy with the first.
    let queued = |n: usize| {
        let fast = &els[0];
        proxy.wait_until("eb queued the previous call", move |_| {
            fast.engine_calls().len() == n
        })
    };
    let (a, b, c) = tokio::join!(
        proxy.call(&first),
        async {
            queued(1).await;
            proxy.call(&second).await
        },
        async {
            queued(2).await;
            proxy.call(&third).await
        }
    );
    for answer in [&a, &c] {
        assert_eq!(status(answer), "VALID");
    }
    assert_eq!(b["result"]["payloadStatus"]["status"], "VALID");
    let expected = [
        "engine_newPayloadV4",
        "engine_forkchoiceUpdatedV3",
        "engine_newPayloadV4",
    ];
    // The answers did not wait for the slow EL: it gets the calls queued behind its first.
    proxy
        .wait_until("the slow EL received every call", |_| {
            els[1].engine_calls().len() == expected.len()
        })
        .await;
    for el in &els {
        assert_eq!(el.engine_calls(), expected);
    }
    let hashes: Vec<Value> = els[1]
        .seen()
        .iter()
        .filter(|s| s.method == "engine_newPayloadV4")
        .map(|s| s.params[0]["blockHash"].clone())
        .collect();
    assert_eq!(hashes, [hash("B1"), hash("B2")]);
    let sent: Vec<String> = [&first, &second, &third]
        .iter()
        .map(|r| r.to_string())
        .collect();
    for el in &els {
        let raw: Vec<String> = el
            .seen()
            .iter()
            .filter(|s| s.method.starts_with("engine_"))
            .filter(|s| s.method != "engine_getClientVersionV1")
            .map(|s| String::from_utf8_lossy(&s.raw).into_owned())
            .collect();
        assert_eq!(
            raw, sent,
            "every EL received the CL's exact bytes, in order"
        );
    }
}

#[tokio::test]
async fn a_hung_el_does_not_hold_the_verdict_past_its_timeout() {
    let els = els(3).await;
    els[0].set(|b| b.vote_fault = Fault::Hang);
    let proxy = Proxy::start(&refs(&els), &["#timeout=200", "", ""], &[]).await;
    let answer = proxy.call(&new_payload(1, 4, "B1")).await;
    assert_eq!(status(&answer), "VALID");
    let answer = proxy.call(&new_payload(2, 4, "B2")).await;
    assert_eq!(status(&answer), "VALID");
    assert_eq!(
        els[0].engine_calls().len(),
        2,
        "the hung EL still received both calls"
    );
}

#[tokio::test]
async fn a_build_on_a_head_answered_valid_before_gets_a_payload_id_while_an_el_catches_up() {
    let els = els(2).await;
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    let first = proxy.call(&forkchoice(1, 3, "H1", false)).await;
    assert_eq!(first["result"]["payloadStatus"]["status"], "VALID");
    // EL 1 restarted behind: SYNCING beside EL 0's VALID is a tie, and the head is remembered
    // VALID; EL 0 starts the build.
    els[1].set(|b| b.status = "SYNCING");
    let build = proxy.call(&forkchoice(2, 3, "H1", true)).await;
    assert_eq!(
        build["result"]["payloadStatus"]["status"], "VALID",
        "{build}"
    );
    let payload_id = build["result"]["payloadId"].clone();
    assert!(
        payload_id.is_string(),
        "a VALID build carries a payloadId: {build}"
    );
    let payload = proxy
        .call(&eb_tests::engine::request(
            serde_json::json!(3),
            "engine_getPayloadV4",
            serde_json::json!([payload_id]),
        ))
        .await;
    assert_eq!(
        payload["result"]["builder"], "el0",
        "served by the EL that built it: {payload}"
    );
    assert_eq!(
        payload["result"]["executionPayload"]["parentHash"],
        hash("H1")
    );
}

/// Two ELs; EL 1 goes down for a block (B2), comes back (B2 is replayed to it before B3) and
/// catches up (SYNCING on B3 and B3b, its `eth_syncing` saying synced all along), then is back
/// on the chain (B4). The answers eb gives, per block.
async fn two_els_through_a_catch_up(extra: &[&str]) -> Vec<String> {
    let els = els(2).await;
    let proxy = Proxy::start(&refs(&els), &[], extra).await;
    proxy
        .wait_until("both synced", |app| {
            app.nodes
                .snapshot()
                .iter()
                .all(|n| n.health().state == eb::nodes::NodeState::Synced)
        })
        .await;
    let mut answers = Vec::new();
    answers.push(status(&proxy.call(&new_payload(1, 4, "B1")).await).to_owned());
    els[1].stop();
    answers.push(status(&proxy.call(&new_payload(2, 4, "B2")).await).to_owned());
    els[1].set(|b| b.status = "SYNCING");
    els[1].restart().await;
    proxy
        .wait_until("EL 1 answers health checks again", |app| {
            app.nodes.snapshot()[1].health().state == eb::nodes::NodeState::Synced
        })
        .await;
    // B2 is replayed to it first: its vote on B3 is cut, not waited for behind the replay.
    answers.push(status(&proxy.call(&new_payload(3, 4, "B3")).await).to_owned());
    proxy
        .wait_until("EL 1 replayed what it missed", |app| {
            let queue = app.nodes.snapshot()[1].queue_depth();
            !queue.replay_pending && queue.busy_for.is_none()
        })
        .await;
    answers.push(status(&proxy.call(&new_payload(5, 4, "B3b")).await).to_owned());
    let el1 = &proxy.admin_get("/status").await["nodes"][1];
    assert_eq!(
        el1["behind"], true,
        "behind, though eth_syncing says synced: {el1}"
    );
    els[1].set(|b| b.status = "VALID");
    answers.push(status(&proxy.call(&new_payload(4, 4, "B4")).await).to_owned());
    let el1 = &proxy.admin_get("/status").await["nodes"][1];
    assert_eq!(
        (&el1["behind"], &el1["votes_count"]),
        (&Value::Bool(false), &Value::Bool(true)),
        "caught up: {el1}"
    );
    let blocks: Vec<Value> = els[1]
        .seen()
        .iter()
        .filter(|s| s.method == "engine_newPayloadV4")
        .map(|s| s.params[0]["blockHash"].clone())
        .collect();
    assert_eq!(
        blocks,
        ["B1", "B2", "B3", "B3b", "B4"].map(|b| Value::from(hash(b))),
        "B2 met a refused connection and was replayed before B3"
    );
    let queue = &proxy.admin_get("/status").await["nodes"][1]["queue"];
    assert_eq!(queue["replayed"], 1, "{queue}");
    answers
}

#[tokio::test]
async fn with_two_els_a_catching_up_el_costs_nothing_under_behind_ignore() {
    assert_eq!(
        two_els_through_a_catch_up(&["--policy-config", "behind=ignore"]).await,
        ["VALID", "VALID", "VALID", "VALID", "VALID"]
    );
    // The seed's rule: the catching-up EL's SYNCING ties the other's VALID.
    assert_eq!(
        two_els_through_a_catch_up(&[]).await,
        ["VALID", "VALID", "VALID", "SYNCING", "VALID"]
    );
}
