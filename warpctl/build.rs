//! Renders warpctl's man pages from its command-line definition
//! (`src/cli.rs`): `warpctl.1`, and `warpctl-COMMAND.1` for each command,
//! into OUT_DIR, where `warpctl man` finds them.

use std::path::PathBuf;

#[path = "src/cli.rs"]
#[allow(dead_code)]
mod cli;

fn render(cmd: clap::Command, out: &std::path::Path, name: &str) {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut page).expect("rendering a man page into memory");
    std::fs::write(out.join(format!("{name}.1")), page).expect("writing a man page into OUT_DIR");
}

fn main() {
    println!("cargo:rerun-if-changed=src/cli.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cmd = <cli::Cli as clap::CommandFactory>::command();
    let mut names = Vec::new();
    for sub in cmd.get_subcommands() {
        let name = format!("warpctl-{}", sub.get_name());
        let leaked: &'static str = Box::leak(name.clone().into_boxed_str());
        render(sub.clone().name(leaked), &out, &name);
        names.push(sub.get_name().to_string());
    }
    render(cmd, &out, "warpctl");
    // What `warpctl man COMMAND` can print.
    let table: String = names
        .iter()
        .map(|n| format!("    ({n:?}, include_str!(concat!(env!(\"OUT_DIR\"), \"/warpctl-{n}.1\"))),\n"))
        .collect();
    std::fs::write(out.join("man_pages.rs"), format!("&[\n{table}]\n")).expect("writing the page table");
}
