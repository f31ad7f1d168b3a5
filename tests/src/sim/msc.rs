//! A run as a message sequence chart (`mscgen` text): lanes CL, eb and each EL; the CL's calls
//! and eb's answers, each EL's receipt and answer, its refusals and timeouts, eb's recorded
//! decision (votes seen, cuts), and the broken promises.

use super::props::{answered_status, Violation};
use super::trace::Event;
use super::world::{CallKind, Run};
use serde_json::Value;
use std::fmt::Write;

fn short(hash: Option<&str>) -> String {
    hash.map(|h| {
        format!(
            "#{}",
            u64::from_str_radix(h.trim_start_matches("0x").trim_start_matches('0'), 16)
                .unwrap_or(0)
        )
    })
    .unwrap_or_default()
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// What an EL's JSON-RPC answer says, in a few words.
fn gist(text: &str) -> String {
    let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    if let Some(error) = value.get("error") {
        return format!("error {}", error["code"]);
    }
    let result = &value["result"];
    let status = result["status"]
        .as_str()
        .or_else(|| result["payloadStatus"]["status"].as_str());
    match status {
        Some(status) if result["payloadId"].is_string() => format!("{status} (build)"),
        Some(status) => status.to_owned(),
        None if result.get("executionPayload").is_some() => "payload".to_owned(),
        None => "result".to_owned(),
    }
}

/// The chart of `run`, marking `violations`.
pub fn render(run: &Run, violations: &[Violation]) -> String {
    let els = run.schedule.els.len();
    let mut out = String::from(
        "msc {\n  hscale=\"1.6\", arcgradient=\"4\";\n  cl [label=\"CL\"], eb [label=\"eb\"]",
    );
    for el in 0..els {
        let _ = write!(out, ", el{el} [label=\"EL {el}\"]");
    }
    out.push_str(";\n");
    let describe = |i: usize| {
        let c = &run.calls[i];
        format!(
            "{} {}",
            c.method.trim_start_matches("engine_"),
            short(c.hash.as_deref())
        )
    };
    for event in &run.events {
        let t = event.at_ms();
        let line = match event {
            Event::ClCall { call, .. } => {
                format!("cl => eb [label=\"{t} ms: {}\"]", escape(&describe(*call)))
            }
            Event::ClAnswer { call, .. } => {
                let c = &run.calls[*call];
                let what = match c.kind {
                    CallKind::NewPayload | CallKind::Forkchoice | CallKind::Build => {
                        answered_status(c)
                            .map_or_else(|| gist(&c.answer.to_string()), str::to_owned)
                    }
                    _ => gist(&c.answer.to_string()),
                };
                let mut line = String::new();
                if let Some(case) = run
                    .recordings
                    .iter()
                    .find(|r| r.request_id.as_deref() == Some(&c.id))
                {
                    let votes: Vec<String> = case
                        .votes
                        .iter()
                        .filter(|v| !v.late)
                        .map(|v| format!("{}:{}", v.node, v.status))
                        .collect();
                    let _ = write!(
                        line,
                        "eb box eb [label=\"{t} ms: votes {}\"];\n  ",
                        votes.join(" ")
                    );
                }
                let _ = write!(
                    line,
                    "eb >> cl [label=\"{t} ms: {} {}\"]",
                    escape(&what),
                    escape(&describe(*call))
                );
                line
            }
            Event::Received { el, method, .. } if !method.starts_with("eth_syncing") => {
                format!(
                    "eb -> el{el} [label=\"{t} ms: {}\"]",
                    escape(method.trim_start_matches("engine_"))
                )
            }
            Event::Received { .. } => continue,
            Event::Answered { el, call, text, .. } => {
                if matches!(&run.events[*call], Event::Received { method, .. } if method == "eth_syncing")
                {
                    continue;
                }
                format!("el{el} >> eb [label=\"{t} ms: {}\"]", escape(&gist(text)))
            }
            Event::TimedOut { el, .. } => format!("el{el} -x eb [label=\"{t} ms: timeout\"]"),
            Event::Refused { el, method, .. } => {
                format!(
                    "eb -x el{el} [label=\"{t} ms: refused {}\"]",
                    escape(method.trim_start_matches("engine_"))
                )
            }
        };
        let _ = writeln!(out, "  {line};");
    }
    for v in violations {
        let about = v
            .call
            .map(|i| format!(" (call {})", describe(i)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  cl rbox el{} [label=\"BROKEN {}{}: {}\", textcolour=\"red\"];",
            els - 1,
            v.property,
            escape(&about),
            escape(&v.detail)
        );
    }
    out.push_str("}\n");
    out
}
