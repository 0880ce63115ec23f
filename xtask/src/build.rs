//! Building the eBPF object and the daemon, and running either.

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context, Result};

use crate::{
    provision::{ensure_bpf_linker, ensure_toolchain},
    util::{is_root, run, which, workspace_root},
};

/// Builds the eBPF object; returns its path.
pub fn build_ebpf() -> Result<PathBuf> {
    let tc = ensure_toolchain()?;
    let linker = ensure_bpf_linker(tc.llvm_major)?;
    let root = workspace_root();
    let target_dir = root.join("target/bpf");
    let linker_dir = linker.parent().expect("a file has a parent").to_path_buf();
    let path = format!(
        "{}:{}",
        linker_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = tc.command();
    cmd.current_dir(&root)
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
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("PATH", path);
    eprintln!("xtask: eBPF toolchain: {}", tc.description);
    run(&mut cmd).context("build the eBPF programs")?;
    let obj = target_dir.join("bpfel-unknown-none/release/observer");
    if !obj.exists() {
        bail!("the eBPF build produced no object at {}", obj.display());
    }
    Ok(obj)
}

/// `cargo` for the userspace crates, with the eBPF object to embed.
pub fn cargo(obj: &std::path::Path) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root())
        .env("OBSERVER_EBPF_OBJECT", obj)
        .env_remove("RUSTC_BOOTSTRAP");
    c
}

/// Builds everything; returns the daemon's path.
pub fn build_all(release: bool) -> Result<PathBuf> {
    let obj = build_ebpf()?;
    let mut c = cargo(&obj);
    c.args([
        "build",
        "--package",
        "observer",
        "--bin",
        "observer",
        "--bin",
        "observer-workload",
    ]);
    if release {
        c.arg("--release");
    }
    run(&mut c).context("build the observer daemon")?;
    Ok(workspace_root().join(if release {
        "target/release/observer"
    } else {
        "target/debug/observer"
    }))
}

/// `cargo xtask install`: builds everything and installs the real binary
/// as PREFIX/bin/observer; says how to run it without root.
pub fn install(prefix: &std::path::Path) -> Result<PathBuf> {
    let bin = build_all(true)?;
    let dir = prefix.join("bin");
    let dest = dir.join("observer");
    std::fs::create_dir_all(&dir)
        .and_then(|()| {
            // Replace, never write through: a running observer keeps its
            // old inode, and a link at the destination is not followed.
            let tmp = dir.join(".observer.install");
            let _ = std::fs::remove_file(&tmp);
            std::fs::copy(&bin, &tmp)?;
            std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
            std::fs::rename(&tmp, &dest)
        })
        .with_context(|| {
            format!(
                "install {} into {} (not writable? run `sudo -E cargo xtask install`, or pick \
                 another place: cargo xtask install --prefix ~/.local)",
                bin.display(),
                dir.display()
            )
        })?;
    eprintln!("xtask: installed {}", dest.display());
    eprintln!(
        "xtask: run it as root (sudo {} --format table), or let it run without root: {}",
        dest.display(),
        setcap_command(&dest)
    );
    Ok(dest)
}

/// The one `setcap` advice, as the observer gives it: CAP_SYS_RESOURCE only
/// before Linux 5.11 (BPF memory was charged to RLIMIT_MEMLOCK until then).
pub fn setcap_command(bin: &std::path::Path) -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    let caps = if version < (5, 11) {
        "cap_bpf,cap_perfmon,cap_sys_resource"
    } else {
        "cap_bpf,cap_perfmon"
    };
    format!("sudo setcap {caps}+ep {}", bin.display())
}

/// A command that runs a binary as root: directly when we are root, else
/// through `sudo -E`; an error naming the fix where there is no sudo.
pub fn root_command(bin: &std::path::Path) -> Result<Command> {
    if is_root() {
        return Ok(Command::new(bin));
    }
    if which("sudo").is_some() {
        eprintln!(
            "xtask: the observer needs root (or CAP_BPF + CAP_PERFMON): running it under sudo -E"
        );
        let mut c = Command::new("sudo");
        c.arg("-E").arg(bin);
        return Ok(c);
    }
    bail!(
        "the observer needs root (or CAP_BPF + CAP_PERFMON) and there is no sudo: run `{}` as root, \
         or grant it the capabilities: {}",
        bin.display(),
        setcap_command(bin)
    )
}

/// Runs a binary as root (see `root_command`); returns its exit code.
fn run_as_root(bin: &std::path::Path, args: &[String]) -> Result<i32> {
    let mut cmd = root_command(bin)?;
    cmd.args(args);
    let status = cmd
        .status()
        .with_context(|| format!("start {}", bin.display()))?;
    Ok(status.code().unwrap_or(1))
}

pub fn run_observer(args: &[String]) -> Result<()> {
    let bin = build_all(true)?;
    let code = run_as_root(&bin, args)?;
    std::process::exit(code);
}

/// The workshop demo: a Docker engine (started here when none runs, and
/// stopped after), the locally built image, then `observer demo`.
pub fn demo(args: &[String]) -> Result<()> {
    let bin = build_all(true)?;
    let engine = match crate::engine::ensure_engine() {
        Ok(e) => Some(e),
        Err(e) => {
            eprintln!("xtask: no Docker engine ({e:#}); the demo falls back to namespaces made with unshare");
            None
        }
    };
    let mut all = vec!["demo".to_owned()];
    if let Some(e) = &engine {
        all.push("--fallback-image".into());
        all.push(e.image.clone());
    }
    if !args.iter().any(|a| a == "--no-vm") {
        all.extend(crate::guest::demo_vm_args(args));
    }
    all.extend_from_slice(args);
    let code = run_as_root(&bin, &all)?;
    drop(engine);
    std::process::exit(code);
}

/// Headless Chromium and its WebDriver (Debian's `chromium` and
/// `chromium-driver`) for the web page's browser test.
fn ensure_chromium() -> Result<()> {
    let missing: Vec<&str> = ["chromium", "chromium-driver"]
        .into_iter()
        .filter(|p| !crate::util::dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing {} (headless browser for the web page's test)",
        missing.join(" ")
    );
    crate::util::apt_install(&missing)
}

/// The whole suite: unit tests, privileged kernel tests, end-to-end tests
/// with a real Docker engine (started here when none runs).
pub fn test(extra: &[String]) -> Result<()> {
    let obj = build_ebpf()?;
    if let Err(e) = ensure_chromium() {
        // The browser test then says why it can't run (and fails in CI).
        eprintln!("xtask: no headless chromium for the web page's test: {e:#}");
    }
    let engine = crate::engine::ensure_engine();
    let mut c = cargo(&obj);
    match &engine {
        Ok(e) => {
            c.env("OBSERVER_TEST_IMAGE", &e.image);
        }
        // The end-to-end tests then say why they can't run (and fail in CI).
        Err(e) => eprintln!("xtask: no Docker engine for the end-to-end tests: {e:#}"),
    }
    // The metrics tests then say why they can't run (and fail in CI).
    if let Err(e) = crate::fleet::ensure_prometheus() {
        eprintln!("xtask: no prometheus for the metrics tests: {e:#}");
    }
    // The runtimes (and a containerd) only for a run that includes their
    // tests: the whole suite, or one that names them.
    let runtimes = (extra.is_empty() || extra.iter().any(|a| a.contains("runtimes")))
        .then(crate::runtimes::ensure_runtimes);
    match &runtimes {
        Some(Ok(r)) => {
            c.env("OBSERVER_TEST_RUNTIMES", "1");
            c.env("OBSERVER_TEST_CONTAINERD", &r.containerd_socket);
        }
        Some(Err(e)) => eprintln!("xtask: no container runtimes for the runtime tests: {e:#}"),
        None => {}
    }
    // QEMU, the guest kernels and static binaries for the VM tests.
    // bookworm (6.1): the default guest; bullseye (5.10) and trixie (6.12)
    // complete the kernel matrix (tests/matrix.rs).
    crate::guest::test_env(&mut c, &["bookworm", "bullseye", "trixie"]);
    // The observer's image, for the test that runs the DaemonSet's pod spec.
    if engine.is_ok() {
        match crate::fleet::image() {
            Ok(i) => {
                c.env("OBSERVER_IMAGE", i.name);
            }
            Err(e) => eprintln!("xtask: no observer image for the pod-spec test: {e:#}"),
        }
    }
    match crate::fleet::ensure_kubernetes_validate() {
        Ok(exe) => {
            c.env("OBSERVER_KUBERNETES_VALIDATE", exe);
        }
        Err(e) => eprintln!("xtask: no kubernetes-validate for the manifest tests: {e:#}"),
    }
    c.args(["test", "--workspace", "--exclude", "observer-ebpf"]);
    c.args(extra);
    let result = run(&mut c).context("run the test suite");
    drop(runtimes);
    result?;
    if extra.is_empty() {
        install_check(engine.is_ok()).context("the installed observer")?;
        // The benchmark harness works and its report is well formed (a few
        // seconds per phase; never a timing assertion).
        let bin = build_all(true)?;
        crate::bench::run(bin.clone(), bin.with_file_name("observer-workload"), true)
            .context("cargo xtask bench --quick")?;
    }
    Ok(())
}

/// `cargo xtask install --prefix` into a scratch directory yields a binary
/// that streams, and whose `demo` completes without `alpine` (falling back
/// by itself to the local image, or to unshare without an engine).
fn install_check(engine: bool) -> Result<()> {
    let prefix = workspace_root().join("target/xtask/install-check");
    let _ = std::fs::remove_dir_all(&prefix);
    let bin = install(&prefix)?;
    let out = prefix.join("stream.jsonl");
    let mut c = root_command(&bin)?;
    c.args(["--duration", "1", "--host", "-o"]).arg(&out);
    let status = c.status().context("run the installed observer")?;
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    if !status.success()
        || !text.contains("\"type\":\"kernel\"")
        || !text.contains("\"type\":\"loss\"")
    {
        bail!(
            "the installed observer did not stream ({status}): {}",
            text.lines().next().unwrap_or("(nothing)")
        );
    }
    eprintln!(
        "xtask: the installed observer streams ({} lines)",
        text.lines().count()
    );
    let mut c = root_command(&bin)?;
    c.current_dir(&prefix).arg("demo");
    if !engine {
        c.arg("--unshare");
    }
    let o = c.output().context("run the installed observer demo")?;
    let stdout = String::from_utf8_lossy(&o.stdout);
    if !o.status.success() || !stdout.contains("One kernel served them all") {
        bail!(
            "the installed `observer demo` did not complete ({}): {}{}",
            o.status,
            stdout,
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let first = stdout.lines().next().unwrap_or_default();
    eprintln!("xtask: the installed `observer demo` completed; it said: {first}");
    Ok(())
}
