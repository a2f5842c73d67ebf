//! signalfd and signalfd4: a descriptor whose reads take pending signals.
//!
//! Signals are warpd's, so the descriptor is too: the broker holds an
//! eventfd under that number (so that it is a real, closable descriptor
//! in the program's table, with its flags), and warpd answers reads of it:
//! the pending signals of its mask, as `signalfd_siginfo`, or a wait for
//! one (EAGAIN when the descriptor is non-blocking). For poll, select and
//! epoll the eventfd is made readable while a signal of the mask is
//! pending (for any thread: Linux looks at the polling thread's), and
//! empty again when none is, at the syscall boundaries and switches where
//! warpd looks outside (`sync_signalfds`, recorded calls). A duplicate
//! (dup, dup2, dup3, F_DUPFD) is a signalfd too; across fork, not yet.

use super::*;

const SFD_CLOEXEC: u64 = 0o2000000;
const SFD_NONBLOCK: u64 = 0o4000;
const O_NONBLOCK: i64 = 0o4000;
const SIGNALFD_SIGINFO: u64 = 128;

/// POLLIN, in a pollfd's events.
const POLLIN: u16 = 1;

/// A signalfd: the signals its reads take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignalFd {
    pub mask: u64,
    pub cloexec: bool,
    /// Its eventfd holds a count (readable): a signal of the mask was pending.
    pub readable: bool,
}

impl Process {
    /// signalfd4(fd, mask, sizemask, flags); signalfd is flags 0.
    pub(super) fn signalfd(
        &mut self,
        a: &[u64; 6],
        flags: u64,
        link: &mut dyn Outside,
    ) -> Result<SysResult, ProcessError> {
        let (fd, mask_at, size) = (a[0] as i32, a[1], a[2]);
        if flags & !(SFD_CLOEXEC | SFD_NONBLOCK) != 0 || size != 8 {
            return Ok(Err(Errno::EINVAL));
        }
        let mask = match self.mm.read_u64(mask_at) {
            Ok(m) => m & !(signals::bit(abi::SIGKILL) | signals::bit(abi::SIGSTOP)),
            Err(e) => return Ok(Err(e)),
        };
        if fd != -1 {
            if let Some(s) = self.signalfds.get_mut(&fd) {
                s.mask = mask;
                return Ok(Ok(fd as u64));
            }
            if self.reserved(fd as u64) {
                return Ok(Err(Errno::EBADF));
            }
            // An open descriptor that is no signalfd is EINVAL; none is EBADF.
            let r = self.internal(link, 72, [fd as u64, 1, 0, 0, 0, 0], Vec::new())?; // F_GETFD
            return Ok(Err(if r < 0 { Errno::EBADF } else { Errno::EINVAL }));
        }
        // EFD_CLOEXEC and EFD_NONBLOCK are the same bits.
        let new = self.internal(link, 290, [0, flags, 0, 0, 0, 0], Vec::new())?;
        if new < 0 {
            return Ok(Err(Errno(-new as i32)));
        }
        if new >= self.ident.reserved_fd_base as i64 {
            self.internal(link, 3, [new as u64, 0, 0, 0, 0, 0], Vec::new())?;
            return Ok(Err(Errno::EMFILE));
        }
        self.signalfds.insert(new as i32, SignalFd { mask, cloexec: flags & SFD_CLOEXEC != 0, readable: false });
        Ok(Ok(new as u64))
    }

    /// A read of signalfd `fd` into `buf` (`len` bytes): the pending
    /// signals of its mask, the thread's own first, each as a
    /// signalfd_siginfo; or a wait for one.
    pub(super) fn signalfd_read(
        &mut self,
        fd: i32,
        buf: u64,
        len: u64,
        link: &mut dyn Outside,
    ) -> Result<Action, ProcessError> {
        let Some(sfd) = self.signalfds.get(&fd).copied() else { return Ok(Action::Return(Errno::EBADF.ret())) };
        if len < SIGNALFD_SIGINFO {
            return Ok(Action::Return(Errno::EINVAL.ret()));
        }
        let mut done = 0u64;
        while done + SIGNALFD_SIGINFO <= len {
            let ready = (self.thread().signals.pending | self.signals.pending) & sfd.mask;
            if ready == 0 {
                break;
            }
            let own = self.thread().signals.pending & sfd.mask;
            let sig = (if own != 0 { own } else { ready }).trailing_zeros() as i32 + 1;
            let (s, t) = self.signal_state();
            let info = s.take(sig, t).unwrap_or_else(|| self.outside_info(sig));
            if let Err(e) = self.mm.write_user(buf + done, &info.to_signalfd()) {
                // The signal stays taken, as Linux loses it too.
                return Ok(Action::Return(if done > 0 { done as i64 } else { e.ret() }));
            }
            done += SIGNALFD_SIGINFO;
        }
        if done > 0 {
            return Ok(Action::Return(done as i64));
        }
        // Its flags now (fcntl may have changed O_NONBLOCK).
        let fl = self.internal(link, 72, [fd as u64, 3, 0, 0, 0, 0], Vec::new())?; // F_GETFL
        if fl < 0 {
            return Ok(Action::Return(fl));
        }
        if fl & O_NONBLOCK != 0 {
            return Ok(Action::Return(Errno::EAGAIN.ret()));
        }
        if self.signal_deliverable() {
            return Ok(Action::Return(Errno::EINTR.ret()));
        }
        self.begin_wait(Wait::Signal { set: sfd.mask, info: buf, deadline: None, signalfd: true });
        Ok(Action::Wait)
    }

    /// Makes each signalfd's eventfd readable exactly while a signal of its
    /// mask is pending, so that poll, select and epoll see it.
    pub(super) fn sync_signalfds(&mut self, link: &mut dyn Outside) -> Result<(), ProcessError> {
        let pending = self.threads.values().fold(self.signals.pending, |p, t| p | t.signals.pending);
        let changed: Vec<(i32, bool)> = self
            .signalfds
            .iter()
            .filter(|(_, s)| (pending & s.mask != 0) != s.readable)
            .map(|(&fd, s)| (fd, !s.readable))
            .collect();
        for (fd, readable) in changed {
            let out = Buffer {
                arg: 1,
                data: Some(if readable {
                    buffer::Data::Bytes(1u64.to_le_bytes().to_vec())
                } else {
                    buffer::Data::OutLen(8)
                }),
                inout: false,
                out: !readable,
                written_by_ret: false,
            };
            // write(fd, &1, 8) adds one; read(fd, buf, 8) takes the count,
            // if there is one (a duplicate, sharing the eventfd, may have
            // taken it: the read must not wait).
            let nr = if readable { 1 } else { 0 };
            if readable || self.eventfd_counts(fd, link)? {
                self.internal(link, nr, [fd as u64, 0, 8, 0, 0, 0], vec![out])?;
            }
            if let Some(s) = self.signalfds.get_mut(&fd) {
                s.readable = readable;
            }
        }
        Ok(())
    }

    /// Whether signalfd `fd`'s eventfd holds a count (poll, no wait).
    fn eventfd_counts(&mut self, fd: i32, link: &mut dyn Outside) -> Result<bool, ProcessError> {
        let mut p = Vec::with_capacity(8);
        p.extend_from_slice(&fd.to_le_bytes());
        // struct pollfd: fd, events, revents (returned).
        p.extend_from_slice(&POLLIN.to_le_bytes());
        p.extend_from_slice(&0u16.to_le_bytes());
        let pollfd =
            Buffer { arg: 0, data: Some(buffer::Data::Bytes(p)), inout: true, out: false, written_by_ret: false };
        Ok(self.internal(link, 7, [0, 1, 0, 0, 0, 0], vec![pollfd])? == 1)
    }

    /// The program closed `fd` (or execve closed it): no signalfd any more.
    pub(super) fn forget_signalfd(&mut self, fd: i32) {
        self.signalfds.remove(&fd);
    }

    /// execve closes the close-on-exec ones.
    pub(super) fn signalfds_at_exec(&mut self) {
        self.signalfds.retain(|_, s| !s.cloexec);
    }
}
