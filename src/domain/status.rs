//! A message's status and the only moves it may make.
//!
//! Status moves forward only: queued → sending → sent → delivered → read, or into one of the
//! terminal states. The store repeats this table in its `UPDATE … WHERE status IN (…)` so a
//! late or repeated receipt can never move a message backwards, even from another process.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Queued,
    Sending,
    Sent,
    Delivered,
    Read,
    Failed,
    Undelivered,
    Expired,
    Canceled,
}

use MessageStatus::*;

impl MessageStatus {
    pub const ALL: [MessageStatus; 9] = [
        Queued,
        Sending,
        Sent,
        Delivered,
        Read,
        Failed,
        Undelivered,
        Expired,
        Canceled,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Queued => "queued",
            Sending => "sending",
            Sent => "sent",
            Delivered => "delivered",
            Read => "read",
            Failed => "failed",
            Undelivered => "undelivered",
            Expired => "expired",
            Canceled => "canceled",
        }
    }

    /// The statuses a message may be in just before moving to `self`.
    ///
    /// `read` may follow `sent` directly because WhatsApp reports a message read at once
    /// without a `delivered`; `failed` may follow `sent` because both providers report late
    /// failures that way.
    pub fn predecessors(self) -> &'static [MessageStatus] {
        match self {
            Queued => &[],
            Sending => &[Queued],
            Sent => &[Queued, Sending],
            Delivered => &[Sent],
            Read => &[Sent, Delivered],
            Failed => &[Queued, Sending, Sent],
            Undelivered => &[Sent, Delivered],
            Expired | Canceled => &[Queued, Sending],
        }
    }

    pub fn can_move_to(self, next: MessageStatus) -> bool {
        next.predecessors().contains(&self)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Read | Failed | Undelivered | Expired | Canceled)
    }

    /// A provider accepted the message (and so it was charged). A `failed` that a provider
    /// reported after accepting is the exception this cannot see; it is rare and counted
    /// as not handed over.
    pub fn was_handed_over(self) -> bool {
        matches!(self, Sent | Delivered | Read | Undelivered)
    }

    /// Position in the lifecycle, used to order a message's history.
    pub fn order(self) -> u8 {
        match self {
            Queued => 0,
            Sending => 1,
            Sent => 2,
            Delivered => 3,
            Read => 4,
            Failed | Undelivered | Expired | Canceled => 5,
        }
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_happy_path_moves_forward_one_step_at_a_time() {
        let path = [Queued, Sending, Sent, Delivered, Read];
        for pair in path.windows(2) {
            if let [from, to] = pair {
                assert!(from.can_move_to(*to), "{from} -> {to}");
                assert!(!to.can_move_to(*from), "{to} -> {from} must be refused");
            }
        }
    }

    #[test]
    fn terminal_statuses_never_move() {
        for from in MessageStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in MessageStatus::ALL {
                assert!(!from.can_move_to(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn no_status_moves_to_itself() {
        for s in MessageStatus::ALL {
            assert!(!s.can_move_to(s), "{s}");
        }
    }

    #[test]
    fn whatsapp_may_report_read_without_delivered() {
        assert!(Sent.can_move_to(Read));
        assert!(!Queued.can_move_to(Read));
    }

    #[test]
    fn names_round_trip() {
        for s in MessageStatus::ALL {
            assert_eq!(MessageStatus::parse(s.as_str()), Some(s));
        }
    }
}
