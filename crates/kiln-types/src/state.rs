//! The instance lifecycle as EC2 defines it: each state's name and code, and which
//! transitions are legal. Every state change in Kiln is a compare-and-set from one of
//! these to another that `can_become` allows.

use std::fmt;
use std::str::FromStr;

/// An instance's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    Pending,
    Running,
    ShuttingDown,
    Terminated,
    Stopping,
    Stopped,
}

impl InstanceState {
    pub const ALL: [InstanceState; 6] =
        [Self::Pending, Self::Running, Self::ShuttingDown, Self::Terminated, Self::Stopping, Self::Stopped];

    /// The name EC2 prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::ShuttingDown => "shutting-down",
            Self::Terminated => "terminated",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
        }
    }

    /// EC2's state code (the low byte; the high byte is always 0 here).
    pub fn code(self) -> i64 {
        match self {
            Self::Pending => 0,
            Self::Running => 16,
            Self::ShuttingDown => 32,
            Self::Terminated => 48,
            Self::Stopping => 64,
            Self::Stopped => 80,
        }
    }

    /// Whether an instance in this state may move to `to`:
    /// pending → running | stopping | shutting-down;
    /// running → stopping | stopped (the guest powered off) | shutting-down;
    /// stopping → stopped | shutting-down; stopped → pending | shutting-down;
    /// shutting-down → terminated; terminated is final.
    pub fn can_become(self, to: InstanceState) -> bool {
        use InstanceState::*;
        matches!(
            (self, to),
            (Pending, Running | Stopping | ShuttingDown)
                | (Running, Stopping | Stopped | ShuttingDown)
                | (Stopping, Stopped | ShuttingDown)
                | (Stopped, Pending | ShuttingDown)
                | (ShuttingDown, Terminated)
        )
    }

    /// Whether the instance holds host capacity (vCPUs and memory) in this state.
    pub fn holds_capacity(self) -> bool {
        !matches!(self, Self::Stopped | Self::Terminated)
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of EC2's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown instance state '{0}'")]
pub struct UnknownState(pub String);

impl FromStr for InstanceState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| UnknownState(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip() {
        for s in InstanceState::ALL {
            assert_eq!(s.as_str().parse::<InstanceState>(), Ok(s));
        }
        assert_eq!(InstanceState::Running.code(), 16);
        assert_eq!(InstanceState::Stopped.code(), 80);
        assert!("Running".parse::<InstanceState>().is_err());
        assert!("".parse::<InstanceState>().is_err());
    }

    #[test]
    fn terminated_is_final_and_nothing_returns_to_itself() {
        for s in InstanceState::ALL {
            assert!(!InstanceState::Terminated.can_become(s));
            assert!(!s.can_become(s), "{s} → {s}");
        }
    }

    #[test]
    fn every_state_but_terminated_can_be_terminated() {
        use InstanceState::*;
        for s in InstanceState::ALL {
            let reaches = s == ShuttingDown || s.can_become(ShuttingDown);
            assert_eq!(reaches, s != Terminated, "{s}");
        }
        assert!(ShuttingDown.can_become(Terminated));
        // Only shutting-down reaches terminated; only stopped starts again.
        for s in InstanceState::ALL {
            assert_eq!(s.can_become(Terminated), s == ShuttingDown);
            assert_eq!(s.can_become(Pending), s == Stopped);
        }
    }
}
