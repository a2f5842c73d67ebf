//! Programs that end normally: each runs natively and under `warpctl
//! record`, in every link flavour (static, static PIE, dynamic), and the
//! two runs must agree (stdout, stderr without warpctl's lines, status, one
//! session line). Each test also asserts what the program itself should
//! have done, so agreement on a wrong result cannot pass.

use warp_tests::{Flavour, Spec, Status, WarpHome, FLAVOURS};

const SUCCESS: &str = "EXIT-SUCCESS\n";

/// Checks `name` with `args` in every flavour; returns the native stdouts.
fn check_all(home: &WarpHome, name: &str, args: &[&str], expect: Status) -> Vec<String> {
    FLAVOURS
        .iter()
        .map(|&flavour| {
            let spec = Spec::prog(name, flavour).args(args);
            let native = home.check(&spec);
            assert_eq!(native.status, expect, "{name} {args:?} natively: {}", native.stderr_str());
            native.stdout_str()
        })
        .collect()
}

#[test]
fn hello() {
    let home = WarpHome::new("hello");
    for out in check_all(&home, "hello", &[], Status::Exited(0)) {
        assert_eq!(out, "Hello, world!\nEXIT-SUCCESS\n");
    }
}

#[test]
fn args_and_env() {
    let home = WarpHome::new("args_env");
    for flavour in FLAVOURS {
        let spec = Spec::prog("args_env", flavour)
            .args(["one", "two words", "", "x=y", "--", "-v", "ünïcödé"])
            .env("WARP_TEST_VAR", "forty two")
            .env("WARP_TEST_EMPTY", "")
            .env("WARP_TEST_B", "b=c");
        let native = home.check(&spec);
        assert_eq!(native.status, Status::Exited(0));
        let out = native.stdout_str();
        let argv0 = spec.program.to_string_lossy().into_owned();
        let want = format!(
            "argc=8\nargv[0]=[{argv0}]\nargv[1]=[one]\nargv[2]=[two words]\nargv[3]=[]\nargv[4]=[x=y]\n\
             argv[5]=[--]\nargv[6]=[-v]\nargv[7]=[ünïcödé]\nWARP_TEST_* count=3\n\
             env [WARP_TEST_B=b=c]\nenv [WARP_TEST_EMPTY=]\nenv [WARP_TEST_VAR=forty two]\n\
             WARP_TEST_VAR forty two\nWARP_TEST_UNSET (unset)\n{SUCCESS}"
        );
        assert_eq!(out, want);
    }
}

#[test]
fn exit_codes() {
    let home = WarpHome::new("exit_codes");
    for code in [0, 1, 42, 255] {
        let arg = code.to_string();
        for out in check_all(&home, "exit_codes", &[&arg], Status::Exited(code)) {
            assert_eq!(out, format!("exiting with {code}\n"));
        }
    }
}

#[test]
fn stderr_is_the_callers() {
    let home = WarpHome::new("stderr_out");
    for flavour in FLAVOURS {
        let spec = Spec::prog("stderr_out", flavour);
        let native = home.check(&spec);
        assert_eq!(native.status, Status::Exited(3));
        assert_eq!(native.stdout_str(), "out 0\nout 1\nout 2\nout 3\nout 4\n");
        assert!(native.stderr_str().ends_with("not warpctl: just text\nlast line without newline"));

        // The session line comes before anything the program writes.
        let rec = home.record(&spec, &[]);
        let first = rec.outcome.stderr.split(|&b| b == b'\n').next().unwrap_or_default();
        assert!(
            first.starts_with(b"warpctl: session "),
            "stderr should start with the session line, but starts {:?}",
            String::from_utf8_lossy(first)
        );
    }
}

#[test]
fn stdout_to_a_file() {
    let home = WarpHome::new("stdout_file");
    for flavour in FLAVOURS {
        let file = home.path().join(format!("out-{}", flavour.suffix()));
        let native = home.check(&Spec::prog("hello", flavour).stdout_file(&file));
        assert_eq!(native.stdout_str(), "Hello, world!\nEXIT-SUCCESS\n");
    }
}

#[test]
fn big_stdout() {
    let home = WarpHome::new("big_stdout");
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("big_stdout", flavour));
        assert_eq!(native.status, Status::Exited(0));
        assert_eq!(native.stdout.len(), 16 << 20);
    }
}

#[test]
fn file_roundtrip() {
    let home = WarpHome::new("file_roundtrip");
    for flavour in FLAVOURS {
        // One fresh directory per run: the program expects an empty one.
        let spec_in = |dir: &std::path::Path| Spec::prog("file_roundtrip", flavour).arg(dir);
        let native_dir = home.scratch(&format!("native-{}", flavour.suffix()));
        let native = warp_tests::run_native(&spec_in(&native_dir));
        let rec_dir = home.scratch(&format!("recorded-{}", flavour.suffix()));
        let rec_spec = spec_in(&rec_dir);
        let recorded = home.record(&rec_spec, &[]);
        home.assert_same(&rec_spec, &native, &recorded);
        assert_eq!(native.status, Status::Exited(0), "{}", native.stderr_str());
        let out = native.stdout_str();
        assert!(out.contains("read back 1048576 bytes, checksum f6def06cd8c0a325, matches\n"), "{out}");
        assert!(out.contains("listing full (3): log.txt renamed.bin sub\n"), "{out}");
        assert!(out.ends_with("listing end (0):\nEXIT-SUCCESS\n"), "{out}");
        // The program cleaned up after itself in the recorded run too.
        assert_eq!(std::fs::read_dir(&rec_dir).unwrap().count(), 0);
    }
}

#[test]
fn malloc_sizes() {
    let home = WarpHome::new("malloc_sizes");
    for out in check_all(&home, "malloc_sizes", &[], Status::Exited(0)) {
        assert!(out.starts_with("86 allocations, checksum "), "{out}");
        assert!(out.ends_with(SUCCESS));
    }
}

#[test]
fn sparse_1g() {
    let home = WarpHome::new("sparse_1g");
    for out in check_all(&home, "sparse_1g", &[], Status::Exited(0)) {
        assert_eq!(out, "untouched sum 0\ntouched 17 pages, sum 336\nEXIT-SUCCESS\n");
    }
}

#[test]
fn brk() {
    let home = WarpHome::new("brk_test");
    for out in check_all(&home, "brk_test", &[], Status::Exited(0)) {
        assert_eq!(
            out,
            "grew by 1048576\nsum 261120\nshrank to 524288\nsum of what is left 130560\n\
             regrown part sum 0\nback to start: 1\nafter bad brk: 1\nEXIT-SUCCESS\n"
        );
    }
}

#[test]
fn mprotect_ok() {
    let home = WarpHome::new("mprotect_ok");
    for out in check_all(&home, "mprotect_test", &["ok"], Status::Exited(0)) {
        assert_eq!(
            out,
            "written, sum 24576\nread-only, sum 24576\nsecond page writable again, byte 99\n\
             third page PROT_NONE, first page sum 6144\nunmapped\nEXIT-SUCCESS\n"
        );
    }
}

#[test]
fn efault() {
    let home = WarpHome::new("efault");
    for out in check_all(&home, "efault", &[], Status::Exited(0)) {
        let want = "\
read /dev/zero into (void*)1: EFAULT
read pipe into (void*)1: EFAULT
write pipe from (void*)1: EFAULT
read /dev/zero into kernel address: EFAULT
read pipe into kernel address: EFAULT
write pipe from kernel address: EFAULT
read /dev/zero into non-canonical address: EFAULT
read pipe into non-canonical address: EFAULT
write pipe from non-canonical address: EFAULT
read pipe after faults: 10
pipe data [0123456789]
read /dev/zero into PROT_READ page: EFAULT
write pipe from PROT_READ page: 8
bytes from PROT_READ page: 0 0
write pipe from PROT_NONE page: EFAULT
read /dev/zero into PROT_NONE page: EFAULT
read /dev/zero into mapped page: 16
read /dev/zero into unmapped page: EFAULT
EXIT-SUCCESS
";
        assert_eq!(out, want);
    }
}

#[test]
fn unknown_syscall() {
    let home = WarpHome::new("unknown_syscall");
    for out in check_all(&home, "unknown_syscall", &[], Status::Exited(0)) {
        assert_eq!(out, "syscall(1000) = -1 ENOSYS\nsyscall(100000) = -1 ENOSYS\nstill running\nEXIT-SUCCESS\n");
    }
}

#[test]
fn syscall_number_is_the_low_32_bits() {
    let home = WarpHome::new("wide_syscall_nr");
    for out in check_all(&home, "wide_syscall_nr", &[], Status::Exited(0)) {
        assert_eq!(
            out,
            "syscall(-1) = -1 ENOSYS\nsyscall(-1, 1, 2, 3) = -1 ENOSYS\nsyscall(2^32 + getpid) is getpid: yes\n\
             syscall(0xffffffff00000000 | getpid) is getpid: yes\nwritten through 2^40 + write\n\
             that write returned 29\nEXIT-SUCCESS\n"
        );
    }
}

#[test]
fn a_call_that_fails_after_writing_some_outputs_replays() {
    let home = WarpHome::new("partial_fail");
    for out in check_all(&home, "partial_fail", &[], Status::Exited(0)) {
        assert_eq!(
            out,
            "getresuid(&r, &e, bad) = -1 EFAULT\nr is the uid: yes, e is the euid: yes\n\
             getresgid(&r, &e, bad) = -1, r yes, e yes\nEXIT-SUCCESS\n"
        );
    }
}

#[test]
fn int_n_from_user_code_is_sigsegv_and_int3_sigtrap() {
    let home = WarpHome::new("int_gates");
    for out in check_all(&home, "int_gates", &[], Status::Exited(0)) {
        assert_eq!(
            out,
            "int $0x10: SIGSEGV, si_code 0x80\nint $0x21: SIGSEGV, si_code 0x80\nint $0xff: SIGSEGV, si_code 0x80\n\
             int3: SIGTRAP, si_code 0x80\nEXIT-SUCCESS\n"
        );
    }
}

#[test]
fn port_io_from_user_code_is_sigsegv_at_the_instruction() {
    let home = WarpHome::new("stray_io");
    for out in check_all(&home, "stray_io", &[], Status::Exited(0)) {
        assert_eq!(
            out,
            "out %al, $0x10: SIGSEGV, si_code 0x80, at the instruction yes\n\
             out %ax, $0x10: SIGSEGV, si_code 0x80, at the instruction yes\n\
             in $0x10, %al: SIGSEGV, si_code 0x80, at the instruction yes\n\
             out %al, %dx (0x10): SIGSEGV, si_code 0x80, at the instruction yes\n\
             out %al, $0x80: SIGSEGV, si_code 0x80, at the instruction yes\nEXIT-SUCCESS\n"
        );
    }
}

#[test]
fn sigpipe_ignored_gives_epipe() {
    let home = WarpHome::new("sigpipe_ignore");
    for out in check_all(&home, "sigpipe", &["ignore"], Status::Exited(0)) {
        assert_eq!(out, "writing to a pipe with no reader (ignore)\nwrite = -1 EPIPE\nEXIT-SUCCESS\n");
    }
}

#[test]
fn system_facts() {
    let home = WarpHome::new("sys_sanity");
    // A directory whose name has no symlink in it, so getcwd() == $PWD.
    let dir = home.scratch("cwd").canonicalize().unwrap();
    for flavour in FLAVOURS {
        let spec = Spec::prog("sys_sanity", flavour).cwd(&dir).env("PWD", &dir);
        let native = home.check(&spec);
        assert_eq!(native.status, Status::Exited(0));
        let out = native.stdout_str();
        assert!(out.starts_with("sysname Linux\nmachine x86_64\n"), "{out}");
        assert!(!out.contains("BAD"), "{out}");
        assert!(out.ends_with(SUCCESS));
    }
}

/// The flavours are really what their names say (a build problem would
/// otherwise make part of the suite test the same thing twice): ET_EXEC
/// without an interpreter, ET_DYN without one, and one with a PT_INTERP.
#[test]
fn flavours_are_distinct_elf_types() {
    for (flavour, e_type, interp) in
        [(Flavour::Static, 2u16, false), (Flavour::StaticPie, 3u16, false), (Flavour::Dynamic, 3u16, true)]
    {
        let bytes = std::fs::read(warp_tests::prog("hello", flavour)).unwrap();
        assert_eq!(&bytes[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([bytes[16], bytes[17]]), e_type, "{flavour:?}");
        assert_eq!(warp_tests::pt_interp(&bytes).is_some(), interp, "{flavour:?}: PT_INTERP");
    }
}

/// Garbage pointers, lengths, descriptors and flags: warpd and the broker
/// survive, and the answers Linux gives exactly are the same.
#[test]
fn hostile_arguments() {
    let home = WarpHome::new("hostile");
    for flavour in FLAVOURS {
        let out = home.check(&Spec::prog("hostile", flavour));
        assert!(out.stdout_str().ends_with("EXIT-SUCCESS\n"), "{}", out.stdout_str());
        assert!(!out.stdout_str().contains("UNEXPECTED"), "{}", out.stdout_str());
    }
}

/// A seeded campaign of 20,000 calls with hostile arguments, 2,000 more
/// in each other link flavour (tests/progs/hostile_campaign.c): every
/// result (its errno when it fails) folds into a digest printed every
/// 1000 calls, and the lines recorded must be the native ones, the replay
/// the recording's. What is left out, and why, is in the program's
/// comments. The soak is the same program with more calls:
/// `hostile_campaign SEED 1000000 </dev/null` natively and under
/// `warpctl record`, lines compared (`trace` as a third argument prints
/// every call, to find a difference to its call).
#[test]
fn a_seeded_hostile_campaign_gets_linux_answers_call_by_call() {
    let home = WarpHome::new("hostile_campaign");
    for (seed, flavour) in FLAVOURS.into_iter().enumerate() {
        let calls = if seed == 0 { 20_000 } else { 2_000 };
        let spec = Spec::prog("hostile_campaign", flavour).args([(seed + 1).to_string(), calls.to_string()]);
        let out = home.check(&spec);
        assert_eq!(out.stdout_str().lines().count(), calls / 1000 + 1, "{}", out.stdout_str());
        assert!(out.stdout_str().contains(&format!("made {calls} hostile calls, digest")), "{}", out.stdout_str());
    }
}

/// Signal handlers: siginfo, the signal blocked while its handler runs, the
/// FPU state kept across it, alarm()+pause() waking with EINTR after the
/// handler, siglongjmp out of a handler.
#[test]
fn signal_handlers() {
    let home = WarpHome::new("sig_handlers");
    for out in check_all(&home, "sig_handlers", &[], Status::Exited(0)) {
        assert_eq!(
            out,
            "usr1: got 10, si_signo 10, blocked inside 1\nfpu kept: 1\nunblocked after: 1\n\
             pause: -1 EINTR, got 14\nsiglongjmp: 7\nusr2 unblocked after siglongjmp: 1\nEXIT-SUCCESS\n"
        );
    }
}

/// Handlers for CPU faults: SIGSEGV caught with siginfo and left with
/// siglongjmp, a write to a read-only page retried after the handler makes
/// it writable, SIGFPE from a division by zero.
#[test]
fn fault_handlers() {
    let home = WarpHome::new("fault_handlers");
    for out in check_all(&home, "fault_handlers", &[], Status::Exited(0)) {
        assert_eq!(
            out,
            "NULL: caught, si_code 1 (SEGV_MAPERR 1), si_addr NULL 1\n\
             read-only page: fixed by the handler, si_code 2 (SEGV_ACCERR 2), si_addr right 1, value 42\n\
             division by zero: caught, si_code 1 (FPE_INTDIV 1)\nEXIT-SUCCESS\n"
        );
    }
}

/// The program's own /proc: `mem` reaches its memory (and nothing of the
/// broker's), `comm` names it, `fd` lists only its descriptors (as many as
/// natively), and files that would describe the broker do not exist for it.
#[test]
fn proc_self_mem_fd_and_what_is_hidden() {
    let home = WarpHome::new("procself");
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("procself", flavour).arg("mem"));
        assert_eq!(native.status, Status::Exited(0));
        let comm: String = format!("procself.{}", flavour.suffix()).chars().take(15).collect();
        assert_eq!(
            native.stdout_str(),
            format!(
                "read a global: its value\nwrote it: now 42\nread-only page: read-only bytes\nunmapped: EIO\n\
                 lseek then read: at the global, 42\ndup: same position, 42\nwrite to a read-only open: EBADF\n\
                 comm: {comm}\n"
            )
        );
        let native = home.check(&Spec::prog("procself", flavour).arg("fds"));
        assert!(native.stdout_str().starts_with("fd: "), "{}", native.stdout_str());
    }
    // Natively these exist (they describe the process); recorded, the
    // process that holds them is the broker, so they do not.
    let spec = Spec::prog("procself", Flavour::Static).arg("hidden");
    let recorded = home.record(&spec, &[]);
    assert_eq!(recorded.outcome.status, Status::Exited(0), "{}", recorded.warpctl_text());
    assert_eq!(
        recorded.outcome.stdout_str(),
        "/proc/self/smaps: ENOENT\n/proc/self/stack: ENOENT\n/proc/self/numa_maps: ENOENT\n\
         /proc/self/task: ENOENT\n/proc/self/fd/1000: ENOENT\nopenat(/proc, self/smaps): ENOENT\n\
         open(self/mem) in /proc: ENOENT\nopen(self/status) in /proc: ENOENT\n"
    );
    home.assert_replays(&spec, &recorded);
}

/// sendfile from a file to stdout: the bytes come from the file, and the
/// replay prints them from the trace (it reads no file).
#[test]
fn sendfile_to_stdout_replays_its_bytes() {
    let home = WarpHome::new("sendfile");
    let file = home.scratch("sendfile").join("words");
    std::fs::write(&file, "hello world, from a file\n").unwrap();
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("sendfile_out", flavour).arg(&file));
        assert_eq!(native.status, Status::Exited(0));
        assert_eq!(native.stdout_str(), "world,|hello\n");
    }
}

/// RLIMIT_FSIZE the program sets applies to its writes (not to the broker's
/// own): short count at the limit, then EFBIG and SIGXFSZ.
#[test]
fn file_size_limit() {
    let home = WarpHome::new("fsize");
    for flavour in FLAVOURS {
        let file = home.scratch(&format!("fsize-{}", flavour.suffix())).join("out");
        let native = home.check(&Spec::prog("fsize", flavour).arg(&file));
        assert_eq!(native.status, Status::Exited(0));
        assert_eq!(
            native.stdout_str(),
            "write 15: 10\nwrite 5 more: EFBIG\npwrite 5 at 8: 2\nwritev at 10: EFBIG\n\
             write with a handler: EFBIG, handler ran 1\nappend: EFBIG\npipe, 20 bytes: 20\n"
        );
    }
}

/// Calls beyond the basics (issue 12), as Linux answers them: inotify,
/// extended attributes, mlock and its kin, the scheduler's queries,
/// capget, personality, getcpu, preadv2/pwritev2, openat2 (and
/// /proc/self through it), sync_file_range, membarrier, vmsplice.
#[test]
fn linux_calls_beyond_the_basics() {
    let home = WarpHome::new("fidelity");
    let dir = home.scratch("fidelity");
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("fidelity", flavour).arg(&dir));
        assert_eq!(native.status, Status::Exited(0), "{}", native.stderr_str());
        let out = native.stdout_str();
        for line in [
            "inotify: IN_CREATE watched\ninotify: IN_DELETE watched\ninotify_rm_watch: 0\ninotify_rm_watch again: EINVAL\n",
            "mlock unaligned: 0\nmunlock: 0\nmlock2 MLOCK_ONFAULT: 0\nmlock2 bad flags: EINVAL\nmlock nothing: 0\n\
             mlock over a hole: ENOMEM\nmunlock over a hole: ENOMEM\nmlockall 0: EINVAL\nmlockall MCL_ONFAULT alone: EINVAL\n",
            "sched_get_priority_max FIFO: 99\n",
            "sched_getattr: 0 size 56 policy 0\n",
            "capget bad version: 0, version now 0x20080522\n",
            "pwritev2 bad flags: EOPNOTSUPP\npreadv2 at 0: 12 [hello |world\n]\n",
            "openat2 RESOLVE_NO_SYMLINKS through a link: ELOOP\nopenat2 small struct: EINVAL\n",
            "openat2 /proc/self/status: Name:\tfidelity",
            "membarrier private before registering: EPERM\nmembarrier register: 0\nmembarrier private: 0\n",
            "vmsplice: 13\nread: 13 spliced bytes\n",
        ] {
            assert!(out.contains(line), "{line:?} in:\n{out}");
        }
        if out.contains("setxattr: EOPNOTSUPP") {
            eprintln!("the xattr round trip was not exercised: {} has no user xattrs", dir.display());
        } else {
            assert!(out.contains("getxattr: 5 value\n") && out.contains("listxattr: 19 user.warp user.two\n"), "{out}");
        }
        assert!(out.ends_with(SUCCESS), "{out}");
    }
}

/// Memory as Linux has it (issue 12): SEGV_ACCERR for a PROT_NONE page
/// and SEGV_MAPERR for no mapping, a 1 TiB reservation, MAP_32BIT,
/// mprotect over a hole, SIGBUS past a mapped file's end (kept when the
/// mapping moves), MADV_REMOVE's errors, PR_GET_AUXV.
#[test]
fn memory_semantics_as_linux() {
    let home = WarpHome::new("memory");
    let dir = home.scratch("memory");
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("memory", flavour).arg(&dir));
        assert_eq!(native.status, Status::Exited(0), "{}", native.stderr_str());
        let out = native.stdout_str();
        for line in [
            "write to PROT_NONE: SIGSEGV code 2 at the address\nread of PROT_NONE: SIGSEGV code 2 at the address\n\
             read of an unmapped page: SIGSEGV code 1 at the address\n1 TiB PROT_NONE reservation: ok\n\
             MAP_32BIT: below 2 GiB\nmprotect over a hole: ENOMEM\n  the page before it: SIGSEGV code 2 at the address\n\
             \x20 the page after it: no signal\nmprotect starting in the hole: ENOMEM\n  the page after it: no signal\n",
            "a page past the file's end: SIGBUS code 2 at the address\nthe last page past it: SIGBUS code 2 at the address\n\
             moved by mremap: yes; the file's page: hello; past the end still: SIGBUS code 2 at the address\n\
             pread into a page past the end: EFAULT\nMADV_REMOVE on the file mapping: EACCES\n\
             MADV_REMOVE on anonymous memory: EINVAL\nPR_GET_AUXV: its size, AT_PAGESZ found\nPR_GET_AUXV with arg4: EINVAL\n",
        ] {
            assert!(out.contains(line), "{line:?} in:\n{out}");
        }
    }
}

/// A buffer that runs into unmapped memory gives a short count, as Linux's
/// copy up to the first fault does (EFAULT only when nothing fits).
#[test]
fn short_counts_at_the_end_of_mapped_memory() {
    let home = WarpHome::new("shortcount");
    let file = home.scratch("shortcount").join("abc");
    std::fs::write(&file, "abc").unwrap();
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("shortcount", flavour).arg(&file));
        assert_eq!(native.status, Status::Exited(0));
        assert_eq!(
            native.stdout_str(),
            "read a 3-byte file, length 1 GiB: 3\nread /dev/zero, two pages asked, one mapped: 4096\n\
             getrandom, two pages asked: 4096\nwrite to a pipe, two pages asked: 4096\n\
             read into unmapped memory: EFAULT\nreadv of /dev/zero, its later buffers unmapped: 130\n\
             preadv of the file from 1: 2\nreadv, the first buffer unmapped: EFAULT\n\
             readv, a later length too large: EINVAL\n"
        );
    }
}

/// A vDSO of ours (issue 12; trace format 10): AT_SYSINFO_EHDR gives a
/// shared object named linux-vdso.so.1 whose __vdso_ functions carry
/// version LINUX_2.6 and answer as the system calls do; the C library uses
/// it; /proc/self/maps shows it. Natively the host's says the same.
#[test]
fn a_vdso_is_found_and_answers() {
    let home = WarpHome::new("vdso");
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("vdso", flavour));
        assert_eq!(native.status, Status::Exited(0), "{}", native.stdout_str());
        let out = native.stdout_str();
        for line in [
            "ELF: 1, shared object: 1\nsoname: linux-vdso.so.1\n",
            "__vdso_clock_gettime: a function, version LINUX_2.6\n",
            "__vdso_getcpu: a function, version LINUX_2.6\n",
            "clock_gettime: 0 0, in order with the syscall's: 1\nclock_gettime of a bad clock: 1\n",
            "gettimeofday: 0, time within a second of it: 1\ngetcpu: 0\nlibc clock_gettime: 0\n[vdso] in maps: 1\n",
        ] {
            assert!(out.contains(line), "{line:?} in:\n{out}");
        }
        assert!(out.ends_with(SUCCESS), "{out}");
    }
}
