//! `eb-chain`: three geth ELs behind eb, driven by a scripted consensus client at Prague, Osaka
//! or Amsterdam, or by Prysm at Osaka (`tests/src/chain/`); or, with `--upgrade-to`, a rolling
//! upgrade of two geths under Prysm. The last line on stdout is the JSON report.
//!
//! ```text
//! eb-chain --geth PATH --txgen PATH --eb target/release/eb --fork osaka [--sidecar-version 0|1]
//!          [--prysm DIR [--upgrade-to NEWER_GETH [--down-slots N] [--setups 0,2]]]
//!          [--work DIR] [--hold]
//! ```

use clap::Parser;
use eb_tests::chain::driver::Driver;
use eb_tests::chain::prysm::{self, Prysm};
use eb_tests::chain::{genesis, scenarios, upgrade, with_prysm, Chain, Fork, Layout};
use eb_tests::devnet::process::{report_of, stopped};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Run geth behind eb at a fork and check it.
#[derive(Debug, Parser)]
struct Args {
    /// The geth binary.
    #[arg(long)]
    geth: PathBuf,
    /// The transaction signer (`tests/devnet/txgen`, built by scripts/devnet.sh).
    #[arg(long)]
    txgen: PathBuf,
    /// The eb binary.
    #[arg(long)]
    eb: PathBuf,
    /// The fork.
    #[arg(long, value_enum, default_value_t = Fork::Osaka)]
    fork: Fork,
    /// Working folder; a fresh one under /tmp by default.
    #[arg(long)]
    work: Option<PathBuf>,
    /// Blob sidecar version for the blob transactions: 1 (cell proofs; geth 1.17 takes no
    /// other), 0 (one proof per blob; geth 1.16 before Osaka).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    sidecar_version: u8,
    /// Prysm's folder (beacon-chain, validator, prysmctl): Prysm is the CL (Osaka/Fulu only),
    /// not the scripted driver.
    #[arg(long)]
    prysm: Option<PathBuf>,
    /// Instead of the scenarios: a rolling upgrade of two geths from `--geth` to this geth,
    /// under Prysm (needs --prysm), in four setups (`tests/src/chain/upgrade.rs`).
    #[arg(long, requires = "prysm", conflicts_with = "hold")]
    upgrade_to: Option<PathBuf>,
    /// With --upgrade-to: slots each geth stays down.
    #[arg(long, default_value_t = upgrade::DOWN_SLOTS, requires = "upgrade_to")]
    down_slots: u64,
    /// With --upgrade-to: run only these setups (0: behind=ignore peered, 1: behind=count
    /// peered, 2: behind=ignore not peered, 3: behind=count not peered); all four by default.
    #[arg(long, value_delimiter = ',', requires = "upgrade_to",
          value_parser = clap::value_parser!(u8).range(0..4))]
    setups: Vec<u8>,
    /// Instead of the scenarios: keep the chain up until Ctrl-C (Prysm proposing, or the driver
    /// running a slot every 2 s).
    #[arg(long)]
    hold: bool,
}

/// The chain kept up for trying eb by hand: Prysm proposing, or the driver running a slot
/// every 2 s.
async fn hold(chain: &Chain, prysm: Option<&Prysm>) -> Result<serde_json::Value, String> {
    let driven = match prysm {
        Some(prysm) => format!("Prysm's beacon API {}", prysm.api.base()),
        None => "a slot every 2 s".to_owned(),
    };
    eprintln!(
        "chain up; work folder {} (logs, votes.jsonl, secrets); eb engine {}, admin {}; {driven}; \
         Ctrl-C stops everything.",
        chain.work.display(),
        chain.engine.url(),
        chain.admin.base()
    );
    if prysm.is_some() {
        return std::future::pending().await;
    }
    let mut driver = Driver::at_genesis(chain).await?;
    loop {
        let slot = driver.slot(chain).await?;
        eprintln!(
            "slot {}: block #{} {} newPayload {} ({:?})",
            slot.slot, slot.number, slot.hash, slot.new_payload, slot.new_payload_time
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn run(args: Args) -> Result<serde_json::Value, String> {
    // A folder of its own is removed after a passing run; one given with --work is kept.
    let temporary = args.work.is_none();
    let work = args
        .work
        .unwrap_or_else(|| std::env::temp_dir().join(format!("eb-chain-{}", std::process::id())));
    let absolute =
        |p: PathBuf| std::path::absolute(&p).map_err(|e| format!("{}: {e}", p.display()));
    let (geth, txgen, eb, work) = (
        absolute(args.geth)?,
        absolute(args.txgen)?,
        absolute(args.eb)?,
        absolute(work)?,
    );
    let prysm_dir = args.prysm.map(absolute).transpose()?;
    if let (Some(to), Some(prysm)) = (args.upgrade_to, &prysm_dir) {
        if args.fork != Fork::Osaka {
            return Err("--upgrade-to runs at --fork osaka (Fulu)".into());
        }
        let to = absolute(to)?;
        let setups = match args.setups.is_empty() {
            true => upgrade::SETUPS.to_vec(),
            false => args
                .setups
                .iter()
                .map(|&i| upgrade::SETUPS[usize::from(i)])
                .collect(),
        };
        let plan = upgrade::Plan {
            from: &geth,
            to: &to,
            eb: &eb,
            prysm,
            down_slots: args.down_slots,
            setups,
        };
        let outcome = tokio::select! {
            outcome = upgrade::run(&plan, &work) => outcome,
            signal = stopped() => Err(format!("stopped by {signal}")),
        };
        if outcome.is_ok() && temporary {
            let _ = std::fs::remove_dir_all(&work);
        }
        return outcome;
    }
    let mut genesis = genesis(&geth, args.fork)?;
    if let Some(dir) = &prysm_dir {
        if args.fork != Fork::Osaka {
            return Err("--prysm runs at --fork osaka (Fulu)".into());
        }
        genesis = prysm::genesis(dir, &work, &genesis)?;
    }
    let mut chain =
        Chain::start(&geth, &eb, &work, args.fork, &genesis, &Layout::default()).await?;
    let prysm = match &prysm_dir {
        Some(dir) => Some(Prysm::start(dir, &chain).await?),
        None => None,
    };
    let outcome = tokio::select! {
        outcome = async {
            match (&prysm, args.hold) {
                (_, true) => hold(&chain, prysm.as_ref()).await,
                (Some(prysm), false) => with_prysm::run(&mut chain, prysm, &txgen).await,
                (None, false) => scenarios::run(&mut chain, &txgen, args.sidecar_version).await,
            }
        } => outcome,
        signal = stopped() => Err(format!("stopped by {signal}")),
    };
    let mut logs = chain.logs();
    if let Some(prysm) = &prysm {
        logs.push_str(&prysm.logs());
    }
    drop(prysm);
    drop(chain);
    if outcome.is_ok() && temporary {
        let _ = std::fs::remove_dir_all(&work);
    }
    outcome.map_err(|e| format!("{e}\n{logs}\n(data and logs kept in {})", work.display()))
}

fn main() -> ExitCode {
    report_of("eb-chain", run(Args::parse()))
}
