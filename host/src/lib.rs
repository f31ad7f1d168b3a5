//! # eb: an Engine API multiplexer
//!
//! One consensus client in front, several execution clients behind; a sandboxed WebAssembly
//! policy turns the ELs' answers into the one answer the CL gets. The modules follow the data
//! path:
//!
//! `config` → [`server`] (HTTP) → [`auth`] (JWT) → [`rpc`] (JSON-RPC, with [`params`]) → [`route`] (what to do)
//! → [`fanout`] (every EL, in order, via [`nodes`] and [`upstream`]) → [`votes`] → [`policy`]
//! → [`answer`] (never turning a final answer around: [`memory`]); reads go through [`primary`], builds through [`payloads`], merged calls
//! through [`merge`]; [`health`] keeps node states and the primary current; [`admin`] serves
//! status, [`metrics`] and node management; [`run`] starts and stops it all.
#![forbid(unsafe_code)]

pub mod admin;
pub mod answer;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod fanout;
pub mod health;
pub mod memory;
pub mod merge;
pub mod metrics;
pub mod nodes;
pub mod params;
pub mod payloads;
pub mod policy;
pub mod primary;
pub mod record;
pub mod route;
pub mod rpc;
pub mod run;
pub mod server;
pub mod upstream;
pub mod votes;
