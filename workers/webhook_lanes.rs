//! How much of the webhook dispatcher each account may hold: posts outstanding at once (its
//! slots) and deliveries claimed but not yet recorded (its share).
//!
//! An account starts at `per_account_in_flight` slots, so one slow endpoint holds back only
//! its own account. An endpoint that answers fast earns more: 64 posts of ~9 ms each carry
//! ~7,000 events/s, less than one busy account makes (5,000 msg/s are 25,000 events/s), and
//! its events would queue for seconds while the machine had room to post them. Speed is an
//! average over the endpoint's recent posts, so a fast endpoint that turns slow stops
//! earning within a few posts: its lane keeps the slots it has until its claimed deliveries
//! are drained, but claims no more than a slow endpoint's share meanwhile.

use crate::domain::AccountId;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// An account may have this many rounds of its slots claimed at once: enough that claiming
/// (a write) is not what limits a fast endpoint, few enough that a slow one holds little.
pub(super) const QUEUED_ROUNDS: u32 = 8;

/// An endpoint whose posts take this long or less on average is fast (posts to a receiver
/// answering at once take ~25 ms on a saturated 2-core machine with 256 outstanding; a slow
/// endpoint takes seconds, or times out)...
const FAST_POST: Duration = Duration::from_millis(250);
/// ...and may have this many times `per_account_in_flight` posts outstanding.
pub(super) const FAST_FACTOR: usize = 4;

pub(super) struct Lanes {
    /// `per_account_in_flight`.
    base: usize,
    /// `in_flight`: claimed and not yet recorded, over all accounts.
    most: usize,
    accounts: HashMap<AccountId, Lane>,
    /// Each account's average post time (answered or not), kept while its lane comes and
    /// goes. One entry per account with a webhook.
    speed: HashMap<AccountId, Duration>,
    total: usize,
}

struct Lane {
    claimed: usize,
    slots: Arc<Semaphore>,
    /// Slots the semaphore was given: it only grows while the lane lives.
    limit: usize,
}

impl Lanes {
    pub(super) fn new(per_account_in_flight: usize, in_flight: usize) -> Self {
        Self {
            base: per_account_in_flight.max(1),
            most: in_flight.max(1),
            accounts: HashMap::new(),
            speed: HashMap::new(),
            total: 0,
        }
    }

    /// Slots the account has earned now.
    fn limit_for(&self, account: &AccountId) -> usize {
        match self.speed.get(account) {
            Some(average) if *average <= FAST_POST => self.base.saturating_mul(FAST_FACTOR),
            _ => self.base,
        }
    }

    /// How many deliveries the next claim may take, and the accounts it must skip (those
    /// holding half their share or more). One claim adds at most half of the smallest share
    /// to an account below half of its own, so none holds more than its share, nor waits for
    /// more than `QUEUED_ROUNDS` rounds of its posts: inside the claim's lease.
    pub(super) fn room(&self) -> (usize, Vec<String>) {
        let rounds = QUEUED_ROUNDS as usize;
        let busy = self
            .accounts
            .iter()
            .filter(|(account, lane)| {
                lane.claimed >= self.limit_for(account).saturating_mul(rounds) / 2
            })
            .map(|(account, _)| account.as_str().to_owned())
            .collect();
        let room = self
            .most
            .saturating_sub(self.total)
            .min(self.base.saturating_mul(rounds) / 2);
        (room, busy)
    }

    /// A delivery of `account` was claimed: answers the slots its post waits for.
    pub(super) fn claimed(&mut self, account: &AccountId) -> Arc<Semaphore> {
        let limit = self.limit_for(account);
        self.total += 1;
        let lane = self
            .accounts
            .entry(account.clone())
            .or_insert_with(|| Lane {
                claimed: 0,
                slots: Arc::new(Semaphore::new(limit)),
                limit,
            });
        lane.claimed += 1;
        if limit > lane.limit {
            lane.slots.add_permits(limit - lane.limit);
            lane.limit = limit;
        }
        Arc::clone(&lane.slots)
    }

    /// A post of `account` was answered (or gave up) after `took`: its place is free, and the
    /// endpoint's speed decides its slots from now on.
    pub(super) fn answered(&mut self, account: &AccountId, took: Duration) {
        match self.speed.get_mut(account) {
            // An average over about the last eight posts.
            Some(average) => *average = average.saturating_mul(7).saturating_add(took) / 8,
            // The account's id is copied once, not at every post.
            None => {
                self.speed.insert(account.clone(), took);
            }
        }
        let limit = self.limit_for(account);
        self.total = self.total.saturating_sub(1);
        let Some(lane) = self.accounts.get_mut(account) else {
            return;
        };
        lane.claimed = lane.claimed.saturating_sub(1);
        if lane.claimed == 0 {
            self.accounts.remove(account);
        } else if limit > lane.limit {
            lane.slots.add_permits(limit - lane.limit);
            lane.limit = limit;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(n: u8) -> AccountId {
        AccountId::from_stored(format!("acc_{n}"))
    }

    #[test]
    fn a_fast_endpoint_earns_more_slots_and_a_slow_one_keeps_the_base() {
        let mut lanes = Lanes::new(4, 1024);
        let (fast, slow) = (account(1), account(2));
        let fast_slots = lanes.claimed(&fast);
        let slow_slots = lanes.claimed(&slow);
        let _ = lanes.claimed(&fast);
        let _ = lanes.claimed(&slow);
        assert_eq!(fast_slots.available_permits(), 4);
        lanes.answered(&fast, Duration::from_millis(5));
        lanes.answered(&slow, Duration::from_secs(2));
        assert_eq!(
            fast_slots.available_permits(),
            16,
            "raised while its lane lives"
        );
        assert_eq!(slow_slots.available_permits(), 4);
        // The next claim may give the fast account four times the slow one's share.
        let (_, busy) = lanes.room();
        assert!(busy.is_empty(), "{busy:?}");
        for _ in 0..15 {
            let _ = lanes.claimed(&fast);
            let _ = lanes.claimed(&slow);
        }
        let (_, busy) = lanes.room();
        assert_eq!(busy, vec![slow.as_str().to_owned()]);
    }

    #[test]
    fn an_endpoint_that_turns_slow_claims_only_a_slow_share() {
        let mut lanes = Lanes::new(4, 1024);
        let fast = account(1);
        for _ in 0..20 {
            let _ = lanes.claimed(&fast);
        }
        lanes.answered(&fast, Duration::from_millis(5));
        assert!(
            lanes.room().1.is_empty(),
            "19 claimed of a fast share of 128"
        );
        for _ in 0..8 {
            lanes.answered(&fast, Duration::from_secs(3));
        }
        // 11 claimed: below a fast share's half (64), above a slow one's (16).
        let _ = lanes.claimed(&fast);
        let _ = lanes.claimed(&fast);
        let _ = lanes.claimed(&fast);
        let _ = lanes.claimed(&fast);
        let _ = lanes.claimed(&fast);
        assert_eq!(lanes.room().1, vec![fast.as_str().to_owned()]);
    }

    #[test]
    fn room_never_passes_the_total_in_flight() {
        let mut lanes = Lanes::new(64, 10);
        for _ in 0..7 {
            let _ = lanes.claimed(&account(1));
        }
        assert_eq!(lanes.room().0, 3);
        lanes.answered(&account(1), Duration::from_millis(1));
        assert_eq!(lanes.room().0, 4);
    }
}
