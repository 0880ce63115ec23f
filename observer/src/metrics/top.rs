//! Which of a container's syscalls get their own series under
//! `--metrics-syscalls top:N`: the N busiest by recent rate, the rest summed
//! in `syscall="other"`.
//!
//! The rate is an exponentially decayed count (half-life [`HALF_LIFE`]), so
//! the burst of a container's start (runtime setup: `execve`, `mmap`,
//! `openat`…) fades and the workload's own syscalls take the places. The
//! counters stay exact and never go backwards:
//!
//! - each interval's calls go to exactly one series: the syscall's own while
//!   it is in the top set, else `other`; so the sum over a container's
//!   syscall series is its exact total, as in the JSON stream;
//! - a syscall leaving the top set keeps its series, frozen at its value
//!   (so the sum of a container's series at any instant is still its exact
//!   total); when it comes back, its series counts on from that value;
//!   nothing ever goes lower, so Prometheus sees no reset;
//! - at most N frozen series are kept (N live + N frozen + `other`): past
//!   that the one frozen longest stops being exposed (Prometheus marks it
//!   stale); its value is kept, and if the syscall comes back its series
//!   resumes from it, never lower;
//! - a newcomer displaces the slowest member only when its rate is
//!   [`HYSTERESIS`] times higher, so two syscalls at about the same rate
//!   don't swap places (and series) at every interval.
//!
//! A syscall's own series thus counts the calls made while it was in the top
//! set; the calls made outside it are in `other`.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use super::OTHER;

/// Half-life of the decayed rate that ranks syscalls.
pub const HALF_LIFE: Duration = Duration::from_secs(60);

/// How much busier than the slowest member a syscall must be to take its
/// place.
pub const HYSTERESIS: f64 = 1.25;

/// What one interval does to a container's syscall series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Add to an exposed series (a member's, or `other`).
    Add(String, u64),
    /// Expose a series again (or for the first time) at this value: what it
    /// had when it left, plus this interval's calls.
    Show(String, u64),
    /// Stop exposing a (frozen) series; its value is kept for a return.
    Hide(String),
}

#[derive(Debug, Default)]
struct Call {
    /// Calls, decayed with [`HALF_LIFE`]: proportional to the recent rate.
    rate: f64,
    /// The value of its own series (calls counted while a member).
    own: u64,
    member: bool,
    /// Out of the set, its series still exposed at `own`.
    frozen: bool,
}

/// One container's syscall slots.
#[derive(Debug)]
pub struct TopSet {
    cap: usize,
    calls: HashMap<String, Call>,
    members: usize,
    /// Frozen series, longest frozen first.
    frozen: VecDeque<String>,
    /// Whether `other` has a series (it appears with its first call).
    other: bool,
    last: Option<Instant>,
}

impl TopSet {
    /// `cap`: the number of syscalls with their own series (`None`: all).
    pub fn new(cap: Option<usize>) -> Self {
        TopSet {
            cap: cap.unwrap_or(usize::MAX),
            calls: HashMap::new(),
            members: 0,
            frozen: VecDeque::new(),
            other: false,
            last: None,
        }
    }

    /// Adds one interval's calls (name, count) at `now`, and says how the
    /// series change.
    pub fn interval(&mut self, counts: &[(String, u64)], now: Instant) -> Vec<Step> {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            let f = 0.5f64.powf(dt / HALF_LIFE.as_secs_f64());
            for c in self.calls.values_mut() {
                c.rate *= f;
            }
        }
        self.last = Some(now);
        for (name, n) in counts {
            self.calls.entry(name.clone()).or_default().rate += *n as f64;
        }
        let (promoted, demoted) = self.rerank();

        let mut steps = Vec::new();
        // Promoted: a frozen series counts on; a hidden or new one is shown.
        let mut shown = Vec::new();
        for name in promoted {
            let c = self.calls.get_mut(&name).expect("promoted");
            if c.frozen {
                c.frozen = false;
                self.frozen.retain(|f| f != &name);
            } else {
                shown.push(name);
            }
        }
        for name in demoted {
            self.calls.get_mut(&name).expect("demoted").frozen = true;
            self.frozen.push_back(name);
        }
        while self.frozen.len() > self.cap {
            let name = self.frozen.pop_front().expect("longer than the cap");
            self.calls.get_mut(&name).expect("frozen").frozen = false;
            steps.push(Step::Hide(name));
        }
        let mut other = 0;
        for (name, n) in counts {
            let c = self.calls.get_mut(name).expect("added above");
            if !c.member {
                other += n;
            } else if shown.contains(name) {
                c.own += n;
            } else if *n > 0 {
                c.own += n;
                steps.push(Step::Add(name.clone(), *n));
            }
        }
        for name in shown {
            steps.push(Step::Show(name.clone(), self.calls[&name].own));
        }
        if other > 0 {
            self.other = true;
            steps.push(Step::Add(OTHER.to_owned(), other));
        }
        steps
    }

    /// Fills free places with the busiest outsiders, then lets an outsider
    /// displace the slowest member while it is [`HYSTERESIS`] times busier.
    fn rerank(&mut self) -> (Vec<String>, Vec<String>) {
        let mut promoted = Vec::new();
        let mut demoted = Vec::new();
        // Busiest first; equal rates by name, so the outcome is the same on
        // every run.
        let mut outsiders: Vec<(f64, String)> = self
            .calls
            .iter()
            .filter(|(_, c)| !c.member && c.rate > 0.0)
            .map(|(s, c)| (c.rate, s.clone()))
            .collect();
        if outsiders.is_empty() {
            return (promoted, demoted);
        }
        outsiders.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let mut members: Vec<(f64, String)> = self
            .calls
            .iter()
            .filter(|(_, c)| c.member)
            .map(|(s, c)| (c.rate, s.clone()))
            .collect();
        // Slowest last, so `pop` takes it.
        members.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
        for (rate, name) in outsiders {
            if self.members < self.cap {
                self.members += 1;
            } else {
                match members.last() {
                    Some((slowest, _)) if rate > HYSTERESIS * slowest => {
                        let (_, out) = members.pop().expect("matched above");
                        self.calls.get_mut(&out).expect("a member").member = false;
                        // A syscall promoted and demoted in the same interval
                        // was never shown.
                        if let Some(i) = promoted.iter().position(|p| p == &out) {
                            promoted.swap_remove(i);
                        } else {
                            demoted.push(out);
                        }
                    }
                    // Outsiders are sorted: no later one displaces anyone.
                    _ => break,
                }
            }
            self.calls.get_mut(&name).expect("listed").member = true;
            let at = members.partition_point(|(r, _)| *r >= rate);
            members.insert(at, (rate, name.clone()));
            promoted.push(name);
        }
        (promoted, demoted)
    }

    /// The labels with an exposed series, to drop them all.
    pub fn shown(&self) -> impl Iterator<Item = &str> {
        self.calls
            .iter()
            .filter(|(_, c)| c.member || c.frozen)
            .map(|(s, _)| s.as_str())
            .chain(self.other.then_some(OTHER))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(c: &[(&str, u64)]) -> Vec<(String, u64)> {
        c.iter().map(|(s, n)| (s.to_string(), *n)).collect()
    }

    /// Applies steps to a model of what Prometheus scrapes, checking that no
    /// exposed series ever goes below a value it had.
    #[derive(Default)]
    struct Scrape {
        exposed: HashMap<String, u64>,
        highest: HashMap<String, u64>,
    }

    impl Scrape {
        fn apply(&mut self, steps: &[Step]) {
            for s in steps {
                match s {
                    // `other` appears with its first calls.
                    Step::Add(l, n) if l == OTHER => {
                        *self.exposed.entry(l.clone()).or_default() += n
                    }
                    Step::Add(l, n) => {
                        *self.exposed.get_mut(l).unwrap_or_else(|| {
                            panic!("{l} added to before it is shown: {steps:?}")
                        }) += n
                    }
                    Step::Show(l, v) => {
                        assert!(self.exposed.insert(l.clone(), *v).is_none(), "{l}");
                    }
                    Step::Hide(l) => {
                        assert!(self.exposed.remove(l).is_some(), "{l}");
                    }
                }
            }
            for (l, v) in &self.exposed {
                let h = self.highest.entry(l.clone()).or_default();
                assert!(*v >= *h, "{l} went back from {h} to {v}");
                *h = *v;
            }
        }

        fn sum(&self) -> u64 {
            self.exposed.values().sum()
        }
    }

    #[test]
    fn the_busiest_take_the_places_of_the_start_up_burst() {
        let mut t = TopSet::new(Some(2));
        let mut p = Scrape::default();
        let t0 = Instant::now();
        // The runtime's setup fills the places first.
        p.apply(&t.interval(
            &counts(&[("mmap", 40), ("openat", 30), ("execve", 1), ("getppid", 5)]),
            t0,
        ));
        assert_eq!(p.exposed.get("mmap"), Some(&40));
        assert_eq!(p.exposed.get("openat"), Some(&30));
        assert_eq!(p.exposed[OTHER], 6);
        // The workload's own syscalls, steadily, for two minutes.
        for i in 1..=120 {
            p.apply(&t.interval(
                &counts(&[("getppid", 100), ("write", 10)]),
                t0 + Duration::from_secs(i),
            ));
        }
        assert!(t.calls["getppid"].member && t.calls["write"].member);
        // The start-up syscalls left the set: their series stay, frozen.
        let mut shown: Vec<&str> = t.shown().collect();
        shown.sort();
        assert_eq!(shown, ["getppid", "mmap", "openat", "other", "write"]);
        assert_eq!((p.exposed["mmap"], p.exposed["openat"]), (40, 30));
        // Exact at every instant: the exposed series sum to every call.
        assert_eq!(p.sum(), 40 + 30 + 1 + 5 + 120 * 110);
        // getppid took its place in the second interval: its 5 start-up
        // calls stay in `other`.
        assert_eq!(p.exposed["getppid"], 120 * 100);
    }

    #[test]
    fn a_syscall_coming_back_resumes_its_series_and_nothing_goes_back() {
        let mut t = TopSet::new(Some(1));
        let mut p = Scrape::default();
        let t0 = Instant::now();
        let mut at = 0;
        let mut tick = |t: &mut TopSet, p: &mut Scrape, c: &[(&str, u64)]| {
            at += 1;
            p.apply(&t.interval(&counts(c), t0 + Duration::from_secs(at)));
        };
        for _ in 0..10 {
            tick(&mut t, &mut p, &[("read", 50), ("write", 1)]);
        }
        assert_eq!(p.exposed["read"], 500);
        for _ in 0..300 {
            tick(&mut t, &mut p, &[("write", 50), ("read", 1)]);
        }
        assert!(t.calls["write"].member, "write took the place");
        assert!(t.calls["read"].frozen, "read left the set");
        assert_eq!(p.exposed["read"], t.calls["read"].own, "its series stays");
        for _ in 0..300 {
            tick(&mut t, &mut p, &[("read", 50), ("write", 1)]);
        }
        assert!(t.calls["read"].member && t.calls["write"].frozen);
        // read counted on from its value (Scrape checks that no series
        // went lower at any step), and the sum is exact.
        assert!(p.exposed["read"] > 500);
        assert_eq!(p.sum(), 10 * 51 + 300 * 51 + 300 * 51);
    }

    #[test]
    fn close_rates_do_not_swap_places_at_every_interval() {
        let mut t = TopSet::new(Some(1));
        let mut p = Scrape::default();
        let t0 = Instant::now();
        let mut shows = 0;
        for i in 0..200u64 {
            // Alternating leaders, within 25% of each other.
            let (a, b) = if i % 2 == 0 { (110, 100) } else { (100, 110) };
            let steps = t.interval(
                &counts(&[("read", a), ("write", b)]),
                t0 + Duration::from_secs(i),
            );
            shows += steps.iter().filter(|s| matches!(s, Step::Show(..))).count();
            p.apply(&steps);
            assert!(t.calls["read"].member && !t.calls["write"].frozen);
        }
        assert_eq!(shows, 1, "read's series, once");
        assert_eq!(p.sum(), 200 * 210);
    }

    #[test]
    fn at_most_n_frozen_series_then_the_longest_frozen_is_hidden() {
        let mut t = TopSet::new(Some(1));
        let mut p = Scrape::default();
        let t0 = Instant::now();
        let mut at = 0;
        // Three leaders in turn, each for five minutes.
        for leader in ["a", "b", "c"] {
            for _ in 0..300 {
                at += 1;
                p.apply(&t.interval(&counts(&[(leader, 100)]), t0 + Duration::from_secs(at)));
            }
        }
        // c live, b frozen, a hidden (one live place, one frozen).
        assert!(t.calls["c"].member && t.calls["b"].frozen);
        assert!(!p.exposed.contains_key("a"));
        let a = t.calls["a"].own;
        assert_eq!(p.sum() + a, 900 * 100);
        // a busiest again: its series resumes from its value, not from 0.
        for _ in 0..300 {
            at += 1;
            p.apply(&t.interval(&counts(&[("a", 100)]), t0 + Duration::from_secs(at)));
        }
        assert!(t.calls["a"].member);
        assert!(p.exposed["a"] > a);
        assert!(!p.exposed.contains_key("b"), "b frozen longest, hidden");
    }

    #[test]
    fn all_exposes_every_syscall_and_never_other() {
        let mut t = TopSet::new(None);
        let mut p = Scrape::default();
        let now = Instant::now();
        let calls: Vec<(String, u64)> = (0..400).map(|i| (format!("s{i}"), i + 1)).collect();
        p.apply(&t.interval(&calls, now));
        p.apply(&t.interval(&counts(&[("s0", 5)]), now));
        assert_eq!(t.shown().count(), 400);
        assert_eq!(p.exposed["s0"], 6);
        assert!(!p.exposed.contains_key(OTHER));
        assert_eq!(p.sum(), (1..=400).sum::<u64>() + 5);
    }
}
