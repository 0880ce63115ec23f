//! `--format table`: one row per container, redrawn every interval, and under
//! them the one kernel that serves them all.

use std::fmt::Write;

/// One row of the table.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub name: String,
    pub runtime: String,
    pub pidns: String,
    pub processes: usize,
    pub syscalls_per_sec: f64,
    pub top: String,
    pub cpu_share: f64,
}

/// Renders the whole screen (ANSI: home + clear, then the rows).
pub fn render(rows: &[Row], release: &str, boot_id: &str, interval_s: f64, lost: u64) -> String {
    let mut s = String::from("\x1b[H\x1b[2J");
    let _ = writeln!(
        s,
        "{:<24} {:<11} {:>11} {:>6} {:>11} {:>6}  TOP SYSCALLS",
        "CONTAINER", "RUNTIME", "PIDNS", "PROCS", "SYSCALLS/S", "CPU%"
    );
    if rows.is_empty() {
        let _ = writeln!(s, "(no container activity in the last {interval_s:.1}s: start one, e.g. docker run --rm alpine uname -r)");
    }
    for r in rows {
        let _ = writeln!(
            s,
            "{:<24} {:<11} {:>11} {:>6} {:>11.0} {:>6.1}  {}",
            truncate(&r.name, 24),
            r.runtime,
            r.pidns,
            r.processes,
            r.syscalls_per_sec,
            r.cpu_share * 100.0,
            r.top
        );
    }
    let _ = writeln!(s, "{}", "-".repeat(96));
    let _ = writeln!(
        s,
        "one kernel serves them all: Linux {release}  boot_id {boot_id}"
    );
    if lost > 0 {
        let _ = writeln!(s, "lost {lost} events in this interval (ring buffer full: try --ring-buffer-kb or --mode count)");
    }
    s
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n - 1).chain(['…']).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_rows_and_the_shared_kernel() {
        let rows = [Row {
            name: "web".into(),
            runtime: "docker".into(),
            pidns: "4026532201".into(),
            processes: 2,
            syscalls_per_sec: 1234.0,
            top: "read:800 write:400".into(),
            cpu_share: 0.25,
        }];
        let s = render(&rows, "6.18.44", "abcd", 1.0, 0);
        assert!(
            s.contains("web") && s.contains("docker") && s.contains("1234") && s.contains("25.0")
        );
        assert!(s.contains("Linux 6.18.44") && s.contains("boot_id abcd"));
        assert!(render(&[], "r", "b", 1.0, 3).contains("lost 3"));
        assert_eq!(
            truncate("a-very-long-container-name-indeed", 10)
                .chars()
                .count(),
            10
        );
    }
}
