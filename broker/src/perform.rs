//! Performing one system call as the program, with its buffers.

use std::os::fd::{AsRawFd, OwnedFd};

use warp_proto::broker::{buffer, Syscall};

use crate::{os_err, BrokerError};

/// The guest memory, mapped shared; warpd hands out offsets into it.
pub struct GuestMemory {
    base: *mut u8,
    size: u64,
}

// SAFETY: a shared mapping of guest memory that lives as long as the
// value; every access goes through bounds-checked offsets, and calls on
// several threads touch it as the program's own concurrent calls would.
unsafe impl Send for GuestMemory {}
// SAFETY: as above.
unsafe impl Sync for GuestMemory {}

impl GuestMemory {
    pub fn map(fd: OwnedFd, size: u64) -> Result<Self, BrokerError> {
        // SAFETY: a shared mapping of the descriptor warpd sent; checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(os_err("mapping guest memory"));
        }
        crate::tree::note_mapping(p, size as usize);
        Ok(GuestMemory { base: p as *mut u8, size })
    }

    /// Memory of the broker's own standing in for guest memory (a deferred
    /// call's private copies): `bytes` must outlive the value.
    fn over(bytes: &mut [u8]) -> Self {
        GuestMemory { base: bytes.as_mut_ptr(), size: bytes.len() as u64 }
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn ptr(&self, off: u64, len: u64) -> Option<*mut u8> {
        let end = off.checked_add(len)?;
        if end > self.size {
            return None;
        }
        // SAFETY: off + len is within the mapping (checked).
        Some(unsafe { self.base.add(off as usize) })
    }
}

/// Whether warpd may ask for this call: only what the shared table says the
/// broker performs. Calls that would change the broker itself rather than
/// act for the program (memory, signal state, processes, exec, exit,
/// ptrace, prctl, seccomp) and numbers Linux does not have are refused.
fn refused(nr: u32) -> bool {
    !warp_syscalls::lookup(nr as u64).is_some_and(|d| d.brokered())
}

const IOV_MAX: usize = 1024;

/// What performing a call gave: the raw result (-errno), the output
/// buffers, and the bytes it sent to the program's original stdout or
/// stderr that are not in guest memory (sendfile from a file), which the
/// trace must keep for replay to print them.
pub struct Performed {
    pub ret: i64,
    pub outputs: Vec<Vec<u8>>,
    pub sent: Vec<u8>,
    /// Not started (EINTR) because a signal the handler saw is still on its
    /// way to warpd: the reply must say signals are pending, or warpd would
    /// take the EINTR for the program's.
    pub signal_waits: bool,
}

/// Performs `call`; returns the raw result (-errno) and the output buffers.
pub fn syscall(call: &Syscall, mem: &GuestMemory) -> (i64, Vec<Vec<u8>>) {
    let p = perform(call, mem);
    (p.ret, p.outputs)
}

/// sendfile to the original stdout or stderr, as a read and a write, so
/// that the bytes sent are known: at most 16 MiB (sendfile may send fewer
/// than asked); an offset (`args[2]`, a pointer of ours) is read and moved,
/// else the input's position is, by what was written.
fn sendfile_to_stream(args: &[u64; 6]) -> (i64, Vec<u8>) {
    const MAX: u64 = 16 << 20;
    let (out, input, off_at, count) = (args[0] as i32, args[1] as i32, args[2] as *mut i64, args[3].min(MAX));
    let mut buf = vec![0u8; count as usize];
    let err = || -(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO) as i64);
    // SAFETY: reads into our buffer of `count` bytes; the offset pointer is
    // null or one of ours (a local copy or the guest mapping, checked).
    let got = unsafe {
        if off_at.is_null() {
            libc::read(input, buf.as_mut_ptr() as *mut libc::c_void, buf.len())
        } else {
            libc::pread(input, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), *off_at)
        }
    };
    if got < 0 {
        return (err(), Vec::new());
    }
    if got == 0 {
        return (0, Vec::new());
    }
    // SAFETY: writes `got` bytes of our buffer.
    let put = unsafe { libc::write(out, buf.as_ptr() as *const libc::c_void, got as usize) };
    let put = if put < 0 { return (err(), Vec::new()) } else { put };
    // SAFETY: as above for the offset; lseek on the program's descriptor.
    unsafe {
        if off_at.is_null() {
            if put < got {
                libc::lseek(input, (put - got) as libc::off_t, libc::SEEK_CUR);
            }
        } else {
            *off_at += put as i64;
        }
    }
    buf.truncate(put as usize);
    (put as i64, buf)
}

/// Performs `call`: result, outputs and what it sent (see `Performed`).
pub fn perform(call: &Syscall, mem: &GuestMemory) -> Performed {
    let fail =
        |errno: i32| Performed { ret: -(errno as i64), outputs: Vec::new(), sent: Vec::new(), signal_waits: false };
    if refused(call.nr) || call.args.len() > 6 {
        return fail(libc::ENOSYS);
    }
    let mut args = [0u64; 6];
    for (i, a) in call.args.iter().enumerate() {
        args[i] = *a;
    }
    let vectored_call = warp_syscalls::lookup(call.nr as u64).is_some_and(|d| d.vectored());
    // sendmsg/recvmsg (one msghdr), sendmmsg/recvmmsg (an array of mmsghdr,
    // as long as the next argument says): the program's headers (their
    // memory, for the fields written back) and ours, built over their parts
    // (arg 10 + 3k + 0, 1, 2: message k's name, iovec memory and control).
    use warp_syscalls::Arg as A;
    let header = warp_syscalls::lookup(call.nr as u64).and_then(|d| {
        d.args.iter().enumerate().find_map(|(i, a)| match a {
            A::MsgIn | A::MsgOut => Some((i, 1usize, 56u64)),
            A::MmsgIn | A::MmsgOut => Some((i, (args.get(i + 1).copied().unwrap_or(0) as usize).min(IOV_MAX), 64)),
            _ => None,
        })
    });
    let header_arg = header.map(|h| h.0);
    let (count, stride) = header.map_or((0, 0), |h| (h.1, h.2));
    let mut header_mem: Option<(Vec<(u64, u64)>, bool)> = None;
    // SAFETY: all-zero mmsghdrs are valid (no name, no iovecs, no control).
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; count];
    let parts = 10..10 + 3 * count;
    // Where a buffer's pointer goes: an argument, or a part of one of our
    // headers (with its length).
    let mut place = |args: &mut [u64; 6], arg: usize, ptr: u64, len: u64| {
        if arg < 6 {
            args[arg] = ptr;
            return;
        }
        let m = &mut msgs[(arg - 10) / 3].msg_hdr;
        match (arg - 10) % 3 {
            0 => {
                m.msg_name = ptr as *mut libc::c_void;
                m.msg_namelen = len as u32;
            }
            1 => {
                m.msg_iov = ptr as *mut libc::iovec;
                m.msg_iovlen = len as usize;
            }
            _ => {
                m.msg_control = ptr as *mut libc::c_void;
                m.msg_controllen = len as usize;
            }
        }
    };

    // Local copies that must outlive the call.
    let mut owned: Vec<Vec<u8>> = Vec::new();
    // One iovec array per vectored buffer (the arrays do not move when
    // the list grows).
    let mut iovecs: Vec<Vec<libc::iovec>> = Vec::new();
    // (owned index, ranges) for bounce buffers to scatter back.
    let mut scatter: Vec<(usize, Vec<(u64, u64)>)> = Vec::new();
    let mut outputs_from: Vec<usize> = Vec::new();

    for b in &call.buffers {
        let arg = b.arg as usize;
        let part = parts.contains(&arg);
        if arg >= 6 && !part {
            return fail(libc::EINVAL);
        }
        let vectored = if part { (arg - 10) % 3 == 1 } else { vectored_call };
        match &b.data {
            Some(buffer::Data::Bytes(bytes)) => {
                owned.push(bytes.clone());
                let i = owned.len() - 1;
                let len = owned[i].len() as u64;
                place(&mut args, arg, owned[i].as_mut_ptr() as u64, len);
                if b.inout {
                    outputs_from.push(i);
                }
            }
            Some(buffer::Data::OutLen(n)) => {
                owned.push(vec![0u8; *n as usize]);
                let i = owned.len() - 1;
                place(&mut args, arg, owned[i].as_mut_ptr() as u64, *n as u64);
                outputs_from.push(i);
            }
            Some(buffer::Data::Memory(r)) => {
                if r.offset.len() != r.len.len() {
                    return fail(libc::EINVAL);
                }
                let ranges: Vec<(u64, u64)> = r.offset.iter().copied().zip(r.len.iter().copied()).collect();
                let mut ptrs = Vec::with_capacity(ranges.len());
                for &(o, l) in &ranges {
                    match mem.ptr(o, l) {
                        Some(p) => ptrs.push((p, l)),
                        None => return fail(libc::EFAULT),
                    }
                }
                if Some(arg) == header_arg {
                    if ranges.iter().map(|r| r.1).sum::<u64>() != stride * count as u64 {
                        return fail(libc::EINVAL);
                    }
                    header_mem = Some((ranges, b.out));
                    continue;
                }
                let total: u64 = ranges.iter().map(|r| r.1).sum();
                if vectored && ranges.len() <= IOV_MAX {
                    let v: Vec<libc::iovec> = ptrs
                        .iter()
                        .map(|&(p, l)| libc::iovec { iov_base: p as *mut libc::c_void, iov_len: l as usize })
                        .collect();
                    let (at, n) = (v.as_ptr() as u64, v.len() as u64);
                    iovecs.push(v);
                    place(&mut args, arg, at, n);
                    if arg < 6 {
                        args[arg + 1] = n;
                    }
                } else if ptrs.len() == 1 {
                    place(&mut args, arg, ptrs[0].0 as u64, total);
                } else {
                    // Gather into a bounce buffer; copy back afterwards if written.
                    let mut bounce = Vec::with_capacity(total as usize);
                    for &(p, l) in &ptrs {
                        // SAFETY: p..p+l lies in the guest mapping (checked above).
                        bounce.extend_from_slice(unsafe { std::slice::from_raw_parts(p, l as usize) });
                    }
                    owned.push(bounce);
                    let i = owned.len() - 1;
                    if vectored {
                        let v = vec![libc::iovec {
                            iov_base: owned[i].as_mut_ptr() as *mut libc::c_void,
                            iov_len: total as usize,
                        }];
                        let at = v.as_ptr() as u64;
                        iovecs.push(v);
                        place(&mut args, arg, at, 1);
                        if arg < 6 {
                            args[arg + 1] = 1;
                        }
                    } else {
                        place(&mut args, arg, owned[i].as_mut_ptr() as u64, total);
                    }
                    if b.out {
                        scatter.push((i, ranges));
                    }
                }
            }
            None => return fail(libc::EINVAL),
        }
    }
    if let Some(a) = header_arg {
        if header_mem.is_none() {
            return fail(libc::EFAULT);
        }
        // A msghdr is the head of an mmsghdr.
        args[a] = msgs.as_mut_ptr() as u64;
    }

    if call.may_block
        && (call.signal_pending || crate::SIGNAL_SEEN.load(std::sync::atomic::Ordering::SeqCst))
        && would_block(call.nr, &call.args)
    {
        // Not performed: warpd delivers the signal (or asks again).
        return Performed { signal_waits: true, ..fail(libc::EINTR) };
    }
    let mut sent = Vec::new();
    let ret = if call.nr == 40 && to_original_stream(call) {
        let (ret, bytes) = sendfile_to_stream(&args);
        sent = bytes;
        ret
    } else {
        // SAFETY: a raw syscall on behalf of the program; every pointer
        // argument was replaced above by a pointer to a live local buffer
        // or into the guest mapping, with the lengths warpd checked.
        let ret =
            unsafe { libc::syscall(call.nr as libc::c_long, args[0], args[1], args[2], args[3], args[4], args[5]) };
        if ret < 0 {
            -(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO) as i64)
        } else {
            ret as i64
        }
    };
    // open, openat, openat2: whatever route the path took (a directory
    // descriptor, the working directory, a symlink), nothing of the
    // broker's own /proc directory that describes it reaches the program.
    let ret = if matches!(call.nr, 2 | 257 | 437) && ret >= 0 && describes_the_broker(ret as i32) {
        // SAFETY: closing the descriptor the call just opened.
        unsafe { libc::close(ret as i32) };
        -(libc::ENOENT as i64)
    } else {
        ret
    };

    // recvmsg, and both mmsg calls for the messages done: the lengths and
    // flags the kernel set go back into the program's headers (their
    // pointers stay its own).
    if let (Some((ranges, true)), true) = (&header_mem, ret >= 0) {
        let mut image = Vec::with_capacity((stride * count as u64) as usize);
        for &(o, l) in ranges {
            let p = mem.ptr(o, l).expect("checked");
            // SAFETY: p..p+l lies in the guest mapping (checked above).
            image.extend_from_slice(unsafe { std::slice::from_raw_parts(p, l as usize) });
        }
        let done = if stride == 56 { 1 } else { (ret as usize).min(count) };
        for (k, m) in msgs.iter().take(done).enumerate() {
            let e = &mut image[k * stride as usize..];
            e[8..12].copy_from_slice(&m.msg_hdr.msg_namelen.to_le_bytes());
            e[40..48].copy_from_slice(&(m.msg_hdr.msg_controllen as u64).to_le_bytes());
            e[48..52].copy_from_slice(&m.msg_hdr.msg_flags.to_le_bytes());
            if stride == 64 {
                e[56..60].copy_from_slice(&m.msg_len.to_le_bytes());
            }
        }
        let mut at = 0usize;
        for &(o, l) in ranges {
            let p = mem.ptr(o, l).expect("checked");
            // SAFETY: as above; the image is as long as the ranges together.
            unsafe { std::ptr::copy_nonoverlapping(image.as_ptr().add(at), p, l as usize) };
            at += l as usize;
        }
    }
    for (i, ranges) in scatter {
        let mut at = 0usize;
        for (o, l) in ranges {
            let p = mem.ptr(o, l).expect("checked");
            // SAFETY: p..p+l lies in the guest mapping; the bounce buffer holds `at+l` bytes.
            unsafe { std::ptr::copy_nonoverlapping(owned[i].as_ptr().add(at), p, l as usize) };
            at += l as usize;
        }
    }
    let outputs = outputs_from.into_iter().map(|i| std::mem::take(&mut owned[i])).collect();
    Performed { ret, outputs, sent, signal_waits: false }
}

/// A call to perform later, away from guest memory: its memory buffers
/// are private copies (taken now, as the program's own call would read
/// them when it starts), so that nothing it writes reaches the program
/// before warpd delivers the completion.
pub struct Detached {
    call: Syscall,
    arena: Vec<u8>,
    /// Per memory buffer the call writes, in request order: its ranges in
    /// the arena, and whether only `ret` bytes of it count.
    outs: Vec<(Vec<(u64, u64)>, bool)>,
}

impl Detached {
    /// Copies `call`'s memory buffers out of guest memory; None when one is
    /// not within it (warpd checked them: a protocol error).
    pub fn new(call: &Syscall, mem: &GuestMemory) -> Option<Detached> {
        let mut call = call.clone();
        // Signals are warpd's to weigh now (it cancels the call of a thread
        // it interrupts): none ends it before it starts.
        call.may_block = false;
        call.signal_pending = false;
        let mut arena = Vec::new();
        let mut outs = Vec::new();
        for b in &mut call.buffers {
            let Some(buffer::Data::Memory(r)) = &mut b.data else { continue };
            if r.offset.len() != r.len.len() {
                return None;
            }
            let mut mine = Vec::with_capacity(r.offset.len());
            for (o, &l) in r.offset.iter_mut().zip(r.len.iter()) {
                let p = mem.ptr(*o, l)?;
                let at = arena.len() as u64;
                // SAFETY: p..p+l lies in the guest mapping (checked).
                arena.extend_from_slice(unsafe { std::slice::from_raw_parts(p, l as usize) });
                *o = at;
                mine.push((at, l));
            }
            if b.out {
                outs.push((mine, b.written_by_ret));
            }
        }
        Some(Detached { call, arena, outs })
    }

    /// Performs the call (it may wait): its result, per memory buffer it
    /// writes the bytes written, and its `out_len`/`inout` outputs.
    pub fn perform(mut self) -> (i64, Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let arena = GuestMemory::over(&mut self.arena);
        let (ret, outputs) = syscall(&self.call, &arena);
        let mut written = Vec::with_capacity(self.outs.len());
        for (ranges, by_ret) in &self.outs {
            let total: u64 = ranges.iter().map(|r| r.1).sum();
            let mut left = match (*by_ret, ret) {
                (true, r) if r < 0 => 0,
                (true, r) => (r as u64).min(total),
                (false, _) => total,
            };
            let mut bytes = Vec::with_capacity(left as usize);
            for &(o, l) in ranges {
                let n = l.min(left);
                bytes.extend_from_slice(&self.arena[o as usize..(o + n) as usize]);
                left -= n;
            }
            written.push(bytes);
        }
        (ret, written, outputs)
    }
}

/// Whether a call warpd lets the broker defer should be: it would wait
/// (a poll or epoll_wait with a zero timeout only looks).
pub fn worth_deferring(nr: u32, args: &[u64]) -> bool {
    // fcntl: only F_SETLKW and F_OFD_SETLKW wait (for a record lock).
    if nr == 72 {
        return matches!(args.get(1), Some(7 | 38));
    }
    let zero_timeout = match nr {
        7 => args.get(2) == Some(&0),
        232 | 281 => args.get(3) == Some(&0),
        _ => false,
    };
    !zero_timeout && would_block(nr, args)
}

/// Whether a deferrable call goes to the program's original stdout or
/// stderr: such a write is performed in place (replay re-emits its bytes
/// from guest memory at the call).
pub fn to_original_stream(call: &Syscall) -> bool {
    warp_syscalls::lookup(call.nr as u64).is_some_and(|d| d.sends_bytes) && stream_of(call, 1) != 0
}

/// Whether descriptor `fd`, just opened, is a file of the broker's own
/// /proc directory (its pid's or one of its threads') that would describe
/// the broker rather than the program: its memory, maps, stacks, tasks.
/// The program's own descriptors under fd/ and fdinfo/ are allowed (the
/// reserved ones are not).
fn describes_the_broker(fd: i32) -> bool {
    let Ok(target) = std::fs::read_link(format!("/proc/self/fd/{fd}")) else { return false };
    let Some(rest) = target.to_str().and_then(|t| t.strip_prefix("/proc/")) else { return false };
    let (who, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let Ok(n) = who.parse::<u32>() else { return false };
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() } as u32;
    let ours = n == me || std::path::Path::new(&format!("/proc/{me}/task/{n}")).exists();
    if !ours {
        return false;
    }
    let rest = match rest.strip_prefix("task/") {
        Some(t) => t.split_once('/').map_or("", |(_, r)| r),
        None => rest,
    };
    let (first, sub) = rest.split_once('/').unwrap_or((rest, ""));
    if first == "fd" || first == "fdinfo" {
        let base = crate::RESERVED_BASE.load(std::sync::atomic::Ordering::Relaxed) as u64;
        return sub.parse::<u64>().is_ok_and(|d| d >= base);
    }
    !warp_syscalls::PROC_SHARED.contains(&first)
}

/// What execve does to descriptors: closes the program's close-on-exec
/// ones (below the reserved range); returns how many.
pub fn close_on_exec() -> i64 {
    let base = crate::RESERVED_BASE.load(std::sync::atomic::Ordering::Relaxed);
    let mut closed = 0;
    for fd in 0..base {
        // SAFETY: fcntl and close on descriptor numbers of the program's
        // range; an unused number just fails with EBADF.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC != 0 && libc::close(fd) == 0 {
                closed += 1;
            }
        }
    }
    closed
}

/// The broker's duplicates of the program's original stdout and stderr.
pub static STREAMS: std::sync::OnceLock<(Option<i32>, Option<i32>)> = std::sync::OnceLock::new();

/// 1 or 2 when a successful write-like call went to the open file that was
/// the original stdout or stderr (whatever descriptor it used), else 0.
pub fn stream_of(call: &Syscall, ret: i64) -> u32 {
    if ret <= 0 || !warp_syscalls::lookup(call.nr as u64).is_some_and(|d| d.sends_bytes) {
        return 0;
    }
    let Some(&fd) = call.args.first() else { return 0 };
    stream_of_fd(fd as i32)
}

/// 1 or 2 when descriptor `fd` is the open file that was the original
/// stdout or stderr, else 0.
pub fn stream_of_fd(fd: i32) -> u32 {
    let Some(&(out, err)) = STREAMS.get() else { return 0 };
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let same = |saved: Option<i32>| -> Option<bool> {
        let saved = saved?;
        // SAFETY: kcmp with integer arguments; KCMP_FILE (0) compares the
        // open file descriptions behind two descriptors of this process.
        let r = unsafe { libc::syscall(libc::SYS_kcmp, pid, pid, 0, fd, saved) };
        (r >= 0).then_some(r == 0)
    };
    // Prefer the stream the descriptor number names (a terminal is often
    // both stdout and stderr).
    let order: [(u32, Option<i32>); 2] = if fd == 2 { [(2, err), (1, out)] } else { [(1, out), (2, err)] };
    for (n, saved) in order {
        match same(saved) {
            Some(true) => return n,
            Some(false) => {}
            None if fd as u32 == n => return n, // no kcmp: go by number
            None => {}
        }
    }
    0
}

/// Reads a file with the user's rights: for the loader, the program (or
/// its interpreter), which must be a regular file the user may execute, as
/// execve requires; with `executable` false, any readable regular file (a
/// library's debug information). Opened without blocking, so a FIFO put
/// in a file's place is refused, not waited on.
pub fn read_file(path: &str, max_len: u64, executable: bool) -> Result<Vec<u8>, i32> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let cpath = std::ffi::CString::new(path).map_err(|_| libc::EINVAL)?;
    // SAFETY: access(2) with a valid C string.
    if executable && unsafe { libc::access(cpath.as_ptr(), libc::X_OK) } != 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EACCES));
    }
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        let mut o = std::fs::OpenOptions::new();
        o.read(true).custom_flags(libc::O_NONBLOCK);
        o.open(path).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?
    };
    let meta = f.metadata().map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    if !meta.is_file() || (executable && meta.permissions().mode() & 0o111 == 0) {
        return Err(libc::EACCES);
    }
    if meta.len() > max_len {
        return Err(libc::EFBIG);
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut buf).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    if buf.len() as u64 > max_len {
        return Err(libc::EFBIG);
    }
    Ok(buf)
}

/// Whether a call that may block would wait now, which decides whether a
/// pending signal makes it EINTR (Linux checks for signals only when a call
/// is about to wait): a read-like or write-like call on a descriptor that
/// is ready (a regular file, /dev/null, a pipe with data or room) goes
/// ahead; any other call that may block is taken to wait.
pub fn would_block(nr: u32, args: &[u64]) -> bool {
    let events = match nr {
        // read, pread64, readv, recvfrom, recvmsg, accept, accept4, preadv, preadv2
        0 | 17 | 19 | 45 | 47 | 43 | 288 | 295 | 327 => libc::POLLIN,
        // write, pwrite64, writev, sendto, sendmsg, pwritev, pwritev2
        1 | 18 | 20 | 44 | 46 | 296 | 328 => libc::POLLOUT,
        _ => return true,
    };
    let Some(&fd) = args.first() else { return true };
    let Ok(fd) = i32::try_from(fd as i64) else { return false };
    // SAFETY: F_GETFL on a descriptor number; an error is handled below.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags >= 0 && flags & libc::O_NONBLOCK != 0 {
        // It answers EAGAIN rather than wait.
        return false;
    }
    let mut p = libc::pollfd { fd, events, revents: 0 };
    // SAFETY: poll on one pollfd of ours, no wait.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    // Ready, or an error the call itself will report (a bad descriptor).
    n != 1
}

#[cfg(test)]
mod tests {
    use super::would_block;

    #[test]
    fn a_pending_signal_ends_only_calls_that_would_wait() {
        let mut fds = [0i32; 2];
        // SAFETY: pipe into a local array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let (r, w) = (fds[0] as u64, fds[1] as u64);
        assert!(would_block(0, &[r, 0, 1]), "an empty pipe: read waits");
        assert!(!would_block(1, &[w, 0, 1]), "room in the pipe: write goes ahead");
        // SAFETY: one byte from a local into our pipe.
        assert_eq!(unsafe { libc::write(fds[1], b"x".as_ptr() as *const libc::c_void, 1) }, 1);
        assert!(!would_block(0, &[r, 0, 1]), "data: read goes ahead");
        assert!(!would_block(0, &[u32::MAX as u64, 0, 1]), "a bad descriptor: the call says EBADF");
        assert!(would_block(34, &[]), "pause always waits");
        // SAFETY: closing our own descriptors.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
}
