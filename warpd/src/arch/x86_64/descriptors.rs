//! GDT, TSS, IDT and the ring-0 exception stubs.
//!
//! Exceptions enter a 16-byte stub per vector that pushes a zero error code
//! where the CPU pushes none, then the vector, and jumps to a common tail:
//! `out %al, $PORT_EXCEPTION` leaves to the host, which reads the frame
//! (vector, error code, rip, cs, rflags, rsp, ss) at RSP0 - 56 without an
//! ioctl. If the host resumes the vCPU, the tail pops the two words and
//! `iretq`s back to the program.

use super::*;

/// A segment register's hidden state, as a hypervisor takes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub base: u64,
    pub limit: u32,
    pub selector: u16,
    pub type_: u8,
    pub present: bool,
    pub dpl: u8,
    pub db: bool,
    pub s: bool,
    pub l: bool,
    pub g: bool,
    pub unusable: bool,
}

/// Control registers and descriptor tables for a long-mode guest starting at CPL3.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemState {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub gdt_base: u64,
    pub gdt_limit: u16,
    pub idt_base: u64,
    pub idt_limit: u16,
    pub cs: Segment,
    pub ss: Segment,
    pub data: Segment,
    pub tr: Segment,
    pub ldt: Segment,
}

pub const CR0_PE: u64 = 1;
pub const CR0_MP: u64 = 1 << 1;
pub const CR0_ET: u64 = 1 << 4;
pub const CR0_NE: u64 = 1 << 5;
pub const CR0_WP: u64 = 1 << 16;
pub const CR0_AM: u64 = 1 << 18;
pub const CR0_PG: u64 = 1 << 31;
pub const CR4_PAE: u64 = 1 << 5;
pub const CR4_OSFXSR: u64 = 1 << 9;
pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
pub const CR4_FSGSBASE: u64 = 1 << 16;
pub const CR4_OSXSAVE: u64 = 1 << 18;
pub const EFER_SCE: u64 = 1;
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;
pub const EFER_NXE: u64 = 1 << 11;

const TSS_IOPB_OFFSET: u64 = 0x68;
/// TSS limit: the 104-byte TSS, a bitmap for ports 0..255, one 0xff byte.
const TSS_LIMIT: u32 = 0x68 + 0x20;
const GDT_ENTRIES: usize = 10;

/// Vectors for which the CPU pushes an error code.
fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21 | 29 | 30)
}

/// The common exception tail: out to the host, drop vector and error code, iretq.
const EXCEPTION_TAIL: [u8; 8] = [0xe6, PORT_EXCEPTION as u8, 0x48, 0x83, 0xc4, 0x10, 0x48, 0xcf];
const STUBS_OFFSET: u64 = 0x1000;

/// Writes GDT, TSS, IDT and exception stubs into the kernel slot, laid out
/// at the GPAs in the module header. `mem` is the kernel slot from GPA 0.
pub fn write_tables(mem: &mut [u8]) {
    let put = |mem: &mut [u8], gpa: u64, bytes: &[u8]| {
        mem[gpa as usize..gpa as usize + bytes.len()].copy_from_slice(bytes);
    };
    // GDT: null, null, kernel code, kernel data, user code32, user data, user code64, null, TSS (2 slots).
    let tss_base = KBASE + GPA_TSS;
    let mut gdt = [0u64; GDT_ENTRIES];
    gdt[2] = 0x00af_9b00_0000_ffff;
    gdt[3] = 0x00cf_9300_0000_ffff;
    gdt[4] = 0x00cf_fb00_0000_ffff;
    gdt[5] = 0x00cf_f300_0000_ffff;
    gdt[6] = 0x00af_fb00_0000_ffff;
    gdt[8] = TSS_LIMIT as u64 | ((tss_base & 0xff_ffff) << 16) | (0x89 << 40) | (((tss_base >> 24) & 0xff) << 56);
    gdt[9] = tss_base >> 32;
    for (i, d) in gdt.iter().enumerate() {
        put(mem, GPA_GDT + i as u64 * 8, &d.to_le_bytes());
    }

    // TSS: RSP0 and the I/O bitmap, which allows only the syscall port at CPL3.
    let tss = GPA_TSS;
    mem[tss as usize..(tss + TSS_LIMIT as u64 + 1) as usize].fill(0);
    put(mem, tss + 4, &(KBASE + GPA_KSTACK_TOP).to_le_bytes());
    put(mem, tss + 0x66, &(TSS_IOPB_OFFSET as u16).to_le_bytes());
    let bitmap = (tss + TSS_IOPB_OFFSET) as usize;
    mem[bitmap..bitmap + 0x21].fill(0xff);
    mem[bitmap + PORT_SYSCALL as usize / 8] &= !(1 << (PORT_SYSCALL % 8));

    // Exception tail and per-vector stubs.
    put(mem, GPA_KTEXT, &EXCEPTION_TAIL);
    let tail_va = KBASE + GPA_KTEXT;
    for vector in 0..=255u8 {
        let stub_gpa = GPA_KTEXT + STUBS_OFFSET + vector as u64 * 16;
        let stub_va = KBASE + stub_gpa;
        let mut code = Vec::with_capacity(16);
        if !has_error_code(vector) {
            code.extend_from_slice(&[0x6a, 0x00]); // push $0
        }
        code.push(0x68); // push imm32
        code.extend_from_slice(&(vector as u32).to_le_bytes());
        code.push(0xe9); // jmp rel32
        let rel = tail_va as i64 - (stub_va as i64 + code.len() as i64 + 4);
        code.extend_from_slice(&(rel as i32).to_le_bytes());
        put(mem, stub_gpa, &code);

        // Interrupt gate; DPL3 only for int3 so `int3` in user code is #BP,
        // not #GP (and `int $0x80` stays a #GP: no 32-bit syscalls).
        let dpl3 = vector == 3;
        let mut gate = [0u8; 16];
        gate[0..2].copy_from_slice(&(stub_va as u16).to_le_bytes());
        gate[2..4].copy_from_slice(&SEL_KCODE.to_le_bytes());
        gate[5] = if dpl3 { 0xee } else { 0x8e };
        gate[6..8].copy_from_slice(&((stub_va >> 16) as u16).to_le_bytes());
        gate[8..12].copy_from_slice(&((stub_va >> 32) as u32).to_le_bytes());
        put(mem, GPA_IDT + vector as u64 * 16, &gate);
    }
}

/// The CPU state in which the program starts: long mode, paging on, CPL3.
pub fn initial_system_state(cr3: u64, xsave: bool, fsgsbase: bool) -> SystemState {
    let user_code = Segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: SEL_UCODE,
        type_: 11,
        present: true,
        dpl: 3,
        db: false,
        s: true,
        l: true,
        g: true,
        unusable: false,
    };
    let user_data = Segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: SEL_UDATA,
        type_: 3,
        present: true,
        dpl: 3,
        db: true,
        s: true,
        l: false,
        g: true,
        unusable: false,
    };
    let tr = Segment {
        base: KBASE + GPA_TSS,
        limit: TSS_LIMIT,
        selector: SEL_TSS,
        type_: 11,
        present: true,
        ..Default::default()
    };
    let ldt = Segment { type_: 2, present: true, unusable: true, ..Default::default() };
    let mut cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    if xsave {
        cr4 |= CR4_OSXSAVE;
    }
    if fsgsbase {
        cr4 |= CR4_FSGSBASE;
    }
    SystemState {
        cr0: CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG,
        cr3,
        cr4,
        efer: EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE,
        gdt_base: KBASE + GPA_GDT,
        gdt_limit: (GDT_ENTRIES * 8 - 1) as u16,
        idt_base: KBASE + GPA_IDT,
        idt_limit: 256 * 16 - 1,
        cs: user_code,
        ss: user_data,
        data: user_data,
        tr,
        ldt,
    }
}

/// The kernel-side selectors the host must restore on a backend where the
/// trampoline runs at CPL0 (VMX/SVM; untested on our PVM hosts).
pub fn user_segments() -> (Segment, Segment) {
    let s = initial_system_state(0, false, false);
    (s.cs, s.ss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_jump_to_the_tail() {
        let mut mem = vec![0u8; 0x30_0000];
        write_tables(&mut mem);
        // Vector 14 has an error code: push imm32 then jmp.
        let s14 = (GPA_KTEXT + STUBS_OFFSET + 14 * 16) as usize;
        assert_eq!(mem[s14], 0x68);
        assert_eq!(mem[s14 + 1], 14);
        assert_eq!(mem[s14 + 5], 0xe9);
        let rel = i32::from_le_bytes(mem[s14 + 6..s14 + 10].try_into().unwrap()) as i64;
        let next = (KBASE + s14 as u64 + 10) as i64;
        assert_eq!((next + rel) as u64, KBASE + GPA_KTEXT);
        // Vector 6 has none: push $0 first.
        let s6 = (GPA_KTEXT + STUBS_OFFSET + 6 * 16) as usize;
        assert_eq!(&mem[s6..s6 + 3], &[0x6a, 0x00, 0x68]);
    }

    #[test]
    fn only_the_syscall_port_is_open_at_cpl3() {
        let mut mem = vec![0u8; 0x30_0000];
        write_tables(&mut mem);
        let bitmap = (GPA_TSS + TSS_IOPB_OFFSET) as usize;
        for port in 0..256usize {
            let allowed = mem[bitmap + port / 8] & (1 << (port % 8)) == 0;
            assert_eq!(allowed, port == PORT_SYSCALL as usize, "port {port}");
        }
    }

    #[test]
    fn int3_gate_is_dpl3_and_int80_is_not() {
        let mut mem = vec![0u8; 0x30_0000];
        write_tables(&mut mem);
        assert_eq!(mem[(GPA_IDT + 3 * 16 + 5) as usize], 0xee);
        assert_eq!(mem[(GPA_IDT + 0x80 * 16 + 5) as usize], 0x8e);
    }
}
