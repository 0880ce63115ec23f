//! `--format table`: one row per container, redrawn every interval, and under
//! them the one kernel that serves them all. Fits the terminal: names are
//! truncated and the least telling columns dropped as it narrows, rows that
//! don't fit its height are counted, not scrolled.

use std::{collections::HashMap, fmt::Write};

/// One row of the table.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub name: String,
    pub runtime: String,
    pub pidns: String,
    pub processes: usize,
    pub syscalls_per_sec: f64,
    /// The most frequent syscalls, per second (the unit of `syscalls_per_sec`);
    /// an entry without a rate (NaN) is a note, shown as its text alone.
    pub top: Vec<(String, f64)>,
    pub cpu_share: f64,
    /// What lets it reach the shared kernel or the host, in the lesson's
    /// words (empty: nothing): a line each under its row.
    pub risks: Vec<String>,
}

/// What the screen looks like around the rows.
#[derive(Clone, Debug)]
pub struct View {
    /// Columns available (the terminal's width).
    pub width: usize,
    /// Lines available; None: as many as there are rows (not a terminal).
    pub height: Option<usize>,
    /// Home and clear before each frame: only on a terminal, never into a
    /// pipe or a file.
    pub clear: bool,
}

impl View {
    /// The terminal stdout is, or a fixed width (`$COLUMNS`, else 120) and no
    /// escapes when stdout is not one or `--output` is a file.
    pub fn detect(to_stdout: bool) -> View {
        let columns = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok());
        match to_stdout.then(terminal_size).flatten() {
            Some((w, h)) => View {
                width: w,
                height: Some(h),
                clear: true,
            },
            None => View {
                width: columns.unwrap_or(120),
                height: None,
                clear: false,
            },
        }
    }
}

/// (columns, lines) of the terminal on stdout, if it is one.
fn terminal_size() -> Option<(usize, usize)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the pointer we pass.
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then(|| (ws.ws_col as usize, (ws.ws_row as usize).max(8)))
}

/// The columns, in the order they are dropped as the screen narrows
/// (runtime first: a room usually runs one; the name, the rate and the top
/// syscalls stay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Col {
    Runtime,
    Procs,
    Cpu,
    Pidns,
}

const DROP_ORDER: [Col; 4] = [Col::Runtime, Col::Procs, Col::Cpu, Col::Pidns];
const NAME_MIN: usize = 12;
const NAME_MAX: usize = 24;
const RATE_W: usize = 10;
const TOP_MIN: usize = 16;

fn col_width(c: Col) -> usize {
    match c {
        Col::Runtime => 10,
        Col::Procs => 5,
        Col::Cpu => 5,
        Col::Pidns => 10,
    }
}

/// The layout for a width: the columns kept, the name's width, and what is
/// left for the top syscalls (None: dropped too, on a very narrow screen).
/// Tried in order of preference: every column; without the runtime, then
/// the process count, at the name's full width; then a shorter name; then
/// without CPU% and PIDNS.
fn layout(width: usize, longest_name: usize) -> (Vec<Col>, usize, Option<usize>) {
    let name_want = longest_name.clamp(NAME_MIN, NAME_MAX);
    // name, rate, each kept column, each with one space before; two before
    // the top syscalls.
    let fixed = |kept: &[Col], name: usize| {
        name + 1 + RATE_W + kept.iter().map(|c| col_width(*c) + 1).sum::<usize>()
    };
    let tries = (0..=2)
        .map(|d| (d, false))
        .chain((2..=DROP_ORDER.len()).map(|d| (d, true)));
    for (dropped, shrink) in tries {
        let kept = DROP_ORDER[dropped..].to_vec();
        let name = if shrink {
            NAME_MIN.max(name_want.min(width.saturating_sub(fixed(&kept, 0) + 2 + TOP_MIN)))
        } else {
            name_want
        };
        if fixed(&kept, name) + 2 + TOP_MIN <= width {
            let top = width - fixed(&kept, name) - 2;
            return (kept, name, Some(top));
        }
    }
    let name = width.saturating_sub(1 + RATE_W).clamp(4, NAME_MAX);
    (Vec::new(), name, None)
}

/// Syscalls per second in at most 6 characters: `0.4`, `321`, `12.3k`, `1.2M`.
pub fn rate(v: f64) -> String {
    if v < 10.0 && v.fract() != 0.0 {
        format!("{v:.1}")
    } else if v < 10_000.0 {
        format!("{v:.0}")
    } else if v < 1e6 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{:.1}M", v / 1e6)
    }
}

/// The table's memory between frames: the rate class each row was last
/// sorted by, so that rows move only when their rate really changes.
#[derive(Debug, Default)]
pub struct Table {
    class: HashMap<String, f64>,
}

impl Table {
    /// Sorts by syscall rate, then name. The rate is compared in classes a
    /// factor of 2 apart, and a row keeps its class until its rate leaves it
    /// by more than that factor: rows at similar rates stay in name order
    /// instead of swapping every frame.
    pub fn sort(&mut self, rows: &mut [Row]) {
        let mut seen = HashMap::new();
        for r in rows.iter() {
            let level = (r.syscalls_per_sec + 1.0).log2();
            let class = match self.class.get(&r.name) {
                Some(&c) if (level - c).abs() <= 1.0 => c,
                _ => level.round(),
            };
            seen.insert(r.name.clone(), class);
        }
        rows.sort_by(|a, b| {
            seen[&b.name]
                .total_cmp(&seen[&a.name])
                .then_with(|| a.name.cmp(&b.name))
        });
        self.class = seen;
    }
}

/// What is drawn under the rows: the one kernel and the interval.
#[derive(Clone, Debug, Default)]
pub struct Footer<'a> {
    pub release: &'a str,
    pub boot_id: &'a str,
    pub interval_s: f64,
    pub lost: u64,
    /// Shown when there are no rows: what to do about it.
    pub empty_hint: &'a str,
}

/// Renders the whole screen.
pub fn render(rows: &[Row], f: &Footer, view: &View) -> String {
    let mut s = String::new();
    if view.clear {
        s.push_str("\x1b[H\x1b[2J");
    }
    let longest = rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(0);
    let (kept, name_w, top_w) = layout(view.width, longest);
    let line = |name: &str, cells: &[(Col, String)], rate: &str, top: Option<&str>| {
        let mut l = format!("{:<name_w$}", truncate(name, name_w));
        let cell = |l: &mut String, c: Col| {
            if !kept.contains(&c) {
                return;
            }
            let w = col_width(c);
            let v = cells.iter().find(|(k, _)| *k == c).map_or("", |(_, v)| v);
            if c == Col::Runtime {
                let _ = write!(l, " {:<w$}", truncate(v, w));
            } else {
                let _ = write!(l, " {:>w$}", truncate(v, w));
            }
        };
        // The columns in the order a reader expects them, whichever are kept.
        cell(&mut l, Col::Runtime);
        cell(&mut l, Col::Pidns);
        cell(&mut l, Col::Procs);
        let _ = write!(l, " {rate:>RATE_W$}");
        cell(&mut l, Col::Cpu);
        if let (Some(w), Some(t)) = (top_w, top) {
            let _ = write!(l, "  {}", truncate(t, w));
        }
        l.trim_end().to_owned()
    };
    let header = line(
        "CONTAINER",
        &[
            (Col::Runtime, "RUNTIME".into()),
            (Col::Pidns, "PIDNS".into()),
            (Col::Procs, "PROCS".into()),
            (Col::Cpu, "CPU%".into()),
        ],
        "SYSCALLS/S",
        Some("TOP SYSCALLS/S"),
    );
    let _ = writeln!(s, "{header}");
    let footer_lines = 2 + usize::from(f.lost > 0) + usize::from(kernel_line_len(f) > view.width);
    let room = view.height.map_or(usize::MAX, |h| {
        h.saturating_sub(1 + footer_lines + 1).max(1)
    });
    if rows.is_empty() {
        for l in wrap(f.empty_hint, view.width) {
            let _ = writeln!(s, "{l}");
        }
    }
    let shown = if rows.len() > room {
        room - 1
    } else {
        rows.len()
    };
    for r in &rows[..shown] {
        let top = top_text(&r.top, top_w.unwrap_or(0));
        let cells = [
            (Col::Runtime, r.runtime.clone()),
            (Col::Pidns, r.pidns.clone()),
            (Col::Procs, r.processes.to_string()),
            (Col::Cpu, format!("{:.1}", r.cpu_share * 100.0)),
        ];
        let _ = writeln!(
            s,
            "{}",
            line(&r.name, &cells, &rate(r.syscalls_per_sec), Some(&top))
        );
        for risk in &r.risks {
            let _ = writeln!(s, "{}", truncate(&format!("  ! {risk}"), view.width));
        }
    }
    if shown < rows.len() {
        let _ = writeln!(
            s,
            "… and {} more (a taller terminal shows them)",
            rows.len() - shown
        );
    }
    let _ = writeln!(s, "{}", "-".repeat(view.width.min(120)));
    let k = format!("one kernel serves them all: Linux {}", f.release);
    let b = format!("boot_id {}", f.boot_id);
    if kernel_line_len(f) <= view.width {
        let _ = writeln!(s, "{k}  {b}");
    } else {
        let _ = writeln!(s, "{}", truncate(&k, view.width));
        let _ = writeln!(s, "{}", truncate(&b, view.width));
    }
    if f.lost > 0 {
        let l = format!(
            "lost {} events in the last {:.1}s (ring buffer full: try --ring-buffer-kb or --mode count)",
            f.lost, f.interval_s
        );
        let _ = writeln!(s, "{}", truncate(&l, view.width));
    }
    s
}

fn kernel_line_len(f: &Footer) -> usize {
    "one kernel serves them all: Linux ".len()
        + f.release.len()
        + "  boot_id ".len()
        + f.boot_id.len()
}

/// `read 800 write 400 …`: as many whole entries as fit in `w`.
fn top_text(top: &[(String, f64)], w: usize) -> String {
    let mut s = String::new();
    for (name, v) in top {
        // No rate (NaN): a note for the row, such as its exit.
        let item = if v.is_nan() {
            name.clone()
        } else {
            format!("{name} {}", rate(*v))
        };
        let need = if s.is_empty() {
            item.len()
        } else {
            item.len() + 2
        };
        if s.chars().count() + need > w {
            if s.is_empty() {
                s = truncate(&item, w);
            }
            break;
        }
        if !s.is_empty() {
            s.push_str("  ");
        }
        s.push_str(&item);
    }
    s
}

/// Splits a sentence into lines of at most `w` characters, at spaces.
fn wrap(text: &str, w: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split(' ') {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > w {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines.into_iter().map(|l| truncate(&l, w)).collect()
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else if n == 0 {
        String::new()
    } else {
        s.chars().take(n - 1).chain(['…']).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, rate: f64) -> Row {
        Row {
            name: name.into(),
            runtime: "docker".into(),
            pidns: "4026532201".into(),
            processes: 2,
            syscalls_per_sec: rate,
            top: vec![
                ("newfstatat".into(), rate * 0.5),
                ("rt_sigaction".into(), rate * 0.3),
                ("nanosleep".into(), rate * 0.1),
                ("read".into(), rate * 0.05),
            ],
            cpu_share: 0.25,
            risks: Vec::new(),
        }
    }

    fn footer(hint: &str) -> Footer<'_> {
        Footer {
            release: "6.18.44-fc-v595",
            boot_id: "9dadd1b8-086b-4574-b03c-0c77b37d5d47",
            interval_s: 1.0,
            lost: 0,
            empty_hint: hint,
        }
    }

    fn view(width: usize, height: Option<usize>) -> View {
        View {
            width,
            height,
            clear: false,
        }
    }

    fn width_of(s: &str) -> usize {
        s.lines().map(|l| l.chars().count()).max().unwrap_or(0)
    }

    #[test]
    fn fits_80_and_120_columns() {
        let rows = [
            row("workshop-uname-with-a-rather-long-name", 1461.0),
            row("db", 12.0),
        ];
        let s80 = render(&rows, &footer(""), &view(80, Some(24)));
        assert!(width_of(&s80) <= 80, "{s80}");
        assert!(s80.lines().count() <= 24, "{s80}");
        assert!(
            s80.contains("SYSCALLS/S") && s80.contains("TOP SYSCALLS/S"),
            "{s80}"
        );
        assert!(s80.contains("PIDNS") && s80.contains("4026532201"), "{s80}");
        assert!(s80.contains("workshop-uname-with-a-r…"), "{s80}");
        assert!(
            s80.contains("1461") && s80.contains("newfstatat 730"),
            "{s80}"
        );
        assert!(s80.contains("one kernel serves them all: Linux 6.18.44-fc-v595"));
        assert!(s80.contains("boot_id 9dadd1b8-086b-4574-b03c-0c77b37d5d47"));
        assert!(!s80.contains('\x1b'), "no escapes unless asked");
        let s120 = render(&rows, &footer(""), &view(120, Some(24)));
        assert!(width_of(&s120) <= 120, "{s120}");
        assert!(s120.contains("RUNTIME") && s120.contains("docker") && s120.contains("25.0"));
        assert!(
            s120.contains("nanosleep 146"),
            "more top syscalls fit: {s120}"
        );
        // Very narrow: still within width, the name and rate kept.
        let s40 = render(&rows, &footer(""), &view(40, Some(24)));
        assert!(width_of(&s40) <= 40, "{s40}");
        assert!(s40.contains("1461"), "{s40}");
    }

    #[test]
    fn a_short_terminal_counts_the_rows_it_cannot_show() {
        let rows: Vec<Row> = (0..40).map(|i| row(&format!("c{i:02}"), 10.0)).collect();
        let s = render(&rows, &footer(""), &view(80, Some(24)));
        assert!(s.lines().count() <= 24, "{s}");
        assert!(s.contains("more (a taller terminal shows them)"), "{s}");
    }

    #[test]
    fn sorted_by_rate_then_name_and_stable_between_frames() {
        let mut t = Table::default();
        let mut rows = vec![
            row("b", 100.0),
            row("a", 110.0),
            row("z", 5000.0),
            row("c", 0.0),
        ];
        t.sort(&mut rows);
        let names = |r: &[Row]| r.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&rows), ["z", "a", "b", "c"]);
        // Similar rates that swap places: the order holds.
        let mut rows = vec![
            row("a", 95.0),
            row("b", 120.0),
            row("z", 4800.0),
            row("c", 0.0),
        ];
        t.sort(&mut rows);
        assert_eq!(names(&rows), ["z", "a", "b", "c"]);
        // A real change moves a row.
        let mut rows = vec![
            row("a", 95.0),
            row("b", 120.0),
            row("z", 4800.0),
            row("c", 9000.0),
        ];
        t.sort(&mut rows);
        assert_eq!(names(&rows), ["c", "z", "a", "b"]);
    }

    #[test]
    fn empty_state_clear_and_loss() {
        let s = render(
            &[],
            &footer("(no container activity in the last 1.0s: start one, e.g. docker run --rm observer-test/busybox:latest uname -r)"),
            &view(80, Some(24)),
        );
        assert!(width_of(&s) <= 80, "{s}");
        assert!(s.contains("observer-test/busybox:latest"), "{s}");
        let mut f = footer("");
        f.lost = 3;
        let v = View {
            clear: true,
            ..view(100, None)
        };
        let s = render(&[], &f, &v);
        assert!(s.starts_with("\x1b[H\x1b[2J") && s.contains("lost 3"));
        assert_eq!(rate(0.4), "0.4");
        assert_eq!(rate(321.0), "321");
        assert_eq!(rate(12_345.0), "12.3k");
        assert_eq!(rate(2_400_000.0), "2.4M");
        assert_eq!(
            truncate("a-very-long-container-name-indeed", 10)
                .chars()
                .count(),
            10
        );
    }
}
