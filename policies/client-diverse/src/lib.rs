//! Client-diverse policy: VALID only when at least two different EL implementations say so.
//!
//! A bug in one client (a consensus bug in geth, say) can make every node running it agree on a
//! bad block. This policy follows the majority rule of [`policy_sdk::rules`], but answers VALID
//! only when the VALID votes come from at least `clients` distinct client codes (from
//! `engine_getClientVersionV1`; unknown clients do not count) and no counted vote is INVALID.
//!
//! Config: `majority=F` and `quorum=N` as for the default policy, `clients=N` (2 to 8,
//! default 2).
#![cfg_attr(target_arch = "wasm32", no_std)]

use policy_sdk::rules::{self, ConfigError, Rule, REASON_BAD_CONFIG};
use policy_sdk::{ClientCode, Input, Status, Verdict};

/// Reason: VALID majority, but from too few distinct clients.
pub const REASON_TOO_FEW_CLIENTS: u32 = 30;

/// Parsed config: (majority rule, distinct clients required).
pub fn parse_config(config: &[u8]) -> Result<(Rule, usize), ConfigError> {
    let mut rule = Rule::default();
    let mut clients = 2;
    for pair in rules::config_pairs(config) {
        match pair? {
            (b"clients", &[digit]) if (b'2'..=b'8').contains(&digit) => {
                clients = usize::from(digit - b'0');
            }
            (key, value) if rule.set(key, value)? => {}
            _ => return Err(ConfigError),
        }
    }
    Ok((rule, clients))
}

/// Checks the config at load time.
pub fn configure(config: &[u8]) -> Result<(), ConfigError> {
    parse_config(config).map(|_| ())
}

/// The verdict for `input`.
pub fn decide(input: &Input<'_>) -> Verdict {
    let (rule, required) = match parse_config(input.config()) {
        Ok(parsed) => parsed,
        Err(ConfigError) => {
            return Verdict::Syncing {
                reason: REASON_BAD_CONFIG,
            }
        }
    };
    let verdict = rules::majority(input, rule);
    let follows_valid = matches!(verdict, Verdict::Follow { vote, .. }
        if input.vote(usize::from(vote)).is_some_and(|v| v.status == Status::Valid));
    if follows_valid && distinct_valid_clients(input, required) < required {
        return Verdict::Syncing {
            reason: REASON_TOO_FEW_CLIENTS,
        };
    }
    verdict
}

/// How many distinct known clients cast counted VALID votes (counting stops at `enough`).
fn distinct_valid_clients(input: &Input<'_>, enough: usize) -> usize {
    let mut seen = [ClientCode::UNKNOWN; 8];
    let mut distinct = 0;
    for vote in input.votes() {
        let fresh = vote.is_counted()
            && vote.status == Status::Valid
            && vote.client != ClientCode::UNKNOWN
            && !seen[..distinct].contains(&vote.client);
        if let Some(slot) = seen
            .get_mut(distinct)
            .filter(|_| fresh && distinct < enough)
        {
            *slot = vote.client;
            distinct += 1;
        }
    }
    distinct
}

policy_sdk::export_policy!(decide, configure);

#[cfg(test)]
mod tests {
    use super::*;
    use policy_sdk::fixture;

    #[test]
    fn passes_its_fixtures() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
        let cases = fixture::load(&[dir.into()]).expect("fixtures load");
        assert!(cases.len() >= 6);
        let report = fixture::run(&cases, |b| {
            b.decide_native(decide).map_err(|e| e.to_string())
        });
        assert!(report.failures.is_empty(), "{report}");
    }

    #[test]
    fn reads_config() {
        assert_eq!(parse_config(b""), Ok((Rule::default(), 2)));
        let (rule, clients) = parse_config(b"clients=3, majority=0.75").expect("valid");
        assert_eq!((rule.permille, clients), (750, 3));
        assert_eq!(parse_config(b"clients=1"), Err(ConfigError));
        assert_eq!(parse_config(b"clients=9"), Err(ConfigError));
        assert_eq!(parse_config(b"clients=22"), Err(ConfigError));
        assert_eq!(parse_config(b"colour=red"), Err(ConfigError));
    }
}
