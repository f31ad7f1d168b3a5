//! Command line: `eb [OPTIONS]` runs the multiplexer, `eb policy …` works on policies.
//!
//! Flags are parsed here into raw [`Cli`] values; `config` validates them into what the
//! server runs with. Every flag can also be given as an `EB_*` environment variable.

pub mod explain;
pub mod policy;
pub mod scaffold;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Engine API multiplexer: one consensus client, several execution clients, a Wasm policy decides.
#[derive(Debug, Parser)]
#[command(name = "eb", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do instead of running the multiplexer.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options for running the multiplexer.
    #[command(flatten)]
    pub run: RunArgs,
}

impl Cli {
    /// Parses the process's arguments; `--version` also names the embedded default policy's
    /// SHA-256 (the one `/status` and recordings show).
    pub fn parse_args() -> Cli {
        let sha = hex::encode(Sha256::digest(crate::policy::DEFAULT_POLICY_WASM));
        let version = format!(
            "{} (embedded default policy sha256 {sha})",
            env!("CARGO_PKG_VERSION")
        );
        // Parsed once per process: the string lives as long as the command line does.
        let version: &'static str = Box::leak(version.into_boxed_str());
        let matches = Cli::command().version(version).get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

/// Options for running the multiplexer (executionbackup's flags keep their meaning).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Execution clients, comma-separated:
    /// URL[#jwt-secret=PATH][#timeout=MS][#straggler=auto|wait|MS][#do-not-use].
    #[arg(long, short = 'n', env = "EB_NODES", value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// The CL's JWT secret file (hex); also the secret for nodes without #jwt-secret.
    #[arg(long, short = 'j', env = "EB_JWT_SECRET")]
    pub jwt_secret: Option<PathBuf>,
    /// Address the Engine API listens on.
    #[arg(long, env = "EB_LISTEN_ADDR", default_value = "127.0.0.1")]
    pub listen_addr: IpAddr,
    /// Port the Engine API listens on.
    #[arg(long, short = 'p', env = "EB_PORT", default_value_t = 7000)]
    pub port: u16,
    /// Default per-EL timeout in milliseconds (capped per call below the CL's deadline).
    #[arg(long, env = "EB_TIMEOUT", default_value_t = 7500)]
    pub timeout: u64,
    /// How long a verdict the answers in hand already give waits for the ELs still out:
    /// `auto` (twice each EL's recent answer time, 200 ms to 1 s past the verdict), a fixed
    /// number of milliseconds, or `wait` (every EL up to its timeout, even one known down).
    #[arg(long, env = "EB_STRAGGLER", default_value = "auto")]
    pub straggler: String,
    /// Most MiB of calls queued for one EL; past it the oldest are dropped (and counted).
    #[arg(long, env = "EB_QUEUE_MIB", default_value_t = 64)]
    pub queue_mib: usize,
    /// Policy module (.wasm or .wat); the embedded default policy when omitted.
    #[arg(long, env = "EB_POLICY")]
    pub policy: Option<PathBuf>,
    /// Config string passed to the policy (e.g. `majority=0.67,quorum=2`).
    #[arg(long, env = "EB_POLICY_CONFIG", default_value = "")]
    pub policy_config: String,
    /// A second policy module (.wasm or .wat) that decides every ballot beside the active one
    /// and never answers: each disagreement is counted, logged and marked in the recording.
    #[arg(long, env = "EB_SHADOW_POLICY")]
    pub shadow_policy: Option<PathBuf>,
    /// executionbackup's majority flag: passed to the policy as `majority=F`.
    #[arg(long, env = "EB_FCU_MAJORITY")]
    pub fcu_majority: Option<String>,
    /// Address of the admin API (status, metrics, node management).
    #[arg(long, env = "EB_ADMIN_ADDR", default_value = "127.0.0.1:7001")]
    pub admin_addr: SocketAddr,
    /// File holding the bearer token required by mutating admin calls; created (mode 0600,
    /// a fresh random token) when missing. Default: `admin-token` in `$STATE_DIRECTORY`, or
    /// in `$XDG_STATE_HOME/eb` (`~/.local/state/eb`).
    #[arg(long, env = "EB_ADMIN_TOKEN")]
    pub admin_token: Option<PathBuf>,
    /// executionbackup's behaviour: mutating admin calls need no token (loopback only).
    #[arg(long, env = "EB_ADMIN_NO_TOKEN", conflicts_with = "admin_token")]
    pub admin_no_token: bool,
    /// Directories a node added through the admin API may take its `#jwt-secret` from
    /// (repeatable; default: the directories of the secrets eb was started with).
    #[arg(long, env = "EB_ADMIN_SECRETS_DIR", value_delimiter = ',')]
    pub admin_secrets_dir: Vec<PathBuf>,
    /// Let a node added through the admin API use a secret that the CL or another node
    /// already uses (or no `#jwt-secret`, i.e. the CL's); eb then signs that secret's tokens
    /// for the added URL.
    #[arg(long, env = "EB_ALLOW_SHARED_SECRETS")]
    pub allow_shared_secrets: bool,
    /// Largest newPayload or forkchoiceUpdated answer read from an EL, in KiB; a larger one is a
    /// malformed vote.
    #[arg(long, env = "EB_MAX_VOTE_ANSWER_KIB", default_value_t = 1024)]
    pub max_vote_answer_kib: usize,
    /// Largest other answer read from an EL (getPayload, getPayloadBodies, getBlobs, reads), in
    /// MiB; a larger one is a failed call.
    #[arg(long, env = "EB_MAX_ANSWER_MIB", default_value_t = 256)]
    pub max_answer_mib: usize,
    /// Most connections the Engine API serves at once (fewer when the open-files limit is low);
    /// past it new connections wait until one closes.
    #[arg(long, env = "EB_MAX_CONNECTIONS", default_value_t = 256)]
    pub max_connections: usize,
    /// Milliseconds a connection has to send a request's headers, from when it opens or from
    /// its last answer: slow headers and idle keep-alive connections are closed after it.
    #[arg(long, env = "EB_HEADER_TIMEOUT_MS", default_value_t = 30_000)]
    pub header_timeout_ms: u64,
    /// Milliseconds a request has to send its whole body once its headers are in.
    #[arg(long, env = "EB_BODY_TIMEOUT_MS", default_value_t = 10_000)]
    pub body_timeout_ms: u64,
    /// Largest request body accepted from the CL, in MiB.
    #[arg(long, env = "EB_MAX_BODY_MIB", default_value_t = 64)]
    pub max_body_mib: usize,
    /// How getPayload picks among the ELs that built a payload.
    #[arg(long, env = "EB_GET_PAYLOAD", value_enum, default_value_t = GetPayloadMode::PrimaryFirst)]
    pub get_payload: GetPayloadMode,
    /// Append every decision to this JSONL file (replayable with `eb policy test`).
    #[arg(long, env = "EB_RECORD_VOTES")]
    pub record_votes: Option<PathBuf>,
    /// Size in MiB at which the recording is rotated to `PATH.1`.
    #[arg(long, env = "EB_RECORD_MAX_MIB", default_value_t = 256)]
    pub record_max_mib: u64,
    /// Fixtures (files or a directory) a new policy must pass before a reload swaps it in.
    #[arg(long, env = "EB_POLICY_FIXTURES")]
    pub policy_fixtures: Option<PathBuf>,
    /// Seconds between health checks of each EL.
    #[arg(long, env = "EB_HEALTH_INTERVAL", default_value_t = 5)]
    pub health_interval: u64,
    /// etcd client URLs, comma-separated (`URL[#ca=PATH]`): this eb is a replica of a cluster
    /// sharing builds and final answers through etcd. Standalone without it.
    #[arg(long, env = "EB_ETCD", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// The cluster's name: the etcd key prefix its replicas share.
    #[arg(long, env = "EB_CLUSTER", default_value = "eb")]
    pub cluster: String,
    /// This replica's name, as other replicas and `/status` show it (default: the Engine API's
    /// listen address).
    #[arg(long, env = "EB_REPLICA")]
    pub replica: Option<String>,
    /// Most milliseconds an answer waits for etcd; past it this replica answers from its own
    /// state and writes back what it decided when etcd answers again.
    #[arg(long, env = "EB_ETCD_TIMEOUT_MS", default_value_t = 200)]
    pub etcd_timeout_ms: u64,
    /// Log format.
    #[arg(long, env = "EB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less logging (-q warnings and errors only).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub quiet: u8,
}

/// `--get-payload`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GetPayloadMode {
    /// The primary's build first, the other builders on failure, inside the 1 s budget.
    PrimaryFirst,
    /// Every builder at once; the highest blockValue built on the head the CL asked for.
    BestValue,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
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
    /// Draw one decision of a fixture (e.g. a recording) as a Mermaid sequence chart.
    Explain {
        /// The fixture file (.json or .jsonl).
        fixture: PathBuf,
        /// The case to draw; the first one when omitted.
        #[arg(long)]
        case: Option<String>,
        /// Policy module (.wasm or .wat); the embedded default policy when omitted.
        #[arg(long, env = "EB_POLICY")]
        policy: Option<PathBuf>,
        /// Config string for the policy.
        #[arg(long, env = "EB_POLICY_CONFIG", default_value = "")]
        policy_config: String,
    },
    /// Write a policy crate of your own: Cargo.toml, src/lib.rs, fixtures, a test, a README.
    New {
        /// The crate's name (lowercase letters, digits, - and _).
        name: String,
        /// Folder to create it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The policy SDK as a path (default: this eb checkout's policy-sdk).
        #[arg(long, conflicts_with = "sdk_git")]
        sdk_path: Option<PathBuf>,
        /// The policy SDK from a git repository holding the eb workspace.
        #[arg(long)]
        sdk_git: Option<String>,
    },
    /// Build a policy crate for wasm32 (profile `policy`); prints the .wasm's path and size.
    Build {
        /// The crate's folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
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
