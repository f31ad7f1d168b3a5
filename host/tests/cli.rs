//! The `eb policy` subcommands as an operator runs them.

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn eb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eb"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("eb runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn policy_test_replays_fixtures_and_closes_with_counts() {
    let out = eb(&["policy", "test", "tests/fixtures/votes"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.ends_with(" passed, 0 failed"), "{stdout}");
}

#[test]
fn policy_test_prints_each_mismatch_and_fails() {
    // The unanimous policy disagrees with the default rule's fixtures where votes are split.
    let dir = std::env::temp_dir().join(format!("eb-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let case = dir.join("split.json");
    std::fs::write(
        &case,
        r#"{"name": "split", "votes": [{"node": 0, "status": "VALID"}, {"node": 1, "status": "VALID"},
            {"node": 2, "status": "SYNCING"}], "expect": {"action": "follow", "status": "VALID"}}"#,
    )
    .expect("write fixture");
    let wat = "policies/examples/majority-of-configured.wat";
    let ok = eb(&[
        "policy",
        "test",
        "--policy",
        wat,
        case.to_str().unwrap_or_default(),
    ]);
    assert!(ok.status.success(), "{}", text(&ok.stdout));
    let config = "majority=1";
    let out = eb(&[
        "policy",
        "test",
        "--policy-config",
        config,
        case.to_str().unwrap_or_default(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL \"split\""), "{stdout}");
    assert!(
        stdout.contains("votes: 0:VALID 1:VALID 2:SYNCING"),
        "{stdout}"
    );
    assert!(
        stdout.contains("expected follow VALID, got syncing reason 11"),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("0 passed, 1 failed"),
        "{stdout}"
    );
}

#[test]
fn policy_check_reports_and_refuses() {
    let out = eb(&["policy", "check"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("conformance:") && stdout.contains("no faults"),
        "{stdout}"
    );
    assert!(stdout.contains("sha256:"), "{stdout}");

    let out = eb(&["policy", "check", "tests/fixtures/hostile/import.wat"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("imports env::now; a policy may not import anything"),
        "{}",
        text(&out.stderr)
    );
    let out = eb(&["policy", "check", "tests/fixtures/hostile/always-trap.wat"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("fails conformance case"),
        "{}",
        text(&out.stderr)
    );
    let out = eb(&["policy", "check", "no/such/policy.wasm"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read no/such/policy.wasm"));
}

#[test]
fn bad_fixture_files_are_reported_with_their_line() {
    let dir = std::env::temp_dir().join(format!("eb-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("bad.jsonl");
    std::fs::write(&file, "\n{\"name\": \"x\", \"votes\": []}\n").expect("write");
    let out = eb(&["policy", "test", file.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("bad.jsonl:2:") && stderr.contains("expect"),
        "{stderr}"
    );
}

fn secret_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eb-cli-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, "0x".to_owned() + &"42".repeat(32)).expect("write");
    path
}

#[test]
fn config_errors_exit_2_with_one_line_naming_the_flag() {
    let secret = secret_file("cl.hex");
    let secret = secret.to_str().unwrap_or_default();
    for (args, expected) in [
        (
            vec!["--nodes", "http://127.0.0.1:8551"],
            "eb: --jwt-secret: required",
        ),
        (vec!["--jwt-secret", secret], "eb: --nodes: required"),
        (
            vec![
                "--jwt-secret",
                secret,
                "--nodes",
                "http://127.0.0.1:8551#timeout=20000",
            ],
            "eb: --nodes: node 0",
        ),
        (
            vec![
                "--jwt-secret",
                "/no/such/file",
                "--nodes",
                "http://127.0.0.1:8551",
            ],
            "eb: --jwt-secret: cannot read",
        ),
    ] {
        let out = eb(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(!stderr.contains(&"42".repeat(32)), "secrets never printed");
    }
}

#[cfg(unix)]
#[test]
fn runs_until_sigterm_and_exits_0() {
    use std::io::{BufRead, BufReader};
    let secret = secret_file("run.hex");
    let mut child = Command::new(env!("CARGO_BIN_EXE_eb"))
        .args(["--jwt-secret", secret.to_str().unwrap_or_default()])
        .args([
            "--nodes",
            "http://127.0.0.1:9",
            "--port",
            "0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("eb starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let listening = lines
        .by_ref()
        .take(50)
        .map_while(Result::ok)
        .any(|line| line.contains("eb listening"));
    assert!(listening, "eb did not log that it is listening");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = child.wait().expect("eb exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn version_names_the_embedded_policy() {
    use sha2::{Digest, Sha256};
    let out = eb(&["--version"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let wasm = std::fs::read(root().join("policies/default.wasm")).expect("committed policy");
    let sha = hex::encode(Sha256::digest(wasm));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(&format!("eb {}", env!("CARGO_PKG_VERSION"))) && stdout.contains(&sha),
        "{stdout}"
    );
}

#[test]
fn a_policy_crate_from_zero_to_tested() {
    let dir = std::env::temp_dir().join(format!("eb-policy-new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let dir_arg = dir.display().to_string();
    let out = eb(&["policy", "new", "demo-policy", "--dir", &dir_arg]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let again = eb(&["policy", "new", "demo-policy", "--dir", &dir_arg]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "an existing crate is not overwritten"
    );
    let bad = eb(&["policy", "new", "Demo!", "--dir", &dir_arg]);
    assert!(
        text(&bad.stderr).contains("not a crate name"),
        "{}",
        text(&bad.stderr)
    );

    let crate_dir = dir.join("demo-policy");
    let built = eb(&["policy", "build", &crate_dir.display().to_string()]);
    let line = text(&built.stdout);
    assert!(built.status.success(), "{line}{}", text(&built.stderr));
    let wasm = line
        .split(" (")
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    assert!(
        wasm.ends_with("demo_policy.wasm") && line.contains(" bytes)"),
        "{line}"
    );

    let fixtures = crate_dir.join("fixtures").display().to_string();
    let tested = eb(&["policy", "test", "--policy", &wasm, &fixtures]);
    let report = text(&tested.stdout);
    assert!(tested.status.success(), "{report}");
    assert!(
        report.trim_end().ends_with("5 passed, 0 failed"),
        "{report}"
    );

    let native = Command::new(env!("CARGO"))
        .arg("test")
        .current_dir(&crate_dir)
        .output()
        .expect("cargo test runs");
    let native_out = text(&native.stdout);
    assert!(
        native.status.success(),
        "{native_out}{}",
        text(&native.stderr)
    );
    assert!(
        native_out.contains("decides_every_fixture_as_expected ... ok"),
        "{native_out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn policy_build_says_what_is_missing() {
    let out = eb(&["policy", "build", "/nonexistent/policy"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no Cargo.toml"),
        "{}",
        text(&out.stderr)
    );
}
