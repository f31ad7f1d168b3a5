//! Hostile CL input, table-driven: every kind gets the right HTTP status and JSON-RPC error,
//! nothing reaches the ELs that should not, and the server keeps serving.

use eb_tests::engine::{new_payload, request};
use eb_tests::mock_el::MockEl;
use eb_tests::proxy::{Proxy, CL_SECRET};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;

const EL_SECRET: &str = "0x4444444444444444444444444444444444444444444444444444444444444444";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn token(claims: Value, alg: Algorithm, secret: &str) -> String {
    let key = hex::decode(secret.trim_start_matches("0x")).expect("hex");
    let jwt = encode(&Header::new(alg), &claims, &EncodingKey::from_secret(&key)).expect("encodes");
    format!("Bearer {jwt}")
}

/// What a hostile request must get.
enum Expect {
    /// HTTP status and JSON-RPC error code of a single answer.
    Error(u16, i64),
    /// HTTP status only (the body is still JSON-RPC).
    Status(u16),
    /// A 200 JSON-RPC answer whose `id` is this.
    Id(Value),
    /// A batch of this many answers.
    Batch(usize),
}

#[tokio::test]
async fn hostile_requests_get_the_right_answer_and_eb_keeps_serving() {
    let el = MockEl::start("el0", EL_SECRET).await;
    let proxy = Proxy::start(&[&el], &[], &["--max-body-mib", "4"]).await;
    let good = token(json!({"iat": now()}), Algorithm::HS256, CL_SECRET);
    let call = new_payload(1, 4, "H1").to_string();
    let deep_array = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let deep_object = format!(
        r#"{{"id":1,"method":"eth_chainId","x":{}1{}}}"#,
        r#"{"a":"#.repeat(5000),
        "}".repeat(5000)
    );
    let batch_10k = format!(
        "[{}]",
        vec![request(json!(1), "eth_chainId", json!([])).to_string(); 10_000].join(",")
    );
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":["{}"]}}"#,
        "a".repeat(5 << 20)
    );
    let oversized_jwt = token(
        json!({"iat": now(), "pad": "x".repeat(64 << 10)}),
        Algorithm::HS256,
        CL_SECRET,
    );
    let cases: Vec<(&str, Option<String>, String, Expect)> = vec![
        ("no token", None, call.clone(), Expect::Error(401, -32000)),
        (
            "forged token",
            Some(token(json!({"iat": now()}), Algorithm::HS256, EL_SECRET)),
            call.clone(),
            Expect::Error(401, -32000),
        ),
        (
            "stale token",
            Some(token(
                json!({"iat": now() - 120}),
                Algorithm::HS256,
                CL_SECRET,
            )),
            call.clone(),
            Expect::Error(401, -32000),
        ),
        (
            "future token",
            Some(token(
                json!({"iat": now() + 120}),
                Algorithm::HS256,
                CL_SECRET,
            )),
            call.clone(),
            Expect::Error(401, -32000),
        ),
        (
            "expired exp",
            Some(token(
                json!({"iat": now(), "exp": now() - 10}),
                Algorithm::HS256,
                CL_SECRET,
            )),
            call.clone(),
            Expect::Error(401, -32000),
        ),
        (
            "wrong algorithm",
            Some(token(json!({"iat": now()}), Algorithm::HS384, CL_SECRET)),
            call.clone(),
            Expect::Error(401, -32000),
        ),
        (
            "alg none",
            Some(format!(
                "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
                "eyJpYXQiOjB9"
            )),
            call.clone(),
            Expect::Error(401, -32000),
        ),
        (
            "oversized token",
            Some(oversized_jwt),
            call.clone(),
            Expect::Status(200),
        ),
        (
            "empty body",
            Some(good.clone()),
            String::new(),
            Expect::Error(200, -32700),
        ),
        (
            "not JSON",
            Some(good.clone()),
            "GET / HTTP/1.1".into(),
            Expect::Error(200, -32700),
        ),
        (
            "JSON not an object",
            Some(good.clone()),
            "\"engine_newPayloadV4\"".into(),
            Expect::Error(200, -32600),
        ),
        (
            "huge body",
            Some(good.clone()),
            huge,
            Expect::Error(413, -32600),
        ),
        (
            "deep nesting, array",
            Some(good.clone()),
            deep_array,
            Expect::Batch(1),
        ),
        (
            "deep nesting, object",
            Some(good.clone()),
            deep_object,
            Expect::Id(json!(1)),
        ),
        (
            "batch of 10,000",
            Some(good.clone()),
            batch_10k,
            Expect::Error(200, -32600),
        ),
        (
            "params not a list",
            Some(good.clone()),
            r#"{"jsonrpc":"2.0","id":3,"method":"engine_newPayloadV4","params":"B1"}"#.into(),
            Expect::Error(200, -32600),
        ),
        (
            "wrong params shape",
            Some(good.clone()),
            request(json!(4), "engine_forkchoiceUpdatedV3", json!([1, 2, 3])).to_string(),
            Expect::Id(json!(4)),
        ),
        (
            "unknown method",
            Some(good.clone()),
            request(json!(5), "engine_doesNotExistV1", json!([])).to_string(),
            Expect::Error(200, -32601),
        ),
        (
            "method not a string",
            Some(good.clone()),
            r#"{"jsonrpc":"2.0","id":6,"method":7}"#.into(),
            Expect::Error(200, -32600),
        ),
        (
            "id an object",
            Some(good.clone()),
            r#"{"jsonrpc":"2.0","id":{"a":1},"method":"eth_chainId"}"#.into(),
            Expect::Error(200, -32600),
        ),
        (
            "id a string",
            Some(good.clone()),
            request(json!("x-1"), "eth_chainId", json!([])).to_string(),
            Expect::Id(json!("x-1")),
        ),
        (
            "id a float",
            Some(good.clone()),
            r#"{"jsonrpc":"2.0","id":1.5,"method":"eth_chainId"}"#.into(),
            Expect::Id(json!(1.5)),
        ),
        (
            "id null",
            Some(good.clone()),
            request(Value::Null, "eth_chainId", json!([])).to_string(),
            Expect::Id(Value::Null),
        ),
        (
            "id huge number",
            Some(good.clone()),
            r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"eth_chainId"}"#
                .into(),
            Expect::Status(200),
        ),
        (
            "batch of junk",
            Some(good.clone()),
            "[1, \"a\", null, {}]".into(),
            Expect::Batch(4),
        ),
    ];
    let count = cases.len();
    for (name, auth, body, expect) in cases {
        let fresh = auth.map(|a| if a == good { proxy.token() } else { a });
        let (status, text) = proxy.send(body, fresh.as_deref()).await;
        let answer: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {text:.200}"));
        match expect {
            Expect::Error(http, code) => {
                assert_eq!(status, http, "{name}: {text:.300}");
                assert_eq!(answer["error"]["code"], code, "{name}: {text:.300}");
            }
            Expect::Status(http) => assert_eq!(status, http, "{name}: {text:.300}"),
            Expect::Id(id) => {
                assert_eq!(status, 200, "{name}");
                assert_eq!(answer["id"], id, "{name}: {text:.300}");
            }
            Expect::Batch(n) => assert_eq!(
                answer.as_array().map(Vec::len),
                Some(n),
                "{name}: {text:.300}"
            ),
        }
        let still = proxy
            .call(&request(json!(99), "eth_chainId", json!([])))
            .await;
        assert_eq!(still["result"], "0x1", "{name}: eb keeps serving");
    }
    assert!(count >= 15, "{count} kinds");
    let forwarded = el
        .engine_calls()
        .iter()
        .filter(|m| *m == "engine_newPayloadV4")
        .count();
    assert_eq!(
        forwarded, 1,
        "only the newPayload with a valid (if oversized) token reached the EL"
    );
}

#[tokio::test]
async fn a_slowloris_connection_does_not_block_others() {
    let el = MockEl::start("el0", EL_SECRET).await;
    let proxy = Proxy::start(&[&el], &[], &[]).await;
    let mut slow = tokio::net::TcpStream::connect(proxy.engine)
        .await
        .expect("connects");
    slow.write_all(b"POST / HTTP/1.1\r\nHost: eb\r\nContent-Length: 100\r\n")
        .await
        .expect("writes");
    for _ in 0..5 {
        slow.write_all(b"X-Slow: 1\r\n").await.expect("writes");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let answer = proxy
            .call(&request(json!(1), "eth_chainId", json!([])))
            .await;
        assert_eq!(answer["result"], "0x1");
    }
}
