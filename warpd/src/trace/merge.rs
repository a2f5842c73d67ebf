//! The output of a replayed process tree, in the order it was recorded.
//!
//! Every process replays on a thread of its own, and each finds its own
//! writes to the original stdout and stderr in its own events. The
//! brokers numbered those writes across the whole tree as they happened
//! (`BrokerCall.order`: 1, 2, 3...), so a write is sent on only when every
//! write numbered before it has been; within a process, writes go in their
//! own order (those without a number, from the exitless ring before the
//! tree's first fork, go as soon as what the process wrote before them).
//! A numbered call that sent nothing still takes its turn.
//!
//! ```text
//!  process k's replayer --put(k, order, bytes)--> queues (one per process)
//!      -> the head of a queue goes when its order is `next` (or it has none)
//!      -> ReplayOutput to warpctl
//!  the end of the replay: whatever is left, by order (a process that
//!  stopped early leaves gaps)
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc::Sender;
use std::sync::Mutex;

use super::replay::ReplayOutput;

/// One process's output not sent yet: (order, what it sent, if anything).
type Queue = VecDeque<(u64, Option<ReplayOutput>)>;

pub struct Merger {
    out: Sender<ReplayOutput>,
    state: Mutex<State>,
}

struct State {
    next: u64,
    queues: BTreeMap<usize, Queue>,
}

impl Merger {
    pub fn new(out: Sender<ReplayOutput>) -> Self {
        Merger { out, state: Mutex::new(State { next: 1, queues: BTreeMap::new() }) }
    }

    /// Process `proc`'s next output (None: a numbered call that sent nothing).
    pub fn put(&self, proc: usize, order: u64, output: Option<ReplayOutput>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.queues.entry(proc).or_default().push_back((order, output));
        let State { next, queues } = &mut *s;
        loop {
            let mut sent = false;
            for q in queues.values_mut() {
                while let Some(&(order, _)) = q.front() {
                    // Numbers below `next` were left behind by a flush.
                    if order != 0 && order > *next {
                        break;
                    }
                    if order != 0 {
                        *next = order + 1;
                    }
                    if let Some((_, Some(o))) = q.pop_front() {
                        let _ = self.out.send(o);
                    }
                    sent = true;
                }
            }
            if !sent {
                break;
            }
        }
    }

    /// Sends what is left, by order: the replay is over.
    pub fn flush(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut left: Vec<(u64, usize, usize, ReplayOutput)> = Vec::new();
        for (&proc, q) in s.queues.iter_mut() {
            for (i, (order, o)) in q.drain(..).enumerate() {
                if let Some(o) = o {
                    left.push((order, proc, i, o));
                }
            }
        }
        left.sort_by_key(|&(order, proc, i, _)| (order, proc, i));
        for (order, _, _, o) in left {
            s.next = s.next.max(order + 1);
            let _ = self.out.send(o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(o: ReplayOutput) -> String {
        match o {
            ReplayOutput::Stdout(b) | ReplayOutput::Stderr(b) => String::from_utf8(b).unwrap(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn outputs_go_in_the_recorded_order_whatever_order_they_arrive_in() {
        let (tx, rx) = std::sync::mpsc::channel();
        let m = Merger::new(tx);
        let out = |s: &str| Some(ReplayOutput::Stdout(s.as_bytes().to_vec()));
        m.put(1, 3, out("c"));
        m.put(1, 0, out("d")); // behind its own process's "c"
        m.put(0, 0, out("a")); // no number, nothing before it: at once
        m.put(2, 2, None); // a numbered call that printed nothing
        m.put(0, 1, out("b"));
        m.put(0, 5, out("f"));
        m.put(2, 4, out("e"));
        let got: Vec<String> = rx.try_iter().map(text).collect();
        assert_eq!(got.concat(), "abcdef");
        // A gap (7 never comes) holds 8 back until the end.
        m.put(1, 8, out("h"));
        assert_eq!(rx.try_iter().count(), 0);
        m.put(0, 6, out("g"));
        m.flush();
        assert_eq!(rx.try_iter().map(text).collect::<Vec<_>>().concat(), "gh");
    }
}
