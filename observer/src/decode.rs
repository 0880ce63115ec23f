//! Ring-buffer records -> typed events. Pure: a short or unknown record is a
//! typed error, never a panic.

use std::mem::size_of;

use observer_common::{
    CgroupRecord, ExecRecord, ExitRecord, ForkRecord, Header, SyscallRecord, KIND_CGROUP_MKDIR,
    KIND_CGROUP_RMDIR, KIND_EXEC, KIND_EXIT, KIND_FORK, KIND_SYSCALL, KIND_SYSCALL_EXIT,
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
    Syscall(SyscallRecord),
    SyscallExit(SyscallRecord),
    Fork(ForkRecord),
    Exec(Box<ExecRecord>),
    Exit(ExitRecord),
    CgroupMkdir(Box<CgroupRecord>),
    CgroupRmdir(Box<CgroupRecord>),
}

impl Event {
    pub fn header_mut(&mut self) -> Option<&mut Header> {
        match self {
            Event::Syscall(r) | Event::SyscallExit(r) => Some(&mut r.header),
            Event::Fork(r) => Some(&mut r.header),
            Event::Exec(r) => Some(&mut r.header),
            Event::Exit(r) => Some(&mut r.header),
            Event::CgroupMkdir(_) | Event::CgroupRmdir(_) => None,
        }
    }

    /// The task header, for the events that carry one.
    pub fn header(&self) -> Option<&Header> {
        match self {
            Event::Syscall(r) | Event::SyscallExit(r) => Some(&r.header),
            Event::Fork(r) => Some(&r.header),
            Event::Exec(r) => Some(&r.header),
            Event::Exit(r) => Some(&r.header),
            Event::CgroupMkdir(_) | Event::CgroupRmdir(_) => None,
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
        KIND_SYSCALL | KIND_SYSCALL_EXIT | KIND_FORK | KIND_EXEC | KIND_EXIT => {
            let at = std::mem::offset_of!(Header, cgroup_id);
            Some(u64::from_ne_bytes(buf.get(at..at + 8)?.try_into().ok()?))
        }
        _ => None,
    }
}

pub fn decode(buf: &[u8]) -> Result<Event, DecodeError> {
    let kind = match buf.get(..4) {
        Some(k) => u32::from_ne_bytes(k.try_into().expect("4 bytes")),
        None => return Err(DecodeError::Empty),
    };
    Ok(match kind {
        KIND_SYSCALL => Event::Syscall(read(kind, buf)?),
        KIND_SYSCALL_EXIT => Event::SyscallExit(read(kind, buf)?),
        KIND_FORK => Event::Fork(read(kind, buf)?),
        KIND_EXEC => Event::Exec(Box::new(read(kind, buf)?)),
        KIND_EXIT => Event::Exit(read(kind, buf)?),
        KIND_CGROUP_MKDIR => Event::CgroupMkdir(Box::new(read(kind, buf)?)),
        KIND_CGROUP_RMDIR => Event::CgroupRmdir(Box::new(read(kind, buf)?)),
        other => return Err(DecodeError::UnknownKind(other)),
    })
}

/// The bytes of a NUL-terminated C string in a fixed buffer.
pub fn cstr(buf: &[u8]) -> &[u8] {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    &buf[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<T>(v: &T) -> Vec<u8> {
        // SAFETY: test records are plain #[repr(C)] data without padding.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    #[test]
    fn decodes_a_syscall_record() {
        let mut r = SyscallRecord::default();
        r.header.kind = KIND_SYSCALL;
        r.header.pid = 42;
        r.header.comm[..4].copy_from_slice(b"true");
        r.nr = 110;
        let ev = decode(&bytes(&r)).unwrap();
        assert_eq!(ev, Event::Syscall(r));
        assert_eq!(cstr(&ev.header().unwrap().comm), b"true");
    }

    #[test]
    fn short_and_unknown_records_are_errors() {
        let mut r = SyscallRecord::default();
        r.header.kind = KIND_SYSCALL;
        let b = bytes(&r);
        for len in [0, 1, 3] {
            assert!(decode(&b[..len]).is_err());
        }
        for len in [4, 10, 87] {
            assert!(
                matches!(
                    decode(&b[..len]),
                    Err(DecodeError::Short {
                        kind: KIND_SYSCALL,
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
