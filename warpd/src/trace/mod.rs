//! Recordings: the store (sled), the recorder that stands between the
//! emulated kernel and the broker, the replayer that stands in for the
//! broker, and the event printer.
//!
//! ```text
//!  record: Process -> Recorder(LiveBroker) -> broker      events -> Store
//!  replay: Process -> Replayer(trace)                      events <- Store
//! ```

pub mod digest;
pub mod export;
pub mod merge;
pub mod print;
pub mod record;
pub mod replay;
pub mod ring;
pub mod store;
pub mod symbolic;
pub mod symbols;

/// The version of events and session metadata this warpd writes and reads.
/// 2: syscall entries and exits keep the whole number register (64 bits);
/// 3: interrupts while the program computes (preemptions, signals) are
/// exact points (`Interrupt`), time slices end at recorded boundaries
/// (`SliceEnd`); 4: a thread's call that would wait is deferred while
/// other threads run (`BrokerCall.pending`, then `Completion`); 5: calls
/// the exitless path served are one `RingCall` each; 6: process trees
/// (a fork is a `BrokerCall` of number 57; each forked process is a
/// session of its own, `SessionMeta.parent`/`root`; writes to the
/// original streams carry their place in the tree's order); 7: the calls
/// marked `since(7)` in the syscall table are answered (ENOSYS before),
/// an access to a PROT_NONE page is SEGV_ACCERR, MAP_32BIT is honoured,
/// mprotect over a hole changes the pages before it, PR_GET_AUXV and
/// MADV_REMOVE answer as Linux; 8: the host checks calls in Linux's
/// order where the program passed one of the broker's descriptors or a
/// buffer that faults (`Identity.fault_page`), an iovec count is an
/// unsigned int, and the calls marked `since(8)` are answered; 9: an
/// interrupt point's memory digest covers the pages written since the last
/// syscall boundary (no longer since the last point) by their numbers and
/// 64 of them by their contents (`interrupts::Written::digest`); 10: every
/// program gets a vDSO of ours (`loader::vdso`, AT_SYSINFO_EHDR). Older
/// traces read unchanged and replay with what their warpd did.
pub const FORMAT_VERSION: u32 = 10;
