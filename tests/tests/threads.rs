//! Threads on the one vCPU: programs whose threads synchronise through
//! futexes (mutexes, condition variables, join) print natively and
//! recorded the same, in every link flavour, and replay to the same bytes
//! (the schedule is in the trace: `WarpHome::check` replays each one).

use warp_tests::{Spec, Status, WarpHome, FLAVOURS};

#[test]
fn pthreads_with_mutexes_condvars_tls_and_join() {
    let home = WarpHome::new("threads");
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("threads", flavour));
        assert_eq!(native.status, Status::Exited(0));
        assert_eq!(
            native.stdout_str(),
            "thread 0: tls 0, own tid yes\nthread 1: tls 100, own tid yes\nthread 2: tls 200, own tid yes\n\
             thread 3: tls 300, own tid yes\ncounter 8000 (expected 8000), joined sum 10, main tls -1, \
             tids distinct yes\nEXIT-SUCCESS\n"
        );
    }
}

/// Barrier, semaphore, a timed wait that times out, pthread_kill of a
/// waiting thread (its handler runs), and the main thread leaving first.
#[test]
fn barriers_semaphores_timeouts_thread_signals_and_pthread_exit() {
    let home = WarpHome::new("threads_more");
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("threads_more", flavour));
        assert_eq!(native.status, Status::Exited(3));
        assert_eq!(
            native.stdout_str(),
            "barrier: all four passed\nsemaphore: posted by the detached thread\ntimed wait: ETIMEDOUT\n\
             waiter: released, handler ran 1\ntimed wait beside a yielding thread: ETIMEDOUT\n\
             main: leaving with pthread_exit\nlast: main has gone; exiting with 3\n"
        );
    }
}

/// A robust mutex whose owner exits holding it: the next locker gets
/// EOWNERDEAD (warpd walks the exiting thread's robust list), also when it
/// was already waiting for the lock.
#[test]
fn robust_mutexes_outlive_their_owner() {
    let home = WarpHome::new("robust");
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("robust", flavour));
        assert_eq!(native.status, Status::Exited(0));
        assert_eq!(
            native.stdout_str(),
            "owner gone: lock returns EOWNERDEAD\nwaiting when the owner exits: lock returns EOWNERDEAD\nEXIT-SUCCESS\n"
        );
    }
}

/// A dedicated signal thread taking blocked signals with sigwaitinfo
/// (sent to the process and to the thread while it waits), sigtimedwait
/// timing out and polling, sigpending.
#[test]
fn sigwaitinfo_in_a_signal_thread() {
    let home = WarpHome::new("sigwait");
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("sigwait", flavour));
        assert_eq!(native.status, Status::Exited(0));
        assert_eq!(
            native.stdout_str(),
            "signal thread took SIGUSR1 then SIGUSR2\nnothing pending, zero timeout: EAGAIN\n\
             nothing pending, 20 ms: EAGAIN\npending: SIGUSR1 0, SIGUSR2 1\nthen taken: SIGUSR2\n"
        );
    }
}

/// sigsuspend with a timer's signal (the process alone waits outside) and
/// with another thread's: the handler runs, EINTR, the old mask is back.
#[test]
fn sigsuspend_runs_the_handler_and_restores_the_mask() {
    let home = WarpHome::new("sigsuspend");
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("sigsuspend", flavour));
        assert_eq!(native.status, Status::Exited(0));
        assert_eq!(
            native.stdout_str(),
            "timer: EINTR, handler ran 1, blocked again 1\nthread: EINTR, handler ran 1, blocked again 1\n"
        );
    }
}

/// A static Rust program: std::thread, mpsc, Mutex, Barrier, scoped threads.
#[test]
fn rust_std_threads_and_channels() {
    let home = WarpHome::new("rust_threads");
    let native = home.check(&Spec::prog("rust_threads", warp_tests::Flavour::Static));
    assert_eq!(native.status, Status::Exited(0));
    assert_eq!(
        native.stdout_str(),
        "thread 0: sum 19999900000\nthread 1: sum 39999800000\nthread 2: sum 59999700000\n\
         thread 3: sum 79999600000\njoined 60, lock taken 80 times, scoped [111, 222, 333, 444, 555, 666, 777, 888]\n"
    );
}

/// execve with another thread waiting: that thread ends with the old
/// program, and the new one runs as a one-thread process.
#[test]
fn execve_from_a_process_with_threads() {
    let home = WarpHome::new("threads_exec");
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("threads_exec", flavour));
        assert_eq!(native.status, Status::Exited(0));
        assert_eq!(native.stdout_str(), "exec with a thread waiting\nafter exec: tid is the pid yes\nEXIT-SUCCESS\n");
    }
}

/// The events name each syscall's thread, and a call that waits while
/// other threads run is shown unfinished, then resumed.
#[test]
fn events_show_the_threads_and_their_waits() {
    let home = WarpHome::new("threads_events");
    let recorded = home.record(&Spec::prog("threads", warp_tests::Flavour::Static), &[]);
    assert_eq!(recorded.outcome.status, Status::Exited(0), "{}", recorded.warpctl_text());
    let id = recorded.session_id().unwrap();
    let out = home.warpctl().args(["events", &id]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let threads: std::collections::BTreeSet<&str> =
        text.lines().filter_map(|l| l.strip_prefix('[')?.split(']').next()).collect();
    assert_eq!(threads.len(), 5, "the main thread and four workers:\n{text}");
    assert!(text.contains("<unfinished ...>") && text.contains("<... futex resumed>"), "{text}");
    assert!(text.lines().any(|l| l.contains("clone3(")), "{text}");
}

/// Distribution programs that use threads: `sort --parallel=4` of a file
/// large enough that it starts its threads, `xz -T2` compressing 1 MiB
/// blocks on two threads, and python3 with `threading`,
/// `concurrent.futures` and a `queue` between a producer and a consumer.
#[test]
fn sort_parallel_and_python_threads() {
    let home = WarpHome::new("threads_dist");
    let path = "/usr/bin:/bin";
    if std::path::Path::new("/usr/bin/sort").exists() {
        // 300,000 numbers in a scrambled order (an LCG walk over them all).
        let n: u64 = 300_000;
        let lines: String = (0..n).map(|i| format!("{}\n", (i * 7_919 + 13) % n)).collect();
        let input = home.scratch("sort").join("numbers.txt");
        std::fs::write(&input, lines).unwrap();
        let spec = Spec::new("sort").args(["--parallel=4", "-n"]).arg(&input).env("PATH", path);
        let native = home.check(&spec);
        assert_eq!(native.status, Status::Exited(0));
        let want: String = (0..n).map(|i| format!("{i}\n")).collect();
        assert!(native.stdout_str() == want, "sort's output is the sorted numbers");
        let recorded = home.record(&spec, &[]);
        let id = recorded.session_id().unwrap();
        let events = home.warpctl().args(["events", &id]).output().unwrap();
        let clones = String::from_utf8_lossy(&events.stdout).lines().filter(|l| l.contains("clone3(")).count();
        assert!(clones >= 1, "sort started threads ({clones} clones)");
    } else {
        eprintln!("SKIPPED: sort is not installed");
    }
    if std::path::Path::new("/usr/bin/xz").exists() {
        // 6 MiB of text in 1 MiB blocks: xz compresses them on two threads;
        // the .xz bytes are the same natively, recorded and replayed.
        let text: String =
            (0..400_000u64).map(|i| format!("line {} {}\n", i, (i * 2_654_435_761) % 1_000_003)).collect();
        let input = home.scratch("xz").join("text");
        std::fs::write(&input, text).unwrap();
        let spec =
            Spec::new("/usr/bin/xz").args(["-T2", "--block-size=1MiB", "-c", "-1"]).arg(&input).env("PATH", path);
        let native = home.check(&spec);
        assert_eq!(native.status, Status::Exited(0));
        assert!(native.stdout.starts_with(b"\xfd7zXZ\0"), "an .xz stream");
        let recorded = home.record(&spec, &[]);
        let id = recorded.session_id().unwrap();
        let events = home.warpctl().args(["events", &id]).output().unwrap();
        let clones = String::from_utf8_lossy(&events.stdout).lines().filter(|l| l.contains("clone3(")).count();
        assert!(clones >= 2, "xz started its two threads ({clones} clones)");
    } else {
        eprintln!("SKIPPED: /usr/bin/xz is not installed");
    }
    if std::path::Path::new("/usr/bin/python3").exists() {
        let script = "import threading, concurrent.futures, queue\n\
total = 0\n\
lock = threading.Lock()\n\
def work(n):\n    global total\n    s = sum(range(n))\n    with lock:\n        total += s\n    return s\n\
with concurrent.futures.ThreadPoolExecutor(4) as ex:\n    r = list(ex.map(work, range(1000, 1010)))\n\
ts = [threading.Thread(target=work, args=(5000,)) for _ in range(3)]\n\
[t.start() for t in ts]; [t.join() for t in ts]\n\
q = queue.Queue()\n\
def producer():\n    for i in range(100):\n        q.put(i)\n    q.put(None)\n\
p = threading.Thread(target=producer); p.start()\n\
got = []\n\
while True:\n    x = q.get()\n    if x is None: break\n    got.append(x)\n\
p.join()\n\
print(r[0], total, sum(got))\n";
        let spec = Spec::new("/usr/bin/python3").arg("-c").arg(script).env("PATH", path);
        let native = home.check(&spec);
        assert_eq!(native.status, Status::Exited(0));
        assert_eq!(native.stdout_str(), "499500 42532620 4950\n");
    } else {
        eprintln!("SKIPPED: /usr/bin/python3 is not installed");
    }
}

/// One thread waiting in the outside world (read on an empty pipe, accept,
/// poll, select, nanosleep) while another computes or connects: the broker
/// defers the call and the others run; its result reaches the program at
/// a recorded point, and a signal for the waiting thread ends its call
/// (EINTR, or a restart with SA_RESTART). Each part hangs, or counts no
/// work done meanwhile, if a waiting call holds the only vCPU.
#[test]
fn a_thread_blocked_outside_does_not_stop_the_others() {
    let home = WarpHome::new("blocking");
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("blocking", flavour));
        assert_eq!(native.status, Status::Exited(0));
        assert_eq!(
            native.stdout_str(),
            "reader got 15 bytes: after computing\naccepted, read 13 bytes: over loopback\n\
             poll 0, select 0, nanosleep 0\nthe other thread computed meanwhile: yes\n\
             read: EINTR, handler ran 1\nread 9 bytes after the handler ran 1: restarted\n\
             a timed wait beside a spinning thread: ETIMEDOUT\n\
             F_OFD_SETLKW: got the lock once the other thread let go\n\
             ppoll with a mask that lets SIGUSR2 in: EINTR, handler ran 1, blocked again 1\n"
        );
    }
}

/// POSIX timers (SIGEV_SIGNAL while computing, SIGEV_THREAD_ID to a thread
/// in sigwaitinfo, SIGEV_NONE, overruns, glibc's SIGEV_THREAD) and queued
/// signals (sigqueue, pthread_sigqueue), each with its siginfo.
#[test]
fn timers_and_queued_signals() {
    let home = WarpHome::new("timers");
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("timers", flavour));
        assert_eq!(native.status, Status::Exited(0));
        assert_eq!(
            native.stdout_str(),
            "signal timer: 3 or more expiries while computing, siginfo SI_TIMER with its value\n\
             settime after delete: EINVAL\nthread timer: SIGUSR2 taken by its thread, code SI_TIMER, value 7\n\
             SIGEV_NONE timer: armed yes, expired yes\nblocked for 52 periods: one handler, overrun counted\n\
             disarmed while its signal was blocked: 0 handlers\nSIGEV_THREAD timer: callback ran with 5\n\
             sigqueue: value 99, code SI_QUEUE, from this pid yes\npthread_sigqueue: value 123, code SI_QUEUE\n\
             realtime queue: 3 handlers, values 1 2 3\n"
        );
    }
}

/// signalfd: non-blocking and blocking reads, signals from raise, sigqueue
/// and a timer with their siginfo, a changed mask, two signals at once, a
/// thread blocked in its read, poll and epoll seeing a pending signal,
/// EBADF after close.
#[test]
fn signalfd_reads_pending_signals() {
    let home = WarpHome::new("signalfd");
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("signalfd", flavour));
        assert_eq!(native.status, Status::Exited(0));
        assert_eq!(
            native.stdout_str(),
            "nothing pending: EAGAIN\na short buffer: EINVAL\nraise: 128 bytes, SIGUSR1, SI_TKILL, from this pid yes\n\
             sigqueue: 128 bytes, SIGUSR2, SI_QUEUE, value 77\ntwo pending: 256 bytes, SIGUSR1 then SIGUSR2\n\
             timer, blocking read: 128 bytes, SIGUSR2, SI_TIMER, value 5\n\
             blocking read in a thread: 128 bytes, SIGUSR1\npoll, nothing pending: 0\n\
             poll, SIGUSR2 pending: 1, POLLIN\nepoll: 1 ready\nthen read: 128 bytes, SIGUSR2; poll now 0\n\
             dup of a signalfd: 128 bytes, SIGUSR1\nafter close: EBADF\n"
        );
    }
}

/// Priority-inheritance mutexes: contention handed over by FUTEX_UNLOCK_PI,
/// trylock and a timed lock of a held one, a robust PI mutex whose owner
/// exits while another thread waits for it.
#[test]
fn priority_inheritance_mutexes() {
    let home = WarpHome::new("pi_mutex");
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("pi_mutex", flavour));
        assert_eq!(native.status, Status::Exited(0));
        assert_eq!(
            native.stdout_str(),
            "PI mutex counter: 2000 (expected 2000)\nheld elsewhere: trylock EBUSY, timedlock ETIMEDOUT\n\
             robust PI owner died while another waited: EOWNERDEAD\n"
        );
    }
}

/// sendmsg and recvmsg: iovecs gathered and scattered, SCM_RIGHTS, the
/// flags and address the kernel writes back, sendmmsg and recvmmsg, and a
/// thread blocked in recvmsg while another computes.
#[test]
fn sendmsg_and_recvmsg() {
    let home = WarpHome::new("msg");
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("msg", flavour));
        assert_eq!(native.status, Status::Exited(0));
        assert_eq!(
            native.stdout_str(),
            "gathered and scattered: 11 bytes: hell|o world\n\
             SCM_RIGHTS: controllen right, read 10 bytes through the passed descriptor\n\
             datagram cut short: 4 bytes, MSG_TRUNC set\nUDP: 3 bytes udp from AF_INET, namelen 16\n\
             sendmmsg 3 (lengths 3 5 15), recvmmsg 3: one three fift (3 5 4, last cut short)\n\
             blocked recvmsg: 15 bytes: after computing\n"
        );
    }
}

/// futex_waitv: woken by a wake on the second of two futexes (its index
/// returned), EAGAIN, EINVAL, a timeout.
#[test]
fn futex_waitv_on_two_futexes() {
    let home = WarpHome::new("futex_waitv");
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("futex_waitv", flavour));
        assert_eq!(native.status, Status::Exited(0));
        assert_eq!(
            native.stdout_str(),
            "woken by the second futex: index 1\na value that differs: EAGAIN\nbad flags: EINVAL\ntimeout: ETIMEDOUT\n"
        );
    }
}

/// prctl(PR_SET_NAME/PR_GET_NAME) and pthread_setname_np: names kept per
/// thread, truncated as Linux keeps them, inherited by new threads.
#[test]
fn thread_names_are_kept_per_thread() {
    let home = WarpHome::new("thread_names");
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("thread_names", flavour));
        assert_eq!(native.status, Status::Exited(0));
        assert_eq!(
            native.stdout_str(),
            "main: a-name-longer-t\nbad pointer: EFAULT\nworker 0 inherited: a-name-longer-t\n\
             worker 1 inherited: a-name-longer-t\nmain again: a-name-longer-t\nEXIT-SUCCESS\n"
        );
    }
}
