//! Embeds the eBPF programs in the daemon.
//!
//! - `OBSERVER_EBPF_OBJECT` set (what `cargo xtask build` does): that object.
//! - a debug build without it (`cargo build`, `cargo clippy`, editors): an
//!   empty placeholder, so that they work without the eBPF toolchain; the
//!   daemon then says how to build the real thing.
//! - a release build without it (`cargo install --path observer`): the eBPF
//!   crate is built here, as aya's template does, when a compiler that can
//!   build `core` for `bpfel-unknown-none` and a `bpf-linker` are found;
//!   otherwise the build stops and names the command that provisions them.
//!   `OBSERVER_EBPF_PLACEHOLDER=1` embeds the placeholder anyway.
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

fn main() {
    println!("cargo::rerun-if-env-changed=OBSERVER_EBPF_OBJECT");
    println!("cargo::rerun-if-env-changed=OBSERVER_EBPF_PLACEHOLDER");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let out = out_dir.join("observer.bpf.o");
    if let Some(src) = env::var("OBSERVER_EBPF_OBJECT")
        .ok()
        .filter(|s| !s.is_empty())
    {
        println!("cargo::rerun-if-changed={src}");
        fs::copy(&src, &out).unwrap_or_else(|e| panic!("copy eBPF object {src}: {e}"));
        return;
    }
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let placeholder = env::var("OBSERVER_EBPF_PLACEHOLDER").is_ok_and(|v| v == "1");
    if !release || placeholder {
        fs::write(&out, b"").expect("write placeholder eBPF object");
        return;
    }
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest.parent().expect("observer/ is in the workspace");
    let ebpf_src = root.join("observer-ebpf");
    println!("cargo::rerun-if-changed={}", ebpf_src.join("src").display());
    println!(
        "cargo::rerun-if-changed={}",
        root.join("observer-common/src").display()
    );
    match build_ebpf(root, &out_dir.join("ebpf")) {
        Ok(obj) => {
            fs::copy(&obj, &out).unwrap_or_else(|e| panic!("copy {}: {e}", obj.display()));
        }
        Err(why) => {
            // One message, at build time, with the command that works.
            eprintln!(
                "\nerror: this release build of the observer needs its eBPF programs, and {why}.\n\
                 Install it with:  cargo xtask install            (into /usr/local; --prefix DIR for another place)\n\
                 which finds or installs the eBPF toolchain (a rustc that can build `core` for \
                 bpfel-unknown-none, and bpf-linker), builds everything and installs the binary.\n\
                 Or build the object first (cargo xtask build) and set \
                 OBSERVER_EBPF_OBJECT={}/target/bpf/bpfel-unknown-none/release/observer\n",
                root.display()
            );
            std::process::exit(1);
        }
    }
}

/// A compiler for the BPF target: how to run its cargo, and its environment.
struct Toolchain {
    cargo: PathBuf,
    prefix_args: Vec<&'static str>,
    env: Vec<(&'static str, String)>,
}

fn output(cmd: &mut Command) -> Option<String> {
    let o = cmd.output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

fn has_library_source(sysroot: &str) -> bool {
    Path::new(sysroot)
        .join("lib/rustlib/src/rust/library/core/Cargo.toml")
        .exists()
}

fn which(name: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(extra.iter().cloned())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The toolchains `cargo xtask` would pick, found (never installed): a
/// rustup nightly with rust-src, or a system rustc whose sysroot carries the
/// library source (driven with RUSTC_BOOTSTRAP=1).
fn find_toolchain() -> Option<Toolchain> {
    if let Some(rustup) = which("rustup", &[]) {
        let sysroot =
            output(Command::new(&rustup).args(["run", "nightly", "rustc", "--print", "sysroot"]));
        if sysroot.is_some_and(|s| has_library_source(&s)) {
            return Some(Toolchain {
                cargo: rustup,
                prefix_args: vec!["run", "nightly", "cargo"],
                env: vec![],
            });
        }
    }
    for rustc in ["/usr/bin/rustc", "/usr/local/bin/rustc"] {
        let sysroot = output(Command::new(rustc).args(["--print", "sysroot"]));
        if !sysroot.is_some_and(|s| has_library_source(&s)) {
            continue;
        }
        let beside = Path::new(rustc).with_file_name("cargo");
        let cargo = if beside.exists() {
            beside
        } else {
            which("cargo", &[])?
        };
        return Some(Toolchain {
            cargo,
            prefix_args: vec![],
            env: vec![
                ("RUSTC", rustc.to_owned()),
                ("RUSTC_BOOTSTRAP", "1".to_owned()),
            ],
        });
    }
    None
}

fn build_ebpf(root: &Path, target_dir: &Path) -> Result<PathBuf, String> {
    let home = env::var_os("HOME").map(PathBuf::from);
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".cargo")));
    let linker = which(
        "bpf-linker",
        &cargo_home.iter().map(|h| h.join("bin")).collect::<Vec<_>>(),
    )
    .ok_or("no bpf-linker was found on PATH or in ~/.cargo/bin")?;
    let tc = find_toolchain().ok_or(
        "no Rust compiler that can build `core` for bpfel-unknown-none was found \
         (a rustup nightly with rust-src, or a system rustc with its library source)",
    )?;
    let path = env::join_paths(
        std::iter::once(linker.parent().expect("a file's directory").to_path_buf())
            .chain(env::split_paths(&env::var_os("PATH").unwrap_or_default())),
    )
    .map_err(|e| e.to_string())?;
    let mut c = Command::new(&tc.cargo);
    // A clean environment: nothing of the outer build (its target, flags,
    // compiler, profile) may leak into the BPF build.
    c.env_clear()
        .current_dir(root)
        .args(&tc.prefix_args)
        .args([
            "build",
            "--package",
            "observer-ebpf",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
        ])
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", target_dir);
    for k in ["HOME", "CARGO_HOME", "RUSTUP_HOME", "TMPDIR", "LANG"] {
        if let Some(v) = env::var_os(k) {
            c.env(k, v);
        }
    }
    for (k, v) in &tc.env {
        c.env(k, v);
    }
    println!(
        "cargo::warning=building the eBPF programs with {}",
        tc.cargo.display()
    );
    let out = c
        .output()
        .map_err(|e| format!("running {} failed: {e}", tc.cargo.display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        return Err(format!(
            "building them failed:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    let obj = target_dir.join("bpfel-unknown-none/release/observer");
    obj.exists()
        .then_some(obj)
        .ok_or_else(|| "the eBPF build produced no object".to_owned())
}
