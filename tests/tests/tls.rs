//! Remote ELs over TLS: an `https://` node checked against the system roots or its own `#ca=`;
//! a certificate from another CA, or an expired one, makes that EL offline with the reason in
//! `/status`, while the CL keeps being answered by the others.

use eb::nodes::NodeState;
use eb_tests::engine::new_payload;
use eb_tests::mock_el::{refs, start_many, MockEl};
use eb_tests::proxy::Proxy;
use eb_tests::tls::Ca;
use serde_json::Value;

const SECRET: &str = "0x7777777777777777777777777777777777777777777777777777777777777777";

/// eb in front of two plain ELs and `tls_el`, whose spec gets `options`; waits until health
/// checks have put the TLS EL in `state`, checks the CL is answered, and returns eb, the plain
/// ELs and the TLS EL's `/status` entry.
async fn through(tls_el: &MockEl, options: &str, state: NodeState) -> (Proxy, Vec<MockEl>, Value) {
    let els = start_many(2, Some(SECRET)).await;
    let mut all = refs(&els);
    all.push(tls_el);
    let proxy = Proxy::start(&all, &["", "", options], &[]).await;
    proxy
        .wait_until("the TLS EL's health check", |app| {
            app.nodes.snapshot()[2].health().state == state
        })
        .await;
    let answer = proxy.call(&new_payload(1, 4, "T1")).await;
    assert_eq!(answer["result"]["status"], "VALID", "{answer}");
    let status = proxy.admin_get("/status").await;
    let node = status["nodes"][2].clone();
    (proxy, els, node)
}

/// The CA written where a spec can name it before eb starts.
fn ca_path(ca: &Ca, name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("eb-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(name);
    std::fs::write(&path, &ca.pem).expect("write CA");
    path.display().to_string()
}

#[tokio::test]
async fn an_https_el_trusted_through_its_ca_votes() {
    let ca = Ca::new("private CA");
    let el = MockEl::start_tls("tls", SECRET, ca.server(false)).await;
    assert!(el.url().starts_with("https://127.0.0.1:"));
    let ca = format!("#ca={}", ca_path(&ca, "trusted.pem"));
    let (_proxy, _els, node) = through(&el, &ca, NodeState::Synced).await;
    assert_eq!(node["state"], "synced", "{node}");
    assert_eq!(
        el.engine_calls(),
        ["engine_newPayloadV4"],
        "the call went over TLS"
    );
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_and_shown() {
    let (trusted, other) = (Ca::new("trusted CA"), Ca::new("other CA"));
    let el = MockEl::start_tls("tls", SECRET, other.server(false)).await;
    let ca = format!("#ca={}", ca_path(&trusted, "wrong.pem"));
    let (_proxy, _els, node) = through(&el, &ca, NodeState::Offline).await;
    let error = node["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("certificate") && error.contains("UnknownIssuer"),
        "{node}"
    );
    assert!(
        el.engine_calls().is_empty(),
        "nothing sent to an EL eb cannot verify"
    );
}

#[tokio::test]
async fn an_expired_certificate_is_refused_and_shown() {
    let ca = Ca::new("private CA");
    let el = MockEl::start_tls("tls", SECRET, ca.server(true)).await;
    let ca = format!("#ca={}", ca_path(&ca, "expired.pem"));
    let (_proxy, _els, node) = through(&el, &ca, NodeState::Offline).await;
    let error = node["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("certificate expired"), "{node}");
}

#[tokio::test]
async fn without_ca_the_system_roots_decide() {
    let ca = Ca::new("private CA");
    let el = MockEl::start_tls("tls", SECRET, ca.server(false)).await;
    let (_proxy, _els, node) = through(&el, "", NodeState::Offline).await;
    let error = node["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("UnknownIssuer"),
        "a private CA is not a system root: {node}"
    );
}
