//! Test doubles for the kernel: a CPU whose state is plain fields and an
//! outside world that answers from a script. No /dev/kvm, no broker.

use std::collections::HashMap;

use warp_proto::broker::{request, Reply};

use super::outside::{Arrival, Completed, Ending, InterruptPoint, Outside, OutsideError};
use super::process::Identity;
use crate::hv::memory::MemFd;
use crate::hv::{CpuState, GuestFault, HvError, SyscallRequest};

/// The identity the fakes give the program: pid 4242, reserved fds from 1000.
pub fn identity() -> Identity {
    Identity {
        pid: 4242,
        ppid: 1,
        uid: 1000,
        gid: 1000,
        euid: 1000,
        egid: 1000,
        reserved_fd_base: 1000,
        fault_page: 0x10000,
    }
}

/// A CPU whose FS/GS bases and FPU state are plain fields.
#[derive(Default)]
pub struct FakeCpu {
    pub fs: u64,
    pub gs: u64,
    pub fpu: Vec<u8>,
}

impl CpuState for FakeCpu {
    fn fs_base(&self) -> Result<u64, HvError> {
        Ok(self.fs)
    }
    fn set_fs_base(&mut self, base: u64) -> Result<(), HvError> {
        self.fs = base;
        Ok(())
    }
    fn gs_base(&self) -> Result<u64, HvError> {
        Ok(self.gs)
    }
    fn set_gs_base(&mut self, base: u64) -> Result<(), HvError> {
        self.gs = base;
        Ok(())
    }
    fn xsave(&self) -> Result<Vec<u8>, HvError> {
        Ok(if self.fpu.is_empty() { vec![0; 4096] } else { self.fpu.clone() })
    }
    fn set_xsave(&mut self, area: &[u8]) -> Result<(), HvError> {
        self.fpu = area.to_vec();
        Ok(())
    }
}

/// A broker that answers from a script: a reply per syscall number, the
/// same each time (ret 0 otherwise), signals queued on its channel, and a log of what was asked.
#[derive(Default)]
pub struct FakeOutside {
    pub replies: HashMap<u32, Reply>,
    pub channel: Vec<i32>,
    /// Signals that land on the channel while the call with this number is
    /// performed (its reply says `signals_pending`).
    pub during: HashMap<u32, Vec<i32>>,
    /// Threads the scheduler gave the vCPU to, in order.
    pub scheduled: Vec<u32>,
    /// (number, may_block) of each request, in order.
    pub asked: Vec<(u32, bool)>,
    /// Interrupt points taken, in order.
    pub points: Vec<InterruptPoint>,
    /// Completions the next look returns.
    pub completions: Vec<Completed>,
    /// Threads whose deferred call was cancelled, in order.
    pub cancelled: Vec<u32>,
}

impl Outside for FakeOutside {
    fn call(&mut self, kind: request::Kind, _memory: &MemFd) -> Result<Reply, OutsideError> {
        match kind {
            request::Kind::Syscall(c) => {
                self.asked.push((c.nr, c.may_block));
                let mut reply = self.replies.get(&c.nr).cloned().unwrap_or_default();
                if let Some(s) = self.during.remove(&c.nr) {
                    self.channel.extend(s);
                    reply.signals_pending = true;
                }
                Ok(reply)
            }
            // A fork: the reply for number 57 (fork), if the test gave one.
            request::Kind::Fork(_) => {
                self.asked.push((57, false));
                Ok(self.replies.get(&57).cloned().unwrap_or(Reply { ret: -11, ..Default::default() }))
            }
            _ => Ok(Reply { ret: -2, ..Default::default() }),
        }
    }
    fn take_signals(&mut self) -> Result<Vec<Arrival>, OutsideError> {
        Ok(std::mem::take(&mut self.channel).into_iter().map(|signo| Arrival { signo, info: Vec::new() }).collect())
    }
    fn interrupted(&mut self) -> Result<Vec<Arrival>, OutsideError> {
        self.take_signals()
    }
    fn pending_async(&mut self) -> Result<Vec<i32>, OutsideError> {
        Ok(Vec::new())
    }
    fn interrupt(&mut self, point: &InterruptPoint) -> Result<(), OutsideError> {
        self.points.push(point.clone());
        Ok(())
    }
    fn next_interrupt(&mut self) -> Result<Option<InterruptPoint>, OutsideError> {
        Ok(None)
    }
    fn slice_over(&mut self, _: u32, due: bool) -> Result<bool, OutsideError> {
        Ok(due)
    }
    fn is_dead(&self) -> bool {
        false
    }
    fn note(&mut self, _: String) {}
    fn signals_waiting(&self) -> bool {
        !self.channel.is_empty()
    }
    fn take_completions(&mut self) -> Result<Vec<Completed>, OutsideError> {
        Ok(std::mem::take(&mut self.completions))
    }
    fn completions_waiting(&self) -> bool {
        !self.completions.is_empty()
    }
    fn cancel(&mut self, thread: u32, _seq: u64) -> Result<(), OutsideError> {
        self.cancelled.push(thread);
        Ok(())
    }
    fn syscall_entry(&mut self, _: &SyscallRequest) -> Result<(), OutsideError> {
        Ok(())
    }
    fn schedule(&mut self, tid: u32) -> Result<(), OutsideError> {
        self.scheduled.push(tid);
        Ok(())
    }
    fn syscall_exit(&mut self, _: u64, _: i64, _: u64) -> Result<(), OutsideError> {
        Ok(())
    }
    fn fault(&mut self, _: &GuestFault, _: i32) -> Result<(), OutsideError> {
        Ok(())
    }
    fn end(&mut self, _: Ending, _: u64) -> Result<(), OutsideError> {
        Ok(())
    }
}
