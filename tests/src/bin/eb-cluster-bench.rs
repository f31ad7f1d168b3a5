//! `eb-cluster-bench`: what sharing through etcd costs on the answer path. One eb standalone
//! and one replica of a real 3-member loopback etcd, each in front of its own three mock ELs,
//! answer the same sequence of newPayload and forkchoiceUpdated (with attributes every
//! `--build-every` calls) for distinct blocks; then the replica again with two etcd members
//! killed (degraded mode). Before that, the etcd requests and bytes per block (a slot's calls)
//! and the leader lease's failover: the leading replica is killed and a second replica's CL
//! calls until the ELs see its head. Prints one JSON line with p50/p99 per method and setup.
//!
//! ```text
//! eb-cluster-bench [--calls 500] [--build-every 8]
//! ```

use clap::Parser;
use eb_tests::engine::{forkchoice, new_payload};
use eb_tests::etcd::EtcdCluster;
use eb_tests::mock_el::{forkchoices_for, refs, start_many};
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

/// The gRPC bytes etcd's members received and sent in all (the JSON gateway speaks gRPC to
/// its member, so this counts eb's traffic as etcd sees it).
async fn etcd_bytes(etcd: &EtcdCluster) -> f64 {
    let client = eb_tests::client();
    let mut total = 0.0;
    for endpoint in etcd.endpoints() {
        let Ok(response) = client.get(format!("{endpoint}/metrics")).send().await else {
            continue;
        };
        let text = response.text().await.unwrap_or_default();
        for name in [
            "etcd_network_client_grpc_received_bytes_total",
            "etcd_network_client_grpc_sent_bytes_total",
        ] {
            total += sample(&text, name).unwrap_or(0.0);
        }
    }
    total
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
    let bytes_before = etcd_bytes(&etcd).await;
    let started = Instant::now();
    let clustered = drive(&replica, "clustered", &args).await;
    let clustered_s = started.elapsed().as_secs_f64();
    let bytes_per_block = (etcd_bytes(&etcd).await - bytes_before) / args.calls as f64;
    let text = replica.metrics().await;
    let answer_path_requests: f64 = ["put_build", "claim_verdict", "get_verdict", "hold"]
        .iter()
        .filter_map(|op| {
            sample(
                &text,
                &format!(r#"eb_etcd_request_seconds_count{{op="{op}"}}"#),
            )
        })
        .sum();
    let etcd_ops: Value = ["put_build", "claim_verdict", "hold"]
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
    // The lease: B's CL calls while A leads, A is killed, B's calls go on until the ELs see
    // B's head (B took the lease).
    let b = Proxy::start(
        &refs(&replica_els),
        &[],
        &["--etcd", &endpoints, "--replica", "bench-b"],
    )
    .await;
    b.call(&new_payload(0, 4, "failover")).await;
    replica.kill().await;
    let killed = Instant::now();
    let mut failover_s = None;
    for id in 1..=400u64 {
        b.call(&forkchoice(id, 3, "failover", false)).await;
        if forkchoices_for(&replica_els, "failover") > 0 {
            failover_s = Some(killed.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let replica = b;
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
            "etcd_requests_per_block": answer_path_requests / args.calls as f64,
            "etcd_bytes_per_block": bytes_per_block,
            "clustered_s": clustered_s,
            "lease_failover_s": failover_s,
            "degraded": degraded,
            "degraded_pending": status["cluster"]["pending"],
        })
    );
}
