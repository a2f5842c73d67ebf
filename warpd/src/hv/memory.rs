//! Guest physical memory: sealed, sparse memfds mapped into warpd.
//!
//! Two regions back every VM: the kernel region (page tables, descriptor
//! tables, trampolines; never leaves warpd) and the guest region (every page
//! the program can touch; passed to the broker with SCM_RIGHTS so that I/O
//! lands straight in it). Both are sealed against shrinking and growing, so
//! a hostile broker cannot make warpd's mapping fault. Pages cost host
//! memory only once touched; [`MemFd::punch_hole`] gives them back.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use super::HvError;

/// Maps the whole of a (sealed) memfd of `size` bytes, shared, read-write.
fn map_shared(fd: &OwnedFd, size: u64) -> Result<NonNull<u8>, HvError> {
    // SAFETY: a fresh shared mapping of the whole file; checked below.
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
        return Err(HvError::call("mapping guest memory", std::io::Error::last_os_error()));
    }
    Ok(NonNull::new(p as *mut u8).expect("mmap never returns NULL on success"))
}

/// A memfd of fixed size, mapped shared into this process.
/// Guest memory: a sealed memfd and warpd's mapping of it. Clones are
/// handles to the same memory (a checkpoint's copy of the emulated kernel
/// names it; it is given the restored VM's before use).
#[derive(Clone)]
pub struct MemFd {
    map: std::sync::Arc<Mapping>,
}

struct Mapping {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    size: u64,
}

// SAFETY: the mapping is plain shared memory with no thread affinity; all
// access goes through bounds-checked copies.
unsafe impl Send for Mapping {}
// SAFETY: as above; concurrent readers only copy bytes out.
unsafe impl Sync for Mapping {}

impl MemFd {
    /// Creates a sparse memfd of `size` bytes, seals its size, and maps it.
    pub fn create(name: &str, size: u64) -> Result<Self, HvError> {
        let cname = std::ffi::CString::new(name).expect("no NUL in name");
        // SAFETY: memfd_create with a valid C string; the result is checked.
        let raw = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
        if raw < 0 {
            return Err(HvError::call("memfd_create", std::io::Error::last_os_error()));
        }
        // SAFETY: raw is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ftruncate on our own descriptor.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) } != 0 {
            return Err(HvError::call("ftruncate guest memory", std::io::Error::last_os_error()));
        }
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on our own descriptor.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(HvError::call("sealing guest memory", std::io::Error::last_os_error()));
        }
        let ptr = map_shared(&fd, size)?;
        Ok(MemFd { map: std::sync::Arc::new(Mapping { fd, ptr, size }) })
    }

    /// A second mapping of the same memory, with a descriptor of its own:
    /// a backend keeps one to read what the guest left for it (exception
    /// frames) without borrowing the session's.
    pub fn map_again(&self) -> Result<Self, HvError> {
        let fd = self.map.fd.try_clone().map_err(|e| HvError::call("duplicating guest memory", e))?;
        let ptr = map_shared(&fd, self.map.size)?;
        Ok(MemFd { map: std::sync::Arc::new(Mapping { fd, ptr, size: self.map.size }) })
    }

    pub fn size(&self) -> u64 {
        self.map.size
    }

    pub fn host_addr(&self) -> u64 {
        self.map.ptr.as_ptr() as u64
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.map.fd.as_fd()
    }

    fn check(&self, offset: u64, len: usize) -> bool {
        offset.checked_add(len as u64).is_some_and(|end| end <= self.map.size)
    }

    /// Copies bytes out. Panics on an out-of-range offset: callers translate
    /// guest addresses first, so that is a warpd bug, not guest input.
    pub fn read(&self, offset: u64, buf: &mut [u8]) {
        assert!(self.check(offset, buf.len()), "memory read out of range: {offset:#x}+{}", buf.len());
        // SAFETY: in range (checked); the mapping lives as long as self.
        unsafe {
            std::ptr::copy_nonoverlapping(self.map.ptr.as_ptr().add(offset as usize), buf.as_mut_ptr(), buf.len())
        }
    }

    pub fn write(&self, offset: u64, buf: &[u8]) {
        assert!(self.check(offset, buf.len()), "memory write out of range: {offset:#x}+{}", buf.len());
        // SAFETY: in range (checked); the mapping lives as long as self.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), self.map.ptr.as_ptr().add(offset as usize), buf.len()) }
    }

    pub fn read_u64(&self, offset: u64) -> u64 {
        let mut b = [0u8; 8];
        self.read(offset, &mut b);
        u64::from_le_bytes(b)
    }

    /// The whole region as a byte slice, for building tables.
    ///
    /// Only for the kernel region, which no other process maps.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `size` bytes long and lives as long as self;
        // &mut self keeps other borrows of it away in this process.
        unsafe { std::slice::from_raw_parts_mut(self.map.ptr.as_ptr(), self.map.size as usize) }
    }

    /// Gives pages back to the host: they read as zero afterwards, and KVM
    /// drops any mapping of them (its MMU notifier sees the change).
    pub fn punch_hole(&self, offset: u64, len: u64) -> std::io::Result<()> {
        assert!(self.check(offset, len as usize));
        // SAFETY: fallocate on our own descriptor within its size.
        let r = unsafe {
            libc::fallocate(
                self.map.fd.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Copies `src`'s data (its extents: holes stay holes) into this
    /// memory, which must be fresh (all holes) and as large; the bytes
    /// copied. In the kernel (`copy_file_range`) where it can; else through
    /// the mappings, leaving all-zero pages as holes too. A fork's child
    /// memory: a copy, not yet copy-on-write.
    pub fn copy_from(&self, src: &MemFd) -> std::io::Result<u64> {
        assert_eq!(self.size(), src.size(), "copying memory of another size");
        const CHUNK: usize = 1 << 20;
        let mut copied = 0;
        let extents = src.data_extents()?;
        // In the kernel, page by page, where it can (no pass over the bytes here).
        if self.copy_range(src, &extents).is_ok() {
            return Ok(extents.iter().map(|e| e.1).sum());
        }
        for (off, len) in extents {
            let mut at = off;
            while at < off + len {
                let n = ((off + len - at) as usize).min(CHUNK);
                // SAFETY: both ranges lie inside mappings of the same size
                // (data extents are within the file); the two are distinct.
                let (from, to) = unsafe {
                    (
                        std::slice::from_raw_parts(src.map.ptr.as_ptr().add(at as usize), n),
                        std::slice::from_raw_parts_mut(self.map.ptr.as_ptr().add(at as usize), n),
                    )
                };
                for (i, page) in from.chunks(4096).enumerate() {
                    if page.iter().any(|&b| b != 0) {
                        to[i * 4096..i * 4096 + page.len()].copy_from_slice(page);
                        copied += page.len() as u64;
                    }
                }
                at += n as u64;
            }
        }
        Ok(copied)
    }

    /// `copy_file_range` of each extent at the same offset.
    fn copy_range(&self, src: &MemFd, extents: &[(u64, u64)]) -> std::io::Result<()> {
        for &(off, len) in extents {
            let (mut from, mut to) = (off as libc::loff_t, off as libc::loff_t);
            let mut left = len as usize;
            while left > 0 {
                // SAFETY: copy_file_range between our own descriptors, with
                // offsets inside both files (of the same size).
                let n = unsafe {
                    libc::copy_file_range(src.map.fd.as_raw_fd(), &mut from, self.map.fd.as_raw_fd(), &mut to, left, 0)
                };
                if n <= 0 {
                    return Err(if n == 0 {
                        std::io::Error::from(std::io::ErrorKind::UnexpectedEof)
                    } else {
                        std::io::Error::last_os_error()
                    });
                }
                left -= n as usize;
            }
        }
        Ok(())
    }

    /// Drops this process's page-table entries for a range without touching
    /// the data (shared file pages stay in the memfd). KVM's MMU notifier
    /// then forgets its own mappings of those pages, so the guest re-walks
    /// its page tables on the next access: this is how an edited leaf entry
    /// becomes visible under shadow paging.
    /// The ranges that hold data (not holes): (offset, length), in order.
    pub fn data_extents(&self) -> std::io::Result<Vec<(u64, u64)>> {
        let fd = self.map.fd.as_raw_fd();
        let mut out = Vec::new();
        let mut at = 0i64;
        let size = self.map.size as i64;
        while at < size {
            // SAFETY: lseek on our own descriptor.
            let data = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
            if data < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ENXIO) {
                    break;
                }
                return Err(e);
            }
            // SAFETY: as above.
            let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
            if hole < 0 {
                return Err(std::io::Error::last_os_error());
            }
            out.push((data as u64, (hole - data) as u64));
            at = hole;
        }
        Ok(out)
    }

    pub fn forget_mappings(&self, offset: u64, len: u64) -> std::io::Result<()> {
        assert!(self.check(offset, len as usize));
        // SAFETY: the range lies inside our shared file mapping; DONTNEED on
        // a shared mapping discards only page-table entries, not data.
        let r = unsafe {
            libc::madvise(
                self.map.ptr.as_ptr().add(offset as usize) as *mut libc::c_void,
                len as usize,
                libc::MADV_DONTNEED,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in create().
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.size as usize) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_has_the_data_and_the_holes_of_its_source() {
        let src = MemFd::create("src", 1 << 30).unwrap();
        src.write(5 << 20, b"five MiB in");
        src.write((700 << 20) + 4095, b"across a page");
        let dst = MemFd::create("dst", 1 << 30).unwrap();
        let copied = dst.copy_from(&src).unwrap();
        assert!((3 * 4096..1 << 20).contains(&copied), "only the data is copied: {copied}");
        let mut b = [0u8; 13];
        dst.read((700 << 20) + 4095, &mut b);
        assert_eq!(&b, b"across a page");
        dst.read(5 << 20, &mut b[..11]);
        assert_eq!(&b[..11], b"five MiB in");
        assert_eq!(dst.data_extents().unwrap(), src.data_extents().unwrap(), "the holes stay holes");
        // The copy is its own: writing one leaves the other.
        dst.write(5 << 20, b"FIVE");
        src.read(5 << 20, &mut b[..4]);
        assert_eq!(&b[..4], b"five");
    }

    #[test]
    fn sealed_sparse_round_trip() {
        let m = MemFd::create("test", 1 << 30).unwrap();
        m.write(12345, b"hello");
        let mut b = [0u8; 5];
        m.read(12345, &mut b);
        assert_eq!(&b, b"hello");
        m.punch_hole(8192, 8192).unwrap();
        m.read(12345, &mut b);
        assert_eq!(b, [0; 5]);
        // Sealed: the size cannot change.
        // SAFETY: ftruncate on a descriptor we own.
        let r = unsafe { libc::ftruncate(m.fd().as_raw_fd(), 4096) };
        assert_eq!(r, -1);
    }

    #[test]
    fn a_second_mapping_sees_the_same_bytes() {
        let m = MemFd::create("test", 1 << 20).unwrap();
        let again = m.map_again().unwrap();
        m.write(100, b"both");
        let mut b = [0u8; 4];
        again.read(100, &mut b);
        assert_eq!(&b, b"both");
        again.write(200, b"back");
        m.read(200, &mut b);
        assert_eq!(&b, b"back");
    }

    #[test]
    fn forgetting_mappings_keeps_data() {
        let m = MemFd::create("test", 1 << 20).unwrap();
        m.write(4096, b"kept");
        m.forget_mappings(4096, 4096).unwrap();
        let mut b = [0u8; 4];
        m.read(4096, &mut b);
        assert_eq!(&b, b"kept");
    }
}
