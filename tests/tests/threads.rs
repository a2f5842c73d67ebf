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
             waiter: released, handler ran 1\nmain: leaving with pthread_exit\nlast: main has gone; exiting with 3\n"
        );
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
    assert!(text.lines().any(|l| l.contains("clone(")), "{text}");
}
