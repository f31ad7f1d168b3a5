//! Hostile peers on every side, over real sockets: connections that never finish, bodies sent
//! to an unauthenticated request, an EL that answers too much, redirects or with another id,
//! admin calls that would add too many nodes or borrow another EL's secret, and a flood of idle
//! connections under a 1,024 open-files limit.

use eb_tests::engine::new_payload;
use eb_tests::mock_el::{refs, start_many, Fault, MockEl};
use eb_tests::proxy::{sample, write_secrets, Proxy, CL_SECRET};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the peer closes; `None` when it is still open after `within`.
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut seen))
        .await
        .ok()
        .map(|_| seen)
}

/// Reads until the response head is complete; `None` when none came within `within`.
async fn read_head(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let read = async {
        let mut buffer = [0u8; 4096];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buffer[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok()?;
    Some(String::from_utf8_lossy(&seen).into_owned())
}

fn head(authorization: Option<&str>, content_length: usize) -> String {
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    format!(
        "POST / HTTP/1.1\r\nHost: eb\r\nContent-Type: application/json\r\n{auth}Content-Length: {content_length}\r\n\r\n"
    )
}

#[tokio::test]
async fn idle_slow_header_and_slow_body_connections_are_closed() {
    let els = start_many(1, None).await;
    let proxy = Proxy::start(
        &refs(&els),
        &[],
        &["--header-timeout-ms", "300", "--body-timeout-ms", "300"],
    )
    .await;
    let mut connections = Vec::new();
    for kind in ["idle", "slow header", "slow body", "idle after a call"] {
        for _ in 0..3 {
            let mut stream = TcpStream::connect(proxy.engine).await.expect("connect");
            match kind {
                "slow header" => stream.write_all(b"POST / HTTP/1.1\r\nHost: eb\r\n").await,
                "slow body" => {
                    let start = head(Some(&proxy.token()), 1000) + r#"{"jsonrpc":"#;
                    stream.write_all(start.as_bytes()).await
                }
                "idle after a call" => {
                    let call = new_payload(1, 4, "B1").to_string();
                    let request = head(Some(&proxy.token()), call.len()) + &call;
                    stream.write_all(request.as_bytes()).await.expect("write");
                    let answer = read_head(&mut stream, Duration::from_secs(10)).await;
                    assert!(
                        answer.is_some_and(|h| h.starts_with("HTTP/1.1 200")),
                        "answered"
                    );
                    Ok(())
                }
                _ => Ok(()),
            }
            .expect("write");
            connections.push((kind, stream));
        }
    }
    for (kind, mut stream) in connections {
        let seen = read_to_close(&mut stream, Duration::from_secs(10)).await;
        let seen = seen.unwrap_or_else(|| panic!("a {kind} connection is still open after 10 s"));
        if kind == "slow body" {
            let text = String::from_utf8_lossy(&seen);
            assert!(text.starts_with("HTTP/1.1 408"), "{kind}: {text}");
        }
    }
    let answer = proxy.call(&new_payload(2, 4, "B2")).await;
    assert_eq!(answer["result"]["status"], "VALID", "eb keeps serving");
}

#[tokio::test]
async fn a_refused_request_is_answered_from_its_headers_before_its_body() {
    let els = start_many(1, None).await;
    let proxy = Proxy::start(&refs(&els), &[], &["--max-body-mib", "4"]).await;
    // 60 MiB announced, 1 KiB sent: no token → 401; a token but past the limit → 413.
    for (authorization, status) in [(None, "401"), (Some(proxy.token()), "413")] {
        let mut stream = TcpStream::connect(proxy.engine).await.expect("connect");
        let request = head(authorization.as_deref(), 60 << 20) + &"x".repeat(1024);
        stream.write_all(request.as_bytes()).await.expect("write");
        let answer = read_head(&mut stream, Duration::from_secs(10)).await;
        let answer = answer.expect("answered without the body");
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
    }
    assert_eq!(
        els[0].engine_calls(),
        Vec::<String>::new(),
        "nothing reached the EL"
    );
}

/// eb (with `extra` flags) in front of three mocks of which the third is told `fault` on its
/// votes.
async fn with_faulty_third(
    fault: Fault,
    status: &'static str,
    extra: &[&str],
) -> (Vec<MockEl>, Proxy) {
    let els = start_many(3, None).await;
    els[2].set(|b| {
        b.vote_fault = fault;
        b.status = status;
    });
    let proxy = Proxy::start(&refs(&els), &[], extra).await;
    proxy
        .wait_until("a primary", |app| app.nodes.primary_id().is_some())
        .await;
    (els, proxy)
}

async fn refused(proxy: &Proxy, el: &MockEl, reason: &str) -> Option<f64> {
    let series = format!(
        "eb_el_refused_answers_total{{node=\"{}/\",reason=\"{reason}\"}}",
        el.url()
    );
    sample(&proxy.metrics().await, &series)
}

#[tokio::test]
async fn an_oversized_el_answer_is_a_malformed_vote_read_no_further_than_the_limit() {
    // A well-formed VALID answer of 100 MiB: counted before, refused at 1 MiB now.
    // Every vote waited for, so the refused one is among the decision's.
    let (els, proxy) =
        with_faulty_third(Fault::Huge(100 << 20), "VALID", &["--straggler", "wait"]).await;
    let answer = proxy.call(&new_payload(1, 4, "B1")).await;
    assert_eq!(answer["result"]["status"], "VALID", "{answer}");
    proxy
        .wait_until("the oversized vote is in", |app| {
            app.nodes.snapshot()[2]
                .health()
                .last_error
                .is_some_and(|e| e.contains("larger than 1048576 bytes"))
        })
        .await;
    assert_eq!(refused(&proxy, &els[2], "too_large").await, Some(1.0));
    let votes = format!(
        "eb_votes_total{{node=\"{}/\",status=\"NONE\",outcome=\"malformed\"}}",
        els[2].url()
    );
    assert_eq!(sample(&proxy.metrics().await, &votes), Some(1.0));
    assert!(
        els[2].streamed() < 16 << 20,
        "eb pulled {} bytes of a 100 MiB answer",
        els[2].streamed()
    );
}

#[tokio::test]
async fn an_answer_with_another_id_is_not_a_vote() {
    // Its INVALID would make the answer SYNCING; with another id than the request's it is no vote.
    let (els, proxy) = with_faulty_third(Fault::WrongId, "INVALID", &[]).await;
    let answer = proxy.call(&new_payload(7, 4, "B1")).await;
    assert_eq!(answer["result"]["status"], "VALID", "{answer}");
    proxy
        .wait_until("the late vote is in", |app| {
            app.nodes.snapshot()[2].health().last_error.is_some()
        })
        .await;
    assert_eq!(refused(&proxy, &els[2], "wrong_id").await, Some(1.0));
}

#[tokio::test]
async fn an_el_redirect_is_a_failed_call_and_is_never_followed() {
    let (els, proxy) = with_faulty_third(Fault::None, "VALID", &[]).await;
    let elsewhere = MockEl::start("elsewhere", &els[2].secret_hex).await;
    for target in [
        elsewhere.url(),
        format!("http://{}/policy/reload", proxy.admin),
    ] {
        els[2].set(|b| b.vote_fault = Fault::Redirect(target.clone()));
        let answer = proxy.call(&new_payload(1, 4, "B1")).await;
        assert_eq!(answer["result"]["status"], "VALID", "{answer}");
    }
    proxy
        .wait_until("both redirects are in", |app| {
            app.nodes.snapshot()[2]
                .health()
                .last_error
                .is_some_and(|e| e.contains("HTTP 307"))
        })
        .await;
    assert_eq!(refused(&proxy, &els[2], "redirect").await, Some(2.0));
    assert!(elsewhere.seen().is_empty(), "nothing went where it pointed");
    let metrics = proxy.metrics().await;
    assert!(
        !metrics.contains("eb_policy_reloads_total{"),
        "the policy was not reloaded: {metrics}"
    );
}

#[tokio::test]
async fn node_additions_are_all_or_nothing() {
    let els = start_many(3, None).await;
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    let secret = proxy.dir.join("new.hex");
    std::fs::write(&secret, format!("0x{}", "5a".repeat(32))).expect("write");
    let spec = |port: u32| format!("http://127.0.0.1:{port}#jwt-secret={}", secret.display());
    let post = |nodes: Vec<String>| {
        proxy.admin(
            reqwest::Method::POST,
            "/nodes",
            Some(json!({ "nodes": nodes })),
            None,
        )
    };
    let thousand: Vec<String> = (0..1000).map(|i| spec(20_000 + i)).collect();
    let (status, body) = post(thousand).await;
    assert_eq!((status, &body["added"]), (409, &json!([])), "{body}");
    let (status, body) = post(vec![spec(30_001), "not a url".to_owned()]).await;
    assert_eq!((status, &body["added"]), (400, &json!([])), "{body}");
    let (status, body) = post(vec![spec(30_002), spec(30_002)]).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(proxy.app.nodes.snapshot().len(), 3, "nothing was added");
    let (status, body) = post(vec![spec(30_003)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(proxy.app.nodes.snapshot().len(), 4);
}

/// Accepts connections on 127.0.0.1 and counts them (what a hostile node URL would see).
async fn counting_listener() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = std::sync::Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((_stream, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    (url, count)
}

#[tokio::test]
async fn an_added_node_cannot_borrow_another_secret_or_skip_the_token() {
    let els = start_many(2, None).await;
    let proxy = Proxy::start(&refs(&els), &[], &[]).await;
    let (url, dialled) = counting_listener().await;
    let outside = std::env::temp_dir().join(format!("eb-outside-{}", std::process::id()));
    std::fs::create_dir_all(&outside).expect("dir");
    let foreign = outside.join("foreign.hex");
    std::fs::write(&foreign, format!("0x{}", "6b".repeat(32))).expect("write");
    let cl_copy = proxy.dir.join("cl-copy.hex");
    std::fs::write(&cl_copy, CL_SECRET).expect("write");
    let post = |spec: String| {
        proxy.admin(
            reqwest::Method::POST,
            "/nodes",
            Some(json!({ "nodes": [spec] })),
            None,
        )
    };
    let el0 = proxy.dir.join("el0.hex");
    for (spec, why) in [
        (
            format!("{url}#jwt-secret={}", el0.display()),
            "already used",
        ),
        (
            format!("{url}#jwt-secret={}", cl_copy.display()),
            "already used",
        ),
        (url.clone(), "names its own #jwt-secret"),
        (
            format!("{url}#jwt-secret={}", foreign.display()),
            "outside the secret directories",
        ),
    ] {
        let (status, body) = post(spec.clone()).await;
        assert_eq!(status, 403, "{spec}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(why), "{spec}: {error}");
    }
    let (status, _) = proxy
        .admin_without_token(
            reqwest::Method::POST,
            "/nodes",
            Some(json!({"nodes": [format!("{url}#jwt-secret={}", proxy.dir.join("el1.hex").display())]})),
        )
        .await;
    assert_eq!(status, 401, "mutating calls need the token by default");
    assert_eq!(
        dialled.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "eb signed nothing for the stranger"
    );
    assert_eq!(proxy.app.nodes.snapshot().len(), 2);
    let _ = std::fs::remove_dir_all(&outside);
}

#[tokio::test]
async fn executionbackup_flows_keep_working_with_the_documented_flags() {
    let els = start_many(
        2,
        Some("0x7777777777777777777777777777777777777777777777777777777777777777"),
    )
    .await;
    let extra = MockEl::start("extra", &els[0].secret_hex).await;
    let proxy = Proxy::start(
        &refs(&els),
        &[],
        &["--admin-no-token", "--allow-shared-secrets"],
    )
    .await;
    let secret = proxy.dir.join("el0.hex");
    let (status, body) = proxy
        .admin_without_token(
            reqwest::Method::POST,
            "/add_nodes",
            Some(json!({"nodes": [format!("{}#jwt-secret={}", extra.url(), secret.display())]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(proxy.app.nodes.snapshot().len(), 3);
}

/// The `eb` binary of this build: beside the test's own folder, built if missing.
fn eb_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let eb = dir.join("eb");
    if !eb.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let built = std::process::Command::new(cargo)
            .args(["build", "-p", "eb", "--bin", "eb"])
            .current_dir(eb_tests::workspace())
            .status()
            .expect("cargo runs");
        assert!(built.success(), "cargo build -p eb");
    }
    eb
}

#[tokio::test]
async fn a_flood_of_idle_connections_under_1024_open_files_keeps_the_cl_and_the_els() {
    let els = start_many(3, None).await;
    let dir = std::env::temp_dir().join(format!("eb-fd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (cl, nodes) = write_secrets(&dir, &refs(&els), &[]);
    let ports = [0u16; 2].map(|_| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port")
    });
    let (engine, admin) = (
        format!("127.0.0.1:{}", ports[0]),
        format!("127.0.0.1:{}", ports[1]),
    );
    // A login shell's limit, soft and hard, so eb cannot raise it; idle connections would be
    // closed only after 60 s.
    let mut child = tokio::process::Command::new("bash")
        .arg("-c")
        .arg("ulimit -n 1024 && exec \"$@\"")
        .arg("eb")
        .arg(eb_binary())
        .args(["--jwt-secret", &cl.display().to_string()])
        .args(["--nodes", &nodes])
        .args(["--port", &ports[0].to_string(), "--admin-addr", &admin])
        .args(["--admin-no-token", "--health-interval", "1", "-q"])
        .args(["--header-timeout-ms", "60000"])
        .kill_on_drop(true)
        .spawn()
        .expect("eb starts");
    let client = eb_tests::client();
    let status = || async {
        let response = client.get(format!("http://{admin}/status")).send().await;
        serde_json::from_str::<Value>(&response.ok()?.text().await.ok()?).ok()
    };
    let mut ready = false;
    for _ in 0..500 {
        if status().await.is_some_and(|s| s["primary_node"] != "") {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ready, "eb has a primary");
    let minter = eb::auth::Minter::new(&eb::auth::JwtSecret::from_hex(CL_SECRET).expect("hex"));
    let call = |client: &reqwest::Client, id: u64| {
        let request = client
            .post(format!("http://{engine}/"))
            .header("authorization", minter.bearer())
            .header("content-type", "application/json")
            .timeout(Duration::from_secs(10))
            .body(new_payload(id, 4, &format!("B{id}")).to_string());
        async move {
            let response = request.send().await.map_err(|e| e.to_string())?;
            serde_json::from_str::<Value>(&response.text().await.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())
        }
    };
    // The CL's keep-alive connection is open before the flood.
    let answer = call(&client, 1).await.expect("answered");
    assert_eq!(answer["result"]["status"], "VALID");
    let connects = (0..1150).map(|_| async {
        let connect = TcpStream::connect(&engine);
        tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .ok()?
            .ok()
    });
    let flood: Vec<TcpStream> = futures_util::future::join_all(connects)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(flood.len() > 1024, "{} connections opened", flood.len());
    for id in 2..5 {
        let answer = call(&client, id)
            .await
            .expect("answered on the open connection");
        assert_eq!(answer["result"]["status"], "VALID", "call {id}: {answer}");
    }
    // A CL that connects anew during the flood gets in: a connection without a token makes room.
    let fresh = eb_tests::client();
    let answer = call(&fresh, 5).await.expect("a new connection is served");
    assert_eq!(answer["result"]["status"], "VALID", "{answer}");
    let status = status().await.expect("the admin API answers");
    for node in status["nodes"].as_array().expect("nodes") {
        assert_eq!(node["state"], "synced", "{node}");
    }
    drop(flood);
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}
