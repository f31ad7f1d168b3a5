//! The policy stage of the data path: votes in, verdict out.
//!
//! A [`Policy`] turns a [`Ballot`] (the votes collected so far) into a [`Decision`]. The real
//! implementation is [`WasmPolicy`]: a sandboxed WebAssembly module speaking ABI v1 (see
//! `policy-sdk/ABI.md`). Every way a module can misbehave ends as a [`Fault`], which the caller
//! answers as SYNCING: eb never turns a fault into VALID.

mod conformance;
mod fault;
mod module;
pub mod sandbox;
mod slot;

pub use conformance::{conformance_cases, ConformanceReport};
pub use fault::{Fault, LoadError};
pub use module::{PolicySource, WasmPolicy};
pub use policy_sdk::ballot::Ballot;
pub use policy_sdk::Verdict;
use policy_sdk::{Status, Vote, VoteFlags};
pub use slot::{PolicySlot, ReloadError};

/// The default policy (`policies/default`), built for wasm32 and committed, so building eb needs
/// no wasm toolchain.
pub const DEFAULT_POLICY_WASM: &[u8] = include_bytes!("../../../policies/default.wasm");

/// Reason code eb reports for a Syncing that replaced a faulting policy's verdict.
pub const REASON_POLICY_FAULT: u32 = policy_sdk::abi::REASON_HOST_FAULT;

/// What a policy decided about one ballot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The verdict to act on: never `Wait` on a FINAL ballot, and `Follow` only points at a vote
    /// that carries an answer. A fault becomes `Syncing` with [`REASON_POLICY_FAULT`].
    pub verdict: Verdict,
    /// Why the policy's own verdict was replaced, if it was.
    pub fault: Option<Fault>,
    /// Fuel the decision used (0 for non-Wasm policies).
    pub fuel: u64,
}

impl Decision {
    /// A decision that replaces a faulting policy's verdict with `Syncing`.
    pub fn fault(fault: Fault, fuel: u64) -> Decision {
        Decision {
            verdict: Verdict::Syncing {
                reason: REASON_POLICY_FAULT,
            },
            fault: Some(fault),
            fuel,
        }
    }

    /// Checks a policy's raw verdict against the ballot it was asked about, including eb's
    /// safety rule: no `Follow` of a VALID vote while an INVALID one is counted (answered, not
    /// from a `#do-not-use` EL).
    pub fn checked(ballot: &Ballot, verdict: Verdict, fuel: u64) -> Decision {
        let fault = match (verdict, ballot.followed(verdict)) {
            (v, _) if v.is_wait() && ballot.context.is_final => Some(Fault::WaitWhenFinal),
            (Verdict::Follow { vote, .. }, None) => Some(Fault::FollowUnanswered(vote)),
            (Verdict::Follow { vote, .. }, Some(followed))
                if followed.status.normalized() == Status::Valid && counts_invalid(ballot) =>
            {
                Some(Fault::ValidBesideInvalid(vote))
            }
            _ => None,
        };
        match fault {
            Some(fault) => Decision::fault(fault, fuel),
            None => Decision {
                verdict,
                fault: None,
                fuel,
            },
        }
    }
}

/// Whether `vote` is a counted INVALID: an answer, not from a `#do-not-use` EL.
pub fn is_counted_invalid(vote: &Vote) -> bool {
    vote.is_answer()
        && vote.status.normalized() == Status::Invalid
        && !vote.flags.has(VoteFlags::DO_NOT_USE)
}

fn counts_invalid(ballot: &Ballot) -> bool {
    ballot.votes.iter().any(is_counted_invalid)
}

/// Identity of a loaded policy, for `/status`, logs, metrics and recordings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyInfo {
    /// File name, or `default (embedded)`.
    pub name: String,
    /// SHA-256 of the module bytes as given (hex).
    pub sha256: String,
    /// Size of the module bytes as given.
    pub size: usize,
    /// The config string it was configured with.
    pub config: String,
    /// When it was loaded.
    pub loaded_at: std::time::SystemTime,
}

/// Anything that can decide ballots; the proxy holds one behind an `Arc`.
pub trait Policy: Send + Sync {
    /// Decides one ballot. Never panics; a misbehaving policy yields a [`Decision::fault`].
    fn decide(&self, ballot: &Ballot) -> Decision;
    /// Which policy this is.
    fn info(&self) -> &PolicyInfo;
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy_sdk::{Context, Outcome, VoteKind};

    fn ballot(is_final: bool) -> Ballot {
        Ballot {
            context: Context {
                kind: VoteKind::NewPayload,
                method_version: 4,
                nodes_configured: 2,
                pending: u16::from(!is_final),
                is_final,
                elapsed_ms: 0,
            },
            votes: vec![
                Vote::answered(0, Status::Valid),
                Vote::failed(1, Outcome::Timeout),
            ],
            config: String::new(),
        }
    }

    #[test]
    fn checked_turns_illegal_verdicts_into_faults() {
        let wait = Decision::checked(&ballot(true), Verdict::Wait, 5);
        assert_eq!(wait.fault, Some(Fault::WaitWhenFinal));
        assert_eq!(
            wait.verdict,
            Verdict::Syncing {
                reason: REASON_POLICY_FAULT
            }
        );
        let unanswered =
            Decision::checked(&ballot(true), Verdict::Follow { vote: 1, reason: 0 }, 5);
        assert_eq!(unanswered.fault, Some(Fault::FollowUnanswered(1)));
        let missing = Decision::checked(&ballot(true), Verdict::Follow { vote: 9, reason: 0 }, 5);
        assert_eq!(missing.fault, Some(Fault::FollowUnanswered(9)));
        let fine = Decision::checked(&ballot(false), Verdict::Wait, 5);
        assert_eq!((fine.verdict, fine.fault), (Verdict::Wait, None));
        let follow = Decision::checked(&ballot(true), Verdict::Follow { vote: 0, reason: 1 }, 5);
        assert_eq!(follow.fault, None);
    }

    #[test]
    fn valid_beside_a_counted_invalid_is_a_fault_whatever_the_policy_says() {
        let mut beside = ballot(true);
        beside.votes[1] = Vote::answered(1, Status::InvalidBlockHash);
        let valid = Verdict::Follow { vote: 0, reason: 1 };
        let decision = Decision::checked(&beside, valid, 5);
        assert_eq!(decision.fault, Some(Fault::ValidBesideInvalid(0)));
        assert_eq!(
            decision.verdict,
            Verdict::Syncing {
                reason: REASON_POLICY_FAULT
            }
        );
        let invalid = Decision::checked(&beside, Verdict::Follow { vote: 1, reason: 2 }, 5);
        assert_eq!(invalid.fault, None, "following the INVALID is allowed");
        beside.votes[1].flags = beside.votes[1].flags.with(VoteFlags::DO_NOT_USE, true);
        assert_eq!(
            Decision::checked(&beside, valid, 5).fault,
            None,
            "a do-not-use INVALID is not counted"
        );
    }
}
