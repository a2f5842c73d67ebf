//! POSIX timers (timer_create and the rest) and queued signals
//! (rt_sigqueueinfo, rt_tgsigqueueinfo).
//!
//! A timer is warpd's: its id, its clock, whom it signals and with what
//! value. The time itself is kept by a timerfd in the broker, hidden in the
//! broker's reserved descriptor range so the program cannot see or close
//! it. While the timer is armed warpd has a read of that timerfd deferred
//! (`Caller::Timer`): its completion is an expiry, delivered at a recorded
//! point like any deferred call's (replay takes it from the trace), and it
//! raises the timer's signal with SI_TIMER, its id, overrun and value.
//! timer_gettime asks the timerfd. CPU-time clocks are approximated by the
//! monotonic clock (the program's CPU time is the vCPU's, which the broker
//! cannot measure).

use super::*;

/// The pseudo thread of warpd's own deferred calls (timer reads).
pub const TIMER_THREAD: u32 = u32::MAX;

const SIGEV_SIGNAL: i32 = 0;
const SIGEV_NONE: i32 = 1;
const SIGEV_THREAD: i32 = 2;
const SIGEV_THREAD_ID: i32 = 4;
/// How many timers one process may have (Linux's limit is RLIMIT_SIGPENDING).
const MAX_TIMERS: usize = 4096;

/// Whom a timer's expiry signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notify {
    None,
    Process(i32),
    Thread(i32, u32),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PosixTimer {
    pub notify: Notify,
    /// sigev_value, given back in the signal's siginfo.
    pub value: u64,
    /// The broker's timerfd (in its reserved range).
    pub fd: i32,
    /// Armed at the last timer_settime; with an interval.
    pub armed: bool,
    pub periodic: bool,
    /// The deferred read of the timerfd in progress, by number.
    pub reading: Option<u64>,
    /// Expiries that went by while its signal was pending (the last one).
    pub overrun: i32,
}

impl Process {
    /// timer_create(clockid, sevp, timerid).
    pub(super) fn timer_create(&mut self, a: &[u64; 6], link: &mut dyn Outside) -> Result<SysResult, ProcessError> {
        let (clock, sevp, out) = (a[0] as i32, a[1], a[2]);
        // The clocks timers run on; CPU-time ones (2, 3 and the negative
        // per-process and per-thread ids) are approximated by CLOCK_MONOTONIC.
        let host_clock = match clock {
            0 | 1 | 7 | 8 | 9 => clock,
            2 | 3 => 1,
            c if c < 0 => 1,
            4..=6 => return Ok(Err(Errno::EOPNOTSUPP)), // no timers on these clocks
            _ => return Ok(Err(Errno::EINVAL)),
        };
        let (value, notify) = if sevp == 0 {
            (0, Notify::Process(abi::SIGALRM))
        } else {
            let mut ev = [0u8; 64];
            if let Err(e) = self.mm.read_user(sevp, &mut ev) {
                return Ok(Err(e));
            }
            let word = |at: usize| i32::from_le_bytes(ev[at..at + 4].try_into().expect("4"));
            let value = u64::from_le_bytes(ev[..8].try_into().expect("8"));
            let (signo, how, tid) = (word(8), word(12), word(16));
            let valid = (1..=signals::NSIG as i32).contains(&signo);
            let notify = match how {
                SIGEV_NONE => Notify::None,
                SIGEV_SIGNAL | SIGEV_THREAD if valid => Notify::Process(signo),
                SIGEV_THREAD_ID if valid && tid > 0 && self.threads.contains_key(&(tid as u32)) => {
                    Notify::Thread(signo, tid as u32)
                }
                _ => return Ok(Err(Errno::EINVAL)),
            };
            (value, notify)
        };
        if self.timers.len() >= MAX_TIMERS {
            return Ok(Err(Errno::EAGAIN));
        }
        // Ids count up, as Linux gives them (a freed one is not reused
        // until the count wraps).
        let id = loop {
            let id = self.next_timer_id;
            self.next_timer_id = if id == i32::MAX { 0 } else { id + 1 };
            if !self.timers.contains_key(&id) {
                break id;
            }
        };
        let value = if sevp == 0 { id as u64 } else { value };
        if host_clock != clock && !self.cpu_clock_noted {
            self.cpu_clock_noted = true;
            self.note(
                "a timer on a CPU-time clock runs on the monotonic clock (the program's CPU time is not measured)"
                    .into(),
            );
        }
        const TFD_CLOEXEC: u64 = 0o2000000;
        const F_DUPFD_CLOEXEC: u64 = 1030;
        let tfd = self.internal(link, 283, [host_clock as u64, TFD_CLOEXEC, 0, 0, 0, 0], Vec::new())?;
        if tfd < 0 {
            return Ok(Err(Errno(-tfd as i32)));
        }
        let base = self.ident.reserved_fd_base as u64;
        let fd = self.internal(link, 72, [tfd as u64, F_DUPFD_CLOEXEC, base, 0, 0, 0], Vec::new())?;
        self.internal(link, 3, [tfd as u64, 0, 0, 0, 0, 0], Vec::new())?;
        if fd < 0 {
            return Ok(Err(Errno(-fd as i32)));
        }
        let timer =
            PosixTimer { notify, value, fd: fd as i32, armed: false, periodic: false, reading: None, overrun: 0 };
        if let Err(e) = self.mm.write_user(out, &id.to_le_bytes()) {
            self.internal(link, 3, [fd as u64, 0, 0, 0, 0, 0], Vec::new())?;
            return Ok(Err(e));
        }
        self.timers.insert(id, timer);
        Ok(Ok(0))
    }

    /// timer_settime(id, flags, new, old): the timerfd is set alike
    /// (TIMER_ABSTIME is TFD_TIMER_ABSTIME); an armed timer has its read.
    pub(super) fn timer_settime(&mut self, a: &[u64; 6], link: &mut dyn Outside) -> Result<SysResult, ProcessError> {
        let (id, flags, new, old) = (a[0] as i32, a[1], a[2], a[3]);
        let Some(fd) = self.timers.get(&id).map(|t| t.fd) else { return Ok(Err(Errno::EINVAL)) };
        let mut spec = [0u8; 32];
        if let Err(e) = self.mm.read_user(new, &mut spec) {
            return Ok(Err(e));
        }
        if old != 0 {
            if let Err(e) = self.timer_gettime(id, old, link)? {
                return Ok(Err(e));
            }
        }
        let bytes = bytes_in(2, spec.to_vec());
        let r = self.internal(link, 286, [fd as u64, flags & 1, 0, 0, 0, 0], vec![bytes])?;
        if r < 0 {
            return Ok(Err(Errno(-r as i32)));
        }
        // An expiry whose signal is still pending is dropped (Linux drops
        // it when it would be delivered; sigpending stops showing it here
        // already).
        self.drop_pending_expiry(id);
        let word = |at: usize| u64::from_le_bytes(spec[at..at + 8].try_into().expect("8"));
        let t = self.timers.get_mut(&id).expect("looked up above");
        t.periodic = word(0) != 0 || word(8) != 0;
        t.armed = word(16) != 0 || word(24) != 0;
        if t.armed && t.reading.is_none() {
            self.timer_read(id, link)?;
        }
        Ok(Ok(0))
    }

    /// timer_gettime(id, out): the timerfd's time left and interval.
    pub(super) fn timer_gettime(
        &mut self,
        id: i32,
        out: u64,
        link: &mut dyn Outside,
    ) -> Result<SysResult, ProcessError> {
        let Some(fd) = self.timers.get(&id).map(|t| t.fd) else { return Ok(Err(Errno::EINVAL)) };
        let (r, bytes) = self.call_with_output(link, 287, [fd as u64, 0, 0, 0, 0, 0], 1, 32)?;
        if r < 0 {
            return Ok(Err(Errno(-r as i32)));
        }
        Ok(self.mm.write_user(out, &bytes).map(|_| 0))
    }

    pub(super) fn timer_getoverrun(&self, id: i32) -> SysResult {
        self.timers.get(&id).map(|t| t.overrun as u64).ok_or(Errno::EINVAL)
    }

    pub(super) fn timer_delete(&mut self, id: i32, link: &mut dyn Outside) -> Result<SysResult, ProcessError> {
        let Some(t) = self.timers.remove(&id) else { return Ok(Err(Errno::EINVAL)) };
        self.drop_timer(t, link)?;
        Ok(Ok(0))
    }

    /// Every timer goes (execve).
    pub(super) fn delete_timers(&mut self, link: &mut dyn Outside) -> Result<(), ProcessError> {
        for (_, t) in std::mem::take(&mut self.timers) {
            self.drop_timer(t, link)?;
        }
        Ok(())
    }

    fn drop_timer(&mut self, t: PosixTimer, link: &mut dyn Outside) -> Result<(), ProcessError> {
        if let Some(seq) = t.reading {
            link.cancel(TIMER_THREAD, seq)?;
        }
        self.internal(link, 3, [t.fd as u64, 0, 0, 0, 0, 0], Vec::new())?;
        Ok(())
    }

    /// Starts the deferred read of timer `id`'s timerfd. An expiry already
    /// due is read at once; a periodic timer then reads again (the next
    /// read waits, the count being taken), so that it is never left without
    /// a read in progress (it stopped firing when a completion came late).
    fn timer_read(&mut self, id: i32, link: &mut dyn Outside) -> Result<(), ProcessError> {
        // Each read at once takes the count; a bound all the same.
        for _ in 0..16 {
            let Some(fd) = self.timers.get(&id).map(|t| t.fd) else { return Ok(()) };
            self.deferred_begun += 1;
            let seq = self.deferred_begun;
            let out =
                Buffer { arg: 1, data: Some(buffer::Data::OutLen(8)), inout: false, out: true, written_by_ret: false };
            let reply = self.broker(link, 0, [fd as u64, 0, 8, 0, 0, 0], vec![out], Caller::Timer(seq))?;
            if reply.pending {
                if let Some(t) = self.timers.get_mut(&id) {
                    t.reading = Some(seq);
                }
                return Ok(());
            }
            if !self.timer_read_done(id, reply.ret, &reply.outputs) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// A read of timer `id`'s timerfd returned `ret` with `outputs`: its
    /// expiries signal (a one-shot timer is disarmed). Whether the timer
    /// is still armed and should read again.
    fn timer_read_done(&mut self, id: i32, ret: i64, outputs: &[Vec<u8>]) -> bool {
        let count = outputs.first().and_then(|b| b.get(..8)).map(|b| u64::from_le_bytes(b.try_into().expect("8")));
        let (8, Some(n)) = (ret, count) else { return false };
        if let Some(t) = self.timers.get_mut(&id) {
            if !t.periodic {
                t.armed = false;
            }
        }
        self.expired(id, n);
        self.timers.get(&id).is_some_and(|t| t.armed)
    }

    /// A timer read completed (`c.thread` is TIMER_THREAD): the expiries
    /// it counted signal, and a periodic timer reads again.
    pub(super) fn timer_completed(&mut self, c: &Completed, link: &mut dyn Outside) -> Result<(), ProcessError> {
        let Some((&id, t)) = self.timers.iter_mut().find(|(_, t)| t.reading == Some(c.seq)) else { return Ok(()) };
        t.reading = None;
        self.timer_read_done(id, c.ret, &c.outputs);
        if self.timers.get(&id).is_some_and(|t| t.armed && t.reading.is_none()) {
            self.timer_read(id, link)?;
        }
        Ok(())
    }

    /// Forgets timer `id`'s signal if it is pending.
    fn drop_pending_expiry(&mut self, id: i32) {
        let Some(t) = self.timers.get(&id) else { return };
        let (sig, tid) = match t.notify {
            Notify::None => return,
            Notify::Process(sig) => (sig, None),
            Notify::Thread(sig, tid) => (sig, Some(tid)),
        };
        let mine = |i: Option<&SigInfo>| i.and_then(|i| i.timer_overrun()).is_some_and(|(t, _)| t == id);
        match tid {
            None if mine(self.signals.info.get(&sig)) => {
                // Nothing of a thread's: the process's instance is taken.
                self.signals.take(sig, &mut ThreadSignals::default());
            }
            Some(tid) => {
                if let Some(t) = self.threads.get_mut(&tid).filter(|t| mine(t.signals.info.get(&sig))) {
                    self.signals.take(sig, &mut t.signals);
                }
            }
            None => {}
        }
    }

    /// `count` expiries of timer `id`: its signal, or more overrun if the
    /// last one's is still pending.
    fn expired(&mut self, id: i32, count: u64) {
        let Some(t) = self.timers.get(&id) else { return };
        let (notify, value) = (t.notify, t.value);
        let (sig, tid) = match notify {
            Notify::None => return,
            Notify::Process(sig) => (sig, None),
            Notify::Thread(sig, tid) => (sig, Some(tid)),
        };
        let bit = signals::bit(sig);
        let pending = match tid {
            None => (self.signals.pending & bit != 0).then(|| self.signals.info.get_mut(&sig)).flatten(),
            Some(tid) => self
                .threads
                .get_mut(&tid)
                .and_then(|t| (t.signals.pending & bit != 0).then(|| t.signals.info.get_mut(&sig)).flatten()),
        };
        if let Some(info) = pending.filter(|i| i.timer_overrun().is_some_and(|(tid, _)| tid == id)) {
            let (_, before) = info.timer_overrun().expect("a timer's");
            let overrun = (before as u64).saturating_add(count).min(i32::MAX as u64) as i32;
            info.set_timer_overrun(overrun);
            if let Some(t) = self.timers.get_mut(&id) {
                t.overrun = overrun;
            }
            return;
        }
        let overrun = count.saturating_sub(1).min(i32::MAX as u64) as i32;
        if let Some(t) = self.timers.get_mut(&id) {
            t.overrun = overrun;
        }
        let info = SigInfo::timer(sig, id, overrun, value);
        match tid {
            None => self.raise_info(sig, Some(info)),
            Some(tid) => self.raise_to_info(tid, sig, info),
        }
    }

    /// rt_sigqueueinfo(tgid, sig, info) and rt_tgsigqueueinfo(tgid, tid,
    /// sig, info): the program's siginfo goes with the signal. Another
    /// process's are the broker's to send.
    pub(super) fn sigqueueinfo(
        &mut self,
        tgid: i32,
        tid: Option<i32>,
        sig: i32,
        at: u64,
        link: &mut dyn Outside,
    ) -> Result<SysResult, ProcessError> {
        let mut raw = [0u8; 128];
        if let Err(e) = self.mm.read_user(at, &mut raw) {
            return Ok(Err(e));
        }
        if tid.is_some_and(|t| t <= 0) || tgid <= 0 && tid.is_some() {
            return Ok(Err(Errno::EINVAL));
        }
        let code = i32::from_le_bytes(raw[8..12].try_into().expect("4"));
        if tgid != self.ident.pid as i32 {
            // Not even root may pretend to be the kernel or kill() to another process.
            if code >= 0 || code == SI_TKILL {
                return Ok(Err(Errno::EPERM));
            }
            let buf = bytes_in(if tid.is_some() { 3 } else { 2 }, raw.to_vec());
            let (nr, args) = match tid {
                Some(t) => (297, [tgid as u64, t as u64, sig as u64, 0, 0, 0]),
                None => (129, [tgid as u64, sig as u64, 0, 0, 0, 0]),
            };
            return Ok(result_of(self.internal(link, nr, args, vec![buf])?));
        }
        if let Some(t) = tid {
            if !self.threads.contains_key(&(t as u32)) {
                return Ok(Err(Errno::ESRCH));
            }
        }
        if !(0..=signals::NSIG as i32).contains(&sig) {
            return Ok(Err(Errno::EINVAL));
        }
        if sig == 0 {
            return Ok(Ok(0));
        }
        let info = SigInfo::queued(sig, &raw);
        match tid {
            Some(t) => self.raise_to_info(t as u32, sig, info),
            None => self.raise_info(sig, Some(info)),
        }
        Ok(Ok(0))
    }
}

/// ITIMER_VIRTUAL and ITIMER_PROF: armed until this much CPU time of the
/// vCPU (nanoseconds), then every `interval` nanoseconds (0: once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimer {
    pub expires: u64,
    pub interval: u64,
}

/// The signal of CPU-time itimer `i` (0: ITIMER_VIRTUAL, 1: ITIMER_PROF).
fn itimer_signal(i: usize) -> i32 {
    if i == 0 {
        abi::SIGVTALRM
    } else {
        abi::SIGPROF
    }
}

impl Process {
    /// The CPU time the program has used, in nanoseconds: the vCPU's (the
    /// recorder measures it; replay reads it back).
    fn cpu_now(&mut self, link: &mut dyn Outside) -> Result<u64, ProcessError> {
        let reply = self.request(link, request::Kind::CpuTime(Default::default()))?;
        let ns = reply.outputs.first().and_then(|b| b.get(..8)).map(|b| u64::from_le_bytes(b.try_into().expect("8")));
        Ok(ns.unwrap_or(0))
    }

    /// setitimer(which, new, old) and getitimer(which, cur) (`new` 0).
    /// ITIMER_REAL is the broker's (its SIGALRM is forwarded); ITIMER_VIRTUAL
    /// and ITIMER_PROF run on the vCPU's CPU time, which stands for the
    /// program's user time and for its user and system time alike (it
    /// includes warpd's handling of its syscalls).
    pub(super) fn itimer(
        &mut self,
        desc: &Desc,
        a: &[u64; 6],
        set: bool,
        link: &mut dyn Outside,
    ) -> Result<SysResult, ProcessError> {
        const ITIMER_REAL: u64 = 0;
        let (which, new, old) = if set { (a[0], a[1], a[2]) } else { (a[0], 0, a[1]) };
        if which == ITIMER_REAL || self.format < 4 {
            return Ok(result_of(self.proxy(desc, *a, link)?));
        }
        if which > 2 {
            return Ok(Err(Errno::EINVAL));
        }
        if !set && old == 0 && self.format >= 8 {
            // getitimer has nowhere to put it.
            return Ok(Err(Errno::EFAULT));
        }
        let i = which as usize - 1;
        let mut next = None;
        if set && new != 0 {
            let mut b = [0u8; 32];
            if let Err(e) = self.mm.read_user(new, &mut b) {
                return Ok(Err(e));
            }
            let w = |at: usize| i64::from_le_bytes(b[at..at + 8].try_into().expect("8"));
            let (interval, value) = ((w(0), w(8)), (w(16), w(24)));
            let ns = |(s, us): (i64, i64)| -> Option<u64> {
                ((0..1_000_000).contains(&us) && s >= 0)
                    .then(|| (s as u64).saturating_mul(1_000_000_000) + us as u64 * 1000)
            };
            let (Some(interval), Some(value)) = (ns(interval), ns(value)) else { return Ok(Err(Errno::EINVAL)) };
            next = Some((value, interval));
        }
        let now = self.cpu_now(link)?;
        if old != 0 {
            let (left, every) = match self.itimers[i] {
                Some(t) => (t.expires.saturating_sub(now).max(1000), t.interval),
                None => (0, 0),
            };
            let tv =
                |ns: u64| [(ns / 1_000_000_000).to_le_bytes(), ((ns % 1_000_000_000) / 1000).to_le_bytes()].concat();
            let bytes = [tv(every), tv(left)].concat();
            if let Err(e) = self.mm.write_user(old, &bytes) {
                return Ok(Err(e));
            }
        }
        if set {
            self.itimers[i] = match next {
                Some((0, _)) | None => None,
                Some((value, interval)) => Some(CpuTimer { expires: now.saturating_add(value), interval }),
            };
        }
        Ok(Ok(0))
    }

    /// When the first CPU-time itimer expires (vCPU nanoseconds).
    pub fn itimer_deadline(&self) -> Option<u64> {
        self.itimers.iter().flatten().map(|t| t.expires).min()
    }

    /// Which CPU-time itimers have expired by `now` (bit 0 virtual, bit 1 prof).
    pub fn itimers_due(&self, now: u64) -> u32 {
        (0..2).filter(|&i| self.itimers[i].is_some_and(|t| t.expires <= now)).fold(0, |m, i| m | 1 << i)
    }

    /// CPU-time itimers in `mask` expired (at a recorded point): their
    /// signals (SI_KERNEL), and the next period.
    pub fn itimers_fired(&mut self, mask: u32) {
        for i in 0..2 {
            if mask & (1 << i) == 0 {
                continue;
            }
            let Some(t) = self.itimers[i] else { continue };
            self.itimers[i] =
                (t.interval > 0).then(|| CpuTimer { expires: t.expires + t.interval, interval: t.interval });
            let sig = itimer_signal(i);
            self.raise_info(sig, Some(SigInfo::sent(sig, abi::SI_KERNEL, 0, 0)));
        }
    }
}
