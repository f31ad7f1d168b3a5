//! A zero-copy, bounds-checked view of one ballot as a policy receives it.

use crate::abi::{
    u16_at, u32_at, Context, LayoutError, Vote, VoteKind, ABI_MAJOR, FLAG_FINAL, HEADER_SIZE,
    RECORD_SIZE,
};

/// One ballot: the header's context, the vote records and the operator's config string.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    context: Context,
    records: &'a [u8],
    record_size: usize,
    config: &'a [u8],
}

/// The first [`RECORD_SIZE`] bytes of a record (records may be longer in newer minors).
fn record(chunk: &[u8]) -> Option<&[u8; RECORD_SIZE]> {
    chunk.get(..RECORD_SIZE)?.try_into().ok()
}

impl<'a> Input<'a> {
    /// Checks the layout of `bytes` (header, record bounds, config bounds and UTF-8).
    pub fn parse(bytes: &'a [u8]) -> Result<Input<'a>, LayoutError> {
        let header: &[u8; HEADER_SIZE] = bytes
            .get(..HEADER_SIZE)
            .and_then(|h| h.try_into().ok())
            .ok_or(LayoutError::Truncated)?;
        if header[0] != ABI_MAJOR {
            return Err(LayoutError::Version);
        }
        let kind = VoteKind::from_u8(header[2]).ok_or(LayoutError::Kind)?;
        let n_votes = usize::from(u16_at(header, 6));
        let record_size = usize::from(header[11]);
        if record_size < RECORD_SIZE {
            return Err(LayoutError::RecordSize);
        }
        let records = bytes
            .get(HEADER_SIZE..HEADER_SIZE + n_votes * record_size)
            .ok_or(LayoutError::Truncated)?;
        let config_offset = u32_at(header, 16) as usize;
        let config_len = usize::from(u16_at(header, 20));
        let config = bytes
            .get(config_offset..config_offset.saturating_add(config_len))
            .ok_or(LayoutError::Config)?;
        Ok(Input {
            context: Context {
                kind,
                method_version: header[3],
                nodes_configured: u16_at(header, 4),
                pending: u16_at(header, 8),
                is_final: header[10] & FLAG_FINAL != 0,
                elapsed_ms: u32_at(header, 12),
            },
            records,
            record_size,
            config,
        })
    }

    /// What the ballot is about and how far collection has come.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// Whether no more votes will come; true also when nothing is pending.
    pub fn is_final(&self) -> bool {
        self.context.is_final || self.context.pending == 0
    }

    /// Number of votes that have not arrived yet.
    pub fn pending(&self) -> u16 {
        if self.context.is_final {
            0
        } else {
            self.context.pending
        }
    }

    /// The operator's config string (`--policy-config`) as bytes, possibly empty. The host only
    /// sends UTF-8; policies parse it as bytes to stay small.
    pub fn config(&self) -> &'a [u8] {
        self.config
    }

    /// Number of vote records.
    pub fn len(&self) -> usize {
        self.records.len() / self.record_size
    }

    /// Whether there are no vote records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Vote number `index`.
    pub fn vote(&self, index: usize) -> Option<Vote> {
        let start = index.checked_mul(self.record_size)?;
        self.records
            .get(start..start + self.record_size)
            .and_then(record)
            .map(Vote::decode)
    }

    /// The pending records (ABI 1.1): the ELs still out, with their health.
    pub fn pending_records(&self) -> impl Iterator<Item = Vote> + 'a {
        self.votes().filter(Vote::is_pending)
    }

    /// Votes not waited for (outcome cut) or that timed out, from nodes that are not
    /// do-not-use: what a strict policy may refuse to decide without.
    pub fn missing(&self) -> usize {
        self.votes()
            .filter(|v| !v.flags.has(crate::VoteFlags::DO_NOT_USE))
            .filter(|v| matches!(v.outcome, crate::Outcome::Cut | crate::Outcome::Timeout))
            .count()
    }

    /// All votes in record order.
    pub fn votes(&self) -> impl Iterator<Item = Vote> + 'a {
        self.records
            .chunks_exact(self.record_size)
            .filter_map(record)
            .map(Vote::decode)
    }

    /// Index of the vote that `better` ranks first among those `keep` accepts: `better(a, b)`
    /// says whether `a` should be preferred to `b`. Ties go to the lower node index, so the
    /// choice does not depend on record order.
    pub fn pick(
        &self,
        keep: impl Fn(&Vote) -> bool,
        better: impl Fn(&Vote, &Vote) -> bool,
    ) -> Option<u16> {
        let mut best: Option<(usize, Vote)> = None;
        for (index, vote) in self.votes().enumerate().filter(|(_, v)| keep(v)) {
            let replace = match &best {
                None => true,
                Some((_, current)) => {
                    better(&vote, current) || (!better(current, &vote) && vote.node < current.node)
                }
            };
            if replace {
                best = Some((index, vote));
            }
        }
        best.map(|(index, _)| index as u16)
    }

    /// Index of the fastest counted vote with `status` (after normalisation).
    pub fn fastest(&self, status: crate::Status) -> Option<u16> {
        self.pick(
            |v| v.is_counted() && v.status.normalized() == status,
            |a, b| a.latency_us < b.latency_us,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{encode_input, Status};

    fn context(pending: u16, is_final: bool) -> Context {
        Context {
            kind: VoteKind::ForkchoiceUpdated,
            method_version: 3,
            nodes_configured: 3,
            pending,
            is_final,
            elapsed_ms: 17,
        }
    }

    #[test]
    fn parses_what_encode_wrote() {
        let votes = [
            Vote::answered(2, Status::Valid),
            Vote::answered(0, Status::Syncing),
        ];
        let mut buf = [0u8; 256];
        let len = encode_input(&context(1, false), &votes, "majority=0.7", &mut buf).expect("fits");
        let input = Input::parse(&buf[..len]).expect("valid layout");
        assert_eq!(*input.context(), context(1, false));
        assert_eq!(input.config(), b"majority=0.7");
        assert_eq!(input.len(), 2);
        assert_eq!(input.vote(1), Some(votes[1]));
        assert_eq!(input.vote(2), None);
        assert!(!input.is_final());
        assert_eq!(input.pending(), 1);
    }

    #[test]
    fn honours_larger_records_from_newer_minors() {
        let mut buf = [0u8; 32 + 2 * 48];
        let len = encode_input(&context(0, true), &[], "", &mut buf).expect("fits");
        assert_eq!(len, 32);
        buf[6] = 2; // two records
        buf[11] = 48; // of 48 bytes
        Vote::answered(5, Status::Valid).encode(&mut buf[32..]);
        Vote::answered(6, Status::Invalid).encode(&mut buf[80..]);
        let input = Input::parse(&buf).expect("valid layout");
        let nodes: Vec<u16> = input.votes().map(|v| v.node).collect();
        assert_eq!(nodes, [5, 6]);
        assert_eq!(input.vote(1).map(|v| v.status), Some(Status::Invalid));
    }

    #[test]
    fn refuses_broken_layouts() {
        let mut buf = [0u8; 64];
        let len = encode_input(&context(0, true), &[], "ab", &mut buf).expect("fits");
        assert_eq!(Input::parse(&buf[..10]).err(), Some(LayoutError::Truncated));
        assert_eq!(
            Input::parse(&buf[..len - 1]).err(),
            Some(LayoutError::Config)
        );
        let mut wrong = buf;
        wrong[0] = 2;
        assert_eq!(Input::parse(&wrong).err(), Some(LayoutError::Version));
        let mut wrong = buf;
        wrong[2] = 9;
        assert_eq!(Input::parse(&wrong).err(), Some(LayoutError::Kind));
        let mut wrong = buf;
        wrong[11] = 16;
        assert_eq!(Input::parse(&wrong).err(), Some(LayoutError::RecordSize));
        let mut wrong = buf;
        wrong[6] = 9;
        assert_eq!(Input::parse(&wrong).err(), Some(LayoutError::Truncated));
    }

    #[test]
    fn pick_is_independent_of_record_order() {
        let mut a = Vote::answered(4, Status::Valid);
        a.latency_us = 10;
        let mut b = Vote::answered(1, Status::Valid);
        b.latency_us = 10;
        let mut buf = [0u8; 128];
        for order in [[a, b], [b, a]] {
            let len = encode_input(&context(0, true), &order, "", &mut buf).expect("fits");
            let input = Input::parse(&buf[..len]).expect("valid");
            let index = input.fastest(Status::Valid).expect("a VALID vote");
            assert_eq!(input.vote(usize::from(index)).map(|v| v.node), Some(1));
        }
    }
}
