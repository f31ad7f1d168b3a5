//! Counting helpers for majority rules, in integer maths (no floats in a policy).
//!
//! Besides "who has the majority now", [`Tally`] answers "is that majority already certain, or
//! still possible, whatever the `pending` votes turn out to be" — what a policy needs to give an
//! early verdict instead of [`Verdict::Wait`](crate::Verdict::Wait).

use crate::{Input, Status, Vote};

/// The statuses a counted vote can have, in the order of [`Tally::count`]'s slots.
pub const COUNTED: [Status; 4] = [
    Status::Valid,
    Status::Invalid,
    Status::Syncing,
    Status::Accepted,
];

/// Counted votes per status (`INVALID_BLOCK_HASH` counted as `INVALID`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    counts: [u32; 4],
}

/// `round(n × permille / 1000)`, halves rounded up: the number of votes a majority needs.
pub fn threshold(n: u32, permille: u32) -> u32 {
    (permille * n + 500) / 1000
}

fn slot(status: Status) -> Option<usize> {
    match status.normalized() {
        Status::Valid => Some(0),
        Status::Invalid => Some(1),
        Status::Syncing => Some(2),
        Status::Accepted => Some(3),
        _ => None,
    }
}

impl Tally {
    /// Counts the input's counted votes (see [`Vote::is_counted`](crate::Vote::is_counted)).
    pub fn of(input: &Input<'_>) -> Tally {
        Tally::of_counted(input, Vote::is_counted)
    }

    /// Counts the input's votes for which `counts` holds (a rule's own notion of counted).
    pub fn of_counted(input: &Input<'_>, counts: impl Fn(&Vote) -> bool) -> Tally {
        let mut tally = Tally::default();
        for vote in input.votes().filter(|v| counts(v)) {
            tally.add(vote.status);
        }
        tally
    }

    /// Adds one vote with `status`; [`Status::None`] is ignored.
    pub fn add(&mut self, status: Status) {
        if let Some(count) = slot(status).and_then(|i| self.counts.get_mut(i)) {
            *count += 1;
        }
    }

    /// Votes counted for `status`.
    pub fn count(&self, status: Status) -> u32 {
        slot(status)
            .and_then(|i| self.counts.get(i))
            .map_or(0, |&c| c)
    }

    /// All counted votes.
    pub fn total(&self) -> u32 {
        self.counts.iter().sum()
    }

    /// The one status whose count reaches `threshold(total, permille)`; `None` when no status
    /// does, when there are no counted votes, or when two statuses reach it (a tie).
    pub fn majority(&self, permille: u32) -> Option<Status> {
        let needed = threshold(self.total(), permille).max(1);
        let mut reaching = COUNTED.iter().filter(|&&s| self.count(s) >= needed);
        match (reaching.next(), reaching.next()) {
            (Some(&status), None) => Some(status),
            _ => None,
        }
    }

    /// Whether `status` is the majority after *every* way `pending` more votes can arrive
    /// (each pending vote may count for any status or not count at all).
    ///
    /// The hardest case for `status` is every pending vote counting for one rival: the threshold
    /// grows by at most one per vote, so a rival's margin only grows with each vote it gets,
    /// while `status`'s margin only shrinks as the total grows.
    pub fn majority_certain(&self, status: Status, permille: u32, pending: u32) -> bool {
        let worst = threshold(self.total() + pending, permille).max(1);
        self.count(status) >= worst
            && COUNTED
                .iter()
                .filter(|&&rival| rival != status.normalized())
                .all(|&rival| self.count(rival) + pending < worst)
    }

    /// Whether `status` can still become the majority in *some* way `pending` votes can arrive.
    ///
    /// The easiest case is every pending vote counting for `status`: its margin grows and the
    /// rivals' margins shrink with each one.
    pub fn majority_possible(&self, status: Status, permille: u32, pending: u32) -> bool {
        let best = threshold(self.total() + pending, permille).max(1);
        self.count(status) + pending >= best
            && COUNTED
                .iter()
                .filter(|&&rival| rival != status.normalized())
                .all(|&rival| self.count(rival) < best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tally(counts: [u32; 4]) -> Tally {
        Tally { counts }
    }

    #[test]
    fn threshold_rounds_half_up() {
        let at_60: [u32; 8] = [0, 1, 1, 2, 2, 3, 4, 4];
        for (n, &t) in at_60.iter().enumerate() {
            assert_eq!(threshold(n as u32, 600), t, "n = {n}");
        }
        assert_eq!(threshold(4, 500), 2);
        assert_eq!(threshold(3, 1000), 3);
    }

    #[test]
    fn majority_needs_one_status_at_threshold() {
        assert_eq!(tally([0; 4]).majority(600), None);
        assert_eq!(tally([2, 1, 0, 0]).majority(600), Some(Status::Valid));
        assert_eq!(tally([1, 1, 0, 0]).majority(600), None, "1-1 tie");
        assert_eq!(tally([2, 2, 0, 0]).majority(600), None, "2-2 tie");
        assert_eq!(
            tally([2, 1, 2, 0]).majority(600),
            None,
            "no status reaches 3 of 5"
        );
        assert_eq!(tally([0, 3, 1, 1]).majority(600), Some(Status::Invalid));
    }

    #[test]
    fn of_counts_only_counted_answers() {
        use crate::abi::{encode_input, Outcome, VoteFlags};
        use crate::{Context, Vote, VoteKind};
        let unused = Vote {
            flags: VoteFlags::default().with(VoteFlags::DO_NOT_USE, true),
            ..Vote::answered(3, Status::Invalid)
        };
        let votes = [
            Vote::answered(0, Status::Valid),
            Vote::answered(1, Status::InvalidBlockHash),
            Vote::failed(2, Outcome::Timeout),
            unused,
        ];
        let context = Context {
            kind: VoteKind::NewPayload,
            method_version: 4,
            nodes_configured: 4,
            pending: 0,
            is_final: true,
            elapsed_ms: 0,
        };
        let mut buf = [0u8; 512];
        let len = encode_input(&context, &votes, "", &mut buf).expect("fits");
        let input = Input::parse(&buf[..len]).expect("valid");
        let tally = Tally::of(&input);
        assert_eq!(
            (tally.count(Status::Valid), tally.count(Status::Invalid)),
            (1, 1)
        );
        assert_eq!(
            tally.total(),
            2,
            "the timeout and the #do-not-use vote are not counted"
        );
    }

    /// Every way `pending` votes can land: counts added per status, the rest uncounted.
    fn completions(pending: u32) -> Vec<[u32; 4]> {
        let mut all = Vec::new();
        for v in 0..=pending {
            for i in 0..=pending - v {
                for s in 0..=pending - v - i {
                    for a in 0..=pending - v - i - s {
                        all.push([v, i, s, a]);
                    }
                }
            }
        }
        all
    }

    proptest! {
        #[test]
        fn certain_and_possible_match_brute_force(
            counts in prop::array::uniform4(0u32..6),
            pending in 0u32..6,
            permille in 500u32..=1000,
            which in 0usize..4,
        ) {
            let status = COUNTED[which];
            let now = tally(counts);
            let outcomes: Vec<Option<Status>> = completions(pending)
                .into_iter()
                .map(|extra| {
                    let mut after = counts;
                    for (c, e) in after.iter_mut().zip(extra) { *c += e; }
                    tally(after).majority(permille)
                })
                .collect();
            prop_assert_eq!(
                now.majority_certain(status, permille, pending),
                outcomes.iter().all(|&m| m == Some(status))
            );
            prop_assert_eq!(
                now.majority_possible(status, permille, pending),
                outcomes.contains(&Some(status))
            );
        }
    }
}
