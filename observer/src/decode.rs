//! Ring-buffer records -> typed events. Pure: a short or unknown record is a
//! typed error, never a panic.

use std::mem::size_of;

use observer_common::{
    CgroupRecord, EnforcedRecord, ExecRecord, ExitRecord, ForkRecord, Header, PrivilegeRecord,
    SyscallEvent, SyscallExitEvent, SyscallRecord, TaskGoneRecord, KIND_CGROUP_MKDIR,
    KIND_CGROUP_RMDIR, KIND_ENFORCED, KIND_EXEC, KIND_EXIT, KIND_FORK, KIND_PRIVILEGE,
    KIND_SYSCALL, KIND_SYSCALL_EXIT, KIND_TASK, KIND_TASK_GONE, RECORD_TS_OFFSET, SYSCALL_COMPAT,
};

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {len} bytes is too short for kind {kind} ({need} bytes)")]
    Short { kind: u32, len: usize, need: usize },
    #[error("record of unknown kind {0}")]
    UnknownKind(u32),
    #[error("empty record")]
    Empty,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Decoded from the compact wire record: the header holds `kind`,
    /// `cpu`, `ts`, `cgroup_id` and `tid` until `identity::Identities`
    /// joins in the rest.
    Syscall(SyscallRecord),
    SyscallExit(SyscallRecord),
    /// Who a thread is, from now on (`KIND_TASK`).
    Task(Header),
    /// A thread whose identity was sent has exited.
    TaskGone(u32),
    Fork(ForkRecord),
    Exec(Box<ExecRecord>),
    Exit(ExitRecord),
    CgroupMkdir(Box<CgroupRecord>),
    CgroupRmdir(Box<CgroupRecord>),
    Enforced(EnforcedRecord),
    Privilege(PrivilegeRecord),
}

impl Event {
    pub fn header_mut(&mut self) -> Option<&mut Header> {
        match self {
            Event::Syscall(r) | Event::SyscallExit(r) => Some(&mut r.header),
            Event::Fork(r) => Some(&mut r.header),
            Event::Exec(r) => Some(&mut r.header),
            Event::Exit(r) => Some(&mut r.header),
            Event::Task(h) => Some(h),
            Event::Enforced(r) => Some(&mut r.header),
            Event::Privilege(r) => Some(&mut r.header),
            Event::TaskGone(_) | Event::CgroupMkdir(_) | Event::CgroupRmdir(_) => None,
        }
    }

    /// The task header, for the events that carry one.
    pub fn header(&self) -> Option<&Header> {
        match self {
            Event::Syscall(r) | Event::SyscallExit(r) => Some(&r.header),
            Event::Fork(r) => Some(&r.header),
            Event::Exec(r) => Some(&r.header),
            Event::Exit(r) => Some(&r.header),
            Event::Task(h) => Some(h),
            Event::Enforced(r) => Some(&r.header),
            Event::Privilege(r) => Some(&r.header),
            Event::TaskGone(_) | Event::CgroupMkdir(_) | Event::CgroupRmdir(_) => None,
        }
    }
}

fn read<T: Copy>(kind: u32, buf: &[u8]) -> Result<T, DecodeError> {
    if buf.len() < size_of::<T>() {
        return Err(DecodeError::Short {
            kind,
            len: buf.len(),
            need: size_of::<T>(),
        });
    }
    // SAFETY: length checked above; every T here is a #[repr(C)] record of
    // integers and byte arrays, valid for any bit pattern; the ring buffer
    // gives no alignment guarantee we rely on.
    Ok(unsafe { std::ptr::read_unaligned(buf.as_ptr().cast::<T>()) })
}

/// The kind of a raw record.
pub fn kind(buf: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(..4)?.try_into().ok()?))
}

/// The cgroup of a raw task record, without decoding the rest.
pub fn task_cgroup(buf: &[u8]) -> Option<u64> {
    match kind(buf)? {
        KIND_SYSCALL | KIND_SYSCALL_EXIT | KIND_FORK | KIND_EXEC | KIND_EXIT | KIND_TASK
        | KIND_ENFORCED | KIND_PRIVILEGE => {
            let at = std::mem::offset_of!(Header, cgroup_id);
            Some(u64::from_ne_bytes(buf.get(at..at + 8)?.try_into().ok()?))
        }
        _ => None,
    }
}

/// The time stamp of a raw event-ring record, without decoding the rest;
/// 0 for one too short to have one (handed on at once, and then counted as
/// a decode error).
pub fn record_ts(buf: &[u8]) -> u64 {
    buf.get(RECORD_TS_OFFSET..RECORD_TS_OFFSET + 8)
        .map_or(0, |b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
}

pub fn decode(buf: &[u8]) -> Result<Event, DecodeError> {
    let kind = match buf.get(..4) {
        Some(k) => u32::from_ne_bytes(k.try_into().expect("4 bytes")),
        None => return Err(DecodeError::Empty),
    };
    Ok(match kind {
        KIND_SYSCALL => Event::Syscall(syscall(&read::<SyscallEvent>(kind, buf)?, 0)),
        KIND_SYSCALL_EXIT => {
            let r: SyscallExitEvent = read(kind, buf)?;
            Event::SyscallExit(syscall(&r.event, r.ret))
        }
        KIND_TASK => Event::Task(read(kind, buf)?),
        KIND_TASK_GONE => Event::TaskGone(read::<TaskGoneRecord>(kind, buf)?.tid),
        KIND_FORK => Event::Fork(read(kind, buf)?),
        KIND_EXEC => Event::Exec(Box::new(read(kind, buf)?)),
        KIND_EXIT => Event::Exit(read(kind, buf)?),
        KIND_CGROUP_MKDIR => Event::CgroupMkdir(Box::new(read(kind, buf)?)),
        KIND_CGROUP_RMDIR => Event::CgroupRmdir(Box::new(read(kind, buf)?)),
        KIND_ENFORCED => Event::Enforced(read(kind, buf)?),
        KIND_PRIVILEGE => Event::Privilege(read(kind, buf)?),
        other => return Err(DecodeError::UnknownKind(other)),
    })
}

/// A compact syscall record as the record the rest of the daemon reads,
/// its thread's identity still to be joined in.
fn syscall(e: &SyscallEvent, ret: i64) -> SyscallRecord {
    SyscallRecord {
        header: Header {
            kind: e.kind,
            cpu: e.cpu.into(),
            ts: e.ts,
            cgroup_id: e.cgroup_id,
            tid: e.tid,
            ..Header::default()
        },
        nr: crate::syscalls::tagged(e.nr, e.flags & SYSCALL_COMPAT != 0),
        ret,
    }
}

/// The bytes of a NUL-terminated C string in a fixed buffer.
pub fn cstr(buf: &[u8]) -> &[u8] {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    &buf[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_stamps_are_read_at_the_shared_offset() {
        let table: [(&[u8], u64); 3] = [
            (&[0; 4], 0),
            (&[1, 0, 0, 0, 7, 0, 0, 0, 0x2a, 0, 0, 0, 0, 0, 0, 0], 42),
            (
                &[9, 0, 0, 0, 3, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff],
                256,
            ),
        ];
        for (record, ts) in table {
            assert_eq!(record_ts(record), ts, "{record:?}");
        }
    }

    fn bytes<T>(v: &T) -> Vec<u8> {
        // SAFETY: test records are plain #[repr(C)] data without padding.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    #[test]
    fn decodes_a_syscall_record() {
        let e = SyscallEvent {
            kind: KIND_SYSCALL,
            tid: 43,
            ts: 7,
            cgroup_id: 99,
            nr: 110,
            cpu: 1,
            flags: 0,
        };
        let ev = decode(&bytes(&e)).unwrap();
        let Event::Syscall(r) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!(
            (r.header.kind, r.header.tid, r.header.ts, r.header.cgroup_id),
            (KIND_SYSCALL, 43, 7, 99)
        );
        assert_eq!((r.header.cpu, r.nr, r.ret, r.header.pid), (1, 110, 0, 0));
        assert_eq!(task_cgroup(&bytes(&e)), Some(99));
        let x = SyscallExitEvent {
            event: SyscallEvent {
                kind: KIND_SYSCALL_EXIT,
                nr: -1,
                ..e
            },
            ret: -38,
        };
        let Ok(Event::SyscallExit(r)) = decode(&bytes(&x)) else {
            panic!()
        };
        assert_eq!((r.nr, r.ret), (-1, -38));
        // A compat call: the i386 number, marked, kept apart from the
        // native call of the same number.
        let c = SyscallEvent {
            nr: 64,
            flags: SYSCALL_COMPAT,
            ..e
        };
        let Ok(Event::Syscall(r)) = decode(&bytes(&c)) else {
            panic!()
        };
        assert_eq!(r.nr, 64 | crate::syscalls::COMPAT);
        let mut h = Header {
            kind: KIND_TASK,
            pid: 42,
            ..Header::default()
        };
        h.comm[..4].copy_from_slice(b"true");
        let ev = decode(&bytes(&h)).unwrap();
        assert_eq!(cstr(&ev.header().unwrap().comm), b"true");
        let g = TaskGoneRecord {
            kind: KIND_TASK_GONE,
            tid: 5,
            ts: 9,
        };
        assert_eq!(decode(&bytes(&g)), Ok(Event::TaskGone(5)));
    }

    #[test]
    fn short_and_unknown_records_are_errors() {
        let mut r = SyscallExitEvent::default();
        r.event.kind = KIND_SYSCALL_EXIT;
        let b = bytes(&r);
        for len in [0, 1, 3] {
            assert!(decode(&b[..len]).is_err());
        }
        for len in [4, 10, 39] {
            assert!(
                matches!(
                    decode(&b[..len]),
                    Err(DecodeError::Short {
                        kind: KIND_SYSCALL_EXIT,
                        ..
                    })
                ),
                "len {len}"
            );
        }
        assert_eq!(
            decode(&[99, 0, 0, 0, 1, 2]),
            Err(DecodeError::UnknownKind(99))
        );
        // Longer records (a newer kernel side) still decode.
        let mut longer = b.clone();
        longer.extend_from_slice(&[0; 16]);
        assert!(decode(&longer).is_ok());
    }

    #[test]
    fn cstr_stops_at_nul_or_end() {
        assert_eq!(cstr(b"abc\0def"), b"abc");
        assert_eq!(cstr(b"abcdef"), b"abcdef");
        assert_eq!(cstr(b"\0"), b"");
    }
}
