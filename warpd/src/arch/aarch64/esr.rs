//! What an exception taken to EL1 was, from ESR_EL1 and FAR_EL1 (Arm ARM
//! D17.2.37 ESR_EL1: the exception class in bits [31:26], the
//! instruction length in bit 25, the syndrome in bits [24:0]), and the
//! signal Linux on arm64 sends for each (arch/arm64/mm/fault.c and
//! arch/arm64/kernel/traps.c semantics, as the man pages and the ABI
//! define the codes).

use crate::hv::FaultKind;
use crate::kernel::abi;

/// Exception classes taken from EL0 that the vectors hand to the host.
pub mod ec {
    pub const UNKNOWN: u32 = 0x00;
    pub const WF: u32 = 0x01;
    pub const FP_ACCESS: u32 = 0x07;
    pub const ILLEGAL_STATE: u32 = 0x0e;
    pub const SVC64: u32 = 0x15;
    pub const HVC64: u32 = 0x16;
    pub const SYSREG: u32 = 0x18;
    pub const SVE: u32 = 0x19;
    pub const IABORT_LOWER: u32 = 0x20;
    pub const IABORT_SAME: u32 = 0x21;
    pub const PC_ALIGN: u32 = 0x22;
    pub const DABORT_LOWER: u32 = 0x24;
    pub const DABORT_SAME: u32 = 0x25;
    pub const SP_ALIGN: u32 = 0x26;
    pub const FP64: u32 = 0x2c;
    pub const SERROR: u32 = 0x2f;
    pub const BREAKPOINT_LOWER: u32 = 0x30;
    pub const STEP_LOWER: u32 = 0x32;
    pub const WATCHPOINT_LOWER: u32 = 0x34;
    pub const BRK64: u32 = 0x3c;
}

/// A system register by its encoding (op0, op1, CRn, CRm, op2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysReg {
    pub op0: u8,
    pub op1: u8,
    pub crn: u8,
    pub crm: u8,
    pub op2: u8,
}

impl SysReg {
    pub const fn new(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> Self {
        SysReg { op0, op1, crn, crm, op2 }
    }
}

pub const CNTFRQ_EL0: SysReg = SysReg::new(3, 3, 14, 0, 0);
pub const CNTPCT_EL0: SysReg = SysReg::new(3, 3, 14, 0, 1);
pub const CNTVCT_EL0: SysReg = SysReg::new(3, 3, 14, 0, 2);
pub const CNTPCTSS_EL0: SysReg = SysReg::new(3, 3, 14, 0, 5);
pub const CNTVCTSS_EL0: SysReg = SysReg::new(3, 3, 14, 0, 6);

/// Which counter a trapped EL0 read was of: on this architecture the
/// counter is a source warpd controls (CNTKCTL_EL1 traps EL0's reads), so
/// each read is recorded and replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    Frequency,
    Physical,
    Virtual,
}

/// A decoded exception from EL0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exception {
    /// `svc #imm`: a system call (Linux uses #0, XNU's BSD calls #0x80).
    Svc {
        imm: u16,
    },
    /// `hvc #imm` (only warpd's vectors use it; from EL0 it is undefined).
    Hvc {
        imm: u16,
    },
    /// An MRS, MSR or system instruction that trapped: the register, the
    /// general register it moves (31: xzr) and whether it was a read.
    SysReg {
        reg: SysReg,
        rt: u8,
        read: bool,
    },
    /// An instruction or data abort from EL0.
    Abort {
        fetch: bool,
        write: bool,
        status: FaultStatus,
        address: Option<u64>,
    },
    PcAlignment {
        address: u64,
    },
    SpAlignment,
    /// A trapped floating-point exception: the ISS's IDF/IXF/UFF/OFF/DZF/IOF bits.
    FloatingPoint {
        flags: u8,
    },
    /// `brk #imm`.
    Brk {
        imm: u16,
    },
    /// The debug events a debugger arms.
    HardwareBreakpoint,
    SoftwareStep,
    Watchpoint {
        address: u64,
        write: bool,
    },
    /// An undefined instruction (or an `hvc`/`smc` at EL0, a trapped MRS of
    /// an EL1 register, an illegal exception return).
    Undefined,
    /// Something only a fault in warpd's own EL1 code or the machine gives
    /// (an abort taken at EL1, an SError): never the program's.
    Internal {
        ec: u32,
        iss: u32,
    },
}

/// The fault status code of an abort (DFSC/IFSC, ISS bits [5:0]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultStatus {
    /// No valid translation at this level (0-3): the page is not mapped.
    Translation(u8),
    /// The access flag was clear.
    AccessFlag(u8),
    /// The permissions forbid the access.
    Permission(u8),
    /// The address is beyond the translation's range.
    AddressSize(u8),
    Alignment,
    /// A synchronous external abort (the memory itself failed).
    External,
    Other(u8),
}

impl FaultStatus {
    fn of(fsc: u32) -> FaultStatus {
        let level = (fsc & 3) as u8;
        match fsc & 0x3f {
            0x00..=0x03 => FaultStatus::AddressSize(level),
            0x04..=0x07 => FaultStatus::Translation(level),
            0x08..=0x0b => FaultStatus::AccessFlag(level),
            0x0c..=0x0f => FaultStatus::Permission(level),
            0x10 | 0x14..=0x17 => FaultStatus::External,
            0x21 => FaultStatus::Alignment,
            s => FaultStatus::Other(s as u8),
        }
    }
}

/// Decodes `esr` (with `far`, the faulting address where the class has one).
pub fn decode(esr: u64, far: u64) -> Exception {
    let class = ((esr >> 26) & 0x3f) as u32;
    let iss = (esr & 0x1ff_ffff) as u32;
    let imm = (iss & 0xffff) as u16;
    match class {
        ec::SVC64 => Exception::Svc { imm },
        ec::HVC64 => Exception::Hvc { imm },
        ec::BRK64 => Exception::Brk { imm },
        ec::SYSREG => Exception::SysReg {
            reg: SysReg {
                op0: ((iss >> 20) & 3) as u8,
                op2: ((iss >> 17) & 7) as u8,
                op1: ((iss >> 14) & 7) as u8,
                crn: ((iss >> 10) & 15) as u8,
                crm: ((iss >> 1) & 15) as u8,
            },
            rt: ((iss >> 5) & 31) as u8,
            read: iss & 1 != 0,
        },
        ec::IABORT_LOWER | ec::DABORT_LOWER => {
            let fetch = class == ec::IABORT_LOWER;
            // FnV (bit 10): FAR does not hold the address.
            let address = (iss & (1 << 10) == 0).then_some(far);
            Exception::Abort { fetch, write: !fetch && iss & (1 << 6) != 0, status: FaultStatus::of(iss), address }
        }
        ec::PC_ALIGN => Exception::PcAlignment { address: far },
        ec::SP_ALIGN => Exception::SpAlignment,
        ec::FP64 => Exception::FloatingPoint { flags: (iss & 0x9f) as u8 },
        ec::BREAKPOINT_LOWER => Exception::HardwareBreakpoint,
        ec::STEP_LOWER => Exception::SoftwareStep,
        ec::WATCHPOINT_LOWER => Exception::Watchpoint { address: far, write: iss & (1 << 6) != 0 },
        ec::UNKNOWN | ec::ILLEGAL_STATE => Exception::Undefined,
        _ => Exception::Internal { ec: class, iss },
    }
}

/// si_code values of arm64's fault signals beyond what `abi` has.
pub const ILL_ILLOPC: i32 = 1;
pub const FPE_FLTDIV: i32 = 3;
pub const FPE_FLTOVF: i32 = 4;
pub const FPE_FLTUND: i32 = 5;
pub const FPE_FLTRES: i32 = 6;
pub const FPE_FLTINV: i32 = 7;
pub const FPE_FLTUNK: i32 = 14;
pub const BUS_OBJERR: i32 = 3;
pub const TRAP_BRKPT: i32 = 1;
pub const TRAP_HWBKPT: i32 = 4;

impl Exception {
    /// The counter a trapped read is of, if it is one (the `mrs` of
    /// CNTVCT_EL0, CNTPCT_EL0, their self-synchronised forms, or CNTFRQ_EL0).
    pub fn counter_read(&self) -> Option<(Counter, u8)> {
        match *self {
            Exception::SysReg { reg, rt, read: true } => match reg {
                CNTVCT_EL0 | CNTVCTSS_EL0 => Some((Counter::Virtual, rt)),
                CNTPCT_EL0 | CNTPCTSS_EL0 => Some((Counter::Physical, rt)),
                CNTFRQ_EL0 => Some((Counter::Frequency, rt)),
                _ => None,
            },
            _ => None,
        }
    }

    /// The architecture-neutral kind the kernel model takes, where there is one.
    pub fn fault_kind(&self) -> Option<FaultKind> {
        Some(match *self {
            Exception::Abort { status: FaultStatus::Alignment, .. }
            | Exception::PcAlignment { .. }
            | Exception::SpAlignment => FaultKind::Alignment,
            Exception::Abort { fetch, write, status, .. } => match status {
                FaultStatus::Permission(_) => FaultKind::Page { present: true, write, fetch },
                FaultStatus::External => FaultKind::Other(ec::DABORT_LOWER),
                _ => FaultKind::Page { present: false, write, fetch },
            },
            Exception::FloatingPoint { .. } => FaultKind::FloatingPoint,
            Exception::Brk { .. } => FaultKind::Breakpoint,
            Exception::HardwareBreakpoint | Exception::SoftwareStep | Exception::Watchpoint { .. } => FaultKind::Debug,
            Exception::Undefined | Exception::Hvc { .. } => FaultKind::InvalidOpcode,
            Exception::SysReg { .. } if self.counter_read().is_none() => FaultKind::InvalidOpcode,
            _ => return None,
        })
    }

    /// The signal, si_code and si_addr Linux on arm64 gives the program
    /// for this exception; None for a syscall, a counter read (warpd
    /// answers both) or an internal one.
    pub fn linux_signal(&self, pc: u64) -> Option<(i32, i32, u64)> {
        Some(match *self {
            Exception::Abort { status, address, .. } => {
                let at = address.unwrap_or(0);
                match status {
                    FaultStatus::Permission(_) => (abi::SIGSEGV, abi::SEGV_ACCERR, at),
                    FaultStatus::Alignment => (abi::SIGBUS, abi::BUS_ADRALN, at),
                    FaultStatus::External => (abi::SIGBUS, BUS_OBJERR, at),
                    _ => (abi::SIGSEGV, abi::SEGV_MAPERR, at),
                }
            }
            Exception::PcAlignment { address } => (abi::SIGBUS, abi::BUS_ADRALN, address),
            Exception::SpAlignment => (abi::SIGBUS, abi::BUS_ADRALN, pc),
            Exception::FloatingPoint { flags } => {
                let code = match flags {
                    f if f & 1 != 0 => FPE_FLTINV,
                    f if f & 2 != 0 => FPE_FLTDIV,
                    f if f & 4 != 0 => FPE_FLTOVF,
                    f if f & 8 != 0 => FPE_FLTUND,
                    f if f & 16 != 0 => FPE_FLTRES,
                    _ => FPE_FLTUNK,
                };
                (abi::SIGFPE, code, pc)
            }
            Exception::Brk { .. } => (abi::SIGTRAP, TRAP_BRKPT, pc),
            Exception::HardwareBreakpoint => (abi::SIGTRAP, TRAP_HWBKPT, pc),
            Exception::Watchpoint { address, .. } => (abi::SIGTRAP, TRAP_HWBKPT, address),
            Exception::SoftwareStep => (abi::SIGTRAP, abi::TRAP_TRACE, pc),
            Exception::Undefined | Exception::Hvc { .. } => (abi::SIGILL, ILL_ILLOPC, pc),
            Exception::SysReg { .. } if self.counter_read().is_none() => (abi::SIGILL, ILL_ILLOPC, pc),
            Exception::SysReg { .. } | Exception::Svc { .. } | Exception::Internal { .. } => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esr(class: u32, iss: u32) -> u64 {
        ((class as u64) << 26) | (1 << 25) | iss as u64
    }

    #[test]
    fn svc_and_brk_carry_their_immediates() {
        assert_eq!(decode(0x5600_0000, 0), Exception::Svc { imm: 0 }, "svc #0 as KVM reports it");
        assert_eq!(decode(esr(ec::SVC64, 0x80), 0), Exception::Svc { imm: 0x80 }, "XNU's BSD calls");
        assert_eq!(decode(esr(ec::BRK64, 0x3e8), 0), Exception::Brk { imm: 1000 });
        assert_eq!(decode(esr(ec::BRK64, 0), 0).linux_signal(0x400000), Some((abi::SIGTRAP, TRAP_BRKPT, 0x400000)));
        assert_eq!(decode(esr(ec::SVC64, 0), 0).linux_signal(0), None);
    }

    #[test]
    fn aborts_say_mapped_or_not_read_or_write() {
        // A data abort, write (WnR), level-3 translation fault.
        let e = decode(esr(ec::DABORT_LOWER, (1 << 6) | 0x07), 0xdead_0000);
        assert_eq!(
            e,
            Exception::Abort {
                fetch: false,
                write: true,
                status: FaultStatus::Translation(3),
                address: Some(0xdead_0000)
            }
        );
        assert_eq!(e.fault_kind(), Some(FaultKind::Page { present: false, write: true, fetch: false }));
        assert_eq!(e.linux_signal(0), Some((abi::SIGSEGV, abi::SEGV_MAPERR, 0xdead_0000)));
        // A read of a PROT_NONE or read-only-for-writes page: permission, level 3.
        let p = decode(esr(ec::DABORT_LOWER, 0x0f), 0x1000);
        assert_eq!(p.linux_signal(0), Some((abi::SIGSEGV, abi::SEGV_ACCERR, 0x1000)));
        // An instruction fetch from a non-executable page.
        let x = decode(esr(ec::IABORT_LOWER, 0x0f), 0x5000);
        assert_eq!(x.fault_kind(), Some(FaultKind::Page { present: true, write: false, fetch: true }));
        // Alignment (an exclusive or atomic access to an unaligned address).
        assert_eq!(
            decode(esr(ec::DABORT_LOWER, 0x21), 0x1001).linux_signal(0),
            Some((abi::SIGBUS, abi::BUS_ADRALN, 0x1001))
        );
        // FnV: no address.
        let n = decode(esr(ec::DABORT_LOWER, (1 << 10) | 0x04), 0x1234);
        assert_eq!(n.linux_signal(0), Some((abi::SIGSEGV, abi::SEGV_MAPERR, 0)));
        // An abort taken at EL1 is warpd's, never the program's.
        assert!(matches!(decode(esr(ec::DABORT_SAME, 0x07), 0), Exception::Internal { ec: 0x25, .. }));
        assert_eq!(decode(esr(ec::DABORT_SAME, 0x07), 0).linux_signal(0), None);
    }

    #[test]
    fn counter_reads_are_recognised_by_their_encoding() {
        // mrs x3, cntvct_el0: op0 3, op1 3, CRn 14, CRm 0, op2 2, Rt 3, read.
        let iss = (3 << 20) | (2 << 17) | (3 << 14) | (14 << 10) | (3 << 5) | 1;
        let e = decode(esr(ec::SYSREG, iss), 0);
        assert_eq!(e.counter_read(), Some((Counter::Virtual, 3)));
        assert_eq!(e.linux_signal(0), None, "warpd answers it");
        let frq = (3 << 20) | (3 << 14) | (14 << 10) | (31 << 5) | 1;
        assert_eq!(decode(esr(ec::SYSREG, frq), 0).counter_read(), Some((Counter::Frequency, 31)));
        // An msr to the counter, or an mrs of an EL1 register: SIGILL.
        let write = iss & !1;
        assert_eq!(decode(esr(ec::SYSREG, write), 0).linux_signal(8), Some((abi::SIGILL, ILL_ILLOPC, 8)));
        let sctlr = (3 << 20) | (1 << 10) | 1;
        assert_eq!(decode(esr(ec::SYSREG, sctlr), 0).fault_kind(), Some(FaultKind::InvalidOpcode));
    }

    #[test]
    fn the_rest_map_as_linux_does() {
        assert_eq!(decode(esr(ec::UNKNOWN, 0), 0).linux_signal(4), Some((abi::SIGILL, ILL_ILLOPC, 4)));
        assert_eq!(
            decode(esr(ec::PC_ALIGN, 0), 0x4001).linux_signal(0x4001),
            Some((abi::SIGBUS, abi::BUS_ADRALN, 0x4001))
        );
        assert_eq!(decode(esr(ec::SP_ALIGN, 0), 0).linux_signal(0x40), Some((abi::SIGBUS, abi::BUS_ADRALN, 0x40)));
        assert_eq!(decode(esr(ec::FP64, 2), 0).linux_signal(0), Some((abi::SIGFPE, FPE_FLTDIV, 0)));
        assert_eq!(decode(esr(ec::FP64, 0), 0).linux_signal(0), Some((abi::SIGFPE, FPE_FLTUNK, 0)));
        assert_eq!(decode(esr(ec::STEP_LOWER, 0), 0).linux_signal(0), Some((abi::SIGTRAP, abi::TRAP_TRACE, 0)));
        assert_eq!(
            decode(esr(ec::WATCHPOINT_LOWER, 1 << 6), 0x7000).linux_signal(0),
            Some((abi::SIGTRAP, TRAP_HWBKPT, 0x7000))
        );
        assert!(matches!(decode(esr(ec::SERROR, 0), 0), Exception::Internal { .. }));
    }
}
