//! `eb policy test` and `eb policy check`.

use crate::policy::{Policy, PolicySource, WasmPolicy};
use policy_sdk::fixture;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn source(path: Option<&Path>) -> PolicySource {
    path.map_or(PolicySource::Embedded, |p| PolicySource::File(p.to_owned()))
}

/// Replays fixtures through a policy. Returns the report text and whether every case passed.
pub fn test(
    policy: Option<&Path>,
    config: &str,
    fixtures: &[PathBuf],
) -> Result<(String, bool), String> {
    let source = source(policy);
    let policy = WasmPolicy::load(&source, config)
        .map_err(|e| format!("policy {} refused: {e}", source.name()))?;
    let cases = fixture::load(fixtures).map_err(|e| e.to_string())?;
    let report = fixture::run(&cases, |ballot| {
        let mut ballot = ballot.clone();
        if ballot.config.is_empty() {
            ballot.config = config.to_owned();
        }
        let decision = policy.decide(&ballot);
        match decision.fault {
            Some(fault) => Err(fault.to_string()),
            None => Ok(decision.verdict),
        }
    });
    let ok = report.failures.is_empty();
    Ok((report.to_string(), ok))
}

/// Loads and validates a policy and reports what the conformance cases measured.
pub fn check(policy: Option<&Path>, config: &str) -> Result<String, String> {
    let source = source(policy);
    let policy = WasmPolicy::load(&source, config)
        .map_err(|e| format!("policy {} refused: {e}", source.name()))?;
    let info = policy.info();
    let conformance = policy.conformance();
    let mut text = String::new();
    let _ = writeln!(text, "policy:      {}", info.name);
    let _ = writeln!(text, "sha256:      {}", info.sha256);
    let _ = writeln!(text, "size:        {} bytes", info.size);
    let _ = writeln!(text, "config:      {:?}", info.config);
    let _ = writeln!(
        text,
        "conformance: {} cases, no faults, at most {} fuel of {}",
        conformance.cases,
        conformance.max_fuel,
        crate::policy::sandbox::FUEL_PER_DECISION
    );
    let _ = write!(text, "ok");
    Ok(text)
}
