//! Embeds the shipped suites (`suites/*.yaml`) in the binary, so that `run`
//! works from any directory (src/suite/builtin.rs).
//!
//! A build script rather than the `include_dir` crate: `include_dir!` does not
//! make Cargo rebuild when a file is added to the folder (include_dir issue
//! #120, open), which would ship a stale set of suites. Here Cargo reruns the
//! script whenever anything under `suites/` changes, and `include_str!` tracks
//! each file's content.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    println!("cargo::rerun-if-changed=suites");
    println!("cargo::rerun-if-changed=build.rs");
    let root = std::env::var("CARGO_MANIFEST_DIR").expect("Cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&root).join("suites");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && !n.starts_with('.'))
        .collect();
    names.sort();
    let mut code = String::from("&[\n");
    for n in &names {
        let stem = n.trim_end_matches(".yaml");
        let path = dir.join(n);
        let _ = writeln!(
            code,
            "    BuiltinSuite {{ name: {stem:?}, file: {n:?}, source: include_str!({:?}) }},",
            path.display().to_string()
        );
    }
    code.push_str("]\n");
    let out =
        Path::new(&std::env::var("OUT_DIR").expect("Cargo sets OUT_DIR")).join("builtin_suites.rs");
    std::fs::write(&out, code).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
