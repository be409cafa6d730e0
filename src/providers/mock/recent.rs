//! The ids the mock accepted within its idempotency window, kept in generations.
//!
//! A hash set that forgets ids one by one as fast as it learns new ones fills with
//! tombstones, and hashbrown then doubles it (it rehashes in place only while at most half
//! full): a 60-second memory at 1,000 msg/s grew from 1.2 to 2.4 MB after its first minute,
//! beside a queue of acceptance times that grew by doubling too. Here each generation holds
//! the ids of a quarter of the window; a generation whose ids are all older than the window
//! is emptied whole and reused for new ids, so in a steady stream the sets keep their size.

use std::collections::{HashSet, VecDeque};

/// Generations per window: an id is remembered for the window and at most a quarter more.
const PER_WINDOW: i64 = 4;

pub(super) struct Recent {
    window_ms: i64,
    /// How long a generation takes new ids.
    span_ms: i64,
    /// Oldest first: when each generation began taking ids, and its ids.
    generations: VecDeque<(i64, HashSet<u64>)>,
    /// The last generation forgotten, emptied, for the next one to begin.
    spare: HashSet<u64>,
}

impl Recent {
    pub(super) fn new(window_ms: i64) -> Recent {
        Recent {
            window_ms,
            span_ms: (window_ms / PER_WINDOW).max(1),
            generations: VecDeque::new(),
            spare: HashSet::new(),
        }
    }

    pub(super) fn contains(&self, id: u64) -> bool {
        self.generations.iter().any(|(_, ids)| ids.contains(&id))
    }

    /// Remembers `id`, accepted at `at_ms`; false when it was already remembered.
    pub(super) fn insert(&mut self, id: u64, at_ms: i64) -> bool {
        if self.contains(id) {
            return false;
        }
        // An id stamped a little before the newest generation began (another thread took
        // the time first) joins it, and is remembered a little longer: never shorter.
        let open = matches!(self.generations.back(),
            Some((began, _)) if at_ms < began.saturating_add(self.span_ms));
        if !open {
            let ids = std::mem::take(&mut self.spare);
            self.generations.push_back((at_ms, ids));
        }
        if let Some((_, ids)) = self.generations.back_mut() {
            ids.insert(id);
        }
        true
    }

    /// Forgets every generation whose ids were all accepted more than the window before
    /// `now_ms`.
    pub(super) fn forget_before(&mut self, now_ms: i64) {
        let horizon = now_ms.saturating_sub(self.window_ms);
        while let Some((began, _)) = self.generations.front() {
            if began.saturating_add(self.span_ms) > horizon {
                break;
            }
            if let Some((_, mut ids)) = self.generations.pop_front() {
                ids.clear();
                self.spare = ids;
            }
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.generations.iter().map(|(_, ids)| ids.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_remembered_for_the_window_and_at_most_a_quarter_more() {
        let mut recent = Recent::new(1_000);
        // One id every 10 ms for 3 s.
        for i in 0..300u64 {
            let at = i64::try_from(i).unwrap_or(0) * 10;
            recent.forget_before(at);
            assert!(recent.insert(i, at));
            assert!(!recent.insert(i, at), "an id remembered is not new");
        }
        recent.forget_before(3_000);
        // Accepted at 2,000 ms or later: within the window, all remembered.
        assert!((200..300).all(|i| recent.contains(i)));
        // Older than the window by more than a quarter of it: all forgotten.
        assert!((0..175).all(|i| !recent.contains(i)));
        assert!(recent.len() <= 125, "{} ids remembered", recent.len());
    }

    #[test]
    fn a_steady_stream_keeps_its_memory_size() {
        let mut recent = Recent::new(1_000);
        let mut most = 0;
        for i in 0..10_000u64 {
            let at = i64::try_from(i).unwrap_or(0);
            recent.forget_before(at);
            recent.insert(i, at);
            if i == 2_000 {
                most = recent.generations.iter().map(|(_, s)| s.capacity()).sum();
            }
        }
        let now: usize = recent.generations.iter().map(|(_, s)| s.capacity()).sum();
        assert_eq!(
            now, most,
            "the sets kept their size after the first two windows"
        );
    }
}
