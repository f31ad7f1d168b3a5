//! Everything but votes, through the real proxy: CL authentication and bad bodies, builds and
//! getPayload, merged calls, batches, primary reads with failover, the admin API, shutdown.

use eb_tests::engine::{forkchoice, get_payload, hash, new_payload, request};
use eb_tests::mock_el::{refs, start_many, Behaviour, Fault, MockEl};
use eb_tests::proxy::{sample, Proxy};
use serde_json::{json, Value};
use std::time::Duration;

const SECRET: &str = "0x2222222222222222222222222222222222222222222222222222222222222222";

async fn els(n: usize) -> Vec<MockEl> {
    start_many(n, Some(SECRET)).await
}

async fn with_primary(proxy: &Proxy) -> u64 {
    proxy
        .wait_until("a primary is chosen", |app| {
            app.nodes.primary_id().is_some()
        })
        .await;
    proxy.app.nodes.primary_id().unwrap_or_default()
}

#[tokio::test]
async fn cl_tokens_are_checked_and_nothing_is_forwarded_without_one() {
    let els = els(2).await;
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    let body = new_payload(1, 4, "B1").to_string();
    let forged = {
        let other = eb::auth::JwtSecret::from_hex(&"33".repeat(32)).expect("hex");
        eb::auth::Minter::new(&other).bearer()
    };
    for (auth, reason) in [
        (None, "missing token"),
        (Some("Bearer not.a.token"), "invalid token"),
        (Some(forged.as_str()), "invalid token"),
        (Some("Basic dXNlcjpwdw=="), "missing token"),
    ] {
        let (status, text) = proxy.send(body.clone(), auth).await;
        assert_eq!(status, 401, "{auth:?}");
        let answer: Value = serde_json::from_str(&text).expect("a JSON-RPC body");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{auth:?}: {message}");
    }
    for el in &els {
        assert!(el.engine_calls().is_empty(), "nothing forwarded");
    }
}

#[tokio::test]
async fn bad_bodies_get_json_rpc_errors_and_the_server_keeps_serving() {
    let els = els(2).await;
    let proxy = Proxy::start(&refs(&els), &[], &["--max-body-mib", "1"]).await;
    let token = proxy.token();
    let cases: [(&str, u16, i64); 6] = [
        ("", 200, -32700),
        ("{not json", 200, -32700),
        ("[]", 200, -32600),
        ("42", 200, -32600),
        (r#"{"jsonrpc":"2.0","id":5}"#, 200, -32600),
        (
            r#"{"jsonrpc":"2.0","id":5,"method":"eth_chainId","params":7}"#,
            200,
            -32600,
        ),
    ];
    for (body, status, code) in cases {
        let (got, text) = proxy.send(body.to_owned(), Some(&token)).await;
        let answer: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(
            (got, answer["error"]["code"].as_i64()),
            (status, Some(code)),
            "{body}"
        );
    }
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":["{}"]}}"#,
        "a".repeat(2 << 20)
    );
    let (status, text) = proxy.send(huge, Some(&token)).await;
    assert_eq!(status, 413);
    assert!(text.contains("larger than 1 MiB"), "{text}");
    let answer = proxy
        .call(&request(json!(9), "eth_chainId", json!([])))
        .await;
    assert_eq!(answer["result"], "0x1", "still serving");
}

#[tokio::test]
async fn unknown_methods_and_versions_are_answered_in_json() {
    let els = els(2).await;
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    let answer = proxy
        .call(&request(json!(3), "engine_somethingNewV9", json!([])))
        .await;
    assert_eq!(answer["error"]["code"], -32601);
    assert_eq!(answer["id"], 3);
    let answer = proxy.call(&new_payload(4, 9, "B9")).await;
    assert_eq!(answer["id"], 4);
    assert_eq!(
        answer["result"]["status"], "VALID",
        "newPayloadV9 routes as a vote"
    );
    for el in &els {
        assert!(el
            .engine_calls()
            .contains(&"engine_newPayloadV9".to_owned()));
    }
}

#[tokio::test]
async fn builds_get_ebs_own_payload_id_and_get_payload_reaches_a_builder() {
    let els = els(3).await;
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    with_primary(&proxy).await;
    let answer = proxy.call(&forkchoice(1, 3, "B1", true)).await;
    assert_eq!(answer["result"]["payloadStatus"]["status"], "VALID");
    let id = answer["result"]["payloadId"]
        .as_str()
        .expect("a payloadId")
        .to_owned();
    assert_eq!(id.len(), 18);
    for el in &els {
        let seen = el.seen();
        assert!(
            seen.iter()
                .any(|s| s.method == "engine_forkchoiceUpdatedV3"),
            "every EL builds"
        );
    }
    let payload = proxy.call(&get_payload(2, 4, &id)).await;
    assert_eq!(payload["id"], 2);
    assert_eq!(
        payload["result"]["executionPayload"]["parentHash"],
        hash("B1")
    );
    let unknown = proxy.call(&get_payload(3, 4, "0x0000000000000000")).await;
    assert_eq!(unknown["error"]["code"], -38001);
}

/// Asks for a build on B1; eb's payloadId for it.
async fn build_on_b1(proxy: &Proxy) -> String {
    let answer = proxy.call(&forkchoice(1, 3, "B1", true)).await;
    answer["result"]["payloadId"]
        .as_str()
        .expect("payloadId")
        .to_owned()
}

#[tokio::test]
async fn get_payload_fails_over_when_the_primary_dies_after_the_build() {
    let els = els(3).await;
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    let primary = with_primary(&proxy).await as usize;
    let id = build_on_b1(&proxy).await;
    els[primary].stop();
    let payload = proxy.call(&get_payload(2, 4, &id)).await;
    let builder = payload["result"]["builder"]
        .as_str()
        .expect("a built payload");
    assert_ne!(builder, format!("el{primary}"), "{payload}");
}

#[tokio::test]
async fn a_builder_cut_for_being_slow_joins_the_build_when_its_valid_comes() {
    let els = els(3).await;
    els[2].set(|b| b.delay = Duration::from_millis(600));
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    let primary = with_primary(&proxy).await as usize;
    let id = build_on_b1(&proxy).await;
    let fast = proxy.app.payloads.get(&id).expect("the build").builders;
    assert_eq!(fast.len(), 2, "answered before the slow EL: {fast:?}");
    proxy
        .wait_until("the slow EL's late VALID joins the build", |app| {
            app.payloads.get(&id).is_some_and(|b| b.builders.len() == 3)
        })
        .await;
    for (i, el) in els.iter().enumerate() {
        if i != 2 {
            el.stop();
        }
    }
    assert_ne!(primary, 2, "a fast EL was the primary");
    let payload = proxy.call(&get_payload(2, 4, &id)).await;
    assert_eq!(payload["result"]["builder"], "el2", "{payload}");
}

#[tokio::test]
async fn no_payload_id_unless_the_verdict_is_valid() {
    let els = els(3).await;
    els[0].set(|b| b.status = "SYNCING");
    els[1].set(|b| b.status = "SYNCING");
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    let answer = proxy.call(&forkchoice(1, 3, "B1", true)).await;
    assert_eq!(answer["result"]["payloadStatus"]["status"], "SYNCING");
    assert!(answer["result"]["payloadId"].is_null(), "{answer}");
}

#[tokio::test]
async fn best_value_picks_the_highest_block_value_on_the_right_head() {
    let els = els(3).await;
    els[0].set(|b| b.block_value = "0x10");
    els[1].set(|b| b.block_value = "0x200");
    els[2].set(|b| b.block_value = "0x3f");
    let proxy = Proxy::start(&refs(&els), &[], &["--get-payload", "best-value"]).await;
    let id = build_on_b1(&proxy).await;
    let payload = proxy.call(&get_payload(2, 4, &id)).await;
    assert_eq!(payload["result"]["blockValue"], "0x200");
    assert_eq!(payload["result"]["builder"], "el1");
}

#[tokio::test]
async fn capabilities_are_intersected_and_client_versions_concatenated() {
    let els = els(3).await;
    els[1].set(|b| {
        b.client = "NM";
        b.capabilities = vec![
            "engine_newPayloadV4",
            "engine_getPayloadV4",
            "engine_exchangeCapabilities",
        ];
    });
    els[2].set(|b| b.client = "RH");
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    let caps = proxy
        .call(&request(
            json!(1),
            "engine_exchangeCapabilities",
            json!([["engine_newPayloadV4"]]),
        ))
        .await;
    assert_eq!(
        caps["result"],
        json!(["engine_newPayloadV4", "engine_getPayloadV4"])
    );
    let versions = proxy
        .call(&request(
            json!(2),
            "engine_getClientVersionV1",
            json!([{"code": "LH", "name": "Lighthouse", "version": "v7", "commit": "0x01020304"}]),
        ))
        .await;
    let codes: Vec<&str> = versions["result"]
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|v| v["code"].as_str())
        .collect();
    assert_eq!(codes, ["GE", "NM", "RH"]);
}

#[tokio::test]
async fn batches_mix_engine_and_eth_calls_and_keep_ids() {
    let els = els(3).await;
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    let batch = json!([
        new_payload(1, 4, "B1"),
        request(json!("b"), "eth_blockNumber", json!([])),
        forkchoice(3, 3, "B1", false),
        42,
        request(json!(5), "eth_chainId", json!([])),
    ]);
    let (status, text) = proxy.send(batch.to_string(), Some(&proxy.token())).await;
    assert_eq!(status, 200);
    let answers: Vec<Value> = serde_json::from_str(&text).expect("an array");
    assert_eq!(answers.len(), 5);
    assert_eq!(answers[0]["result"]["status"], "VALID");
    assert_eq!(
        (answers[1]["id"].clone(), answers[1]["result"].clone()),
        (json!("b"), json!("0x2a"))
    );
    assert_eq!(answers[2]["result"]["payloadStatus"]["status"], "VALID");
    assert_eq!(answers[3]["error"]["code"], -32600);
    assert_eq!(answers[4]["result"], "0x1");
    for el in &els {
        let engine: Vec<String> = el
            .engine_calls()
            .into_iter()
            .filter(|m| m.starts_with("engine_"))
            .collect();
        assert_eq!(
            engine,
            ["engine_newPayloadV4", "engine_forkchoiceUpdatedV3"]
        );
    }
}

#[tokio::test]
async fn reads_fail_over_from_a_dead_primary() {
    let els = els(3).await;
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    let primary = with_primary(&proxy).await as usize;
    let first = proxy
        .call(&request(
            json!(1),
            "eth_getBlockByNumber",
            json!(["latest", false]),
        ))
        .await;
    assert_eq!(first["result"]["servedBy"], format!("el{primary}"));
    els[primary].stop();
    let second = proxy
        .call(&request(
            json!(2),
            "eth_getBlockByNumber",
            json!(["latest", false]),
        ))
        .await;
    let served = second["result"]["servedBy"].as_str().expect("served");
    assert_ne!(served, format!("el{primary}"));
    proxy
        .wait_until("a new primary", |app| {
            app.nodes.primary_id() != Some(primary as u64)
        })
        .await;
    let status = proxy.admin_get("/status").await;
    assert_eq!(
        status["dead_nodes"].as_array().map(Vec::len),
        Some(1),
        "{status}"
    );
    assert_ne!(status["primary_node"], els[primary].url() + "/");
}

#[tokio::test]
async fn read_errors_from_the_el_are_answers_but_transport_failures_fail_over() {
    let els = els(2).await;
    els[0].set(|b| b.read_fault = Fault::Http500);
    els[1].set(|b| b.read_fault = Fault::Http500);
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    let answer = proxy
        .call(&request(json!(1), "eth_chainId", json!([])))
        .await;
    assert_eq!(answer["error"]["code"], -32000, "{answer}");
    assert!(answer["error"]["data"]["err"]
        .as_str()
        .is_some_and(|e| e.contains("HTTP 500")));
    els[1].set(|b| b.read_fault = Fault::None);
    let answer = proxy
        .call(&request(json!(2), "eth_chainId", json!([])))
        .await;
    assert_eq!(answer["result"], "0x1");
    let blobs = proxy
        .call(&request(
            json!(3),
            "engine_getBlobsV2",
            json!([[hash("blob")]]),
        ))
        .await;
    assert!(
        blobs["result"].is_null() && blobs.get("error").is_none(),
        "{blobs}"
    );
}

#[tokio::test]
async fn admin_endpoints_with_and_without_token() {
    let els = els(2).await;
    let extra = MockEl::start("extra", SECRET).await;
    let dir = std::env::temp_dir().join(format!("eb-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "correct-horse-battery-staple\n").expect("write");
    let token_path = token_file.display().to_string();
    let dir_path = dir.display().to_string();
    let extra_flags = [
        "--admin-token",
        &token_path,
        "--admin-secrets-dir",
        &dir_path,
        "--allow-shared-secrets",
    ];
    let proxy = Proxy::start(&refs(&els), &[], &extra_flags).await;
    with_primary(&proxy).await;
    let status = proxy.admin_get("/status").await;
    for field in [
        "response_times",
        "alive_nodes",
        "syncing_nodes",
        "dead_nodes",
        "primary_node",
    ] {
        assert!(status.get(field).is_some(), "{field} missing: {status}");
    }
    assert_eq!(status["policy"]["name"], "default (embedded)");
    assert_eq!(status["policy"]["sha256"].as_str().map(str::len), Some(64));

    let extra_secret = dir.join("extra.hex");
    std::fs::write(&extra_secret, SECRET).expect("write");
    let add = json!({"nodes": [format!("{}#jwt-secret={}#do-not-use", extra.url(), extra_secret.display())]});
    let post = reqwest::Method::POST;
    let (code, _) = proxy
        .admin_without_token(post.clone(), "/nodes", Some(add.clone()))
        .await;
    assert_eq!(code, 401);
    let (code, _) = proxy
        .admin(
            post.clone(),
            "/nodes",
            Some(add.clone()),
            Some("wrong-token-wrong-token"),
        )
        .await;
    assert_eq!(code, 401);
    let (code, body) = proxy
        .admin(
            post.clone(),
            "/add_nodes",
            Some(add.clone()),
            Some("correct-horse-battery-staple"),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, _) = proxy
        .admin(
            post.clone(),
            "/nodes",
            Some(add),
            Some("correct-horse-battery-staple"),
        )
        .await;
    assert_eq!(code, 409, "duplicates refused");
    assert_eq!(proxy.app.nodes.snapshot().len(), 3);
    let answer = proxy.call(&new_payload(1, 4, "B1")).await;
    assert_eq!(answer["result"]["status"], "VALID");
    assert_eq!(
        extra.engine_calls(),
        ["engine_newPayloadV4"],
        "a do-not-use node still gets every call"
    );
    let (code, _) = proxy
        .admin(
            post.clone(),
            "/recheck",
            None,
            Some("correct-horse-battery-staple"),
        )
        .await;
    assert_eq!(code, 200);
    let (code, _) = proxy
        .admin_without_token(reqwest::Method::DELETE, "/nodes/2", None)
        .await;
    assert_eq!(code, 401);
    let (code, _) = proxy
        .admin(
            reqwest::Method::DELETE,
            "/nodes/2",
            None,
            Some("correct-horse-battery-staple"),
        )
        .await;
    assert_eq!(code, 200);
    let (code, _) = proxy
        .admin(
            reqwest::Method::DELETE,
            "/nodes/7",
            None,
            Some("correct-horse-battery-staple"),
        )
        .await;
    assert_eq!(code, 404);
    assert_eq!(proxy.app.nodes.snapshot().len(), 2);
}

#[tokio::test]
async fn a_non_loopback_admin_address_is_never_open() {
    let els = els(1).await;
    let flags = ["--admin-addr", "0.0.0.0:0", "--admin-no-token"];
    let error = Proxy::try_start(&refs(&els), &[], &flags).await.err();
    assert!(
        error
            .as_ref()
            .is_some_and(|e| e.starts_with("--admin-addr:")),
        "{error:?}"
    );
}

#[tokio::test]
async fn shutdown_finishes_in_flight_calls() {
    let els = els(2).await;
    for el in &els {
        el.set(|b| b.delay = Duration::from_millis(300));
    }
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    let (engine, token) = (proxy.engine, proxy.token());
    let in_flight = tokio::spawn(async move {
        eb_tests::client()
            .post(format!("http://{engine}/"))
            .header("authorization", token)
            .header("content-type", "application/json")
            .body(new_payload(1, 4, "B1").to_string())
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    proxy
        .wait_until("both ELs hold the call", |_| {
            els.iter().all(|el| el.engine_calls().len() == 1)
        })
        .await;
    proxy.shutdown().await;
    assert_eq!(in_flight.await.expect("joined").ok(), Some(200));
    let refused = eb_tests::client()
        .post(format!("http://{engine}/"))
        .send()
        .await;
    assert!(refused.is_err(), "no longer accepting");
}

/// executionbackup's `MetricsReport` field for field: node → microseconds, three lists of
/// node URLs, the primary as a string.
fn assert_metrics_report(report: &Value, nodes: usize) {
    let times = report["response_times"]
        .as_object()
        .expect("response_times");
    assert_eq!(times.len(), nodes, "{report}");
    assert!(
        times.values().all(Value::is_u64),
        "integer microseconds: {report}"
    );
    for list in ["alive_nodes", "syncing_nodes", "dead_nodes"] {
        let list = report[list].as_array().expect("a list");
        assert!(list.iter().all(Value::is_string), "{report}");
    }
    assert_eq!(report["alive_nodes"].as_array().map(Vec::len), Some(nodes));
    assert!(
        report["primary_node"]
            .as_str()
            .is_some_and(|p| !p.is_empty()),
        "{report}"
    );
}

#[tokio::test]
async fn executionbackups_admin_api_keeps_its_shapes() {
    let els = els(2).await;
    let extra = MockEl::start("extra", SECRET).await;
    let proxy = Proxy::start(
        &refs(&els),
        &[],
        &["--admin-no-token", "--allow-shared-secrets"],
    )
    .await;
    with_primary(&proxy).await;
    let client = eb_tests::client();
    let json_metrics = client
        .get(format!("http://{}/metrics", proxy.admin))
        .header("accept", "application/json")
        .send()
        .await
        .expect("answers");
    assert_eq!(
        json_metrics.headers()["content-type"],
        "application/json",
        "JSON when asked for JSON"
    );
    let report: Value =
        serde_json::from_str(&json_metrics.text().await.expect("body")).expect("json");
    assert_metrics_report(&report, 2);
    assert!(
        proxy.metrics().await.contains("# TYPE eb_el_state gauge"),
        "Prometheus otherwise"
    );

    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let (code, report) = proxy.admin(method.clone(), "/recheck", None, None).await;
        assert_eq!(code, 200, "{method} /recheck");
        assert_metrics_report(&report, 2);
        assert!(report["recheck_time"].is_u64(), "{report}");
    }

    let secret = proxy.dir.join("extra.hex");
    std::fs::write(&secret, SECRET).expect("write");
    let body = json!({"nodes": [format!("{}#jwt-secret={}", extra.url(), secret.display())]});
    let (code, report) = proxy
        .admin(reqwest::Method::POST, "/add_nodes", Some(body), None)
        .await;
    assert_eq!(code, 200, "{report}");
    assert_metrics_report(&report, 3);
    assert!(report["recheck_time"].is_u64(), "{report}");
    assert_eq!(report["added"], json!([format!("{}/", extra.url())]));
}

#[tokio::test]
async fn an_el_lacking_a_method_the_cl_lists_is_named_and_rechecked_after_its_restart() {
    let els = els(2).await;
    els[1].set(|b| b.capabilities = vec!["engine_newPayloadV4", "engine_forkchoiceUpdatedV3"]);
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    let asked = json!([[
        "engine_newPayloadV4",
        "engine_forkchoiceUpdatedV3",
        "engine_getPayloadV4",
        "engine_exchangeCapabilities"
    ]]);
    let answer = proxy
        .call(&request(json!(1), "engine_exchangeCapabilities", asked))
        .await;
    assert_eq!(
        answer["result"],
        json!(["engine_newPayloadV4", "engine_forkchoiceUpdatedV3"])
    );
    let status = proxy.admin_get("/status").await;
    assert_eq!(status["nodes"][0]["missing_capabilities"], json!([]));
    assert_eq!(
        status["nodes"][1]["missing_capabilities"],
        json!(["engine_getPayloadV4"])
    );
    let gauge = |text: &str, el: &MockEl| {
        sample(
            text,
            &format!("eb_el_missing_capabilities{{node=\"{}/\"}}", el.url()),
        )
    };
    let metrics = proxy.metrics().await;
    assert_eq!(
        (gauge(&metrics, &els[0]), gauge(&metrics, &els[1])),
        (Some(0.0), Some(1.0))
    );
    // Upgraded and restarted: eb asks it the CL's list again when it is back.
    els[1].stop();
    proxy
        .wait_until("EL 1 seen down", |app| {
            app.nodes.snapshot()[1].health().state == eb::nodes::NodeState::Offline
        })
        .await;
    els[1].set(|b| b.capabilities = Behaviour::default().capabilities);
    els[1].restart().await;
    proxy
        .wait_until("EL 1 rechecked", |app| {
            app.nodes.snapshot()[1].missing_capabilities().is_empty()
        })
        .await;
    assert_eq!(gauge(&proxy.metrics().await, &els[1]), Some(0.0));
}

#[tokio::test]
async fn a_drained_el_still_gets_every_call_and_never_the_last_counted_one() {
    let els = els(2).await;
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    with_primary(&proxy).await;
    let post = |path: &'static str| proxy.admin(reqwest::Method::POST, path, None, None);
    let (code, body) = post("/nodes/1/drain").await;
    assert_eq!((code, &body["draining"]), (200, &json!(true)), "{body}");
    let (code, body) = post("/nodes/0/drain").await;
    assert_eq!(code, 409, "{body}");
    assert!(body["error"]
        .as_str()
        .is_some_and(|e| e.contains("no EL whose votes count")));
    assert_eq!(post("/nodes/9/drain").await.0, 404);
    // Drained: its SYNCING is not counted (a tie otherwise), and it still gets the call.
    els[1].set(|b| b.status = "SYNCING");
    let answer = proxy.call(&new_payload(1, 4, "B1")).await;
    assert_eq!(answer["result"]["status"], "VALID", "{answer}");
    let status = proxy.admin_get("/status").await;
    let el1 = &status["nodes"][1];
    assert!(
        el1["draining"].is_object() && el1["votes_count"] == false,
        "{el1}"
    );
    assert_eq!(els[1].engine_calls(), ["engine_newPayloadV4"]);
    let (code, _) = post("/nodes/1/resume").await;
    assert_eq!(code, 200);
    let answer = proxy.call(&new_payload(2, 4, "B2")).await;
    assert_eq!(
        answer["result"]["status"], "SYNCING",
        "counted again: {answer}"
    );
    let (code, _) = proxy
        .admin_without_token(reqwest::Method::POST, "/nodes/1/drain", None)
        .await;
    assert_eq!(code, 401);
}
