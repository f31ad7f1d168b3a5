//! `eb policy new` and `eb policy build`: a policy crate of one's own, outside this repository,
//! from nothing to a tested `.wasm`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the new crate gets the SDK from.
pub enum Sdk {
    /// A path (by default this checkout's `policy-sdk`).
    Path(PathBuf),
    /// A git repository holding the eb workspace.
    Git(String),
}

impl Sdk {
    /// This checkout's SDK, if eb runs from (or was built in) one.
    pub fn from_checkout() -> Result<Sdk, String> {
        let built_in = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy-sdk");
        std::fs::canonicalize(&built_in)
            .map(Sdk::Path)
            .map_err(|_| {
                format!(
                    "no eb checkout at {}: give the SDK with --sdk-path DIR or --sdk-git URL",
                    built_in.display()
                )
            })
    }

    fn dependency(&self, features: &str) -> String {
        let source = match self {
            Sdk::Path(path) => format!("path = {:?}", path.display().to_string()),
            Sdk::Git(url) => format!("git = {url:?}"),
        };
        format!("eb-policy-sdk = {{ {source}{features} }}")
    }
}

const LIB: &str = r#"//! An eb vote policy. eb asks `decide` about the votes of each newPayload / forkchoiceUpdated
//! call (see the SDK's ABI.md); what it returns is the answer the consensus client gets.
#![cfg_attr(target_arch = "wasm32", no_std)]

use policy_sdk::rules::{self, Rule};
use policy_sdk::{Input, Verdict};

/// Reason code for "an EL's vote is missing" (shown in eb's logs, metrics and recordings).
pub const REASON_MISSING: u32 = 100;

/// A stricter rule than eb's default: two thirds of the counted votes and at least two of
/// them must agree, and once every vote is in, any EL that timed out or was cut makes the
/// answer SYNCING (the consensus client stops attesting instead of trusting fewer ELs).
///
/// `ignore_behind: true` (eb's `behind=ignore`) would not count the SYNCING or ACCEPTED vote of
/// an EL that is catching up (after an upgrade, a prune, a resync): with two ELs the synced one
/// then decides alone instead of every answer being SYNCING until the other is back. An INVALID
/// from any EL is still counted, so it never makes a VALID answer.
pub fn decide(input: &Input<'_>) -> Verdict {
    if input.is_final() && input.missing() > 0 {
        return Verdict::Syncing {
            reason: REASON_MISSING,
        };
    }
    rules::majority(
        input,
        Rule {
            permille: 667,
            quorum: 2,
            ignore_behind: false,
        },
    )
}

policy_sdk::export_policy!(decide);

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    #[test]
    fn decides_every_fixture_as_expected() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let cases = policy_sdk::fixture::load(&[dir]).expect("fixtures load");
        let report = policy_sdk::fixture::run(&cases, |ballot| {
            ballot
                .decide_native(super::decide)
                .map_err(|e| e.to_string())
        });
        assert!(report.failures.is_empty(), "{report}");
        assert!(report.passed > 0, "no fixtures ran");
    }
}
"#;

const FIXTURES: &str = r#"{"name": "three VALID: follow the fastest", "votes": [{"node": 0, "status": "VALID", "latency_ms": 12}, {"node": 1, "status": "VALID", "latency_ms": 9}, {"node": 2, "status": "VALID", "latency_ms": 30}], "expect": {"action": "follow", "status": "VALID", "node": 1}}
{"name": "one EL cut: SYNCING", "votes": [{"node": 0, "status": "VALID", "latency_ms": 12}, {"node": 1, "status": "VALID", "latency_ms": 9}, {"node": 2, "status": "CUT", "health": "hung"}], "expect": {"action": "syncing", "reason": 100}}
{"name": "an INVALID beside VALID: SYNCING", "votes": [{"node": 0, "status": "VALID"}, {"node": 1, "status": "VALID"}, {"node": 2, "status": "INVALID", "lvh": "0xaa"}], "expect": {"action": "syncing"}}
{"name": "VALID and SYNCING split: SYNCING", "votes": [{"node": 0, "status": "VALID"}, {"node": 1, "status": "SYNCING"}], "expect": {"action": "syncing"}}
{"name": "still waiting for one", "pending": 1, "votes": [{"node": 0, "status": "VALID"}, {"node": 1, "status": "VALID"}, {"node": 2, "status": "PENDING"}], "expect": {"action": "wait"}}
"#;

/// Writes the crate `name` into `dir/name`; returns what was written, for the operator.
pub fn new(name: &str, dir: &Path, sdk: &Sdk) -> Result<String, String> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        return Err(format!(
            "{name:?} is not a crate name (lowercase letters, digits, - and _, starting with a letter)"
        ));
    }
    let root = dir.join(name);
    if root.exists() {
        return Err(format!("{} exists already", root.display()));
    }
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
{dependency}

[dev-dependencies]
{dev_dependency}

# `eb policy build` builds with this profile: small, no unwinding (a panic is a trap, which eb
# answers SYNCING).
[profile.policy]
inherits = "release"
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"
strip = true
debug = false

# A crate of its own, not a member of an enclosing workspace.
[workspace]
"#,
        dependency = sdk.dependency(""),
        dev_dependency = sdk.dependency(r#", features = ["std"]"#),
    );
    let readme = format!(
        r#"# {name}

An eb vote policy (`src/lib.rs`), with vote fixtures (`fixtures/`) it must decide as they say.

```sh
cargo test                                   # the fixtures, natively
eb policy build .                            # → the .wasm (prints its path and size)
eb policy test --policy <that path> fixtures # the same fixtures through eb's sandbox
```

Then run eb with `--policy <that path>`, or replay a recording of your own traffic first:
`eb policy test --policy <that path> votes.jsonl` (from `eb --record-votes votes.jsonl`).
"#
    );
    let files: [(&str, &str); 5] = [
        ("Cargo.toml", &manifest),
        (
            ".cargo/config.toml",
            "# One 64 KiB page of stack instead of 1 MiB: instantiating the module is ~5x cheaper.\n\
             [target.wasm32-unknown-unknown]\n\
             rustflags = [\"-C\", \"link-arg=-zstack-size=32768\"]\n",
        ),
        ("src/lib.rs", LIB),
        ("fixtures/basic.jsonl", FIXTURES),
        ("README.md", &readme),
    ];
    let mut written = String::new();
    for (path, text) in files {
        let file = root.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&file, text).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        let _ = writeln!(written, "  {}", file.display());
    }
    Ok(format!(
        "created the policy crate {}:\n{written}next: cd {} && cargo test && eb policy build .",
        root.display(),
        root.display()
    ))
}

/// Whether the wasm32-unknown-unknown standard library is installed for `rustc`.
fn wasm_target_installed() -> bool {
    let Ok(out) = Command::new("rustc").args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Path::new(&sysroot)
        .join("lib/rustlib/wasm32-unknown-unknown")
        .is_dir()
}

/// Builds the policy crate in `dir` for wasm32 with its `policy` profile; returns the `.wasm`
/// path and a line saying where it is and how big.
pub fn build(dir: &Path) -> Result<(PathBuf, String), String> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(format!(
            "{}: no Cargo.toml (make one with `eb policy new NAME`)",
            dir.display()
        ));
    }
    if !wasm_target_installed() {
        return Err(
            "the wasm32-unknown-unknown target is not installed; run: rustup target add wasm32-unknown-unknown"
                .to_owned(),
        );
    }
    let metadata = Command::new("cargo")
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !metadata.status.success() {
        return Err(format!(
            "cargo metadata failed:\n{}",
            String::from_utf8_lossy(&metadata.stderr)
        ));
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&metadata.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    let target_dir = metadata["target_directory"].as_str().unwrap_or("target");
    let lib = metadata["packages"][0]["targets"]
        .as_array()
        .and_then(|targets| {
            targets.iter().find(|t| {
                t["crate_types"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"))
            })
        })
        .and_then(|t| t["name"].as_str())
        .ok_or("the crate has no cdylib target (crate-type = [\"cdylib\", \"rlib\"])")?
        .replace('-', "_");
    // In the crate's folder, so its .cargo/config.toml (the stack size) applies.
    let status = Command::new("cargo")
        .args([
            "build",
            "--target",
            "wasm32-unknown-unknown",
            "--profile",
            "policy",
        ])
        .current_dir(dir)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build failed ({status})"));
    }
    let wasm = Path::new(target_dir)
        .join("wasm32-unknown-unknown/policy")
        .join(format!("{lib}.wasm"));
    let size = std::fs::metadata(&wasm)
        .map_err(|e| format!("{}: {e}", wasm.display()))?
        .len();
    let line = format!("{} ({size} bytes)", wasm.display());
    Ok((wasm, line))
}
