//! The x86_64 guest: its physical layout, page tables, descriptor tables,
//! the syscall trampoline and exception decoding.
//!
//! Physical layout (two memory slots):
//!
//! ```text
//!  slot 0  "kernel" memfd, private to warpd (the broker never sees it)
//!    0x0000_1000  PML4
//!    0x0010_0000  ring-0 text: IDT stubs, 16 bytes a vector
//!    0x0020_0000  GDT    0x0020_1000 IDT    0x0020_2000 TSS (+ I/O bitmap)
//!    0x0021_0000  top of the ring-0 stack (RSP0); exception frames below it
//!    0x0030_1000  replay's probe stub: code, then data and stack (user pages,
//!                 mapped near a recorded interrupt point while replay looks for it)
//!    0x0100_0000 .. KERNEL_SLOT_SIZE   page-table pool
//!  slot 1  "guest" memfd, shared with the broker: every page the program can touch
//!    USER_GPA_BASE ..
//!    last page    the ring page: the syscall trampoline and the exitless
//!                 path's request slot (mapped at TRAMPOLINE_VA, user, `ring`)
//! ```
//!
//! Ring-0 structures are mapped supervisor-only at `KBASE + gpa`.

pub mod cpu;
pub mod descriptors;
pub mod paging;
pub mod probe;
pub mod regs;
pub mod ring;
pub mod signal;

pub use cpu::InitialCpu;
pub use regs::Regs;

/// Where ring-0 structures are mapped in the guest's virtual space.
pub const KBASE: u64 = 0xffff_ffff_8000_0000;
/// Size of the kernel slot (sparse: only touched pages cost memory).
pub const KERNEL_SLOT_SIZE: u64 = 256 << 20;
pub const GPA_PML4: u64 = 0x1000;
pub const GPA_KTEXT: u64 = 0x10_0000;
pub const GPA_GDT: u64 = 0x20_0000;
pub const GPA_IDT: u64 = 0x20_1000;
pub const GPA_TSS: u64 = 0x20_2000;
pub const GPA_KSTACK_TOP: u64 = 0x21_0000;
/// The probe stub's code page; its data page follows.
pub const GPA_PROBE: u64 = 0x30_1000;
pub const GPA_PT_POOL: u64 = 0x100_0000;
/// How much of the kernel slot is mapped at KBASE (text, tables, stack).
pub const KERNEL_MAPPED: u64 = 0x40_0000;

/// First guest-physical address of the guest memfd.
pub const USER_GPA_BASE: u64 = 1 << 32;

/// One past the highest user address, as Linux's TASK_SIZE: the last page
/// below 2^47 is never user memory on Linux, so the trampoline lives there
/// and no mmap can reach it.
pub const USER_TOP: u64 = 0x7fff_ffff_f000;
pub const TRAMPOLINE_VA: u64 = USER_TOP;

pub const PAGE_SIZE: u64 = 4096;

/// I/O ports the guest uses to leave to the host.
pub const PORT_SYSCALL: u16 = 0x10;
pub const PORT_EXCEPTION: u16 = 0x11;

/// Segment selectors (GDT index << 3 | RPL).
pub const SEL_KCODE: u16 = 0x10;
pub const SEL_KDATA: u16 = 0x18;
pub const SEL_UDATA: u16 = 0x2b;
pub const SEL_UCODE: u16 = 0x33;
pub const SEL_TSS: u16 = 0x40;

pub const MSR_STAR: u32 = 0xc000_0081;
pub const MSR_LSTAR: u32 = 0xc000_0082;
pub const MSR_CSTAR: u32 = 0xc000_0083;
pub const MSR_SFMASK: u32 = 0xc000_0084;
pub const MSR_FS_BASE: u32 = 0xc000_0100;
pub const MSR_GS_BASE: u32 = 0xc000_0101;
pub const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// `syscall` loads CS from STAR[47:32] (kernel) and returns with STAR[63:48].
pub const STAR_VALUE: u64 = (0x23 << 48) | ((SEL_KCODE as u64) << 32);
/// Flags cleared on `syscall`: TF, DF, AC, IOPL and NT as Linux, but not
/// IF: the trampoline runs at CPL3, where `popfq` could not set it again.
pub const SFMASK_VALUE: u64 = 0x4_7500;

/// Writes warpd's guest-side kernel (descriptor tables, exception stubs)
/// into the kernel region, and returns the pages to map into every
/// address space: (virtual address, kernel-region offset), ring 0 only.
pub fn install_kernel(kernel: &mut crate::hv::memory::MemFd) -> Vec<(u64, u64)> {
    descriptors::write_tables(kernel.as_mut_slice());
    (0..KERNEL_MAPPED).step_by(PAGE_SIZE as usize).map(|gpa| (KBASE + gpa, gpa)).collect()
}

/// Writes the ring page (the trampoline) into guest memory's last page
/// and maps it at TRAMPOLINE_VA: the program's syscalls start there.
///
/// The slot is left as it is: a poller started before (the broker's, or
/// replay's) may already have said it sleeps there.
pub fn install_ring(mm: &mut crate::kernel::mm::Mm) -> Result<(), crate::kernel::errno::Errno> {
    use warp_syscalls::ring::{BITMAP, STATE};
    let off = warp_syscalls::ring::page_offset(mm.guest.size());
    let page = ring::page();
    mm.guest.write(off, &page[..STATE as usize]);
    mm.guest.write(off + BITMAP, &page[BITMAP as usize..BITMAP as usize + 64]);
    mm.map_ring_page(TRAMPOLINE_VA, USER_GPA_BASE + off)
}

/// What an exception frame on the ring-0 stack holds (pushed by the IDT
/// stub and the CPU): vector, error code, then the hardware frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExceptionFrame {
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Size in bytes of [`ExceptionFrame`] on the ring-0 stack.
pub const EXCEPTION_FRAME_SIZE: u64 = 56;

impl ExceptionFrame {
    pub fn from_words(w: [u64; 7]) -> Self {
        ExceptionFrame { vector: w[0], error_code: w[1], rip: w[2], cs: w[3], rflags: w[4], rsp: w[5], ss: w[6] }
    }
}

/// Page-fault error code bits.
pub mod pf {
    pub const PRESENT: u64 = 1;
    pub const WRITE: u64 = 2;
    pub const USER: u64 = 4;
    pub const FETCH: u64 = 16;
}

/// Where an `in`/`out` to `PORT_SYSCALL` began, given the two bytes before
/// the address after it: the imm8 forms (`e4`-`e7`, then the port byte)
/// take two bytes, the dx forms (`ec`-`ef`) one, an operand-size prefix
/// one more.
pub fn port_io_start(after: u64, before: [u8; 3]) -> u64 {
    let [b3, b2, b1] = before;
    if (0xec..=0xef).contains(&b1) {
        return if b2 == 0x66 { after - 2 } else { after - 1 };
    }
    if b1 == PORT_SYSCALL as u8 && (0xe4..=0xe7).contains(&b2) {
        return if b3 == 0x66 { after - 3 } else { after - 2 };
    }
    after - 2
}

/// The vector of an `int n` instruction at the start of `code`. Linux
/// gives user code only `int3`/`int $3` (a DPL3 gate, SIGTRAP); any other
/// `int n` faults through its DPL0 gate with #GP (SIGSEGV). PVM reports
/// them as #UD, so the kernel looks at the instruction itself.
pub fn software_interrupt(code: &[u8]) -> Option<u8> {
    (code.len() >= 2 && code[0] == 0xcd).then(|| code[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_io_instructions_are_found_from_their_end() {
        assert_eq!(port_io_start(0x1002, [0x90, 0xe6, 0x10]), 0x1000); // out %al, $0x10
        assert_eq!(port_io_start(0x1003, [0x66, 0xe7, 0x10]), 0x1000); // out %ax, $0x10
        assert_eq!(port_io_start(0x1001, [0x90, 0x90, 0xee]), 0x1000); // out %al, %dx
        assert_eq!(port_io_start(0x1002, [0x90, 0x66, 0xed]), 0x1000); // in %dx, %ax
        assert_eq!(port_io_start(0x1002, [0x90, 0xe4, 0x10]), 0x1000); // in $0x10, %al
    }
}
