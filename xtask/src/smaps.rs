//! A process's resident memory by what holds it, from `/proc/PID/smaps`:
//! the ring buffers (every `anon_inode:bpf-map` mapping: their consumer,
//! producer and data pages), the executable's text and data, shared
//! libraries, the main heap, glibc's per-thread arenas, thread stacks and
//! the rest of the anonymous memory. Each figure is the mappings' `Rss:`,
//! so they add up to `VmRSS`.

use std::fs;

use serde_json::{json, Value};

/// One mapping of smaps: its range, permissions, name and resident kB.
#[derive(Debug, PartialEq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub name: String,
    pub rss_kb: u64,
}

/// The mappings of an smaps text, in address order.
pub fn parse(smaps: &str) -> Vec<Mapping> {
    let mut maps: Vec<Mapping> = Vec::new();
    for l in smaps.lines() {
        if let Some(m) = header(l) {
            maps.push(m);
        } else if let (Some(v), Some(m)) = (l.strip_prefix("Rss:"), maps.last_mut()) {
            m.rss_kb = v
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        }
    }
    maps
}

/// `start-end perms offset dev inode [name]`: a mapping's first line (field
/// lines start with a capitalised `Key:`).
fn header(l: &str) -> Option<Mapping> {
    let mut f = l.splitn(6, ' ');
    let (start, end) = f.next()?.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    let perms = f.next()?;
    if perms.len() != 4 {
        return None;
    }
    let (_offset, _dev, _inode) = (f.next()?, f.next()?, f.next()?);
    Some(Mapping {
        start,
        end,
        perms: perms.to_owned(),
        name: f.next().unwrap_or("").trim().to_owned(),
        rss_kb: 0,
    })
}

/// glibc maps each thread arena's heap at a multiple of its maximum size
/// (`HEAP_MAX_SIZE`, 64 MiB on 64-bit).
const ARENA_ALIGN: u64 = 64 << 20;

/// Resident kB by holder.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Breakdown {
    pub ring: u64,
    pub text: u64,
    pub binary_data: u64,
    pub libs: u64,
    pub heap: u64,
    pub arenas: u64,
    pub stacks: u64,
    pub anon: u64,
    pub other: u64,
}

impl Breakdown {
    pub fn total(&self) -> u64 {
        self.ring + self.without_ring()
    }

    pub fn without_ring(&self) -> u64 {
        self.text
            + self.binary_data
            + self.libs
            + self.heap
            + self.arenas
            + self.stacks
            + self.anon
            + self.other
    }

    pub fn to_json(self) -> Value {
        json!({
            "ring_kb": self.ring, "text_kb": self.text, "binary_data_kb": self.binary_data,
            "libs_kb": self.libs, "heap_kb": self.heap, "arenas_kb": self.arenas,
            "stacks_kb": self.stacks, "anon_kb": self.anon, "other_kb": self.other,
            "total_kb": self.total(), "without_ring_kb": self.without_ring(),
        })
    }
}

/// Sorts the mappings: `exe` is the executable's path, `stack_ptrs` the
/// threads' stack pointers (a mapping holding one is that thread's stack).
pub fn classify(maps: &[Mapping], exe: &str, stack_ptrs: &[u64]) -> Breakdown {
    let mut b = Breakdown::default();
    let mut prev: Option<&Mapping> = None;
    for m in maps {
        let slot = if m.name.contains("anon_inode:bpf-map") {
            &mut b.ring
        } else if m.name.strip_suffix(" (deleted)").unwrap_or(&m.name) == exe {
            if m.perms.contains('x') {
                &mut b.text
            } else {
                &mut b.binary_data
            }
        } else if m.name.starts_with('/') {
            &mut b.libs
        } else if m.name == "[heap]" {
            &mut b.heap
        } else if m.name == "[stack]" {
            &mut b.stacks
        } else if m.name.is_empty() {
            let holds_sp = stack_ptrs.iter().any(|&sp| m.start <= sp && sp < m.end);
            // A thread stack sits right above its guard page (`---p`); a
            // running thread's stack pointer can't be read.
            let above_guard =
                prev.is_some_and(|p| p.end == m.start && p.perms == "---p") && m.perms == "rw-p";
            if holds_sp {
                &mut b.stacks
            } else if m.start % ARENA_ALIGN == 0 && m.perms == "rw-p" {
                &mut b.arenas
            } else if above_guard && m.end - m.start >= 64 << 10 {
                &mut b.stacks
            } else {
                &mut b.anon
            }
        } else {
            &mut b.other
        };
        *slot += m.rss_kb;
        prev = Some(m);
    }
    b
}

/// The stack pointer of each thread of `pid` that is in a system call
/// (`/proc/PID/task/TID/syscall`: `nr args… sp pc`).
fn stack_ptrs(pid: u32) -> Vec<u64> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("syscall")).ok())
        .filter_map(|s| {
            let f: Vec<&str> = s.split_whitespace().collect();
            if f.len() < 3 {
                // "running"
                return None;
            }
            u64::from_str_radix(f[f.len() - 2].strip_prefix("0x")?, 16).ok()
        })
        .collect()
}

/// The breakdown of a running process, or `None` once it is gone.
pub fn of(pid: u32) -> Option<Breakdown> {
    let sps = stack_ptrs(pid);
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let exe = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let exe = exe.to_string_lossy();
    Some(classify(
        &parse(&smaps),
        exe.strip_suffix(" (deleted)").unwrap_or(&exe),
        &sps,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mappings of a running observer (stream mode, two extra threads),
    /// from its smaps; field lines other than `Rss:` trimmed.
    const SMAPS: &str = "\
55578c181000-55578c3ba000 r--p 00000000 fe:00 123 /work/target/release/observer
Size:               2276 kB
Rss:                1152 kB
55578c3ba000-55578c931000 r-xp 00239000 fe:00 123 /work/target/release/observer
Rss:                5452 kB
55578c96d000-55578c971000 rw-p 007eb000 fe:00 123 /work/target/release/observer
Rss:                  16 kB
5557b4413000-5557b4ce8000 rw-p 00000000 00:00 0                          [heap]
Rss:                9100 kB
7fcc1c000000-7fcc1c021000 rw-p 00000000 00:00 0 
Rss:                   4 kB
7fcc1c021000-7fcc20000000 ---p 00000000 00:00 0 
Rss:                   0 kB
7fcc2a21a000-7fcc2a21b000 ---p 00000000 00:00 0 
Rss:                   0 kB
7fcc2a21b000-7fcc2a41b000 rw-p 00000000 00:00 0 
Rss:                   8 kB
7fcc2a41b000-7fcc2a49c000 r--s 00000000 00:0f 1050 anon_inode:bpf-map
Rss:                 516 kB
7fcc2a49c000-7fcc2b49d000 r--s 00000000 00:0f 1050 anon_inode:bpf-map
Rss:               16388 kB
7fcc2b49d000-7fcc2b49e000 ---p 00000000 00:00 0 
Rss:                   0 kB
7fcc2b49e000-7fcc2b69e000 rw-p 00000000 00:00 0 
Rss:                   8 kB
7fcc2b6c6000-7fcc2b81c000 r-xp 00026000 fe:00 77 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                1000 kB
7fcc2b875000-7fcc2b882000 rw-p 00000000 00:00 0 
Rss:                  20 kB
7fcc2b987000-7fcc2b988000 rw-s 00000000 00:0f 1050 anon_inode:bpf-map
Rss:                   4 kB
7fcc2b997000-7fcc2b999000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   4 kB
7ffcf33dc000-7ffcf33fd000 rw-p 00000000 00:00 0                          [stack]
Rss:                  88 kB
";

    #[test]
    fn parses_every_mapping_with_its_rss() {
        let maps = parse(SMAPS);
        assert_eq!(maps.len(), 17);
        assert_eq!(
            maps[3],
            Mapping {
                start: 0x5557b4413000,
                end: 0x5557b4ce8000,
                perms: "rw-p".into(),
                name: "[heap]".into(),
                rss_kb: 9100,
            }
        );
        assert_eq!(maps[4].name, "");
        assert_eq!(maps[9].rss_kb, 16388);
    }

    #[test]
    fn sorts_by_holder() {
        // The writer thread is in a system call; the other one is running.
        let sp = 0x7fcc2b69d000;
        let b = classify(&parse(SMAPS), "/work/target/release/observer", &[sp]);
        assert_eq!(
            b,
            Breakdown {
                ring: 516 + 16388 + 4,
                text: 5452,
                binary_data: 1152 + 16,
                libs: 1000,
                heap: 9100,
                arenas: 4,
                stacks: 8 + 8 + 88,
                anon: 20,
                other: 4,
            }
        );
        assert_eq!(
            b.total(),
            parse(SMAPS).iter().map(|m| m.rss_kb).sum::<u64>()
        );
        assert_eq!(b.without_ring(), b.total() - (516 + 16388 + 4));
    }
}
