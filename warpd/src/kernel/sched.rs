//! The scheduler: which guest thread has the one vCPU, and when it changes.
//!
//! Threads switch only at syscall boundaries: when the running thread
//! waits (a futex), exits, yields, or has made `SLICE` syscalls while
//! another thread could run. The policy is deterministic, and every
//! decision is also an event in the trace (`Outside::schedule`), so a replay
//! that parted from its recording's schedule is a divergence, not a silent
//! difference. Not yet: preemption of a thread that computes without
//! syscalls (it runs until it makes one).

use std::collections::VecDeque;

/// Syscalls a thread makes before another runnable thread gets the vCPU.
pub const SLICE: u32 = 64;

#[derive(Debug, Default)]
pub struct Scheduler {
    /// Runnable threads waiting for the vCPU, first come first served.
    queue: VecDeque<u32>,
    /// Syscalls the running thread has made since it got the vCPU.
    ran: u32,
}

impl Scheduler {
    /// `tid` can run (new, woken, or switched away from while runnable).
    pub fn ready(&mut self, tid: u32) {
        if !self.queue.contains(&tid) {
            self.queue.push_back(tid);
        }
    }

    /// Forgets `tid` (it exited).
    pub fn remove(&mut self, tid: u32) {
        self.queue.retain(|&t| t != tid);
    }

    /// Counts a syscall of the running thread; true when its slice is over
    /// (a new one starts: the caller switches or lets it run on).
    pub fn tick(&mut self) -> bool {
        self.ran += 1;
        if self.ran >= SLICE {
            self.ran = 0;
            return true;
        }
        false
    }

    /// Whether a thread other than the running one could run.
    pub fn others_ready(&self) -> bool {
        !self.queue.is_empty()
    }

    /// The thread that gets the vCPU next, if any is ready.
    pub fn pick(&mut self) -> Option<u32> {
        let t = self.queue.pop_front()?;
        self.ran = 0;
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_by_slices() {
        let mut s = Scheduler::default();
        for _ in 0..SLICE - 1 {
            assert!(!s.tick());
        }
        assert!(s.tick(), "the slice is over");
        assert!(!s.tick(), "and a new one began");
        assert!(!s.others_ready(), "alone, a thread runs on");
        s.ready(2);
        s.ready(3);
        s.ready(2);
        assert!(s.others_ready());
        assert_eq!(s.pick(), Some(2));
        s.ready(1);
        assert_eq!((s.pick(), s.pick(), s.pick()), (Some(3), Some(1), None));
        s.ready(5);
        s.remove(5);
        assert!(!s.others_ready());
    }
}
