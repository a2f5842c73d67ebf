//! Replay's in-guest probe: the instruction at a recorded interrupt point
//! is replaced by a `jmp` to a stub of warpd's that compares the program's
//! registers with the recorded ones inside the guest, at native speed, and
//! leaves to the host only when they all match. Otherwise the stub runs the
//! displaced instruction (relocated by iced-x86) and jumps back, so a tight
//! loop passing the site a million times costs no exit per pass.
//!
//! ```text
//!  site:  jmp stub ; int3 padding to the instruction's end
//!  stub:  save rsp, switch to the stub's stack, pushfq
//!         cmp each register with its recorded value ; jne miss
//!         (rsp and the flags the same way)
//!         restore ; out %al, $PORT_SYSCALL          <- the host: a match
//!  miss:  restore
//!  moved: the displaced instruction ; jmp site + its length
//! ```
//!
//! The stub's two pages (code, then data with its stack) live in the
//! kernel region, so the program's written-page log never sees them, and
//! are mapped at a free address within reach of a rel32 jump from the site.
//! Only instructions of at least five bytes whose meaning does not depend
//! on where they run (no calls) can hold the jump: [`patchable`] says which;
//! recording steps on to one before it takes a point.

use std::collections::BTreeSet;

use iced_x86::{
    BlockEncoder, BlockEncoderOptions, Decoder, DecoderOptions, FlowControl, Instruction, InstructionBlock,
    InstructionInfoFactory, Mnemonic, OpAccess, OpKind, Register,
};

use super::{Regs, PAGE_SIZE, PORT_SYSCALL};

/// Bytes of a `jmp rel32`.
const JMP_LEN: usize = 5;

/// The decoded instruction at `rip` if a jump can replace it.
pub fn patchable(code: &[u8], rip: u64) -> Option<Instruction> {
    let mut d = Decoder::with_ip(64, code, rip, DecoderOptions::NONE);
    let ins = d.decode();
    if ins.is_invalid() || ins.len() < JMP_LEN || ins.len() > code.len() || repeats(&ins) {
        return None;
    }
    match ins.flow_control() {
        FlowControl::Next | FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch => Some(ins),
        // Calls push where they are; interrupts, exceptions and transactions
        // are not for moving.
        _ => None,
    }
}

/// Whether the instruction at `rip` is a string instruction with a REP,
/// REPE or REPNE prefix. A kick can stop one between its iterations (rip
/// stays on it, rcx counted part way), where a probe, which stops at the
/// instruction's start, could find it again only by stepping every
/// iteration; and a single step runs one iteration, not the instruction.
/// No interrupt point is taken on one.
pub fn repeated_string(code: &[u8], rip: u64) -> bool {
    let ins = Decoder::with_ip(64, code, rip, DecoderOptions::NONE).decode();
    !ins.is_invalid() && repeats(&ins)
}

fn repeats(ins: &Instruction) -> bool {
    ins.is_string_instruction() && (ins.has_rep_prefix() || ins.has_repne_prefix())
}

/// Data page layout: each register's recorded value at its x86 number * 8
/// (rsp's at 4 * 8), the compared flags, the program's saved rsp, then the
/// watched words' values.
const FLAGS_AT: u64 = 16 * 8;
const SAVED_RSP_AT: u64 = 17 * 8;
const WATCH_AT: u64 = 32 * 8;
/// The pre-check's register's recorded value, negated, and rcx saved.
const NEG_AT: u64 = 48 * 8;
const SAVED_RCX_AT: u64 = 49 * 8;

/// Which register the pre-check looks at, in the order a loop's moving
/// register is most likely found (rcx is the pre-check's scratch, rsp
/// cannot be an index).
pub const PRE_CHECK_ORDER: [u8; 13] = [0, 2, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 3];

/// The x86 number of the first register in [`PRE_CHECK_ORDER`] whose value
/// differs between two passes (`now` and the point `want`): the one the
/// pre-check compares.
pub fn moving_register(now: &Regs, want: &Regs) -> Option<u8> {
    let (a, b) = (by_number(now), by_number(want));
    PRE_CHECK_ORDER.into_iter().find(|&r| a[r as usize] != b[r as usize])
}

/// At most this many words are watched, found among this many instructions.
pub const MAX_WATCH: usize = 8;
const WATCH_WINDOW: usize = 32;

/// A register's value in `r`, for address computation (64-bit ones only).
pub(crate) fn value_of(reg: Register, r: &Regs) -> Option<u64> {
    Some(match reg {
        Register::RAX => r.rax,
        Register::RBX => r.rbx,
        Register::RCX => r.rcx,
        Register::RDX => r.rdx,
        Register::RSI => r.rsi,
        Register::RDI => r.rdi,
        Register::RSP => r.rsp,
        Register::RBP => r.rbp,
        Register::R8 => r.r8,
        Register::R9 => r.r9,
        Register::R10 => r.r10,
        Register::R11 => r.r11,
        Register::R12 => r.r12,
        Register::R13 => r.r13,
        Register::R14 => r.r14,
        Register::R15 => r.r15,
        // Segment bases are zero in 64-bit mode (FS and GS are not asked for).
        Register::ES | Register::CS | Register::SS | Register::DS => 0,
        _ => return None,
    })
}

/// Addresses of memory the code from `regs.rip` on reads: the memory
/// operands of the instructions reachable within a short window (both ways
/// at each branch): globals (rip-relative), and those whose base and index
/// registers nothing on the way has written, computed with the point's
/// registers (a guessed address could land on stale stack bytes the
/// program got from the TSC, which replay's memory does not share). A loop whose
/// registers repeat keeps its moving state in memory it reads: watching
/// those words lets the stub tell the passes apart.
pub fn watch_addresses(read_code: &dyn Fn(u64, usize) -> Vec<u8>, regs: &Regs) -> Vec<u64> {
    let mut out = Vec::new();
    // (address, registers written on the way there): an address is only
    // known from the point's registers while its base and index are not.
    let mut todo: Vec<(u64, BTreeSet<Register>)> = vec![(regs.rip, BTreeSet::new())];
    let mut seen = BTreeSet::new();
    let mut info = InstructionInfoFactory::new();
    while let Some((ip, mut written)) = todo.pop() {
        if seen.len() >= WATCH_WINDOW || out.len() >= MAX_WATCH || !seen.insert(ip) {
            continue;
        }
        let code = read_code(ip, 15);
        let ins = Decoder::with_ip(64, &code, ip, DecoderOptions::NONE).decode();
        if ins.is_invalid() {
            continue;
        }
        let memory = (0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::Memory);
        let tls = matches!(ins.memory_segment(), Register::FS | Register::GS);
        if memory && !tls && ins.mnemonic() != Mnemonic::Lea && ins.mnemonic() != Mnemonic::Nop {
            let addr = if ins.is_ip_rel_memory_operand() {
                Some(ins.ip_rel_memory_address())
            } else {
                let moved = |r: Register| r != Register::None && written.contains(&r.full_register());
                if moved(ins.memory_base()) || moved(ins.memory_index()) {
                    None
                } else {
                    let op = (0..ins.op_count()).find(|&i| ins.op_kind(i) == OpKind::Memory).unwrap_or(0);
                    ins.virtual_address(op, 0, |reg, _, _| value_of(reg, regs))
                }
            };
            if let Some(a) = addr.filter(|a| !out.contains(a)) {
                out.push(a);
            }
        }
        for r in info.info(&ins).used_registers() {
            if matches!(
                r.access(),
                OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
            ) {
                written.insert(r.register().full_register());
            }
        }
        match ins.flow_control() {
            FlowControl::Next => todo.push((ins.next_ip(), written)),
            FlowControl::UnconditionalBranch if ins.op0_kind() == OpKind::NearBranch64 => {
                todo.push((ins.near_branch_target(), written))
            }
            FlowControl::ConditionalBranch => {
                todo.push((ins.next_ip(), written.clone()));
                todo.push((ins.near_branch_target(), written));
            }
            _ => {}
        }
    }
    out
}

/// What a probe needs written: the stub's code and data pages, the bytes
/// that go over the site, and the addresses the host recognises.
pub struct Stub {
    pub code: Vec<u8>,
    pub data: Vec<u8>,
    pub patch: Vec<u8>,
    /// The stub's `out`: an exit here is a match.
    pub exit_at: u64,
    /// Where the program goes on when the host finds it was not the point
    /// after all (its memory differs): the displaced instruction.
    pub moved_at: u64,
}

/// A small assembler for the stub's fixed instruction forms.
pub(super) struct Asm {
    pub base: u64,
    pub code: Vec<u8>,
}

impl Asm {
    pub fn here(&self) -> u64 {
        self.base + self.code.len() as u64
    }

    /// `bytes`, then a rel32 to `target` counted from the instruction's end
    /// (`tail` more bytes after the rel32).
    pub fn rel32(&mut self, bytes: &[u8], target: u64, tail: &[u8]) -> Option<()> {
        self.code.extend_from_slice(bytes);
        let end = self.here() + 4 + tail.len() as u64;
        let rel = i32::try_from(target.wrapping_sub(end) as i64).ok()?;
        self.code.extend_from_slice(&rel.to_le_bytes());
        self.code.extend_from_slice(tail);
        Some(())
    }

    /// `op r64, [rip + target]` with `reg` the x86 register number.
    pub fn rip_op(&mut self, opcode: u8, reg: u8, target: u64) -> Option<()> {
        let rex = 0x48 | if reg >= 8 { 0x04 } else { 0 };
        self.rel32(&[rex, opcode, ((reg & 7) << 3) | 0b101], target, &[])
    }
}

/// The registers in x86 numbering (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15).
fn by_number(r: &Regs) -> [u64; 16] {
    [r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15]
}

/// Builds the stub for the instruction `ins` at a site, with the stub at
/// `stub_va` (its data page right after), looking for `want` (with
/// `flags_mask` applied to rflags). None when something is out of a rel32's
/// reach or the instruction cannot be moved.
/// `pre`: a register (x86 number, from [`PRE_CHECK_ORDER`]) compared first
/// without touching the flags (`lea` and `jrcxz`), so that a pass where it
/// differs, nearly every pass of a loop, costs five instructions.
pub fn build(
    ins: &Instruction,
    stub_va: u64,
    want: &Regs,
    flags_mask: u64,
    watch: &[(u64, u64)],
    pre: Option<u8>,
) -> Option<Stub> {
    if watch.len() > MAX_WATCH || pre.is_some_and(|r| !PRE_CHECK_ORDER.contains(&r)) {
        return None;
    }
    let data_va = stub_va + PAGE_SIZE;
    let slot = |reg: u8| data_va + reg as u64 * 8;
    let saved = data_va + SAVED_RSP_AT;
    let flags = data_va + FLAGS_AT;
    let site = ins.ip();
    let next = ins.next_ip();

    // The stub is assembled twice: the first pass finds the labels.
    // (miss_pop, miss, moved): any address in reach will do for the first pass.
    let mut labels = (stub_va, stub_va, stub_va);
    let mut stub = None;
    for _ in 0..2 {
        let (miss_pop_l, miss_l, moved_l) = labels;
        let mut a = Asm { base: stub_va, code: Vec::new() };
        if let Some(r) = pre {
            let saved_rcx = data_va + SAVED_RCX_AT;
            a.rip_op(0x89, 1, saved_rcx)?; // mov [saved_rcx], rcx
            a.rip_op(0x8b, 1, data_va + NEG_AT)?; // mov rcx, [-want]
                                                  // lea rcx, [rcx + r]: zero when r holds the recorded value.
            a.code.extend_from_slice(&[0x48 | if r >= 8 { 0x02 } else { 0 }, 0x8d, 0x0c, ((r & 7) << 3) | 1]);
            a.code.extend_from_slice(&[0xe3, 12]); // jrcxz over the next two
            a.rip_op(0x8b, 1, saved_rcx)?; // mov rcx, [saved_rcx] (7 bytes)
            a.rel32(&[0xe9], moved_l, &[])?; // jmp moved (5 bytes)
            a.rip_op(0x8b, 1, saved_rcx)?; // the full check, with rcx back
        }
        a.rel32(&[0x48, 0x89, 0x25], saved, &[])?; // mov [saved], rsp
        a.rel32(&[0x48, 0x8d, 0x25], data_va + PAGE_SIZE, &[])?; // lea rsp, [stack top]
        a.code.push(0x9c); // pushfq
        for reg in (0u8..16).filter(|&r| r != 4) {
            a.rip_op(0x3b, reg, slot(reg))?; // cmp reg, [slot]
            a.rel32(&[0x0f, 0x85], miss_l, &[])?; // jne miss
        }
        a.code.push(0x50); // push rax
        a.rip_op(0x8b, 0, saved)?; // mov rax, [saved]
        a.rip_op(0x3b, 0, slot(4))?; // cmp rax, [rsp slot]
        a.rel32(&[0x0f, 0x85], miss_pop_l, &[])?;
        for (i, &(addr, _)) in watch.iter().enumerate() {
            a.code.extend_from_slice(&[0x48, 0xa1]); // movabs rax, [addr]
            a.code.extend_from_slice(&addr.to_le_bytes());
            a.rip_op(0x3b, 0, data_va + WATCH_AT + i as u64 * 8)?; // cmp rax, [value]
            a.rel32(&[0x0f, 0x85], miss_pop_l, &[])?;
        }
        a.code.extend_from_slice(&[0x48, 0x8b, 0x44, 0x24, 0x08]); // mov rax, [rsp+8]: the flags
        a.code.extend_from_slice(&[0x48, 0x25]); // and rax, imm32
        a.code.extend_from_slice(&(flags_mask as u32).to_le_bytes());
        a.rip_op(0x3b, 0, flags)?; // cmp rax, [flags]
        a.rel32(&[0x0f, 0x85], miss_pop_l, &[])?;
        a.code.push(0x58); // pop rax
        a.code.push(0x9d); // popfq
        a.rip_op(0x8b, 4, saved)?; // mov rsp, [saved]
        let exit = a.here();
        a.code.extend_from_slice(&[0xe6, PORT_SYSCALL as u8]); // out %al, $port
        a.rel32(&[0xe9], moved_l, &[])?; // jmp moved (the host sets rip itself)
        let miss_pop = a.here();
        a.code.push(0x58); // pop rax
        let miss = a.here();
        a.code.push(0x9d); // popfq
        a.rip_op(0x8b, 4, saved)?; // mov rsp, [saved]
        let moved = a.here();
        let block = [*ins];
        let relocated =
            BlockEncoder::encode(64, InstructionBlock::new(&block, moved), BlockEncoderOptions::NONE).ok()?;
        a.code.extend_from_slice(&relocated.code_buffer);
        a.rel32(&[0xe9], next, &[])?; // jmp back
        labels = (miss_pop, miss, moved);
        stub = Some((a.code, exit, moved));
    }
    let (mut code, exit_at, moved_at) = stub?;
    if code.len() > PAGE_SIZE as usize {
        return None;
    }
    code.resize(PAGE_SIZE as usize, 0xcc);

    let mut data = vec![0u8; PAGE_SIZE as usize];
    for (reg, v) in by_number(want).iter().enumerate() {
        data[reg * 8..reg * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    data[FLAGS_AT as usize..FLAGS_AT as usize + 8].copy_from_slice(&(want.rflags & flags_mask).to_le_bytes());
    for (i, &(_, value)) in watch.iter().enumerate() {
        let at = WATCH_AT as usize + i * 8;
        data[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }
    if let Some(r) = pre {
        let neg = by_number(want)[r as usize].wrapping_neg();
        data[NEG_AT as usize..NEG_AT as usize + 8].copy_from_slice(&neg.to_le_bytes());
    }

    let mut patch = vec![0xcc; ins.len()];
    patch[0] = 0xe9;
    let rel = i32::try_from(stub_va.wrapping_sub(site + JMP_LEN as u64) as i64).ok()?;
    patch[1..5].copy_from_slice(&rel.to_le_bytes());
    Some(Stub { code, data, patch, exit_at, moved_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kick can stop `rep stos` (glibc's memset of a large buffer) part
    /// way: no point goes there, whatever its length.
    #[test]
    fn repeated_string_instructions_are_no_sites() {
        assert!(repeated_string(&[0xf3, 0xaa], 0x1000), "rep stos %al");
        assert!(repeated_string(&[0xf3, 0x48, 0xa5], 0x1000), "rep movsq");
        assert!(repeated_string(&[0xf2, 0xae], 0x1000), "repne scasb");
        assert!(!repeated_string(&[0xaa], 0x1000), "stos without rep is one iteration");
        assert!(!repeated_string(&[0xf3, 0x90], 0x1000), "pause (f3 90) is no string instruction");
        // rep stos with redundant prefixes, five bytes long.
        let long = [0x66, 0x2e, 0x2e, 0xf3, 0xab];
        assert!(repeated_string(&long, 0x1000));
        assert!(patchable(&long, 0x1000).is_none());
    }

    #[test]
    fn sites_need_five_bytes_and_no_call() {
        // mov 0xb9cfe(%rip),%rax ; 7 bytes
        let mov = [0x48, 0x89, 0x05, 0xfe, 0x9c, 0x0b, 0x00];
        assert_eq!(patchable(&mov, 0x40161b).map(|i| i.len()), Some(7));
        // add $1,%rax: 4 bytes
        assert!(patchable(&[0x48, 0x83, 0xc0, 0x01, 0x90, 0x90], 0x401617).is_none());
        // call rel32
        assert!(patchable(&[0xe8, 0, 0, 0, 0], 0x401000).is_none());
        // jle rel32 (6 bytes) can be moved
        assert!(patchable(&[0x0f, 0x8e, 0x10, 0, 0, 0], 0x401000).is_some());
        // cut short
        assert!(patchable(&mov[..4], 0x40161b).is_none());
    }

    #[test]
    fn the_stub_jumps_back_and_the_patch_jumps_to_it() {
        let mov = [0x48, 0x8b, 0x05, 0x09, 0x9d, 0x0b, 0x00]; // mov 0xb9d09(%rip),%rax
        let ins = patchable(&mov, 0x401610).unwrap();
        let stub_va = 0x40_0000 - 2 * PAGE_SIZE;
        // Far from zero, as a PIE's code is (the first pass must not fail).
        let pie = Decoder::with_ip(64, &mov, 0x5555_5555_d7b8, DecoderOptions::NONE).decode();
        assert!(build(&pie, 0x5555_5555_2000, &Regs::default(), 0xcd5, &[], Some(0)).is_some());
        let want = Regs { rax: 5, rsp: 0x7fff_0000, rflags: 0x246, ..Default::default() };
        let s = build(&ins, stub_va, &want, 0xcd5, &[(0x4bb320, 7)], None).unwrap();
        assert_eq!(s.patch.len(), 7);
        assert_eq!(s.patch[0], 0xe9);
        let rel = i32::from_le_bytes(s.patch[1..5].try_into().unwrap()) as i64;
        assert_eq!(0x401610 + 5 + rel, stub_va as i64);
        // The relocated load still reads 0x4bb320, from its new address.
        let off = (s.moved_at - stub_va) as usize;
        let mut d = Decoder::with_ip(64, &s.code[off..], s.moved_at, DecoderOptions::NONE);
        let moved = d.decode();
        assert_eq!(moved.ip_rel_memory_address(), 0x4bb320);
        let back = d.decode();
        assert_eq!(back.near_branch_target(), 0x401617);
        // The data page holds the wanted values.
        assert_eq!(u64::from_le_bytes(s.data[0..8].try_into().unwrap()), 5);
        assert_eq!(u64::from_le_bytes(s.data[32..40].try_into().unwrap()), 0x7fff_0000);
        assert_eq!(&s.code[(s.exit_at - stub_va) as usize..][..2], &[0xe6, PORT_SYSCALL as u8]);
        assert_eq!(u64::from_le_bytes(s.data[256..264].try_into().unwrap()), 7);
    }

    #[test]
    fn the_pre_check_looks_at_a_moving_register_without_the_flags() {
        let want = Regs { rax: 9, rdx: 5, r9: 100, ..Default::default() };
        assert_eq!(moving_register(&Regs { rdx: 6, ..want }, &want), Some(2));
        assert_eq!(moving_register(&Regs { r9: 7, rdx: 6, ..want }, &want), Some(2), "the order decides");
        assert_eq!(moving_register(&Regs { r9: 7, ..want }, &want), Some(9));
        assert_eq!(moving_register(&Regs { rcx: 7, rsp: 1, ..want }, &want), None, "scratch and stack never");
        let mov = [0x48, 0x8b, 0x05, 0x09, 0x9d, 0x0b, 0x00];
        let ins = patchable(&mov, 0x401610).unwrap();
        let stub_va = 0x3f_e000;
        let s = build(&ins, stub_va, &want, 0xcd5, &[], Some(9)).unwrap();
        let mut d = Decoder::with_ip(64, &s.code, stub_va, DecoderOptions::NONE);
        let seq: Vec<Instruction> = (0..7).map(|_| d.decode()).collect();
        let m: Vec<Mnemonic> = seq.iter().map(|i| i.mnemonic()).collect();
        use Mnemonic::*;
        assert_eq!(m, [Mov, Mov, Lea, Jrcxz, Mov, Jmp, Mov]);
        // lea rcx, [rcx + r9]; jrcxz to the full check; the fast miss to the moved instruction.
        assert_eq!((seq[2].memory_base(), seq[2].memory_index()), (Register::RCX, Register::R9));
        assert_eq!(seq[3].near_branch_target(), seq[6].ip());
        assert_eq!(seq[5].near_branch_target(), s.moved_at);
        // The data page holds -r9's value for the lea.
        let neg = u64::from_le_bytes(s.data[NEG_AT as usize..NEG_AT as usize + 8].try_into().unwrap());
        assert_eq!(neg.wrapping_add(100), 0);
    }

    #[test]
    fn a_loop_reads_its_counter() {
        // 401610: mov 0xb9d09(%rip),%rax ; add $1,%rax ; mov %rax,0xb9cfe(%rip)
        // 401622: mov 0xb9cf0(%rip),%eax ; cmp $9,%eax ; jle 401610
        let code: Vec<u8> = [
            &[0x48, 0x8b, 0x05, 0x09, 0x9d, 0x0b, 0x00][..],
            &[0x48, 0x83, 0xc0, 0x01],
            &[0x48, 0x89, 0x05, 0xfe, 0x9c, 0x0b, 0x00],
            &[0x8b, 0x05, 0xf0, 0x9c, 0x0b, 0x00],
            &[0x83, 0xf8, 0x09],
            &[0x7e, 0xe3],
            &[0xc3],
        ]
        .concat();
        let read = |va: u64, n: usize| {
            let off = (va - 0x401610) as usize;
            code.get(off..).map(|c| c[..n.min(c.len())].to_vec()).unwrap_or_default()
        };
        let regs = Regs { rip: 0x401622, ..Default::default() };
        let mut found = watch_addresses(&read, &regs);
        found.sort();
        assert_eq!(found, vec![0x4bb318, 0x4bb320]);
        // mov 8(%rsp),%rax ; add $8,%rsp ; mov (%rsp),%rdx ; ret: only the
        // first address is known from the point's registers.
        let code: Vec<u8> =
            [&[0x48, 0x8b, 0x44, 0x24, 0x08][..], &[0x48, 0x83, 0xc4, 0x08], &[0x48, 0x8b, 0x14, 0x24], &[0xc3]]
                .concat();
        let read = |va: u64, n: usize| {
            let off = (va - 0x401000) as usize;
            code.get(off..).map(|c| c[..n.min(c.len())].to_vec()).unwrap_or_default()
        };
        let regs = Regs { rip: 0x401000, rsp: 0x7fff_0000, ..Default::default() };
        assert_eq!(watch_addresses(&read, &regs), vec![0x7fff_0008]);
    }
}
