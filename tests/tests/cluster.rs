//! eb replicas sharing builds and final answers through a real 3-member etcd on loopback, in
//! front of the same mock ELs.

use eb_tests::engine::{forkchoice, get_payload, hash, new_payload};
use eb_tests::etcd::EtcdCluster;
use eb_tests::mock_el::{forkchoices_for, refs, start_many, MockEl};
use eb_tests::proxy::{sample, Proxy};
use serde_json::Value;

fn status(answer: &Value) -> &str {
    answer["result"]["status"]
        .as_str()
        .or_else(|| answer["result"]["payloadStatus"]["status"].as_str())
        .unwrap_or("<none>")
}

/// A replica named `name` of the cluster at `etcd`, in front of `els`. The bound on etcd calls
/// is 3 s, not the 200 ms default: these tests are about what is shared, and a loaded CI machine
/// running twelve etcd members may take longer than 200 ms to fsync (a replica then answers
/// alone, as it should, and the test would measure the machine).
async fn replica(els: &[MockEl], etcd: &EtcdCluster, name: &str) -> Proxy {
    replica_with(els, etcd, name, &[]).await
}

/// [`replica`] with more flags.
async fn replica_with(els: &[MockEl], etcd: &EtcdCluster, name: &str, extra: &[&str]) -> Proxy {
    let endpoints = etcd.endpoints().join(",");
    let mut args = vec![
        "--etcd",
        &endpoints,
        "--replica",
        name,
        "--cluster",
        "test",
        "--etcd-timeout-ms",
        "3000",
    ];
    args.extend_from_slice(extra);
    Proxy::start(&refs(els), &[], &args).await
}

/// A 3-member etcd, three mock ELs, and replicas `a` and `b` in front of them.
async fn two_replicas() -> (EtcdCluster, Vec<MockEl>, Proxy, Proxy) {
    let etcd = EtcdCluster::start(3).await;
    let els = start_many(3, None).await;
    let a = replica(&els, &etcd, "a").await;
    let b = replica(&els, &etcd, "b").await;
    (etcd, els, a, b)
}

/// A forkchoiceUpdated with attributes on `head` through `proxy`: eb's payloadId.
async fn build(proxy: &Proxy, id: u64, head: &str) -> String {
    let built = proxy.call(&forkchoice(id, 3, head, true)).await;
    assert_eq!(status(&built), "VALID", "{built}");
    built["result"]["payloadId"]
        .as_str()
        .expect("a payloadId")
        .to_owned()
}

fn set_all(els: &[MockEl], status: &'static str) {
    for el in els {
        el.set(|b| b.status = status);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_made_on_a_killed_replica_is_served_by_another() {
    let (_etcd, els, a, b) = two_replicas().await;
    let id = build(&a, 1, "B1").await;
    a.kill().await;
    let payload = b.call(&get_payload(2, 4, &id)).await;
    assert_eq!(payload["id"], 2);
    assert_eq!(
        payload["result"]["executionPayload"]["parentHash"],
        hash("B1"),
        "B fetched A's build from the EL that built it: {payload}"
    );
    let asked = els
        .iter()
        .filter(|el| el.seen().iter().any(|s| s.method == "engine_getPayloadV4"))
        .count();
    // The primary's build first; a slow first builder lets the hedge ask a second.
    assert!(asked >= 1, "a builder was asked, with its own payloadId");
    let text = b.metrics().await;
    assert_eq!(
        sample(
            &text,
            r#"eb_cluster_shared_builds_served_total{replica="a"}"#
        ),
        Some(1.0),
        "{text}"
    );
    let unknown = b.call(&get_payload(3, 4, "0x0000000000000001")).await;
    assert_eq!(unknown["error"]["code"], -38001, "{unknown}");
    let status = b.admin_get("/status").await;
    assert_eq!(
        status["cluster"]["role"], "follower",
        "A led; B's CL made no state-changing call: {status}"
    );
    assert_eq!(status["cluster"]["replica"], "b");
    assert_eq!(status["cluster"]["store_up"], true);
    assert_eq!(
        status["cluster"]["store"]["endpoints"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_answered_on_one_replica_is_never_answered_the_opposite_on_another() {
    let (etcd, els, a, b) = two_replicas().await;

    // VALID on A; the ELs turn INVALID; B counts INVALID but A answered VALID: SYNCING on B,
    // never INVALID.
    assert_eq!(status(&a.call(&new_payload(1, 4, "X")).await), "VALID");
    set_all(&els, "INVALID");
    let on_b = b.call(&new_payload(2, 4, "X")).await;
    assert_eq!(status(&on_b), "SYNCING", "{on_b}");

    // INVALID on B for Y; the ELs turn VALID; A keeps B's INVALID.
    assert_eq!(status(&b.call(&new_payload(3, 4, "Y")).await), "INVALID");
    set_all(&els, "VALID");
    let on_a = a.call(&new_payload(4, 4, "Y")).await;
    assert_eq!(status(&on_a), "INVALID", "{on_a}");
    assert_eq!(
        sample(&a.metrics().await, "eb_verdict_flips_total"),
        Some(1.0),
        "the flip is counted where it was refused"
    );

    // The same for a forkchoice head (B forwards it: the head A, leading, drives).
    assert_eq!(
        status(&a.call(&forkchoice(5, 3, "H", false)).await),
        "VALID"
    );
    leads_on(&etcd, "H").await;
    set_all(&els, "INVALID");
    let head_on_b = b.call(&forkchoice(6, 3, "H", false)).await;
    assert_eq!(status(&head_on_b), "SYNCING", "{head_on_b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_etcd_quorum_replicas_answer_alone_then_share_what_they_decided() {
    let (mut etcd, els, a, b) = two_replicas().await;
    assert_eq!(status(&a.call(&new_payload(1, 4, "warm")).await), "VALID");

    etcd.kill(1);
    etcd.kill(2);
    let start = std::time::Instant::now();
    let alone = a.call(&new_payload(2, 4, "Z")).await;
    let took = start.elapsed();
    assert_eq!(status(&alone), "VALID", "{alone}");
    let id = build(&a, 3, "Z").await;
    let payload = a.call(&get_payload(4, 4, &id)).await;
    assert_eq!(
        payload["result"]["executionPayload"]["parentHash"],
        hash("Z")
    );
    eprintln!("newPayload without an etcd quorum answered in {took:?}");
    let status_a = a.admin_get("/status").await;
    assert_eq!(status_a["cluster"]["store_up"], false, "{status_a}");
    assert_eq!(
        status_a["cluster"]["pending"], 3,
        "two answers and a build wait: {status_a}"
    );
    assert_eq!(sample(&a.metrics().await, "eb_etcd_up"), Some(0.0));

    etcd.restart(1).await;
    etcd.restart(2).await;
    a.wait_until("A wrote back what it decided", |app| {
        let status = app.cluster.status();
        status.store_up && status.pending == 0
    })
    .await;
    set_all(&els, "INVALID");
    let on_b = b.call(&new_payload(5, 4, "Z")).await;
    assert_eq!(
        status(&on_b),
        "SYNCING",
        "B learnt A's VALID given alone: {on_b}"
    );
    set_all(&els, "VALID");
    let payload = b.call(&get_payload(6, 4, &id)).await;
    assert_eq!(
        payload["result"]["executionPayload"]["parentHash"],
        hash("Z"),
        "and the build A made alone: {payload}"
    );
}

/// Revokes every lease the members at `endpoints` know (each lists what it has applied), as an
/// etcd restored from an old backup or an operator's cleanup would leave eb's cached lease ids
/// unknown.
async fn revoke_leases(endpoints: &[String]) -> usize {
    let client = eb_tests::client();
    let mut ids = std::collections::BTreeSet::new();
    for endpoint in endpoints {
        let text = client
            .post(format!("{endpoint}/v3/lease/leases"))
            .body("{}")
            .send()
            .await
            .expect("etcd answers")
            .text()
            .await
            .expect("a body");
        let leases: Value = serde_json::from_str(&text).expect("JSON");
        for lease in leases["leases"].as_array().into_iter().flatten() {
            ids.extend(lease["ID"].as_str().map(str::to_owned));
        }
    }
    let endpoint = &endpoints[0];
    for id in &ids {
        let revoked = client
            .post(format!("{endpoint}/v3/lease/revoke"))
            .body(format!(r#"{{"ID":"{id}"}}"#))
            .send()
            .await
            .expect("etcd answers");
        assert!(revoked.status().is_success(), "{revoked:?}");
    }
    ids.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_etcd_no_longer_has_is_replaced() {
    let (etcd, els, a, b) = two_replicas().await;
    let first = build(&a, 1, "L1").await;
    assert!(
        revoke_leases(&etcd.endpoints()).await >= 1,
        "A's build had a lease"
    );
    let gone = b.call(&get_payload(2, 4, &first)).await;
    assert_eq!(
        gone["error"]["code"], -38001,
        "revoked with its lease: {gone}"
    );

    // A's next write names the revoked lease: refused, queued, then written with a new lease.
    let second = build(&a, 3, "L2").await;
    a.wait_until("A wrote the build back under a new lease", |app| {
        let status = app.cluster.status();
        status.store_up && status.pending == 0
    })
    .await;
    let payload = b.call(&get_payload(4, 4, &second)).await;
    assert_eq!(
        payload["result"]["executionPayload"]["parentHash"],
        hash("L2"),
        "{payload}"
    );
    drop(els);
}

/// Waits until the leader lease's record in etcd (read by the test from etcd itself) names
/// `head` as the head the leader drives; the record.
async fn leads_on(etcd: &EtcdCluster, head: &str) -> Value {
    let head = hash(head);
    for _ in 0..500 {
        if let Some(record) = etcd.get("/test/leader/lease").await {
            let record: Value = serde_json::from_slice(&record).expect("the record is JSON");
            if record["head"] == head.as_str() {
                return record;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no leader published head {head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_moves_the_els_forkchoice_and_a_follower_leads_once_it_dies() {
    let (etcd, els, a, b) = two_replicas().await;
    assert_eq!(
        status(&a.call(&forkchoice(1, 3, "H1", false)).await),
        "VALID"
    );
    let record = leads_on(&etcd, "H1").await;
    assert_eq!(record["replica"], "a", "{record}");
    assert_eq!(record["head"], hash("H1"), "A published the head it drives");

    // B's CL follows another head: answered SYNCING (no replica answered it), not forwarded.
    let other = b.call(&forkchoice(2, 3, "H2", false)).await;
    assert_eq!(status(&other), "SYNCING", "{other}");
    assert_eq!(forkchoices_for(&els, "H2"), 0, "the ELs never saw B's head");
    let status_b = b.admin_get("/status").await;
    assert_eq!(status_b["cluster"]["role"], "follower", "{status_b}");
    assert_eq!(status_b["cluster"]["leader"], "a");

    // A build on the head the leader drives is made.
    let built = b.call(&forkchoice(3, 3, "H1", true)).await;
    assert_eq!(status(&built), "VALID", "{built}");
    assert!(built["result"]["payloadId"].is_string(), "{built}");

    // A moves on to H3; B's CL asking about H1 now is answered from A's shared VALID.
    assert_eq!(
        status(&a.call(&forkchoice(4, 3, "H3", false)).await),
        "VALID"
    );
    leads_on(&etcd, "H3").await;
    let before = forkchoices_for(&els, "H1");
    let kept = b.call(&forkchoice(5, 3, "H1", false)).await;
    assert_eq!(status(&kept), "VALID", "A's answer for H1: {kept}");
    assert!(kept["result"]["payloadId"].is_null(), "{kept}");
    assert_eq!(forkchoices_for(&els, "H1"), before, "not forwarded");
    assert_eq!(
        sample(&b.metrics().await, "eb_cluster_held_total"),
        Some(2.0)
    );

    // A dies: once its lease lapses, B's CL's next call takes it and moves the ELs.
    a.kill().await;
    let killed = std::time::Instant::now();
    let mut id = 6;
    let led = loop {
        let answer = b.call(&forkchoice(id, 3, "H4", false)).await;
        if forkchoices_for(&els, "H4") > 0 {
            break answer;
        }
        assert!(killed.elapsed().as_secs() < 20, "B never took the lease");
        id += 1;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    eprintln!("B led {:?} after A was killed", killed.elapsed());
    assert_eq!(status(&led), "VALID", "{led}");
    let status_b = b.admin_get("/status").await;
    assert_eq!(status_b["cluster"]["role"], "leader", "{status_b}");
    assert_eq!(sample(&b.metrics().await, "eb_cluster_leader"), Some(1.0));
}

/// `--policy` pointing at a copy of the default policy in a directory of its own.
fn own_policy(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("eb-cluster-policy-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("policy.wasm");
    std::fs::copy(eb_tests::workspace().join("policies/default.wasm"), &path).expect("copy");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_changes_drains_and_policy_reloads_on_one_replica_reach_the_others() {
    let etcd = EtcdCluster::start(3).await;
    let els = start_many(4, None).await;
    let (policy_a, policy_b) = (own_policy("a"), own_policy("b"));
    let a_policy = policy_a.display().to_string();
    let a = replica_with(&els[..3], &etcd, "a", &["--policy", &a_policy]).await;
    let (a_dir, b_policy) = (a.dir.display().to_string(), policy_b.display().to_string());
    // B may add nodes whose secret files are where A's are (the same path on every host).
    let b_flags = ["--policy", &b_policy, "--admin-secrets-dir", &a_dir];
    let b = replica_with(&els[..3], &etcd, "b", &b_flags).await;
    b.wait_until("B lists both replicas", |app| {
        app.cluster.status().replicas.len() == 2
    })
    .await;
    let status_b = b.admin_get("/status").await;
    let listed = &status_b["cluster"]["replicas"];
    assert_eq!(listed[0]["replica"], "a", "{status_b}");
    assert_eq!(listed[1]["replica"], "b");
    assert_eq!(listed[0]["policy_sha256"], status_b["policy"]["sha256"]);
    assert_eq!(status_b["cluster"]["policy_mismatch"], false);

    let started = std::time::Instant::now();
    let added = &els[3];
    assert_eq!(a.add_node(&added.url(), &added.secret_hex, "").await, 200);
    b.wait_until("B has the node A added", |app| {
        app.nodes.snapshot().len() == 4
    })
    .await;
    eprintln!("a node added on A reached B in {:?}", started.elapsed());

    let (code, drained) = a
        .admin(reqwest::Method::POST, "/nodes/0/drain", None, None)
        .await;
    assert_eq!(code, 200, "{drained}");
    let draining_on_b = |app: &eb::app::App| app.nodes.snapshot()[0].draining().is_some();
    b.wait_until("B drains the node A drained", draining_on_b)
        .await;
    let (code, _) = a
        .admin(reqwest::Method::POST, "/nodes/0/resume", None, None)
        .await;
    assert_eq!(code, 200);
    b.wait_until("B resumes it", |app| !draining_on_b(app))
        .await;

    let (code, removed) = a
        .admin(reqwest::Method::DELETE, "/nodes/3", None, None)
        .await;
    assert_eq!(code, 200, "{removed}");
    b.wait_until("B removes the node A removed", |app| {
        app.nodes.snapshot().len() == 3
    })
    .await;

    // B's file now holds another policy: a reload on A makes B load it, and both warn.
    let other = eb_tests::workspace().join("policies/examples/majority-of-configured.wat");
    std::fs::copy(other, &policy_b).expect("copy");
    let (code, reloaded) = a
        .admin(reqwest::Method::POST, "/policy/reload", None, None)
        .await;
    assert_eq!(code, 200, "{reloaded}");
    let before = status_b["policy"]["sha256"]
        .as_str()
        .expect("a sha")
        .to_owned();
    b.wait_until("B reloaded its own policy file", |app| {
        app.policy.current().info().sha256 != before
    })
    .await;
    a.wait_until("A sees the replicas' policies differ", |app| {
        app.cluster.status().policy_mismatch
    })
    .await;
    let status_a = a.admin_get("/status").await;
    let listed = &status_a["cluster"]["replicas"];
    assert_ne!(
        listed[0]["policy_sha256"], listed[1]["policy_sha256"],
        "{status_a}"
    );
    assert_eq!(status_a["cluster"]["policy_mismatch"], true);
}
