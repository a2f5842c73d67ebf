//! The exit loop as a value, on the real backend: a tiny guest built by
//! hand (no ELF, no broker) is stepped one instruction at a time, over a
//! syscall, paused from another thread while it spins, and its thread
//! context saved and restored. Needs /dev/kvm (CI has it).

use std::time::Duration;

use super::*;
use crate::arch::x86_64::{self as x86, KERNEL_SLOT_SIZE};
use crate::builder;
use crate::hv::memory::MemFd;
use crate::hv::{FaultKind, GuestFault, ThreadContext, VmExit};
use crate::kernel::fake::{identity, FakeOutside};
use crate::kernel::mm::{Mm, VmaKind, PROT_EXEC, PROT_READ, PROT_WRITE};

const CODE: u64 = 0x40_0000;
const STACK: u64 = 0x7ff0_0000;

/// `inc rax; inc rax; syscall; jmp .` at CODE, starting with rax = 37, so
/// the syscall is 39 (getpid).
const PROGRAM: [u8; 10] = [0x48, 0xff, 0xc0, 0x48, 0xff, 0xc0, 0x0f, 0x05, 0xeb, 0xfe];

fn hypervisor() -> Option<Box<dyn crate::hv::Hypervisor>> {
    match crate::hv::open(std::path::Path::new("/dev/kvm")) {
        Ok(h) => Some(h),
        Err(e) => {
            eprintln!("skipped: this test needs KVM and {e}");
            None
        }
    }
}

fn tiny_guest(hv: &dyn crate::hv::Hypervisor) -> Guest {
    let builder::Parts { mut mm, vm, mut vcpu, caps } = builder::parts(hv).unwrap();
    for (va, gpa) in x86::install_kernel(&mut mm.kernel) {
        mm.map_kernel_page(va, gpa).unwrap();
    }
    x86::install_ring(&mut mm).unwrap();
    mm.map_anonymous(CODE, 4096, PROT_READ | PROT_EXEC, VmaKind::Anonymous).unwrap();
    mm.poke(CODE, &PROGRAM).unwrap();
    mm.map_anonymous(STACK - 4096, 4096, PROT_READ | PROT_WRITE, VmaKind::Stack).unwrap();
    let regs = Regs { rip: CODE, rsp: STACK, rax: 37, rflags: 0x202, ..Default::default() };
    vcpu.setup(&crate::arch::initial_cpu(mm.cr3()), &regs).unwrap();
    Guest::new(Process::new(mm, identity()), vm, vcpu, caps)
}

#[test]
fn a_guest_steps_one_instruction_at_a_time_and_over_a_syscall() {
    let Some(hv) = hypervisor() else { return };
    let mut guest = tiny_guest(hv.as_ref());
    let mut out = FakeOutside::default();
    guest.set_single_step(true).unwrap();
    assert_eq!(guest.step(&mut out).unwrap(), Stop::SingleStep { rip: CODE + 3 });
    assert_eq!(guest.regs().unwrap().rax, 38);
    assert_eq!(guest.step(&mut out).unwrap(), Stop::SingleStep { rip: CODE + 6 });
    // Stepping the `syscall` answers it and stops where the program resumes.
    assert_eq!(guest.step(&mut out).unwrap(), Stop::SingleStep { rip: CODE + 8 });
    assert_eq!(guest.regs().unwrap().rax, 4242, "getpid answered");
    assert_eq!(guest.step(&mut out).unwrap(), Stop::SingleStep { rip: CODE + 8 }, "jmp . stays");
    // No trap flag is left behind in the program's view.
    assert_eq!(guest.regs().unwrap().rflags & x86::cpu::RFLAGS_TF, 0);
    assert!(out.asked.is_empty(), "getpid is the kernel's own: {:?}", out.asked);
}

#[test]
fn a_spinning_guest_is_paused_from_another_thread_and_resumes() {
    let Some(hv) = hypervisor() else { return };
    let mut guest = tiny_guest(hv.as_ref());
    let mut out = FakeOutside::default();
    let cancel = Cancel::new();
    guest.cancel_with(cancel.clone());
    assert_eq!(guest.step(&mut out).unwrap(), Stop::Syscall { number: 39 });
    // Now it spins in `jmp .` with no exit of its own.
    let c = cancel.clone();
    let pauser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        c.cancel();
    });
    assert_eq!(guest.step(&mut out).unwrap(), Stop::Paused);
    pauser.join().unwrap();
    assert_eq!(guest.regs().unwrap().rip, CODE + 8, "paused in its loop");
    // Paused it stays until resumed; then it runs (and is stepped) again.
    assert_eq!(guest.step(&mut out).unwrap(), Stop::Paused);
    cancel.resume();
    guest.set_single_step(true).unwrap();
    assert_eq!(guest.step(&mut out).unwrap(), Stop::SingleStep { rip: CODE + 8 });
}

#[test]
fn a_thread_context_round_trips_through_the_vcpu() {
    let Some(hv) = hypervisor() else { return };
    let kernel = MemFd::create("test-kernel", KERNEL_SLOT_SIZE).unwrap();
    let guest = MemFd::create("test-guest", 64 << 20).unwrap();
    let mm = Mm::new(kernel, guest);
    let mut vm = hv.create_vm(&mm.kernel, &mm.guest).unwrap();
    let mut vcpu = vm.create_vcpu().unwrap();
    vcpu.setup(&crate::arch::initial_cpu(mm.cr3()), &Regs { rip: CODE, rflags: 0x202, ..Default::default() }).unwrap();
    let mut fpu = vcpu.xsave().unwrap();
    // XMM0 and XMM15 in the legacy area of the XSAVE layout, marked as
    // holding state in XSTATE_BV (bit 1, SSE) so that they are loaded.
    fpu[160..176].copy_from_slice(&[0x5a; 16]);
    fpu[400..416].copy_from_slice(&[0xa5; 16]);
    fpu[512] |= 2;
    let regs = Regs {
        rax: 1,
        rbx: 2,
        rcx: 3,
        rdx: 4,
        rsi: 5,
        rdi: 6,
        rsp: 0x7fff_0000,
        rbp: 8,
        r8: 9,
        r9: 10,
        r10: 11,
        r11: 12,
        r12: 13,
        r13: 14,
        r14: 15,
        r15: u64::MAX,
        rip: CODE + 0x10,
        rflags: 0x246,
    };
    let ctx = ThreadContext { regs, fs_base: 0x7f00_0000_1000, gs_base: 0x7f00_0000_2000, fpu };
    vcpu.set_context(&ctx).unwrap();
    let back = vcpu.context().unwrap();
    assert_eq!(back.regs, ctx.regs);
    assert_eq!((back.fs_base, back.gs_base), (ctx.fs_base, ctx.gs_base));
    assert_eq!(&back.fpu[160..176], &[0x5a; 16]);
    assert_eq!(&back.fpu[400..416], &[0xa5; 16]);
}

#[test]
fn port_io_by_the_program_is_a_fault_at_the_instruction() {
    let Some(hv) = hypervisor() else { return };
    let builder::Parts { mut mm, vm, mut vcpu, caps } = builder::parts(hv.as_ref()).unwrap();
    for (va, gpa) in x86::install_kernel(&mut mm.kernel) {
        mm.map_kernel_page(va, gpa).unwrap();
    }
    x86::install_ring(&mut mm).unwrap();
    mm.map_anonymous(CODE, 4096, PROT_READ | PROT_EXEC, VmaKind::Anonymous).unwrap();
    // in $0x10,%al ; out %al,$0x10 ; inc rax ; jmp .
    mm.poke(CODE, &[0xe4, 0x10, 0xe6, 0x10, 0x48, 0xff, 0xc0, 0xeb, 0xfe]).unwrap();
    mm.map_anonymous(STACK - 4096, 4096, PROT_READ | PROT_WRITE, VmaKind::Stack).unwrap();
    let regs = Regs { rip: CODE, rsp: STACK, rax: 0x1234, rflags: 0x202, ..Default::default() };
    vcpu.setup(&crate::arch::initial_cpu(mm.cr3()), &regs).unwrap();
    let _ = (vm, caps);
    let start = |e: VmExit, code: &[u8]| match e {
        VmExit::Fault(GuestFault { kind: FaultKind::PortIo { rip_is_after }, rip, .. }) if rip_is_after => {
            let n = rip as usize - CODE as usize;
            x86::port_io_start(rip, [0, code[n - 2], code[n - 1]])
        }
        VmExit::Fault(GuestFault { kind: FaultKind::PortIo { .. }, rip, .. }) => rip,
        other => panic!("{other:?}"),
    };
    let code = [0xe4, 0x10, 0xe6, 0x10, 0x48, 0xff, 0xc0, 0xeb, 0xfe];
    assert_eq!(start(vcpu.run(), &code), CODE, "the in");
    // The program's registers are untouched (rax is not the port's data).
    assert_eq!(vcpu.regs().unwrap().rax, 0x1234);
    let mut r = vcpu.regs().unwrap();
    r.rip = CODE + 2;
    vcpu.set_regs(&r).unwrap();
    assert_eq!(start(vcpu.run(), &code), CODE + 2, "the out, not a syscall");
    // The guest resumes wherever it is sent.
    let mut r = vcpu.regs().unwrap();
    r.rip = CODE + 4;
    vcpu.set_regs(&r).unwrap();
    vcpu.set_single_step(true).unwrap();
    assert_eq!(vcpu.run(), VmExit::SingleStep { rip: CODE + 7 });
    assert_eq!(vcpu.regs().unwrap().rax, 0x1235);
}

/// The next stop that is not a pause or an interruption (a kick's).
fn next_stop(guest: &mut Guest, out: &mut FakeOutside) -> Stop {
    loop {
        match guest.step(out).unwrap() {
            Stop::Interrupted | Stop::Paused => {}
            s => return s,
        }
    }
}

/// A kick that lands while the vCPU is stopped (a debugger's packet, a
/// signal) makes the next run return at once: the step after it still
/// starts from where the last one stopped.
#[test]
fn a_kick_between_steps_does_not_lose_the_stop() {
    let Some(hv) = hypervisor() else { return };
    let mut guest = tiny_guest(hv.as_ref());
    let mut out = FakeOutside::default();
    let cancel = Cancel::new();
    guest.cancel_with(cancel.clone());
    guest.set_single_step(true).unwrap();
    assert_eq!(guest.step(&mut out).unwrap(), Stop::SingleStep { rip: CODE + 3 });
    cancel.cancel();
    cancel.resume();
    assert_eq!(next_stop(&mut guest, &mut out), Stop::SingleStep { rip: CODE + 6 });
    assert_eq!(guest.regs().unwrap().rax, 39);
}

/// A debugger's breakpoint stops the thread at the instruction, unexecuted;
/// memory reads show the program's byte there; going on steps over it.
#[test]
fn a_breakpoint_stops_before_its_instruction_and_is_never_seen() {
    let Some(hv) = hypervisor() else { return };
    let mut guest = tiny_guest(hv.as_ref());
    let mut out = FakeOutside::default();
    assert!(guest.add_breakpoint(CODE + 3));
    assert!(!guest.add_breakpoint(CODE + 3), "already set");
    assert_eq!(guest.step(&mut out).unwrap(), Stop::Breakpoint { rip: CODE + 3 });
    let regs = guest.regs().unwrap();
    assert_eq!((regs.rip, regs.rax), (CODE + 3, 38));
    let mut code = [0u8; 3];
    assert_eq!(guest.read_memory(CODE + 3, &mut code), 3);
    assert_eq!(code, [0x48, 0xff, 0xc0], "the program's bytes, not int3");
    // Off the breakpoint: the second `inc`, then the syscall.
    guest.skip_breakpoint_once(Some(CODE + 3));
    assert_eq!(guest.step(&mut out).unwrap(), Stop::Syscall { number: 39 });
    assert!(guest.remove_breakpoint(CODE + 3));
    assert!(!guest.remove_breakpoint(CODE + 3));
}

/// A checkpoint taken between steps brings back registers and memory in a
/// fresh VM, and the guest goes on from there as it did the first time.
#[test]
fn a_checkpoint_restores_registers_and_memory_in_a_fresh_vm() {
    let Some(hv) = hypervisor() else { return };
    let mut guest = tiny_guest(hv.as_ref());
    let mut out = FakeOutside::default();
    guest.set_single_step(true).unwrap();
    assert_eq!(guest.step(&mut out).unwrap(), Stop::SingleStep { rip: CODE + 3 });
    guest.write_memory(STACK - 8, b"before!!");
    let c = guest.checkpoint().unwrap();
    assert!(c.bytes() >= 4096, "some memory is kept ({} bytes)", c.bytes());
    assert_eq!(guest.step(&mut out).unwrap(), Stop::SingleStep { rip: CODE + 6 });
    assert_eq!(guest.step(&mut out).unwrap(), Stop::SingleStep { rip: CODE + 8 });
    assert_eq!(guest.regs().unwrap().rax, 4242);
    guest.write_memory(STACK - 8, b"after!!!");
    guest.restore(hv.as_ref(), &c).unwrap();
    let regs = guest.regs().unwrap();
    assert_eq!((regs.rip, regs.rax), (CODE + 3, 38));
    let mut b = [0u8; 8];
    guest.read_memory(STACK - 8, &mut b);
    assert_eq!(&b, b"before!!");
    guest.set_single_step(true).unwrap();
    assert_eq!(guest.step(&mut out).unwrap(), Stop::SingleStep { rip: CODE + 6 });
    assert_eq!(guest.step(&mut out).unwrap(), Stop::SingleStep { rip: CODE + 8 });
    assert_eq!(guest.regs().unwrap().rax, 4242, "getpid answered again");
}

/// The same after stepping over a syscall (the vCPU stopped at the syscall
/// exit, its registers the program's): the step after a kick is one
/// instruction of the program's.
#[test]
fn a_kick_after_stepping_over_a_syscall_does_not_lose_the_stop() {
    let Some(hv) = hypervisor() else { return };
    let mut guest = tiny_guest(hv.as_ref());
    let mut out = FakeOutside::default();
    let cancel = Cancel::new();
    guest.cancel_with(cancel.clone());
    guest.set_single_step(true).unwrap();
    assert_eq!(guest.step(&mut out).unwrap(), Stop::SingleStep { rip: CODE + 3 });
    assert_eq!(guest.step(&mut out).unwrap(), Stop::SingleStep { rip: CODE + 6 });
    assert_eq!(guest.step(&mut out).unwrap(), Stop::SingleStep { rip: CODE + 8 });
    cancel.cancel();
    cancel.resume();
    assert_eq!(next_stop(&mut guest, &mut out), Stop::SingleStep { rip: CODE + 8 }, "jmp . stays");
    assert_eq!(guest.regs().unwrap().rax, 4242);
}
