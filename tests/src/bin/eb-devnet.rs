//! `eb-devnet`: Lodestar → eb → three EthereumJS ELs on loopback, and the scenarios of the
//! real-client test (happy path, primary EL killed, primary EL frozen, a lying EL, replay of the
//! recording); with `--replicas`, two eb replicas sharing an etcd and the replica killed.
//! Every process it starts is stopped when it ends, also on failure or Ctrl-C.
//!
//! ```text
//! scripts/devnet.sh                 # installs the clients, builds eb, runs this
//! eb-devnet --clients DIR --txgen PATH --eb target/release/eb [--work DIR] [--hold] [--replicas] [--eb-arg=ARG…]
//! ```

use clap::Parser;
use eb_tests::devnet::process::{report_of, stopped};
use eb_tests::devnet::{diverse, replicas, scenarios, Devnet, Paths, Topology};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Run the real-client devnet through eb and check it.
#[derive(Debug, Parser)]
struct Args {
    /// Folder holding the npm installs `lodestar/` and `ethereumjs/` (scripts/devnet.sh makes it).
    #[arg(long)]
    clients: PathBuf,
    /// The eb binary (a release build).
    #[arg(long)]
    eb: PathBuf,
    /// Working folder (data, secrets, logs, votes.jsonl); a fresh one under /tmp by default.
    #[arg(long)]
    work: Option<PathBuf>,
    /// Start the devnet and keep it running until Ctrl-C, without the scenarios (to try eb by hand).
    #[arg(long)]
    hold: bool,
    /// The transaction signer (`tests/devnet/txgen`, built by scripts/devnet.sh).
    #[arg(long)]
    txgen: PathBuf,
    /// A geth binary: the client-diversity devnet (EL 2 is geth, eb runs `--policy`).
    #[arg(long, requires = "policy")]
    geth: Option<PathBuf>,
    /// The policy eb runs (and the replay uses); the embedded default when omitted.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Two eb replicas (sharing a 3-member etcd on loopback) as Lodestar's `--execution.urls`,
    /// and the replica-killed scenario.
    #[arg(long, conflicts_with = "geth")]
    replicas: bool,
    /// With `--replicas`: a second beacon node (no validators, peered with the first) served by
    /// replica `b` alone, and the two-CL scenario instead.
    #[arg(long, requires = "replicas")]
    two_cls: bool,
    /// One more argument for eb (repeatable), e.g. `--eb-arg=--policy=strict.wasm` with `--hold`.
    #[arg(long = "eb-arg", allow_hyphen_values = true)]
    eb_args: Vec<String>,
}

async fn scenarios(devnet: &mut Devnet) -> Result<Value, String> {
    let mut report = serde_json::Map::new();
    report.insert("happy_path".into(), scenarios::happy_path(devnet).await?);
    report.insert(
        "primary_killed".into(),
        scenarios::primary_killed(devnet).await?,
    );
    report.insert("frozen_el".into(), scenarios::frozen_el(devnet).await?);
    report.insert("lying_el".into(), scenarios::lying_el(devnet).await?);
    report.insert("eb_answers_by_method".into(), devnet.admin.answers().await?);
    finish(devnet, report).await
}

/// Stops the devnet, replays the recording, and puts the report's summary first: `fork`, `cl`,
/// `els`, `blocks`, `blob_blocks`, `scenarios` (every scenario in `report`, passed: a failing one
/// ends the run with its error instead).
async fn finish(
    devnet: &mut Devnet,
    mut report: serde_json::Map<String, Value>,
) -> Result<Value, String> {
    let summary = scenarios::summary(devnet).await?;
    devnet.stop();
    report.insert("replay".into(), scenarios::replay(devnet)?);
    let names: Vec<Value> = report
        .keys()
        .filter(|k| *k != "eb_answers_by_method")
        .map(|k| json!({"name": k, "passed": true}))
        .collect();
    let mut out = json!({"fork": "capella"});
    for (key, value) in summary.as_object().into_iter().flatten() {
        out[key] = value.clone();
    }
    out["scenarios"] = json!(names);
    for (key, value) in report {
        out[key] = value;
    }
    Ok(out)
}

async fn replicated(devnet: &mut Devnet, two_cls: bool) -> Result<Value, String> {
    let mut report = serde_json::Map::new();
    match two_cls {
        true => report.insert("two_cls".into(), replicas::two_cls(devnet).await?),
        false => report.insert(
            "replica_killed".into(),
            replicas::replica_killed(devnet).await?,
        ),
    };
    report.insert("eb_answers_by_method".into(), devnet.admin.answers().await?);
    finish(devnet, report).await
}

async fn diverse(devnet: &mut Devnet) -> Result<Value, String> {
    let mut report = serde_json::Map::new();
    report.insert("happy_path".into(), scenarios::happy_path(devnet).await?);
    report.insert("lying_geth".into(), diverse::lying_geth(devnet).await?);
    report.insert("frozen_geth".into(), diverse::frozen_geth(devnet).await?);
    report.insert("eb_answers_by_method".into(), devnet.admin.answers().await?);
    finish(devnet, report).await
}

async fn hold(devnet: &Devnet) -> Result<Value, String> {
    devnet.admin.status().await?;
    eprintln!(
        "devnet up; work folder {} (logs, votes.jsonl, secrets); endpoints:\n{:#}\n\
         the first block comes ~15 s after start; Ctrl-C stops everything.",
        devnet.paths.work.display(),
        devnet.endpoints
    );
    std::future::pending().await
}

/// The first of SIGINT and SIGTERM (a CI timeout sends the latter): the processes are then
/// stopped by the normal way out.
async fn run(args: Args) -> Result<Value, String> {
    let work = args
        .work
        .unwrap_or_else(|| std::env::temp_dir().join(format!("eb-devnet-{}", std::process::id())));
    // Absolute: the clients run in the work folder.
    let absolute =
        |p: PathBuf| std::path::absolute(&p).map_err(|e| format!("{}: {e}", p.display()));
    let paths = Paths {
        clients: absolute(args.clients)?,
        eb: absolute(args.eb)?,
        work: absolute(work)?,
        txgen: absolute(args.txgen)?,
        geth: args.geth.map(absolute).transpose()?,
        policy: args.policy.map(absolute).transpose()?,
    };
    let start = Instant::now();
    let topology = match (args.replicas, args.two_cls) {
        (false, _) => Topology::Single,
        (true, false) => Topology::Replicas,
        (true, true) => Topology::TwoCls,
    };
    let mut devnet = Devnet::start_as(paths.clone(), &args.eb_args, topology)
        .await
        .map_err(|e| format!("{e}\n{}", paths.logs()))?;
    let startup = start.elapsed().as_secs_f64();
    let outcome = tokio::select! {
        outcome = async {
            match (args.hold, devnet.paths.geth.is_some(), args.replicas) {
                (true, ..) => hold(&devnet).await,
                (false, true, _) => diverse(&mut devnet).await,
                (false, false, true) => replicated(&mut devnet, args.two_cls).await,
                (false, false, false) => scenarios(&mut devnet).await,
            }
        } => outcome,
        signal = stopped() => Err(format!("stopped by {signal}")),
    };
    match outcome {
        Ok(mut report) => {
            report["startup_seconds"] = json!((startup * 10.0).round() / 10.0);
            report["total_seconds"] = json!((start.elapsed().as_secs_f64() * 10.0).round() / 10.0);
            report["work"] = json!(devnet.paths.work.display().to_string());
            report["endpoints"] = devnet.endpoints.clone();
            Ok(report)
        }
        Err(e) => Err(format!("{e}\n{}", devnet.paths.logs())),
    }
}

fn main() -> ExitCode {
    report_of("eb-devnet", run(Args::parse()))
}
