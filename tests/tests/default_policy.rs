//! The default policy: fixtures natively and in Wasm, and the rule's properties over random
//! ballots (including that the Wasm module and the native function agree).

use eb::policy::{Ballot, Policy, PolicySource, WasmPolicy};
use eb_tests::{arb, fixture};
use policy_sdk::fixture as fixtures;
use policy_sdk::tally::{threshold, Tally};
use policy_sdk::{Input, Outcome, Status, Verdict, Vote, VoteFlags};
use proptest::prelude::*;
use std::sync::OnceLock;

fn wasm() -> &'static WasmPolicy {
    static POLICY: OnceLock<WasmPolicy> = OnceLock::new();
    POLICY.get_or_init(|| WasmPolicy::load(&PolicySource::Embedded, "").expect("default loads"))
}

fn native(ballot: &Ballot) -> Verdict {
    ballot
        .decide_native(eb_policy_default::decide)
        .expect("ballot encodes")
}

fn tally(ballot: &Ballot) -> Tally {
    let bytes = ballot.to_bytes().expect("ballot encodes");
    Tally::of(&Input::parse(&bytes).expect("parses"))
}

/// (action, followed node, followed status, reason): what the CL would get, order-free.
fn outcome(ballot: &Ballot, verdict: Verdict) -> (u8, Option<u16>, Option<Status>, u32) {
    let action = match verdict {
        Verdict::Wait | Verdict::Wake { .. } => 0,
        Verdict::Follow { .. } => 1,
        Verdict::Syncing { .. } => 2,
    };
    let followed = ballot.followed(verdict);
    (
        action,
        followed.map(|v| v.node),
        followed.map(|v| v.status),
        verdict.reason(),
    )
}

#[test]
fn fixtures_pass_natively_and_in_wasm() {
    let cases = fixtures::load(&[fixture("votes")]).expect("fixtures load");
    let native_report = fixtures::run(&cases, |b| Ok(native(b)));
    assert!(native_report.failures.is_empty(), "native: {native_report}");
    let wasm_report = fixtures::run(&cases, |b| {
        let decision = wasm().decide(b);
        decision
            .fault
            .map_or(Ok(decision.verdict), |f| Err(f.to_string()))
    });
    assert!(wasm_report.failures.is_empty(), "wasm: {wasm_report}");
    assert_eq!(native_report.passed, cases.len());
}

#[test]
fn fixtures_cover_one_to_seven_nodes_and_every_branch() {
    let cases = fixtures::load(&[fixture("votes")]).expect("fixtures load");
    let ballots: Vec<Ballot> = cases.iter().map(|c| c.ballot().expect("valid")).collect();
    for nodes in 1..=7 {
        assert!(
            ballots.iter().any(|b| b.context.nodes_configured == nodes),
            "no fixture with {nodes} nodes"
        );
    }
    let reasons: std::collections::BTreeSet<u32> =
        ballots.iter().map(|b| native(b).reason()).collect();
    for reason in [1, 2, 10, 11, 12, 14] {
        assert!(
            reasons.contains(&reason),
            "no fixture reaches reason {reason}"
        );
    }
    assert!(ballots.iter().any(|b| native(b) == Verdict::Wait));
}

/// The ballot with every catching-up EL's SYNCING or ACCEPTED vote made a timeout (not
/// counted), under the seed's rule: what `behind=ignore` must decide.
fn without_catching_up(ballot: &Ballot) -> Ballot {
    let mut plain = ballot.clone();
    plain.config = String::new();
    for vote in &mut plain.votes {
        let catching_up =
            vote.flags.has(VoteFlags::NODE_SYNCING) || vote.flags.has(VoteFlags::NODE_BEHIND);
        if catching_up && matches!(vote.status, Status::Syncing | Status::Accepted) {
            (vote.status, vote.outcome) = (Status::None, Outcome::Timeout);
        }
    }
    plain
}

#[test]
fn behind_ignore_in_every_two_and_three_el_case() {
    let kinds = [
        (Status::Valid, Outcome::Answered),
        (Status::Invalid, Outcome::Answered),
        (Status::Syncing, Outcome::Answered),
        (Status::Accepted, Outcome::Answered),
        (Status::None, Outcome::Timeout),
    ];
    let states = [0, VoteFlags::NODE_SYNCING, VoteFlags::NODE_BEHIND];
    let choices: Vec<((Status, Outcome), u8)> = kinds
        .iter()
        .flat_map(|&k| states.iter().map(move |&s| (k, s)))
        .collect();
    let mut checked = 0;
    for n in 2..=3u32 {
        for index in 0..choices.len().pow(n) {
            let votes: Vec<Vote> = (0..n)
                .map(|i| {
                    let ((status, outcome), flags) =
                        choices[index / choices.len().pow(i) % choices.len()];
                    let mut vote = Vote::failed(i as u16, outcome);
                    vote.status = status;
                    vote.flags = VoteFlags(flags);
                    vote
                })
                .collect();
            let mut ballot = arb::ballot(votes, 0);
            let seed = outcome(&ballot, native(&ballot));
            ballot.config = "behind=ignore".to_owned();
            let verdict = native(&ballot);
            let expected = without_catching_up(&ballot);
            assert_eq!(
                outcome(&ballot, verdict),
                outcome(&expected, native(&expected)),
                "{:?}",
                ballot.votes
            );
            if ballot
                .followed(verdict)
                .is_some_and(|v| v.status == Status::Valid)
            {
                assert!(ballot
                    .votes
                    .iter()
                    .all(|v| v.status.normalized() != Status::Invalid));
            }
            if ballot.votes.iter().all(|v| v.flags.0 == 0) {
                assert_eq!(
                    outcome(&ballot, verdict),
                    seed,
                    "no EL catching up: the seed's rule"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 15 * 15 + 15 * 15 * 15);
    // The two-EL upgrade: VALID beside a catching-up EL's SYNCING.
    for flags in [VoteFlags::NODE_SYNCING, VoteFlags::NODE_BEHIND] {
        let mut behind = Vote::answered(1, Status::Syncing);
        behind.flags = VoteFlags(flags);
        let mut ballot = arb::ballot(vec![Vote::answered(0, Status::Valid), behind], 0);
        assert!(
            matches!(native(&ballot), Verdict::Syncing { reason: 11 }),
            "a tie by default"
        );
        ballot.config = "behind=ignore".to_owned();
        assert_eq!(
            ballot.followed(native(&ballot)).map(|v| v.status),
            Some(Status::Valid),
            "the synced EL decides alone"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn never_follows_valid_while_a_counted_vote_is_invalid(ballot in arb::final_ballot(16)) {
        let verdict = native(&ballot);
        if ballot.followed(verdict).is_some_and(|v| v.status == Status::Valid) {
            prop_assert_eq!(tally(&ballot).count(Status::Invalid), 0);
        }
    }

    #[test]
    fn never_follows_valid_beside_an_invalid_with_behind_ignored(mut ballot in arb::final_ballot(16)) {
        ballot.config = "behind=ignore".to_owned();
        let verdict = native(&ballot);
        if ballot.followed(verdict).is_some_and(|v| v.status == Status::Valid) {
            prop_assert_eq!(tally(&ballot).count(Status::Invalid), 0);
        }
        let expected = without_catching_up(&ballot);
        prop_assert_eq!(outcome(&ballot, verdict), outcome(&expected, native(&expected)));
    }

    #[test]
    fn never_invalid_without_an_invalid_majority(ballot in arb::final_ballot(16)) {
        let verdict = native(&ballot);
        if ballot.followed(verdict).is_some_and(|v| v.status.normalized() == Status::Invalid) {
            let t = tally(&ballot);
            prop_assert!(t.count(Status::Invalid) >= threshold(t.total(), 600).max(1));
        }
    }

    #[test]
    fn no_counted_votes_is_syncing(ballot in arb::final_ballot(16)) {
        if tally(&ballot).total() == 0 {
            let syncing = matches!(native(&ballot), Verdict::Syncing { .. });
            prop_assert!(syncing, "zero counted votes must be Syncing");
        }
    }

    #[test]
    fn final_ballots_never_wait_and_follow_only_answers(ballot in arb::final_ballot(16)) {
        let verdict = native(&ballot);
        prop_assert_ne!(verdict, Verdict::Wait);
        if let Verdict::Follow { .. } = verdict {
            prop_assert!(ballot.followed(verdict).is_some());
        }
    }

    #[test]
    fn verdict_does_not_depend_on_vote_order(
        (votes, shuffled) in (0usize..=16)
            .prop_flat_map(arb::votes)
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle()))
    ) {
        let (a, b) = (arb::ballot(votes, 0), arb::ballot(shuffled, 0));
        prop_assert_eq!(outcome(&a, native(&a)), outcome(&b, native(&b)));
    }

    #[test]
    fn early_verdicts_hold_whatever_the_pending_votes_say(
        (arrived, pending) in (0usize..=8, 1usize..=8)
            .prop_flat_map(|(n, p)| (arb::votes(n), arb::votes(n + p)))
    ) {
        let n = arrived.len();
        let later: Vec<_> = pending[n..].to_vec();
        let early = arb::ballot(arrived.clone(), later.len() as u16);
        let verdict = native(&early);
        if verdict != Verdict::Wait {
            let all = arb::ballot([arrived, later].concat(), 0);
            let last = native(&all);
            let status = |b: &Ballot, v| b.followed(v).map(|v| v.status.normalized());
            prop_assert_eq!(outcome(&early, verdict).0, outcome(&all, last).0);
            prop_assert_eq!(status(&early, verdict), status(&all, last));
        }
    }

    #[test]
    fn wasm_module_agrees_with_native_function(
        (votes, pending) in (0usize..=16).prop_flat_map(arb::votes).prop_flat_map(|v| (Just(v), 0u16..3))
    ) {
        let ballot = arb::ballot(votes, pending);
        let decision = wasm().decide(&ballot);
        prop_assert_eq!(decision.fault, None);
        prop_assert_eq!(decision.verdict, native(&ballot));
    }
}

/// Safety at scale, on demand: `EB_SAFETY_CASES=1000000 cargo test --release -p eb-tests
/// --test default_policy -- --ignored safety_at_scale`. Every generated ballot is checked for
/// all the safety properties at once; the count and the violations (none) are printed.
#[test]
#[ignore = "on demand: a million cases"]
fn safety_at_scale() {
    use proptest::test_runner::{Config, TestRunner};
    let cases: u32 = std::env::var("EB_SAFETY_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let checked = std::sync::atomic::AtomicU64::new(0);
    let result = runner.run(&arb::final_ballot(16), |ballot| {
        checked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let verdict = native(&ballot);
        let t = tally(&ballot);
        let followed = ballot.followed(verdict).map(|v| v.status.normalized());
        prop_assert_ne!(verdict, Verdict::Wait);
        if followed == Some(Status::Valid) {
            prop_assert_eq!(t.count(Status::Invalid), 0);
        }
        if followed == Some(Status::Invalid) {
            prop_assert!(t.count(Status::Invalid) >= threshold(t.total(), 600).max(1));
        }
        if t.total() == 0 {
            prop_assert!(
                matches!(verdict, Verdict::Syncing { .. }),
                "zero counted votes"
            );
        }
        Ok(())
    });
    let checked = checked.into_inner();
    println!(
        "safety_at_scale: {checked} ballots checked, violations: {}",
        usize::from(result.is_err())
    );
    assert!(result.is_ok(), "{result:?}");
    assert!(checked >= u64::from(cases));
}
