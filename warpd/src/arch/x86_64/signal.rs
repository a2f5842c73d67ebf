//! Signal frames as Linux builds them for x86_64 (`struct rt_sigframe`):
//! what a handler finds on its stack, and what `rt_sigreturn` restores.
//!
//! ```text
//!  frame    pretcode (sa_restorer)                    8
//!  +8       ucontext: flags, link, stack (24),
//!           mcontext (sigcontext, 256), sigmask      304
//!  +312     siginfo                                  128
//!  ...      (padding)
//!  fpstate  XSAVE area, 64-byte aligned, then FP_XSTATE_MAGIC2
//! ```

use super::{Regs, SEL_UCODE, SEL_UDATA};

pub const FRAME_SIZE: u64 = 8 + UCONTEXT_SIZE + 128;
const UCONTEXT_SIZE: u64 = 304;
const MCONTEXT_AT: usize = 8 + 40;
const SIGMASK_AT: usize = 8 + 296;
const INFO_AT: usize = 8 + 304;
const RED_ZONE: u64 = 128;
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
const UC_FP_XSTATE: u64 = 1;
const UC_SIGCONTEXT_SS: u64 = 2;
const UC_STRICT_RESTORE_SS: u64 = 4;

/// Flags a handler's return may change (Linux's FIX_EFLAGS).
const FIX_EFLAGS: u64 = 0x4_0dd5; // AC OF DF TF SF ZF AF PF CF RF
const EFLAGS_TF: u64 = 1 << 8;
const EFLAGS_DF: u64 = 1 << 10;
const EFLAGS_RF: u64 = 1 << 16;

/// Bytes of the XSAVE area a frame holds for `xcr0`: the legacy area and
/// header (576), plus the AVX upper halves (256) when AVX is on.
pub fn xsave_len(xcr0: u64) -> usize {
    if xcr0 & 4 != 0 {
        832
    } else {
        576
    }
}

/// A `siginfo_t` (128 bytes): who sent a signal and why, as the handler,
/// sigwaitinfo or a signalfd read tell the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigInfo {
    pub signo: i32,
    pub errno: i32,
    pub code: i32,
    /// Bytes 16.. : the union (sender pid and uid; a fault's address; a
    /// timer's id, overrun and value; a queued value).
    pub fields: [u8; 112],
}

/// si_code of a POSIX timer's expiry.
pub const SI_TIMER: i32 = -2;
/// si_code of sigqueue.
pub const SI_QUEUE: i32 = -1;
/// si_code of tgkill and tkill.
pub const SI_TKILL: i32 = -6;

impl SigInfo {
    /// Sent by a process (kill, tgkill: SI_USER, SI_TKILL; the kernel: SI_KERNEL).
    pub fn sent(signo: i32, code: i32, pid: u32, uid: u32) -> Self {
        let mut fields = [0u8; 112];
        fields[..4].copy_from_slice(&pid.to_le_bytes());
        fields[4..8].copy_from_slice(&uid.to_le_bytes());
        SigInfo { signo, errno: 0, code, fields }
    }

    /// A CPU fault at `addr` (si_addr).
    pub fn fault(signo: i32, code: i32, addr: u64) -> Self {
        let mut fields = [0u8; 112];
        fields[..8].copy_from_slice(&addr.to_le_bytes());
        SigInfo { signo, errno: 0, code, fields }
    }

    /// A POSIX timer's expiry: its id, the expiries missed meanwhile and
    /// the value sigevent named.
    pub fn timer(signo: i32, id: i32, overrun: i32, value: u64) -> Self {
        let mut fields = [0u8; 112];
        fields[..4].copy_from_slice(&id.to_le_bytes());
        fields[4..8].copy_from_slice(&overrun.to_le_bytes());
        fields[8..16].copy_from_slice(&value.to_le_bytes());
        SigInfo { signo, errno: 0, code: SI_TIMER, fields }
    }

    /// A signal's siginfo as the host gave it to the broker (its first 32
    /// bytes: code, and the sender's pid and uid or what the code puts
    /// there); None when it is not known (older traces).
    pub fn from_host(signo: i32, head: &[u8]) -> Option<Self> {
        if head.len() < 32 {
            return None;
        }
        let word = |at: usize| i32::from_le_bytes(head[at..at + 4].try_into().expect("4 bytes"));
        let mut fields = [0u8; 112];
        fields[..16].copy_from_slice(&head[16..32]);
        Some(SigInfo { signo, errno: word(4), code: word(8), fields })
    }

    /// The siginfo a program passed to rt_sigqueueinfo, for `signo`.
    pub fn queued(signo: i32, raw: &[u8; 128]) -> Self {
        let word = |at: usize| i32::from_le_bytes(raw[at..at + 4].try_into().expect("4 bytes"));
        let mut fields = [0u8; 112];
        fields.copy_from_slice(&raw[16..]);
        SigInfo { signo, errno: word(4), code: word(8), fields }
    }

    /// A timer's id and overrun (SI_TIMER).
    pub fn timer_overrun(&self) -> Option<(i32, i32)> {
        let word = |at: usize| i32::from_le_bytes(self.fields[at..at + 4].try_into().expect("4 bytes"));
        (self.code == SI_TIMER).then(|| (word(0), word(4)))
    }

    pub fn set_timer_overrun(&mut self, overrun: i32) {
        self.fields[4..8].copy_from_slice(&overrun.to_le_bytes());
    }

    /// As a signalfd read gives it (`struct signalfd_siginfo`), the union
    /// read the way its si_code says it was filled.
    pub fn to_signalfd(&self) -> [u8; 128] {
        let mut b = [0u8; 128];
        let f = &self.fields;
        b[..4].copy_from_slice(&self.signo.to_le_bytes());
        b[4..8].copy_from_slice(&self.errno.to_le_bytes());
        b[8..12].copy_from_slice(&self.code.to_le_bytes());
        let fault = matches!(self.signo, 4 | 5 | 7 | 8 | 11) && self.code > 0; // SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV
        if self.code == SI_TIMER {
            b[24..28].copy_from_slice(&f[..4]); // ssi_tid
            b[32..36].copy_from_slice(&f[4..8]); // ssi_overrun
            b[44..48].copy_from_slice(&f[8..12]); // ssi_int
            b[48..56].copy_from_slice(&f[8..16]); // ssi_ptr
        } else if fault {
            b[72..80].copy_from_slice(&f[..8]); // ssi_addr
        } else {
            b[12..20].copy_from_slice(&f[..8]); // ssi_pid, ssi_uid
            if self.code == SI_QUEUE || self.code == SI_TIMER || self.code < 0 && self.code != SI_TKILL {
                b[44..48].copy_from_slice(&f[8..12]); // ssi_int
                b[48..56].copy_from_slice(&f[8..16]); // ssi_ptr
            }
        }
        b
    }

    pub fn to_bytes(&self) -> [u8; 128] {
        let mut b = [0u8; 128];
        b[..4].copy_from_slice(&self.signo.to_le_bytes());
        b[4..8].copy_from_slice(&self.errno.to_le_bytes());
        b[8..12].copy_from_slice(&self.code.to_le_bytes());
        b[16..].copy_from_slice(&self.fields);
        b
    }
}

/// Everything a frame is built from.
pub struct FrameSpec<'a> {
    /// The registers the program resumes with when the handler returns.
    pub resume: &'a Regs,
    pub handler: u64,
    pub restorer: u64,
    pub info: SigInfo,
    /// The blocked mask to restore on return.
    pub old_mask: u64,
    /// The XSAVE area (standard format) of the interrupted code.
    pub xsave: &'a [u8],
    pub xcr0: u64,
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

/// Lays out the frame below the interrupted stack (or on the alternate one).
pub fn build(s: &FrameSpec) -> Frame {
    let (ss_sp, ss_flags, ss_size) = s.altstack;
    let top = if s.on_altstack { ss_sp.wrapping_add(ss_size) } else { s.resume.rsp.wrapping_sub(RED_ZONE) };
    let fp_len = s.xsave.len() as u64 + 4;
    let fp_addr = top.wrapping_sub(fp_len) & !63;
    let frame = (fp_addr.wrapping_sub(FRAME_SIZE) & !15).wrapping_sub(8);
    let mut b = vec![0u8; (fp_addr + fp_len - frame) as usize];

    put(&mut b, 0, &s.restorer.to_le_bytes());
    put(&mut b, 8, &(UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS).to_le_bytes());
    put(&mut b, 24, &ss_sp.to_le_bytes());
    put(&mut b, 32, &ss_flags.to_le_bytes());
    put(&mut b, 40, &ss_size.to_le_bytes());
    let r = s.resume;
    let gprs = [
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi, r.rsi, r.rbp, r.rbx, r.rdx, r.rax, r.rcx, r.rsp,
        r.rip, r.rflags,
    ];
    for (i, v) in gprs.iter().enumerate() {
        put(&mut b, MCONTEXT_AT + i * 8, &v.to_le_bytes());
    }
    let segs = MCONTEXT_AT + 18 * 8;
    put(&mut b, segs, &SEL_UCODE.to_le_bytes());
    put(&mut b, segs + 6, &SEL_UDATA.to_le_bytes());
    put(&mut b, segs + 8 + 16, &s.old_mask.to_le_bytes()); // oldmask (after err, trapno)
    put(&mut b, segs + 8 + 32, &fp_addr.to_le_bytes()); // fpstate (after cr2)
    put(&mut b, SIGMASK_AT, &s.old_mask.to_le_bytes());

    put(&mut b, INFO_AT, &s.info.to_bytes());

    let fp = (fp_addr - frame) as usize;
    put(&mut b, fp, s.xsave);
    // The software-reserved bytes of the FXSAVE area say what follows.
    let size = s.xsave.len() as u32;
    put(&mut b, fp + 464, &FP_XSTATE_MAGIC1.to_le_bytes());
    put(&mut b, fp + 468, &(size + 4).to_le_bytes());
    put(&mut b, fp + 472, &s.xcr0.to_le_bytes());
    put(&mut b, fp + 480, &size.to_le_bytes());
    put(&mut b, fp + size as usize, &FP_XSTATE_MAGIC2.to_le_bytes());

    let regs = Regs {
        rdi: s.info.signo as u64,
        rsi: frame + INFO_AT as u64,
        rdx: frame + 8,
        rax: 0,
        rsp: frame,
        rip: s.handler,
        rflags: r.rflags & !(EFLAGS_TF | EFLAGS_DF | EFLAGS_RF),
        ..*r
    };
    Frame { addr: frame, bytes: b, regs }
}

/// What `rt_sigreturn` restores from the ucontext at `frame + 8`.
pub struct Restored {
    pub regs: Regs,
    pub mask: u64,
    /// Where the XSAVE area is (0: none).
    pub fpstate: u64,
}

/// Reads a ucontext (`UCONTEXT_SIZE` bytes at `frame + 8`); `current` gives
/// the flags a handler may not change.
pub fn restore(uc: &[u8], current_rflags: u64) -> Restored {
    let word = |at: usize| u64::from_le_bytes(uc[at..at + 8].try_into().expect("8 bytes"));
    let g = |i: usize| word(MCONTEXT_AT - 8 + i * 8);
    let saved_flags = g(17);
    let regs = Regs {
        r8: g(0),
        r9: g(1),
        r10: g(2),
        r11: g(3),
        r12: g(4),
        r13: g(5),
        r14: g(6),
        r15: g(7),
        rdi: g(8),
        rsi: g(9),
        rbp: g(10),
        rbx: g(11),
        rdx: g(12),
        rax: g(13),
        rcx: g(14),
        rsp: g(15),
        rip: g(16),
        rflags: (current_rflags & !FIX_EFLAGS) | (saved_flags & FIX_EFLAGS) | 0x202,
    };
    let segs = MCONTEXT_AT - 8 + 18 * 8;
    Restored { regs, mask: word(SIGMASK_AT - 8), fpstate: word(segs + 8 + 32) }
}

/// Bytes of the ucontext `restore` reads.
pub const UCONTEXT_LEN: usize = UCONTEXT_SIZE as usize;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trips_through_sigreturn() {
        let resume =
            Regs { rax: 42, rbx: 7, rsp: 0x7fff_ffff_e000, rip: 0x40_1000, rflags: 0x246, ..Default::default() };
        let xsave = vec![0xabu8; 832];
        let f = build(&FrameSpec {
            resume: &resume,
            handler: 0x40_2000,
            restorer: 0x40_3000,
            info: SigInfo::sent(2, 0, 9, 0),
            old_mask: 0x10,
            xsave: &xsave,
            xcr0: 7,
            altstack: (0, 2, 0),
            on_altstack: false,
        });
        // Entry as a call: rsp + 8 is 16-byte aligned; the red zone is kept.
        assert_eq!((f.regs.rsp + 8) % 16, 0);
        assert!(f.regs.rsp + (f.bytes.len() as u64) <= resume.rsp - RED_ZONE);
        assert_eq!((f.regs.rdi, f.regs.rip), (2, 0x40_2000));
        assert_eq!(&f.bytes[..8], &0x40_3000u64.to_le_bytes());
        let info = (f.regs.rsi - f.addr) as usize;
        assert_eq!(i32::from_le_bytes(f.bytes[info..info + 4].try_into().unwrap()), 2);
        // The handler returns into the restorer: rsp = frame + 8 at sigreturn.
        let uc = &f.bytes[8..8 + UCONTEXT_LEN];
        let r = restore(uc, 0x202);
        assert_eq!(r.regs.rax, 42);
        assert_eq!(r.regs.rbx, 7);
        assert_eq!(r.regs.rip, 0x40_1000);
        assert_eq!(r.regs.rsp, 0x7fff_ffff_e000);
        assert_eq!(r.mask, 0x10);
        let fp = (r.fpstate - f.addr) as usize;
        assert_eq!(r.fpstate % 64, 0);
        assert_eq!(&f.bytes[fp..fp + 4], &[0xab; 4]);
        assert_eq!(&f.bytes[fp + 464..fp + 468], &FP_XSTATE_MAGIC1.to_le_bytes());
    }
}
