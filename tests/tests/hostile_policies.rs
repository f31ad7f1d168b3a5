//! Deliberately hostile policy modules: each ends as SYNCING or a refused load, and the process
//! keeps deciding with a good policy afterwards.

use eb::policy::{Ballot, Fault, LoadError, Policy, PolicySource, WasmPolicy, REASON_POLICY_FAULT};
use eb_tests::{arb, fixture};
use policy_sdk::{Status, Verdict, Vote};

fn load(name: &str) -> Result<WasmPolicy, LoadError> {
    WasmPolicy::load(
        &PolicySource::File(fixture(&format!("hostile/{name}.wat"))),
        "",
    )
}

/// A ballot with method_version 99, which the triggered modules misbehave on.
fn trigger() -> Ballot {
    let mut ballot = arb::ballot(
        vec![
            Vote::answered(0, Status::Valid),
            Vote::answered(1, Status::Valid),
        ],
        0,
    );
    ballot.context.method_version = 99;
    ballot
}

fn assert_good_policy_still_decides() {
    let good = WasmPolicy::load(&PolicySource::Embedded, "").expect("default loads");
    let ballot = arb::ballot(vec![Vote::answered(0, Status::Valid)], 0);
    let decision = good.decide(&ballot);
    assert_eq!(decision.fault, None);
    assert!(matches!(decision.verdict, Verdict::Follow { vote: 0, .. }));
}

#[test]
fn misbehaving_decisions_end_as_syncing() {
    type Expect = fn(&Fault) -> bool;
    let cases: [(&str, Expect); 8] = [
        ("loop-decide", |f| {
            matches!(f, Fault::OutOfFuel | Fault::Deadline)
        }),
        ("memory-bomb", |f| {
            matches!(f, Fault::Trap(_) | Fault::Limit(_))
        }),
        ("table-bomb", |f| {
            matches!(f, Fault::Trap(_) | Fault::Limit(_))
        }),
        ("deep-recursion", |f| matches!(f, Fault::StackOverflow)),
        ("unreachable", |f| matches!(f, Fault::Trap(_))),
        ("follow-out-of-range", |f| {
            matches!(f, Fault::FollowUnanswered(200))
        }),
        ("wait-when-final", |f| matches!(f, Fault::WaitWhenFinal)),
        ("bad-verdict", |f| matches!(f, Fault::BadVerdict(7))),
    ];
    for (name, expected) in cases {
        let policy = load(name).unwrap_or_else(|e| panic!("{name} should load: {e}"));
        let decision = policy.decide(&trigger());
        let fault = decision
            .fault
            .clone()
            .unwrap_or_else(|| panic!("{name}: no fault"));
        assert!(expected(&fault), "{name}: unexpected fault {fault}");
        assert_eq!(
            decision.verdict,
            Verdict::Syncing {
                reason: REASON_POLICY_FAULT
            },
            "{name}"
        );
        // The same instance pool serves the next decision, by this module and by a good one.
        let again = policy.decide(&arb::ballot(vec![Vote::answered(0, Status::Valid)], 0));
        assert_eq!(again.fault, None, "{name} on a normal ballot");
        assert_good_policy_still_decides();
    }
}

#[test]
fn hostile_modules_are_refused_at_load() {
    let refused = |name: &str| match load(name) {
        Ok(_) => panic!("{name} should be refused"),
        Err(e) => e,
    };
    assert!(matches!(
        refused("loop-start"),
        LoadError::Instantiate(Fault::OutOfFuel | Fault::Deadline)
    ));
    assert!(
        matches!(refused("huge-memory"), LoadError::Compile(m) if m.contains("exceeds the limit"))
    );
    assert!(matches!(refused("import"), LoadError::Import { .. }));
    assert!(matches!(
        refused("wrong-abi"),
        LoadError::AbiVersion { major: 2, .. }
    ));
    assert!(matches!(
        refused("missing-export"),
        LoadError::MissingExport("eb_decide")
    ));
    assert!(matches!(
        refused("small-buffer"),
        LoadError::InputBuffer { .. }
    ));
    assert!(matches!(
        refused("always-trap"),
        LoadError::Conformance {
            fault: Fault::Trap(_),
            ..
        }
    ));
    let message = refused("import").to_string();
    assert_eq!(
        message,
        "imports env::now; a policy may not import anything"
    );
    assert_good_policy_still_decides();
}

#[test]
fn config_is_checked_at_load() {
    let bad = WasmPolicy::load(&PolicySource::Embedded, "majority=0.3");
    assert!(matches!(bad, Err(LoadError::Config(c)) if c == "majority=0.3"));
    let wat = PolicySource::File(
        eb_tests::workspace().join("policies/examples/majority-of-configured.wat"),
    );
    assert!(matches!(
        WasmPolicy::load(&wat, "x=1"),
        Err(LoadError::NoConfig(_))
    ));
    let good = WasmPolicy::load(&PolicySource::Embedded, "majority=0.75").expect("loads");
    assert_eq!(good.info().config, "majority=0.75");
}
