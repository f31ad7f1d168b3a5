//! The `eb` binary: parse, dispatch, exit. Everything else lives in the library.

use clap::Parser;
use eb::cli::{Cli, Command, PolicyCommand};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Policy(PolicyCommand::Test {
            policy,
            policy_config,
            fixtures,
        })) => match eb::cli::policy::test(policy.as_deref(), &policy_config, &fixtures) {
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
                ExitCode::from(2)
            }
        },
        Some(Command::Policy(PolicyCommand::Check {
            policy,
            policy_config,
        })) => match eb::cli::policy::check(policy.as_deref(), &policy_config) {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("eb: {e}");
                ExitCode::FAILURE
            }
        },
        None => {
            eprintln!("eb: the multiplexer is not built yet; see `eb policy --help`");
            ExitCode::from(2)
        }
    }
}
