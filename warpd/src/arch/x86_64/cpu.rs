//! What the host CPU offers the guest (XSAVE components, FSGSBASE, the
//! hwcap bits, CPUID as the program sees it), the CPU state a program
//! starts in, and the decoding of exception frames into neutral faults.

use super::descriptors::{initial_system_state, SystemState};
use super::*;
use crate::hv::memory::MemFd;
use crate::hv::{FaultKind, GuestFault};

/// The first CPU state of a guest: control registers, descriptor tables and
/// segments, plus the XSAVE components the guest may use (None: no XSAVE).
#[derive(Clone, Copy, Debug)]
pub struct InitialCpu {
    pub sys: SystemState,
    pub xcr0: Option<u64>,
}

/// The CPU state in which a program starts, for page tables at `cr3`.
pub fn initial_cpu(cr3: u64) -> InitialCpu {
    let xcr0 = guest_xcr0();
    InitialCpu { sys: initial_system_state(cr3, xcr0.is_some(), host_fsgsbase()), xcr0 }
}

/// The XCR0 value for the guest: x87, SSE and AVX where the host has them.
/// AVX-512 state is left off so that recordings replay on hosts without it.
pub fn guest_xcr0() -> Option<u64> {
    let leaf1 = std::arch::x86_64::__cpuid(1);
    if leaf1.ecx & (1 << 26) == 0 {
        return None; // no XSAVE
    }
    let leaf_d = std::arch::x86_64::__cpuid_count(0xd, 0);
    Some(leaf_d.eax as u64 & 0x7)
}

/// The XCR0 a signal frame is laid out for (x87 and SSE without XSAVE).
pub fn frame_xcr0() -> u64 {
    guest_xcr0().unwrap_or(3)
}

/// Whether the host CPU supports wrfsbase & co.
pub fn host_fsgsbase() -> bool {
    let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
    leaf7.ebx & 1 != 0
}

/// AT_HWCAP and AT_HWCAP2 as Linux x86_64 fills them: CPUID.1:EDX, and
/// HWCAP2_FSGSBASE (bit 1) when the program may use those instructions.
pub fn hwcaps() -> (u64, u64) {
    let hwcap = std::arch::x86_64::__cpuid(1).edx as u64;
    (hwcap, if host_fsgsbase() { 2 } else { 0 })
}

/// One CPUID leaf as the program sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidValue {
    pub function: u32,
    pub index: u32,
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// The CPUID leaves of this host, as the program sees them where CPUID
/// cannot be pinned, less the per-CPU APIC ids (so one host always
/// compares equal with itself).
pub fn host_cpuid() -> Vec<CpuidValue> {
    use std::arch::x86_64::__cpuid_count;
    let mut out = Vec::new();
    let mut leaf = |function: u32, index: u32| {
        let r = __cpuid_count(function, index);
        let mut l = CpuidValue { function, index, eax: r.eax, ebx: r.ebx, ecx: r.ecx, edx: r.edx };
        match function {
            1 => l.ebx &= 0x00ff_ffff,
            0xb | 0x1f => l.edx = 0,
            0x8000_001e => (l.eax, l.ebx, l.ecx) = (0, 0, 0),
            _ => {}
        }
        out.push(l);
    };
    let max = __cpuid_count(0, 0).eax.min(0x20);
    for f in 0..=max {
        let subleaves = match f {
            4 | 0xb | 0x1f => 4,
            7 | 0x14 => 2,
            0xd => 8,
            _ => 1,
        };
        for i in 0..subleaves {
            leaf(f, i);
        }
    }
    let ext = __cpuid_count(0x8000_0000, 0).eax.min(0x8000_0020);
    for f in 0x8000_0000..=ext {
        leaf(f, 0);
    }
    out
}

/// Leaves whose feature bits a replay host must have: (function, index,
/// register names to compare). Leaf 1's ebx holds counts, not features.
pub const FEATURE_LEAVES: [(u32, u32, &[&str]); 3] =
    [(1, 0, &["ecx", "edx"]), (7, 0, &["ebx", "ecx", "edx"]), (0x8000_0001, 0, &["ebx", "ecx", "edx"])];

/// Where the exception stub leaves its frame (kernel-slot offset).
const FRAME_GPA: u64 = GPA_KSTACK_TOP - EXCEPTION_FRAME_SIZE;
const FRAME_RIP: u64 = 16;
const FRAME_RFLAGS: u64 = 32;
const FRAME_RSP: u64 = 40;

/// The frame the ring-0 stub left for the host.
pub fn read_exception_frame(kernel: &MemFd) -> ExceptionFrame {
    let mut w = [0u64; 7];
    for (i, v) in w.iter_mut().enumerate() {
        *v = kernel.read_u64(FRAME_GPA + i as u64 * 8);
    }
    ExceptionFrame::from_words(w)
}

/// Where the stub's `iretq` returns to: `rip`, `rflags` and `rsp` of `regs`.
pub fn set_exception_return(kernel: &MemFd, regs: &Regs) {
    kernel.write(FRAME_GPA + FRAME_RIP, &regs.rip.to_le_bytes());
    kernel.write(FRAME_GPA + FRAME_RFLAGS, &regs.rflags.to_le_bytes());
    kernel.write(FRAME_GPA + FRAME_RSP, &regs.rsp.to_le_bytes());
}

/// The trap flag in rflags.
pub const RFLAGS_TF: u64 = 1 << 8;

/// A neutral fault from an exception frame; `cr2` is the page-fault
/// address register.
pub fn decode_fault(f: &ExceptionFrame, cr2: u64) -> GuestFault {
    let kind = match f.vector {
        0 => FaultKind::Divide,
        1 => FaultKind::Debug,
        3 => FaultKind::Breakpoint,
        4 | 5 => FaultKind::Overflow,
        6 => FaultKind::InvalidOpcode,
        7 | 16 | 19 => FaultKind::FloatingPoint,
        12 => FaultKind::Stack,
        13 => FaultKind::Protection,
        14 => FaultKind::Page {
            present: f.error_code & pf::PRESENT != 0,
            write: f.error_code & pf::WRITE != 0,
            fetch: f.error_code & pf::FETCH != 0,
        },
        17 => FaultKind::Alignment,
        v => FaultKind::Other(v as u32),
    };
    GuestFault {
        kind,
        vector: f.vector as u32,
        error_code: f.error_code,
        address: if f.vector == 14 { cr2 } else { 0 },
        rip: f.rip,
        user: f.cs & 3 == 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_decode_to_neutral_kinds() {
        let f = |vector, error_code| ExceptionFrame {
            vector,
            error_code,
            rip: 0x401000,
            cs: 0x33,
            rflags: 0x202,
            rsp: 0x7ff0,
            ss: 0x2b,
        };
        let pf = decode_fault(&f(14, pf::PRESENT | pf::WRITE | pf::USER), 0xdead000);
        assert_eq!(pf.kind, FaultKind::Page { present: true, write: true, fetch: false });
        assert_eq!((pf.address, pf.user, pf.vector), (0xdead000, true, 14));
        assert_eq!(decode_fault(&f(6, 0), 0x1234).address, 0, "only #PF carries an address");
        assert_eq!(decode_fault(&f(0, 0), 0).kind, FaultKind::Divide);
        assert_eq!(decode_fault(&f(3, 0), 0).kind, FaultKind::Breakpoint);
        assert_eq!(decode_fault(&f(17, 0), 0).kind, FaultKind::Alignment);
        assert_eq!(decode_fault(&f(2, 0), 0).kind, FaultKind::Other(2));
        let kernel = ExceptionFrame { cs: 0x10, ..f(13, 0) };
        assert!(!decode_fault(&kernel, 0).user);
    }

    #[test]
    fn exception_return_is_written_where_the_frame_is_read() {
        let k = MemFd::create("test-kernel", KERNEL_SLOT_SIZE).unwrap();
        let regs = Regs { rip: 0x1111, rflags: 0x246, rsp: 0x2222, ..Default::default() };
        set_exception_return(&k, &regs);
        let f = read_exception_frame(&k);
        assert_eq!((f.rip, f.rflags, f.rsp), (0x1111, 0x246, 0x2222));
    }
}
