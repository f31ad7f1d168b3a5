//! Vote fixtures: recorded or hand-written ballots with the verdict they must get.
//!
//! One JSON object per case (`.json`, also an array of objects) or one per line (`.jsonl`):
//!
//! ```json
//! {"name": "two of three VALID", "method": "newPayload", "nodes": 3,
//!  "votes": [{"node": 0, "status": "VALID", "latency_ms": 3, "client": "GE"},
//!            {"node": 1, "status": "VALID"}, {"node": 2, "status": "TIMEOUT"}],
//!  "expect": {"action": "follow", "status": "VALID"}}
//! ```
//!
//! A vote's `status` is a payload status (`VALID`, `INVALID`, `SYNCING`, `ACCEPTED`,
//! `INVALID_BLOCK_HASH`) or how the call failed (`TIMEOUT`, `UNREACHABLE`, `ERROR` with
//! `error_code`, `MALFORMED`). The same cases run natively ([`run`] with a Rust function) and
//! through a Wasm module (the host's `eb policy test`).

use crate::abi::{
    ClientCode, Context, Health, Outcome, Status, Verdict, Vote, VoteFlags, VoteKind,
};
use crate::ballot::Ballot;
use serde::{Deserialize, Serialize};
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

/// One fixture case.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Shown when the case fails.
    pub name: String,
    /// `newPayload`, `forkchoiceUpdated` or `forkchoiceUpdatedWithAttributes`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Method version suffix; defaults to the current fork's (4 for newPayload, 3 for fcU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method_version: Option<u8>,
    /// Configured ELs; defaults to the highest node index in `votes` plus one, plus `pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<u16>,
    /// The policy config string (`--policy-config`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config: String,
    /// The block (newPayload) or head (fcU) hash; a vote whose `lvh` equals it is flagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_hash: Option<String>,
    /// Votes still outstanding; a case with none pending is FINAL.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pending: u16,
    /// Milliseconds since fan-out.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub elapsed_ms: u32,
    /// The votes, in arrival order (votes marked `late` came after the verdict: recorded, but
    /// not part of the ballot).
    pub votes: Vec<VoteSpec>,
    /// The verdict the policy must give.
    pub expect: Expect,
    /// Recordings: SHA-256 of the policy that decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Recordings: when the decision was made (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_at_ms: Option<u64>,
    /// Recordings: the CL's JSON-RPC id of the call (raw JSON), to match a case to the CL's logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Recordings: what the shadow policy (`--shadow-policy`) answered instead, where it
    /// disagreed with `expect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Expect>,
}

/// One vote in a fixture.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VoteSpec {
    /// Node index in `--nodes` order.
    pub node: u16,
    /// A payload status or a failure kind (see the module docs).
    pub status: String,
    /// Latency in milliseconds (fractions allowed).
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub latency_ms: f64,
    /// Two-letter client code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The node is configured `#do-not-use`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub do_not_use: bool,
    /// The answer's `latestValidHash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lvh: Option<String>,
    /// JSON-RPC error code, for `status: "ERROR"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i32>,
    /// The answer carried a `validationError`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub validation_error: bool,
    /// Health checks saw the node syncing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub node_syncing: bool,
    /// eb saw the node behind the verdicts it gave (ABI 1.2).
    #[serde(default, skip_serializing_if = "is_false")]
    pub node_behind: bool,
    /// The vote arrived after the verdict (recordings).
    #[serde(default, skip_serializing_if = "is_false")]
    pub late: bool,
    /// The node's health when the call went out: `synced`, `syncing`, `offline`,
    /// `auth_failed`, `hung` (ABI 1.1; absent is unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// The node's recent answer time for state-changing calls, in milliseconds (ABI 1.1).
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub typical_latency_ms: f64,
}

/// The verdict a case expects.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `follow`, `syncing` or `wait`.
    pub action: Action,
    /// For `follow`: the status of the followed vote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// For `follow`: the node of the followed vote, when it matters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u16>,
    /// The policy's reason code, when it matters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<u32>,
}

impl Expect {
    /// What `verdict` answers for `ballot`, as a case expects it (with its reason).
    pub fn of(ballot: &Ballot, verdict: crate::Verdict) -> Expect {
        let followed = ballot.followed(verdict);
        Expect {
            action: match verdict {
                crate::Verdict::Follow { .. } => Action::Follow,
                crate::Verdict::Syncing { .. } => Action::Syncing,
                crate::Verdict::Wait | crate::Verdict::Wake { .. } => Action::Wait,
            },
            status: followed.map(|v| v.status.name().to_owned()),
            node: followed.map(|v| v.node),
            reason: Some(verdict.reason()),
        }
    }

    /// Whether the CL would get the same answer: the action and the followed status (which of
    /// several votes with that status is followed, or why, does not change it).
    pub fn answers_like(&self, other: &Expect) -> bool {
        (self.action, &self.status) == (other.action, &other.status)
    }
}

/// A verdict's action, as fixtures spell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// [`Verdict::Wait`].
    Wait,
    /// [`Verdict::Follow`].
    Follow,
    /// [`Verdict::Syncing`].
    Syncing,
}

fn default_method() -> String {
    VoteKind::NewPayload.name().to_owned()
}
fn is_zero(n: &u16) -> bool {
    *n == 0
}
fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}
fn is_zero_f64(n: &f64) -> bool {
    *n == 0.0
}
fn is_false(b: &bool) -> bool {
    !*b
}

/// Why fixtures could not be read or turned into ballots.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A case is not valid JSON of the fixture shape.
    #[error("{path}:{line}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line (the case's first line for `.json` files).
        line: usize,
        /// The error.
        source: serde_json::Error,
    },
    /// A case parses but says something impossible.
    #[error("case {case:?}: {message}")]
    Invalid {
        /// The case name.
        case: String,
        /// What is wrong.
        message: String,
    },
}

/// Parses a fixture vote status into (status, outcome).
pub fn parse_status(text: &str) -> Option<(Status, Outcome)> {
    let answered = |s| Some((s, Outcome::Answered));
    match text.to_ascii_uppercase().as_str() {
        "VALID" => answered(Status::Valid),
        "INVALID" => answered(Status::Invalid),
        "SYNCING" => answered(Status::Syncing),
        "ACCEPTED" => answered(Status::Accepted),
        "INVALID_BLOCK_HASH" => answered(Status::InvalidBlockHash),
        "TIMEOUT" => Some((Status::None, Outcome::Timeout)),
        "UNREACHABLE" => Some((Status::None, Outcome::Unreachable)),
        "ERROR" => Some((Status::None, Outcome::RpcError)),
        "MALFORMED" => Some((Status::None, Outcome::Malformed)),
        "CUT" => Some((Status::None, Outcome::Cut)),
        "PENDING" => Some((Status::None, Outcome::Pending)),
        _ => None,
    }
}

/// Parses a fixture health name.
pub fn parse_health(text: &str) -> Option<Health> {
    [
        Health::Unknown,
        Health::Synced,
        Health::Syncing,
        Health::Offline,
        Health::AuthFailed,
        Health::Hung,
    ]
    .into_iter()
    .find(|h| h.name().eq_ignore_ascii_case(text))
}

/// The fixture spelling of a vote's status or failure, inverse of [`parse_status`].
pub fn status_name(vote: &Vote) -> &'static str {
    match vote.outcome {
        Outcome::Answered => vote.status.name(),
        Outcome::Timeout => "TIMEOUT",
        Outcome::Unreachable => "UNREACHABLE",
        Outcome::RpcError => "ERROR",
        Outcome::Malformed => "MALFORMED",
        Outcome::Cut => "CUT",
        Outcome::Pending => "PENDING",
    }
}

/// Parses a fixture method name.
pub fn parse_method(text: &str) -> Option<VoteKind> {
    [
        VoteKind::NewPayload,
        VoteKind::ForkchoiceUpdated,
        VoteKind::ForkchoiceUpdatedWithAttributes,
    ]
    .into_iter()
    .find(|m| m.name().eq_ignore_ascii_case(text))
}

impl Case {
    fn invalid(&self, message: impl Into<String>) -> FixtureError {
        FixtureError::Invalid {
            case: self.name.clone(),
            message: message.into(),
        }
    }

    /// The ballot this case describes.
    pub fn ballot(&self) -> Result<Ballot, FixtureError> {
        let method = parse_method(&self.method)
            .ok_or_else(|| self.invalid(format!("unknown method {:?}", self.method)))?;
        let mut groups: Vec<&str> = Vec::new();
        let mut votes = Vec::with_capacity(self.votes.len());
        for spec in self.votes.iter().filter(|v| !v.late) {
            let (status, outcome) = parse_status(&spec.status)
                .ok_or_else(|| self.invalid(format!("unknown status {:?}", spec.status)))?;
            let client = match &spec.client {
                None => ClientCode::UNKNOWN,
                Some(code) => ClientCode::from_letters(code)
                    .ok_or_else(|| self.invalid(format!("client {code:?} is not two letters")))?,
            };
            let lvh_group = match spec.lvh.as_deref() {
                None => 0,
                Some(lvh) => match groups.iter().position(|g| g.eq_ignore_ascii_case(lvh)) {
                    Some(i) => i + 1,
                    None => {
                        groups.push(lvh);
                        groups.len()
                    }
                },
            };
            let health = match spec.health.as_deref() {
                None => Health::Unknown,
                Some(name) => parse_health(name)
                    .ok_or_else(|| self.invalid(format!("unknown health {name:?}")))?,
            };
            let lvh_is_block = matches!((&spec.lvh, &self.block_hash),
                (Some(lvh), Some(block)) if lvh.eq_ignore_ascii_case(block));
            let flags = VoteFlags::default()
                .with(VoteFlags::LVH_PRESENT, spec.lvh.is_some())
                .with(VoteFlags::LVH_IS_BLOCK, lvh_is_block)
                .with(VoteFlags::DO_NOT_USE, spec.do_not_use)
                .with(VoteFlags::VALIDATION_ERROR, spec.validation_error)
                .with(VoteFlags::NODE_SYNCING, spec.node_syncing)
                .with(VoteFlags::NODE_BEHIND, spec.node_behind)
                .with(VoteFlags::LATE, spec.late);
            votes.push(Vote {
                node: spec.node,
                status,
                outcome,
                flags,
                lvh_group: u8::try_from(lvh_group)
                    .map_err(|_| self.invalid("more than 255 distinct latestValidHash values"))?,
                client,
                latency_us: (spec.latency_ms * 1000.0)
                    .round()
                    .clamp(0.0, u32::MAX as f64) as u32,
                rpc_error_code: spec.error_code.unwrap_or(0),
                health,
                typical_latency_us: (spec.typical_latency_ms * 1000.0)
                    .round()
                    .clamp(0.0, u32::MAX as f64) as u32,
            });
        }
        // Pending records (ABI 1.1) follow the votes, one per outstanding EL at most.
        votes.sort_by_key(Vote::is_pending);
        let pending_records = votes.iter().filter(|v| v.is_pending()).count();
        if pending_records > usize::from(self.pending) {
            return Err(self.invalid(format!(
                "{pending_records} PENDING votes but pending is {}",
                self.pending
            )));
        }
        let highest_of = |pending_too: bool| {
            let records = votes.iter().filter(|v| pending_too || !v.is_pending());
            records.map(|v| v.node + 1).max().unwrap_or(0)
        };
        let highest = highest_of(true);
        let nodes = self
            .nodes
            .unwrap_or((highest_of(false) + self.pending).max(highest));
        if nodes < highest {
            return Err(self.invalid(format!("a vote names node {} of {nodes}", highest - 1)));
        }
        let method_version = self.method_version.unwrap_or(match method {
            VoteKind::NewPayload => 4,
            _ => 3,
        });
        Ok(Ballot {
            context: Context {
                kind: method,
                method_version,
                nodes_configured: nodes,
                pending: self.pending,
                is_final: self.pending == 0,
                elapsed_ms: self.elapsed_ms,
            },
            votes,
            config: self.config.clone(),
        })
    }

    /// `None` when `verdict` is what the case expects, else a one-line explanation.
    pub fn mismatch(&self, ballot: &Ballot, verdict: Verdict) -> Option<String> {
        let got = describe_verdict(ballot, verdict);
        let expect = &self.expect;
        let action_ok = matches!(
            (expect.action, verdict),
            (Action::Wait, Verdict::Wait | Verdict::Wake { .. })
                | (Action::Follow, Verdict::Follow { .. })
                | (Action::Syncing, Verdict::Syncing { .. })
        );
        let followed = ballot.followed(verdict);
        let follow_ok = match verdict {
            Verdict::Follow { .. } => followed.is_some_and(|vote| {
                expect.status.as_deref().is_none_or(|s| {
                    parse_status(s).is_some_and(|(status, _)| status == vote.status)
                }) && expect.node.is_none_or(|n| n == vote.node)
            }),
            _ => true,
        };
        let reason_ok = expect.reason.is_none_or(|r| r == verdict.reason());
        if action_ok && follow_ok && reason_ok {
            None
        } else {
            Some(format!("expected {}, got {got}", self.describe_expect()))
        }
    }

    fn describe_expect(&self) -> String {
        let e = &self.expect;
        let mut text = format!("{:?}", e.action).to_lowercase();
        if let Some(status) = &e.status {
            let _ = write!(text, " {status}");
        }
        if let Some(node) = e.node {
            let _ = write!(text, " (node {node})");
        }
        if let Some(reason) = e.reason {
            let _ = write!(text, " reason {reason}");
        }
        text
    }
}

/// A verdict in words, e.g. `follow VALID (vote 1, node 2) reason 1`.
pub fn describe_verdict(ballot: &Ballot, verdict: Verdict) -> String {
    match verdict {
        Verdict::Wait => "wait".to_owned(),
        Verdict::Wake { at_ms } => format!("wait (wake at {at_ms} ms)"),
        Verdict::Syncing { reason } => format!("syncing reason {reason}"),
        Verdict::Follow { vote, reason } => match ballot.votes.get(usize::from(vote)) {
            Some(v) => format!(
                "follow {} (vote {vote}, node {}) reason {reason}",
                status_name(v),
                v.node
            ),
            None => format!("follow vote {vote} (no such vote) reason {reason}"),
        },
    }
}

/// The votes in one line, e.g. `0:VALID 1:INVALID(lvh 1) 2:TIMEOUT`.
pub fn describe_votes(ballot: &Ballot) -> String {
    let mut text = String::new();
    for vote in &ballot.votes {
        let _ = write!(text, "{}:{}", vote.node, status_name(vote));
        if vote.lvh_group != 0 {
            let _ = write!(text, "(lvh {})", vote.lvh_group);
        }
        if vote.flags.has(VoteFlags::DO_NOT_USE) {
            text.push_str("(do-not-use)");
        }
        text.push(' ');
    }
    if ballot.context.pending > 0 {
        let _ = write!(text, "+{} pending", ballot.context.pending);
    }
    text.trim_end().to_owned()
}

/// Reads cases from files and directories (`*.json` and `*.jsonl` inside, sorted by name).
pub fn load(paths: &[PathBuf]) -> Result<Vec<Case>, FixtureError> {
    let mut cases = Vec::new();
    for path in paths {
        if path.is_dir() {
            let io = |source| FixtureError::Io {
                path: path.clone(),
                source,
            };
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(io)?
                .map(|entry| entry.map(|e| e.path()))
                .collect::<Result<_, _>>()
                .map_err(io)?;
            files.retain(|f| {
                matches!(
                    f.extension().and_then(|e| e.to_str()),
                    Some("json" | "jsonl")
                )
            });
            files.sort();
            for file in files {
                cases.extend(load_file(&file)?);
            }
        } else {
            cases.extend(load_file(path)?);
        }
    }
    Ok(cases)
}

/// Reads the cases of one `.json` or `.jsonl` file.
pub fn load_file(path: &Path) -> Result<Vec<Case>, FixtureError> {
    let text = std::fs::read_to_string(path).map_err(|source| FixtureError::Io {
        path: path.to_owned(),
        source,
    })?;
    let json_error = |line, source| FixtureError::Json {
        path: path.to_owned(),
        line,
        source,
    };
    if path.extension().and_then(|e| e.to_str()) == Some("jsonl") {
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(i, line)| serde_json::from_str(line).map_err(|e| json_error(i + 1, e)))
            .collect()
    } else {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(Box<Case>),
            Many(Vec<Case>),
        }
        match serde_json::from_str(&text).map_err(|e| json_error(e.line(), e))? {
            OneOrMany::One(case) => Ok(vec![*case]),
            OneOrMany::Many(cases) => Ok(cases),
        }
    }
}

/// The result of running cases against one policy.
#[derive(Debug, Default)]
pub struct Report {
    /// Cases whose verdict matched.
    pub passed: usize,
    /// One multi-line description per failed case.
    pub failures: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for failure in &self.failures {
            writeln!(f, "{failure}")?;
        }
        write!(f, "{} passed, {} failed", self.passed, self.failures.len())
    }
}

/// Runs every case through `decide` (a native function or a Wasm module); `decide` returns the
/// verdict or, for a policy fault, a description of it (a fault fails the case, unless the case
/// is a recorded fault: `syncing` with reason [`REASON_HOST_FAULT`](crate::abi::REASON_HOST_FAULT)).
pub fn run(cases: &[Case], mut decide: impl FnMut(&Ballot) -> Result<Verdict, String>) -> Report {
    let mut report = Report::default();
    for case in cases {
        let failure = match case.ballot() {
            Err(e) => Some(format!("FAIL {:?}: {e}", case.name)),
            Ok(ballot) => {
                let problem = match decide(&ballot) {
                    Ok(verdict) => case.mismatch(&ballot, verdict),
                    // A recorded fault replays as the same fault.
                    Err(_)
                        if case.expect.action == Action::Syncing
                            && case.expect.reason == Some(crate::abi::REASON_HOST_FAULT) =>
                    {
                        None
                    }
                    Err(fault) => Some(format!(
                        "expected {}, got a policy fault: {fault}",
                        case.describe_expect()
                    )),
                };
                problem.map(|p| {
                    format!(
                        "FAIL {:?}\n  votes: {}\n  {p}",
                        case.name,
                        describe_votes(&ballot)
                    )
                })
            }
        };
        match failure {
            Some(text) => report.failures.push(text),
            None => report.passed += 1,
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(json: &str) -> Case {
        serde_json::from_str(json).expect("valid case")
    }

    #[test]
    fn builds_ballots_with_lvh_groups_and_flags() {
        let c = case(
            r#"{"name": "x", "block_hash": "0xB1", "pending": 1, "votes": [
                {"node": 0, "status": "INVALID", "lvh": "0xaa", "latency_ms": 1.5},
                {"node": 2, "status": "INVALID", "lvh": "0xAA", "do_not_use": true},
                {"node": 1, "status": "VALID", "lvh": "0xb1", "client": "ge"},
                {"node": 3, "status": "ERROR", "error_code": -32603}],
              "expect": {"action": "wait"}}"#,
        );
        let ballot = c.ballot().expect("valid ballot");
        assert_eq!(ballot.context.nodes_configured, 5);
        assert!(!ballot.context.is_final);
        let groups: Vec<u8> = ballot.votes.iter().map(|v| v.lvh_group).collect();
        assert_eq!(groups, [1, 1, 2, 0]);
        assert!(ballot.votes[2].flags.has(VoteFlags::LVH_IS_BLOCK));
        assert!(ballot.votes[1].flags.has(VoteFlags::DO_NOT_USE));
        assert_eq!(ballot.votes[0].latency_us, 1500);
        assert_eq!(ballot.votes[3].outcome, Outcome::RpcError);
        assert_eq!(ballot.votes[3].rpc_error_code, -32603);
        assert_eq!(ballot.votes[2].client.letters(), Some(*b"GE"));
    }

    #[test]
    fn refuses_impossible_cases() {
        for bad in [
            r#"{"name": "s", "votes": [{"node": 0, "status": "MAYBE"}], "expect": {"action": "wait"}}"#,
            r#"{"name": "m", "method": "getPayload", "votes": [], "expect": {"action": "wait"}}"#,
            r#"{"name": "n", "nodes": 1, "votes": [{"node": 3, "status": "VALID"}], "expect": {"action": "wait"}}"#,
            r#"{"name": "c", "votes": [{"node": 0, "status": "VALID", "client": "G"}], "expect": {"action": "wait"}}"#,
        ] {
            assert!(case(bad).ballot().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Case>(
            r#"{"name": "t", "votes": [], "expect": {"action": "follow", "stauts": "VALID"}}"#
        )
        .is_err());
    }

    #[test]
    fn mismatch_checks_action_status_node_and_reason() {
        let c = case(
            r#"{"name": "x", "votes": [{"node": 0, "status": "VALID"}, {"node": 1, "status": "SYNCING"}],
                "expect": {"action": "follow", "status": "VALID", "node": 0}}"#,
        );
        let ballot = c.ballot().expect("valid");
        assert_eq!(
            c.mismatch(&ballot, Verdict::Follow { vote: 0, reason: 9 }),
            None
        );
        assert!(c
            .mismatch(&ballot, Verdict::Follow { vote: 1, reason: 9 })
            .is_some());
        assert!(c
            .mismatch(&ballot, Verdict::Follow { vote: 5, reason: 9 })
            .is_some());
        assert!(c
            .mismatch(&ballot, Verdict::Syncing { reason: 9 })
            .is_some());
        let mut strict = c.clone();
        strict.expect.reason = Some(1);
        assert!(strict
            .mismatch(&ballot, Verdict::Follow { vote: 0, reason: 9 })
            .is_some());
    }

    #[test]
    fn report_closes_with_counts() {
        let cases = [
            case(r#"{"name": "a", "votes": [], "expect": {"action": "syncing"}}"#),
            case(r#"{"name": "b", "votes": [], "expect": {"action": "wait"}}"#),
        ];
        let report = run(&cases, |_| Ok(Verdict::Syncing { reason: 0 }));
        let text = report.to_string();
        assert!(text.contains("FAIL \"b\""), "{text}");
        assert!(text.ends_with("1 passed, 1 failed"), "{text}");
    }
}
