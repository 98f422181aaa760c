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
        }
        let not_a_socket = std::fs::File::open("/proc/self/stat").unwrap();
        assert!(peer_pidfd(&not_a_socket).is_err(), "ENOTSOCK is an error, not 'unsupported'");
    }
}
