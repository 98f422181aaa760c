//! SO_PEERPIDFD (Linux ≥ 6.5): a pidfd for the process that connected, taken at connect time, so the
//! check "is it still the same process?" does not depend on pid numbers. The only unsafe code in
//! edgeseal lives here; no safe wrapper exists yet in libc, nix or rustix.

#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// The peer's pidfd, or `None` when the kernel does not support SO_PEERPIDFD.
pub fn peer_pidfd(socket: &impl AsFd) -> Option<OwnedFd> {
    let mut fd: libc::c_int = -1;
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).ok()?;
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
    if rc != 0 || fd < 0 {
        return None;
    }
    // SAFETY: on success the kernel returned a new descriptor that nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The pid a pidfd refers to, from `/proc/self/fdinfo`; `Some(-1)` once the process has exited.
pub fn pidfd_pid(pidfd: &OwnedFd) -> Option<i32> {
    use std::io::Read as _;
    let mut info = String::with_capacity(1024);
    std::fs::File::open(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd())).ok()?.read_to_string(&mut info).ok()?;
    info.lines().find_map(|l| l.strip_prefix("Pid:")).and_then(|v| v.trim().parse().ok())
}
