//! # eb: an Engine API multiplexer
//!
//! One consensus client in front, several execution clients behind; a sandboxed WebAssembly
//! policy turns the ELs' answers into the one answer the CL gets. The modules follow the data
//! path:
//!
//! [`config`] → [`server`] (HTTP) → [`auth`] (JWT) → [`rpc`] (JSON-RPC, with [`params`]) →
//! [`dispatch`] ([`route`]: what to do) → [`fanout`] (every EL, in order, via [`nodes`] and
//! [`upstream`]; [`replay`] for what a returning EL missed) → [`votes`] → [`policy`] → [`verdict`] (with [`memory`]: never turning a final
//! answer around) → [`answer`]. Reads go through [`primary`], builds through [`payloads`];
//! builds and final answers are shared with other replicas through [`cluster`] (etcd, or a
//! local store standalone);
//! merged calls through [`merge`] (with [`readiness`]: the ELs' capabilities against the CL's);
//! every refusal is an [`error::EngineError`]. [`health`] keeps
//! [`node_state`] and the primary current; [`admin`] serves status, [`metrics`] and node
//! management; [`app`] builds the stages and [`run`] starts and stops it all: each listener
//! through [`serve`] (connection cap, timeouts), within the open files [`fd_limit`] leaves.
#![forbid(unsafe_code)]

pub mod admin;
pub mod answer;
pub mod app;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod fanout;
pub mod fd_limit;
pub mod health;
pub mod hedge;
pub mod memory;
pub mod merge;
pub mod metrics;
pub mod node_state;
pub mod nodes;
pub mod params;
pub mod payloads;
pub mod policy;
pub mod primary;
pub mod queue;
pub mod readiness;
pub mod record;
pub mod replay;
pub mod route;
pub mod rpc;
pub mod run;
pub mod serve;
pub mod server;
pub mod straggler;
pub mod upstream;
pub mod verdict;
pub mod votes;
