//! Guest pieces for the tests that boot VMs: the kernel and static binaries
//! `cargo xtask test` provides (see xtask/src/guest.rs), and an initramfs
//! with the static `observer-workload` as `/init`.
//!
//! ```ignore
//! let Some(g) = common::vm::guest(None) else { return };   // or Some("bullseye")
//! let initrd = common::vm::initramfs("my-test", &g, &[
//!     Entry::file("/bin/observer", &g.observer, 0o755),
//! ]);
//! let mut spec = VmSpec::new(g.kernel.clone(), initrd);
//! spec.append = r#"observer.facts=0 observer.run="/bin/observer --duration 5""#.into();
//! ```

use std::path::PathBuf;

use observer::vm::initramfs::{self, Entry};

pub struct Guest {
    pub kernel: PathBuf,
    /// The kernel's lib/modules/<release>.
    pub modules: PathBuf,
    /// Static observer-workload (the guest's /init).
    pub workload: PathBuf,
    /// Static observer, its eBPF object embedded.
    pub observer: PathBuf,
}

/// The guest pieces for `suite` (None: the default suite); None, after
/// saying why (and failing under CI=true), where they are missing.
pub fn guest(suite: Option<&str>) -> Option<Guest> {
    let key = |what: &str| match suite {
        Some(s) => format!(
            "OBSERVER_GUEST_{what}_{}",
            s.replace('-', "_").to_uppercase()
        ),
        None => format!("OBSERVER_GUEST_{what}"),
    };
    let var = |k: String| std::env::var_os(&k).map(PathBuf::from).ok_or(k);
    let got = (|| {
        Ok::<_, String>(Guest {
            kernel: var(key("KERNEL"))?,
            modules: var(key("MODULES"))?,
            workload: var("OBSERVER_STATIC_WORKLOAD".into())?,
            observer: var("OBSERVER_STATIC_OBSERVER".into())?,
        })
    })();
    match got {
        Ok(g) => Some(g),
        Err(k) => {
            observer::privilege::skip_or_fail(&format!(
                "{k} is not set: run the VM tests with `cargo xtask test`, which fetches the guest kernel and builds static binaries"
            ));
            None
        }
    }
}

/// An initramfs in the temp dir with `/init` = the static workload and
/// `extra` entries.
pub fn initramfs(name: &str, g: &Guest, extra: &[Entry]) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("observer-test-{name}-{}.cpio", std::process::id()));
    let mut entries = vec![Entry::file("/init", &g.workload, 0o755)];
    entries.extend_from_slice(extra);
    initramfs::write_file(&entries, &path).expect("write the test initramfs");
    path
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// `name.ko` somewhere under a kernel's lib/modules/<release>.
pub fn find_module(dir: &std::path::Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_module(&p, name) {
                return Some(f);
            }
        } else if p
            .file_name()
            .is_some_and(|n| n == format!("{name}.ko").as_str())
        {
            return Some(p);
        }
    }
    None
}
