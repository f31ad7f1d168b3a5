//! A ballot as the host holds it: context, votes and config, encoded into a policy's input.

use crate::abi::{encode_input, Context, LayoutError, Verdict, Vote, HEADER_SIZE, RECORD_SIZE};
use crate::Input;

/// Everything a policy is asked about one decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ballot {
    /// Vote kind, node count, pending votes, FINAL flag, elapsed time.
    pub context: Context,
    /// The votes received so far, in arrival order.
    pub votes: Vec<Vote>,
    /// The operator's config string.
    pub config: String,
}

impl Ballot {
    /// Bytes the encoded input takes.
    pub fn encoded_len(&self) -> usize {
        HEADER_SIZE + self.votes.len() * RECORD_SIZE + self.config.len()
    }

    /// Encodes the input into `out`, returning the length written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, LayoutError> {
        encode_input(&self.context, &self.votes, &self.config, out)
    }

    /// Encodes the input into a new vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>, LayoutError> {
        let mut out = vec![0; self.encoded_len()];
        self.encode(&mut out)?;
        Ok(out)
    }

    /// This ballot as an ABI 1.0 policy sees it: without the pending records of 1.1.
    pub fn without_pending(&self) -> Ballot {
        Ballot {
            votes: self
                .votes
                .iter()
                .filter(|v| !v.is_pending())
                .copied()
                .collect(),
            ..self.clone()
        }
    }

    /// Runs a native policy function on this ballot, through the same encoding a module sees.
    pub fn decide_native(&self, decide: fn(&Input<'_>) -> Verdict) -> Result<Verdict, LayoutError> {
        let bytes = self.to_bytes()?;
        Ok(decide(&Input::parse(&bytes)?))
    }

    /// The vote a `Follow` verdict points at, if it exists and carries an answer.
    pub fn followed(&self, verdict: Verdict) -> Option<&Vote> {
        match verdict {
            Verdict::Follow { vote, .. } => self
                .votes
                .get(usize::from(vote))
                .filter(|vote| vote.is_answer()),
            _ => None,
        }
    }
}
