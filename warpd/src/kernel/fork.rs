//! New processes: fork, vfork, and clone or clone3 without CLONE_THREAD.
//!
//! The broker forks first (`request::Kind::Fork`), so the child's
//! descriptors, its pid and its place in the host's process tree are real;
//! its reply is the child's pid. The exit loop then makes the child's
//! kernel state from the parent's with [`Process::forked`] over a copy of
//! the parent's memory (`machine_fork.rs`), and the session runs it in a
//! VM of its own. What the child keeps and loses is fork(2)'s list: only
//! the calling thread, its mask and alternate stack; dispositions,
//! descriptors, limits and the address space are copied; pending signals,
//! timers, itimers and robust lists are not.

use std::collections::BTreeMap;

use warp_proto::broker::{request, Fork};

use super::{Action, Process, ProcessError};
use crate::kernel::abi;
use crate::kernel::errno::Errno;
use crate::kernel::mm::Mm;
use crate::kernel::outside::Outside;
use crate::kernel::sched::Scheduler;
use crate::kernel::signals::SigAction;

const CSIGNAL: u64 = 0xff;
const CLONE_VM: u64 = 0x100;
const CLONE_SIGHAND: u64 = 0x800;
const CLONE_PTRACE: u64 = 0x2000;
const CLONE_VFORK: u64 = 0x4000;
const CLONE_SYSVSEM: u64 = 0x4_0000;
const CLONE_SETTLS: u64 = 0x8_0000;
const CLONE_PARENT_SETTID: u64 = 0x10_0000;
const CLONE_CHILD_CLEARTID: u64 = 0x20_0000;
const CLONE_DETACHED: u64 = 0x40_0000;
const CLONE_UNTRACED: u64 = 0x80_0000;
const CLONE_CHILD_SETTID: u64 = 0x100_0000;
const CLONE_IO: u64 = 0x8000_0000;
const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;

/// What the flags may hold for a new process here; the others (sharing
/// descriptors or the working directory with the parent, namespaces,
/// pidfds, CLONE_PARENT) are not supported yet.
const SUPPORTED: u64 = CSIGNAL
    | CLONE_VM
    | CLONE_PTRACE
    | CLONE_VFORK
    | CLONE_SYSVSEM
    | CLONE_SETTLS
    | CLONE_PARENT_SETTID
    | CLONE_CHILD_CLEARTID
    | CLONE_DETACHED
    | CLONE_UNTRACED
    | CLONE_CHILD_SETTID
    | CLONE_IO
    | CLONE_CLEAR_SIGHAND;

/// A fork the broker made: what the child is made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForkSpec {
    /// The child's pid (its broker's).
    pub pid: u32,
    pub flags: u64,
    /// The child's stack pointer (0: the parent's).
    pub stack: u64,
    /// CLONE_CHILD_SETTID / CLONE_CHILD_CLEARTID's word.
    pub ctid: u64,
    /// CLONE_SETTLS's fs base.
    pub tls: u64,
}

impl ForkSpec {
    /// The parent waits until the child executes a program or ends.
    pub fn vfork(&self) -> bool {
        self.flags & CLONE_VFORK != 0
    }

    /// The child's fs base, if CLONE_SETTLS gives it one.
    pub fn fs_base(&self) -> Option<u64> {
        (self.flags & CLONE_SETTLS != 0).then_some(self.tls)
    }
}

impl Process {
    /// fork (57), vfork (58), clone (56) and clone3 (435) of a process:
    /// `flags` with the exit signal in its low byte; `[stack, ptid, ctid, tls]`.
    pub(super) fn fork_process(
        &mut self,
        flags: u64,
        [stack, ptid, ctid, tls]: [u64; 4],
        nr: u64,
        link: &mut dyn Outside,
    ) -> Result<Action, ProcessError> {
        let ret = |e: Errno| Ok(Action::Return(e.ret()));
        if flags & CLONE_SIGHAND != 0 && flags & CLONE_VM == 0 {
            return ret(Errno::EINVAL);
        }
        let name = crate::kernel::names::name(nr).unwrap_or("clone");
        // Memory shared with the parent is supported the way posix_spawn
        // and vfork use it: the parent waits (CLONE_VFORK) while the child
        // runs on a copy, until it executes a program or ends.
        let shares_memory = flags & CLONE_VM != 0 && flags & CLONE_VFORK == 0;
        if flags & !SUPPORTED != 0 || shares_memory {
            let unsupported = (flags & !SUPPORTED) | if shares_memory { CLONE_VM } else { 0 };
            *self.unknown.entry(nr).or_default() += 1;
            self.note(format!(
                "{name} ({nr}) of a new process with flags {unsupported:#x} returned ENOSYS: sharing descriptors, the working directory or memory (without CLONE_VFORK) with the parent, namespaces, pidfds and CLONE_PARENT are not supported yet"
            ));
            self.limit(
                "new process flags",
                format!("the program asked {name} for a kind of new process Warpspeed does not support yet (flags {unsupported:#x}): it got ENOSYS"),
            );
            return ret(Errno::ENOSYS);
        }
        let exit_signal = (flags & CSIGNAL) as i32;
        if exit_signal != abi::SIGCHLD {
            // The child's broker ends as any process does: its parent gets SIGCHLD.
            self.limit(
                "exit signal",
                format!("a child process was created with exit signal {exit_signal}; its parent gets SIGCHLD when it ends (Warpspeed does not send other exit signals yet)"),
            );
        }
        let reply = self.request(link, request::Kind::Fork(Fork { token: String::new() }))?;
        if reply.ret < 0 {
            return Ok(Action::Return(reply.ret));
        }
        // The broker is not trusted: a pid is positive and below PID_MAX_LIMIT.
        let Some(pid) = u32::try_from(reply.ret).ok().filter(|p| (2..=4 << 20).contains(p)) else {
            return ret(Errno::EAGAIN);
        };
        // Linux writes the parent's word before the child runs, in the
        // parent's memory only (the child's is a copy from before).
        if flags & CLONE_PARENT_SETTID != 0 {
            let _ = self.mm.write_user(ptid, &pid.to_le_bytes());
        }
        Ok(Action::Fork(ForkSpec { pid, flags, stack, ctid, tls }))
    }

    /// The child of the fork `spec` as the calling thread left this
    /// process, over `mm` (a copy of this process's memory, made at the
    /// fork): one thread, the caller's, with the child's pid as its tid.
    pub fn forked(&self, spec: &ForkSpec, mm: Mm) -> Process {
        let mut child = self.clone();
        child.mm = mm;
        child.ident.ppid = self.ident.pid;
        child.ident.pid = spec.pid;
        let mut t = self.thread().clone();
        t.tid = spec.pid;
        t.syscall = None;
        t.saved = None;
        t.wait = None;
        t.wait_order = 0;
        t.woken = None;
        t.suspended_mask = None;
        t.robust_list = 0;
        t.clear_tid = if spec.flags & CLONE_CHILD_CLEARTID != 0 { spec.ctid } else { 0 };
        t.signals.pending = 0;
        t.signals.info.clear();
        t.signals.queued.clear();
        child.threads = BTreeMap::from([(spec.pid, t)]);
        child.current = spec.pid;
        child.next_tid = spec.pid + 1;
        child.waits_begun = 0;
        child.sched = if self.sched.is_chaos() {
            // Its own draws, from a seed its parent's generator gives it.
            let mut s = self.sched.clone();
            s.clear();
            s
        } else {
            Scheduler::default()
        };
        child.signals.pending = 0;
        child.signals.info.clear();
        child.signals.queued.clear();
        if spec.flags & CLONE_CLEAR_SIGHAND != 0 {
            for a in child.signals.actions.iter_mut() {
                if a.handler != crate::kernel::signals::SIG_IGN {
                    *a = SigAction::default();
                }
            }
        }
        child.unknown.clear();
        child.notes.clear();
        child.syscalls = 0;
        child.deferred_begun = 0;
        child.completions_taken = 0;
        child.cancels.clear();
        child.timers.clear();
        child.next_timer_id = 0;
        child.itimers = [None; 2];
        child.limits.clear();
        child.limits_said.clear();
        child.stderr_mid_line = false;
        if spec.flags & CLONE_CHILD_SETTID != 0 {
            let _ = child.mm.write_user(spec.ctid, &spec.pid.to_le_bytes());
        }
        child
    }
}
