//! Unanimous policy: every counted vote must agree, or the CL is told SYNCING.
//!
//! For operators who would rather go optimistic than follow any split: one EL answering
//! differently from the others is enough to stop attesting until they agree again. Votes that do
//! not count (timeouts, errors, `#do-not-use` nodes) are ignored; no counted vote → Syncing.
//! An INVALID consensus is followed through the INVALID vote most voters agree with.
#![cfg_attr(target_arch = "wasm32", no_std)]

use policy_sdk::rules::{best_invalid, REASON_MAJORITY, REASON_NO_VOTES};
use policy_sdk::tally::Tally;
use policy_sdk::{Input, Status, Verdict};

/// Reason: the counted votes disagree.
pub const REASON_DISAGREEMENT: u32 = 20;

/// The verdict for `input`.
pub fn decide(input: &Input<'_>) -> Verdict {
    let tally = Tally::of(input);
    let agreed = match tally.majority(1000) {
        Some(status) => status,
        None if tally.total() > 0 => {
            return Verdict::Syncing {
                reason: REASON_DISAGREEMENT,
            }
        }
        None if input.is_final() => {
            return Verdict::Syncing {
                reason: REASON_NO_VOTES,
            }
        }
        None => return Verdict::Wait,
    };
    if !input.is_final() {
        return Verdict::Wait;
    }
    let vote = if agreed == Status::Invalid {
        best_invalid(input)
    } else {
        input.fastest(agreed)
    };
    match vote {
        Some(vote) => Verdict::Follow {
            vote,
            reason: REASON_MAJORITY,
        },
        None => Verdict::Syncing {
            reason: REASON_NO_VOTES,
        },
    }
}

policy_sdk::export_policy!(decide);

#[cfg(test)]
mod tests {
    use super::*;
    use policy_sdk::fixture;

    #[test]
    fn passes_its_fixtures() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
        let cases = fixture::load(&[dir.into()]).expect("fixtures load");
        assert!(cases.len() >= 6);
        let report = fixture::run(&cases, |b| {
            b.decide_native(decide).map_err(|e| e.to_string())
        });
        assert!(report.failures.is_empty(), "{report}");
    }
}
