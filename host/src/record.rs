//! `--record-votes PATH`: every decision appended as one JSONL fixture line (the format `eb
//! policy test` replays), flushed per line, the file rotated by size (`PATH` → `PATH.1`).
//! A line is written once every EL answered or timed out, so late votes are in it too (marked
//! `late`, outside the ballot the policy saw).

use crate::votes::Received;
use policy_sdk::abi::Health;
use policy_sdk::fixture::{status_name, Action, Case, Expect, VoteSpec};
use policy_sdk::{Outcome, Vote, VoteFlags, VoteKind};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Default size at which the recording is rotated.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;

/// An open recording.
pub struct Recorder {
    path: PathBuf,
    max_bytes: u64,
    file: Mutex<(File, u64)>,
}

fn open(path: &Path) -> std::io::Result<(File, u64)> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

impl Recorder {
    /// Opens (appends to) `path`.
    pub fn open(path: &Path, max_bytes: u64) -> std::io::Result<Recorder> {
        Ok(Recorder {
            path: path.to_owned(),
            max_bytes,
            file: Mutex::new(open(path)?),
        })
    }

    /// Appends one case as a line; errors are logged, never passed to the CL's answer.
    pub fn write(&self, case: &Case) {
        let Ok(mut line) = serde_json::to_string(case) else {
            return;
        };
        line.push('\n');
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.1 > 0 && guard.1 + line.len() as u64 > self.max_bytes {
            let rotated = self.path.with_extension(match self.path.extension() {
                Some(ext) => format!("{}.1", ext.to_string_lossy()),
                None => "1".to_owned(),
            });
            match std::fs::rename(&self.path, &rotated).and_then(|()| open(&self.path)) {
                Ok(fresh) => *guard = fresh,
                Err(e) => tracing::warn!(error = %e, "cannot rotate the vote recording"),
            }
        }
        match guard
            .0
            .write_all(line.as_bytes())
            .and_then(|()| guard.0.flush())
        {
            Ok(()) => guard.1 += line.len() as u64,
            Err(e) => tracing::warn!(error = %e, "cannot write the vote recording"),
        }
    }
}

/// One vote (with its answer's `latestValidHash`) as a fixture vote.
pub fn vote_spec(vote: &Vote, lvh: Option<&str>, late: bool) -> VoteSpec {
    VoteSpec {
        node: vote.node,
        status: status_name(vote).to_owned(),
        latency_ms: f64::from(vote.latency_us) / 1000.0,
        client: vote
            .client
            .letters()
            .map(|l| String::from_utf8_lossy(&l).into_owned()),
        do_not_use: vote.flags.has(VoteFlags::DO_NOT_USE),
        lvh: lvh.map(str::to_owned),
        error_code: (vote.outcome == Outcome::RpcError).then_some(vote.rpc_error_code),
        validation_error: vote.flags.has(VoteFlags::VALIDATION_ERROR),
        node_syncing: vote.flags.has(VoteFlags::NODE_SYNCING),
        node_behind: vote.flags.has(VoteFlags::NODE_BEHIND),
        late,
        health: (vote.health != Health::Unknown).then(|| vote.health.name().to_owned()),
        typical_latency_ms: f64::from(vote.typical_latency_us) / 1000.0,
    }
}

/// What a recorded decision was about, beside its votes.
pub struct Recorded<'a> {
    /// The JSON-RPC method name.
    pub method: &'a str,
    /// The vote kind.
    pub kind: VoteKind,
    /// The method version.
    pub version: u8,
    /// The CL's JSON-RPC id (raw JSON).
    pub id: &'a str,
    /// ELs the call went to.
    pub nodes: u16,
    /// Votes still outstanding when the policy decided.
    pub pending: u16,
    /// The policy's config string.
    pub config: &'a str,
    /// The block (newPayload) or head (forkchoiceUpdated) hash.
    pub block_hash: Option<&'a str>,
    /// Milliseconds from fan-out to the decision, as the policy saw them.
    pub elapsed_ms: u32,
    /// The deciding policy's SHA-256.
    pub policy_sha256: &'a str,
}

/// The decision as a fixture case: the votes the policy saw (`received`, then the `pending`
/// records), the one it `followed` (if any) and its reason code (late votes are added before
/// it is written).
pub fn case(
    about: &Recorded<'_>,
    received: &[Received],
    pending: &[Vote],
    followed: Option<&Received>,
    reason: u32,
) -> Case {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let block_hash = about.block_hash;
    let short = block_hash.map_or("-", |h| h.get(..12).unwrap_or(h));
    Case {
        name: format!("{} {short} at {}", about.method, now.as_millis()),
        method: about.kind.name().to_owned(),
        method_version: Some(about.version),
        nodes: Some(about.nodes),
        config: about.config.to_owned(),
        block_hash: block_hash.map(str::to_owned),
        pending: about.pending,
        elapsed_ms: about.elapsed_ms,
        votes: received
            .iter()
            .map(|r| vote_spec(&r.vote, r.lvh.as_deref(), false))
            .chain(pending.iter().map(|v| vote_spec(v, None, false)))
            .collect(),
        expect: Expect {
            action: if followed.is_some() {
                Action::Follow
            } else {
                Action::Syncing
            },
            status: followed.map(|r| status_name(&r.vote).to_owned()),
            node: followed.map(|r| r.vote.node),
            reason: Some(reason),
        },
        policy: Some(about.policy_sha256.to_owned()),
        recorded_at_ms: Some(now.as_millis() as u64),
        request_id: Some(about.id.to_owned()),
        shadow: None,
    }
}
