//! `eb-cluster-bench`: what sharing through etcd costs on the answer path. One eb standalone
//! and one replica of a real 3-member loopback etcd, each in front of its own three mock ELs,
//! answer the same sequence of newPayload and forkchoiceUpdated (with attributes every
//! `--build-every` calls) for distinct blocks; then the replica again with two etcd members
//! killed (degraded mode). Prints one JSON line with p50/p99 per method and setup.
//!
//! ```text
//! eb-cluster-bench [--calls 500] [--build-every 8]
//! ```

use clap::Parser;
use eb_tests::engine::{forkchoice, new_payload};
use eb_tests::etcd::EtcdCluster;
use eb_tests::mock_el::{refs, start_many};
use eb_tests::proxy::{sample, Proxy};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
struct Args {
    /// Blocks per setup (each a newPayload and a forkchoiceUpdated).
    #[arg(long, default_value_t = 500)]
    calls: usize,
    /// Every n-th forkchoiceUpdated carries payload attributes (a build).
    #[arg(long, default_value_t = 8)]
    build_every: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

fn summary(mut times: Vec<Duration>) -> Value {
    times.sort();
    json!({ "p50_ms": percentile(&times, 0.5), "p99_ms": percentile(&times, 0.99), "n": times.len() })
}

/// Sends `calls` blocks through `proxy`; (newPayload times, forkchoiceUpdated times).
async fn drive(proxy: &Proxy, label: &str, args: &Args) -> Value {
    let (mut payloads, mut heads) = (Vec::new(), Vec::new());
    for i in 0..args.calls {
        let block = format!("{label}-{i}");
        let start = Instant::now();
        proxy.call(&new_payload(2 * i as u64, 4, &block)).await;
        payloads.push(start.elapsed());
        let build = args.build_every > 0 && i % args.build_every == 0;
        let start = Instant::now();
        proxy
            .call(&forkchoice(2 * i as u64 + 1, 3, &block, build))
            .await;
        heads.push(start.elapsed());
    }
    json!({ "newPayload": summary(payloads), "forkchoiceUpdated": summary(heads) })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let mut etcd = EtcdCluster::start(3).await;
    let standalone_els = start_many(3, None).await;
    let standalone = Proxy::start(&refs(&standalone_els), &[], &[]).await;
    let replica_els = start_many(3, None).await;
    let endpoints = etcd.endpoints().join(",");
    let replica = Proxy::start(
        &refs(&replica_els),
        &[],
        &["--etcd", &endpoints, "--replica", "bench"],
    )
    .await;
    let alone = drive(&standalone, "standalone", &args).await;
    let clustered = drive(&replica, "clustered", &args).await;
    let text = replica.metrics().await;
    let etcd_ops: Value = ["put_build", "claim_verdict"]
        .iter()
        .map(|op| {
            let count = sample(
                &text,
                &format!(r#"eb_etcd_request_seconds_count{{op="{op}"}}"#),
            );
            let sum = sample(
                &text,
                &format!(r#"eb_etcd_request_seconds_sum{{op="{op}"}}"#),
            );
            let mean_ms = match (count, sum) {
                (Some(c), Some(s)) if c > 0.0 => s / c * 1e3,
                _ => 0.0,
            };
            (
                op.to_string(),
                json!({ "count": count, "mean_ms": mean_ms }),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into();
    etcd.kill(1);
    etcd.kill(2);
    let degraded = drive(&replica, "degraded", &args).await;
    let status = replica.admin_get("/status").await;
    println!(
        "{}",
        json!({
            "calls": args.calls,
            "build_every": args.build_every,
            "standalone": alone,
            "clustered": clustered,
            "etcd_ops": etcd_ops,
            "degraded": degraded,
            "degraded_pending": status["cluster"]["pending"],
        })
    );
}
