//! Ordered bookkeeping of received STATE messages until they may be echoed.
//!
//! The protocol's rule: a state may be echoed only when every record received before it is
//! durably committed, and states are echoed in the order they were received. [`StateTracker`]
//! keeps them in arrival order and releases the longest prefix whose streams are all committed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Which streams a state covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Covers {
    /// GLOBAL and LEGACY states: every stream.
    All,
    /// A STREAM state of a configured stream (index in the catalog).
    Stream(usize),
    /// A STREAM state of a stream not in the catalog (its records were rejected).
    UnknownStream,
}

/// A received state, ready to echo.
#[derive(Debug, Clone)]
pub struct PendingState {
    /// The exact line to print (the received state plus `destinationStats`).
    pub echo: String,
    /// What it covers.
    pub covers: Covers,
    /// SHA-256 of the received state, recorded in the commit that covers it.
    pub sha256: String,
    /// When it arrived.
    pub arrived: Instant,
}

/// States waiting for their commit, in arrival order.
#[derive(Debug, Default)]
pub struct StateTracker {
    queue: VecDeque<PendingState>,
    /// States echoed so far.
    pub echoed: u64,
}

impl StateTracker {
    /// Queues a state.
    pub fn push(&mut self, state: PendingState) {
        self.queue.push_back(state);
    }

    /// Number of states waiting.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Age of the oldest waiting state.
    pub fn oldest_age(&self) -> Option<Duration> {
        self.queue.front().map(|s| s.arrived.elapsed())
    }

    /// Hash of the newest waiting state (the last one a commit made now would cover).
    pub fn newest_sha256(&self) -> Option<String> {
        self.queue.back().map(|s| s.sha256.clone())
    }

    /// Pops, in order, the states none of whose streams is `held` back.
    pub fn release(&mut self, held: impl Fn(Covers) -> bool) -> Vec<PendingState> {
        let mut out = Vec::new();
        while let Some(front) = self.queue.front() {
            if held(front.covers) {
                break;
            }
            if let Some(state) = self.queue.pop_front() {
                out.push(state);
            }
        }
        self.echoed += out.len() as u64;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(covers: Covers, n: u64) -> PendingState {
        PendingState { echo: format!("s{n}"), covers, sha256: format!("h{n}"), arrived: Instant::now() }
    }

    #[test]
    fn releases_in_order_and_stops_at_a_held_stream() {
        let mut t = StateTracker::default();
        t.push(state(Covers::Stream(0), 1));
        t.push(state(Covers::Stream(1), 2));
        t.push(state(Covers::Stream(0), 3));
        assert_eq!(t.newest_sha256().as_deref(), Some("h3"));
        let out = t.release(|c| c == Covers::Stream(1));
        assert_eq!(out.iter().map(|s| s.echo.as_str()).collect::<Vec<_>>(), ["s1"]);
        let out = t.release(|_| false);
        assert_eq!(out.iter().map(|s| s.echo.as_str()).collect::<Vec<_>>(), ["s2", "s3"]);
        assert_eq!(t.echoed, 3);
        assert_eq!(t.pending(), 0);
    }
}
