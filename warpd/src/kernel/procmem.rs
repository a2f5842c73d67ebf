//! The program's `/proc/self/mem` and `/proc/self/fd` (see `procfs`).
//!
//! `mem` opened by the program is a descriptor of warpd's (an eventfd the
//! broker holds under that number): reads and writes at an offset reach
//! guest memory at that address, through the program's page tables and
//! whatever their protection (Linux's FOLL_FORCE), up to the first page
//! that is not mapped (EIO when that is the first). The broker's own
//! memory is never behind it. Listing `fd` or `fdinfo` leaves the broker's
//! reserved descriptors out. Duplicates (dup, dup2, dup3, F_DUPFD) are
//! warpd's too, a `mem` one sharing its position.

use super::*;

/// A `/proc/self/mem` descriptor: its file position (shared with its
/// duplicates, as an open file's is) and access mode.
#[derive(Clone, Debug)]
pub struct MemFile {
    pub pos: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub read: bool,
    pub write: bool,
}

impl MemFile {
    fn at(&self) -> u64 {
        self.pos.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn set(&self, pos: u64) {
        self.pos.store(pos, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Process {
    /// Opens `/proc/self/mem` with open(2) `flags`.
    pub(super) fn open_mem(&mut self, flags: u64, link: &mut dyn Outside) -> Result<i64, ProcessError> {
        const EFD_CLOEXEC: u64 = 0o2000000;
        let mode = flags & 3;
        if mode == 3 {
            return Ok(Errno::EINVAL.ret());
        }
        let fd = self.internal(link, 290, [0, flags & EFD_CLOEXEC, 0, 0, 0, 0], Vec::new())?;
        if fd < 0 {
            return Ok(fd);
        }
        if fd >= self.ident.reserved_fd_base as i64 {
            self.internal(link, 3, [fd as u64, 0, 0, 0, 0, 0], Vec::new())?;
            return Ok(Errno::EMFILE.ret());
        }
        self.memfiles.insert(fd as i32, MemFile { pos: Default::default(), read: mode != 1, write: mode != 0 });
        Ok(fd)
    }

    /// read/pread64 (`at`: the offset, else the file position) and
    /// write/pwrite64 (`write`) on a `mem` descriptor.
    pub(super) fn mem_io(&mut self, fd: i32, buf: u64, len: u64, at: Option<u64>, write: bool) -> i64 {
        let Some(f) = self.memfiles.get(&fd).cloned() else { return Errno::EBADF.ret() };
        if (write && !f.write) || (!write && !f.read) {
            return Errno::EBADF.ret();
        }
        let addr = at.unwrap_or(f.at());
        let len = len.min(MAX_RW_COUNT);
        let mut done = 0u64;
        // A page at a time, as Linux does, to the first one not mapped.
        while done < len {
            let chunk = (PAGE_SIZE - (addr.wrapping_add(done) % PAGE_SIZE)).min(len - done);
            let ranges = self.mm.forced_ranges(addr.wrapping_add(done), chunk);
            if ranges.iter().map(|r| r.1).sum::<u64>() < chunk {
                break;
            }
            let mut bytes = vec![0u8; chunk as usize];
            if write {
                if let Err(e) = self.mm.read_user(buf + done, &mut bytes) {
                    return if done > 0 { done as i64 } else { e.ret() };
                }
                let mut o = 0usize;
                for (off, n) in ranges {
                    self.mm.guest.write(off, &bytes[o..o + n as usize]);
                    o += n as usize;
                }
            } else {
                let mut o = 0usize;
                for (off, n) in ranges {
                    self.mm.guest.read(off, &mut bytes[o..o + n as usize]);
                    o += n as usize;
                }
                if let Err(e) = self.mm.write_user(buf + done, &bytes) {
                    return if done > 0 { done as i64 } else { e.ret() };
                }
            }
            done += chunk;
        }
        if done == 0 && len > 0 {
            return Errno::EIO.ret();
        }
        if at.is_none() {
            f.set(addr.wrapping_add(done));
        }
        done as i64
    }

    /// lseek on a `mem` descriptor: SEEK_SET and SEEK_CUR (any address is a
    /// position, as Linux lets it be); others are EINVAL.
    pub(super) fn mem_lseek(&mut self, fd: i32, off: u64, whence: u64) -> i64 {
        let Some(f) = self.memfiles.get(&fd) else { return Errno::EBADF.ret() };
        let pos = match whence {
            0 => off,
            1 => f.at().wrapping_add(off),
            _ => return Errno::EINVAL.ret(),
        };
        f.set(pos);
        pos as i64
    }

    /// After dup, dup2, dup3 or fcntl F_DUPFD(_CLOEXEC) made `new` from
    /// `old`: a duplicate of one of warpd's descriptors is one too (a
    /// signalfd with the same mask, mem with the same position, an fd
    /// listing), close-on-exec as the call says.
    pub(super) fn duplicated(&mut self, old: i32, new: i32, cloexec: bool) {
        if let Some(s) = self.signalfds.get(&old).copied() {
            self.signalfds.insert(new, signalfd::SignalFd { cloexec, ..s });
        }
        if let Some(m) = self.memfiles.get(&old).cloned() {
            self.memfiles.insert(new, m);
        }
        if self.fd_dirs.contains(&old) {
            self.fd_dirs.insert(new);
        }
    }

    /// After getdents64 or getdents on a `/proc/self/fd` or `fdinfo`
    /// directory returned `n` bytes at `buf`: the entries of the broker's
    /// reserved descriptors are taken out; the new byte count.
    pub(super) fn filter_fd_dir(&mut self, buf: u64, n: i64, dirent64: bool) -> i64 {
        if n <= 0 {
            return n;
        }
        let mut raw = vec![0u8; n as usize];
        if self.mm.read_user(buf, &mut raw).is_err() {
            return n;
        }
        let mut kept = Vec::with_capacity(raw.len());
        let mut at = 0usize;
        // linux_dirent64 and linux_dirent both keep d_reclen at 16, and the
        // name from 19 (dirent64) or 18 (dirent); a number names a descriptor.
        while at + 19 <= raw.len() {
            let reclen = u16::from_le_bytes([raw[at + 16], raw[at + 17]]) as usize;
            if reclen < 19 || at + reclen > raw.len() {
                break;
            }
            let rec = &raw[at..at + reclen];
            let name_at = if dirent64 { 19 } else { 18 };
            let name: Vec<u8> = rec[name_at..].iter().copied().take_while(|&b| b != 0).collect();
            let fd = std::str::from_utf8(&name).ok().and_then(|s| s.parse::<u64>().ok());
            if !fd.is_some_and(|fd| self.reserved(fd)) {
                kept.extend_from_slice(rec);
            }
            at += reclen;
        }
        if kept.len() == raw.len() || self.mm.write_user(buf, &kept).is_err() {
            return n;
        }
        kept.len() as i64
    }
}
