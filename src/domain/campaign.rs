//! A campaign's lifecycle.
//!
//! `scheduled → running → completed`, with `paused` reachable from the first two (by request,
//! or by the fan-out when money or the daily limit runs out) and `canceled` from any state
//! that is not finished. The store writes each move as an UPDATE naming the allowed current
//! states, so two racing requests cannot both win.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    /// Waiting for its `scheduled_at`.
    Scheduled,
    /// Being expanded into messages and sent.
    Running,
    Paused,
    /// Every recipient was messaged and no message is waiting any more.
    Completed,
    Canceled,
}

impl CampaignStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "scheduled" => Self::Scheduled,
            "running" => Self::Running,
            "paused" => Self::Paused,
            "completed" => Self::Completed,
            "canceled" => Self::Canceled,
            _ => return None,
        })
    }

    /// The states `next` may be entered from.
    pub fn predecessors(next: CampaignStatus) -> &'static [CampaignStatus] {
        use CampaignStatus::*;
        match next {
            Scheduled => &[Paused],
            Running => &[Scheduled, Paused],
            Paused => &[Scheduled, Running],
            Completed => &[Running],
            Canceled => &[Scheduled, Running, Paused],
        }
    }

    pub fn can_move_to(self, next: CampaignStatus) -> bool {
        Self::predecessors(next).contains(&self)
    }
}

/// Why a campaign is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    /// Someone asked for it (API or CLI).
    Requested,
    /// The next batch could not be paid for; resume after a top-up.
    InsufficientBalance,
    /// The account's daily limit is used up; resume tomorrow.
    DailyLimitExceeded,
}

impl PauseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::InsufficientBalance => "insufficient_balance",
            Self::DailyLimitExceeded => "daily_limit_exceeded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "requested" => Self::Requested,
            "insufficient_balance" => Self::InsufficientBalance,
            "daily_limit_exceeded" => Self::DailyLimitExceeded,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::CampaignStatus::*;

    #[test]
    fn finished_campaigns_never_move_again() {
        for next in [Scheduled, Running, Paused, Completed, Canceled] {
            assert!(!Completed.can_move_to(next));
            assert!(!Canceled.can_move_to(next));
        }
        assert!(Running.can_move_to(Paused));
        assert!(Paused.can_move_to(Running));
        assert!(Paused.can_move_to(Canceled));
        assert!(
            !Paused.can_move_to(Completed),
            "a paused campaign is not done"
        );
    }
}
