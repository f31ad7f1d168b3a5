//! `eb-bench`: mock ELs on loopback, a multiplexer in front (started from a command template),
//! CL-like traffic, and the latency the multiplexer adds over calling one EL directly, beside
//! what the floor adds (`eb-floor`, a fan-out that does nothing else, measured first in the same
//! session against the same ELs): the ratios to the floor are the figures to compare across
//! machines and days.
//!
//! ```text
//! eb-bench --els 3 --payload-kib 128 --requests 2000
//! eb-bench --els 3 --payload-kib 2048 -- target/release/eb --nodes {nodes} --jwt-secret {jwt} --port {port} --admin-addr 127.0.0.1:0 -q
//! ```
//! `{nodes}` becomes `url#jwt-secret=path,…`, `{jwt}` the CL secret file, `{port}` a free port.
//! Without a command, the `eb` binary next to this one is measured.
//!
//! Fault modes act on the last EL while the multiplexer is measured: `--hung` (it accepts every
//! call, health checks included, and never answers; samples are split at `--phase-s` into
//! before/after health checks can have marked it), `--slow-ms N` (its newPayload answers take N
//! ms), `--flap-ms N` (stopped and restarted every N ms).

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use eb::auth::{JwtSecret, Minter};
use eb_tests::engine::{forkchoice, get_payload, new_payload_sized};
use eb_tests::mock_el::MockEl;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const EL_SECRET: &str = "0x2222222222222222222222222222222222222222222222222222222222222222";
/// The CL's deadline for newPayload V1–V4 and forkchoiceUpdated.
const DEADLINE: Duration = Duration::from_secs(8);
const CL_SECRET: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";

/// Benchmark an Engine API multiplexer against the direct path.
#[derive(Debug, Parser)]
struct Args {
    /// Mock ELs behind the multiplexer.
    #[arg(long, default_value_t = 3)]
    els: usize,
    /// newPayload body size in KiB.
    #[arg(long, default_value_t = 128)]
    payload_kib: usize,
    /// Requests (newPayload mode) or slots (slots mode) per run.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// Requests in flight at once (throughput); 1 measures latency.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Delay of every mock EL answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    el_delay_ms: u64,
    /// Traffic pattern.
    #[arg(long, value_enum, default_value_t = Mode::NewPayload)]
    mode: Mode,
    /// Pause between units of traffic per worker (e.g. 100 for one slot per 100 ms).
    #[arg(long, default_value_t = 0)]
    slot_ms: u64,
    /// Stop after this many seconds even if requests remain (0: no limit).
    #[arg(long, default_value_t = 0)]
    duration_s: u64,
    /// Stop and restart the last mock EL every this many ms while eb is measured (0: never).
    #[arg(long, default_value_t = 0)]
    flap_ms: u64,
    /// The last EL hangs on every call while eb is measured.
    #[arg(long)]
    hung: bool,
    /// The last EL answers newPayload after this many ms while eb is measured (0: no delay).
    #[arg(long, default_value_t = 0)]
    slow_ms: u64,
    /// With --hung: samples before this many seconds after the fault are reported apart.
    #[arg(long, default_value_t = 8)]
    phase_s: u64,
    /// Skip the direct baseline (soak runs).
    #[arg(long)]
    no_direct: bool,
    /// Skip the floor (`eb-floor`, a fan-out that does nothing else, measured first in the same
    /// session).
    #[arg(long)]
    no_floor: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// The multiplexer command template (after `--`).
    #[arg(last = true)]
    command: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// newPayload only.
    NewPayload,
    /// Per slot newPayload + forkchoiceUpdated; every 4th slot a build and getPayload.
    Slots,
}

/// Latency samples per method.
#[derive(Default)]
struct Samples(BTreeMap<String, Vec<Duration>>);

impl Samples {
    fn add(&mut self, method: &str, took: Duration) {
        self.0.entry(method.to_owned()).or_default().push(took);
    }

    fn merge(&mut self, other: Samples) {
        for (method, mut list) in other.0 {
            self.0.entry(method).or_default().append(&mut list);
        }
    }

    fn stats(&self) -> BTreeMap<String, Value> {
        self.0
            .iter()
            .map(|(method, list)| {
                let mut sorted = list.clone();
                sorted.sort();
                let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
                (
                    method.clone(),
                    json!({"n": sorted.len(), "p50_ms": at(0.5), "p90_ms": at(0.9), "p99_ms": at(0.99), "max_ms": at(1.0)}),
                )
            })
            .collect()
    }
}

struct Target {
    url: String,
    minter: Minter,
}

async fn post(client: &reqwest::Client, target: &Target, body: Bytes) -> Option<Value> {
    let response = client
        .post(&target.url)
        .header("authorization", target.minter.bearer())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .ok()?;
    serde_json::from_slice(&response.bytes().await.ok()?).ok()
}

/// Drives `requests` units of traffic at `concurrency`; returns samples and wall time. With
/// `phase`, samples taken before that much time are labelled apart.
async fn drive(
    target: Arc<Target>,
    args: &Args,
    payload: Bytes,
    phase: Option<Duration>,
) -> (Samples, Duration, u64) {
    let next = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            let (target, next, failures, payload) = (
                Arc::clone(&target),
                Arc::clone(&next),
                Arc::clone(&failures),
                payload.clone(),
            );
            let (total, mode) = (args.requests as u64, args.mode);
            let (pause, stop_at) = (
                Duration::from_millis(args.slot_ms),
                (args.duration_s > 0).then(|| start + Duration::from_secs(args.duration_s)),
            );
            tokio::spawn(async move {
                let client = eb_tests::client();
                let mut samples = Samples::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total || stop_at.is_some_and(|t| Instant::now() >= t) {
                        break samples;
                    }
                    if !pause.is_zero() && i > 0 {
                        tokio::time::sleep(pause).await;
                    }
                    let timed = |method: &'static str, body: Bytes| {
                        let (client, target) = (&client, &target);
                        async move {
                            let t = Instant::now();
                            let answer = post(client, target, body).await;
                            let method = match phase {
                                Some(p) if t.duration_since(start) < p => {
                                    format!("{method} (first {} s)", p.as_secs())
                                }
                                Some(p) => format!("{method} (after {} s)", p.as_secs()),
                                None => method.to_owned(),
                            };
                            (method, t.elapsed(), answer)
                        }
                    };
                    let mut calls = vec![timed("newPayload", payload.clone()).await];
                    if mode == Mode::Slots {
                        let build = i % 4 == 3;
                        let fcu = Bytes::from(forkchoice(i, 3, "B", build).to_string());
                        let answer = timed(
                            if build {
                                "forkchoiceUpdated+build"
                            } else {
                                "forkchoiceUpdated"
                            },
                            fcu,
                        )
                        .await;
                        let id = answer
                            .2
                            .as_ref()
                            .and_then(|a| a["result"]["payloadId"].as_str().map(str::to_owned));
                        calls.push(answer);
                        if let Some(id) = id {
                            calls.push(
                                timed(
                                    "getPayload",
                                    Bytes::from(get_payload(i, 4, &id).to_string()),
                                )
                                .await,
                            );
                        }
                    }
                    for (method, took, answer) in calls {
                        // The mocks answer VALID: a SYNCING here means eb did not get their votes.
                        let ok = answer.is_some_and(|a| {
                            let r = &a["result"];
                            !r.is_null()
                                && r["status"] != "SYNCING"
                                && r["payloadStatus"]["status"] != "SYNCING"
                        });
                        if ok {
                            samples.add(&method, took);
                        } else {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                        if took > DEADLINE {
                            samples.add("deadline missed", took);
                        }
                    }
                }
            })
        })
        .collect();
    let mut all = Samples::default();
    for worker in workers {
        if let Ok(samples) = worker.await {
            all.merge(samples);
        }
    }
    (all, start.elapsed(), failures.load(Ordering::Relaxed))
}

/// (RSS in KiB, CPU time in ms) of a process, from /proc.
fn usage(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((rss, ticks * 10))
}

fn spawn(command: &[String], nodes: &str, jwt: &str, port: u16) -> std::io::Result<Child> {
    let fill = |s: &String| {
        s.replace("{nodes}", nodes)
            .replace("{jwt}", jwt)
            .replace("{port}", &port.to_string())
    };
    let mut parts = command.iter().map(fill);
    let program = parts.next().unwrap_or_default();
    Command::new(program).args(parts).spawn()
}

fn default_command() -> Vec<String> {
    let eb = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("eb")))
        .unwrap_or_else(|| PathBuf::from("eb"));
    [eb.display().to_string()]
        .into_iter()
        .chain(
            [
                "--nodes",
                "{nodes}",
                "--jwt-secret",
                "{jwt}",
                "--port",
                "{port}",
                "--admin-addr",
                "127.0.0.1:0",
                "-q",
            ]
            .map(String::from),
        )
        .collect()
}

/// The do-nothing fan-out next to this binary (`eb-floor`).
fn floor_command() -> Vec<String> {
    let floor = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("eb-floor")))
        .unwrap_or_else(|| PathBuf::from("eb-floor"));
    [floor.display().to_string()]
        .into_iter()
        .chain(["--nodes", "{nodes}", "--port", "{port}"].map(String::from))
        .collect()
}

async fn run(args: Args) -> Result<Value, String> {
    let dir = std::env::temp_dir().join(format!("eb-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (el_secret, cl_secret) = (dir.join("el.hex"), dir.join("cl.hex"));
    std::fs::write(&el_secret, EL_SECRET).map_err(|e| e.to_string())?;
    std::fs::write(&cl_secret, CL_SECRET).map_err(|e| e.to_string())?;
    let mut els = Vec::new();
    for i in 0..args.els.max(1) {
        let el = MockEl::start(&format!("el{i}"), EL_SECRET).await;
        el.set(|b| b.delay = Duration::from_millis(args.el_delay_ms));
        els.push(el);
    }
    let nodes: Vec<String> = els
        .iter()
        .map(|el| format!("{}#jwt-secret={}", el.url(), el_secret.display()))
        .collect();
    let payload = Bytes::from(new_payload_sized(1, "B", args.payload_kib).to_string());
    let secret = |hex| JwtSecret::from_hex(hex).ok_or("bad secret");

    let direct = Arc::new(Target {
        url: els[0].url(),
        minter: Minter::new(&secret(EL_SECRET)?),
    });
    drive(Arc::clone(&direct), &warmup(&args), payload.clone(), None).await;
    let (direct_samples, direct_wall, direct_failures) = if args.no_direct {
        (Samples::default(), Duration::from_secs(1), 0)
    } else {
        drive(direct, &args, payload.clone(), None).await
    };

    let session = Session {
        els: &els,
        nodes: nodes.join(","),
        cl_secret: cl_secret.display().to_string(),
        payload,
    };
    let floor = match args.no_floor {
        true => None,
        false => Some(measure(&args, &floor_command(), &session).await?),
    };
    let command = if args.command.is_empty() {
        default_command()
    } else {
        args.command.clone()
    };
    let proxy = measure(&args, &command, &session).await?;
    let _ = std::fs::remove_dir_all(&dir);

    let direct_stats = direct_samples.stats();
    let count = |s: &Samples| s.0.values().map(Vec::len).sum::<usize>() as f64;
    let added = |measured: &Measured| -> BTreeMap<String, Value> {
        measured
            .stats
            .iter()
            .filter_map(|(method, p)| {
                let d = direct_stats.get(method)?;
                let diff = |k: &str| p[k].as_f64().unwrap_or(0.0) - d[k].as_f64().unwrap_or(0.0);
                Some((
                    method.clone(),
                    json!({"p50_ms": diff("p50_ms"), "p99_ms": diff("p99_ms")}),
                ))
            })
            .collect()
    };
    let proxy_added = added(&proxy);
    let ratio = floor.as_ref().map(|floor| {
        let floor_added = added(floor);
        let per_method: BTreeMap<String, Value> = proxy_added
            .iter()
            .filter_map(|(method, p)| {
                let f = floor_added.get(method)?;
                let of = |k: &str| p[k].as_f64().unwrap_or(0.0) / f[k].as_f64().unwrap_or(0.0);
                Some((
                    method.clone(),
                    json!({"p50": of("p50_ms"), "p99": of("p99_ms")}),
                ))
            })
            .collect();
        json!({
            "added": per_method,
            "cpu_per_call": proxy.cpu_per_call() / floor.cpu_per_call(),
        })
    });
    Ok(json!({
        "els": args.els, "payload_kib": args.payload_kib, "concurrency": args.concurrency,
        "fault": {"hung": args.hung, "slow_ms": args.slow_ms, "flap_ms": args.flap_ms},
        "mode": format!("{:?}", args.mode), "command": command.join(" "),
        "direct": {"latency": direct_stats, "throughput_rps": count(&direct_samples) / direct_wall.as_secs_f64(), "failures": direct_failures},
        "floor_added": floor.as_ref().map(added),
        "floor": floor.map(|f| f.report),
        "proxy": proxy.report,
        "added": proxy_added,
        "ratio_to_floor": ratio,
    }))
}

/// What one run session shares: the mock ELs, their specs, the CL secret, the body.
struct Session<'a> {
    els: &'a [MockEl],
    nodes: String,
    cl_secret: String,
    payload: Bytes,
}

/// One multiplexer measured: its latency per method, and the report's object for it.
struct Measured {
    stats: BTreeMap<String, Value>,
    calls: usize,
    cpu_ms: Option<u64>,
    report: Value,
}

impl Measured {
    /// Milliseconds of CPU per call answered.
    fn cpu_per_call(&self) -> f64 {
        self.cpu_ms.unwrap_or(0) as f64 / self.calls.max(1) as f64
    }
}

/// Starts `command` in front of the session's ELs, warms it up, drives the traffic (with the
/// faults of `args` on the last EL, cleared afterwards), stops it.
async fn measure(
    args: &Args,
    command: &[String],
    session: &Session<'_>,
) -> Result<Measured, String> {
    let els = session.els;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let mut child = spawn(command, &session.nodes, &session.cl_secret, port)
        .map_err(|e| format!("cannot start {:?}: {e}", command.first()))?;
    let mut up = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !up {
        let _ = child.kill();
        return Err(format!(
            "{:?} did not start listening within 10 s",
            command.first()
        ));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = child.id();
    let idle = usage(pid);
    let proxy = Arc::new(Target {
        url: format!("http://127.0.0.1:{port}/"),
        minter: Minter::new(&JwtSecret::from_hex(CL_SECRET).ok_or("bad secret")?),
    });
    let payload = session.payload.clone();
    drive(Arc::clone(&proxy), &warmup(args), payload.clone(), None).await;
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak = Arc::clone(&peak);
        tokio::spawn(async move {
            loop {
                if let Some((rss, _)) = usage(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let flapping = Arc::new(std::sync::atomic::AtomicBool::new(args.flap_ms > 0));
    let flapper = async {
        let mut up = true;
        while flapping.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(args.flap_ms.max(1))).await;
            if let Some(el) = els.last().filter(|_| els.len() > 1) {
                if up {
                    el.stop();
                } else {
                    el.restart().await;
                }
                up = !up;
            }
        }
        if !up {
            if let Some(el) = els.last() {
                el.restart().await;
            }
        }
    };
    let faulty = els.last().filter(|_| els.len() > 1);
    let fault = |hung: bool, slow_ms: u64| {
        if let Some(el) = faulty {
            el.set(|b| {
                b.frozen = hung;
                b.new_payload_delay = Duration::from_millis(slow_ms);
            });
        }
    };
    fault(args.hung, args.slow_ms);
    let phase = args.hung.then(|| Duration::from_secs(args.phase_s));
    let new_payloads = || -> Vec<usize> {
        els.iter()
            .map(|el| {
                el.engine_calls()
                    .iter()
                    .filter(|m| m.starts_with("engine_newPayload"))
                    .count()
            })
            .collect()
    };
    let received_before = new_payloads();
    let before = usage(pid);
    let ((samples, wall, failures), ()) = tokio::join!(
        async {
            let result = drive(proxy, args, payload, phase).await;
            flapping.store(false, Ordering::Relaxed);
            result
        },
        flapper
    );
    let after = usage(pid);
    fault(false, 0);
    // Each EL's newPayloads from the measured run (the calls still out to a slow or hung EL
    // have not arrived yet only if it is hung).
    let received: Vec<usize> = new_payloads()
        .iter()
        .zip(&received_before)
        .map(|(after, before)| after - before)
        .collect();
    sampler.abort();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    let calls = samples.0.values().map(Vec::len).sum::<usize>();
    let stats = samples.stats();
    let cpu_ms = before.zip(after).map(|(b, a)| a.1 - b.1);
    let report = json!({
        "command": command.join(" "),
        "latency": stats,
        "throughput_rps": calls as f64 / wall.as_secs_f64(),
        "failures": failures,
        "rss_idle_kib": idle.map(|u| u.0),
        "rss_peak_kib": peak.load(Ordering::Relaxed),
        "rss_after_kib": after.map(|u| u.0),
        "cpu_ms": cpu_ms,
        "cpu_ms_per_call": cpu_ms.map(|c| c as f64 / calls.max(1) as f64),
        "new_payloads_received": received,
    });
    Ok(Measured {
        stats,
        calls,
        cpu_ms,
        report,
    })
}

/// A short warm-up run: a tenth of the requests (at most 500), unpaced, no time limit.
fn warmup(args: &Args) -> Args {
    Args {
        requests: (args.requests / 10).clamp(1, 500),
        slot_ms: 0,
        duration_s: 0,
        ..clone_args(args)
    }
}

fn clone_args(args: &Args) -> Args {
    Args {
        els: args.els,
        payload_kib: args.payload_kib,
        requests: args.requests,
        concurrency: args.concurrency,
        el_delay_ms: args.el_delay_ms,
        hung: args.hung,
        slow_ms: args.slow_ms,
        phase_s: args.phase_s,
        mode: args.mode,
        slot_ms: args.slot_ms,
        duration_s: args.duration_s,
        flap_ms: args.flap_ms,
        no_direct: args.no_direct,
        no_floor: args.no_floor,
        json: args.json,
        command: args.command.clone(),
    }
}

fn table(report: &Value) -> String {
    let mut out = format!(
        "{} ELs, {} KiB, concurrency {}, {}\n{:<26} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        report["els"],
        report["payload_kib"],
        report["concurrency"],
        report["mode"],
        "path / method",
        "n",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms"
    );
    for path in ["direct", "floor", "proxy"] {
        if let Some(methods) = report[path]["latency"].as_object() {
            for (method, s) in methods {
                out += &format!(
                    "{:<26} {:>9} {:>9.3} {:>9.3} {:>9.3} {:>9.3}\n",
                    format!("{path} {method}"),
                    s["n"],
                    s["p50_ms"].as_f64().unwrap_or(0.0),
                    s["p90_ms"].as_f64().unwrap_or(0.0),
                    s["p99_ms"].as_f64().unwrap_or(0.0),
                    s["max_ms"].as_f64().unwrap_or(0.0)
                );
            }
        }
    }
    for (label, key) in [("floor", "floor_added"), ("proxy", "added")] {
        if let Some(methods) = report[key].as_object() {
            for (method, a) in methods {
                out += &format!(
                    "{label} added {:<20} p50 {:+.3} ms  p99 {:+.3} ms\n",
                    method,
                    a["p50_ms"].as_f64().unwrap_or(0.0),
                    a["p99_ms"].as_f64().unwrap_or(0.0)
                );
            }
        }
    }
    if let Some(ratio) = report["ratio_to_floor"].as_object() {
        for (method, r) in ratio["added"].as_object().into_iter().flatten() {
            out += &format!(
                "proxy / floor, added {:<12} p50 {:.2}×  p99 {:.2}×\n",
                method,
                r["p50"].as_f64().unwrap_or(0.0),
                r["p99"].as_f64().unwrap_or(0.0)
            );
        }
        out += &format!(
            "proxy / floor, CPU per call {:.2}×\n",
            ratio["cpu_per_call"].as_f64().unwrap_or(0.0)
        );
    }
    for path in ["floor", "proxy"] {
        let p = &report[path];
        if p.is_null() {
            continue;
        }
        out += &format!(
            "{path}: {:.0} req/s; RSS idle {} KiB, peak {} KiB, at the end {} KiB; CPU {} ms ({:.3} ms per call); failures {}; newPayloads each EL received {}\n",
            p["throughput_rps"].as_f64().unwrap_or(0.0),
            p["rss_idle_kib"], p["rss_peak_kib"], p["rss_after_kib"], p["cpu_ms"],
            p["cpu_ms_per_call"].as_f64().unwrap_or(0.0), p["failures"], p["new_payloads_received"]
        );
    }
    out += &format!(
        "direct: {:.0} req/s\n",
        report["direct"]["throughput_rps"].as_f64().unwrap_or(0.0)
    );
    out
}

fn main() -> ExitCode {
    let args = Args::parse();
    let json_out = args.json;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("eb-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(report) => {
            if json_out {
                println!("{report}");
            } else {
                print!("{}", table(&report));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("eb-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
