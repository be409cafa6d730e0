//! How long a poller that finds nothing waits before it looks again.

use std::time::Duration;

/// Looks that find nothing in a row after which the wait stops growing: the interval, then
/// twice, four and eight times it.
const DOUBLINGS: u32 = 3;

/// The wait of a poller (webhook dispatch, campaign fan-out) between looks: its interval
/// while it finds work, doubling with each look that finds none, up to eight times the
/// interval. An idle process then asks the database a few times a second instead of 10–20
/// (on PostgreSQL, where every statement counts, those looks were a tenth of all statements
/// per message dispatched), and anything new waits at most the longest wait.
#[derive(Debug)]
pub(super) struct IdlePoll {
    interval: Duration,
    empty: u32,
}

impl IdlePoll {
    pub(super) fn new(interval: Duration) -> Self {
        IdlePoll { interval, empty: 0 }
    }

    /// Records what the last look found.
    pub(super) fn found(&mut self, work: bool) {
        self.empty = if work {
            0
        } else {
            (self.empty + 1).min(DOUBLINGS)
        };
    }

    /// How long to wait before the next look.
    pub(super) fn wait(&self) -> Duration {
        self.interval.saturating_mul(1 << self.empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_while_nothing_is_found_up_to_eight_times_and_resets_on_work() {
        let mut poll = IdlePoll::new(Duration::from_millis(50));
        assert_eq!(poll.wait(), Duration::from_millis(50));
        let mut waits = Vec::new();
        for _ in 0..5 {
            poll.found(false);
            waits.push(poll.wait().as_millis());
        }
        assert_eq!(waits, [100, 200, 400, 400, 400]);
        poll.found(true);
        assert_eq!(poll.wait(), Duration::from_millis(50));
    }
}
