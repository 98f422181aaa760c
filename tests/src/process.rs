//! A child process that is killed and reaped when the guard is dropped.

use std::process::{Child, ExitStatus};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::poll_until;

/// Waits up to `limit` for `child` to exit, reaping it; `None` if it is still running then (the
/// caller decides what to do: kill it, report it).
pub fn wait_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    poll_until(limit, || child.try_wait().ok().flatten())
}

/// Owns a spawned server process; `Drop` sends SIGTERM, waits briefly, then SIGKILL, and reaps it.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
}

impl ChildGuard {
    /// Wraps a spawned child; `name` appears in messages.
    pub fn new(name: impl Into<String>, child: Child) -> Self {
        Self { name: name.into(), child: Some(child) }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Whether it has exited (reaping it if so).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits up to `limit` for it to exit (reaping it); `None` if it still runs then.
    pub fn exited_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        poll_until(limit, || self.exited())
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        if let Ok(pid) = i32::try_from(self.pid()) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// Stops the process: `signal`, then SIGKILL after `grace`; waits until it is gone.
    pub fn stop(&mut self, signal: Signal, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
        if let Some(status) = wait_within(&mut child, grace) {
            return Some(status);
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop(Signal::SIGTERM, Duration::from_secs(5));
    }
}

/// The descriptors `pid` holds, by what they point to; sockets and pipes by kind only (which one
/// does not matter: OpenBao's output pipe is a new one at each start). Sorted, for comparing.
pub fn descriptors(pid: u32) -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .map(|e| std::fs::read_link(e.path()).map(|t| t.display().to_string()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    for fd in &mut fds {
        if let Some((kind, _)) = fd.split_once(":[").filter(|(kind, _)| *kind == "socket" || *kind == "pipe") {
            *fd = kind.to_string();
        }
    }
    fds.sort();
    fds
}

/// The resident set size of `pid`, in KiB (0 once it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
