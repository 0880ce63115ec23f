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

/// The fields every task record carries, in the documented order.
fn header_fields(o: &mut Obj<'_>, kind: &str, h: &observer_common::Header, clock: i64) {
    o.str("type", kind)
        .i64("ts", clock.saturating_add_unsigned(h.ts))
        .u64("cpu", h.cpu.into())
        .u64("pid", h.pid.into())
        .u64("tid", h.tid.into())
        .u64("ns_pid", h.ns_pid.into())
        .u64("ns_tid", h.ns_tid.into())
        .cstr("comm", &h.comm);
}

fn tag_fields(o: &mut Obj<'_>, h: &observer_common::Header, container: &str) {
    o.u64("cgroup_id", h.cgroup_id)
        .u64("pidns", h.pidns.into())
        .u64("mntns", h.mntns.into())
        .u64("utsns", h.utsns.into())
        .u64("netns", h.netns.into())
        .raw("container", container);
}

/// Appends the JSON line of one task event. `clock` turns the kernel's
/// boot-time stamps into Unix nanoseconds.
pub fn event(buf: &mut Vec<u8>, ev: &crate::decode::Event, container: &str, clock: i64) {
    use crate::decode::Event;
    let mut o = Obj::new(buf);
    match ev {
        Event::Syscall(r) | Event::SyscallExit(r) => {
            let exit = matches!(ev, Event::SyscallExit(_));
            header_fields(
                &mut o,
                if exit { "syscall_exit" } else { "syscall" },
                &r.header,
                clock,
            );
            match crate::syscalls::name(r.nr) {
                Some(n) => o.str("syscall", n),
                None => o.i64("syscall", r.nr),
            };
            o.i64("nr", r.nr);
            if exit {
                o.i64("ret", r.ret);
            }
            tag_fields(&mut o, &r.header, container);
        }
        Event::Fork(r) => {
            header_fields(&mut o, "fork", &r.header, clock);
            o.u64("child_pid", r.child_pid.into())
                .u64("child_tid", r.child_tid.into())
                .u64("child_ns_pid", r.child_ns_pid.into())
                .u64("child_ns_tid", r.child_ns_tid.into());
            tag_fields(&mut o, &r.header, container);
        }
        Event::Exec(r) => {
            header_fields(&mut o, "exec", &r.header, clock);
            o.cstr("filename", &r.filename)
                .cstr("nodename", &r.nodename);
            tag_fields(&mut o, &r.header, container);
        }
        Event::Exit(r) => {
            header_fields(&mut o, "exit", &r.header, clock);
            o.u64("exit_code", ((r.exit_code >> 8) & 0xff).into())
                .u64("signal", (r.exit_code & 0x7f).into());
            tag_fields(&mut o, &r.header, container);
        }
        Event::CgroupMkdir(_) | Event::CgroupRmdir(_) => {}
    }
    o.end();
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
}
