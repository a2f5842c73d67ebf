//! The register set gdb expects of an x86_64 Linux process, as a gdbstub
//! `Arch`: the general registers, x87, SSE, orig_rax, fs_base/gs_base and
//! the upper halves of the AVX registers, in the order of the target
//! description we send (gdb numbers registers in document order).
//!
//! The x87/SSE/AVX state comes from the thread's XSAVE area (standard
//! format: the legacy region's fields at their fixed offsets, YMM_Hi128 at
//! byte 576).

use std::sync::OnceLock;

use gdbstub::arch::{Arch, Registers};

use crate::arch::x86_64::{SEL_UCODE, SEL_UDATA};
use crate::hv::ThreadContext;

/// Where the AVX upper halves start in the XSAVE standard format.
const YMM_HI: usize = 576;

/// One thread's registers, as gdb sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct X86Regs {
    /// rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8..r15 (gdb's order).
    pub gpr: [u64; 16],
    pub rip: u64,
    pub eflags: u32,
    /// cs, ss, ds, es, fs, gs.
    pub seg: [u32; 6],
    pub st: [[u8; 10]; 8],
    /// fctrl, fstat, ftag, fiseg, fioff, foseg, fooff, fop.
    pub x87: [u32; 8],
    pub xmm: [[u8; 16]; 16],
    pub mxcsr: u32,
    pub orig_rax: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ymmh: [[u8; 16]; 16],
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]])).unwrap_or(0)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]])).unwrap_or(0)
}

/// The x87 tag of one register's contents (valid 0, zero 1, special 2).
fn tag_of(reg: &[u8; 10]) -> u32 {
    let exponent = u16::from_le_bytes([reg[8], reg[9]]) & 0x7fff;
    let mantissa = u64::from_le_bytes(reg[..8].try_into().expect("8 bytes"));
    match exponent {
        0x7fff => 2,
        0 if mantissa == 0 => 1,
        0 => 2,
        _ if mantissa >> 63 == 1 => 0,
        _ => 2,
    }
}

impl X86Regs {
    pub fn from_context(c: &ThreadContext) -> Self {
        let r = &c.regs;
        let f = &c.fpu;
        let mut x = X86Regs {
            gpr: [
                r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14,
                r.r15,
            ],
            rip: r.rip,
            eflags: r.rflags as u32,
            seg: [SEL_UCODE as u32, SEL_UDATA as u32, 0, 0, 0, 0],
            orig_rax: u64::MAX,
            fs_base: c.fs_base,
            gs_base: c.gs_base,
            mxcsr: u32_at(f, 24),
            ..Default::default()
        };
        for i in 0..8 {
            if let Some(s) = f.get(32 + 16 * i..42 + 16 * i) {
                x.st[i].copy_from_slice(s);
            }
        }
        for i in 0..16 {
            if let Some(s) = f.get(160 + 16 * i..176 + 16 * i) {
                x.xmm[i].copy_from_slice(s);
            }
            if let Some(s) = f.get(YMM_HI + 16 * i..YMM_HI + 16 + 16 * i) {
                x.ymmh[i].copy_from_slice(s);
            }
        }
        // FXSAVE keeps an abridged tag (a bit per physical register, set
        // when not empty); gdb wants the full one, computed from contents.
        let fsw = u16_at(f, 2) as u32;
        let abridged = f.get(4).copied().unwrap_or(0);
        let top = (fsw >> 11) & 7;
        let mut ftag = 0u32;
        for phys in 0..8u32 {
            let tag = if abridged & (1 << phys) == 0 { 3 } else { tag_of(&x.st[((phys + 8 - top) % 8) as usize]) };
            ftag |= tag << (2 * phys);
        }
        x.x87 = [
            u16_at(f, 0) as u32,
            fsw,
            ftag,
            u32_at(f, 12) & 0xffff,
            u32_at(f, 8),
            u32_at(f, 20) & 0xffff,
            u32_at(f, 16),
            u16_at(f, 6) as u32 & 0x7ff,
        ];
        x
    }

    /// Writes these registers into `c` (what a debugger's register write changes).
    pub fn to_context(&self, c: &mut ThreadContext) {
        let g = &self.gpr;
        let r = &mut c.regs;
        (r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp) = (g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]);
        (r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15) = (g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
        r.rip = self.rip;
        r.rflags = (r.rflags & !0xffff_ffff) | self.eflags as u64;
        c.fs_base = self.fs_base;
        c.gs_base = self.gs_base;
        let f = &mut c.fpu;
        let mut put = |at: usize, bytes: &[u8]| {
            if let Some(s) = f.get_mut(at..at + bytes.len()) {
                s.copy_from_slice(bytes);
            }
        };
        put(0, &(self.x87[0] as u16).to_le_bytes());
        put(2, &(self.x87[1] as u16).to_le_bytes());
        let abridged = (0..8).filter(|p| (self.x87[2] >> (2 * p)) & 3 != 3).fold(0u8, |a, p| a | 1 << p);
        put(4, &[abridged]);
        put(6, &(self.x87[7] as u16).to_le_bytes());
        put(8, &self.x87[4].to_le_bytes());
        put(12, &(self.x87[3] as u16).to_le_bytes());
        put(16, &self.x87[6].to_le_bytes());
        put(20, &(self.x87[5] as u16).to_le_bytes());
        put(24, &self.mxcsr.to_le_bytes());
        for i in 0..8 {
            put(32 + 16 * i, &self.st[i]);
        }
        for i in 0..16 {
            put(160 + 16 * i, &self.xmm[i]);
            put(YMM_HI + 16 * i, &self.ymmh[i]);
        }
    }

    /// Every register's bytes, in target-description order.
    fn fields(&self) -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = self.gpr.iter().map(|r| r.to_le_bytes().to_vec()).collect();
        v.push(self.rip.to_le_bytes().to_vec());
        v.push(self.eflags.to_le_bytes().to_vec());
        v.extend(self.seg.iter().map(|s| s.to_le_bytes().to_vec()));
        v.extend(self.st.iter().map(|s| s.to_vec()));
        v.extend(self.x87.iter().map(|s| s.to_le_bytes().to_vec()));
        v.extend(self.xmm.iter().map(|s| s.to_vec()));
        v.push(self.mxcsr.to_le_bytes().to_vec());
        v.push(self.orig_rax.to_le_bytes().to_vec());
        v.push(self.fs_base.to_le_bytes().to_vec());
        v.push(self.gs_base.to_le_bytes().to_vec());
        v.extend(self.ymmh.iter().map(|s| s.to_vec()));
        v
    }
}

impl Registers for X86Regs {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        self.rip
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        for field in self.fields() {
            for b in field {
                write_byte(Some(b));
            }
        }
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], ()> {
            let s = bytes.get(at..at + n).ok_or(())?;
            at += n;
            Ok(s)
        };
        let u64_ = |s: &[u8]| u64::from_le_bytes(s.try_into().expect("8 bytes"));
        let u32_ = |s: &[u8]| u32::from_le_bytes(s.try_into().expect("4 bytes"));
        let mut x = self.clone();
        for r in x.gpr.iter_mut() {
            *r = u64_(take(8)?);
        }
        x.rip = u64_(take(8)?);
        x.eflags = u32_(take(4)?);
        for s in x.seg.iter_mut() {
            *s = u32_(take(4)?);
        }
        for s in x.st.iter_mut() {
            s.copy_from_slice(take(10)?);
        }
        for s in x.x87.iter_mut() {
            *s = u32_(take(4)?);
        }
        for s in x.xmm.iter_mut() {
            s.copy_from_slice(take(16)?);
        }
        x.mxcsr = u32_(take(4)?);
        // gdb may send only the registers up to some point.
        if let Ok(s) = take(8) {
            x.orig_rax = u64_(s);
            x.fs_base = u64_(take(8)?);
            x.gs_base = u64_(take(8)?);
            for s in x.ymmh.iter_mut() {
                s.copy_from_slice(take(16)?);
            }
        }
        *self = x;
        Ok(())
    }
}

/// gdbstub's name for this register set.
pub enum X86_64Linux {}

impl Arch for X86_64Linux {
    type Usize = u64;
    type Registers = X86Regs;
    type BreakpointKind = usize;
    type RegId = ();

    fn target_description_xml() -> Option<&'static str> {
        static XML: OnceLock<String> = OnceLock::new();
        Some(XML.get_or_init(description).as_str())
    }
}

fn regs(out: &mut String, names: &[&str], bits: u32, ty: &str, group: &str) {
    for n in names {
        let group = if group.is_empty() { String::new() } else { format!(" group=\"{group}\"") };
        out.push_str(&format!("    <reg name=\"{n}\" bitsize=\"{bits}\" type=\"{ty}\"{group}/>\n"));
    }
}

fn flags(out: &mut String, id: &str, fields: &[(&str, u32)]) {
    out.push_str(&format!("    <flags id=\"{id}\" size=\"4\">\n"));
    for (name, bit) in fields {
        out.push_str(&format!("      <field name=\"{name}\" start=\"{bit}\" end=\"{bit}\"/>\n"));
    }
    out.push_str("    </flags>\n");
}

/// The target description: gdb's standard feature names, so that it
/// takes the set as amd64 GNU/Linux (signal frames, syscall restart).
fn description() -> String {
    let mut x = String::from(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE target SYSTEM \"gdb-target.dtd\">\n<target version=\"1.0\">\n  <architecture>i386:x86-64</architecture>\n  <osabi>GNU/Linux</osabi>\n  <feature name=\"org.gnu.gdb.i386.core\">\n",
    );
    let eflags = [
        ("CF", 0),
        ("", 1),
        ("PF", 2),
        ("AF", 4),
        ("ZF", 6),
        ("SF", 7),
        ("TF", 8),
        ("IF", 9),
        ("DF", 10),
        ("OF", 11),
        ("NT", 14),
        ("RF", 16),
        ("VM", 17),
        ("AC", 18),
        ("VIF", 19),
        ("VIP", 20),
        ("ID", 21),
    ];
    flags(&mut x, "i386_eflags", &eflags);
    regs(&mut x, &["rax", "rbx", "rcx", "rdx", "rsi", "rdi"], 64, "int64", "");
    regs(&mut x, &["rbp", "rsp"], 64, "data_ptr", "");
    regs(&mut x, &["r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"], 64, "int64", "");
    regs(&mut x, &["rip"], 64, "code_ptr", "");
    regs(&mut x, &["eflags"], 32, "i386_eflags", "");
    regs(&mut x, &["cs", "ss", "ds", "es", "fs", "gs"], 32, "int32", "");
    regs(&mut x, &["st0", "st1", "st2", "st3", "st4", "st5", "st6", "st7"], 80, "i387_ext", "");
    regs(&mut x, &["fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"], 32, "int", "float");
    x.push_str("  </feature>\n  <feature name=\"org.gnu.gdb.i386.sse\">\n");
    for (id, ty, n) in [
        ("v4f", "ieee_single", 4),
        ("v2d", "ieee_double", 2),
        ("v16i8", "int8", 16),
        ("v8i16", "int16", 8),
        ("v4i32", "int32", 4),
        ("v2i64", "int64", 2),
    ] {
        x.push_str(&format!("    <vector id=\"{id}\" type=\"{ty}\" count=\"{n}\"/>\n"));
    }
    x.push_str("    <union id=\"vec128\">\n");
    for (name, ty) in [
        ("v4_float", "v4f"),
        ("v2_double", "v2d"),
        ("v16_int8", "v16i8"),
        ("v8_int16", "v8i16"),
        ("v4_int32", "v4i32"),
        ("v2_int64", "v2i64"),
        ("uint128", "uint128"),
    ] {
        x.push_str(&format!("      <field name=\"{name}\" type=\"{ty}\"/>\n"));
    }
    x.push_str("    </union>\n");
    let mxcsr = [
        ("IE", 0),
        ("DE", 1),
        ("ZE", 2),
        ("OE", 3),
        ("UE", 4),
        ("PE", 5),
        ("DAZ", 6),
        ("IM", 7),
        ("DM", 8),
        ("ZM", 9),
        ("OM", 10),
        ("UM", 11),
        ("PM", 12),
        ("FZ", 15),
    ];
    flags(&mut x, "i386_mxcsr", &mxcsr);
    let xmm: Vec<String> = (0..16).map(|i| format!("xmm{i}")).collect();
    regs(&mut x, &xmm.iter().map(String::as_str).collect::<Vec<_>>(), 128, "vec128", "vector");
    regs(&mut x, &["mxcsr"], 32, "i386_mxcsr", "vector");
    x.push_str("  </feature>\n  <feature name=\"org.gnu.gdb.i386.linux\">\n");
    regs(&mut x, &["orig_rax"], 64, "int", "");
    x.push_str("  </feature>\n  <feature name=\"org.gnu.gdb.i386.segments\">\n");
    regs(&mut x, &["fs_base", "gs_base"], 64, "int", "");
    x.push_str("  </feature>\n  <feature name=\"org.gnu.gdb.i386.avx\">\n");
    let ymmh: Vec<String> = (0..16).map(|i| format!("ymm{i}h")).collect();
    regs(&mut x, &ymmh.iter().map(String::as_str).collect::<Vec<_>>(), 128, "uint128", "");
    x.push_str("  </feature>\n</target>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Regs;

    fn context() -> ThreadContext {
        let mut fpu = vec![0u8; 4096];
        fpu[0..2].copy_from_slice(&0x37fu16.to_le_bytes());
        fpu[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        fpu[160] = 0x11; // xmm0
        fpu[YMM_HI + 16] = 0x22; // ymm1h
        ThreadContext {
            regs: Regs { rax: 1, rsp: 0x7fff_0000, rip: 0x401000, rflags: 0x246, ..Default::default() },
            fs_base: 0x1234,
            gs_base: 0,
            fpu,
        }
    }

    #[test]
    fn registers_go_out_and_back_unchanged() {
        let c = context();
        let x = X86Regs::from_context(&c);
        assert_eq!((x.gpr[0], x.gpr[7], x.rip, x.eflags, x.fs_base), (1, 0x7fff_0000, 0x401000, 0x246, 0x1234));
        assert_eq!((x.xmm[0][0], x.ymmh[1][0], x.mxcsr, x.x87[0]), (0x11, 0x22, 0x1f80, 0x37f));
        // An empty x87 stack: every tag says empty.
        assert_eq!(x.x87[2], 0xffff);
        let mut bytes = Vec::new();
        x.gdb_serialize(|b| bytes.push(b.expect("every register is known")));
        // 16+1 64-bit, eflags and 6 segments, 8 x87 80-bit, 8 control, 16 xmm,
        // mxcsr, orig_rax, two bases, 16 halves.
        assert_eq!(bytes.len(), 17 * 8 + 7 * 4 + 8 * 10 + 8 * 4 + 16 * 16 + 4 + 3 * 8 + 16 * 16);
        let mut back = X86Regs::default();
        back.gdb_deserialize(&bytes).unwrap();
        assert_eq!(back, x);
        let mut c2 = c.clone();
        c2.regs.rax = 99;
        back.to_context(&mut c2);
        assert_eq!(c2, c);
        assert!(back.gdb_deserialize(&bytes[..100]).is_err());
    }

    #[test]
    fn the_description_names_every_register_once_in_order() {
        let xml = X86_64Linux::target_description_xml().unwrap();
        let names: Vec<&str> = xml.split("<reg name=\"").skip(1).map(|s| s.split('"').next().unwrap()).collect();
        assert_eq!(names.len(), 76);
        assert_eq!(
            (names[0], names[16], names[17], names[24], names[40], names[56]),
            ("rax", "rip", "eflags", "st0", "xmm0", "mxcsr")
        );
        assert_eq!((names[57], names[58], names[59], names[60]), ("orig_rax", "fs_base", "gs_base", "ymm0h"));
    }
}
