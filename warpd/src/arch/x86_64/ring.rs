//! The syscall trampoline's code, on the ring page (`warp_syscalls::ring`
//! has the layout and the protocol): `syscall` lands at `ENTRY` (LSTAR);
//! a call of the ring's is posted to the page for the poller, anything
//! else (or a ring turned off, a poller asleep, a trap flag to keep, a
//! request not claimed in time or declined) goes to the `out` at
//! `EXIT_SITE` with the registers it came with: the exit path.
//!
//! Only rax, rcx and r11 may differ from the program's at the `out`
//! (rax and rcx are put back; the host takes rflags from r11 there). On
//! the ring, the answer goes in rax, rflags come back from r11 through
//! `popfq` on the page's few bytes of stack (the program's stack is not
//! touched: below rsp is its red zone), and `jmp rcx` returns.

use warp_syscalls::ring::{self as r, ENTRY, EXIT_SITE, FINISH_SITE};

use super::probe::Asm;
use super::{PAGE_SIZE, PORT_SYSCALL, TRAMPOLINE_VA};

/// x86 register numbers.
const RAX: u8 = 0;
const RCX: u8 = 1;
const RDX: u8 = 2;
const RSP: u8 = 4;
const RSI: u8 = 6;
const RDI: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;
const R10: u8 = 10;

fn at(off: u64) -> u64 {
    TRAMPOLINE_VA + off
}

/// The ring page as the guest starts with it: code, an idle slot, the
/// bitmap of ring calls; int3 wherever code is not.
pub fn page() -> Vec<u8> {
    let mut page = vec![0u8; PAGE_SIZE as usize];
    page[..r::STATE as usize].fill(0xcc);
    let out = [0xe6, PORT_SYSCALL as u8]; // out %al, $port
    page[EXIT_SITE as usize..EXIT_SITE as usize + 2].copy_from_slice(&out);
    page[FINISH_SITE as usize..FINISH_SITE as usize + 2].copy_from_slice(&out);
    let code = entry_code();
    page[ENTRY as usize..ENTRY as usize + code.len()].copy_from_slice(&code);
    for (i, w) in r::bitmap().iter().enumerate() {
        let o = r::BITMAP as usize + 8 * i;
        page[o..o + 8].copy_from_slice(&w.to_le_bytes());
    }
    page
}

fn entry_code() -> Vec<u8> {
    // Assembled twice: the first pass finds the labels.
    let mut labels = [at(ENTRY); 6];
    let mut code = Vec::new();
    for _ in 0..2 {
        let [wait_claim, claimed, answered, not_done, back, _] = labels;
        let mut a = Asm { base: at(ENTRY), code: Vec::new() };
        let exit = at(EXIT_SITE);
        let dword_cmp = |a: &mut Asm, off: u64, imm: u8| a.rel32(&[0x83, 0x3d], at(off), &[imm]); // cmp dword [rip+], imm8
        let dword_set = |a: &mut Asm, off: u64, imm: u32| a.rel32(&[0xc7, 0x05], at(off), &imm.to_le_bytes()); // mov dword [rip+], imm32
        let ok = (|| {
            dword_cmp(&mut a, r::ENABLED, 0)?;
            a.rel32(&[0x0f, 0x84], exit, &[])?; // je exit
            dword_cmp(&mut a, r::POLLER, r::AWAKE as u8)?;
            a.rel32(&[0x0f, 0x85], exit, &[])?; // jne exit
            a.code.extend_from_slice(&[0x41, 0xf7, 0xc3, 0x00, 0x01, 0x00, 0x00]); // test r11d, TF
            a.rel32(&[0x0f, 0x85], exit, &[])?; // jnz exit
            a.code.extend_from_slice(&[0x48, 0x3d, 0xff, 0x01, 0x00, 0x00]); // cmp rax, 511
            a.rel32(&[0x0f, 0x87], exit, &[])?; // ja exit
            a.rel32(&[0x48, 0x0f, 0xa3, 0x05], at(r::BITMAP), &[])?; // bt [rip+bitmap], rax
            a.rel32(&[0x0f, 0x83], exit, &[])?; // jnc exit
            a.rip_op(0x89, RAX, at(r::NR))?;
            for (i, reg) in [RDI, RSI, RDX, R10, R8, R9].into_iter().enumerate() {
                a.rip_op(0x89, reg, at(r::ARGS + 8 * i as u64))?;
            }
            a.rip_op(0x89, RCX, at(r::SAVE_RCX))?;
            dword_set(&mut a, r::STATE, r::POSTED)?;
            a.code.push(0xb9); // mov ecx, polls
            a.code.extend_from_slice(&r::SPIN_POLLS.to_le_bytes());
            let wait_claim_here = a.here();
            dword_cmp(&mut a, r::STATE, r::POSTED as u8)?;
            a.rel32(&[0x0f, 0x85], claimed, &[])?; // jne claimed
            a.code.extend_from_slice(&[0xf3, 0x90, 0xff, 0xc9]); // pause; dec ecx
            a.rel32(&[0x0f, 0x85], wait_claim, &[])?; // jnz wait_claim
                                                      // Not claimed in time: cancel, unless the poller claims it first.
            a.code.push(0xb8); // mov eax, POSTED
            a.code.extend_from_slice(&r::POSTED.to_le_bytes());
            a.code.push(0xb9); // mov ecx, CANCELLED
            a.code.extend_from_slice(&r::CANCELLED.to_le_bytes());
            a.rel32(&[0xf0, 0x0f, 0xb1, 0x0d], at(r::STATE), &[])?; // lock cmpxchg [rip+state], ecx
            a.rel32(&[0x0f, 0x84], back, &[])?; // je back
            let claimed_here = a.here();
            a.rel32(&[0x8b, 0x05], at(r::STATE), &[])?; // mov eax, [rip+state]
            a.code.extend_from_slice(&[0x83, 0xf8, r::CLAIMED as u8]); // cmp eax, CLAIMED
            a.rel32(&[0x0f, 0x85], answered, &[])?; // jne answered
            a.code.extend_from_slice(&[0xf3, 0x90]); // pause
            a.rel32(&[0xe9], claimed, &[])?; // jmp claimed
            let answered_here = a.here();
            a.code.extend_from_slice(&[0x83, 0xf8, r::DONE as u8]); // cmp eax, DONE
            a.rel32(&[0x0f, 0x85], not_done, &[])?; // jne not_done
            a.rip_op(0x8b, RAX, at(r::RET))?;
            a.rip_op(0x8b, RCX, at(r::SAVE_RCX))?;
            dword_set(&mut a, r::STATE, r::IDLE)?;
            a.rip_op(0x89, RSP, at(r::SAVE_RSP))?;
            a.rel32(&[0x48, 0x8d, 0x25], at(r::STACK_TOP), &[])?; // lea rsp, [rip+stack top]
            a.code.extend_from_slice(&[0x41, 0x53, 0x9d]); // push r11; popfq
            a.rip_op(0x8b, RSP, at(r::SAVE_RSP))?;
            a.code.extend_from_slice(&[0xff, 0xe1]); // jmp rcx
            let not_done_here = a.here();
            a.code.extend_from_slice(&[0x83, 0xf8, r::FINISH as u8]); // cmp eax, FINISH
            a.rel32(&[0x0f, 0x85], back, &[])?; // jne back
            dword_set(&mut a, r::STATE, r::IDLE)?;
            a.rip_op(0x8b, RAX, at(r::NR))?;
            a.rip_op(0x8b, RCX, at(r::SAVE_RCX))?;
            a.rel32(&[0xe9], at(FINISH_SITE), &[])?;
            let back_here = a.here();
            dword_set(&mut a, r::STATE, r::IDLE)?;
            a.rip_op(0x8b, RAX, at(r::NR))?;
            a.rip_op(0x8b, RCX, at(r::SAVE_RCX))?;
            a.rel32(&[0xe9], exit, &[])?;
            Some([wait_claim_here, claimed_here, answered_here, not_done_here, back_here, 0])
        })();
        labels = ok.expect("the trampoline's jumps are within reach");
        code = a.code;
    }
    assert!(ENTRY + code.len() as u64 <= r::STATE, "the trampoline fits before the slot");
    code
}

#[cfg(test)]
mod tests {
    use iced_x86::{Decoder, DecoderOptions, Mnemonic};

    use super::*;

    #[test]
    fn the_code_decodes_and_ends_in_returns_or_exits() {
        let p = page();
        let code = &p[ENTRY as usize..r::STATE as usize];
        let mut d = Decoder::with_ip(64, code, at(ENTRY), DecoderOptions::NONE);
        let mut seen = Vec::new();
        for ins in &mut d {
            if ins.mnemonic() == Mnemonic::Int3 {
                break;
            }
            assert!(!ins.is_invalid(), "invalid at {:#x}", ins.ip());
            seen.push(ins.mnemonic());
            if ins.is_ip_rel_memory_operand() {
                let t = ins.ip_rel_memory_address();
                assert!((at(r::STATE)..=at(PAGE_SIZE)).contains(&t), "{:#x} reaches {t:#x}", ins.ip());
            }
        }
        for m in [Mnemonic::Bt, Mnemonic::Cmpxchg, Mnemonic::Popfq, Mnemonic::Pause] {
            assert!(seen.contains(&m), "{m:?}");
        }
        assert_eq!(&p[0..2], &[0xe6, PORT_SYSCALL as u8]);
        assert_eq!(&p[FINISH_SITE as usize..FINISH_SITE as usize + 2], &[0xe6, PORT_SYSCALL as u8]);
    }
}
