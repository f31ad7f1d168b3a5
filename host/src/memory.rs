//! Verdict memory: once eb answered VALID or INVALID for a block, it never answers the opposite
//! for it. The CL has no path from VALID to INVALID or back (consensus-specs, optimistic sync); a
//! SYNCING or ACCEPTED answer may still become VALID or INVALID as ELs catch up. (A block
//! answered VALID is answered SYNCING while an INVALID is counted: the verdict stage's rule.)

use bytes::Bytes;
use policy_sdk::{Status, VoteKind};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Blocks remembered (about a day of mainnet slots, a few hundred KiB).
pub const CAPACITY: usize = 8192;

/// Which call a verdict was about: a payload, or a forkchoice head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `engine_newPayload*` (key: blockHash).
    Payload,
    /// `engine_forkchoiceUpdated*` (key: headBlockHash).
    Head,
}

impl Kind {
    /// The kind for a vote method.
    pub fn of(method: VoteKind) -> Kind {
        match method {
            VoteKind::NewPayload => Kind::Payload,
            _ => Kind::Head,
        }
    }

    /// Its name in the cluster store's keys.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Payload => "payload",
            Kind::Head => "head",
        }
    }
}

/// A final answer eb gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remembered {
    /// VALID or INVALID.
    pub status: Status,
    /// The result eb answered with (JSON text).
    pub result: Bytes,
}

/// What to answer now.
#[derive(Debug, PartialEq, Eq)]
pub enum Recall {
    /// The new answer stands: not final, or the same as the one remembered.
    Answer,
    /// The new answer is the first final one for this block: remembered now.
    First,
    /// Answer the remembered result instead; `flip` when the new verdict was the opposite
    /// final status (logged at warn and counted).
    Keep {
        /// The remembered answer.
        remembered: Remembered,
        /// Whether the ELs now say the opposite.
        flip: bool,
    },
}

/// The bounded map (kind, hash) → final answer.
#[derive(Default)]
pub struct VerdictMemory {
    inner: Mutex<Entries>,
}

/// The answers by key, and the keys in insertion order (oldest evicted first).
type Entries = (HashMap<Key, Remembered>, VecDeque<Key>);
type Key = (Kind, String);

/// Puts `remembered` at `key`; a new key evicts the oldest once [`CAPACITY`] are remembered.
fn remember(
    map: &mut HashMap<Key, Remembered>,
    order: &mut VecDeque<Key>,
    key: Key,
    remembered: Remembered,
) {
    if let Some(slot) = map.get_mut(&key) {
        *slot = remembered;
        return;
    }
    if order.len() == CAPACITY {
        if let Some(oldest) = order.pop_front() {
            map.remove(&oldest);
        }
    }
    order.push_back(key.clone());
    map.insert(key, remembered);
}

fn is_final(status: Status) -> bool {
    matches!(status.normalized(), Status::Valid | Status::Invalid)
}

impl VerdictMemory {
    /// Decides what to answer for `hash` given the new answer's status (`None` for a synthetic
    /// SYNCING) and result, remembering a first final answer.
    pub fn recall(&self, kind: Kind, hash: &str, status: Option<Status>, result: &Bytes) -> Recall {
        let key = (kind, hash.to_ascii_lowercase());
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *guard;
        if let Some(remembered) = map.get(&key) {
            let same = status.map(Status::normalized) == Some(remembered.status.normalized());
            if same {
                return Recall::Answer;
            }
            let flip = status.is_some_and(is_final);
            return Recall::Keep {
                remembered: remembered.clone(),
                flip,
            };
        }
        if let Some(status) = status.filter(|s| is_final(*s)) {
            let result = result.clone();
            remember(map, order, key, Remembered { status, result });
            return Recall::First;
        }
        Recall::Answer
    }

    /// The final answer given for `hash`, if any.
    pub fn get(&self, kind: Kind, hash: &str) -> Option<Remembered> {
        let key = (kind, hash.to_ascii_lowercase());
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.get(&key).cloned()
    }

    /// Remembers `remembered` for `hash` in place of what is there: another replica's final
    /// answer, given before this one's.
    pub fn adopt(&self, kind: Kind, hash: &str, remembered: Remembered) {
        let key = (kind, hash.to_ascii_lowercase());
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *guard;
        remember(map, order, key, remembered);
    }

    /// Blocks remembered now.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).0.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(text: &'static str) -> Bytes {
        Bytes::from_static(text.as_bytes())
    }

    #[test]
    fn a_final_answer_is_never_turned_around() {
        let memory = VerdictMemory::default();
        assert_eq!(
            memory.recall(Kind::Payload, "0xAB", Some(Status::Syncing), &b("s")),
            Recall::Answer
        );
        assert!(memory.is_empty(), "SYNCING is not final");
        assert_eq!(
            memory.recall(Kind::Payload, "0xAB", Some(Status::Valid), &b("v")),
            Recall::First
        );
        assert!(!memory.is_empty(), "VALID is");
        assert_eq!(
            memory.recall(Kind::Payload, "0xab", Some(Status::Valid), &b("v2")),
            Recall::Answer
        );
        let keep = memory.recall(Kind::Payload, "0xab", Some(Status::Invalid), &b("i"));
        assert_eq!(
            keep,
            Recall::Keep {
                remembered: Remembered {
                    status: Status::Valid,
                    result: b("v")
                },
                flip: true
            }
        );
        let syncing = memory.recall(Kind::Payload, "0xab", None, &b("s"));
        assert!(matches!(syncing, Recall::Keep { flip: false, .. }));
        assert_eq!(
            memory.recall(Kind::Head, "0xab", Some(Status::Invalid), &b("i")),
            Recall::First,
            "kinds are apart"
        );
    }

    #[test]
    fn an_adopted_answer_replaces_this_replicas_own() {
        let memory = VerdictMemory::default();
        memory.recall(Kind::Payload, "0xab", Some(Status::Invalid), &b("i"));
        let earlier = Remembered {
            status: Status::Valid,
            result: b("v"),
        };
        memory.adopt(Kind::Payload, "0xAB", earlier.clone());
        assert_eq!(memory.len(), 1);
        assert_eq!(
            memory.recall(Kind::Payload, "0xab", Some(Status::Invalid), &b("i")),
            Recall::Keep {
                remembered: earlier,
                flip: true
            }
        );
        for i in 0..CAPACITY {
            memory.adopt(
                Kind::Head,
                &format!("0x{i:x}"),
                Remembered {
                    status: Status::Valid,
                    result: b("v"),
                },
            );
        }
        assert_eq!(memory.len(), CAPACITY, "adopting stays bounded");
        assert_eq!(
            memory.recall(Kind::Payload, "0xab", Some(Status::Invalid), &b("i")),
            Recall::First,
            "the oldest was evicted"
        );
    }

    #[test]
    fn a_payload_and_a_head_are_remembered_apart() {
        assert_eq!(Kind::of(VoteKind::NewPayload), Kind::Payload);
        for kind in [
            VoteKind::ForkchoiceUpdated,
            VoteKind::ForkchoiceUpdatedWithAttributes,
        ] {
            assert_eq!(Kind::of(kind), Kind::Head);
        }
    }

    #[test]
    fn is_bounded() {
        let memory = VerdictMemory::default();
        for i in 0..CAPACITY + 10 {
            memory.recall(
                Kind::Payload,
                &format!("0x{i:x}"),
                Some(Status::Valid),
                &b("v"),
            );
        }
        assert_eq!(memory.len(), CAPACITY);
        assert_eq!(
            memory.recall(Kind::Payload, "0x0", Some(Status::Invalid), &b("i")),
            Recall::First,
            "oldest evicted"
        );
    }
}
