//! The `eb` binary: parse → validate → (policy command | serve until a signal) → exit code.

use eb::cli::scaffold::{self, Sdk};
use eb::cli::{Cli, Command, LogFormat, PolicyCommand, RunArgs};
use eb::config::Config;
use eb::run::{signal, Bound};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    match cli.command {
        Some(Command::Policy(command)) => policy(command),
        None => serve(&cli.run),
    }
}

/// `eb policy …`: 0 all good, 1 a case failed or the module was refused by `check`, 2 the
/// test could not run (policy refused, fixtures unreadable).
fn policy(command: PolicyCommand) -> ExitCode {
    let (outcome, setup_error) = match command {
        PolicyCommand::Test {
            policy,
            policy_config,
            fixtures,
        } => (
            eb::cli::policy::test(policy.as_deref(), &policy_config, &fixtures),
            ExitCode::from(2),
        ),
        PolicyCommand::Explain {
            fixture,
            case,
            policy,
            policy_config,
        } => (
            eb::cli::explain::explain(policy.as_deref(), &policy_config, &fixture, case.as_deref())
                .map(|chart| (chart, true)),
            ExitCode::from(2),
        ),
        PolicyCommand::New {
            name,
            dir,
            sdk_path,
            sdk_git,
        } => {
            let sdk = match (sdk_path, sdk_git) {
                (Some(path), _) => Ok(Sdk::Path(path)),
                (None, Some(url)) => Ok(Sdk::Git(url)),
                (None, None) => Sdk::from_checkout(),
            };
            (
                sdk.and_then(|sdk| scaffold::new(&name, &dir, &sdk))
                    .map(|report| (report, true)),
                ExitCode::from(2),
            )
        }
        PolicyCommand::Build { dir } => (
            scaffold::build(&dir).map(|(_, line)| (line, true)),
            ExitCode::FAILURE,
        ),
        PolicyCommand::Check {
            policy,
            policy_config,
        } => (
            eb::cli::policy::check(policy.as_deref(), &policy_config).map(|report| (report, true)),
            ExitCode::FAILURE,
        ),
    };
    match outcome {
        Ok((report, passed)) => {
            println!("{report}");
            if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("eb: {e}");
            setup_error
        }
    }
}

fn init_logging(args: &RunArgs) {
    let level = match i16::from(args.verbose) - i16::from(args.quiet) {
        i16::MIN..=-1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("EB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("eb={level},warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only on a terminal: not in journald, log files or a CI log.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn serve(args: &RunArgs) -> ExitCode {
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("eb: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(args);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("eb: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match Bound::bind(config).await {
            Ok(bound) => {
                bound.run(signal()).await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("eb: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
