//! Command line: `eb [OPTIONS]` runs the multiplexer, `eb policy …` works on policies.
//!
//! Flags are parsed here into raw [`Cli`] values; `config` validates them into what the
//! server runs with. Every flag can also be given as an `EB_*` environment variable.

pub mod policy;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Engine API multiplexer: one consensus client, several execution clients, a Wasm policy decides.
#[derive(Debug, Parser)]
#[command(name = "eb", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do instead of running the multiplexer.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with vote policies: test them against fixtures, check a module.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

/// `eb policy …`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Replay vote fixtures (.json, .jsonl, or directories of them) through a policy.
    Test {
        /// Policy module (.wasm or .wat); the embedded default policy when omitted.
        #[arg(long, env = "EB_POLICY")]
        policy: Option<PathBuf>,
        /// Config string for the policy; used for cases that carry none.
        #[arg(long, env = "EB_POLICY_CONFIG", default_value = "")]
        policy_config: String,
        /// Fixture files or directories.
        #[arg(required = true)]
        fixtures: Vec<PathBuf>,
    },
    /// Load a policy module, validate it, run the built-in conformance cases, report size and fuel.
    Check {
        /// Policy module (.wasm or .wat); the embedded default policy when omitted.
        policy: Option<PathBuf>,
        /// Config string to configure it with.
        #[arg(long, env = "EB_POLICY_CONFIG", default_value = "")]
        policy_config: String,
    },
}
