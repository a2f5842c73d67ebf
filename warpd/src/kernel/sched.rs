//! The scheduler: which guest thread has the one vCPU, and when it changes.
//!
//! Threads switch at syscall boundaries, when the running thread waits (a
//! futex), exits, yields, or has made `SLICE` syscalls while another thread
//! could run, and inside computation when its time slice runs out (the
//! exit loop takes an interrupt point: `crate::interrupts`). The policy is
//! deterministic given the trace (time slices are recorded as `SliceEnd`
//! and `Interrupt` events), and every decision is also an event
//! (`Outside::schedule`), so a replay that parted from its recording's
//! schedule is a divergence, not a silent difference.
//!
//! Chaos mode (`warpctl record --chaos`) picks a random ready thread and
//! random syscall budgets from a seeded generator; the seed is in the
//! trace, so replay draws the same numbers at the same decisions.

use std::collections::VecDeque;

/// Syscalls a thread makes before another runnable thread gets the vCPU.
pub const SLICE: u32 = 64;

#[derive(Clone, Debug, Default)]
pub struct Scheduler {
    /// Runnable threads waiting for the vCPU, first come first served.
    queue: VecDeque<u32>,
    /// Syscalls the running thread has made since it got the vCPU.
    ran: u32,
    /// Chaos mode's generator and the running thread's syscall budget.
    chaos: Option<(Rng, u32)>,
}

/// A small seeded generator (splitmix64): the same seed, the same draws.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A number in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Scheduler {
    /// Whether picks are drawn at random (every syscall may be a pick).
    pub fn is_chaos(&self) -> bool {
        self.chaos.is_some()
    }

    /// A chaos-mode scheduler drawing from `seed`.
    pub fn chaos(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let budget = 1 + rng.below(2 * SLICE as u64) as u32;
        Scheduler { chaos: Some((rng, budget)), ..Default::default() }
    }

    /// Forgets every thread (execve leaves one); chaos mode goes on.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.ran = 0;
    }

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
        let limit = self.chaos.as_ref().map_or(SLICE, |c| c.1);
        if self.ran >= limit {
            self.ran = 0;
            if let Some((rng, budget)) = &mut self.chaos {
                *budget = 1 + rng.below(2 * SLICE as u64) as u32;
            }
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
        let t = match &mut self.chaos {
            Some((rng, _)) if !self.queue.is_empty() => {
                let i = rng.below(self.queue.len() as u64) as usize;
                self.queue.remove(i)?
            }
            _ => self.queue.pop_front()?,
        };
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

    #[test]
    fn chaos_draws_the_same_from_the_same_seed() {
        let run = |seed| {
            let mut s = Scheduler::chaos(seed);
            let mut picks = Vec::new();
            for round in 0..50 {
                for t in 1..=4 {
                    s.ready(t);
                }
                picks.push(s.pick().unwrap());
                let ticks = (0..200).take_while(|_| !s.tick()).count();
                picks.push(ticks as u32 + round);
            }
            picks
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        // Not always the first ready thread.
        assert!(run(7).iter().step_by(2).any(|&t| t != 1));
    }
}
