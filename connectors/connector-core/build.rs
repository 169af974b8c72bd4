//! Bundles every Avro schema under `schemas/` (except `examples/`) into the crate, shared types
//! (`schemas/common/`) first so later files can reference them. Adding a schema file needs no
//! code change.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest.join("../../schemas");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("schemas/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n != "examples"))
        .collect();
    // common/ first; the rest alphabetically, for a stable order.
    dirs.sort_by_key(|p| (p.file_name().is_none_or(|n| n != "common"), p.clone()));
    let mut out = String::from("&[\n");
    for dir in dirs {
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("readable schema dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "avsc"))
            .collect();
        files.sort();
        for f in files {
            let rel = rel_name(&f);
            let abs = f.canonicalize().expect("canonical path");
            writeln!(
                out,
                "    ({rel:?}, include_str!({:?})),",
                abs.display().to_string()
            )
            .expect("write to string");
        }
    }
    out.push(']');
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("bundled.rs");
    std::fs::write(dest, out).expect("write bundled.rs");
}

fn rel_name(file: &Path) -> String {
    let dir = file.parent().and_then(|d| d.file_name()).expect("in a dir");
    let name = file.file_name().expect("a file");
    format!("{}/{}", dir.to_string_lossy(), name.to_string_lossy())
}
