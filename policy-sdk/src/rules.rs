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
//! With `quorum=N` (default 1) fewer than `N` counted votes is Syncing too, so a single live EL
//! cannot decide alone.
//!
//! With `behind=ignore` (default `behind=count`) a SYNCING or ACCEPTED vote from an EL that is
//! catching up (its health checks say syncing, or eb saw it behind the verdicts it gave: flag
//! [`VoteFlags::NODE_BEHIND`](crate::VoteFlags::NODE_BEHIND)) is not counted. With two ELs, one
//! back from an upgrade, a prune or a resync, the synced one then decides alone, as it would with
//! no multiplexer, instead of a VALID–SYNCING tie answering SYNCING (the validator's duties lost
//! for the whole catch-up). Safety is unchanged: only SYNCING and ACCEPTED votes are dropped, so
//! an INVALID from any EL still makes the answer SYNCING (or INVALID), never VALID; what it trades
//! is the second opinion on VALID while one EL cannot give one.
//!
//! Before all votes are in it answers early only when no pending vote can change the outcome:
//! an INVALID majority that is already certain, or an INVALID vote while an INVALID majority is
//! already impossible (then the answer can only be Syncing). Otherwise it waits.

use crate::tally::Tally;
use crate::{Input, Status, Verdict, Vote, VoteFlags};

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
/// Reason: fewer counted votes than the configured quorum.
pub const REASON_NO_QUORUM: u32 = 14;

/// A config string the rule cannot read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError;

/// Majority in permille when not configured.
pub const DEFAULT_PERMILLE: u32 = 600;

/// The majority rule's parameters: `majority=F` (as permille), `quorum=N` and
/// `behind=count|ignore`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Share of the counted votes a status needs, in permille (500 to 1000).
    pub permille: u32,
    /// Counted votes needed for any verdict but Syncing (1 to 64).
    pub quorum: u32,
    /// `behind=ignore`: SYNCING and ACCEPTED votes of catching-up ELs are not counted.
    pub ignore_behind: bool,
}

impl Default for Rule {
    fn default() -> Rule {
        Rule {
            permille: DEFAULT_PERMILLE,
            quorum: 1,
            ignore_behind: false,
        }
    }
}

/// Splits a config string `key=value,key=value` into pairs with ASCII whitespace trimmed;
/// `Err` for an item without `=`. Works on bytes so policies stay free of UTF-8 machinery.
pub fn config_pairs(config: &[u8]) -> impl Iterator<Item = Result<(&[u8], &[u8]), ConfigError>> {
    config
        .split(|&b| b == b',')
        .map(trim)
        .filter(|item| !item.is_empty())
        .map(|item| match item.iter().position(|&b| b == b'=') {
            Some(at) => Ok((trim(&item[..at]), trim(&item[at + 1..]))),
            None => Err(ConfigError),
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

impl Rule {
    /// Applies one config pair if it is this rule's (`majority`, `quorum`, `behind`):
    /// `Ok(true)` when applied, `Ok(false)` for another key, `Err` for a bad value.
    pub fn set(&mut self, key: &[u8], value: &[u8]) -> Result<bool, ConfigError> {
        match key {
            b"majority" => self.permille = parse_permille(value)?,
            b"behind" => {
                self.ignore_behind = match value {
                    b"ignore" => true,
                    b"count" => false,
                    _ => return Err(ConfigError),
                }
            }
            b"quorum" => {
                self.quorum = parse_small(value)?;
                if !(1..=64).contains(&self.quorum) {
                    return Err(ConfigError);
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Reads a config that holds only this rule's keys; empty → the default rule.
    pub fn parse(config: &[u8]) -> Result<Rule, ConfigError> {
        let mut rule = Rule::default();
        for pair in config_pairs(config) {
            let (key, value) = pair?;
            if !rule.set(key, value)? {
                return Err(ConfigError);
            }
        }
        Ok(rule)
    }
}

/// Parses a decimal integer of at most two digits.
fn parse_small(text: &[u8]) -> Result<u32, ConfigError> {
    if text.is_empty() || text.len() > 2 || !text.iter().all(u8::is_ascii_digit) {
        return Err(ConfigError);
    }
    Ok(text.iter().fold(0, |n, &d| n * 10 + u32::from(d - b'0')))
}

/// Parses a decimal in [0.5, 1] with at most three decimals (`0.6`, `.75`, `1`) into permille.
pub fn parse_permille(text: &[u8]) -> Result<u32, ConfigError> {
    let (whole, fraction) = match text.iter().position(|&b| b == b'.') {
        Some(at) => (&text[..at], &text[at + 1..]),
        None => (text, &[][..]),
    };
    if whole.len() > 1 || fraction.len() > 3 || whole.is_empty() && fraction.is_empty() {
        return Err(ConfigError);
    }
    if !whole.iter().chain(fraction).all(u8::is_ascii_digit) {
        return Err(ConfigError);
    }
    let mut permille = whole.first().map_or(0, |&d| u32::from(d - b'0') * 1000);
    let mut scale = 100;
    for &d in fraction {
        permille += u32::from(d - b'0') * scale;
        scale /= 10;
    }
    if (500..=1000).contains(&permille) {
        Ok(permille)
    } else {
        Err(ConfigError)
    }
}

/// Whether the rule counts `vote`: an answer from a node not `#do-not-use` and, under
/// `behind=ignore`, not a SYNCING or ACCEPTED vote from a node catching up.
pub fn counts(vote: &Vote, rule: Rule) -> bool {
    let catching_up =
        vote.flags.has(VoteFlags::NODE_SYNCING) || vote.flags.has(VoteFlags::NODE_BEHIND);
    let waiting = matches!(vote.status, Status::Syncing | Status::Accepted);
    vote.is_counted() && !(rule.ignore_behind && catching_up && waiting)
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

/// The majority rule (see the module docs).
pub fn majority(input: &Input<'_>, rule: Rule) -> Verdict {
    let Rule {
        permille, quorum, ..
    } = rule;
    let tally = Tally::of_counted(input, |vote| counts(vote, rule));
    let invalid = tally.count(Status::Invalid);
    if !input.is_final() {
        let pending = u32::from(input.pending());
        if tally.total() >= quorum && tally.majority_certain(Status::Invalid, permille, pending) {
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
        _ if tally.total() < quorum => Verdict::Syncing {
            reason: REASON_NO_QUORUM,
        },
        None => Verdict::Syncing {
            reason: REASON_NO_MAJORITY,
        },
        Some(Status::Invalid) => follow_invalid(input),
        Some(_) if invalid > 0 => Verdict::Syncing {
            reason: REASON_INVALID_DISSENT,
        },
        Some(status) => match input.pick(
            |v| counts(v, rule) && v.status.normalized() == status,
            |a, b| a.latency_us < b.latency_us,
        ) {
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

    fn permille(config: &[u8]) -> Result<u32, ConfigError> {
        Rule::parse(config).map(|r| r.permille)
    }

    #[test]
    fn reads_the_behind_option() {
        assert!(
            !Rule::default().ignore_behind,
            "the seed's rule counts every answer"
        );
        assert!(Rule::parse(b"behind=ignore").is_ok_and(|r| r.ignore_behind));
        assert!(Rule::parse(b"majority=0.6,behind=count").is_ok_and(|r| !r.ignore_behind));
    }

    #[test]
    fn reads_majority_config() {
        assert_eq!(permille(b""), Ok(600));
        assert_eq!(permille(b" majority = 0.67 ,"), Ok(670));
        assert_eq!(permille(b"majority=1"), Ok(1000));
        assert_eq!(permille(b"majority=1.0"), Ok(1000));
        assert_eq!(permille(b"majority=.5"), Ok(500));
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
            "quorum=0",
            "quorum=65",
            "quorum=x",
            "behind=yes",
            "behind=",
        ] {
            assert_eq!(Rule::parse(bad.as_bytes()), Err(ConfigError), "{bad}");
        }
        assert_eq!(
            Rule::parse(b"quorum=2,majority=0.75"),
            Ok(Rule {
                permille: 750,
                quorum: 2,
                ignore_behind: false,
            })
        );
    }
}
