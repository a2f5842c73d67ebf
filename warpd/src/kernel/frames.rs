//! Allocation of guest-memory frames (4 KiB pages of the guest memfd).
//!
//! Free space is kept as extents so that a 1 GiB mapping costs one entry,
//! and allocation prefers one contiguous run: contiguous frames make the
//! broker's I/O a single range.

use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct FrameAllocator {
    /// start frame -> number of free frames from there.
    free: BTreeMap<u64, u64>,
    free_count: u64,
    /// One past the highest frame ever handed out.
    high: u64,
}

impl FrameAllocator {
    pub fn new(frames: u64) -> Self {
        let mut free = BTreeMap::new();
        if frames > 0 {
            free.insert(0, frames);
        }
        FrameAllocator { free, free_count: frames, high: 0 }
    }

    /// One past the highest frame ever handed out: no frame above it was
    /// ever written.
    pub fn high_water(&self) -> u64 {
        self.high
    }

    pub fn free_count(&self) -> u64 {
        self.free_count
    }

    /// Allocates `n` frames, as few runs as possible (first fit for a single
    /// run, else the runs in address order). None when not enough are free.
    pub fn alloc(&mut self, n: u64) -> Option<Vec<(u64, u64)>> {
        if n == 0 {
            return Some(Vec::new());
        }
        if n > self.free_count {
            return None;
        }
        if let Some((&start, &len)) = self.free.iter().find(|(_, &len)| len >= n) {
            self.free.remove(&start);
            if len > n {
                self.free.insert(start + n, len - n);
            }
            self.free_count -= n;
            self.high = self.high.max(start + n);
            return Some(vec![(start, n)]);
        }
        let mut runs = Vec::new();
        let mut need = n;
        while need > 0 {
            let (&start, &len) = self.free.iter().next().expect("free_count covers the need");
            self.free.remove(&start);
            let take = len.min(need);
            if len > take {
                self.free.insert(start + take, len - take);
            }
            runs.push((start, take));
            self.high = self.high.max(start + take);
            need -= take;
        }
        self.free_count -= n;
        Some(runs)
    }

    /// Returns a run of frames, merging it with free neighbours.
    pub fn free(&mut self, start: u64, len: u64) {
        if len == 0 {
            return;
        }
        self.free_count += len;
        let mut start = start;
        let mut len = len;
        if let Some((&ps, &pl)) = self.free.range(..start).next_back() {
            debug_assert!(ps + pl <= start, "double free of frame {start}");
            if ps + pl == start {
                self.free.remove(&ps);
                start = ps;
                len += pl;
            }
        }
        if let Some(&nl) = self.free.get(&(start + len)) {
            self.free.remove(&(start + len));
            len += nl;
        }
        self.free.insert(start, len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_first_then_runs() {
        let mut a = FrameAllocator::new(100);
        assert_eq!(a.alloc(10), Some(vec![(0, 10)]));
        assert_eq!(a.alloc(10), Some(vec![(10, 10)]));
        a.free(0, 10);
        // 10 free at 0, 80 at 20: 85 needs two runs.
        assert_eq!(a.alloc(85), Some(vec![(0, 10), (20, 75)]));
        assert_eq!(a.free_count(), 5);
        assert_eq!(a.alloc(6), None);
    }

    #[test]
    fn free_merges_neighbours() {
        let mut a = FrameAllocator::new(30);
        let r = a.alloc(30).unwrap();
        assert_eq!(r, vec![(0, 30)]);
        a.free(0, 10);
        a.free(20, 10);
        a.free(10, 10);
        assert_eq!(a.free.len(), 1);
        assert_eq!(a.alloc(30), Some(vec![(0, 30)]));
    }
}
