//! XNU's system-call ABI on arm64, as a program at EL0 makes its calls:
//! `svc #0x80` with the call in x16, arguments in x0-x7 (x0 onwards),
//! results in x0 (and x1), the carry flag set with the errno in x0 on a
//! BSD call's failure (the register conventions are
//! `arch::aarch64::Regs::xnu_syscall` and `finish_bsd` in warpd).
//!
//! x16 selects one of three kinds: a BSD call (positive; 0 is the
//! indirect `syscall(2)`, the number then in x0 and the arguments after
//! it), a Mach trap (negative), or the machine-dependent call
//! (0x80000000, its code in x3: 2 sets the thread's TSD base from x0, 3
//! reads it).

use crate::names_xnu;

/// The machine-dependent calls' x16.
pub const PLATFORM_SYSCALL: u64 = 0x8000_0000;

/// What an XNU `svc #0x80` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// BSD call `nr` (after the indirect one is resolved), with the
    /// register its first argument is in (0, or 1 for `syscall(nr, ...)`).
    Bsd { nr: u32, name: Option<&'static str>, first_arg: usize },
    /// Mach trap `nr` (negative).
    Mach { nr: i32, name: Option<&'static str> },
    /// A machine-dependent call.
    Platform(Platform),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    SetTsdBase,
    GetTsdBase,
    /// The cache-flush codes (removed from XNU) and unknown ones.
    Unknown(u32),
}

/// Classifies a call from its x16 (and x0 for the indirect call, x3 for
/// the machine-dependent one). XNU reads x16 as a 32-bit int.
pub fn classify(x16: u64, x0: u64, x3: u64) -> Call {
    if x16 as u32 as u64 == PLATFORM_SYSCALL {
        return Call::Platform(match x3 as u32 {
            2 => Platform::SetTsdBase,
            3 => Platform::GetTsdBase,
            c => Platform::Unknown(c),
        });
    }
    let n = x16 as u32 as i32;
    if n < 0 {
        return Call::Mach { nr: n, name: names_xnu::mach(n) };
    }
    if n == 0 {
        let nr = x0 as u32;
        return Call::Bsd { nr, name: names_xnu::bsd(nr as u64), first_arg: 1 };
    }
    Call::Bsd { nr: n as u32, name: names_xnu::bsd(n as u64), first_arg: 0 }
}

impl Call {
    /// How the event printer names it.
    pub fn describe(&self) -> String {
        match *self {
            Call::Bsd { nr, name: Some(n), .. } => format!("{n}#{nr}"),
            Call::Bsd { nr, name: None, .. } => format!("bsd_{nr}"),
            Call::Mach { nr, name: Some(n) } => format!("{n}#{nr}"),
            Call::Mach { nr, name: None } => format!("mach_trap_{nr}"),
            Call::Platform(Platform::SetTsdBase) => "platform_set_tsd_base".into(),
            Call::Platform(Platform::GetTsdBase) => "platform_get_tsd_base".into(),
            Call::Platform(Platform::Unknown(c)) => format!("platform_{c}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bsd_mach_and_platform_calls_are_told_apart() {
        assert_eq!(classify(4, 0, 0), Call::Bsd { nr: 4, name: Some("write"), first_arg: 0 });
        assert_eq!(classify(1, 0, 0), Call::Bsd { nr: 1, name: Some("exit"), first_arg: 0 });
        assert_eq!(classify(463, 0, 0), Call::Bsd { nr: 463, name: Some("openat"), first_arg: 0 });
        assert_eq!(classify(500, 0, 0), Call::Bsd { nr: 500, name: Some("getentropy"), first_arg: 0 });
        // syscall(SYS_getpid): the number in x0.
        assert_eq!(classify(0, 20, 0), Call::Bsd { nr: 20, name: Some("getpid"), first_arg: 1 });
        // A negative x16 as libsystem loads it (mov x16, #-31).
        assert_eq!(classify(-31i64 as u64, 0, 0), Call::Mach { nr: -31, name: Some("mach_msg_trap") });
        assert_eq!(classify(-28i64 as u64, 0, 0), Call::Mach { nr: -28, name: Some("task_self_trap") });
        assert_eq!(classify(-89i64 as u64 as u32 as u64, 0, 0).describe(), "mach_timebase_info_trap#-89");
        assert_eq!(classify(-1i64 as u64, 0, 0), Call::Mach { nr: -1, name: None });
        assert_eq!(classify(PLATFORM_SYSCALL, 0x1000, 2), Call::Platform(Platform::SetTsdBase));
        assert_eq!(classify(PLATFORM_SYSCALL, 0, 0), Call::Platform(Platform::Unknown(0)));
        // Old calls have no name (8 was creat).
        assert_eq!(classify(8, 0, 0).describe(), "bsd_8");
    }

    #[test]
    fn the_name_tables_are_xnus() {
        assert_eq!(names_xnu::bsd(3), Some("read"));
        assert_eq!(names_xnu::bsd(59), Some("execve"));
        assert_eq!(names_xnu::bsd(197), Some("mmap"));
        assert_eq!(names_xnu::bsd(294), Some("shared_region_check_np"), "dyld's first question");
        assert_eq!(names_xnu::bsd(0), None);
        assert_eq!(names_xnu::bsd(100_000), None);
        for w in names_xnu::MACH.windows(2) {
            assert!(w[0].0 > w[1].0, "one name per trap, highest first");
        }
    }
}
