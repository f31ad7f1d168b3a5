//! The simulation (`tests/src/sim`): generated schedules through eb's real engine on a paused
//! clock, every promise checked on every run; the shrunk schedules of the bugs it found, kept
//! as regressions; and the properties shown to catch a run that breaks them.
//!
//! `EB_SIM_CASES=100000 cargo test --release -p eb-tests --test sim` runs a large exploration;
//! a failure prints its seed (`EB_SIM_SEED`) and writes its schedule and chart.

use eb_tests::sim::props::{self, PROPERTIES};
use eb_tests::sim::schedule::Schedule;
use eb_tests::sim::trace::Event;
use eb_tests::sim::world::{CallKind, Run};
use eb_tests::sim::{self, run_and_check};
use serde_json::json;

#[test]
fn sim_random_schedules_keep_every_promise() {
    let (cases, seed) = (sim::cases(sim::CI_CASES), sim::seed());
    eprintln!("simulating {cases} schedules, EB_SIM_SEED={seed}");
    match sim::explore(cases, seed, 7) {
        Ok(coverage) => {
            eprintln!("{coverage}");
            assert_eq!(coverage.runs, u64::from(cases));
        }
        Err(failure) => panic!("{failure}"),
    }
}

fn regressions() -> Vec<(String, Schedule)> {
    let dir = eb_tests::fixture("sim");
    let mut found: Vec<(String, Schedule)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable");
            let schedule =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path.display().to_string(), schedule)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

#[test]
fn sim_regressions_replay_clean() {
    let found = regressions();
    assert!(
        found.len() >= 2,
        "the shrunk schedules of the bugs found are kept"
    );
    for (name, schedule) in found {
        let (_, violations) = run_and_check(&schedule);
        assert!(violations.is_empty(), "{name}: {violations:?}");
    }
}

/// The first regression's run, to tamper with.
fn a_run() -> Run {
    let (_, schedule) = regressions().remove(0);
    let (run, violations) = run_and_check(&schedule);
    assert!(violations.is_empty(), "{violations:?}");
    run
}

fn broken(run: &Run) -> Vec<&'static str> {
    let mut names: Vec<&str> = props::check(run).iter().map(|v| v.property).collect();
    names.dedup();
    names
}

#[test]
fn sim_properties_catch_what_breaks_them() {
    let clean = a_run();
    let vote = |run: &Run, kind: CallKind| {
        run.calls
            .iter()
            .position(|c| c.kind == kind && props::answered_status(c) == Some("VALID"))
            .expect("a VALID answer of that kind")
    };

    // eb answering VALID where its recording shows a counted INVALID.
    let mut run = a_run();
    let i = vote(&run, CallKind::NewPayload);
    let id = run.calls[i].id.clone();
    let case = run
        .recordings
        .iter_mut()
        .find(|c| c.request_id.as_deref() == Some(id.as_str()))
        .expect("recorded");
    case.votes[0].status = "INVALID".into();
    case.votes[0].late = false;
    assert!(broken(&run).contains(&"never_valid_beside_a_counted_invalid"));

    // A block answered VALID, then INVALID; and INVALID with a latestValidHash no EL gave.
    let mut run = a_run();
    let i = vote(&run, CallKind::NewPayload);
    let mut again = run.calls[i].clone();
    again.answer = json!({"jsonrpc": "2.0", "id": 1, "result":
        {"status": "INVALID", "latestValidHash": "0x99", "validationError": "x"}});
    run.calls.push(again);
    let names = broken(&run);
    assert!(
        names.contains(&"a_final_answer_is_never_turned_around"),
        "{names:?}"
    );
    assert!(
        names.contains(&"an_invalid_answer_carries_an_els_latest_valid_hash"),
        "{names:?}"
    );

    // An answer past the CL's deadline, and past the straggler cap once a quorum answered.
    let mut run = a_run();
    let i = vote(&run, CallKind::Forkchoice);
    run.calls[i].answered_ms = run.calls[i].sent_ms + 8_001;
    let names = broken(&run);
    assert!(
        names.contains(&"no_answer_is_later_than_the_cl_deadline"),
        "{names:?}"
    );
    assert!(
        names.contains(&"a_quorum_in_time_is_answered_within_the_straggler_cap"),
        "{names:?}"
    );

    // An EL receiving a call twice, or one never (nothing counted as dropped).
    let mut run = a_run();
    let first = run
        .events
        .iter()
        .position(|e| matches!(e, Event::Received { method, .. } if method.starts_with("engine_newPayload")))
        .expect("a newPayload received");
    let duplicate = run.events[first].clone();
    run.events.push(duplicate);
    assert!(broken(&run).contains(&"each_el_gets_state_changing_calls_in_cl_order_at_most_once"));
    let mut run = a_run();
    run.events.remove(first);
    assert!(broken(&run).contains(&"every_call_is_delivered_or_counted_as_dropped"));

    // A queue past its limits.
    let mut run = a_run();
    run.max_queued[0].0 = run.limits[0].calls + 1;
    assert_eq!(broken(&run), ["queues_stay_within_their_limits"]);

    // A payloadId eb never gave answered with a payload.
    let mut run = a_run();
    let mut unknown = run.calls[0].clone();
    unknown.kind = CallKind::GetPayload;
    unknown.build = None;
    unknown.answer = json!({"jsonrpc": "2.0", "id": 1, "result": {"executionPayload": {}}});
    run.calls.push(unknown);
    assert!(broken(&run).contains(&"a_build_is_served_only_by_its_builders_on_its_head"));

    assert!(props::check(&clean).is_empty());
    assert_eq!(PROPERTIES.len(), 10);
}

#[test]
fn sim_chart_renders_with_mscgen() {
    let run = a_run();
    let dir = std::env::temp_dir().join(format!("eb-sim-chart-{}", std::process::id()));
    let (_, msc) = sim::write(&dir, "chart", &run, &[]).expect("written");
    let text = std::fs::read_to_string(&msc).expect("the chart");
    assert!(text.starts_with("msc {") && text.contains("cl => eb") && text.contains("eb >> cl"));
    let png = dir.join("chart.png");
    let status = std::process::Command::new("mscgen")
        .args(["-T", "png", "-o"])
        .arg(&png)
        .arg(&msc)
        .status()
        .expect("mscgen is installed (Debian package `mscgen`; .ci/run installs it)");
    assert!(status.success(), "mscgen refused the chart:\n{text}");
    assert!(std::fs::metadata(&png).expect("a PNG").len() > 1_000);
    let _ = std::fs::remove_dir_all(&dir);
}
