//! An EL's health as an explicit state machine: what health checks and live calls last showed.

use serde::Serialize;

/// An EL's health, as the health checks and live traffic see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Not checked yet.
    Unknown,
    /// `eth_syncing` answered `false`.
    Synced,
    /// `eth_syncing` answered a sync status.
    Syncing,
    /// No answer, or an unusable one.
    Offline,
    /// The EL refused eb's token: a wrong `#jwt-secret`, not a dead node.
    AuthFailed,
}

impl NodeState {
    /// Every state, for gauges that show one of them as current.
    pub const ALL: [NodeState; 5] = [
        NodeState::Unknown,
        NodeState::Synced,
        NodeState::Syncing,
        NodeState::Offline,
        NodeState::AuthFailed,
    ];

    /// The state's label in metrics and `/status` (the same as its JSON form).
    pub fn label(self) -> &'static str {
        match self {
            NodeState::Unknown => "unknown",
            NodeState::Synced => "synced",
            NodeState::Syncing => "syncing",
            NodeState::Offline => "offline",
            NodeState::AuthFailed => "auth_failed",
        }
    }

    /// Whether the EL answers usefully (synced or syncing).
    pub fn is_up(self) -> bool {
        matches!(self, NodeState::Synced | NodeState::Syncing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_match_the_json_names() {
        for state in NodeState::ALL {
            let json = serde_json::to_string(&state).expect("json");
            assert_eq!(json, format!("\"{}\"", state.label()));
        }
    }
}
