//! `--web`: the server over real sockets (state, stream, bad requests, a
//! reader that never reads), and the page in a real browser while real
//! Docker containers run an exact workload.

mod common;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use observer::{
    aggregate::{Group, Loss},
    attribute::Lifecycle,
    container::Container,
    kernel_info::{HostNamespaces, KernelInfo},
    pipeline::Taps,
    roster::Roster,
    web::{self, state::Active, Feed},
};
use serde_json::Value;

fn kernel() -> KernelInfo {
    KernelInfo {
        release: "6.18.0-test".into(),
        version: "#1 SMP PREEMPT_DYNAMIC".into(),
        machine: "x86_64".into(),
        boot_id: "0b00b00b-test".into(),
        hostname: "room".into(),
    }
}

fn host_ns() -> HostNamespaces {
    HostNamespaces {
        pidns: 1,
        mntns: 2,
        utsns: 3,
        netns: 4,
    }
}

fn member(roster: &mut Roster, cg: u64, name: &str) {
    let c = Arc::new(Container {
        id: format!("{name}0123456789abcdef"),
        name: Some(name.into()),
        runtime: "docker",
        image: Some("busybox".into()),
        cgroup: format!("/docker/{name}"),
        pod_uid: None,
        kubernetes: None,
    });
    let json: Arc<str> = Arc::from(serde_json::to_string(c.as_ref()).unwrap());
    roster.start(cg, &c, &json, 1_000_000);
}

fn group(total: u64) -> Group {
    let mut g = Group::default();
    g.syscalls.insert(110, total);
    g.total = total;
    g.pids.insert(4242);
    g.ns_pids.insert(4242, 1);
    (g.pidns, g.mntns, g.utsns, g.netns) = (Some(9), Some(2), Some(8), Some(4));
    g.first_seen = 1_000_000;
    g.last_seen = 2_000_000;
    g
}

struct Response {
    status: u16,
    headers: String,
    body: String,
}

fn raw(addr: SocketAddr, request: &[u8]) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // A server may answer and close before taking all of a huge request.
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    Response {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

fn get(addr: SocketAddr, path: &str) -> Response {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// The server with a feed that has a busy and an idle container.
fn serve() -> (Feed, Roster, web::Server, Taps) {
    let taps = Taps::default();
    let (mut feed, hub) = Feed::new(kernel(), host_ns(), 0, taps.lifecycle.clone());
    let mut roster = Roster::default();
    member(&mut roster, 10, "busy");
    member(&mut roster, 11, "idle");
    let g = group(1234);
    let cpu = BTreeMap::from([(0u32, 5_000_000u64)]);
    feed.interval(
        &roster,
        &[Active {
            cgroup_id: 10,
            group: &g,
            cpu: &cpu,
        }],
        &Loss::default(),
        0,
        1.0,
    );
    let server = web::Server::start("127.0.0.1:0".parse().unwrap(), hub).unwrap();
    (feed, roster, server, taps)
}

/// A container's start, as attribution hands it on.
fn start(cg: u64, name: &str) -> Lifecycle {
    let c = Arc::new(Container {
        id: format!("{name}0123456789abcdef"),
        name: Some(name.into()),
        runtime: "docker",
        image: Some("busybox".into()),
        cgroup: format!("/docker/{name}"),
        pod_uid: None,
        kubernetes: None,
    });
    let json: Arc<str> = Arc::from(serde_json::to_string(c.as_ref()).unwrap());
    Lifecycle::Start {
        ts: 5_000_000,
        container: c,
        json,
        cgroup_id: cg,
        startup: None,
    }
}

/// Reads SSE events (name, data) until `want` of them came.
fn sse_events(reader: &mut BufReader<TcpStream>, want: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let (mut name, mut data) = (String::new(), String::new());
    let mut line = String::new();
    while out.len() < want {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "stream ended");
        let l = line.trim_end_matches(['\r', '\n']);
        if let Some(v) = l.strip_prefix("event:") {
            name = v.trim().to_owned();
        } else if let Some(v) = l.strip_prefix("data:") {
            data.push_str(v.trim_start());
        } else if l.is_empty() && !data.is_empty() {
            out.push((std::mem::take(&mut name), std::mem::take(&mut data)));
        }
    }
    out
}

fn open_events(addr: SocketAddr) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let mut headers = String::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        headers.push_str(&line.to_ascii_lowercase());
    }
    assert!(
        headers.contains("content-type: text/event-stream"),
        "{headers}"
    );
    assert!(headers.contains("cache-control: no-store"), "{headers}");
    r
}

#[test]
fn api_state_has_the_documented_fields_and_the_security_headers() {
    let (_feed, _roster, server, _taps) = serve();
    let r = get(server.addr, "/api/state");
    assert_eq!(r.status, 200);
    assert!(r.headers.contains("content-type: application/json"));
    assert!(r.headers.contains("cache-control: no-store"));
    assert!(r.headers.contains("x-content-type-options: nosniff"));
    assert!(r
        .headers
        .contains("content-security-policy: default-src 'none'; script-src 'self'"));
    let v: Value = serde_json::from_str(&r.body).unwrap();
    let top: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(top, ["containers", "kernel", "loss"]);
    assert_eq!(v["kernel"]["release"], "6.18.0-test");
    let cs = v["containers"].as_array().unwrap();
    assert_eq!(cs.len(), 2, "the idle container is listed too");
    let mut keys: Vec<&String> = cs[0].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "cgroup_id",
            "container",
            "cpu_ns_by_cpu",
            "first_seen",
            "last_seen",
            "lifetime_ms",
            "namespaces",
            "own_namespaces",
            "pids",
            "state",
            "syscalls_per_s",
            "syscalls_total",
            "top_syscalls"
        ]
    );
    assert_eq!(cs[0]["container"]["name"], "busy");
    assert_eq!(cs[0]["syscalls_total"], 1234);
    assert_eq!(cs[0]["top_syscalls"][0]["name"], "getppid");
    assert_eq!(cs[0]["pids"]["inside"][0], 1);
    assert_eq!(cs[0]["own_namespaces"], serde_json::json!(["pid", "uts"]));
    assert_eq!(cs[1]["container"]["name"], "idle");
    assert_eq!(cs[1]["syscalls_per_s"], 0.0);

    let page = get(server.addr, "/");
    assert_eq!(page.status, 200);
    assert!(page.headers.contains("content-type: text/html"));
    // Everything the page loads comes from the observer itself.
    for asset in ["/app.js", "/style.css", "/favicon.svg"] {
        assert!(page.body.contains(asset), "the page links {asset}");
        assert_eq!(get(server.addr, asset).status, 200, "{asset}");
    }
    for text in [
        &page.body,
        &get(server.addr, "/app.js").body,
        &get(server.addr, "/style.css").body,
    ] {
        // The one URL is the SVG namespace, a name and no resource.
        let text = text.replace("\"http://www.w3.org/2000/svg\"", "");
        assert!(
            !text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"),
            "no outside resources"
        );
    }
}

#[test]
fn events_send_the_kernel_once_then_states_and_lifecycle_events() {
    let (mut feed, roster, server, taps) = serve();
    let mut r = open_events(server.addr);
    let first = sse_events(&mut r, 3);
    let names: Vec<&str> = first.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, ["kernel", "state", "live"]);
    let k: Value = serde_json::from_str(&first[0].1).unwrap();
    assert_eq!(k["release"], "6.18.0-test");
    let s: Value = serde_json::from_str(&first[1].1).unwrap();
    assert_eq!(s["containers"][0]["syscalls_total"], 1234);

    taps.lifecycle.send(start(12, "new")).unwrap();
    let g = group(100);
    let cpu = BTreeMap::new();
    feed.interval(
        &roster,
        &[Active {
            cgroup_id: 10,
            group: &g,
            cpu: &cpu,
        }],
        &Loss::default(),
        0,
        1.0,
    );
    let next = sse_events(&mut r, 3);
    let names: Vec<&str> = next.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, ["container", "state", "live"]);
    let started: Value = serde_json::from_str(&next[0].1).unwrap();
    assert_eq!(
        (
            &started["event"],
            &started["container"]["name"],
            &started["cgroup_id"]
        ),
        (&Value::from("start"), &Value::from("new"), &Value::from(12))
    );
    let s: Value = serde_json::from_str(&next[1].1).unwrap();
    assert_eq!(s["containers"][0]["syscalls_total"], 1334);
    let live: Value = serde_json::from_str(&next[2].1).unwrap();
    assert_eq!(live["history"]["10"], serde_json::json!([1234.0, 100.0]));
    // The observer stops: the stream ends.
    drop(feed);
    let mut rest = String::new();
    let _ = r.read_to_string(&mut rest);
}

#[test]
fn bad_requests_get_the_right_status() {
    let (_feed, _roster, server, _taps) = serve();
    assert_eq!(get(server.addr, "/nope").status, 404);
    assert_eq!(get(server.addr, "/api/state/../../etc/passwd").status, 404);
    let post = raw(
        server.addr,
        b"POST /api/state HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    );
    assert_eq!(post.status, 405, "read-only");
    let delete = raw(
        server.addr,
        b"DELETE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(delete.status, 405);
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Huge: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(1 << 20)
    );
    assert_eq!(raw(server.addr, huge.as_bytes()).status, 431);
    assert_eq!(raw(server.addr, b"NONSENSE\r\n\r\n").status, 400);
    // Still serving.
    assert_eq!(get(server.addr, "/api/state").status, 200);
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// A reader that connects and never reads, while states and lifecycle
/// events come far faster than any network: the feed never waits, memory
/// stays bounded, and a reader that does read gets the latest state.
#[test]
fn a_reader_that_never_reads_costs_bounded_memory() {
    let (mut feed, mut roster, server, taps) = serve();
    for cg in 100..150 {
        member(&mut roster, cg, &format!("c{cg}"));
    }
    let stalled: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    let g = group(1);
    let cpu = BTreeMap::new();
    let active: Vec<Active> = (100..150)
        .map(|cg| Active {
            cgroup_id: cg,
            group: &g,
            cpu: &cpu,
        })
        .collect();
    // The feed never waits for a reader (a `watch` and a bounded
    // `broadcast`): these rounds end however stalled the readers are.
    let rounds = 200u64;
    let mut before = 0;
    let record = start(13, &"x".repeat(1000));
    for round in 1..=rounds {
        for _ in 0..50 {
            let _ = taps.lifecycle.send(record.clone());
        }
        feed.interval(&roster, &active, &Loss::default(), 0, 1.0);
        if round == 20 {
            // Past the sockets' buffers filling: the steady state.
            before = rss_kib();
        }
    }
    let after = rss_kib();
    let state_len = server_state_len(server.addr);
    eprintln!(
        "{rounds} states of {state_len} bytes and {} lifecycle events to 8 stalled readers: RSS {before} -> {after} KiB",
        rounds * 50
    );
    assert!(
        after < before + 32 * 1024,
        "memory grows with a stalled reader: {before} -> {after} KiB"
    );
    // A reader that reads gets the latest state.
    let mut r = open_events(server.addr);
    let first = sse_events(&mut r, 3);
    let s: Value = serde_json::from_str(&first[1].1).unwrap();
    assert_eq!(s["containers"].as_array().unwrap().len(), 52);
    drop(stalled);
}

fn server_state_len(addr: SocketAddr) -> usize {
    get(addr, "/api/state").body.len()
}

/// A free loopback port for an observer started as a separate process.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Headless Chromium driven over WebDriver (Debian's `chromium` and
/// `chromium-driver`, which `cargo xtask test` installs); None, after saying
/// why, where they are missing.
fn chromium() -> Option<(String, String)> {
    let on_path = |b: &str| {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(b))
                .find(|f| f.is_file())
                .map(|f| f.to_string_lossy().into_owned())
        })
    };
    match (on_path("chromium"), on_path("chromedriver")) {
        (Some(b), Some(d)) => Some((b, d)),
        _ => {
            observer::privilege::skip_or_fail(
                "no chromium and chromedriver: run `cargo xtask test` (it installs Debian's chromium and chromium-driver)",
            );
            None
        }
    }
}

/// One WebDriver session on a chromedriver we own: the session, the driver
/// and the browser's profile go on every path.
struct Browser {
    driver: std::process::Child,
    port: u16,
    session: String,
    profile: std::path::PathBuf,
}

impl Browser {
    fn start(browser: &str, driver: &str) -> Browser {
        let port = free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile =
            std::env::temp_dir().join(format!("observer-web-chromium-{}", common::fake_id()));
        let mut b = Browser {
            driver: child,
            port,
            session: String::new(),
            profile,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err()
            || b.call("GET", "/status", None)["value"]["ready"] != true
        {
            assert!(Instant::now() < deadline, "chromedriver not ready in 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": browser,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                "--window-size=1600,1200",
                format!("--user-data-dir={}", b.profile.display()),
            ],
        }}}});
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_owned();
        b
    }

    /// One WebDriver command; the answer's JSON.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect chromedriver");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        // chromedriver keeps the connection open: read by Content-Length.
        let mut r = BufReader::new(s);
        let mut len = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            r.read_line(&mut line).expect("read chromedriver's answer");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap();
                }
            }
        }
        let mut json = vec![0; len];
        r.read_exact(&mut json).expect("read chromedriver's answer");
        serde_json::from_slice(&json)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&json)))
    }

    fn session(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let v = self.call(method, &format!("/session/{}{path}", self.session), body);
        assert!(
            v["value"]["error"].is_null(),
            "WebDriver {method} {path}: {v}"
        );
        v["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.session("POST", "/url", Some(serde_json::json!({ "url": url })));
    }

    /// The value of a script run in the page.
    fn eval(&self, script: &str) -> Value {
        self.session(
            "POST",
            "/execute/sync",
            Some(serde_json::json!({"script": script, "args": []})),
        )
    }

    fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let v = self.session("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("a base64 PNG"))
            .expect("valid base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = std::panic::catch_unwind(|| {
                self.call("DELETE", &format!("/session/{}", self.session), None)
            });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Removes the test's containers on every path.
struct Containers(Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("docker")
                .args(["rm", "-f", name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The card of the container `name` in the dumped DOM.
fn card_of<'a>(dom: &'a str, name: &str) -> &'a str {
    let start = dom
        .find(&format!("data-name=\"{name}\""))
        .unwrap_or_else(|| panic!("no card for {name} in the page:\n{dom}"));
    let end = dom[start..]
        .find("</section>")
        .map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

/// The page in a real browser while two real containers run exactly
/// `CALLS` getppid calls each: their names, the kernel's release and the
/// count as the page shows them; and a screenshot of it for the README.
///
/// The runtime makes a few getppid calls of its own in the container's
/// cgroup before the workload starts (`runc:[2:INIT]`): a first container
/// whose workload makes none counts them in the JSON stream, and the page
/// must show exactly `CALLS` more.
#[test]
fn the_page_shows_real_containers_in_a_real_browser() {
    const CALLS: u64 = 4321;
    let Some(image) = common::docker_image() else {
        return;
    };
    let Some((browser, driver)) = chromium() else {
        return;
    };
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let [control, a, b] =
        ["web-zero", "web-a", "web-b"].map(|p| format!("obs-{p}-{}", &common::fake_id()[..8]));
    let obs = common::Observer::start(&[
        "--interval",
        "0.5",
        "--web",
        &addr.to_string(),
        "--container",
        &control,
        "--container",
        &a,
        "--container",
        &b,
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "the page's server did not answer"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let guard = Containers(vec![control.clone(), a.clone(), b.clone()]);
    let workload = format!("{}:/observer-workload:ro", common::WORKLOAD);
    // Detached, as the runtime's own calls differ with an attached one.
    let run = |name: &str, calls: u64, linger: bool| {
        let calls = calls.to_string();
        let mut args = vec!["run", "-d", "--rm", "--network", "none", "--name", name];
        args.extend([
            "-v",
            &workload,
            "-v",
            "/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu:ro",
            "-v",
            "/lib64:/lib64:ro",
            &image,
            "/observer-workload",
            "--calls",
            &calls,
            // Still running while the page is read and photographed.
            "--linger-ms",
            if linger { "60000" } else { "0" },
        ]);
        common::docker(&args);
    };
    let getppid = |c: &Value| {
        c["top_syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "getppid")
            .map_or(0, |s| s["count"].as_u64().unwrap())
    };
    let wait_state = |what: &str, done: &dyn Fn(&[Value]) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v: Value = serde_json::from_str(&get(addr, "/api/state").body).unwrap();
            let cs = v["containers"].as_array().unwrap();
            if done(cs) {
                return cs.clone();
            }
            assert!(Instant::now() < deadline, "{what} never came: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    run(&control, 0, false);
    wait_state("the first container's exit", &|cs| {
        cs.iter()
            .any(|c| c["container"]["name"] == control.as_str() && c["state"] == "exited")
    });
    let runtime_calls = common::json_lines(&obs.out)
        .iter()
        .filter(|l| {
            l["type"] == "syscall"
                && l["syscall"] == "getppid"
                && l["container"]["name"] == control.as_str()
        })
        .count() as u64;
    let expected = CALLS + runtime_calls;
    run(&a, CALLS, true);
    run(&b, CALLS, true);
    // Ready when the server's state has both, named, with every call.
    wait_state("both containers with every call", &|cs| {
        [&a, &b].iter().all(|n| {
            cs.iter().any(|c| {
                c["container"]["name"] == n.as_str()
                    && c["state"] == "running"
                    && getppid(c) == expected
            })
        })
    });

    let url = format!("http://{addr}/");
    let browser = Browser::start(&browser, &driver);
    browser.goto(&url);
    let shown = format!("{expected}")
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(",");
    // The DOM once the page's script has drawn both cards with every call
    // (its first state comes from /api/state, the next ones from /events).
    let deadline = Instant::now() + Duration::from_secs(30);
    let dom = loop {
        let dom = browser
            .eval("return document.documentElement.outerHTML")
            .as_str()
            .unwrap()
            .to_owned();
        let drawn = [&a, &b].iter().all(|n| {
            dom.find(&format!("data-name=\"{n}\""))
                .is_some_and(|_| card_of(&dom, n).contains(&shown))
        });
        if drawn && dom.contains("live · updated") {
            break dom;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed both containers with {shown} getppid calls:\n{dom}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let release = observer::kernel_info::KernelInfo::read().release;
    assert!(
        dom.contains(&format!("<span id=\"release\">{release}</span>")),
        "the kernel release {release} at the top:\n{dom}"
    );
    assert!(dom.contains("2 containers, 1 kernel"), "{dom}");
    assert!(card_of(&dom, &control).contains("exited · lived"));
    for name in [&a, &b] {
        let card = card_of(&dom, name);
        assert!(
            card.contains(&format!(
                "<td class=\"syscall\">getppid</td><td class=\"count\">{shown}</td>"
            )),
            "{name}'s card shows getppid {shown}:\n{card}"
        );
        assert!(card.contains("running"), "{card}");
    }

    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-page.png");
    std::fs::write(&shot, &png).unwrap();
    eprintln!("screenshot of the page: {}", shot.display());
    drop(browser);
    drop(guard);
    let rec = obs.stop();
    assert!(
        !rec.stderr.contains("warning: --web"),
        "loopback: no warning: {}",
        rec.stderr
    );
}

/// `observer demo --web`: the page is served while the demo runs and after
/// its verdict, until Ctrl-C; the stream then ends as it always does.
#[test]
fn the_demo_keeps_its_page_until_ctrl_c() {
    // Docker's containers, not --unshare's namespaces: those live in the
    // host's cgroups, and the demo then streams every host syscall.
    let Some(image) = common::docker_image() else {
        return;
    };
    let addr = common::free_addr();
    let stream =
        std::env::temp_dir().join(format!("observer-demo-web-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&stream);
    let mut child = Command::new(common::OBSERVER)
        .args([
            "demo",
            "--image",
            &image,
            "--web",
            &addr.to_string(),
            "--stream-file",
        ])
        .arg(&stream)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start observer demo");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut printed = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(l) = rx.recv_timeout(left) else {
            let _ = child.kill();
            panic!(
                "the demo did not say its page stays live within 120 s; it printed:\n{}",
                printed.join("\n")
            );
        };
        let done = l.contains("The page stays live at");
        printed.push(l);
        if done {
            break;
        }
    }
    let last = printed.last().unwrap();
    assert!(
        last.contains(&format!("http://{addr}/")) && last.contains("Ctrl-C"),
        "{last}"
    );
    assert!(
        printed
            .iter()
            .any(|l| l.contains("One kernel served them all")),
        "the verdict comes before: {printed:?}"
    );
    // After the verdict, the observer still runs and the page still answers.
    assert!(
        child.try_wait().unwrap().is_none(),
        "the demo ended after its verdict"
    );
    let (status, body) =
        common::http_get(addr, "/api/state").expect("the page answers after the verdict");
    assert_eq!(status, 200);
    let state: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        state["kernel"]["release"].as_str().unwrap(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap()
            .trim()
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let st = common::wait_for(&mut child, Duration::from_secs(30), "the demo after Ctrl-C");
    assert!(st.success(), "the demo exits cleanly on Ctrl-C: {st}");
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("The full JSON stream")),
        "the last line says where the stream is: {rest:?}"
    );
    assert!(
        common::http_get(addr, "/api/state").is_none(),
        "the page stops with the demo"
    );
    let records = common::json_lines(&stream);
    assert_eq!(
        records.last().unwrap()["type"],
        "loss",
        "the stream ends with its loss account"
    );
    let _ = std::fs::remove_file(&stream);
}
