//! # eb: an Engine API multiplexer
//!
//! One consensus client in front, several execution clients behind; a sandboxed WebAssembly
//! policy turns the ELs' answers into the one answer the CL gets.
#![forbid(unsafe_code)]

pub mod cli;
pub mod policy;
