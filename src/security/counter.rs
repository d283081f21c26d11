//! Invocation (frame) counter checking (Green Book 9.2.7.2.4; dlms-facts.md 4.1):
//! a receiver accepts a counter only if it is not below the lowest acceptable
//! value, and then sets the lowest acceptable value to the counter plus one.
//! So an exact replay (an equal counter) is rejected.

/// The outcome of checking a received invocation counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterCheck {
    /// Accepted; the guard moved on.
    Accepted,
    /// Rejected: the counter is below the lowest acceptable value, which is given.
    Replayed { lowest_acceptable: u32 },
    /// Rejected: the previous counter was 0xFFFFFFFF, so the key is exhausted.
    Exhausted,
}

/// Tracks the lowest acceptable invocation counter for one key and direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayGuard {
    /// The lowest acceptable value; `None` once 0xFFFFFFFF has been accepted.
    lowest: Option<u32>,
    exhausted: bool,
}

impl Default for ReplayGuard {
    /// A fresh guard (accepts any counter first), as [`ReplayGuard::new`].
    fn default() -> Self {
        ReplayGuard::new()
    }
}

impl ReplayGuard {
    /// A guard that accepts any counter first.
    pub fn new() -> Self {
        ReplayGuard {
            lowest: Some(0),
            exhausted: false,
        }
    }

    /// A guard whose lowest acceptable value is `lowest`.
    pub fn starting_at(lowest: u32) -> Self {
        ReplayGuard {
            lowest: Some(lowest),
            exhausted: false,
        }
    }

    /// The lowest acceptable value, or `None` when the key is exhausted.
    pub fn lowest_acceptable(&self) -> Option<u32> {
        if self.exhausted { None } else { self.lowest }
    }

    /// Checks `ic` without changing the guard.
    pub fn peek(&self, ic: u32) -> CounterCheck {
        match self.lowest_acceptable() {
            None => CounterCheck::Exhausted,
            Some(l) if ic < l => CounterCheck::Replayed {
                lowest_acceptable: l,
            },
            Some(_) => CounterCheck::Accepted,
        }
    }

    /// Checks `ic` and, when accepted, moves the lowest acceptable value to `ic + 1`.
    pub fn check(&mut self, ic: u32) -> CounterCheck {
        let r = self.peek(ic);
        if r == CounterCheck::Accepted {
            match ic.checked_add(1) {
                Some(n) => self.lowest = Some(n),
                None => self.exhausted = true,
            }
        }
        r
    }

    /// Records `ic` as seen without checking it (a simulator quirk that accepts
    /// replays still moves its guard on). Never lowers the guard.
    pub fn force(&mut self, ic: u32) {
        match ic.checked_add(1) {
            Some(n) => self.lowest = Some(n.max(self.lowest.unwrap_or(0))),
            None => self.exhausted = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_an_exact_replay_and_a_lower_counter() {
        let mut g = ReplayGuard::new();
        assert_eq!(g.check(5), CounterCheck::Accepted);
        assert_eq!(
            g.check(5),
            CounterCheck::Replayed {
                lowest_acceptable: 6
            }
        );
        assert_eq!(
            g.check(4),
            CounterCheck::Replayed {
                lowest_acceptable: 6
            }
        );
        assert_eq!(g.check(6), CounterCheck::Accepted);
        // Gaps are allowed.
        assert_eq!(g.check(100), CounterCheck::Accepted);
        assert_eq!(g.lowest_acceptable(), Some(101));
    }

    #[test]
    fn accepts_the_first_counter_at_the_starting_value() {
        let mut g = ReplayGuard::starting_at(10);
        assert!(matches!(g.check(9), CounterCheck::Replayed { .. }));
        assert_eq!(g.check(10), CounterCheck::Accepted);
    }

    #[test]
    fn default_is_fresh_not_exhausted() {
        assert_eq!(ReplayGuard::default(), ReplayGuard::new());
        assert_eq!(ReplayGuard::default().check(0), CounterCheck::Accepted);
    }

    #[test]
    fn rejects_everything_after_the_maximum() {
        let mut g = ReplayGuard::new();
        assert_eq!(g.check(u32::MAX), CounterCheck::Accepted);
        assert_eq!(g.check(u32::MAX), CounterCheck::Exhausted);
        assert_eq!(g.check(0), CounterCheck::Exhausted);
    }
}
