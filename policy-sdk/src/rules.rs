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
    use crate::abi::{encode_input, Outcome};
    use crate::{Context, VoteKind};
    use proptest::prelude::*;

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

    /// `rule`'s verdict on `votes`, with `pending` votes still out.
    fn decide(votes: &[Vote], pending: u16, rule: Rule) -> Verdict {
        let context = Context {
            kind: VoteKind::NewPayload,
            method_version: 4,
            nodes_configured: votes.len() as u16 + pending,
            pending,
            is_final: pending == 0,
            elapsed_ms: 0,
        };
        let mut buf = [0u8; 4096];
        let len = encode_input(&context, votes, "", &mut buf).expect("fits");
        majority(&Input::parse(&buf[..len]).expect("valid"), rule)
    }

    /// A vote from `node` with `status`, answered after `latency_us`, in lvh group `group`.
    fn vote(node: u16, status: Status, latency_us: u32, group: u8) -> Vote {
        Vote {
            latency_us,
            lvh_group: group,
            ..Vote::answered(node, status)
        }
    }

    const RULE: Rule = Rule {
        permille: DEFAULT_PERMILLE,
        quorum: 1,
        ignore_behind: false,
    };

    fn syncing(reason: u32) -> Verdict {
        Verdict::Syncing { reason }
    }

    #[test]
    fn each_row_of_the_rule_table() {
        use Status::{Accepted, Invalid, InvalidBlockHash, Syncing, Valid};
        assert_eq!(decide(&[], 0, RULE), syncing(REASON_NO_VOTES));
        let timeout = Vote::failed(0, Outcome::Timeout);
        assert_eq!(decide(&[timeout], 0, RULE), syncing(REASON_NO_VOTES));
        let tie = [vote(0, Valid, 5, 0), vote(1, Syncing, 3, 0)];
        assert_eq!(
            decide(&tie, 0, RULE),
            syncing(REASON_NO_MAJORITY),
            "1-1 tie"
        );
        let none = [
            vote(0, Valid, 1, 0),
            vote(1, Syncing, 1, 0),
            vote(2, Accepted, 1, 0),
        ];
        assert_eq!(decide(&none, 0, RULE), syncing(REASON_NO_MAJORITY));
        // VALID majority: the fastest VALID (vote index 2), ties to the lower node.
        let valid = [
            vote(3, Valid, 9, 0),
            vote(0, Syncing, 1, 0),
            vote(1, Valid, 4, 0),
            vote(2, Valid, 4, 0),
        ];
        assert_eq!(
            decide(&valid, 0, RULE),
            Verdict::Follow {
                vote: 2,
                reason: REASON_MAJORITY
            }
        );
        // Any INVALID beside it: SYNCING.
        let dissent = [
            vote(0, Valid, 1, 0),
            vote(1, Valid, 1, 0),
            vote(2, InvalidBlockHash, 1, 0),
        ];
        assert_eq!(decide(&dissent, 0, RULE), syncing(REASON_INVALID_DISSENT));
        // INVALID majority: the largest lvh group (2), then the fastest in it (vote 3).
        let invalid = [
            vote(0, Invalid, 1, 1),
            vote(1, Invalid, 7, 2),
            vote(2, Valid, 1, 0),
            vote(3, Invalid, 5, 2),
        ];
        assert_eq!(
            decide(&invalid, 0, RULE),
            Verdict::Follow {
                vote: 3,
                reason: REASON_INVALID_MAJORITY
            }
        );
        // Quorum: one counted vote is not enough for quorum=2.
        let quorum = Rule { quorum: 2, ..RULE };
        assert_eq!(
            decide(&[vote(0, Valid, 1, 0), timeout], 0, quorum),
            syncing(REASON_NO_QUORUM)
        );
        assert!(matches!(
            decide(&[vote(0, Valid, 1, 0), vote(1, Valid, 1, 0)], 0, quorum),
            Verdict::Follow { .. }
        ));
        // #do-not-use is never counted.
        let mut unused = vote(1, Invalid, 1, 0);
        unused.flags = VoteFlags::default().with(VoteFlags::DO_NOT_USE, true);
        assert_eq!(
            decide(&[vote(0, Valid, 1, 0), unused], 0, RULE),
            Verdict::Follow {
                vote: 0,
                reason: REASON_MAJORITY
            }
        );
    }

    #[test]
    fn behind_ignore_drops_only_waiting_votes_of_catching_up_els() {
        let behind = |node, status| Vote {
            flags: VoteFlags::default().with(VoteFlags::NODE_BEHIND, true),
            ..vote(node, status, 1, 0)
        };
        let syncing_el = |node, status| Vote {
            flags: VoteFlags::default().with(VoteFlags::NODE_SYNCING, true),
            ..vote(node, status, 1, 0)
        };
        let ignore = Rule {
            ignore_behind: true,
            ..RULE
        };
        for catching_up in [behind(1, Status::Syncing), syncing_el(1, Status::Accepted)] {
            let votes = [vote(0, Status::Valid, 1, 0), catching_up];
            assert_eq!(
                decide(&votes, 0, RULE),
                syncing(REASON_NO_MAJORITY),
                "counted: a tie"
            );
            assert_eq!(
                decide(&votes, 0, ignore),
                Verdict::Follow {
                    vote: 0,
                    reason: REASON_MAJORITY
                },
                "ignored: the synced EL decides"
            );
        }
        let invalid = [vote(0, Status::Valid, 1, 0), behind(1, Status::Invalid)];
        assert_eq!(
            decide(&invalid, 0, ignore),
            syncing(REASON_NO_MAJORITY),
            "an INVALID still counts"
        );
        let fresh = [vote(0, Status::Valid, 1, 0), vote(1, Status::Syncing, 1, 0)];
        assert_eq!(
            decide(&fresh, 0, ignore),
            syncing(REASON_NO_MAJORITY),
            "a synced EL's SYNCING counts"
        );
    }

    #[test]
    fn before_the_last_vote_only_a_settled_outcome_answers() {
        use Status::{Invalid, Valid};
        // Two INVALIDs of three with one out: certain at 0.6 (2 of 3 either way).
        let certain = [vote(0, Invalid, 1, 1), vote(1, Invalid, 2, 1)];
        assert_eq!(
            decide(&certain, 1, RULE),
            Verdict::Follow {
                vote: 0,
                reason: REASON_INVALID_MAJORITY
            }
        );
        assert_eq!(
            decide(&certain, 1, Rule { quorum: 3, ..RULE }),
            Verdict::Wait,
            "short of the quorum"
        );
        // One INVALID beside two VALIDs, one out: an INVALID majority is impossible.
        let dissent = [
            vote(0, Valid, 1, 0),
            vote(1, Valid, 1, 0),
            vote(2, Invalid, 1, 0),
        ];
        assert_eq!(decide(&dissent, 1, RULE), syncing(REASON_INVALID_DISSENT));
        // One INVALID, three out: it could still be the majority.
        assert_eq!(decide(&[vote(0, Invalid, 1, 0)], 3, RULE), Verdict::Wait);
        // VALIDs alone never answer early: an INVALID may come.
        assert_eq!(
            decide(&[vote(0, Valid, 1, 0), vote(1, Valid, 1, 0)], 1, RULE),
            Verdict::Wait
        );
    }

    #[test]
    fn config_pairs_split_and_trim() {
        let pairs: Vec<_> = config_pairs(b" a = 1 ,, b=2 ,").collect();
        assert_eq!(
            pairs,
            [Ok((&b"a"[..], &b"1"[..])), Ok((&b"b"[..], &b"2"[..]))]
        );
        assert_eq!(config_pairs(b"x").next(), Some(Err(ConfigError)));
        assert_eq!(trim(b"\t x y \n"), b"x y");
        assert_eq!(trim(b"   "), b"");
        let mut rule = Rule::default();
        assert_eq!(rule.set(b"other", b"1"), Ok(false), "another rule's key");
        assert_eq!(rule.set(b"quorum", b"64"), Ok(true));
        assert_eq!(rule.quorum, 64);
        assert_eq!(parse_small(b"07"), Ok(7));
        assert_eq!(parse_small(b"123"), Err(ConfigError));
        assert_eq!(parse_permille(b"0.999"), Ok(999));
        assert_eq!(parse_permille(b"0.5"), Ok(500));
        assert_eq!(parse_permille(b"0.499"), Err(ConfigError));
    }

    /// The rule on a final ballot, written out plainly from the module's table.
    fn reference(votes: &[Vote], rule: Rule) -> Verdict {
        let counted = |v: &Vote| {
            let answer = v.outcome == Outcome::Answered
                && v.status != Status::None
                && !v.flags.has(VoteFlags::DO_NOT_USE);
            let catching_up =
                v.flags.has(VoteFlags::NODE_SYNCING) || v.flags.has(VoteFlags::NODE_BEHIND);
            let waiting = v.status == Status::Syncing || v.status == Status::Accepted;
            answer && !(rule.ignore_behind && catching_up && waiting)
        };
        let norm = |s: Status| {
            if s == Status::InvalidBlockHash {
                Status::Invalid
            } else {
                s
            }
        };
        let statuses = [
            Status::Valid,
            Status::Invalid,
            Status::Syncing,
            Status::Accepted,
        ];
        let count = |s: Status| {
            votes
                .iter()
                .filter(|v| counted(v) && norm(v.status) == s)
                .count() as u32
        };
        let total: u32 = statuses.iter().map(|&s| count(s)).sum();
        if total == 0 {
            return syncing(REASON_NO_VOTES);
        }
        if total < rule.quorum {
            return syncing(REASON_NO_QUORUM);
        }
        let needed = ((f64::from(total) * f64::from(rule.permille) / 1000.0) + 0.5)
            .floor()
            .max(1.0) as u32;
        let reaching: Vec<Status> = statuses
            .into_iter()
            .filter(|&s| count(s) >= needed)
            .collect();
        let [status] = reaching[..] else {
            return syncing(REASON_NO_MAJORITY);
        };
        if status != Status::Invalid && count(Status::Invalid) > 0 {
            return syncing(REASON_INVALID_DISSENT);
        }
        let group = |v: &Vote| {
            votes
                .iter()
                .filter(|w| {
                    counted(w) && norm(w.status) == Status::Invalid && w.lvh_group == v.lvh_group
                })
                .count()
        };
        let better = |a: &Vote, b: &Vote| {
            if status == Status::Invalid {
                (group(a), core::cmp::Reverse(a.latency_us))
                    > (group(b), core::cmp::Reverse(b.latency_us))
            } else {
                a.latency_us < b.latency_us
            }
        };
        let mut best: Option<usize> = None;
        for (i, v) in votes.iter().enumerate() {
            if !counted(v) || norm(v.status) != status {
                continue;
            }
            let replace = best.is_none_or(|b| {
                let b = &votes[b];
                better(v, b) || (!better(b, v) && v.node < b.node)
            });
            if replace {
                best = Some(i);
            }
        }
        let reason = if status == Status::Invalid {
            REASON_INVALID_MAJORITY
        } else {
            REASON_MAJORITY
        };
        Verdict::Follow {
            vote: best.expect("a vote of the majority") as u16,
            reason,
        }
    }

    fn any_vote(node: u16) -> impl Strategy<Value = Vote> {
        (0usize..8, 0u8..8, 0u32..4, 0u8..3).prop_map(move |(kind, flags, latency_us, group)| {
            let statuses = [
                Status::Valid,
                Status::Invalid,
                Status::InvalidBlockHash,
                Status::Syncing,
                Status::Accepted,
            ];
            let mut vote = match statuses.get(kind) {
                Some(&status) => vote(node, status, latency_us, group),
                None => Vote::failed(
                    node,
                    [Outcome::Timeout, Outcome::RpcError, Outcome::Cut][kind - 5],
                ),
            };
            vote.flags = VoteFlags::default()
                .with(VoteFlags::DO_NOT_USE, flags & 1 != 0 && kind % 2 == 0)
                .with(VoteFlags::NODE_SYNCING, flags & 2 != 0)
                .with(VoteFlags::NODE_BEHIND, flags & 4 != 0);
            vote
        })
    }

    fn any_rule() -> impl Strategy<Value = Rule> {
        (
            prop_oneof![Just(600u32), 500u32..=1000],
            prop_oneof![3 => Just(1u32), 1 => 1u32..4],
            any::<bool>(),
        )
            .prop_map(|(permille, quorum, ignore_behind)| Rule {
                permille,
                quorum,
                ignore_behind,
            })
    }

    proptest! {
        #[test]
        fn final_verdicts_match_the_table(
            votes in (0u16..7).prop_flat_map(|n| (0..n).map(any_vote).collect::<Vec<_>>()),
            rule in any_rule(),
        ) {
            prop_assert_eq!(decide(&votes, 0, rule), reference(&votes, rule));
        }

        /// An early verdict is the one every way the pending votes can land would give.
        #[test]
        fn an_early_verdict_is_final_already(
            votes in (0u16..5).prop_flat_map(|n| (0..n).map(any_vote).collect::<Vec<_>>()),
            pending in 1u16..3,
            rule in any_rule(),
        ) {
            let early = decide(&votes, pending, rule);
            let n = votes.len() as u16;
            let landings = [Status::Valid, Status::Invalid, Status::Syncing, Status::None];
            let mut outcomes = Vec::new();
            for mut code in 0..(landings.len() as u32).pow(u32::from(pending)) {
                let mut all = votes.clone();
                for i in 0..pending {
                    let status = landings[(code % 4) as usize];
                    code /= 4;
                    all.push(if status == Status::None { Vote::failed(n + i, Outcome::Timeout) } else { vote(n + i, status, 9, 0) });
                }
                outcomes.push(decide(&all, 0, rule));
            }
            let action = |v: &Verdict| match v {
                Verdict::Follow { .. } => 1,
                Verdict::Syncing { .. } => 2,
                _ => 0,
            };
            match early {
                Verdict::Wait => {}
                Verdict::Follow { vote, .. } => {
                    prop_assert_eq!(votes[usize::from(vote)].status.normalized(), Status::Invalid);
                    prop_assert!(outcomes.iter().all(|o| action(o) == 1), "{:?}", outcomes);
                }
                other => prop_assert!(outcomes.iter().all(|o| action(o) == action(&other)), "{:?} vs {:?}", other, outcomes),
            }
        }
    }
}
