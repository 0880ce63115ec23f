//! A Linux initramfs (`newc` cpio) from a list of files, for a guest whose
//! whole root file system is a few static binaries.
//!
//! Usage:
//! ```no_run
//! use observer::vm::initramfs::{self, Entry};
//! let entries = [
//!     Entry::file("/init", "target/x86_64-unknown-linux-gnu/release/observer-workload", 0o755),
//!     Entry::bytes("/etc/hostname", b"guest\n".to_vec(), 0o644),
//! ];
//! initramfs::write_file(&entries, std::path::Path::new("target/guest/initrd.cpio"))?;
//! # Ok::<(), anyhow::Error>(())
//! ```
//! Parent directories are added by themselves, and so are `/dev/console`
//! (the kernel opens it for init's stdin/stdout before running `/init`) and
//! `/proc`, `/sys`, `/dev`, `/tmp` as mount points. The archive is
//! uncompressed: the kernel unpacks a plain cpio without any decompressor
//! configured. The encoding itself is the `cpio` crate's.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// Where an entry's content comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Bytes(Vec<u8>),
    /// A host file, read when the archive is written.
    File(PathBuf),
    Dir,
    /// A character device node (major, minor).
    CharDev(u32, u32),
}

/// One path in the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Absolute path in the guest (`/init`, `/bin/observer`).
    pub path: String,
    pub source: Source,
    /// Permission bits (0o755); the file type comes from `source`.
    pub mode: u32,
}

impl Entry {
    pub fn file(path: &str, host: impl Into<PathBuf>, mode: u32) -> Self {
        Entry {
            path: path.into(),
            source: Source::File(host.into()),
            mode,
        }
    }

    pub fn bytes(path: &str, bytes: Vec<u8>, mode: u32) -> Self {
        Entry {
            path: path.into(),
            source: Source::Bytes(bytes),
            mode,
        }
    }

    pub fn dir(path: &str) -> Self {
        Entry {
            path: path.into(),
            source: Source::Dir,
            mode: 0o755,
        }
    }

    pub fn char_dev(path: &str, major: u32, minor: u32, mode: u32) -> Self {
        Entry {
            path: path.into(),
            source: Source::CharDev(major, minor),
            mode,
        }
    }
}

/// The entries in archive order: the default ones, every parent directory
/// before its children, later entries replacing earlier ones at one path.
/// Pure, for tests.
pub fn plan(entries: &[Entry]) -> Result<Vec<Entry>> {
    let defaults = [
        Entry::dir("/dev"),
        Entry::char_dev("/dev/console", 5, 1, 0o600),
        Entry::dir("/proc"),
        Entry::dir("/sys"),
        Entry::dir("/tmp"),
        Entry::dir("/run"),
    ];
    // Sorted by path: a parent ("/a") sorts before its children ("/a/b").
    let mut all: BTreeMap<String, Entry> = BTreeMap::new();
    for e in defaults.iter().chain(entries) {
        let rel = e.path.trim_start_matches('/');
        if !e.path.starts_with('/')
            || rel.is_empty()
            || rel
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            bail!("initramfs path `{}` is not a plain absolute path", e.path);
        }
        let mut parent = String::new();
        let comps: Vec<&str> = rel.split('/').collect();
        for c in &comps[..comps.len() - 1] {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(c);
            match all.get(&parent) {
                Some(p) if p.source != Source::Dir => {
                    bail!("initramfs path `{}` is inside the file `/{parent}`", e.path)
                }
                Some(_) => {}
                None => {
                    all.insert(parent.clone(), Entry::dir(&format!("/{parent}")));
                }
            }
        }
        all.insert(rel.to_owned(), e.clone());
    }
    Ok(all.into_values().collect())
}

/// Writes the archive (newc, uncompressed) to `out`.
pub fn write(entries: &[Entry], mut out: impl Write) -> Result<()> {
    for (ino, e) in plan(entries)?.into_iter().enumerate() {
        let name = e.path.trim_start_matches('/');
        let b = cpio::newc::Builder::new(name)
            .ino(ino as u32 + 1)
            .uid(0)
            .gid(0)
            .nlink(if e.source == Source::Dir { 2 } else { 1 });
        let (b, data): (_, std::borrow::Cow<[u8]>) = match &e.source {
            Source::Dir => (b.mode(S_IFDIR | e.mode), (&[][..]).into()),
            Source::CharDev(major, minor) => (
                b.mode(S_IFCHR | e.mode)
                    .rdev_major(*major)
                    .rdev_minor(*minor),
                (&[][..]).into(),
            ),
            Source::Bytes(v) => (b.mode(S_IFREG | e.mode), v.as_slice().into()),
            Source::File(p) => (
                b.mode(S_IFREG | e.mode),
                std::fs::read(p)
                    .with_context(|| {
                        format!("read {} for the initramfs's {}", p.display(), e.path)
                    })?
                    .into(),
            ),
        };
        let size = u32::try_from(data.len())
            .with_context(|| format!("{} is larger than cpio's 4 GiB", e.path))?;
        let mut w = b.write(&mut out, size);
        w.write_all(&data)
            .with_context(|| format!("write {} into the initramfs", e.path))?;
        w.finish().context("write the initramfs")?;
    }
    cpio::newc::trailer(&mut out).context("write the initramfs trailer")?;
    out.flush().context("write the initramfs")?;
    Ok(())
}

/// The archive in memory.
pub fn build(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    write(entries, &mut v)?;
    Ok(v)
}

/// Writes the archive to `path` (through a temporary file, so that a reader
/// never sees half an archive).
pub fn write_file(entries: &[Entry], path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let f = std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    write(entries, std::io::BufWriter::new(f))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// One entry read back: (name, mode, rdev, content).
    type ReadBack = (String, u32, (u32, u32), Vec<u8>);
    /// Entries written, and (name, mode) pairs expected among them.
    type Case<'a> = (&'a [Entry], &'a [(&'a str, u32)]);

    /// Every entry of an archive.
    fn read_back(mut data: &[u8]) -> Vec<ReadBack> {
        let mut out = Vec::new();
        loop {
            let mut r = cpio::NewcReader::new(data).unwrap();
            if r.entry().is_trailer() {
                return out;
            }
            let (name, mode, rdev) = (
                r.entry().name().to_owned(),
                r.entry().mode(),
                (r.entry().rdev_major(), r.entry().rdev_minor()),
            );
            let mut content = Vec::new();
            r.read_to_end(&mut content).unwrap();
            out.push((name, mode, rdev, content));
            data = r.finish().unwrap();
        }
    }

    #[test]
    fn header_is_newc_with_padding_to_four_bytes() {
        let a = build(&[Entry::bytes("/a", b"xyz".to_vec(), 0o644)]).unwrap();
        assert_eq!(&a[..6], b"070701", "newc magic");
        // Every header + name and every file body start on a 4-byte boundary.
        let pos = a.windows(3).position(|w| w == b"xyz").unwrap();
        assert_eq!(pos % 4, 0);
        assert!(a.ends_with(&[0; 4]) || a.windows(10).any(|w| w == b"TRAILER!!!"));
        assert!(a.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn archives_read_back_as_written() {
        let table: &[Case] = &[
            (
                &[Entry::bytes("/init", b"\x7fELF".to_vec(), 0o755)],
                &[
                    ("dev", S_IFDIR | 0o755),
                    ("dev/console", S_IFCHR | 0o600),
                    ("init", S_IFREG | 0o755),
                    ("proc", S_IFDIR | 0o755),
                    ("run", S_IFDIR | 0o755),
                    ("sys", S_IFDIR | 0o755),
                    ("tmp", S_IFDIR | 0o755),
                ],
            ),
            (
                // Parents come first, made by themselves.
                &[Entry::bytes(
                    "/lib/modules/6.1.0/virtio_net.ko",
                    vec![1; 5],
                    0o644,
                )],
                &[
                    ("lib", S_IFDIR | 0o755),
                    ("lib/modules", S_IFDIR | 0o755),
                    ("lib/modules/6.1.0", S_IFDIR | 0o755),
                    ("lib/modules/6.1.0/virtio_net.ko", S_IFREG | 0o644),
                ],
            ),
        ];
        for (entries, want) in table {
            let got = read_back(&build(entries).unwrap());
            for (name, mode) in *want {
                let e = got
                    .iter()
                    .find(|g| g.0 == *name)
                    .unwrap_or_else(|| panic!("{name} missing in {got:?}"));
                assert_eq!(e.1, *mode, "{name}");
            }
            let names: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(names, sorted, "parents before children");
        }
        let got = read_back(&build(&[Entry::bytes("/x", vec![7; 13], 0o600)]).unwrap());
        let x = got.iter().find(|g| g.0 == "x").unwrap();
        assert_eq!(x.3, vec![7; 13]);
        let console = got.iter().find(|g| g.0 == "dev/console").unwrap();
        assert_eq!(console.2, (5, 1));
    }

    #[test]
    fn a_host_file_is_read_and_a_missing_one_is_named() {
        let dir = std::env::temp_dir().join(format!("initramfs-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bin");
        std::fs::write(&f, b"hello").unwrap();
        let got = read_back(&build(&[Entry::file("/bin/x", &f, 0o755)]).unwrap());
        assert_eq!(got.iter().find(|g| g.0 == "bin/x").unwrap().3, b"hello");
        let err = build(&[Entry::file("/y", dir.join("missing"), 0o755)]).unwrap_err();
        assert!(format!("{err:#}").contains("missing"), "{err:#}");
        let out = dir.join("out.cpio");
        write_file(&[Entry::file("/bin/x", &f, 0o755)], &out).unwrap();
        assert!(std::fs::read(&out).unwrap().starts_with(b"070701"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_paths_are_refused() {
        for bad in ["init", "/", "/a/../b", "/a//b"] {
            assert!(build(&[Entry::dir(bad)]).is_err(), "{bad}");
        }
        let inside_a_file = [
            Entry::bytes("/a", vec![], 0o644),
            Entry::bytes("/a/b", vec![], 0o644),
        ];
        assert!(build(&inside_a_file).is_err());
    }
}
