//! SO_PEERPIDFD (Linux ≥ 6.5): a pidfd for the process that connected, taken at connect time, so the
//! check "is it still the same process?" does not depend on pid numbers. The only unsafe code in
//! edgeseal lives here; no safe wrapper exists yet in libc, nix or rustix.
//!
//! Only "this kernel does not know the option" may lead to pinning by `/proc` alone (and only when
//! the operator allows it); every other error denies the caller, see [`classify`].

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// What a failed `getsockopt(SO_PEERPIDFD)` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidfdFailure {
    /// The kernel does not know the option (before Linux 6.5): `/proc` pinning may stand in, if
    /// `token_server.allow_without_pidfd` allows it.
    Unsupported,
    /// Anything else: the peer has exited (EINVAL/ESRCH from kernels that know the option), has no
    /// pid (ENODATA), or edgeseal ran out of descriptors. The caller is denied.
    Deny,
}

/// Classifies the errno of a failed `getsockopt(SO_PEERPIDFD)`. ENOPROTOOPT is what kernels before
/// 6.5 answer for an unknown socket option, EOPNOTSUPP what a socket family without it answers.
/// EINVAL is *not* "unsupported": kernels 6.5 to 6.x that know the option answer EINVAL when the peer
/// has already exited, the very case where `/proc/<pid>` may already be another process.
pub fn classify(errno: i32) -> PidfdFailure {
    match errno {
        libc::ENOPROTOOPT | libc::EOPNOTSUPP => PidfdFailure::Unsupported,
        _ => PidfdFailure::Deny,
    }
}

/// The peer's pidfd; `Ok(None)` when the kernel does not support SO_PEERPIDFD, `Err` for every other
/// failure (see [`classify`]).
pub fn peer_pidfd(socket: &impl AsFd) -> io::Result<Option<OwnedFd>> {
    let mut fd: libc::c_int = -1;
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>())
        .map_err(|_| io::Error::other("socklen_t cannot hold the size of an int"))?;
    // SAFETY: `fd` is a c_int we own and `len` is its exact size, so getsockopt writes at most
    // `len` bytes into it; the socket descriptor is borrowed and stays open for the whole call.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERPIDFD,
            (&mut fd as *mut libc::c_int).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc != 0 {
        let error = io::Error::last_os_error();
        return match classify(error.raw_os_error().unwrap_or(0)) {
            PidfdFailure::Unsupported => Ok(None),
            PidfdFailure::Deny => Err(error),
        };
    }
    if fd < 0 {
        return Err(io::Error::other("the kernel returned no pidfd"));
    }
    // SAFETY: on success the kernel returned a new descriptor that nothing else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Whether the process a pidfd refers to has exited: its pidfd turns readable once the whole thread
/// group has exited, zombies included (it has then exited: it only waits to be reaped). One `poll`
/// with a zero timeout, no `/proc` text to read or parse. An error (which `poll` on a valid descriptor
/// does not give) counts as exited, so that the caller is denied.
pub fn pidfd_exited(pidfd: &OwnedFd) -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    match poll(&mut fds, Some(&rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 })) {
        Ok(0) => false,
        Ok(_) | Err(_) => true,
    }
}

/// `struct pidfd_info` of `<linux/pidfd.h>` as of Linux 6.13 (`PIDFD_INFO_SIZE_VER0`, 64 bytes);
/// later kernels append fields and accept this size.
#[repr(C)]
#[derive(Debug, Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    pid: u32,
    tgid: u32,
    ppid: u32,
    ruid: u32,
    rgid: u32,
    euid: u32,
    egid: u32,
    suid: u32,
    sgid: u32,
    fsuid: u32,
    fsgid: u32,
    exit_code: i32,
}

const _: () = assert!(std::mem::size_of::<PidfdInfo>() == 64);
/// `PIDFD_INFO_CREDS`: ask for (and, in the answer's mask, got) the credentials.
const PIDFD_INFO_CREDS: u64 = 1 << 1;
/// `PIDFD_GET_INFO` = `_IOWR(PIDFS_IOCTL_MAGIC (0xFF), 11, struct pidfd_info)`: direction
/// read|write (3) in bits 30-31, the size in bits 16-29, the magic in bits 8-15, the number below.
const PIDFD_GET_INFO: u64 = (3 << 30) | ((std::mem::size_of::<PidfdInfo>() as u64) << 16) | (0xFF << 8) | 11;

/// The effective uid of a pidfd's process, from `PIDFD_GET_INFO` (Linux ≥ 6.13): one ioctl, no
/// `/proc/<pid>/status` to render and parse. `Ok(None)` when the kernel does not know the ioctl
/// (ENOTTY, EINVAL) or did not fill the credentials: read `/proc` instead. `Err` otherwise (ESRCH
/// once the process has been reaped). The credentials are those of the thread-group leader, as
/// `/proc/<pid>/status` shows them.
pub fn effective_uid(pidfd: &OwnedFd) -> io::Result<Option<u32>> {
    let mut info = PidfdInfo { mask: PIDFD_INFO_CREDS, ..PidfdInfo::default() };
    // SAFETY: PIDFD_GET_INFO encodes the size of `info`, a repr(C) struct laid out as the kernel's
    // version-0 `struct pidfd_info` (size asserted above); the kernel writes at most that many bytes
    // into it. The pidfd is borrowed and stays open for the whole call.
    let rc = unsafe {
        libc::ioctl(
            pidfd.as_raw_fd(),
            PIDFD_GET_INFO as libc::Ioctl,
            (&mut info as *mut PidfdInfo).cast::<libc::c_void>(),
        )
    };
    if rc != 0 {
        let error = io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::ENOTTY | libc::EINVAL) => Ok(None),
            _ => Err(error),
        };
    }
    Ok((info.mask & PIDFD_INFO_CREDS != 0).then_some(info.euid))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pid a pidfd refers to, from `/proc/self/fdinfo`.
    fn pidfd_pid(pidfd: &OwnedFd) -> Option<i32> {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd())).ok()?;
        info.lines().find_map(|l| l.strip_prefix("Pid:")).and_then(|v| v.trim().parse().ok())
    }

    #[test]
    fn only_an_unknown_option_counts_as_unsupported() {
        let cases = [
            (libc::ENOPROTOOPT, PidfdFailure::Unsupported),
            (libc::EOPNOTSUPP, PidfdFailure::Unsupported),
            (libc::EINVAL, PidfdFailure::Deny),
            (libc::ESRCH, PidfdFailure::Deny),
            (libc::ENODATA, PidfdFailure::Deny),
            (libc::EMFILE, PidfdFailure::Deny),
            (libc::ENFILE, PidfdFailure::Deny),
            (libc::ENOMEM, PidfdFailure::Deny),
            (libc::EBADF, PidfdFailure::Deny),
            (libc::EFAULT, PidfdFailure::Deny),
            (0, PidfdFailure::Deny),
        ];
        for (errno, want) in cases {
            assert_eq!(classify(errno), want, "errno {errno}");
        }
    }

    #[test]
    fn a_connected_pair_gives_a_pidfd_for_ourselves_or_says_unsupported() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        // None: a kernel before 6.5.
        if let Some(fd) = peer_pidfd(&a).unwrap() {
            assert_eq!(pidfd_pid(&fd), i32::try_from(std::process::id()).ok());
            assert!(!pidfd_exited(&fd), "we are alive");
            // None: a kernel before 6.13.
            if let Some(euid) = effective_uid(&fd).unwrap() {
                assert_eq!(euid, nix::unistd::geteuid().as_raw());
            }
        }
        let not_a_socket = std::fs::File::open("/proc/self/stat").unwrap();
        assert!(peer_pidfd(&not_a_socket).is_err(), "ENOTSOCK is an error, not 'unsupported'");
    }
}
