//! `eb-sim`: eb's simulation outside `cargo test`. Explores generated schedules (as the `sim`
//! tests do, at any size), or replays one written schedule, writing its sequence chart to
//! `target/sim-failures` (`EB_SIM_OUT`) and, where `mscgen` is installed, the chart as PNG.
//!
//! ```text
//! eb-sim [--cases N] [--seed S] [--max-els N]     explore; a failure is shrunk and written
//! eb-sim --replay FILE.json                          run one schedule, chart it, check it
//! ```

use clap::Parser;
use eb_tests::sim::{self, schedule::Schedule};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// eb's simulation.
#[derive(Debug, Parser)]
struct Args {
    /// Replay this schedule (JSON, as a failure writes it) instead of exploring.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Schedules to explore.
    #[arg(long, default_value_t = sim::CI_CASES)]
    cases: u32,
    /// Seed to explore from (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Most ELs in a schedule (1 to 7).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u8).range(1..=7))]
    max_els: u8,
}

/// Renders `msc` as PNG beside it with Debian's `mscgen`, if installed.
fn render_png(msc: &Path) {
    let png = msc.with_extension("png");
    match std::process::Command::new("mscgen")
        .args(["-T", "png", "-o"])
        .arg(&png)
        .arg(msc)
        .status()
    {
        Ok(status) if status.success() => println!("chart: {}", png.display()),
        Ok(status) => eprintln!("mscgen failed ({status}) on {}", msc.display()),
        Err(e) => eprintln!(
            "mscgen not run ({e}); the chart's text is {}",
            msc.display()
        ),
    }
}

fn replay(path: &Path) -> Result<bool, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let schedule: Schedule = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a schedule: {e}", path.display()))?;
    if schedule.els.is_empty() || schedule.els.len() > 7 {
        return Err(format!("{}: a schedule has 1 to 7 ELs", path.display()));
    }
    if schedule.els.iter().any(|el| el.answers.is_empty()) {
        return Err(format!(
            "{}: every EL needs at least one answer",
            path.display()
        ));
    }
    let (run, violations) = sim::run_and_check(&schedule);
    let name = path
        .file_stem()
        .map_or("replay".into(), |s| s.to_string_lossy().into_owned());
    let (_, msc) = sim::write(&sim::out_dir(), &name, &run, &violations)
        .map_err(|e| format!("{}: {e}", sim::out_dir().display()))?;
    println!(
        "{} calls, {} events; chart text: {}",
        run.calls.len(),
        run.events.len(),
        msc.display()
    );
    render_png(&msc);
    for v in &violations {
        println!("BROKEN {} (call {:?}): {}", v.property, v.call, v.detail);
    }
    Ok(violations.is_empty())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.replay {
        return match replay(path) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("eb-sim: {e}");
                ExitCode::from(2)
            }
        };
    }
    let seed = args.seed.unwrap_or_else(sim::seed);
    let started = std::time::Instant::now();
    println!(
        "exploring {} schedules of up to {} ELs, seed {seed}",
        args.cases, args.max_els
    );
    match sim::explore(args.cases, seed, args.max_els.into()) {
        Ok(coverage) => {
            println!(
                "{} schedules, every property held ({:.1} s)",
                args.cases,
                started.elapsed().as_secs_f64()
            );
            println!("{coverage}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            println!("{failure}");
            render_png(&failure.msc);
            ExitCode::from(1)
        }
    }
}
