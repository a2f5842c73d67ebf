//! The emulated kernel against a fake CPU and a fake outside world: no
//! /dev/kvm, no broker. Each test drives `Process::syscall` as the exit
//! loop does and checks what the program would see.

use warp_proto::broker::Reply;

use super::*;
use crate::arch::x86_64::{KERNEL_SLOT_SIZE, PAGE_SIZE};
use crate::hv::memory::MemFd;
use crate::hv::ThreadContext;
use crate::kernel::fake::{FakeCpu, FakeOutside};

fn process() -> Process {
    let kernel = MemFd::create("test-kernel", KERNEL_SLOT_SIZE).unwrap();
    let guest = MemFd::create("test-guest", 64 << 20).unwrap();
    Process::new(Mm::new(kernel, guest), crate::kernel::fake::identity())
}

fn request(number: u64, args: [u64; 6]) -> SyscallRequest {
    SyscallRequest { thread: 4242, number, args, rip: 0x40_1000, finish: false }
}

/// Runs one syscall as the exit loop does, then delivers what is due where
/// the program would resume.
fn syscall(p: &mut Process, out: &mut FakeOutside, number: u64, args: [u64; 6]) -> Action {
    let mut cpu = FakeCpu::default();
    let req = request(number, args);
    let regs = Regs { rax: number, rcx: 0x40_1002, rsp: 0x7fff_0000, ..Default::default() };
    let action = p.syscall(&req, &regs, &mut cpu, out).unwrap();
    let Action::Return(ret) = action else { return action };
    let mut resume = regs;
    resume.finish_syscall(ret);
    match p.deliver_signals(Some((&resume, None, ret)), &mut cpu).unwrap() {
        Some(a) => a,
        None => Action::Return(ret),
    }
}

fn readlink_reply(path: &str, signals: Vec<i32>, pending: bool) -> Reply {
    Reply {
        ret: path.len() as i64,
        outputs: vec![path.as_bytes().to_vec()],
        signals,
        signals_pending: pending,
        ..Default::default()
    }
}

const MMAP_FILE: [u64; 6] = [0, PAGE_SIZE, 1 /* PROT_READ */, 2 /* MAP_PRIVATE */, 3, 0];

#[test]
fn a_signal_that_arrives_while_mmap_names_the_file_is_delivered() {
    let mut p = process();
    let mut out = FakeOutside::default();
    // SIGUSR1 arrives with the reply to the readlink of /proc/self/fd/3.
    out.replies.insert(89, readlink_reply("/tmp/lib.so", vec![abi::SIGUSR1], false));
    out.replies.insert(17, Reply { ret: PAGE_SIZE as i64, ..Default::default() });
    let action = syscall(&mut p, &mut out, 9, MMAP_FILE);
    // The program dies of it (its default action) where mmap returns.
    assert_eq!(action, Action::Killed(abi::SIGUSR1));
    // The mapping itself was not cut short: warpd's own read of the file
    // is not interruptible, as mmap is not on Linux.
    assert_eq!(out.asked, [(89, false), (17, false)]);
}

#[test]
fn a_signal_announced_beside_a_reply_is_taken_from_the_channel() {
    let mut p = process();
    let mut out = FakeOutside::default();
    out.replies.insert(89, readlink_reply("/tmp/lib.so", Vec::new(), false));
    out.replies.insert(17, Reply { ret: PAGE_SIZE as i64, ..Default::default() });
    // SIGTERM lands on the channel while the readlink is performed; the
    // reply says so.
    out.during.insert(89, vec![abi::SIGTERM]);
    let action = syscall(&mut p, &mut out, 9, MMAP_FILE);
    assert_eq!(action, Action::Killed(abi::SIGTERM));
}

#[test]
fn a_signal_with_the_random_bytes_of_an_exec_is_kept() {
    // execve's AT_RANDOM comes from a broker call with an output buffer;
    // a signal in that reply reaches the program too (here: execve fails
    // reading the image afterwards, and the signal is still pending).
    let mut p = process();
    let mut out = FakeOutside::default();
    let mut cpu = FakeCpu::default();
    let (ret, bytes) = {
        out.replies.insert(
            318,
            Reply { ret: 16, outputs: vec![vec![7; 16]], signals: vec![abi::SIGUSR2], ..Default::default() },
        );
        p.call_with_output(&mut out, 318, [0, 16, 0, 0, 0, 0], 0, 16).unwrap()
    };
    assert_eq!((ret, bytes.len()), (16, 16));
    let boundary = Regs::default();
    assert_eq!(p.deliver_signals(Some((&boundary, None, 0)), &mut cpu).unwrap(), Some(Action::Killed(abi::SIGUSR2)));
}

#[test]
fn every_emulated_entry_is_handled_and_nothing_else_is() {
    for desc in table::TABLE {
        let mut p = process();
        let mut out = FakeOutside::default();
        let mut cpu = FakeCpu::default();
        let regs = Regs::default();
        let r = p.emulate(desc.nr, &[0; 6], &regs, &mut cpu, &mut out);
        match desc.class {
            Class::Emulated => {
                assert!(!matches!(r, Err(ProcessError::Unhandled(_))), "{} is emulated but unhandled", desc.name)
            }
            _ => assert!(matches!(r, Err(ProcessError::Unhandled(_))), "{} is handled but not emulated", desc.name),
        }
    }
    // Numbers outside the table reach no emulation either.
    for nr in (0..1024).chain([u32::MAX as u64]) {
        if table::lookup(nr).is_some() {
            continue;
        }
        let mut p = process();
        let r = p.emulate(nr, &[0; 6], &Regs::default(), &mut FakeCpu::default(), &mut FakeOutside::default());
        assert!(matches!(r, Err(ProcessError::Unhandled(n)) if n == nr), "{nr} is handled but not in the table");
    }
}

#[test]
fn the_syscall_number_is_the_low_half_of_the_register() {
    let mut p = process();
    let mut out = FakeOutside::default();
    assert_eq!(syscall(&mut p, &mut out, (1 << 32) + 39, [0; 6]), Action::Return(4242));
    assert_eq!(syscall(&mut p, &mut out, u64::MAX, [0; 6]), Action::Return(Errno::ENOSYS.ret()));
    // Nothing reached the broker, and the unknown call is counted by the
    // number Linux looked at.
    assert!(out.asked.is_empty());
    assert_eq!(p.unknown.get(&0xffff_ffff), Some(&1));
}

#[test]
fn exit_and_a_blocking_call_cut_short_by_a_signal() {
    let mut p = process();
    let mut out = FakeOutside::default();
    assert_eq!(syscall(&mut p, &mut out, 231, [300, 0, 0, 0, 0, 0]), Action::Exit(300 & 0xff));
    // A handled-by-default signal waiting when pause() starts: the broker
    // is told (it answers EINTR for a call that would wait), then the
    // signal's action.
    let mut p = process();
    out.channel.push(abi::SIGINT);
    out.replies.insert(34, Reply { ret: Errno::EINTR.ret(), ..Default::default() });
    assert_eq!(syscall(&mut p, &mut out, 34, [0; 6]), Action::Killed(abi::SIGINT));
    assert_eq!(out.asked, [(34, true)]);
    // Replaying a recording from before format 3, warpd answers itself.
    let mut p = process();
    p.legacy_eintr = true;
    let mut out = FakeOutside::default();
    out.channel.push(abi::SIGINT);
    assert_eq!(syscall(&mut p, &mut out, 34, [0; 6]), Action::Killed(abi::SIGINT));
    assert!(out.asked.is_empty(), "pause never reached the broker: {:?}", out.asked);
}

#[test]
fn rt_sigreturn_with_any_stack_pointer_is_sigsegv() {
    // The program picks rsp; no frame there is SIGSEGV, never a warpd panic.
    for rsp in [0, 8, u64::MAX, u64::MAX - 100, 0x7fff_ffff_f000, 0x8000_0000_0000] {
        let mut p = process();
        let mut cpu = FakeCpu::default();
        let regs = Regs { rax: 15, rsp, ..Default::default() };
        let r = p.syscall(&request(15, [0; 6]), &regs, &mut cpu, &mut FakeOutside::default()).unwrap();
        assert_eq!(r, Action::Killed(abi::SIGSEGV), "rsp {rsp:#x}");
    }
}

// VM SIGHAND THREAD SETTLS PARENT_SETTID CHILD_CLEARTID
const CLONE_THREAD_FLAGS: u64 = 0x100 | 0x800 | 0x1_0000 | 0x8_0000 | 0x10_0000 | 0x20_0000;

fn with_page(p: &mut Process) -> u64 {
    use crate::kernel::mm::{VmaKind, PROT_READ, PROT_WRITE};
    p.mm.map_anonymous(0x10_0000, PAGE_SIZE, PROT_READ | PROT_WRITE, VmaKind::Anonymous).unwrap();
    0x10_0000
}

fn word(p: &Process, at: u64) -> u32 {
    p.mm.read_u32(at).unwrap()
}

#[test]
fn clone_makes_a_thread_whose_exit_clears_and_wakes_its_tid_word() {
    let mut p = process();
    let mut out = FakeOutside::default();
    let page = with_page(&mut p);
    let (ptid, ctid) = (page, page + 8);
    let a = [CLONE_THREAD_FLAGS, page + 0x800, ptid, ctid, 0x7000, 0];
    assert_eq!(syscall(&mut p, &mut out, 56, a), Action::Return(4243));
    assert_eq!(word(&p, ptid), 4243, "CLONE_PARENT_SETTID");
    assert!(p.has_thread(4243));
    // The parent waits on the tid word, as pthread_join does.
    p.mm.write_user(ctid, &4243u32.to_le_bytes()).unwrap();
    assert_eq!(syscall(&mut p, &mut out, 202, [ctid, 0, 4243, 0, 0, 0]), Action::Wait);
    p.switch_out(ThreadContext::default());
    // The scheduler picks the new thread; it starts on its own stack with
    // its TLS, returning 0 from clone.
    assert_eq!(p.sched.pick(), Some(4243));
    let (ctx, resumed) = p.switch_in(4243).unwrap();
    assert_eq!((ctx.regs.rax, ctx.regs.rsp, ctx.fs_base, resumed), (0, page + 0x800, 0x7000, None));
    assert_eq!(syscall(&mut p, &mut out, 186, [0; 6]), Action::Return(4243), "gettid");
    // Its exit zeroes the word and wakes the parent, whose futex returns 0.
    assert_eq!(syscall(&mut p, &mut out, 60, [0; 6]), Action::ThreadExit);
    assert_eq!(word(&p, ctid), 0);
    assert!(!p.has_thread(4243));
    assert_eq!(p.sched.pick(), Some(4242));
    let (_, resumed) = p.switch_in(4242).unwrap();
    assert_eq!(resumed.map(|(req, ret)| (req.number, ret)), Some((202, 0)));
    // Alone again, exit ends the process.
    assert_eq!(syscall(&mut p, &mut out, 60, [7, 0, 0, 0, 0, 0]), Action::Exit(7));
}

#[test]
fn futex_waits_and_wakes_as_linux() {
    let mut p = process();
    let mut out = FakeOutside::default();
    let word_at = with_page(&mut p);
    // The value differs: EAGAIN; a bad address: EFAULT; misaligned: EINVAL.
    assert_eq!(syscall(&mut p, &mut out, 202, [word_at, 0, 1, 0, 0, 0]), Action::Return(Errno::EAGAIN.ret()));
    assert_eq!(syscall(&mut p, &mut out, 202, [8, 0, 0, 0, 0, 0]), Action::Return(Errno::EFAULT.ret()));
    assert_eq!(syscall(&mut p, &mut out, 202, [word_at + 2, 0, 0, 0, 0, 0]), Action::Return(Errno::EINVAL.ret()));
    // WAIT_BITSET with an empty bitset is EINVAL; nobody waiting: WAKE wakes 0.
    assert_eq!(syscall(&mut p, &mut out, 202, [word_at, 9, 0, 0, 0, 0]), Action::Return(Errno::EINVAL.ret()));
    assert_eq!(syscall(&mut p, &mut out, 202, [word_at, 1, 10, 0, 0, 0]), Action::Return(0));
    // An operation warpd does not do yet is ENOSYS (with a note).
    assert_eq!(syscall(&mut p, &mut out, 202, [word_at, 11, 0, 0, 0, 0]), Action::Return(Errno::ENOSYS.ret()));
    // PI: a free word is taken (the tid in it); the owner's relock is
    // EDEADLK; unlock frees it; an unlock by a non-owner is EPERM.
    let tid = p.thread().tid;
    assert_eq!(syscall(&mut p, &mut out, 202, [word_at, 6, 0, 0, 0, 0]), Action::Return(0));
    assert_eq!(p.mm.read_u32(word_at), Ok(tid));
    assert_eq!(syscall(&mut p, &mut out, 202, [word_at, 6, 0, 0, 0, 0]), Action::Return(Errno::EDEADLK.ret()));
    assert_eq!(syscall(&mut p, &mut out, 202, [word_at, 7, 0, 0, 0, 0]), Action::Return(0));
    assert_eq!(p.mm.read_u32(word_at), Ok(0));
    assert_eq!(syscall(&mut p, &mut out, 202, [word_at, 7, 0, 0, 0, 0]), Action::Return(Errno::EPERM.ret()));
    // A waiter alone with no timeout: the broker waits for a signal.
    assert_eq!(syscall(&mut p, &mut out, 202, [word_at, 128, 0, 0, 0, 0]), Action::Wait);
    p.switch_out(ThreadContext::default());
    assert_eq!(p.sched.pick(), None);
    // pause in the broker, ended by a SIGINT that its reply carries.
    out.replies.insert(34, Reply { ret: Errno::EINTR.ret(), signals: vec![abi::SIGINT], ..Default::default() });
    p.idle(&mut out).unwrap();
    assert_eq!(out.asked.last(), Some(&(34, true)));
    assert_eq!(p.sched.pick(), Some(4242));
    let (_, resumed) = p.switch_in(4242).unwrap();
    assert_eq!(resumed.map(|(_, r)| r), Some(Errno::EINTR.ret()), "the signal ends the wait");
}

#[test]
fn the_program_has_one_cpu() {
    let mut p = process();
    let mut out = FakeOutside::default();
    let page = with_page(&mut p);
    p.mm.write_user(page, &[0xff; 16]).unwrap();
    assert_eq!(syscall(&mut p, &mut out, 204, [0, 128, page, 0, 0, 0]), Action::Return(8));
    assert_eq!(word(&p, page), 1);
    assert_eq!(word(&p, page + 8), u32::MAX, "only the kernel's mask size is written");
    assert_eq!(syscall(&mut p, &mut out, 204, [0, 4, page, 0, 0, 0]), Action::Return(Errno::EINVAL.ret()));
    assert_eq!(syscall(&mut p, &mut out, 204, [4242, 8, 8, 0, 0, 0]), Action::Return(Errno::EFAULT.ret()));
    assert_eq!(syscall(&mut p, &mut out, 204, [99, 8, page, 0, 0, 0]), Action::Return(Errno::ESRCH.ret()));
    // Setting: CPU 0 must stay in the mask.
    assert_eq!(syscall(&mut p, &mut out, 203, [0, 8, page, 0, 0, 0]), Action::Return(0));
    p.mm.write_user(page, &[2]).unwrap();
    assert_eq!(syscall(&mut p, &mut out, 203, [0, 8, page, 0, 0, 0]), Action::Return(Errno::EINVAL.ret()));
}

#[test]
fn futex_requeue_and_wake_op_move_and_wake_waiters_as_linux() {
    let mut p = process();
    let mut out = FakeOutside::default();
    let page = with_page(&mut p);
    let (a, b) = (page + 64, page + 128);
    assert_eq!(syscall(&mut p, &mut out, 56, [CLONE_THREAD_FLAGS, page + 0x800, page, 0, 0, 0]), Action::Return(4243));
    assert_eq!(syscall(&mut p, &mut out, 56, [CLONE_THREAD_FLAGS, page + 0xc00, page, 0, 0, 0]), Action::Return(4244));
    // 4242, then 4243, wait on a.
    for next in [4243, 4244] {
        assert_eq!(syscall(&mut p, &mut out, 202, [a, 128, 0, 0, 0, 0]), Action::Wait);
        p.switch_out(ThreadContext::default());
        assert_eq!(p.sched.pick(), Some(next));
        p.switch_in(next).unwrap();
    }
    // CMP_REQUEUE checks the word first; negative counts are EINVAL.
    assert_eq!(syscall(&mut p, &mut out, 202, [a, 4, 0, 1, b, 1]), Action::Return(Errno::EAGAIN.ret()));
    assert_eq!(syscall(&mut p, &mut out, 202, [a, 4, u32::MAX as u64, 1, b, 0]), Action::Return(Errno::EINVAL.ret()));
    // Wake none, move one (the first to wait): it counts as one.
    assert_eq!(syscall(&mut p, &mut out, 202, [a, 4, 0, 1, b, 0]), Action::Return(1));
    assert_eq!(syscall(&mut p, &mut out, 202, [b, 1, 10, 0, 0, 0]), Action::Return(1), "4242 now waits on b");
    assert_eq!(p.sched.pick(), Some(4242));
    // WAKE_OP: *a = 7 (SET), and since the old value 0 < 4 (LT), wake one on a too.
    let encoded = (2u64 << 24) | (7 << 12) | 4;
    assert_eq!(syscall(&mut p, &mut out, 202, [b, 5, 1, 1, a, encoded]), Action::Return(1));
    assert_eq!(word(&p, a), 7);
    assert_eq!(p.sched.pick(), Some(4243));
    // ADD with a shifted operand (1 << 3), a comparison that fails: nobody else.
    let encoded = ((8u64 | 1) << 28) | (3 << 12);
    assert_eq!(syscall(&mut p, &mut out, 202, [b, 5, 1, 1, a, encoded]), Action::Return(0));
    assert_eq!(word(&p, a), 15);
    // An unknown operation is ENOSYS; a bad second address EFAULT.
    assert_eq!(syscall(&mut p, &mut out, 202, [b, 5, 1, 1, a, 7 << 28]), Action::Return(Errno::ENOSYS.ret()));
    assert_eq!(syscall(&mut p, &mut out, 202, [b, 5, 1, 1, 8, 0]), Action::Return(Errno::EFAULT.ret()));
}

#[test]
fn a_thread_exiting_while_the_others_wait_leaves_the_process_waiting_outside() {
    let mut p = process();
    let mut out = FakeOutside::default();
    let page = with_page(&mut p);
    assert_eq!(syscall(&mut p, &mut out, 56, [CLONE_THREAD_FLAGS, page + 0x800, page, 0, 0, 0]), Action::Return(4243));
    // The main thread waits on a word with a relative timeout of 1 ms; the
    // monotonic clock reads 100 s (then and later).
    p.mm.write_user(page + 64, &[0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x42, 0x0f, 0, 0, 0, 0, 0]).unwrap();
    let mut now = 100i64.to_le_bytes().to_vec();
    now.extend(0i64.to_le_bytes());
    out.replies.insert(228, Reply { ret: 0, outputs: vec![now.clone()], ..Default::default() });
    assert_eq!(syscall(&mut p, &mut out, 202, [page + 32, 0, 0, page + 64, 0, 0]), Action::Wait);
    p.switch_out(ThreadContext::default());
    assert_eq!(p.sched.pick(), Some(4243));
    p.switch_in(4243).unwrap();
    // The new thread ends without waking anyone: nobody can run, so the
    // broker sleeps to the main thread's deadline, which then times out.
    assert_eq!(syscall(&mut p, &mut out, 60, [0; 6]), Action::ThreadExit);
    assert_eq!(p.sched.pick(), None);
    out.replies.insert(230, Reply { ret: 0, ..Default::default() });
    // After the sleep the clock reads past the deadline.
    let mut later = 101i64.to_le_bytes().to_vec();
    later.extend(0i64.to_le_bytes());
    out.replies.insert(228, Reply { ret: 0, outputs: vec![later], ..Default::default() });
    p.idle(&mut out).unwrap();
    let asked: Vec<u32> = out.asked.iter().map(|a| a.0).collect();
    assert_eq!(&asked[asked.len() - 2..], [230, 228], "clock_nanosleep to the deadline, then the clock");
    assert_eq!(p.sched.pick(), Some(4242));
    let (_, resumed) = p.switch_in(4242).unwrap();
    assert_eq!(resumed.map(|(_, r)| r), Some(Errno::ETIMEDOUT.ret()));
}

#[test]
fn clone3_makes_threads_as_clone_does_and_checks_its_arguments() {
    let mut p = process();
    let mut out = FakeOutside::default();
    let page = with_page(&mut p);
    let args = |flags: u64, exit_signal: u64, stack: u64, size: u64| {
        let mut b = Vec::new();
        for v in [flags, 0, page + 8, page, exit_signal, stack, size, 0x7000, 0, 0, 0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    };
    let at = page + 256;
    p.mm.write_user(at, &args(CLONE_THREAD_FLAGS, 0, page + 0x400, 0x400)).unwrap();
    assert_eq!(syscall(&mut p, &mut out, 435, [at, 32, 0, 0, 0, 0]), Action::Return(Errno::EINVAL.ret()), "too small");
    assert_eq!(syscall(&mut p, &mut out, 435, [8, 88, 0, 0, 0, 0]), Action::Return(Errno::EFAULT.ret()));
    // A larger struct from a newer program: its unknown tail must be zero.
    p.mm.write_user(at + 88, &[1]).unwrap();
    assert_eq!(syscall(&mut p, &mut out, 435, [at, 96, 0, 0, 0, 0]), Action::Return(Errno::E2BIG.ret()));
    p.mm.write_user(at + 88, &[0]).unwrap();
    // A thread with an exit signal is EINVAL.
    p.mm.write_user(at, &args(CLONE_THREAD_FLAGS, 17, page + 0x400, 0x400)).unwrap();
    assert_eq!(syscall(&mut p, &mut out, 435, [at, 88, 0, 0, 0, 0]), Action::Return(Errno::EINVAL.ret()));
    // A fork-like clone3 asks the broker to fork: its error comes back,
    // its pid makes the child; sharing descriptors with it is ENOSYS.
    p.mm.write_user(at, &args(0, 17, 0, 0)).unwrap();
    assert_eq!(syscall(&mut p, &mut out, 435, [at, 88, 0, 0, 0, 0]), Action::Return(Errno::EAGAIN.ret()));
    out.replies.insert(57, Reply { ret: 4300, ..Default::default() });
    match syscall(&mut p, &mut out, 435, [at, 88, 0, 0, 0, 0]) {
        Action::Fork(spec) => assert_eq!((spec.pid, spec.flags, spec.stack), (4300, 17, 0)),
        other => panic!("{other:?}"),
    }
    out.replies.insert(57, Reply { ret: 1, ..Default::default() });
    assert_eq!(
        syscall(&mut p, &mut out, 435, [at, 88, 0, 0, 0, 0]),
        Action::Return(Errno::EAGAIN.ret()),
        "pid 1 from a broker is refused"
    );
    const CLONE_FILES: u64 = 0x400;
    p.mm.write_user(at, &args(CLONE_FILES, 17, 0, 0)).unwrap();
    assert_eq!(syscall(&mut p, &mut out, 435, [at, 88, 0, 0, 0, 0]), Action::Return(Errno::ENOSYS.ret()));
    // The thread starts at the top of its stack area.
    p.mm.write_user(at, &args(CLONE_THREAD_FLAGS, 0, page + 0x400, 0x400)).unwrap();
    assert_eq!(syscall(&mut p, &mut out, 435, [at, 96, 0, 0, 0, 0]), Action::Return(4243));
    assert_eq!(word(&p, page), 4243, "parent_tid");
    p.switch_out(ThreadContext::default());
    assert_eq!(p.sched.pick(), Some(4243));
    let (ctx, _) = p.switch_in(4243).unwrap();
    assert_eq!((ctx.regs.rsp, ctx.fs_base), (page + 0x800, 0x7000));
}

#[test]
fn scm_rights_with_a_broker_descriptor_is_refused() {
    let p = process();
    let base = p.ident.reserved_fd_base;
    // cmsghdr: len, level SOL_SOCKET, type SCM_RIGHTS, then the descriptors.
    let cmsg = |fds: &[i32]| {
        let mut c = Vec::new();
        c.extend_from_slice(&(16 + 4 * fds.len() as u64).to_le_bytes());
        c.extend_from_slice(&1i32.to_le_bytes());
        c.extend_from_slice(&1i32.to_le_bytes());
        for f in fds {
            c.extend_from_slice(&f.to_le_bytes());
        }
        while c.len() % 8 != 0 {
            c.push(0);
        }
        c
    };
    assert!(!p.passes_reserved_fd(&cmsg(&[3, 4])));
    assert!(p.passes_reserved_fd(&cmsg(&[3, base])));
    // A second message after an ordinary one is looked at too.
    let mut two = cmsg(&[5]);
    two.extend(cmsg(&[base + 1]));
    assert!(p.passes_reserved_fd(&two));
    // A malformed length ends the walk (the kernel refuses it itself).
    assert!(!p.passes_reserved_fd(&[0u8; 16]));
}
