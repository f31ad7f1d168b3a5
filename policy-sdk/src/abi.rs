//! Policy ABI v1: the byte layout eb writes into a policy's input buffer and the `i64` verdict
//! it reads back. `ABI.md` documents the same layout for people writing policies by hand; this
//! module is the source of truth and the host encodes with it.
//!
//! All integers are little-endian. Minor versions only add: reserved bytes, flag bits and status
//! codes. Readers must honour `record_size` instead of assuming 32.

/// ABI major version: a module exporting another major is refused.
pub const ABI_MAJOR: u8 = 1;
/// ABI minor version written by this SDK (1.1: cut and pending records, node health, `Wake`;
/// 1.2: the node-behind flag).
pub const ABI_MINOR: u8 = 2;
/// `eb_abi_version()` value for this SDK: `major << 16 | minor`.
pub const ABI_VERSION: i32 = ((ABI_MAJOR as i32) << 16) | ABI_MINOR as i32;
/// Size of the input header in bytes.
pub const HEADER_SIZE: usize = 32;
/// Size of one vote record written by this SDK.
pub const RECORD_SIZE: usize = 32;
/// The host guarantees it never sends more votes than this; `eb_input_cap` must fit them.
pub const MAX_VOTES: usize = 64;
/// Smallest acceptable input capacity: header plus [`MAX_VOTES`] records (config comes on top).
pub const MIN_INPUT_CAP: usize = HEADER_SIZE + MAX_VOTES * RECORD_SIZE;

/// Header flag: no more votes will come; the policy must not answer [`Verdict::Wait`].
pub const FLAG_FINAL: u8 = 1;

/// What kind of vote a ballot is about: the state-changing Engine API call (its version is
/// separate, [`Context::method_version`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum VoteKind {
    /// `engine_newPayloadV*`.
    NewPayload = 1,
    /// `engine_forkchoiceUpdatedV*` without payload attributes.
    ForkchoiceUpdated = 2,
    /// `engine_forkchoiceUpdatedV*` with payload attributes (starts a build).
    ForkchoiceUpdatedWithAttributes = 3,
}

impl VoteKind {
    /// Decodes a method byte; `None` for a code this SDK does not know.
    pub fn from_u8(code: u8) -> Option<VoteKind> {
        match code {
            1 => Some(VoteKind::NewPayload),
            2 => Some(VoteKind::ForkchoiceUpdated),
            3 => Some(VoteKind::ForkchoiceUpdatedWithAttributes),
            _ => None,
        }
    }

    /// Name used in fixtures and logs.
    pub fn name(self) -> &'static str {
        match self {
            VoteKind::NewPayload => "newPayload",
            VoteKind::ForkchoiceUpdated => "forkchoiceUpdated",
            VoteKind::ForkchoiceUpdatedWithAttributes => "forkchoiceUpdatedWithAttributes",
        }
    }
}

/// The payload status an EL answered, as one byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Status {
    /// No status: the EL timed out, failed or answered something unusable (see [`Outcome`]).
    None = 0,
    /// `VALID`.
    Valid = 1,
    /// `INVALID`.
    Invalid = 2,
    /// `SYNCING`.
    Syncing = 3,
    /// `ACCEPTED`.
    Accepted = 4,
    /// `INVALID_BLOCK_HASH` (newPayloadV1 only); counts as INVALID.
    InvalidBlockHash = 5,
}

impl Status {
    /// Decodes a status byte; unknown codes (from a newer minor) read as [`Status::None`].
    pub fn from_u8(code: u8) -> Status {
        match code {
            1 => Status::Valid,
            2 => Status::Invalid,
            3 => Status::Syncing,
            4 => Status::Accepted,
            5 => Status::InvalidBlockHash,
            _ => Status::None,
        }
    }

    /// The status a vote counts as: `INVALID_BLOCK_HASH` is an `INVALID`.
    pub fn normalized(self) -> Status {
        match self {
            Status::InvalidBlockHash => Status::Invalid,
            other => other,
        }
    }

    /// The Engine API spelling, e.g. `"VALID"`; `"NONE"` for [`Status::None`].
    pub fn name(self) -> &'static str {
        match self {
            Status::None => "NONE",
            Status::Valid => "VALID",
            Status::Invalid => "INVALID",
            Status::Syncing => "SYNCING",
            Status::Accepted => "ACCEPTED",
            Status::InvalidBlockHash => "INVALID_BLOCK_HASH",
        }
    }
}

/// How the EL's call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Outcome {
    /// The EL answered with a payload status.
    Answered = 0,
    /// No answer within the EL's timeout.
    Timeout = 1,
    /// Connection refused, reset, HTTP error or authentication failure.
    Unreachable = 2,
    /// A JSON-RPC error object (see `rpc_error_code`).
    RpcError = 3,
    /// An answer that was not a well-formed result.
    Malformed = 4,
    /// Not waited for (ABI 1.1): the EL was offline, auth-failed or hung when the call went out
    /// (see the record's `health`), or it had not answered by the straggler deadline. The call
    /// was still sent; a later answer is a late vote.
    Cut = 5,
    /// Still outstanding (ABI 1.1): one record per EL that has not answered yet, after the votes.
    Pending = 6,
}

impl Outcome {
    /// Decodes an outcome byte; unknown codes read as [`Outcome::Malformed`].
    pub fn from_u8(code: u8) -> Outcome {
        match code {
            0 => Outcome::Answered,
            1 => Outcome::Timeout,
            2 => Outcome::Unreachable,
            3 => Outcome::RpcError,
            5 => Outcome::Cut,
            6 => Outcome::Pending,
            _ => Outcome::Malformed,
        }
    }
}

/// An EL's health as eb saw it when the call went out (record byte 16, ABI 1.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Health {
    /// Not checked yet (and what a 1.0 host sends).
    #[default]
    Unknown = 0,
    /// `eth_syncing` answered `false`.
    Synced = 1,
    /// `eth_syncing` answered a sync status.
    Syncing = 2,
    /// Health checks or live calls get no usable answer.
    Offline = 3,
    /// The EL refuses eb's token.
    AuthFailed = 4,
    /// Busy with an earlier call for longer than a verdict can wait.
    Hung = 5,
}

impl Health {
    /// Decodes a health byte; unknown codes read as [`Health::Unknown`].
    pub fn from_u8(code: u8) -> Health {
        match code {
            1 => Health::Synced,
            2 => Health::Syncing,
            3 => Health::Offline,
            4 => Health::AuthFailed,
            5 => Health::Hung,
            _ => Health::Unknown,
        }
    }

    /// Lowercase name, as in fixtures and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Synced => "synced",
            Health::Syncing => "syncing",
            Health::Offline => "offline",
            Health::AuthFailed => "auth_failed",
            Health::Hung => "hung",
        }
    }
}

/// Every (status, outcome) pair a vote can carry: the five answers, then the failures (a
/// pending record is not a vote and is not listed).
pub const VOTE_KINDS: [(Status, Outcome); 10] = [
    (Status::Valid, Outcome::Answered),
    (Status::Invalid, Outcome::Answered),
    (Status::Syncing, Outcome::Answered),
    (Status::Accepted, Outcome::Answered),
    (Status::InvalidBlockHash, Outcome::Answered),
    (Status::None, Outcome::Timeout),
    (Status::None, Outcome::Unreachable),
    (Status::None, Outcome::RpcError),
    (Status::None, Outcome::Malformed),
    (Status::None, Outcome::Cut),
];

/// Per-vote flag bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VoteFlags(pub u8);

impl VoteFlags {
    /// The answer carried a non-null `latestValidHash`.
    pub const LVH_PRESENT: u8 = 1 << 0;
    /// `latestValidHash` equals the block's own hash.
    pub const LVH_IS_BLOCK: u8 = 1 << 1;
    /// The node is configured `#do-not-use`: observed, never counted by the default rule.
    pub const DO_NOT_USE: u8 = 1 << 2;
    /// The answer carried a `validationError` text.
    pub const VALIDATION_ERROR: u8 = 1 << 3;
    /// Health checks currently see the node as syncing.
    pub const NODE_SYNCING: u8 = 1 << 4;
    /// The vote arrived after the verdict was given (recordings only).
    pub const LATE: u8 = 1 << 5;
    /// eb sees the node behind the chain (1.2): it voted SYNCING or ACCEPTED on a block eb
    /// answered VALID, and has not voted VALID since (its `eth_syncing` may still say synced).
    pub const NODE_BEHIND: u8 = 1 << 6;

    /// Whether every bit of `mask` is set.
    pub fn has(self, mask: u8) -> bool {
        self.0 & mask == mask
    }

    /// Returns these flags with `mask` set or cleared.
    pub fn with(self, mask: u8, on: bool) -> VoteFlags {
        VoteFlags(if on { self.0 | mask } else { self.0 & !mask })
    }
}

/// Two-letter client code from `engine_getClientVersionV1` (`GE`, `NM`, `BU`, `EG`, `RH`, …),
/// stored as `first | second << 8`; 0 when unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientCode(pub u16);

impl ClientCode {
    /// The unknown client.
    pub const UNKNOWN: ClientCode = ClientCode(0);

    /// Builds a code from two ASCII letters; `None` unless `code` is exactly two ASCII letters.
    pub fn from_letters(code: &str) -> Option<ClientCode> {
        match code.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                let (a, b) = (a.to_ascii_uppercase(), b.to_ascii_uppercase());
                Some(ClientCode(u16::from(a) | u16::from(b) << 8))
            }
            _ => None,
        }
    }

    /// The two letters, or `None` for the unknown client.
    pub fn letters(self) -> Option<[u8; 2]> {
        if self.0 == 0 {
            None
        } else {
            Some([self.0 as u8, (self.0 >> 8) as u8])
        }
    }
}

/// One EL's vote, as it travels in a 32-byte record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Vote {
    /// Index of the EL in `--nodes` order.
    pub node: u16,
    /// The payload status, if the EL answered one.
    pub status: Status,
    /// How the call ended.
    pub outcome: Outcome,
    /// See [`VoteFlags`].
    pub flags: VoteFlags,
    /// Votes with equal non-null `latestValidHash` share a non-zero group number.
    pub lvh_group: u8,
    /// The EL's client code.
    pub client: ClientCode,
    /// Time from fan-out to this answer, in microseconds.
    pub latency_us: u32,
    /// The JSON-RPC error code when `outcome` is [`Outcome::RpcError`], else 0.
    pub rpc_error_code: i32,
    /// The EL's health when the call went out (ABI 1.1).
    pub health: Health,
    /// The EL's recent answer time for state-changing calls, in microseconds; 0 unknown
    /// (ABI 1.1).
    pub typical_latency_us: u32,
}

impl Vote {
    /// An answered vote with `status` from `node`, everything else zero.
    pub fn answered(node: u16, status: Status) -> Vote {
        Vote {
            node,
            status,
            outcome: Outcome::Answered,
            flags: VoteFlags::default(),
            lvh_group: 0,
            client: ClientCode::UNKNOWN,
            latency_us: 0,
            rpc_error_code: 0,
            health: Health::Unknown,
            typical_latency_us: 0,
        }
    }

    /// A vote without an answer (`outcome` must not be [`Outcome::Answered`]).
    pub fn failed(node: u16, outcome: Outcome) -> Vote {
        Vote {
            status: Status::None,
            outcome,
            ..Vote::answered(node, Status::None)
        }
    }

    /// Whether this record stands for an EL that has not answered yet (ABI 1.1).
    pub fn is_pending(&self) -> bool {
        self.outcome == Outcome::Pending
    }

    /// Whether this vote carries an answer the host could return verbatim.
    pub fn is_answer(&self) -> bool {
        self.outcome == Outcome::Answered && self.status != Status::None
    }

    /// Whether majority rules count this vote: an answer from a node that is not do-not-use.
    pub fn is_counted(&self) -> bool {
        self.is_answer() && !self.flags.has(VoteFlags::DO_NOT_USE)
    }

    /// Decodes a record (the first [`RECORD_SIZE`] bytes of a possibly longer one).
    pub fn decode(bytes: &[u8; RECORD_SIZE]) -> Vote {
        Vote {
            node: u16_at(bytes, 0),
            status: Status::from_u8(bytes[2]),
            outcome: Outcome::from_u8(bytes[3]),
            flags: VoteFlags(bytes[4]),
            lvh_group: bytes[5],
            client: ClientCode(u16_at(bytes, 6)),
            latency_us: u32_at(bytes, 8),
            rpc_error_code: u32_at(bytes, 12) as i32,
            health: Health::from_u8(bytes[16]),
            typical_latency_us: u32_at(bytes, 20),
        }
    }

    /// Encodes this vote into a [`RECORD_SIZE`]-byte record (reserved bytes zeroed).
    pub fn encode(&self, out: &mut [u8]) {
        out[..RECORD_SIZE].fill(0);
        out[0..2].copy_from_slice(&self.node.to_le_bytes());
        out[2] = self.status as u8;
        out[3] = self.outcome as u8;
        out[4] = self.flags.0;
        out[5] = self.lvh_group;
        out[6..8].copy_from_slice(&self.client.0.to_le_bytes());
        out[8..12].copy_from_slice(&self.latency_us.to_le_bytes());
        out[12..16].copy_from_slice(&self.rpc_error_code.to_le_bytes());
        out[16] = self.health as u8;
        out[20..24].copy_from_slice(&self.typical_latency_us.to_le_bytes());
    }
}

/// What a ballot is about and how far collection has come: the header minus the layout fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Context {
    /// The kind of state-changing call.
    pub kind: VoteKind,
    /// Its version suffix (`4` for `engine_newPayloadV4`).
    pub method_version: u8,
    /// How many ELs eb is configured with.
    pub nodes_configured: u16,
    /// How many ELs have not answered yet.
    pub pending: u16,
    /// No more votes will come ([`FLAG_FINAL`]).
    pub is_final: bool,
    /// Milliseconds since fan-out.
    pub elapsed_ms: u32,
}

/// Why an input could not be encoded or decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// Fewer bytes than the header and records need.
    Truncated,
    /// `record_size` below [`RECORD_SIZE`].
    RecordSize,
    /// The config string lies outside the input or is not UTF-8.
    Config,
    /// The ABI major version differs from [`ABI_MAJOR`].
    Version,
    /// Unknown vote kind code.
    Kind,
    /// More votes than the ABI allows, or the output buffer is too small.
    TooLarge,
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            LayoutError::Truncated => "input shorter than its header says",
            LayoutError::RecordSize => "record_size below 32",
            LayoutError::Config => "config string out of bounds or not UTF-8",
            LayoutError::Version => "ABI major version mismatch",
            LayoutError::Kind => "unknown vote kind code",
            LayoutError::TooLarge => "ballot does not fit the input buffer",
        })
    }
}

/// Encodes a whole input (header, records, config) into `out`; returns the bytes written.
pub fn encode_input(
    context: &Context,
    votes: &[Vote],
    config: &str,
    out: &mut [u8],
) -> Result<usize, LayoutError> {
    let config_offset = HEADER_SIZE + votes.len() * RECORD_SIZE;
    let len = config_offset + config.len();
    if votes.len() > MAX_VOTES || config.len() > usize::from(u16::MAX) || len > out.len() {
        return Err(LayoutError::TooLarge);
    }
    let header = &mut out[..HEADER_SIZE];
    header.fill(0);
    header[0] = ABI_MAJOR;
    header[1] = ABI_MINOR;
    header[2] = context.kind as u8;
    header[3] = context.method_version;
    header[4..6].copy_from_slice(&context.nodes_configured.to_le_bytes());
    header[6..8].copy_from_slice(&(votes.len() as u16).to_le_bytes());
    header[8..10].copy_from_slice(&context.pending.to_le_bytes());
    header[10] = if context.is_final { FLAG_FINAL } else { 0 };
    header[11] = RECORD_SIZE as u8;
    header[12..16].copy_from_slice(&context.elapsed_ms.to_le_bytes());
    header[16..20].copy_from_slice(&(config_offset as u32).to_le_bytes());
    header[20..22].copy_from_slice(&(config.len() as u16).to_le_bytes());
    for (vote, record) in votes
        .iter()
        .zip(out[HEADER_SIZE..config_offset].chunks_exact_mut(RECORD_SIZE))
    {
        vote.encode(record);
    }
    out[config_offset..len].copy_from_slice(config.as_bytes());
    Ok(len)
}

/// The verdict a policy returns, before or after its `i64` encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Not yet: ask again when the next vote arrives (illegal once the input is FINAL).
    Wait,
    /// Not yet: ask again when the next vote arrives or once `elapsed_ms` reaches `at_ms`,
    /// whichever comes first (ABI 1.1; illegal once the input is FINAL). Lets a policy run its
    /// own straggler rule.
    Wake {
        /// Milliseconds since fan-out (the header's `elapsed_ms` clock).
        at_ms: u16,
    },
    /// Answer the CL with the answer of vote number `vote` (index in the input, not node index).
    Follow {
        /// Index of the vote in the input's record array.
        vote: u16,
        /// Policy-defined reason code, shown in logs, metrics and recordings.
        reason: u32,
    },
    /// Answer the CL with a synthetic `SYNCING` (the CL goes optimistic).
    Syncing {
        /// Policy-defined reason code.
        reason: u32,
    },
}

/// Verdict action code for [`Verdict::Wait`].
pub const ACTION_WAIT: u8 = 0;
/// Verdict action code for [`Verdict::Follow`].
pub const ACTION_FOLLOW: u8 = 1;
/// Verdict action code for [`Verdict::Syncing`].
pub const ACTION_SYNCING: u8 = 2;

impl Verdict {
    /// The `i64` a policy's `eb_decide` returns for this verdict.
    pub fn encode(self) -> i64 {
        let (action, vote, reason) = match self {
            Verdict::Wait => (ACTION_WAIT, 0, 0),
            Verdict::Wake { at_ms } => (ACTION_WAIT, at_ms, 0),
            Verdict::Follow { vote, reason } => (ACTION_FOLLOW, vote, reason),
            Verdict::Syncing { reason } => (ACTION_SYNCING, 0, reason),
        };
        (i64::from(reason) << 32) | (i64::from(vote) << 16) | i64::from(action)
    }

    /// Decodes `eb_decide`'s result; `None` for anything the ABI does not define (a policy fault).
    pub fn decode(raw: i64) -> Option<Verdict> {
        let raw = raw as u64;
        let action = (raw & 0xff) as u8;
        let middle = (raw >> 8) & 0xff;
        let vote = ((raw >> 16) & 0xffff) as u16;
        let reason = (raw >> 32) as u32;
        match (action, middle, vote) {
            (ACTION_WAIT, 0, 0) if reason == 0 => Some(Verdict::Wait),
            (ACTION_WAIT, 0, at_ms) if reason == 0 => Some(Verdict::Wake { at_ms }),
            (ACTION_FOLLOW, 0, _) => Some(Verdict::Follow { vote, reason }),
            (ACTION_SYNCING, 0, 0) => Some(Verdict::Syncing { reason }),
            _ => None,
        }
    }

    /// Whether this verdict asks to be asked again (`Wait` or `Wake`).
    pub fn is_wait(self) -> bool {
        matches!(self, Verdict::Wait | Verdict::Wake { .. })
    }

    /// The policy's reason code (0 for `Wait` and `Wake`).
    pub fn reason(self) -> u32 {
        match self {
            Verdict::Wait | Verdict::Wake { .. } => 0,
            Verdict::Follow { reason, .. } | Verdict::Syncing { reason } => reason,
        }
    }
}

/// Reason code the host reports when it replaced a faulting policy's verdict with `Syncing`.
pub const REASON_HOST_FAULT: u32 = 0xFFFF_FFFF;

/// Reason code the SDK's export glue returns when the host's input cannot be read.
pub const REASON_SDK_BAD_INPUT: u32 = 0xFFFF_FF01;

// Fixed-size arrays and constant offsets: no bounds checks, no panic paths in a policy module.
pub(crate) fn u16_at<const N: usize>(bytes: &[u8; N], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

pub(crate) fn u32_at<const N: usize>(bytes: &[u8; N], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_round_trips() {
        for verdict in [
            Verdict::Wait,
            Verdict::Follow { vote: 7, reason: 3 },
            Verdict::Follow {
                vote: u16::MAX,
                reason: u32::MAX,
            },
            Verdict::Syncing { reason: 0 },
            Verdict::Syncing { reason: 12 },
            Verdict::Wake { at_ms: 750 },
        ] {
            assert_eq!(Verdict::decode(verdict.encode()), Some(verdict));
        }
    }

    #[test]
    fn undefined_verdicts_are_refused() {
        for raw in [3, 0xff, 1 << 8, (1 << 16) | 2, (5_i64 << 32), -1] {
            assert_eq!(Verdict::decode(raw), None, "raw {raw:#x}");
        }
    }

    #[test]
    fn vote_record_round_trips() {
        let vote = Vote {
            node: 3,
            status: Status::InvalidBlockHash,
            outcome: Outcome::Answered,
            flags: VoteFlags(VoteFlags::LVH_PRESENT | VoteFlags::DO_NOT_USE),
            lvh_group: 2,
            client: ClientCode::from_letters("ge").expect("two letters"),
            latency_us: 1234,
            rpc_error_code: -38001,
            health: Health::Hung,
            typical_latency_us: 250_000,
        };
        let mut record = [0xaa; RECORD_SIZE];
        vote.encode(&mut record);
        assert_eq!(Vote::decode(&record), vote);
        assert_eq!(&record[6..8], b"GE");
        assert_eq!(
            (record[16], &record[20..24]),
            (5, &250_000u32.to_le_bytes()[..])
        );
        assert!(
            record[17..20].iter().chain(&record[24..]).all(|&b| b == 0),
            "reserved bytes zeroed"
        );
    }

    #[test]
    fn client_codes_need_two_letters() {
        assert_eq!(ClientCode::from_letters("G"), None);
        assert_eq!(ClientCode::from_letters("G1"), None);
        assert_eq!(ClientCode::from_letters("GEt"), None);
        assert_eq!(
            ClientCode::from_letters("NM").and_then(ClientCode::letters),
            Some(*b"NM")
        );
    }

    #[test]
    fn encode_refuses_oversized_ballots() {
        let context = Context {
            kind: VoteKind::NewPayload,
            method_version: 4,
            nodes_configured: 1,
            pending: 0,
            is_final: true,
            elapsed_ms: 0,
        };
        let votes = [Vote::answered(0, Status::Valid); MAX_VOTES + 1];
        let mut out = [0u8; 4096];
        assert_eq!(
            encode_input(&context, &votes, "", &mut out),
            Err(LayoutError::TooLarge)
        );
        assert_eq!(
            encode_input(&context, &votes[..2], "", &mut out[..40]),
            Err(LayoutError::TooLarge)
        );
    }
}
