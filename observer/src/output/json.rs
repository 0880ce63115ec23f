//! One JSON object per line, assembled field by field into a reused buffer:
//! strings are escaped by serde_json, so every line is valid JSON whatever a
//! process calls itself (invalid UTF-8 becomes U+FFFD).

use std::io::Write;

use crate::decode::cstr;

/// Builds one `{...}\n` line.
pub struct Obj<'a> {
    buf: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        buf.push(b'{');
        Obj { buf, first: true }
    }

    fn key(&mut self, k: &str) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(k.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    pub fn u64(&mut self, k: &str, v: u64) -> &mut Self {
        self.key(k);
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        self
    }

    pub fn i64(&mut self, k: &str, v: i64) -> &mut Self {
        self.key(k);
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        self
    }

    pub fn f64(&mut self, k: &str, v: f64) -> &mut Self {
        self.key(k);
        if v.is_finite() {
            let _ = write!(self.buf, "{v}");
        } else {
            self.buf.extend_from_slice(b"null");
        }
        self
    }

    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        // Plain ASCII without quotes, backslashes or controls is the common
        // case (syscall names, comms): copy it as is.
        if v.bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            self.buf.push(b'"');
            self.buf.extend_from_slice(v.as_bytes());
            self.buf.push(b'"');
        } else {
            serde_json::to_writer(&mut *self.buf, v).expect("write to Vec");
        }
        self
    }

    /// A fixed-size C string from the kernel (comm, filename, nodename).
    pub fn cstr(&mut self, k: &str, v: &[u8]) -> &mut Self {
        let s = String::from_utf8_lossy(cstr(v));
        self.str(k, &s)
    }

    /// An already-rendered JSON value.
    pub fn raw(&mut self, k: &str, json: &str) -> &mut Self {
        self.key(k);
        self.buf.extend_from_slice(json.as_bytes());
        self
    }

    /// Any serialisable value.
    pub fn value<T: serde::Serialize + ?Sized>(&mut self, k: &str, v: &T) -> &mut Self {
        self.key(k);
        serde_json::to_writer(&mut *self.buf, v).expect("serialise to Vec");
        self
    }

    pub fn end(self) {
        self.buf.extend_from_slice(b"}\n");
    }
}

fn num<I: itoa::Integer>(buf: &mut Vec<u8>, v: I) {
    buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// A JSON string from a fixed-size C string (comm, filename, nodename).
fn cstr_value(buf: &mut Vec<u8>, v: &[u8]) {
    let bytes = cstr(v);
    if bytes
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        buf.push(b'"');
        buf.extend_from_slice(bytes);
        buf.push(b'"');
    } else {
        serde_json::to_writer(&mut *buf, &String::from_utf8_lossy(bytes)).expect("write to Vec");
    }
}

/// The fields every task record starts with, in the documented order. On
/// the per-event path: each key is one literal with its punctuation.
fn header_fields(buf: &mut Vec<u8>, kind: &str, h: &observer_common::Header, clock: i64) {
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(kind.as_bytes());
    buf.extend_from_slice(b"\",\"ts\":");
    num(buf, clock.saturating_add_unsigned(h.ts));
    buf.extend_from_slice(b",\"cpu\":");
    num(buf, h.cpu);
    buf.extend_from_slice(b",\"pid\":");
    num(buf, h.pid);
    buf.extend_from_slice(b",\"tid\":");
    num(buf, h.tid);
    buf.extend_from_slice(b",\"ns_pid\":");
    num(buf, h.ns_pid);
    buf.extend_from_slice(b",\"ns_tid\":");
    num(buf, h.ns_tid);
    buf.extend_from_slice(b",\"comm\":");
    cstr_value(buf, &h.comm);
}

/// The fields every task record ends with: `,"cgroup_id":…,"pidns":…,
/// "mntns":…,"utsns":…,"netns":…,"container":…}` and the newline. The same
/// for every event of a cgroup whose tasks share namespaces, so the
/// pipeline renders it once and reuses it.
pub fn tail(h: &observer_common::Header, container: &str) -> String {
    let mut buf = Vec::with_capacity(128 + container.len());
    buf.extend_from_slice(b",\"cgroup_id\":");
    num(&mut buf, h.cgroup_id);
    buf.extend_from_slice(b",\"pidns\":");
    num(&mut buf, h.pidns);
    buf.extend_from_slice(b",\"mntns\":");
    num(&mut buf, h.mntns);
    buf.extend_from_slice(b",\"utsns\":");
    num(&mut buf, h.utsns);
    buf.extend_from_slice(b",\"netns\":");
    num(&mut buf, h.netns);
    buf.extend_from_slice(b",\"container\":");
    buf.extend_from_slice(container.as_bytes());
    buf.extend_from_slice(b"}\n");
    String::from_utf8(buf).expect("ASCII digits and valid JSON")
}

/// Appends the JSON line of one task event. `clock` turns the kernel's
/// boot-time stamps into Unix nanoseconds; `tail` is `tail()` for the
/// event's header.
pub fn event(buf: &mut Vec<u8>, ev: &crate::decode::Event, tail: &str, clock: i64) {
    use crate::decode::Event;
    match ev {
        Event::Syscall(r) | Event::SyscallExit(r) => {
            let exit = matches!(ev, Event::SyscallExit(_));
            header_fields(
                buf,
                if exit { "syscall_exit" } else { "syscall" },
                &r.header,
                clock,
            );
            buf.extend_from_slice(b",\"syscall\":");
            match crate::syscalls::name(r.nr) {
                Some(n) => {
                    buf.push(b'"');
                    buf.extend_from_slice(n.as_bytes());
                    buf.push(b'"');
                }
                None => num(buf, crate::syscalls::raw(r.nr)),
            }
            buf.extend_from_slice(b",\"nr\":");
            num(buf, crate::syscalls::raw(r.nr));
            if let Some(abi) = crate::syscalls::abi(r.nr).label() {
                buf.extend_from_slice(b",\"abi\":\"");
                buf.extend_from_slice(abi.as_bytes());
                buf.push(b'"');
            }
            if exit {
                buf.extend_from_slice(b",\"ret\":");
                num(buf, r.ret);
                if let Some(e) = crate::errno::of_ret(r.ret) {
                    buf.extend_from_slice(b",\"err\":\"");
                    buf.extend_from_slice(e.as_bytes());
                    buf.push(b'"');
                }
            }
        }
        Event::Fork(r) => {
            header_fields(buf, "fork", &r.header, clock);
            buf.extend_from_slice(b",\"child_pid\":");
            num(buf, r.child_pid);
            buf.extend_from_slice(b",\"child_tid\":");
            num(buf, r.child_tid);
            buf.extend_from_slice(b",\"child_ns_pid\":");
            num(buf, r.child_ns_pid);
            buf.extend_from_slice(b",\"child_ns_tid\":");
            num(buf, r.child_ns_tid);
        }
        Event::Exec(r) => {
            header_fields(buf, "exec", &r.header, clock);
            buf.extend_from_slice(b",\"filename\":");
            cstr_value(buf, &r.filename);
            buf.extend_from_slice(b",\"nodename\":");
            cstr_value(buf, &r.nodename);
        }
        Event::Exit(r) => {
            header_fields(buf, "exit", &r.header, clock);
            buf.extend_from_slice(b",\"exit_code\":");
            num(buf, (r.exit_code >> 8) & 0xff);
            buf.extend_from_slice(b",\"signal\":");
            num(buf, r.exit_code & 0x7f);
        }
        Event::Task(_)
        | Event::TaskGone(_)
        | Event::CgroupMkdir(_)
        | Event::CgroupRmdir(_)
        | Event::Enforced(_)
        | Event::Privilege(_) => return,
    }
    buf.extend_from_slice(tail.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_is_valid_json_whatever_the_input() {
        let nasty: [&[u8]; 6] = [
            b"plain",
            b"quo\"te\\back",
            b"ctl\x01\x1b[2J\n\t",
            b"\xff\xfe invalid utf8 \xc3",
            b"0123456789abcdef", // a full 16-byte comm, no NUL
            &[b'a'; 4096],
        ];
        for n in nasty {
            let mut buf = Vec::new();
            let mut o = Obj::new(&mut buf);
            o.str("type", "exec")
                .cstr("comm", n)
                .u64("pid", u64::MAX)
                .i64("ret", -14)
                .f64("x", f64::NAN)
                .raw("container", "null");
            o.end();
            assert_eq!(buf.last(), Some(&b'\n'));
            let v: serde_json::Value = serde_json::from_slice(&buf)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&buf)));
            assert_eq!(v["pid"], u64::MAX);
            assert_eq!(v["ret"], -14);
            assert!(v["x"].is_null());
            assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
        }
    }

    /// `--sys-exit`: a failed call carries its errno's name beside `ret`.
    #[test]
    fn syscall_exit_names_the_errno() {
        use crate::decode::Event;
        let mut r = observer_common::SyscallRecord {
            nr: 257,
            ret: -2,
            ..Default::default()
        };
        let t = tail(&r.header, "null");
        let mut buf = Vec::new();
        event(&mut buf, &Event::SyscallExit(r), &t, 0);
        r.ret = 3;
        event(&mut buf, &Event::SyscallExit(r), &t, 0);
        let lines: Vec<serde_json::Value> = buf
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines[0]["ret"], -2);
        assert_eq!(lines[0]["err"], "ENOENT");
        assert_eq!(lines[1]["ret"], 3);
        assert!(lines[1].get("err").is_none(), "no err on success");
    }
}
