//! Keeping a long-running daemon's memory flat (glibc's allocator).
//!
//! Each session runs on threads of its own, and glibc gives threads
//! arenas of their own (up to eight per core): a session's short-lived
//! buffers (an executable image, the reply frames) then sit between the
//! store's long-lived nodes in many arenas, and the free space between them
//! is held, arena by arena. Fewer arenas and a trim after every session
//! give most of it back (bench/memory.sh measures it).

/// Arenas for all threads together.
const ARENAS: i32 = 2;

/// Called once, before any thread starts.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Gives the memory the allocator holds free back to the system: after a
/// session ends, when its buffers have just been freed.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
