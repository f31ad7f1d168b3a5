//! `eb-chain`: three geth ELs behind eb, driven by a scripted consensus client at Prague, Osaka
//! or Amsterdam (`tests/src/chain.rs`). The last line on stdout is the JSON report.
//!
//! ```text
//! eb-chain --geth PATH --eb target/release/eb --clients ~/.cache/eb-devnet --fork osaka
//! ```

use clap::Parser;
use eb_tests::chain::{self, Chain, Fork};
use std::path::PathBuf;
use std::process::ExitCode;

/// Run geth behind eb at a fork and check it.
#[derive(Debug, Parser)]
struct Args {
    /// The geth binary.
    #[arg(long)]
    geth: PathBuf,
    /// The eb binary.
    #[arg(long)]
    eb: PathBuf,
    /// Folder of the npm installs (EthereumJS signs the transfers).
    #[arg(long)]
    clients: PathBuf,
    /// The fork.
    #[arg(long, value_enum, default_value_t = Fork::Osaka)]
    fork: Fork,
    /// Slots to run.
    #[arg(long, default_value_t = 32)]
    slots: u64,
    /// Transfers to send through eb.
    #[arg(long, default_value_t = 5)]
    transactions: usize,
    /// Working folder; a fresh one under /tmp by default.
    #[arg(long)]
    work: Option<PathBuf>,
}

async fn run(args: Args) -> Result<serde_json::Value, String> {
    // A folder of its own is removed after a passing run; one given with --work is kept.
    let temporary = args.work.is_none();
    let work = args
        .work
        .unwrap_or_else(|| std::env::temp_dir().join(format!("eb-chain-{}", std::process::id())));
    let absolute =
        |p: PathBuf| std::path::absolute(&p).map_err(|e| format!("{}: {e}", p.display()));
    let (geth, eb, work) = (absolute(args.geth)?, absolute(args.eb)?, absolute(work)?);
    let mut chain = Chain::start(&geth, &eb, &work, args.fork).await?;
    let outcome = chain::run(&mut chain, &args.clients, args.slots, args.transactions).await;
    let logs = chain.logs();
    drop(chain);
    if outcome.is_ok() && temporary {
        let _ = std::fs::remove_dir_all(&work);
    }
    outcome.map_err(|e| format!("{e}\n{logs}\n(data and logs kept in {})", work.display()))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        eprintln!("eb-chain: cannot start the async runtime");
        return ExitCode::from(2);
    };
    match runtime.block_on(run(args)) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("eb-chain: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
