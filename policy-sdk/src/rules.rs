//! The majority rule (executionbackup's documented rule, made exact), as a building block.
//!
//! Only answers count: VALID, INVALID (with INVALID_BLOCK_HASH), SYNCING and ACCEPTED from nodes
//! that are not `#do-not-use`; timeouts, errors and unreachable nodes do not. With `n` counted
//! votes a status needs `round(n × majority)` of them, and must be the only status that does.
//!
//! | situation | verdict |
//! |---|---|
//! | no counted vote, no status at the threshold, or two at it (tie) | Syncing |
//! | INVALID majority | Follow an INVALID vote (largest group agreeing on latestValidHash) |
//! | any INVALID beside another majority | Syncing |
//! | otherwise | Follow the fastest vote of the majority status |
//!
//! Before all votes are in it answers early only when no pending vote can change the outcome:
//! an INVALID majority that is already certain, or an INVALID vote while an INVALID majority is
//! already impossible (then the answer can only be Syncing). Otherwise it waits.

use crate::tally::Tally;
use crate::{Input, Status, Verdict, Vote};

/// Reason: followed the majority status, with no INVALID vote.
pub const REASON_MAJORITY: u32 = 1;
/// Reason: followed an INVALID majority.
pub const REASON_INVALID_MAJORITY: u32 = 2;
/// Reason: no counted votes.
pub const REASON_NO_VOTES: u32 = 10;
/// Reason: no single status reached the threshold (includes ties).
pub const REASON_NO_MAJORITY: u32 = 11;
/// Reason: an INVALID vote beside a non-INVALID majority.
pub const REASON_INVALID_DISSENT: u32 = 12;
/// Reason: the config string could not be read (the host checks this at load, so rare).
pub const REASON_BAD_CONFIG: u32 = 13;

/// Majority in permille when not configured.
pub const DEFAULT_PERMILLE: u32 = 600;

/// Splits a config string `key=value,key=value` into pairs with ASCII whitespace trimmed;
/// `Err` for an item without `=`. Works on bytes so policies stay free of UTF-8 machinery.
pub fn config_pairs(config: &[u8]) -> impl Iterator<Item = Result<(&[u8], &[u8]), ()>> {
    config
        .split(|&b| b == b',')
        .map(trim)
        .filter(|item| !item.is_empty())
        .map(|item| match item.iter().position(|&b| b == b'=') {
            Some(at) => Ok((trim(&item[..at]), trim(&item[at + 1..]))),
            None => Err(()),
        })
}

fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if !first.is_ascii_whitespace() {
            break;
        }
        bytes = rest;
    }
    while let [rest @ .., last] = bytes {
        if !last.is_ascii_whitespace() {
            break;
        }
        bytes = rest;
    }
    bytes
}

/// Reads `majority=F` (F in [0.5, 1], up to three decimals) into permille; empty → 600.
pub fn parse_config(config: &[u8]) -> Result<u32, ()> {
    let mut permille = DEFAULT_PERMILLE;
    for pair in config_pairs(config) {
        match pair? {
            (b"majority", value) => permille = parse_permille(value)?,
            _ => return Err(()),
        }
    }
    Ok(permille)
}

/// Parses a decimal in [0.5, 1] with at most three decimals (`0.6`, `.75`, `1`) into permille.
pub fn parse_permille(text: &[u8]) -> Result<u32, ()> {
    let (whole, fraction) = match text.iter().position(|&b| b == b'.') {
        Some(at) => (&text[..at], &text[at + 1..]),
        None => (text, &[][..]),
    };
    if whole.len() > 1 || fraction.len() > 3 || whole.is_empty() && fraction.is_empty() {
        return Err(());
    }
    let mut permille = 0;
    let mut scale = 1000;
    for &b in whole.iter().chain(fraction) {
        if !b.is_ascii_digit() {
            return Err(());
        }
        permille += u32::from(b - b'0') * scale;
        scale /= 10;
    }
    if (500..=1000).contains(&permille) {
        Ok(permille)
    } else {
        Err(())
    }
}

/// The INVALID vote to follow: the largest group agreeing on latestValidHash (a null hash is a
/// group of its own), then the fastest.
pub fn best_invalid(input: &Input<'_>) -> Option<u16> {
    let mut group_sizes = [0u16; 256];
    let is_invalid = |v: &Vote| v.is_counted() && v.status.normalized() == Status::Invalid;
    for vote in input.votes().filter(is_invalid) {
        group_sizes[usize::from(vote.lvh_group)] += 1;
    }
    let size = |v: &Vote| group_sizes[usize::from(v.lvh_group)];
    input.pick(is_invalid, |a, b| {
        (size(a), core::cmp::Reverse(a.latency_us)) > (size(b), core::cmp::Reverse(b.latency_us))
    })
}

/// The majority rule with a majority of `permille` / 1000 (see the module docs).
pub fn majority(input: &Input<'_>, permille: u32) -> Verdict {
    let tally = Tally::of(input);
    let invalid = tally.count(Status::Invalid);
    if !input.is_final() {
        let pending = u32::from(input.pending());
        if tally.majority_certain(Status::Invalid, permille, pending) {
            return follow_invalid(input);
        }
        if invalid > 0 && !tally.majority_possible(Status::Invalid, permille, pending) {
            return Verdict::Syncing {
                reason: REASON_INVALID_DISSENT,
            };
        }
        return Verdict::Wait;
    }
    match tally.majority(permille) {
        None if tally.total() == 0 => Verdict::Syncing {
            reason: REASON_NO_VOTES,
        },
        None => Verdict::Syncing {
            reason: REASON_NO_MAJORITY,
        },
        Some(Status::Invalid) => follow_invalid(input),
        Some(_) if invalid > 0 => Verdict::Syncing {
            reason: REASON_INVALID_DISSENT,
        },
        Some(status) => match input.fastest(status) {
            Some(vote) => Verdict::Follow {
                vote,
                reason: REASON_MAJORITY,
            },
            None => Verdict::Syncing {
                reason: REASON_NO_MAJORITY,
            },
        },
    }
}

fn follow_invalid(input: &Input<'_>) -> Verdict {
    match best_invalid(input) {
        Some(vote) => Verdict::Follow {
            vote,
            reason: REASON_INVALID_MAJORITY,
        },
        None => Verdict::Syncing {
            reason: REASON_NO_MAJORITY,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_majority_config() {
        assert_eq!(parse_config(b""), Ok(600));
        assert_eq!(parse_config(b" majority = 0.67 ,"), Ok(670));
        assert_eq!(parse_config(b"majority=1"), Ok(1000));
        assert_eq!(parse_config(b"majority=1.0"), Ok(1000));
        assert_eq!(parse_config(b"majority=.5"), Ok(500));
        for bad in [
            "majority=0.4",
            "majority=1.01",
            "majority=0.6667",
            "majority=abc",
            "majority=",
            "majority=-0.6",
            "majority=10",
            "quorum=0.6",
            "majority",
        ] {
            assert_eq!(parse_config(bad.as_bytes()), Err(()), "{bad}");
        }
    }
}
