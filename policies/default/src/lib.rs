//! eb's default policy: the 0.6-majority rule ([`policy_sdk::rules`] documents it).
//!
//! Config: `majority=F` with `0.5 ≤ F ≤ 1` and at most three decimals (default 0.6), e.g.
//! `--policy-config majority=0.67` or executionbackup's `--fcu-majority 0.67`; `quorum=N`
//! (default 1): fewer counted votes than that is Syncing.
#![cfg_attr(target_arch = "wasm32", no_std)]

use policy_sdk::rules::{self, ConfigError, Rule, REASON_BAD_CONFIG};
use policy_sdk::{Input, Verdict};

/// The verdict for `input`.
pub fn decide(input: &Input<'_>) -> Verdict {
    match Rule::parse(input.config()) {
        Ok(rule) => rules::majority(input, rule),
        Err(ConfigError) => Verdict::Syncing {
            reason: REASON_BAD_CONFIG,
        },
    }
}

/// Checks the config at load time (`eb_configure`).
pub fn configure(config: &[u8]) -> Result<(), ConfigError> {
    Rule::parse(config).map(|_| ())
}

policy_sdk::export_policy!(decide, configure);
