//! One policy decision, measured: native function vs Wasm in a fresh instance, and how long
//! each hostile module takes to be stopped. Run: `cargo bench -p eb --bench policy_decide`.
// Wall-clock timing of synchronous code, outside any runtime: std's clock is the right one.
#![allow(clippy::disallowed_types)]

use eb::policy::{Ballot, Policy, PolicySource, WasmPolicy};
use policy_sdk::{Context, Input, Status, Vote, VoteKind};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn ballot(n: u16) -> Ballot {
    let votes = (0..n)
        .map(|i| {
            let mut vote = Vote::answered(
                i,
                if i % 5 == 4 {
                    Status::Syncing
                } else {
                    Status::Valid
                },
            );
            vote.latency_us = 1000 + u32::from(i) * 10;
            vote
        })
        .collect();
    Ballot {
        context: Context {
            kind: VoteKind::NewPayload,
            method_version: 4,
            nodes_configured: n,
            pending: 0,
            is_final: true,
            elapsed_ms: 3,
        },
        votes,
        config: String::new(),
    }
}

/// Median and p99 of `runs` timings of `f`.
fn measure(runs: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..runs / 10 {
        f();
    }
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[runs / 2], times[runs * 99 / 100])
}

fn row(name: &str, (median, p99): (Duration, Duration)) {
    println!("{name:<48} median {median:>10.2?}   p99 {p99:>10.2?}");
}

fn main() {
    let wasm = WasmPolicy::load(&PolicySource::Embedded, "").expect("default policy loads");
    println!("default.wasm: {} bytes", wasm.info().size);
    for n in [3u16, 16] {
        let ballot = ballot(n);
        let bytes = ballot.to_bytes().expect("encodes");
        row(
            &format!("native decide, {n} votes (pre-encoded)"),
            measure(200_000, || {
                let input = Input::parse(black_box(&bytes)).expect("parses");
                black_box(eb_policy_default::decide(&input));
            }),
        );
        row(
            &format!("native decide, {n} votes (incl. encoding)"),
            measure(200_000, || {
                black_box(
                    black_box(&ballot)
                        .decide_native(eb_policy_default::decide)
                        .ok(),
                );
            }),
        );
        row(
            &format!("wasm fresh instance, {n} votes (incl. encoding)"),
            measure(50_000, || {
                black_box(wasm.decide(black_box(&ballot)));
            }),
        );
    }
    let hostile = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hostile");
    let mut trigger = ballot(3);
    trigger.context.method_version = 99;
    for name in [
        "loop-decide",
        "memory-bomb",
        "table-bomb",
        "deep-recursion",
        "unreachable",
    ] {
        let source = PolicySource::File(hostile.join(format!("{name}.wat")));
        let policy = WasmPolicy::load(&source, "").expect("hostile module loads");
        let mut fault = None;
        let timing = measure(200, || fault = policy.decide(&trigger).fault);
        let fault = fault.map(|f| f.kind()).unwrap_or("none");
        row(&format!("hostile {name} stopped ({fault})"), timing);
    }
    for name in ["loop-start", "huge-memory"] {
        let source = PolicySource::File(hostile.join(format!("{name}.wat")));
        row(
            &format!("hostile {name} refused at load"),
            measure(20, || {
                assert!(WasmPolicy::load(&source, "").is_err());
            }),
        );
    }
}
