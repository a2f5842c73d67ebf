//! Signal frames as Linux builds them for arm64 (the ABI of
//! `asm/sigcontext.h` and `asm/ucontext.h`), and what `rt_sigreturn`
//! accepts back.
//!
//! ```text
//!  frame     siginfo                                         128
//!  +128      ucontext: flags, link, stack (24), sigmask (8),
//!            unused to 1024 bits of mask                     176
//!  +304      sigcontext: fault_address, x0-x30, sp, pc,
//!            pstate                                          288
//!  +592      __reserved (4096): records, each {magic, size}:
//!            fpsimd_context (528), esr_context (16) for a
//!            fault, then a terminator {0, 0}
//!  +4688     frame record {fp, lr}: the interrupted x29, x30
//! ```
//!
//! The frame is 16-byte aligned below the interrupted sp (arm64 has no red
//! zone) or the top of the alternate stack; the handler gets x0 = signo,
//! x1 = &info, x2 = &uc, x29 = the frame record, x30 = the restorer, sp =
//! the frame. No SVE, SME or other record is written: the guest model
//! offers no such state (its ID registers say so).

use super::{FpSimd, Regs};

pub const INFO_AT: usize = 0;
pub const UC_AT: usize = 128;
const UC_STACK_AT: usize = UC_AT + 16;
const UC_SIGMASK_AT: usize = UC_AT + 40;
pub const MCONTEXT_AT: usize = UC_AT + 176;
const FAULT_ADDRESS_AT: usize = MCONTEXT_AT;
const REGS_AT: usize = MCONTEXT_AT + 8;
const SP_AT: usize = MCONTEXT_AT + 256;
const PC_AT: usize = MCONTEXT_AT + 264;
const PSTATE_AT: usize = MCONTEXT_AT + 272;
pub const RESERVED_AT: usize = MCONTEXT_AT + 288;
const RESERVED_LEN: usize = 4096;
/// `sizeof(struct rt_sigframe)`.
pub const FRAME_SIZE: u64 = (RESERVED_AT + RESERVED_LEN) as u64;
/// The frame and the frame record after it.
pub const FRAME_BYTES: u64 = FRAME_SIZE + 16;

pub const FPSIMD_MAGIC: u32 = 0x4650_8001;
const FPSIMD_SIZE: u32 = 528;
pub const ESR_MAGIC: u32 = 0x4553_5201;
const ESR_SIZE: u32 = 16;

/// PSTATE bits (Arm ARM C5.2.18 SPSR_EL1 for AArch64): NZCV, DAIF, the mode.
pub const PSR_N: u64 = 1 << 31;
pub const PSR_Z: u64 = 1 << 30;
pub const PSR_C: u64 = 1 << 29;
pub const PSR_V: u64 = 1 << 28;
pub const PSR_D: u64 = 1 << 9;
pub const PSR_A: u64 = 1 << 8;
pub const PSR_I: u64 = 1 << 7;
pub const PSR_F: u64 = 1 << 6;
pub const PSR_MODE32: u64 = 1 << 4;
pub const PSR_MODE_MASK: u64 = 0xf;
/// EL0 with SP_EL0.
pub const PSR_MODE_EL0T: u64 = 0;
const PSR_SS: u64 = 1 << 21;
const PSR_IL: u64 = 1 << 20;
const PSR_TCO: u64 = 1 << 25;
const PSR_BTYPE: u64 = 3 << 10;
/// SS_ONSTACK, SS_DISABLE as sigaltstack says them.
const SS_ONSTACK: i32 = 1;

/// Everything a frame is built from.
pub struct FrameSpec<'a> {
    /// The registers the program resumes with when the handler returns.
    pub resume: &'a Regs,
    pub fp: &'a FpSimd,
    pub handler: u64,
    /// Where the handler returns: sa_restorer (SA_RESTORER), else the
    /// guest model's `rt_sigreturn` trampoline.
    pub restorer: u64,
    /// The 128 bytes of siginfo, and whether the handler takes it
    /// (SA_SIGINFO: x1 and x2 point at it and at the ucontext).
    pub info: [u8; 128],
    pub siginfo: bool,
    /// The blocked mask to restore on return.
    pub old_mask: u64,
    /// For a fault: the address (fault_address) and ESR_EL1 as Linux
    /// reports it to user space (an esr_context record).
    pub fault: Option<(u64, u64)>,
    /// The alternate stack (sp, flags, size) as sigaltstack set it, and
    /// whether this delivery runs on it.
    pub altstack: (u64, i32, u64),
    pub on_altstack: bool,
}

/// A built frame: bytes to write at `addr`, and the handler's registers.
pub struct Frame {
    pub addr: u64,
    pub bytes: Vec<u8>,
    pub regs: Regs,
}

fn put(b: &mut [u8], at: usize, v: &[u8]) {
    b[at..at + v.len()].copy_from_slice(v);
}

fn word(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn half(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Lays out the frame below the interrupted stack (or on the alternate one).
pub fn build(s: &FrameSpec) -> Frame {
    let (ss_sp, ss_flags, ss_size) = s.altstack;
    let top = if s.on_altstack { ss_sp.wrapping_add(ss_size) } else { s.resume.sp };
    let record = top.wrapping_sub(16) & !15;
    let frame = record.wrapping_sub(FRAME_SIZE) & !15;
    let mut b = vec![0u8; (record + 16 - frame) as usize];
    let r = s.resume;

    put(&mut b, INFO_AT, &s.info);
    // uc_flags and uc_link are 0 on arm64.
    put(&mut b, UC_STACK_AT, &ss_sp.to_le_bytes());
    let flags = if s.on_altstack { SS_ONSTACK } else { ss_flags };
    put(&mut b, UC_STACK_AT + 8, &flags.to_le_bytes());
    put(&mut b, UC_STACK_AT + 16, &ss_size.to_le_bytes());
    put(&mut b, UC_SIGMASK_AT, &s.old_mask.to_le_bytes());
    put(&mut b, FAULT_ADDRESS_AT, &s.fault.map_or(0, |f| f.0).to_le_bytes());
    for (i, x) in r.x.iter().enumerate() {
        put(&mut b, REGS_AT + i * 8, &x.to_le_bytes());
    }
    put(&mut b, SP_AT, &r.sp.to_le_bytes());
    put(&mut b, PC_AT, &r.pc.to_le_bytes());
    put(&mut b, PSTATE_AT, &r.pstate.to_le_bytes());

    let mut at = RESERVED_AT;
    put(&mut b, at, &FPSIMD_MAGIC.to_le_bytes());
    put(&mut b, at + 4, &FPSIMD_SIZE.to_le_bytes());
    put(&mut b, at + 8, &s.fp.fpsr.to_le_bytes());
    put(&mut b, at + 12, &s.fp.fpcr.to_le_bytes());
    for (i, v) in s.fp.v.iter().enumerate() {
        put(&mut b, at + 16 + i * 16, &v.to_le_bytes());
    }
    at += FPSIMD_SIZE as usize;
    if let Some((_, esr)) = s.fault {
        put(&mut b, at, &ESR_MAGIC.to_le_bytes());
        put(&mut b, at + 4, &ESR_SIZE.to_le_bytes());
        put(&mut b, at + 8, &esr.to_le_bytes());
        at += ESR_SIZE as usize;
    }
    let _terminator = at; // {0, 0}: the bytes are zero already

    let rec = (record - frame) as usize;
    put(&mut b, rec, &r.x[29].to_le_bytes());
    put(&mut b, rec + 8, &r.x[30].to_le_bytes());

    let mut regs = *r;
    regs.x[0] = i32::from_le_bytes(s.info[..4].try_into().expect("4")) as u64;
    if s.siginfo {
        regs.x[1] = frame + INFO_AT as u64;
        regs.x[2] = frame + UC_AT as u64;
    }
    regs.x[29] = record;
    regs.x[30] = s.restorer;
    regs.sp = frame;
    regs.pc = s.handler;
    regs.pstate &= !(PSR_TCO | PSR_BTYPE | PSR_SS);
    Frame { addr: frame, bytes: b, regs }
}

/// Why `rt_sigreturn` refused a frame (the program then gets SIGSEGV, as
/// on Linux).
#[derive(Debug, PartialEq, Eq)]
pub enum BadFrame {
    /// sp was not 16-byte aligned at the call.
    Misaligned,
    /// The saved PSTATE is not one EL0 may return to (another mode,
    /// AArch32, masked exceptions, the illegal-state bit).
    Pstate(u64),
    /// The records in __reserved: no fpsimd_context, a bad size, an
    /// unknown record, no terminator.
    Records(&'static str),
}

/// What `rt_sigreturn` restores.
pub struct Restored {
    pub regs: Regs,
    pub fp: FpSimd,
    pub mask: u64,
}

/// Reads the frame `rt_sigreturn` finds at `sp` (`FRAME_SIZE` bytes there).
pub fn restore(sp: u64, frame: &[u8]) -> Result<Restored, BadFrame> {
    if sp & 15 != 0 {
        return Err(BadFrame::Misaligned);
    }
    let mut regs = Regs::default();
    for i in 0..31 {
        regs.x[i] = word(frame, REGS_AT + i * 8);
    }
    regs.sp = word(frame, SP_AT);
    regs.pc = word(frame, PC_AT);
    let pstate = word(frame, PSTATE_AT);
    let ok =
        pstate & PSR_MODE_MASK == PSR_MODE_EL0T && pstate & (PSR_MODE32 | PSR_D | PSR_A | PSR_I | PSR_F | PSR_IL) == 0;
    if !ok {
        return Err(BadFrame::Pstate(pstate));
    }
    // A single step the program did not ask for does not survive.
    regs.pstate = pstate & !PSR_SS;

    let mut fp = None;
    let mut at = RESERVED_AT;
    loop {
        if at + 8 > RESERVED_AT + RESERVED_LEN {
            return Err(BadFrame::Records("no terminator"));
        }
        let (magic, size) = (half(frame, at), half(frame, at + 4) as usize);
        match magic {
            0 if size == 0 => break,
            0 => return Err(BadFrame::Records("a terminator with a size")),
            FPSIMD_MAGIC if size == FPSIMD_SIZE as usize && fp.is_none() => {
                let mut v = [0u128; 32];
                for (i, r) in v.iter_mut().enumerate() {
                    let o = at + 16 + i * 16;
                    *r = u128::from_le_bytes(frame[o..o + 16].try_into().expect("16 bytes"));
                }
                fp = Some(FpSimd { v, fpsr: half(frame, at + 8), fpcr: half(frame, at + 12) });
            }
            FPSIMD_MAGIC => return Err(BadFrame::Records("a bad fpsimd_context")),
            ESR_MAGIC if size == ESR_SIZE as usize => {} // ignored on return, as Linux does
            _ => return Err(BadFrame::Records("an unknown record")),
        }
        if size < 8 || size % 16 != 0 {
            return Err(BadFrame::Records("a record of a bad size"));
        }
        at += size;
    }
    let fp = fp.ok_or(BadFrame::Records("no fpsimd_context"))?;
    Ok(Restored { regs, fp, mask: word(frame, UC_SIGMASK_AT) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interrupted() -> (Regs, FpSimd) {
        let mut r = Regs { sp: 0x7fff_ffff_e008, pc: 0x40_1000, pstate: PSR_Z | PSR_C, ..Default::default() };
        for (i, x) in r.x.iter_mut().enumerate() {
            *x = 0x1000 + i as u64;
        }
        let mut fp = FpSimd { fpsr: 0x10, fpcr: 0x0300_0000, ..Default::default() };
        fp.v[31] = u128::MAX - 5;
        (r, fp)
    }

    fn info(signo: i32) -> [u8; 128] {
        let mut i = [0u8; 128];
        i[..4].copy_from_slice(&signo.to_le_bytes());
        i
    }

    #[test]
    fn the_layout_is_the_abis() {
        assert_eq!(FRAME_SIZE, 4688, "sizeof(struct rt_sigframe) on arm64");
        assert_eq!(MCONTEXT_AT, 304);
        assert_eq!(RESERVED_AT % 16, 0);
    }

    #[test]
    fn a_frame_round_trips_through_sigreturn() {
        let (r, fp) = interrupted();
        let f = build(&FrameSpec {
            resume: &r,
            fp: &fp,
            handler: 0x40_2000,
            restorer: 0x40_3000,
            info: info(11),
            siginfo: true,
            old_mask: 0x4000,
            fault: Some((0xdead_0000, 0x9200_0047)),
            altstack: (0, 2, 0),
            on_altstack: false,
        });
        assert_eq!(f.addr % 16, 0);
        assert!(f.addr + f.bytes.len() as u64 <= r.sp, "below the interrupted sp");
        assert_eq!((f.regs.x[0], f.regs.x[1], f.regs.x[2]), (11, f.addr, f.addr + 128));
        assert_eq!((f.regs.pc, f.regs.x[30], f.regs.sp), (0x40_2000, 0x40_3000, f.addr));
        // x29 names the frame record, which holds the interrupted fp and lr.
        let rec = (f.regs.x[29] - f.addr) as usize;
        assert_eq!(word(&f.bytes, rec), r.x[29]);
        assert_eq!(word(&f.bytes, rec + 8), r.x[30]);
        assert_eq!(word(&f.bytes, FAULT_ADDRESS_AT), 0xdead_0000);
        assert_eq!(half(&f.bytes, RESERVED_AT), FPSIMD_MAGIC);
        assert_eq!(half(&f.bytes, RESERVED_AT + 528), ESR_MAGIC);
        assert_eq!(word(&f.bytes, RESERVED_AT + 528 + 8), 0x9200_0047);
        // The handler returns into the restorer, which calls rt_sigreturn
        // with sp = the frame.
        let back = restore(f.regs.sp, &f.bytes).unwrap();
        assert_eq!(back.regs, r);
        assert_eq!(back.fp, fp);
        assert_eq!(back.mask, 0x4000);
    }

    #[test]
    fn the_alternate_stack_is_used_and_said() {
        let (r, fp) = interrupted();
        let f = build(&FrameSpec {
            resume: &r,
            fp: &fp,
            handler: 1,
            restorer: 2,
            info: info(10),
            siginfo: false,
            old_mask: 0,
            fault: None,
            altstack: (0x10_0000, 0, 0x4_0000),
            on_altstack: true,
        });
        assert!(f.addr >= 0x10_0000 && f.addr + f.bytes.len() as u64 <= 0x14_0000);
        assert_eq!(i32::from_le_bytes(f.bytes[UC_STACK_AT + 8..UC_STACK_AT + 12].try_into().unwrap()), SS_ONSTACK);
        assert_eq!(half(&f.bytes, RESERVED_AT + 528), 0, "no esr_context without a fault: the terminator");
        assert_eq!((f.regs.x[1], f.regs.x[2]), (r.x[1], r.x[2]), "without SA_SIGINFO x1 and x2 are the program's");
    }

    #[test]
    fn sigreturn_refuses_what_linux_refuses() {
        let (r, fp) = interrupted();
        let spec = |pstate: u64| {
            let mut resume = r;
            resume.pstate = pstate;
            let f = build(&FrameSpec {
                resume: &resume,
                fp: &fp,
                handler: 1,
                restorer: 2,
                info: info(10),
                siginfo: true,
                old_mask: 0,
                fault: None,
                altstack: (0, 2, 0),
                on_altstack: false,
            });
            (f.addr, f.bytes)
        };
        let (sp, good) = spec(PSR_N);
        assert!(restore(sp, &good).is_ok());
        assert_eq!(restore(sp + 8, &good).err(), Some(BadFrame::Misaligned));
        for bad in [0b0101, PSR_MODE32, PSR_I, PSR_D | PSR_A, PSR_IL] {
            let (sp, b) = spec(bad);
            assert_eq!(restore(sp, &b).err(), Some(BadFrame::Pstate(bad)), "{bad:#x}");
        }
        let mut no_fp = good.clone();
        put(&mut no_fp, RESERVED_AT, &0u32.to_le_bytes());
        put(&mut no_fp, RESERVED_AT + 4, &0u32.to_le_bytes());
        assert_eq!(restore(sp, &no_fp).err(), Some(BadFrame::Records("no fpsimd_context")));
        let mut odd = good.clone();
        put(&mut odd, RESERVED_AT + 4, &520u32.to_le_bytes());
        assert!(matches!(restore(sp, &odd), Err(BadFrame::Records(_))));
        let mut unknown = good;
        put(&mut unknown, RESERVED_AT + 528, &0x5356_4501u32.to_le_bytes()); // SVE_MAGIC
        put(&mut unknown, RESERVED_AT + 532, &16u32.to_le_bytes());
        assert_eq!(restore(sp, &unknown).err(), Some(BadFrame::Records("an unknown record")));
    }
}
