//! Catch-up replay: the state-changing calls an EL missed while eb could not connect to it
//! (down, restarting) or it refused eb's token, kept and sent to it, in CL order, before the next new call once it
//! answers again. The newPayloads are all kept (oldest dropped past the queue's limits, and
//! counted); of the forkchoiceUpdated calls only the latest, which supersedes the others. Without
//! it an EL that was down learns the head only from the next newPayload and must sync the gap
//! from its peers, which an EL without peers cannot.

use bytes::Bytes;
use policy_sdk::VoteKind;
use std::collections::VecDeque;

/// The calls one EL missed, oldest first.
#[derive(Debug)]
pub struct Missed {
    payloads: VecDeque<Bytes>,
    bytes: usize,
    /// The latest forkchoiceUpdated, and how many of the kept payloads the CL sent before it.
    forkchoice: Option<(usize, Bytes)>,
    max_calls: usize,
    max_bytes: usize,
}

impl Missed {
    /// Nothing missed yet; at most `max_calls` newPayloads of `max_bytes` kept (the EL's queue
    /// limits).
    pub fn new(max_calls: usize, max_bytes: usize) -> Missed {
        Missed {
            payloads: VecDeque::new(),
            bytes: 0,
            forkchoice: None,
            max_calls,
            max_bytes,
        }
    }

    /// Whether there is anything to replay.
    pub fn is_empty(&self) -> bool {
        self.payloads.is_empty() && self.forkchoice.is_none()
    }

    /// Keeps a missed call of `kind`; returns how many kept newPayloads were dropped to make
    /// room (the oldest).
    pub fn keep(&mut self, kind: VoteKind, body: Bytes) -> usize {
        if kind != VoteKind::NewPayload {
            // It supersedes the one kept before, and goes after every payload kept so far.
            self.forkchoice = Some((self.payloads.len(), body));
            return 0;
        }
        let mut dropped = 0;
        while !self.payloads.is_empty()
            && (self.payloads.len() >= self.max_calls || self.bytes + body.len() > self.max_bytes)
        {
            if let Some(old) = self.payloads.pop_front() {
                self.bytes -= old.len();
                self.forkchoice_moves_up();
                dropped += 1;
            }
        }
        self.bytes += body.len();
        self.payloads.push_back(body);
        dropped
    }

    /// One payload before the kept forkchoiceUpdated is gone.
    fn forkchoice_moves_up(&mut self) {
        if let Some((before, _)) = &mut self.forkchoice {
            *before = before.saturating_sub(1);
        }
    }

    /// The next call to replay, in CL order: the kept newPayloads, with the latest
    /// forkchoiceUpdated where the CL sent it among them.
    pub fn next(&self) -> Option<&Bytes> {
        match &self.forkchoice {
            Some((0, body)) => Some(body),
            _ => self
                .payloads
                .front()
                .or(self.forkchoice.as_ref().map(|(_, body)| body)),
        }
    }

    /// The call [`next`](Self::next) gave was delivered: forget it.
    pub fn delivered(&mut self) {
        if matches!(self.forkchoice, Some((0, _))) {
            self.forkchoice = None;
            return;
        }
        if let Some(body) = self.payloads.pop_front() {
            self.bytes -= body.len();
            self.forkchoice_moves_up();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(missed: &mut Missed) -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Some(body) = missed.next().cloned() {
            missed.delivered();
            out.push(body);
        }
        out
    }

    #[test]
    fn payloads_in_order_then_only_the_latest_forkchoice() {
        let mut missed = Missed::new(256, 1 << 20);
        assert!(missed.is_empty());
        for (kind, body) in [
            (VoteKind::NewPayload, "p1"),
            (VoteKind::ForkchoiceUpdated, "f1"),
            (VoteKind::NewPayload, "p2"),
            (VoteKind::ForkchoiceUpdatedWithAttributes, "f2"),
        ] {
            assert_eq!(missed.keep(kind, Bytes::from_static(body.as_bytes())), 0);
        }
        assert_eq!(drain(&mut missed), ["p1", "p2", "f2"]);
        assert!(missed.is_empty());
    }

    #[test]
    fn bytes_are_counted_exactly_as_calls_come_and_go() {
        let mut missed = Missed::new(10, 6);
        let keep = |m: &mut Missed, body: &'static str| {
            m.keep(VoteKind::NewPayload, Bytes::from_static(body.as_bytes()))
        };
        assert_eq!(
            keep(&mut missed, "aaa") + keep(&mut missed, "bbb"),
            0,
            "6 bytes fit"
        );
        assert_eq!(drain(&mut missed), ["aaa", "bbb"]);
        assert_eq!(
            keep(&mut missed, "ccc") + keep(&mut missed, "ddd"),
            0,
            "delivered calls freed theirs"
        );
        assert_eq!(
            keep(&mut missed, "ee"),
            1,
            "8 bytes do not: the oldest goes"
        );
        assert_eq!(keep(&mut missed, "ff"), 1, "3 + 2 + 2 bytes do not either");
        assert_eq!(drain(&mut missed), ["ee", "ff"]);
        assert_eq!(keep(&mut missed, "aaa") + keep(&mut missed, "bbb"), 0);
        missed.delivered();
        assert_eq!(keep(&mut missed, "cccc"), 1, "3 bytes left + 4 do not fit");
    }

    #[test]
    fn a_forkchoice_is_replayed_where_the_cl_sent_it() {
        // Found by the simulation: a reorg's forkchoiceUpdated, missed before a newPayload,
        // was replayed after it.
        let mut missed = Missed::new(2, 1 << 20);
        for (kind, body) in [
            (VoteKind::NewPayload, "p1"),
            (VoteKind::ForkchoiceUpdated, "f1"),
            (VoteKind::NewPayload, "p2"),
        ] {
            missed.keep(kind, Bytes::from_static(body.as_bytes()));
        }
        assert_eq!(drain(&mut missed), ["p1", "f1", "p2"]);
        for (kind, body) in [
            (VoteKind::ForkchoiceUpdated, "f1"),
            (VoteKind::NewPayload, "p1"),
            (VoteKind::NewPayload, "p2"),
            (VoteKind::NewPayload, "p3"),
        ] {
            missed.keep(kind, Bytes::from_static(body.as_bytes()));
        }
        assert_eq!(
            drain(&mut missed),
            ["f1", "p2", "p3"],
            "p1 dropped past the limit; f1 still before the rest"
        );
    }

    #[test]
    fn the_oldest_payloads_go_past_the_limits() {
        let mut missed = Missed::new(2, 5);
        let keep = |m: &mut Missed, body: &'static str| {
            m.keep(VoteKind::NewPayload, Bytes::from_static(body.as_bytes()))
        };
        assert_eq!(keep(&mut missed, "aa"), 0);
        assert_eq!(keep(&mut missed, "bb"), 0);
        assert_eq!(keep(&mut missed, "c"), 1, "a third call exceeds the count");
        assert_eq!(keep(&mut missed, "dddd"), 1, "and 4 more bytes the size");
        assert_eq!(drain(&mut missed), ["c", "dddd"]);
    }
}
