//! Operating eb: metrics after known traffic (checked by promtool), the dashboard's metric names,
//! a recorded session replayed with 0 mismatches, hot reload (good, bad, racing), the flip
//! guard, and `eb policy explain`.

use eb::policy::{Policy, PolicySource, WasmPolicy};
use eb_tests::engine::{new_payload, request};
use eb_tests::mock_el::{refs, start_many, Fault, MockEl};
use eb_tests::proxy::{sample, Proxy};
use eb_tests::{fixture, workspace};
use policy_sdk::fixture as fixtures;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const SECRET: &str = "0x3333333333333333333333333333333333333333333333333333333333333333";

async fn els(n: usize) -> Vec<MockEl> {
    start_many(n, Some(SECRET)).await
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eb-operating-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[tokio::test]
async fn metrics_count_known_traffic_and_pass_promtool() {
    let els = els(3).await;
    els[2].set(|b| b.status = "SYNCING");
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    for id in 0..2 {
        assert_eq!(
            proxy.call(&new_payload(id, 4, &format!("B{id}"))).await["result"]["status"],
            "VALID"
        );
    }
    // B0 again while every EL says SYNCING: the verdict is SYNCING, the answer (from verdict
    // memory) VALID; eb_vote_answers_total counts the answer, eb_verdicts_total only the
    // policy's own verdicts.
    for el in &els {
        el.set(|b| b.status = "SYNCING");
    }
    assert_eq!(
        proxy.call(&new_payload(2, 4, "B0")).await["result"]["status"],
        "VALID"
    );
    proxy
        .call(&request(json!(9), "eth_chainId", json!([])))
        .await;
    proxy
        .call(&request(json!(10), "engine_nope", json!([])))
        .await;
    let text = proxy.metrics().await;
    let expect = [
        (
            r#"eb_requests_total{method="engine_newPayloadV4",answer="result"}"#,
            3.0,
        ),
        (
            r#"eb_requests_total{method="eth_chainId",answer="result"}"#,
            1.0,
        ),
        (
            r#"eb_requests_total{method="engine_nope",answer="error"}"#,
            1.0,
        ),
        (
            r#"eb_verdicts_total{method="newPayload",action="follow",status="VALID",reason="1"}"#,
            2.0,
        ),
        (
            r#"eb_vote_answers_total{method="newPayload",status="VALID"}"#,
            3.0,
        ),
        (r#"eb_in_flight_calls"#, 0.0),
        (r#"eb_verdict_flips_total"#, 0.0),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&text, series), Some(value), "{series}\n{text}");
    }
    for el in &els[..2] {
        let series = format!(
            r#"eb_votes_total{{node="{}/",status="VALID",outcome="answered"}}"#,
            el.url()
        );
        assert_eq!(sample(&text, &series), Some(2.0), "{series}\n{text}");
    }
    let syncing = format!(
        r#"eb_votes_total{{node="{}/",status="SYNCING",outcome="answered"}}"#,
        els[2].url()
    );
    assert_eq!(sample(&text, &syncing), Some(3.0));
    assert!(text.contains("eb_policy_decision_seconds_bucket"), "{text}");
    assert!(text.contains("eb_el_latency_seconds_bucket"), "{text}");

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (Debian package `prometheus`; .ci/run installs it)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = promtool.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_exists() {
    // Traffic that creates every family: votes, a policy fault (the hostile module traps on
    // method version 99), a reload, health states, a read.
    let els = els(2).await;
    let hostile = fixture("hostile/unreachable.wat").display().to_string();
    let proxy = Proxy::start(&refs(&els), &[], &["--policy", &hostile]).await;
    proxy.call(&new_payload(1, 4, "D1")).await;
    let faulted = proxy.call(&new_payload(2, 99, "D2")).await;
    assert_eq!(faulted["result"]["status"], "SYNCING");
    proxy
        .call(&request(json!(3), "eth_chainId", json!([])))
        .await;
    let (code, _) = proxy
        .admin(reqwest::Method::POST, "/policy/reload", None, None)
        .await;
    assert_eq!(code, 200);
    proxy
        .wait_until("health checks ran", |app| app.nodes.primary_id().is_some())
        .await;
    let text = proxy.metrics().await;
    assert_eq!(
        sample(&text, r#"eb_policy_faults_total{kind="trap"}"#),
        Some(1.0),
        "{text}"
    );
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("contrib/grafana-dashboard.json"))
            .expect("dashboard"),
    )
    .expect("JSON");
    let mut names = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(at) = rest.find("eb_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                names.push(name);
            }
        }
    }
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "the dashboard queries {name}, which eb does not export"
        );
    }
}

#[tokio::test]
async fn a_recorded_session_replays_with_zero_mismatches() {
    let els = els(3).await;
    let dir = temp_dir("record");
    let recording = dir.join("votes.jsonl");
    let path = recording.display().to_string();
    let proxy = Proxy::start(
        &refs(&els),
        &["", "", "#timeout=150"],
        &["--record-votes", &path],
    )
    .await;
    // All VALID; one INVALID dissent; an INVALID majority; a slow EL that times out; a build;
    // an INVALID majority decided before the third EL answers (its vote is recorded late).
    proxy.call(&new_payload(1, 4, "R1")).await;
    els[0].set(|b| b.status = "INVALID");
    proxy.call(&new_payload(2, 4, "R2")).await;
    els[1].set(|b| b.status = "INVALID");
    proxy.call(&new_payload(3, 4, "R3")).await;
    for el in &els {
        el.set(|b| b.status = "VALID");
    }
    els[2].set(|b| b.delay = Duration::from_millis(400));
    proxy.call(&new_payload(4, 4, "R4")).await;
    proxy
        .call(&eb_tests::engine::forkchoice(5, 3, "R4", true))
        .await;
    els[0].set(|b| b.status = "INVALID");
    els[1].set(|b| b.status = "INVALID");
    els[2].set(|b| b.delay = Duration::from_millis(100));
    proxy.call(&new_payload(6, 4, "R6")).await;
    let lines = || {
        std::fs::read_to_string(&recording)
            .map(|text| text.lines().count())
            .unwrap_or(0)
    };
    proxy
        .wait_until("every decision is recorded", |_| lines() == 6)
        .await;
    let cases = fixtures::load(std::slice::from_ref(&recording)).expect("recording loads");
    assert_eq!(cases.len(), 6, "one line per decision");
    let mut late: Vec<(u16, &str, bool)> = cases[5]
        .votes
        .iter()
        .map(|v| (v.node, v.status.as_str(), v.late))
        .collect();
    late.sort_unstable();
    assert_eq!(
        late,
        [
            (0, "INVALID", false),
            (1, "INVALID", false),
            (2, "PENDING", false),
            (2, "VALID", true)
        ],
        "decided on two INVALID while node 2 was pending; its vote is recorded late"
    );
    assert_eq!(cases[5].pending, 1);
    assert!(
        cases[3].elapsed_ms >= 150,
        "R4 waited for the slow EL's timeout: {}",
        cases[3].elapsed_ms
    );
    let actions: Vec<_> = cases
        .iter()
        .map(|c| (c.expect.action, c.expect.status.clone()))
        .collect();
    assert_eq!(actions[1].0, fixtures::Action::Syncing);
    assert_eq!(actions[2].1.as_deref(), Some("INVALID"));
    let (report, passed) = eb::cli::policy::test(None, "", &[recording]).expect("replays");
    assert!(passed, "{report}");
    assert!(report.ends_with("6 passed, 0 failed"), "{report}");
}

#[tokio::test]
async fn reload_swaps_a_good_module_and_refuses_bad_ones() {
    let els = els(3).await;
    let dir = temp_dir("reload");
    let policy = dir.join("policy.wasm");
    std::fs::copy(workspace().join("policies/default.wasm"), &policy).expect("copy");
    let fixtures_dir = dir.join("fixtures");
    std::fs::create_dir_all(&fixtures_dir).expect("dir");
    let path = policy.display().to_string();
    let proxy = Proxy::start(&refs(&els), &[], &["--policy", &path]).await;
    let status = |answer: Value| {
        answer["result"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let reload = || proxy.admin(reqwest::Method::POST, "/policy/reload", None, None);
    assert_eq!(status(proxy.call(&new_payload(1, 4, "P1")).await), "VALID");
    let before = proxy.admin_get("/status").await["policy"]["sha256"].clone();

    for hostile in ["import", "always-trap", "wrong-abi"] {
        std::fs::copy(fixture(&format!("hostile/{hostile}.wat")), &policy).expect("copy");
        let (code, body) = reload().await;
        assert_eq!(code, 422, "{hostile}: {body}");
        assert!(body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("refused, the active policy stays")));
        assert_eq!(
            status(proxy.call(&new_payload(2, 4, "P2")).await),
            "VALID",
            "{hostile}: verdicts unchanged"
        );
    }

    // A module that fails the operator's fixtures is refused too.
    std::fs::copy(workspace().join("policies/default.wasm"), &policy).expect("copy");
    std::fs::copy(
        fixture("votes/all-agree.jsonl"),
        fixtures_dir.join("all-agree.jsonl"),
    )
    .expect("copy");
    let fixtures_path = fixtures_dir.display().to_string();
    let guarded = Proxy::start(
        &refs(&els),
        &[],
        &["--policy", &path, "--policy-fixtures", &fixtures_path],
    )
    .await;
    std::fs::copy(fixture("policies/always-syncing.wat"), &policy).expect("copy");
    let (code, body) = guarded
        .admin(reqwest::Method::POST, "/policy/reload", None, None)
        .await;
    assert_eq!(code, 422);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("fails its fixtures")),
        "{body}"
    );

    let (code, body) = reload().await;
    assert_eq!(code, 200, "{body}");
    let answer = proxy.call(&new_payload(3, 4, "P3")).await;
    assert_eq!(status(answer), "SYNCING", "the new policy decides");
    let after = proxy.admin_get("/status").await["policy"]["sha256"].clone();
    assert_ne!(before, after);
    let metrics = proxy.metrics().await;
    assert_eq!(
        sample(&metrics, r#"eb_policy_reloads_total{result="refused"}"#),
        Some(3.0)
    );
    assert_eq!(
        sample(&metrics, r#"eb_policy_reloads_total{result="ok"}"#),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_reload_racing_with_200_decisions_loses_none_and_mixes_none() {
    let els = els(3).await;
    let dir = temp_dir("race");
    let policy = dir.join("policy.wasm");
    std::fs::copy(workspace().join("policies/default.wasm"), &policy).expect("copy");
    let path = policy.display().to_string();
    let proxy = std::sync::Arc::new(Proxy::start(&refs(&els), &[], &["--policy", &path]).await);
    let calls: Vec<_> = (0..200u64)
        .map(|i| {
            let proxy = std::sync::Arc::clone(&proxy);
            tokio::spawn(async move { proxy.call(&new_payload(i, 4, &format!("X{i}"))).await })
        })
        .collect();
    for round in 0..6 {
        let source = if round % 2 == 0 {
            fixture("policies/always-syncing.wat")
        } else {
            workspace().join("policies/default.wasm")
        };
        std::fs::copy(source, &policy).expect("copy");
        let (code, _) = proxy
            .admin(reqwest::Method::POST, "/policy/reload", None, None)
            .await;
        assert_eq!(code, 200);
    }
    let mut seen = std::collections::BTreeMap::new();
    for call in calls {
        let answer = call.await.expect("joined");
        let status = answer["result"]["status"]
            .as_str()
            .expect("a status")
            .to_owned();
        // Default policy → VALID (all ELs agree); always-syncing → SYNCING. Nothing else.
        assert!(status == "VALID" || status == "SYNCING", "{answer}");
        *seen.entry(status).or_insert(0) += 1;
    }
    assert_eq!(seen.values().sum::<i32>(), 200, "{seen:?}");
    for el in &els {
        assert_eq!(el.engine_calls().len(), 200, "every EL got every call");
    }
    let metrics = proxy.metrics().await;
    assert_eq!(
        sample(&metrics, r#"eb_policy_faults_total{kind="trap"}"#),
        None,
        "no decision saw half a policy"
    );
}

#[tokio::test]
async fn a_final_answer_is_never_turned_around_nor_repeated_beside_an_invalid() {
    let els = els(3).await;
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    let first = proxy.call(&new_payload(1, 4, "F1")).await;
    assert_eq!(first["result"]["status"], "VALID");
    for el in &els {
        el.set(|b| b.status = "INVALID");
    }
    let again = proxy.call(&new_payload(2, 4, "F1")).await;
    assert_eq!(
        again["result"]["status"], "SYNCING",
        "not INVALID (the CL was told VALID), not VALID (an INVALID is counted): {again}"
    );
    assert_eq!(again["id"], 2);
    for el in &els {
        el.set(|b| b.status = "SYNCING");
    }
    let later = proxy.call(&new_payload(3, 4, "F1")).await;
    assert_eq!(later["result"], first["result"], "the VALID answer stands");
    for el in &els {
        el.set(|b| b.status = "INVALID");
    }
    let other = proxy.call(&new_payload(4, 4, "F2")).await;
    assert_eq!(
        other["result"]["status"], "INVALID",
        "other blocks are decided afresh"
    );
    let metrics = proxy.metrics().await;
    assert_eq!(sample(&metrics, "eb_verdict_flips_total"), Some(1.0));
}

#[test]
fn explain_draws_a_known_fixture() {
    let policy = WasmPolicy::load(&PolicySource::Embedded, "").expect("loads");
    let cases = fixtures::load(&[fixture("votes/early.jsonl")]).expect("loads");
    let case = cases
        .iter()
        .find(|c| c.name == "5 nodes: INVALID majority impossible, so SYNCING now")
        .expect("case");
    let chart = eb::cli::explain::chart(case, &policy).expect("draws");
    let mut expected = String::from(
        "sequenceDiagram\n    participant CL\n    participant eb\n    participant policy\n\
         \x20   participant EL0 as EL 0 (GE)\n    participant EL1 as EL 1 (NM)\n    participant EL2 as EL 2 (BU)\n\
         \x20   participant EL3 as EL 3 (EG)\n    participant EL4 as EL 4\n    CL->>eb: engine_newPayloadV4\n",
    );
    for node in 0..5 {
        expected += &format!("    eb->>EL{node}: engine_newPayloadV4\n");
    }
    for (i, status) in ["VALID", "VALID", "VALID", "INVALID"].iter().enumerate() {
        expected += &format!("    EL{i}-->>eb: {status} ({}.0 ms)\n", 10 + i);
        expected += &format!("    eb->>policy: {} votes, {} pending\n", i + 1, 4 - i);
        expected += if i < 3 {
            "    policy-->>eb: wait\n"
        } else {
            "    policy-->>eb: syncing reason 12\n"
        };
    }
    expected += "    eb-->>CL: SYNCING\n";
    assert_eq!(chart, expected);
    assert_eq!(policy.info().name, "default (embedded)");
}

#[tokio::test]
async fn a_shadow_policy_decides_beside_the_active_one_and_never_answers() {
    let els = start_many(3, None).await;
    let recording = std::env::temp_dir().join(format!("eb-shadow-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&recording);
    let shadow = eb_tests::workspace().join("policies/examples/majority-of-configured.wat");
    let proxy = Proxy::start(
        &refs(&els),
        &[],
        &[
            "--shadow-policy",
            &shadow.display().to_string(),
            "--record-votes",
            &recording.display().to_string(),
        ],
    )
    .await;
    let status = proxy.admin_get("/status").await;
    assert!(status["shadow_policy"]["sha256"].is_string(), "{status}");
    let disagreements = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("eb_shadow_disagreements_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let answer = proxy.call(&new_payload(1, 4, "B1")).await;
    assert_eq!(answer["result"]["status"], "VALID");
    assert_eq!(
        disagreements(&proxy.metrics().await),
        0.0,
        "all three agree"
    );
    // One VALID, two errors: the default rule follows the one counted vote; a majority of the
    // configured ELs is not there, so the shadow would answer SYNCING.
    for el in &els[1..] {
        el.set(|b| b.vote_fault = Fault::RpcError(-32603));
    }
    let answer = proxy.call(&new_payload(2, 4, "B2")).await;
    assert_eq!(
        answer["result"]["status"], "VALID",
        "the active policy answers"
    );
    assert_eq!(disagreements(&proxy.metrics().await), 1.0);
    proxy.shutdown().await;
    let text = std::fs::read_to_string(&recording).expect("recording");
    let cases: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(cases.len(), 2, "{text}");
    assert!(cases[0].get("shadow").is_none(), "{}", cases[0]);
    assert_eq!(cases[1]["shadow"]["action"], "syncing", "{}", cases[1]);
    let _ = std::fs::remove_file(&recording);
}
