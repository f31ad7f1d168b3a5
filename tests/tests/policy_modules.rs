//! Every shipped policy, built from source for wasm32, against its fixtures; and the committed
//! `policies/default.wasm` against a fresh build of `policies/default` (same verdicts).

use eb::policy::{Ballot, Policy, PolicySource, WasmPolicy};
use eb_tests::{arb, fixture, workspace};
use policy_sdk::fixture as fixtures;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Builds the Rust policies for wasm32 once per test process; returns the output directory.
fn built() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = workspace().join("target/policy-rebuild");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace())
            .args([
                "build",
                "--quiet",
                "--target",
                "wasm32-unknown-unknown",
                "--profile",
                "policy",
            ])
            .args([
                "-p",
                "eb-policy-default",
                "-p",
                "eb-policy-unanimous",
                "-p",
                "eb-policy-client-diverse",
            ])
            .arg("--target-dir")
            .arg(&target)
            .status()
            .expect("cargo runs");
        assert!(
            status.success(),
            "building the policies for wasm32 failed (rustup target add wasm32-unknown-unknown?)"
        );
        target.join("wasm32-unknown-unknown/policy")
    })
}

fn load(path: PathBuf) -> WasmPolicy {
    WasmPolicy::load(&PolicySource::File(path.clone()), "")
        .unwrap_or_else(|e| panic!("{} refused: {e}", path.display()))
}

fn run(policy: &WasmPolicy, dir: PathBuf) -> fixtures::Report {
    let cases = fixtures::load(&[dir]).expect("fixtures load");
    assert!(!cases.is_empty());
    fixtures::run(&cases, |b| {
        let d = policy.decide(b);
        d.fault.map_or(Ok(d.verdict), |f| Err(f.to_string()))
    })
}

#[test]
fn rebuilt_default_gives_the_committed_modules_verdicts() {
    let committed = WasmPolicy::load(&PolicySource::Embedded, "").expect("embedded loads");
    let rebuilt = load(built().join("eb_policy_default.wasm"));
    let cases = fixtures::load(&[fixture("votes")]).expect("fixtures load");
    let mut ballots: Vec<Ballot> = cases.iter().map(|c| c.ballot().expect("valid")).collect();
    let mut runner = TestRunner::deterministic();
    let strategy = (0usize..=16).prop_flat_map(arb::votes);
    for pending in (0..2000).map(|i| (i % 3) as u16) {
        let votes = strategy.new_tree(&mut runner).expect("generates").current();
        ballots.push(arb::ballot(votes, pending));
    }
    for ballot in &ballots {
        let (a, b) = (committed.decide(ballot), rebuilt.decide(ballot));
        assert_eq!((a.verdict, a.fault), (b.verdict, b.fault), "{ballot:?}");
    }
}

#[test]
fn shipped_policies_pass_their_fixtures_in_wasm() {
    let policies = workspace().join("policies");
    for (module, fixtures_dir) in [
        (built().join("eb_policy_default.wasm"), fixture("votes")),
        (
            built().join("eb_policy_unanimous.wasm"),
            policies.join("unanimous/fixtures"),
        ),
        (
            built().join("eb_policy_client_diverse.wasm"),
            policies.join("client-diverse/fixtures"),
        ),
        (
            policies.join("examples/majority-of-configured.wat"),
            policies.join("examples"),
        ),
    ] {
        let report = run(&load(module.clone()), fixtures_dir);
        assert!(report.failures.is_empty(), "{}: {report}", module.display());
    }
}
