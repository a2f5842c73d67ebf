//! Checkpoints of a stopped [`Guest`]: everything the replay needs to go on
//! from here again, later, after it has gone further (reverse execution).
//!
//! A checkpoint holds the emulated kernel's state (a clone of `Process`),
//! the thread's CPU context, the exit loop's own state (the replay's probe,
//! the written-pages base) and the data in both memory slots as pages.
//! Restoring builds a fresh VM and vCPU from it, so that nothing the
//! hypervisor caches about the old one (shadow page tables) outlives it.
//! A checkpoint is only taken where the program stands at an instruction
//! boundary in user code: a syscall answered, a stop reported to a debugger.
//!
//! Pages are shared: a checkpoint keeps the previous one's page (the last
//! taken, or the one restored) wherever the memory still holds the same
//! bytes, so it costs the pages written since, not the whole memory. The
//! comparison reads every page, as a full copy would, but copies only those
//! that changed; no dirty log is needed (warpd's own writes into guest
//! memory are seen too). A [`Ledger`] counts each page once, however many
//! checkpoints hold it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use warp_proto::warp::Failure;

use super::{Guest, SessionError};
use crate::arch;
use crate::builder;
use crate::hv::memory::MemFd;
use crate::hv::{GuestFault, Hypervisor, ThreadContext};
use crate::interrupts::{Probe, Written};
use crate::kernel::process::Process;

const PAGE: u64 = 4096;

/// Pages per chunk: an image lists chunks, so that one whose pages all
/// stayed the same is one shared pointer, not 64.
const CHUNK_PAGES: u64 = 64;

/// The checkpoint memory of one debugged replay: every page any of its
/// checkpoints holds, each counted once.
#[derive(Clone, Default)]
pub struct Ledger(Arc<AtomicU64>);

impl Ledger {
    pub fn bytes(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A page's bytes as a checkpoint took them (never all zero: a page that
/// reads zero is left out, as the fresh slot it is restored into reads zero).
struct Page {
    data: Box<[u8]>,
    ledger: Ledger,
}

impl Page {
    fn new(data: &[u8], ledger: &Ledger) -> Page {
        ledger.0.fetch_add(data.len() as u64, Ordering::Relaxed);
        Page { data: data.into(), ledger: ledger.clone() }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        self.ledger.0.fetch_sub(self.data.len() as u64, Ordering::Relaxed);
    }
}

type Chunk = [Option<Arc<Page>>; CHUNK_PAGES as usize];

/// A memory slot's data: the chunks that hold any, by index, in order.
#[derive(Clone, Default)]
struct Image(Vec<(u64, Arc<Chunk>)>);

impl Image {
    fn chunk(&self, index: u64) -> Option<&Arc<Chunk>> {
        self.0.binary_search_by_key(&index, |(i, _)| *i).ok().map(|k| &self.0[k].1)
    }

    /// `m`'s data now. Pages with the same bytes as `base`'s at the same
    /// place are `base`'s; returns the image and the bytes it copied.
    fn take(m: &MemFd, base: Option<&Image>, ledger: &Ledger) -> Result<(Image, u64), SessionError> {
        let extents = m.data_extents().map_err(|e| failed(format!("reading guest memory for a checkpoint: {e}")))?;
        let mut image = Image::default();
        let mut fresh = 0u64;
        let mut building: Option<(u64, Chunk)> = None;
        let mut buf = vec![0u8; PAGE as usize];
        for (off, len) in extents {
            let end = (off + len).min(m.size());
            for page in off / PAGE..end.div_ceil(PAGE) {
                let (index, slot) = (page / CHUNK_PAGES, (page % CHUNK_PAGES) as usize);
                if building.as_ref().is_none_or(|(i, _)| *i != index) {
                    image.close(building.take(), base);
                }
                let (_, chunk) = building.get_or_insert_with(|| (index, std::array::from_fn(|_| None)));
                let at = page * PAGE;
                let bytes = &mut buf[..(m.size() - at).min(PAGE) as usize];
                m.read(at, bytes);
                if bytes.iter().all(|&b| b == 0) {
                    continue;
                }
                let old = base.and_then(|b| b.chunk(index)).and_then(|c| c[slot].as_ref());
                let kept = match old {
                    Some(old) if *old.data == *bytes => old.clone(),
                    _ => {
                        fresh += bytes.len() as u64;
                        Arc::new(Page::new(bytes, ledger))
                    }
                };
                chunk[slot] = Some(kept);
            }
        }
        image.close(building, base);
        Ok((image, fresh))
    }

    /// Adds a chunk just built: `base`'s own where it holds the same pages.
    fn close(&mut self, built: Option<(u64, Chunk)>, base: Option<&Image>) {
        let Some((index, chunk)) = built else { return };
        if chunk.iter().all(Option::is_none) {
            return;
        }
        let same = |a: &Option<Arc<Page>>, b: &Option<Arc<Page>>| match (a, b) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if let Some(old) = base.and_then(|b| b.chunk(index)) {
            if old.iter().zip(chunk.iter()).all(|(a, b)| same(a, b)) {
                self.0.push((index, old.clone()));
                return;
            }
        }
        self.0.push((index, Arc::new(chunk)));
    }

    fn write_into(&self, m: &MemFd) {
        for (index, chunk) in &self.0 {
            for (slot, page) in chunk.iter().enumerate() {
                if let Some(page) = page {
                    m.write((index * CHUNK_PAGES + slot as u64) * PAGE, &page.data);
                }
            }
        }
    }
}

/// What the next checkpoint shares pages with: the last one taken or
/// restored, and the ledger all of them count in.
#[derive(Clone, Default)]
pub struct Snapshots {
    ledger: Ledger,
    base: Option<(Image, Image)>,
}

fn failed(message: String) -> SessionError {
    SessionError::Failed(Failure::Daemon, message)
}

/// A stopped guest, kept to go back to.
pub struct Checkpoint {
    process: Process,
    context: ThreadContext,
    started: bool,
    probe: Option<Probe>,
    probe_step: bool,
    memory_differed: u64,
    deferred: u32,
    written: Written,
    held_fault: Option<GuestFault>,
    kernel: Image,
    guest: Image,
    /// The bytes of the pages it copied (those not shared with the
    /// checkpoint before it).
    fresh: u64,
    ledger: Ledger,
}

impl Checkpoint {
    /// The memory it added when it was taken: the pages that had changed
    /// since the checkpoint before.
    pub fn bytes(&self) -> u64 {
        self.fresh
    }

    /// The memory this checkpoint and every other of its replay's hold
    /// together (each shared page once).
    pub fn memory_in_use(&self) -> u64 {
        self.ledger.bytes()
    }
}

impl Guest {
    /// A digest of the running thread's context and the stack around its
    /// stack pointer (the red zone, the frame, its callers'): with the same
    /// events behind them, two moments of a replay with the same digest are
    /// taken for the same moment. Not the whole memory: what the program
    /// got from the untrappable TSC (ld.so keeps readings) differs from one
    /// run to the next of the same replay.
    pub fn state_digest(&mut self) -> Result<[u8; 32], SessionError> {
        let mut h = blake3::Hasher::new();
        let mut c = self.vcpu.context()?;
        let mut stack = vec![0u8; 128 + 4096];
        let n = self.process.mm.read_forced(c.regs.rsp.wrapping_sub(128), &mut stack);
        h.update(&stack[..n]);
        // The resume flag is in the flags a fault saves, not in a trap's.
        c.regs.rflags &= !(1 << 16);
        h.update(format!("{:?} {} {}", c.regs, c.fs_base, c.gs_base).as_bytes());
        h.update(&self.process.thread().tid.to_le_bytes());
        Ok(*h.finalize().as_bytes())
    }

    /// A checkpoint of this guest as it stands (between steps).
    pub fn checkpoint(&mut self) -> Result<Checkpoint, SessionError> {
        self.written.gather(self.vm.as_mut(), &self.process.mm)?;
        // The copy names no live memory: holding this VM's slots would keep
        // their pages after the VM is gone.
        let mut process = self.process.clone();
        let placeholder = MemFd::create("warp-checkpoint", 4096)?;
        process.mm.kernel = placeholder.clone();
        process.mm.guest = placeholder;
        let ledger = self.snapshots.ledger.clone();
        let base = self.snapshots.base.take();
        let (kernel, k_fresh) = Image::take(&self.process.mm.kernel, base.as_ref().map(|b| &b.0), &ledger)?;
        let (guest, g_fresh) = Image::take(&self.process.mm.guest, base.as_ref().map(|b| &b.1), &ledger)?;
        drop(base);
        self.snapshots.base = Some((kernel.clone(), guest.clone()));
        Ok(Checkpoint {
            process,
            context: self.vcpu.context()?,
            started: self.started,
            probe: self.probe.clone(),
            probe_step: self.probe_step,
            memory_differed: self.memory_differed,
            deferred: self.deferred,
            written: self.written.clone(),
            held_fault: self.held_fault,
            kernel,
            guest,
            fresh: k_fresh + g_fresh,
            ledger,
        })
    }

    /// This guest as it was at `c`, in a fresh VM from `hv`. What the
    /// debugger set (breakpoints, watchpoints, fault stops), the pause and
    /// the replay's watchdog carry over.
    pub fn restore(&mut self, hv: &dyn Hypervisor, c: &Checkpoint) -> Result<(), SessionError> {
        let parts = builder::parts(hv)?;
        c.kernel.write_into(&parts.mm.kernel);
        c.guest.write_into(&parts.mm.guest);
        let mut process = c.process.clone();
        process.mm.kernel = parts.mm.kernel.clone();
        process.mm.guest = parts.mm.guest.clone();
        let mut vcpu = parts.vcpu;
        vcpu.setup(&arch::initial_cpu(process.mm.cr3()), &c.context.regs)?;
        vcpu.set_context(&c.context)?;
        let mut fresh = Guest::new(process, parts.vm, vcpu, parts.caps);
        fresh.started = c.started;
        fresh.probe = c.probe.clone();
        fresh.probe_step = c.probe_step;
        // A restored base is the checkpoint's; a digest that differs at the
        // next point was said once already, or is this restore's doing.
        fresh.memory_differed = c.memory_differed.max(1);
        fresh.deferred = c.deferred;
        fresh.written = c.written.carried_over();
        fresh.held_fault = c.held_fault;
        fresh.breakpoints = std::mem::take(&mut self.breakpoints);
        for saved in fresh.breakpoints.values_mut() {
            *saved = None;
        }
        fresh.watches = std::mem::take(&mut self.watches);
        fresh.fault_stops = self.fault_stops;
        fresh.notes = self.notes.take();
        fresh.snapshots =
            Snapshots { ledger: self.snapshots.ledger.clone(), base: Some((c.kernel.clone(), c.guest.clone())) };
        let cancel: Option<Arc<super::Cancel>> = self.cancel.take();
        let watching = self.point_watch.is_some();
        // The old VM goes before the new one runs.
        *self = fresh;
        if let Some(c) = cancel {
            self.cancel_with(c);
        }
        if watching {
            self.watch_points()?;
        }
        self.probe_since = Instant::now();
        self.boundary_at = Instant::now();
        Ok(())
    }
}
