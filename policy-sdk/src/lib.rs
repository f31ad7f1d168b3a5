//! # eb policy SDK
//!
//! eb asks a WebAssembly module for every verdict. This crate is the one definition of the
//! byte-level contract between eb and such a module (see `ABI.md`), plus what a policy author needs
//! to write one in plain Rust:
//!
//! - [`abi`]: the wire layout (header, vote records, verdict encoding), shared with the host;
//! - [`Input`]: a zero-copy view of one ballot as the policy receives it;
//! - [`tally`]: counting helpers for majority-style rules, including "can the outcome still change";
//! - [`rules`]: the majority rule eb ships as its default policy, for policies to build on;
//! - [`export_policy!`]: writes the module's exports from `fn decide(&Input) -> Verdict`;
//! - with feature `std`: [`Ballot`](ballot::Ballot) (host-side encoder), the JSON fixture format
//!   ([`fixture`]) and a native fixture runner.
//!
//! The crate is `no_std` so policies compile to small `wasm32-unknown-unknown` modules.
// Tests build with std (they use Vec) whether or not the `std` feature is on.
#![cfg_attr(not(any(feature = "std", test)), no_std)]

pub mod abi;
mod export;
pub mod input;
pub mod rules;
pub mod tally;

#[cfg(feature = "std")]
pub mod ballot;
#[cfg(feature = "std")]
pub mod fixture;

pub use abi::{ClientCode, Context, Outcome, Status, Verdict, Vote, VoteFlags, VoteKind};
pub use input::Input;

#[doc(hidden)]
pub mod __private {
    pub use crate::export::{configure_entry, decide_entry, input_cap, input_ptr};
}
