//! [`LocalView`]: the view in this process, with the same answers as the Redis view.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::Poll;
use crate::line::Line;

/// Every queue's view behind one lock. Each operation holds it for a lookup and O(log n)
/// work (a rebuild for O(n)), never across an `.await`, so queues do not wait on each other
/// long enough to matter, and an operation on several members is atomic for free.
#[derive(Debug, Default)]
pub(crate) struct LocalView {
    queues: Mutex<HashMap<u64, Queue>>,
}

#[derive(Debug, Default)]
struct Queue {
    line: Line,
    /// Each waiting member's join order.
    seq: HashMap<u64, i64>,
    /// Each waiting member's last poll.
    seen: HashMap<u64, i64>,
    /// Each admitted member's end of admission.
    active: HashMap<u64, i64>,
}

impl Queue {
    fn leave_line(&mut self, member: u64) {
        if let Some(seq) = self.seq.remove(&member) {
            self.line.remove((seq, member));
        }
        self.seen.remove(&member);
    }
}

impl LocalView {
    fn queues(&self) -> MutexGuard<'_, HashMap<u64, Queue>> {
        // Nothing panics while the lock is held; if something did, the maps are still
        // well-formed, so the view stays usable.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn poll(&self, queue: u64, member: u64, now_ms: i64) -> Poll {
        let mut queues = self.queues();
        let Some(queue) = queues.get_mut(&queue) else {
            return Poll::Unknown;
        };
        if let Some(&expires_ms) = queue.active.get(&member)
            && expires_ms > now_ms
        {
            return Poll::Active { expires_ms };
        }
        let Some(&seq) = queue.seq.get(&member) else {
            return Poll::Absent;
        };
        queue.seen.insert(member, now_ms);
        match queue.line.ahead((seq, member)) {
            Some(ahead) => Poll::Waiting {
                position: ahead as u64 + 1,
            },
            None => Poll::Absent,
        }
    }

    pub(crate) fn add_waiting(&self, queue: u64, member: u64, seq: i64, now_ms: i64) {
        let mut queues = self.queues();
        let Some(queue) = queues.get_mut(&queue) else {
            return;
        };
        if queue
            .active
            .get(&member)
            .is_some_and(|&expires| expires > now_ms)
        {
            return;
        }
        queue.active.remove(&member);
        if let Some(old) = queue.seq.insert(member, seq) {
            queue.line.remove((old, member));
        }
        queue.line.insert((seq, member));
        queue.seen.insert(member, now_ms);
    }

    pub(crate) fn activate(&self, queue: u64, admitted: &[(u64, i64)]) {
        let mut queues = self.queues();
        let Some(queue) = queues.get_mut(&queue) else {
            return;
        };
        for &(member, expires_ms) in admitted {
            queue.leave_line(member);
            queue.active.insert(member, expires_ms);
        }
    }

    pub(crate) fn remove(&self, queue: u64, members: &[u64]) {
        let mut queues = self.queues();
        let Some(queue) = queues.get_mut(&queue) else {
            return;
        };
        for member in members {
            queue.leave_line(*member);
            queue.active.remove(member);
        }
    }

    pub(crate) fn idle(&self, queue: u64, seen_before_ms: i64) -> Vec<u64> {
        let queues = self.queues();
        let Some(queue) = queues.get(&queue) else {
            return Vec::new();
        };
        // A scan, but of a scheduler's periodic question, not of a poll.
        let mut idle: Vec<(i64, u64)> = queue
            .seen
            .iter()
            .filter(|(_, seen)| **seen < seen_before_ms)
            .map(|(member, seen)| (*seen, *member))
            .collect();
        idle.sort_unstable();
        idle.into_iter().map(|(_, member)| member).collect()
    }

    pub(crate) fn rebuild(
        &self,
        queue: u64,
        waiting: &[(u64, i64)],
        active: &[(u64, i64)],
        now_ms: i64,
    ) {
        let mut queues = self.queues();
        let old_seen = queues
            .remove(&queue)
            .map(|old| old.seen)
            .unwrap_or_default();
        let seen = waiting
            .iter()
            .map(|(member, _)| (*member, old_seen.get(member).copied().unwrap_or(now_ms)))
            .collect();
        // From the map, so a member listed twice waits once (at its last seq), as in Redis.
        let seq: HashMap<u64, i64> = waiting.iter().copied().collect();
        let rebuilt = Queue {
            line: Line::from_places(seq.iter().map(|(m, seq)| (*seq, *m)).collect()),
            seq,
            seen,
            active: active.iter().copied().collect(),
        };
        queues.insert(queue, rebuilt);
    }

    pub(crate) fn counts(&self, queue: u64, now_ms: i64) -> (u64, u64) {
        let queues = self.queues();
        let Some(queue) = queues.get(&queue) else {
            return (0, 0);
        };
        let active = queue.active.values().filter(|&&e| e > now_ms).count();
        (queue.line.len() as u64, active as u64)
    }
}
