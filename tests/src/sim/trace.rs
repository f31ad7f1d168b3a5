//! What happened in one simulated run, in the order it happened: the CL's calls and answers,
//! and each EL's receipts, answers, timeouts and refusals, stamped with simulated time.

use bytes::Bytes;
use std::sync::Mutex;

/// One thing that happened.
#[derive(Clone, Debug)]
pub enum Event {
    /// The CL sent call `call` (its index in [`super::world::Run::calls`]).
    ClCall {
        /// The call.
        call: usize,
        /// When.
        at_ms: u64,
    },
    /// eb answered call `call`.
    ClAnswer {
        /// The call.
        call: usize,
        /// When.
        at_ms: u64,
    },
    /// An EL received a request (state-changing or not).
    Received {
        /// The EL.
        el: usize,
        /// When.
        at_ms: u64,
        /// Its method.
        method: String,
        /// Its exact bytes.
        body: Bytes,
    },
    /// An EL answered the request received at event `call`.
    Answered {
        /// The EL.
        el: usize,
        /// When.
        at_ms: u64,
        /// The index of the [`Event::Received`] it answers.
        call: usize,
        /// The JSON-RPC answer's text.
        text: String,
    },
    /// eb stopped waiting for the request received at event `call` (the EL's timeout).
    TimedOut {
        /// The EL.
        el: usize,
        /// When.
        at_ms: u64,
        /// The index of the [`Event::Received`].
        call: usize,
    },
    /// An EL refused the connection (down): it never got the request.
    Refused {
        /// The EL.
        el: usize,
        /// When.
        at_ms: u64,
        /// The request's method.
        method: String,
    },
}

impl Event {
    /// When it happened (simulated milliseconds from the start).
    pub fn at_ms(&self) -> u64 {
        match self {
            Event::ClCall { at_ms, .. }
            | Event::ClAnswer { at_ms, .. }
            | Event::Received { at_ms, .. }
            | Event::Answered { at_ms, .. }
            | Event::TimedOut { at_ms, .. }
            | Event::Refused { at_ms, .. } => *at_ms,
        }
    }
}

/// The events of one run, appended by the CL and the ELs.
#[derive(Default)]
pub struct Trace(Mutex<Vec<Event>>);

impl Trace {
    /// Appends `event`; returns its index.
    pub fn push(&self, event: Event) -> usize {
        let mut events = self.0.lock().unwrap_or_else(|p| p.into_inner());
        events.push(event);
        events.len() - 1
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
