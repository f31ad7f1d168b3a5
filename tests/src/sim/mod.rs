//! Proof by simulation: generated [`Schedule`]s of EL behaviour and CL calls run through eb's
//! real engine on tokio's paused clock ([`world`]), every promise checked on every run
//! ([`props`]), a failure shrunk by proptest and written out as replayable JSON and as a
//! sequence chart ([`msc`]).
//!
//! `EB_SIM_CASES` sets the number of runs, `EB_SIM_SEED` the seed (a failure prints it), and
//! `EB_SIM_OUT` where failures are written (default `target/sim-failures`).

pub mod el;
pub mod msc;
pub mod props;
pub mod schedule;
pub mod trace;
pub mod world;

use eb::policy::{Ballot, Decision, Policy, PolicyInfo, PolicySource, Verdict, WasmPolicy};
use policy_sdk::Vote;
use props::Violation;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};
use schedule::{Schedule, SimPolicy};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Runs per `cargo test` unless `EB_SIM_CASES` says otherwise.
pub const CI_CASES: u32 = 200;

/// The policies a schedule can run under, each loaded once per process.
pub fn policy(which: SimPolicy) -> Arc<dyn Policy> {
    static DEFAULT: OnceLock<Arc<dyn Policy>> = OnceLock::new();
    match which {
        SimPolicy::Default => Arc::clone(DEFAULT.get_or_init(|| {
            let policy = WasmPolicy::load(&PolicySource::Embedded, "")
                .unwrap_or_else(|e| panic!("the embedded default policy: {e}"));
            Arc::new(policy)
        })),
        SimPolicy::Reckless => Arc::new(Reckless(PolicyInfo {
            name: "reckless (simulation)".into(),
            sha256: "0".repeat(64),
            size: 0,
            config: String::new(),
            loaded_at: std::time::SystemTime::UNIX_EPOCH,
        })),
    }
}

/// A policy that follows the first answer whatever the others say: eb's own check of every
/// verdict must turn its VALID beside an INVALID into a fault, answered SYNCING.
struct Reckless(PolicyInfo);

impl Policy for Reckless {
    fn decide(&self, ballot: &Ballot) -> Decision {
        let verdict = match ballot.votes.iter().position(Vote::is_answer) {
            Some(i) => Verdict::Follow {
                vote: i as u16,
                reason: 1,
            },
            None if ballot.context.is_final => Verdict::Syncing { reason: 1 },
            None => Verdict::Wait,
        };
        Decision::checked(ballot, verdict, 0)
    }

    fn info(&self) -> &PolicyInfo {
        &self.0
    }
}

/// Runs `schedule` and checks every property.
pub fn run_and_check(schedule: &Schedule) -> (world::Run, Vec<Violation>) {
    let run = world::run(schedule, policy(schedule.policy));
    let violations = props::check(&run);
    (run, violations)
}

/// `EB_SIM_CASES`, or `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("EB_SIM_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `EB_SIM_SEED`, or one from the clock.
pub fn seed() -> u64 {
    std::env::var("EB_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// Where failures are written.
pub fn out_dir() -> PathBuf {
    std::env::var_os("EB_SIM_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace().join("target/sim-failures"))
}

/// A shrunk failure, written out.
#[derive(Debug)]
pub struct Failure {
    /// The seed that found it.
    pub seed: u64,
    /// The shrunk schedule.
    pub schedule: Schedule,
    /// What it broke.
    pub violations: Vec<Violation>,
    /// The schedule as JSON (`eb-sim --replay`).
    pub json: PathBuf,
    /// Its sequence chart.
    pub msc: PathBuf,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "simulation failed with EB_SIM_SEED={}:", self.seed)?;
        for v in &self.violations {
            writeln!(f, "  {} (call {:?}): {}", v.property, v.call, v.detail)?;
        }
        write!(
            f,
            "shrunk schedule: {} (replay: cargo run -p eb-tests --bin eb-sim -- --replay {0}); chart: {}",
            self.json.display(),
            self.msc.display()
        )
    }
}

/// Writes `schedule` and its chart as `<dir>/<name>.json` and `.msc`; returns both paths.
pub fn write(
    dir: &Path,
    name: &str,
    run: &world::Run,
    violations: &[Violation],
) -> std::io::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let json = dir.join(format!("{name}.json"));
    let msc = dir.join(format!("{name}.msc"));
    let text = serde_json::to_string_pretty(&run.schedule).map_err(std::io::Error::other)?;
    std::fs::write(&json, text + "\n")?;
    std::fs::write(&msc, msc::render(run, violations))?;
    Ok((json, msc))
}

/// What the explored runs went through, to show the schedules reach the cases that matter.
#[derive(Clone, Debug, Default)]
pub struct Coverage {
    /// Runs.
    pub runs: u64,
    /// CL calls.
    pub calls: u64,
    /// Vote answers VALID, INVALID, SYNCING, ACCEPTED, and JSON-RPC errors.
    pub answers: [u64; 5],
    /// SYNCING answers to a ballot holding both a VALID and a counted INVALID.
    pub split_ballots: u64,
    /// Votes not waited for (cut).
    pub cuts: u64,
    /// Calls an EL refused (down).
    pub refused: u64,
    /// Missed calls replayed to a returning EL.
    pub replayed: u64,
    /// Calls dropped from a full queue or replay.
    pub dropped: u64,
    /// getPayloads of eb's payloadIds answered with a payload, with an error; of unknown ids.
    pub payloads: [u64; 3],
}

impl Coverage {
    fn add(&mut self, run: &world::Run) {
        self.runs += 1;
        self.calls += run.calls.len() as u64;
        for call in &run.calls {
            match call.kind {
                world::CallKind::GetPayload => {
                    let slot = match (call.build, call.answer.get("result")) {
                        (None, _) => 2,
                        (Some(_), Some(_)) => 0,
                        (Some(_), None) => 1,
                    };
                    self.payloads[slot] += 1;
                }
                world::CallKind::Read => {}
                _ => {
                    let slot = match props::answered_status(call) {
                        Some("VALID") => 0,
                        Some(s) if s.starts_with("INVALID") => 1,
                        Some("SYNCING") => 2,
                        Some(_) => 3,
                        None => 4,
                    };
                    self.answers[slot] += 1;
                }
            }
        }
        for case in &run.recordings {
            let seen = |prefix: &str| {
                case.votes
                    .iter()
                    .any(|v| !v.late && v.status.starts_with(prefix))
            };
            if case.expect.action == policy_sdk::fixture::Action::Syncing
                && seen("VALID")
                && seen("INVALID")
            {
                self.split_ballots += 1;
            }
            self.cuts += case.votes.iter().filter(|v| v.status == "CUT").count() as u64;
        }
        self.refused += run
            .events
            .iter()
            .filter(|e| matches!(e, trace::Event::Refused { .. }))
            .count() as u64;
        self.replayed += run.depths.iter().map(|d| d.replayed).sum::<u64>();
        self.dropped += run
            .depths
            .iter()
            .map(|d| d.dropped + d.replay_dropped)
            .sum::<u64>();
    }
}

impl std::fmt::Display for Coverage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [valid, invalid, syncing, accepted, errors] = self.answers;
        write!(
            f,
            "{} runs, {} calls; answers {valid} VALID, {invalid} INVALID, {syncing} SYNCING \
             ({} beside a VALID and an INVALID), {accepted} ACCEPTED, {errors} errors; {} votes cut, \
             {} calls refused, {} replayed, {} dropped; getPayload {} served, {} failed, {} unknown ids",
            self.runs,
            self.calls,
            self.split_ballots,
            self.cuts,
            self.refused,
            self.replayed,
            self.dropped,
            self.payloads[0],
            self.payloads[1],
            self.payloads[2]
        )
    }
}

/// Runs `cases` generated schedules of up to `max_els` ELs from `seed`: what they covered,
/// or the first failure, shrunk and written to [`out_dir`].
pub fn explore(cases: u32, seed: u64, max_els: usize) -> Result<Coverage, Box<Failure>> {
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    };
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let coverage = std::sync::Mutex::new(Coverage::default());
    let outcome = runner.run(&schedule::schedule(max_els), |schedule| {
        let (run, violations) = run_and_check(&schedule);
        coverage.lock().unwrap_or_else(|p| p.into_inner()).add(&run);
        match violations.first() {
            None => Ok(()),
            Some(v) => Err(proptest::test_runner::TestCaseError::fail(format!(
                "{}: {}",
                v.property, v.detail
            ))),
        }
    });
    let schedule = match outcome {
        Ok(()) => return Ok(coverage.into_inner().unwrap_or_else(|p| p.into_inner())),
        Err(TestError::Fail(_, schedule)) => schedule,
        Err(TestError::Abort(why)) => panic!("the simulation aborted: {why}"),
    };
    let (run, violations) = run_and_check(&schedule);
    let (json, msc) = write(&out_dir(), &format!("seed-{seed}"), &run, &violations)
        .unwrap_or_else(|e| panic!("cannot write the failure to {}: {e}", out_dir().display()));
    Err(Box::new(Failure {
        seed,
        schedule,
        violations,
        json,
        msc,
    }))
}
