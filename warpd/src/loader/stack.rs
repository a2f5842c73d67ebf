//! The initial stack of a new program, as Linux lays it out for x86_64:
//!
//! ```text
//!  top  execfn, env and arg strings, "x86_64", 16 random bytes
//!       (padding to 16)
//!       auxv pairs ... AT_NULL
//!       envp[] NULL
//!       argv[] NULL
//!  rsp  argc
//! ```

pub const AT_NULL: u64 = 0;
pub const AT_PHDR: u64 = 3;
pub const AT_PHENT: u64 = 4;
pub const AT_PHNUM: u64 = 5;
pub const AT_PAGESZ: u64 = 6;
pub const AT_BASE: u64 = 7;
pub const AT_FLAGS: u64 = 8;
pub const AT_ENTRY: u64 = 9;
pub const AT_UID: u64 = 11;
pub const AT_EUID: u64 = 12;
pub const AT_GID: u64 = 13;
pub const AT_EGID: u64 = 14;
pub const AT_PLATFORM: u64 = 15;
pub const AT_HWCAP: u64 = 16;
pub const AT_CLKTCK: u64 = 17;
pub const AT_SECURE: u64 = 23;
pub const AT_RANDOM: u64 = 25;
pub const AT_HWCAP2: u64 = 26;
pub const AT_EXECFN: u64 = 31;
pub const AT_SYSINFO_EHDR: u64 = 33;
pub const AT_MINSIGSTKSZ: u64 = 51;

/// What goes on the stack besides the strings.
pub struct StackSpec<'a> {
    pub argv: &'a [Vec<u8>],
    pub envp: &'a [Vec<u8>],
    pub execfn: &'a [u8],
    pub random: [u8; 16],
    /// Auxiliary vector entries except AT_RANDOM, AT_EXECFN, AT_PLATFORM
    /// (which point into the stack and are added here) and AT_NULL.
    pub auxv: Vec<(u64, u64)>,
}

/// The bytes to place so that they end at `top`, and the initial rsp.
pub struct StackImage {
    pub start: u64,
    pub bytes: Vec<u8>,
    pub rsp: u64,
    /// The full auxiliary vector, as the program will see it.
    pub auxv: Vec<(u64, u64)>,
}

pub fn build(spec: &StackSpec, top: u64) -> StackImage {
    // Strings area, built downwards from `top`.
    let mut strings: Vec<u8> = Vec::new();
    let mut push_str = |s: &[u8]| -> u64 {
        // Offset from the top of the area's end, resolved below.
        let mut v = s.to_vec();
        v.push(0);
        let mut new = v;
        new.extend_from_slice(&strings);
        strings = new;
        strings.len() as u64
    };
    // Each returned value is "distance from top" of the string's start.
    let execfn_d = push_str(spec.execfn);
    let env_d: Vec<u64> = spec.envp.iter().map(|e| push_str(e)).collect();
    let arg_d: Vec<u64> = spec.argv.iter().rev().map(|a| push_str(a)).collect::<Vec<_>>().into_iter().rev().collect();
    let platform_d = push_str(b"x86_64");
    let mut with_random = spec.random.to_vec();
    with_random.extend_from_slice(&strings);
    strings = with_random;
    let random_d = strings.len() as u64;

    let strings_start = top - strings.len() as u64;
    let at = |d: u64| top - d;

    let mut auxv = spec.auxv.clone();
    auxv.push((AT_RANDOM, at(random_d)));
    auxv.push((AT_EXECFN, at(execfn_d)));
    auxv.push((AT_PLATFORM, at(platform_d)));
    auxv.push((AT_NULL, 0));

    let words = 1 + spec.argv.len() + 1 + spec.envp.len() + 1 + auxv.len() * 2;
    let mut rsp = (strings_start & !15) - words as u64 * 8;
    rsp &= !15;

    let mut table: Vec<u64> = Vec::with_capacity(words);
    table.push(spec.argv.len() as u64);
    table.extend(arg_d.iter().map(|&d| at(d)));
    table.push(0);
    table.extend(env_d.iter().map(|&d| at(d)));
    table.push(0);
    for &(k, v) in &auxv {
        table.push(k);
        table.push(v);
    }

    let mut bytes = vec![0u8; (top - rsp) as usize];
    for (i, w) in table.iter().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    let s = (strings_start - rsp) as usize;
    bytes[s..].copy_from_slice(&strings);
    StackImage { start: rsp, bytes, rsp, auxv }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(img: &StackImage, addr: u64) -> u64 {
        let o = (addr - img.start) as usize;
        u64::from_le_bytes(img.bytes[o..o + 8].try_into().unwrap())
    }

    fn cstr(img: &StackImage, addr: u64) -> Vec<u8> {
        let o = (addr - img.start) as usize;
        img.bytes[o..].iter().take_while(|&&b| b != 0).copied().collect()
    }

    #[test]
    fn layout_matches_the_abi() {
        let argv = vec![b"prog".to_vec(), b"a b".to_vec()];
        let envp = vec![b"HOME=/root".to_vec()];
        let spec = StackSpec {
            argv: &argv,
            envp: &envp,
            execfn: b"/bin/prog",
            random: [7; 16],
            auxv: vec![(AT_PAGESZ, 4096), (AT_ENTRY, 0x401000)],
        };
        let top = 0x7fff_ffff_f000;
        let img = build(&spec, top);
        assert_eq!(img.rsp % 16, 0);
        assert_eq!(img.start + img.bytes.len() as u64, top);
        assert_eq!(word(&img, img.rsp), 2);
        assert_eq!(cstr(&img, word(&img, img.rsp + 8)), b"prog");
        assert_eq!(cstr(&img, word(&img, img.rsp + 16)), b"a b");
        assert_eq!(word(&img, img.rsp + 24), 0);
        assert_eq!(cstr(&img, word(&img, img.rsp + 32)), b"HOME=/root");
        assert_eq!(word(&img, img.rsp + 40), 0);
        // auxv follows envp's NULL.
        let mut a = img.rsp + 48;
        let mut seen = std::collections::HashMap::new();
        loop {
            let (k, v) = (word(&img, a), word(&img, a + 8));
            if k == AT_NULL {
                break;
            }
            seen.insert(k, v);
            a += 16;
        }
        assert_eq!(seen[&AT_PAGESZ], 4096);
        assert_eq!(cstr(&img, seen[&AT_EXECFN]), b"/bin/prog");
        assert_eq!(cstr(&img, seen[&AT_PLATFORM]), b"x86_64");
        let r = (seen[&AT_RANDOM] - img.start) as usize;
        assert_eq!(&img.bytes[r..r + 16], &[7; 16]);
    }
}
