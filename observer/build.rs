//! Embeds the eBPF object that `cargo xtask build` made (its path in
//! `OBSERVER_EBPF_OBJECT`). Without it an empty placeholder is embedded, so
//! that `cargo build`, `cargo clippy` and editors work without the eBPF
//! toolchain; the daemon then says how to build the real thing.
use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo::rerun-if-env-changed=OBSERVER_EBPF_OBJECT");
    let out =
        PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("observer.bpf.o");
    match env::var("OBSERVER_EBPF_OBJECT") {
        Ok(src) if !src.is_empty() => {
            println!("cargo::rerun-if-changed={src}");
            fs::copy(&src, &out).unwrap_or_else(|e| panic!("copy eBPF object {src}: {e}"));
        }
        _ => fs::write(&out, b"").expect("write placeholder eBPF object"),
    }
}
