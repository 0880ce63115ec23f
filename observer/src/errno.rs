//! Linux errno names, for `syscall_exit` records' `err` beside `ret`.
//!
//! Source: Linux 6.18 `include/uapi/asm-generic/errno-base.h` and
//! `errno.h` (x86_64 and arm64 use the generic numbers), plus the
//! kernel-internal codes a syscall can still return to a tracer
//! (`include/linux/errno.h`: the restart codes seen at `sys_exit` when a
//! signal interrupts a call).

/// The name of errno `n` (`2` -> `ENOENT`); None when unknown.
pub fn name(n: i64) -> Option<&'static str> {
    let n = usize::try_from(n).ok()?;
    match NAMES.get(n) {
        Some(s) if !s.is_empty() => Some(s),
        _ => match n {
            512 => Some("ERESTARTSYS"),
            513 => Some("ERESTARTNOINTR"),
            514 => Some("ERESTARTNOHAND"),
            515 => Some("ENOIOCTLCMD"),
            516 => Some("ERESTART_RESTARTBLOCK"),
            524 => Some("ENOTSUPP"),
            _ => None,
        },
    }
}

/// The errno name a syscall's return value stands for: -4095..=-1 are
/// errors (the kernel's `IS_ERR_VALUE` range); None for a success.
pub fn of_ret(ret: i64) -> Option<&'static str> {
    if (-4095..0).contains(&ret) {
        name(-ret)
    } else {
        None
    }
}

/// Indexed by number; "" for the unused 0, 41 and 58.
const NAMES: [&str; 134] = [
    "",
    "EPERM",
    "ENOENT",
    "ESRCH",
    "EINTR",
    "EIO",
    "ENXIO",
    "E2BIG",
    "ENOEXEC",
    "EBADF",
    "ECHILD",
    "EAGAIN",
    "ENOMEM",
    "EACCES",
    "EFAULT",
    "ENOTBLK",
    "EBUSY",
    "EEXIST",
    "EXDEV",
    "ENODEV",
    "ENOTDIR",
    "EISDIR",
    "EINVAL",
    "ENFILE",
    "EMFILE",
    "ENOTTY",
    "ETXTBSY",
    "EFBIG",
    "ENOSPC",
    "ESPIPE",
    "EROFS",
    "EMLINK",
    "EPIPE",
    "EDOM",
    "ERANGE",
    "EDEADLK",
    "ENAMETOOLONG",
    "ENOLCK",
    "ENOSYS",
    "ENOTEMPTY",
    "ELOOP",
    "",
    "ENOMSG",
    "EIDRM",
    "ECHRNG",
    "EL2NSYNC",
    "EL3HLT",
    "EL3RST",
    "ELNRNG",
    "EUNATCH",
    "ENOCSI",
    "EL2HLT",
    "EBADE",
    "EBADR",
    "EXFULL",
    "ENOANO",
    "EBADRQC",
    "EBADSLT",
    "",
    "EBFONT",
    "ENOSTR",
    "ENODATA",
    "ETIME",
    "ENOSR",
    "ENONET",
    "ENOPKG",
    "EREMOTE",
    "ENOLINK",
    "EADV",
    "ESRMNT",
    "ECOMM",
    "EPROTO",
    "EMULTIHOP",
    "EDOTDOT",
    "EBADMSG",
    "EOVERFLOW",
    "ENOTUNIQ",
    "EBADFD",
    "EREMCHG",
    "ELIBACC",
    "ELIBBAD",
    "ELIBSCN",
    "ELIBMAX",
    "ELIBEXEC",
    "EILSEQ",
    "ERESTART",
    "ESTRPIPE",
    "EUSERS",
    "ENOTSOCK",
    "EDESTADDRREQ",
    "EMSGSIZE",
    "EPROTOTYPE",
    "ENOPROTOOPT",
    "EPROTONOSUPPORT",
    "ESOCKTNOSUPPORT",
    "EOPNOTSUPP",
    "EPFNOSUPPORT",
    "EAFNOSUPPORT",
    "EADDRINUSE",
    "EADDRNOTAVAIL",
    "ENETDOWN",
    "ENETUNREACH",
    "ENETRESET",
    "ECONNABORTED",
    "ECONNRESET",
    "ENOBUFS",
    "EISCONN",
    "ENOTCONN",
    "ESHUTDOWN",
    "ETOOMANYREFS",
    "ETIMEDOUT",
    "ECONNREFUSED",
    "EHOSTDOWN",
    "EHOSTUNREACH",
    "EALREADY",
    "EINPROGRESS",
    "ESTALE",
    "EUCLEAN",
    "ENOTNAM",
    "ENAVAIL",
    "EISNAM",
    "EREMOTEIO",
    "EDQUOT",
    "ENOMEDIUM",
    "EMEDIUMTYPE",
    "ECANCELED",
    "ENOKEY",
    "EKEYEXPIRED",
    "EKEYREVOKED",
    "EKEYREJECTED",
    "EOWNERDEAD",
    "ENOTRECOVERABLE",
    "ERFKILL",
    "EHWPOISON",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_errors_and_only_errors() {
        assert_eq!(of_ret(-2), Some("ENOENT"));
        assert_eq!(of_ret(-1), Some("EPERM"));
        assert_eq!(of_ret(-13), Some("EACCES"));
        assert_eq!(of_ret(-133), Some("EHWPOISON"));
        assert_eq!(of_ret(-512), Some("ERESTARTSYS"));
        assert_eq!(of_ret(0), None);
        assert_eq!(of_ret(3), None);
        assert_eq!(of_ret(-41), None);
        // A pointer-sized success (mmap) is not an error.
        assert_eq!(of_ret(-4096), None);
        assert_eq!(of_ret(0x7f00_0000_0000), None);
    }
}
