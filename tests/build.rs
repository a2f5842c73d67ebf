//! Builds the C test programs in `progs/`.
//!
//! Every `progs/*.c` is compiled three times: as a static executable
//! (`NAME.static`, ET_EXEC), as a static PIE (`NAME.static-pie`, ET_DYN
//! with no interpreter) and dynamically linked the compiler's default way
//! (`NAME.dynamic`, a PIE whose PT_INTERP names the system's ld.so). The
//! output directory reaches the tests as `WARP_TEST_PROGS`.
//!
//! The compiler is `$CC` when set, else `gcc`. Static linking needs the C
//! library's archives (Debian: `libc6-dev`).
//!
//! `progs/shared/` holds a shared library with debug information
//! (`libwarpcrash.so`) and a program linked against it
//! (`lib_crash.dynamic`, which finds it beside itself: `$ORIGIN`).
//!
//! Every `progs/*.rs` is built once, statically (`NAME.static`), with the
//! `rustc` cargo builds the project with: a Rust program's own runtime
//! (std::thread, its futex-based locks).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::thread;

const CFLAGS: &[&str] = &["-O2", "-Wall", "-g"];

/// One way of linking a program, with its file name suffix and flags.
struct Flavour {
    suffix: &'static str,
    flags: &'static [&'static str],
}

const FLAVOURS: &[Flavour] = &[
    Flavour { suffix: "static", flags: &["-static", "-fno-pie", "-no-pie"] },
    Flavour { suffix: "static-pie", flags: &["-static-pie", "-fPIE"] },
    // Plain `gcc -O2`: what the distribution's compiler makes by default (a
    // dynamically linked PIE on Debian).
    Flavour { suffix: "dynamic", flags: &[] },
];

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let progs = manifest.join("progs");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("progs");
    fs::create_dir_all(&out).unwrap_or_else(|e| panic!("cannot create {}: {e}", out.display()));
    let cc = env::var("CC").unwrap_or_else(|_| "gcc".to_string());

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", progs.display());
    println!("cargo:rerun-if-env-changed=CC");

    let mut sources = Vec::new();
    let mut rust_sources = Vec::new();
    let entries = fs::read_dir(&progs).unwrap_or_else(|e| panic!("cannot read {}: {e}", progs.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("c") => sources.push(path),
            Some("rs") => rust_sources.push(path),
            Some("h") => println!("cargo:rerun-if-changed={}", path.display()),
            _ => {}
        }
    }
    sources.sort();
    for src in sources.iter().chain(&rust_sources) {
        println!("cargo:rerun-if-changed={}", src.display());
    }

    check_toolchain(&cc, &out);

    // (source, flavour) pairs, compiled on a few threads.
    let mut jobs: Vec<(&Path, &Flavour)> = Vec::new();
    for src in &sources {
        for flavour in FLAVOURS {
            jobs.push((src, flavour));
        }
    }
    let jobs = Mutex::new(jobs);
    let failures = Mutex::new(Vec::new());
    let threads = thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(8);
    thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let Some((src, flavour)) = jobs.lock().unwrap().pop() else {
                    break;
                };
                if let Err(msg) = compile(&cc, &progs, src, flavour, &out) {
                    failures.lock().unwrap().push(msg);
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    for src in &rust_sources {
        if let Err(msg) = compile_rust(&rustc, src, &out) {
            failures.push(msg);
        }
    }
    if let Err(msg) = compile_shared(&cc, &progs.join("shared"), &out) {
        failures.push(msg);
    }
    if !failures.is_empty() {
        panic!("building the C test programs failed:\n\n{}", failures.join("\n\n"));
    }

    println!("cargo:rustc-env=WARP_TEST_PROGS={}", out.display());
}

/// Fails the build with an actionable message when the compiler or the
/// static C library is missing.
fn check_toolchain(cc: &str, out: &Path) {
    match Command::new(cc).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "`{cc} --version` failed ({}): the end-to-end tests need a working C compiler\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "cannot run the C compiler `{cc}`: {e}\n\
             the end-to-end tests build C programs; install gcc and the static C library \
             (Debian/Ubuntu: apt-get install gcc libc6-dev) or set CC"
        ),
    }
    let probe_src = out.join("probe.c");
    let probe_bin = out.join("probe");
    fs::write(&probe_src, "int main(void) { return 0; }\n").expect("write probe.c");
    for flag in ["-static", "-static-pie"] {
        let o = Command::new(cc)
            .arg(flag)
            .arg("-o")
            .arg(&probe_bin)
            .arg(&probe_src)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
        if !o.status.success() {
            panic!(
                "`{cc} {flag}` cannot link a program: the static C library is missing \
                 (Debian/Ubuntu: apt-get install libc6-dev)\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
    let _ = fs::remove_file(&probe_src);
    let _ = fs::remove_file(&probe_bin);
}

/// The shared library and the program that loads it.
fn compile_shared(cc: &str, dir: &Path, out: &Path) -> Result<(), String> {
    println!("cargo:rerun-if-changed={}", dir.display());
    let run = |args: &[&std::ffi::OsStr]| -> Result<(), String> {
        let output = Command::new(cc).args(CFLAGS).args(args).output().map_err(|e| format!("cannot run {cc}: {e}"))?;
        if !output.status.success() {
            return Err(format!("{cc} {args:?}: {}\n{}", output.status, String::from_utf8_lossy(&output.stderr)));
        }
        Ok(())
    };
    let lib = out.join("libwarpcrash.so");
    let lib_src = dir.join("libwarpcrash.c");
    let main_src = dir.join("lib_crash.c");
    println!("cargo:rerun-if-changed={}", lib_src.display());
    println!("cargo:rerun-if-changed={}", main_src.display());
    run(&["-shared".as_ref(), "-fPIC".as_ref(), "-o".as_ref(), lib.as_os_str(), lib_src.as_os_str()])?;
    let bin = out.join("lib_crash.dynamic");
    run(&[
        "-o".as_ref(),
        bin.as_os_str(),
        main_src.as_os_str(),
        "-L".as_ref(),
        out.as_os_str(),
        "-lwarpcrash".as_ref(),
        "-Wl,-rpath,$ORIGIN".as_ref(),
    ])
}

fn compile_rust(rustc: &str, src: &Path, out: &Path) -> Result<(), String> {
    let stem = src.file_stem().and_then(|s| s.to_str()).expect("UTF-8 file name");
    let bin = out.join(format!("{stem}.static"));
    let output = Command::new(rustc)
        .args(["--edition", "2021", "-O", "-C", "target-feature=+crt-static", "-o"])
        .arg(&bin)
        .arg(src)
        .output()
        .map_err(|e| format!("cannot run {rustc}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{rustc} {}:\n{}", src.display(), String::from_utf8_lossy(&output.stderr)));
    }
    Ok(())
}

fn compile(cc: &str, include: &Path, src: &Path, flavour: &Flavour, out: &Path) -> Result<(), String> {
    let stem = src.file_stem().and_then(|s| s.to_str()).expect("UTF-8 file name");
    let bin = out.join(format!("{stem}.{}", flavour.suffix));
    let output = Command::new(cc)
        .args(CFLAGS)
        .args(flavour.flags)
        .arg("-I")
        .arg(include)
        .arg("-o")
        .arg(&bin)
        .arg(src)
        .output()
        .map_err(|e| format!("cannot run {cc}: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("{} ({}): {}\n{stderr}", src.display(), flavour.suffix, output.status));
    }
    for line in stderr.lines() {
        println!("cargo:warning={}: {line}", bin.file_name().unwrap().to_string_lossy());
    }
    Ok(())
}
