//! Typed errors of the policy stage: why a module was refused, why a decision faulted.

use policy_sdk::abi::LayoutError;
use wasmtime::Trap;

/// Why one decision did not produce a usable verdict (answered as SYNCING).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// The decision used all its fuel.
    #[error("out of fuel")]
    OutOfFuel,
    /// The decision ran past its wall-clock deadline.
    #[error("deadline exceeded")]
    Deadline,
    /// The wasm stack overflowed.
    #[error("stack overflow")]
    StackOverflow,
    /// Any other trap (`unreachable`, out-of-bounds access, division by zero, …).
    #[error("trap: {0}")]
    Trap(String),
    /// A resource limit was hit or instantiation failed (memory, table, pool slots).
    #[error("limit: {0}")]
    Limit(String),
    /// The returned `i64` is not a verdict the ABI defines.
    #[error("undefined verdict {0:#x}")]
    BadVerdict(i64),
    /// `Wait` on a FINAL ballot.
    #[error("wait on a final ballot")]
    WaitWhenFinal,
    /// `Follow` of a vote that does not exist or has no answer.
    #[error("follow of vote {0}, which has no answer")]
    FollowUnanswered(u16),
    /// `Follow` of a VALID vote while the ballot counts an INVALID one: eb never answers VALID
    /// beside a counted INVALID, whatever the policy says.
    #[error("follow of VALID vote {0} beside a counted INVALID")]
    ValidBesideInvalid(u16),
    /// The ballot could not be encoded into the module's input buffer.
    #[error("input: {0}")]
    Input(LayoutError),
}

impl Fault {
    /// Short label for metrics (`out_of_fuel`, `trap`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::OutOfFuel => "out_of_fuel",
            Fault::Deadline => "deadline",
            Fault::StackOverflow => "stack_overflow",
            Fault::Trap(_) => "trap",
            Fault::Limit(_) => "limit",
            Fault::BadVerdict(_) => "bad_verdict",
            Fault::WaitWhenFinal => "wait_when_final",
            Fault::FollowUnanswered(_) => "follow_unanswered",
            Fault::ValidBesideInvalid(_) => "valid_beside_invalid",
            Fault::Input(_) => "input",
        }
    }

    /// Classifies an error from instantiating or calling a module.
    pub fn from_wasmtime(error: &wasmtime::Error) -> Fault {
        match error.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => Fault::OutOfFuel,
            Some(Trap::Interrupt) => Fault::Deadline,
            Some(Trap::StackOverflow) => Fault::StackOverflow,
            Some(trap) => Fault::Trap(trap.to_string()),
            None => Fault::Limit(format!("{error:#}")),
        }
    }
}

/// Why a policy module was refused at load (start or reload); the old policy stays active.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a valid module or WAT text, or breaks a sandbox limit at compile time.
    #[error("cannot compile: {0}")]
    Compile(String),
    /// The module imports something; policies must be self-contained.
    #[error("imports {module}::{name}; a policy may not import anything")]
    Import {
        /// Import module name.
        module: String,
        /// Import field name.
        name: String,
    },
    /// A required export is missing.
    #[error("missing export `{0}`")]
    MissingExport(&'static str),
    /// An export has the wrong kind or signature.
    #[error("export `{name}` must be {expected}")]
    ExportType {
        /// The export.
        name: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// The module could not be instantiated (start function, memory size, limits).
    #[error("cannot instantiate: {0}")]
    Instantiate(Fault),
    /// An ABI export call failed.
    #[error("`{export}` failed: {fault}")]
    Call {
        /// The export called.
        export: &'static str,
        /// What went wrong.
        fault: Fault,
    },
    /// The module speaks another ABI major version.
    #[error("ABI version {major}.{minor}, eb speaks {expected}.x")]
    AbiVersion {
        /// Major version found.
        major: i32,
        /// Minor version found.
        minor: i32,
        /// Major version expected.
        expected: u8,
    },
    /// The input buffer is too small or lies outside memory.
    #[error("input buffer at {ptr} of {cap} bytes; it must hold {needed} bytes inside memory ({memory} bytes)")]
    InputBuffer {
        /// `eb_input_ptr()`.
        ptr: i32,
        /// `eb_input_cap()`.
        cap: i32,
        /// Bytes needed (64 votes plus config).
        needed: usize,
        /// Memory size.
        memory: usize,
    },
    /// `eb_configure` refused the config string.
    #[error("refuses config {0:?}")]
    Config(String),
    /// A config string was given to a policy without `eb_configure`.
    #[error("takes no config, but was given {0:?}")]
    NoConfig(String),
    /// A built-in conformance case faulted.
    #[error("fails conformance case {case:?}: {fault}")]
    Conformance {
        /// The case.
        case: String,
        /// What went wrong.
        fault: Fault,
    },
    /// The policy sandbox could not be set up.
    #[error("policy sandbox: {0}")]
    Sandbox(String),
}
