//! Kernel facts about a peer process, read through a held `/proc/<pid>` directory descriptor.
//!
//! Holding the directory pins the process: if it exits and its pid is reused, reads through the old
//! descriptor fail (ESRCH) instead of describing the new process. The start time (field 22 of
//! `stat`) and the uid are read at pin time and compared again after every other lookup.

use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use rustix::fs::{openat, readlinkat, Mode, OFlags, CWD};
use sha2::{Digest, Sha256};

use super::pidfd::pidfd_pid;

/// Largest `/proc` text file read.
const MAX_PROC_FILE: u64 = 256 * 1024;

/// A peer process pinned against pid reuse.
#[derive(Debug)]
pub struct Pinned {
    pid: i32,
    uid: u32,
    dir: OwnedFd,
    start_time: u64,
    pidfd: Option<OwnedFd>,
}

/// The process changed or vanished while it was being looked at.
#[derive(Debug, thiserror::Error)]
#[error("process {pid} {what}")]
pub struct Vanished {
    /// The pid.
    pub pid: i32,
    /// What happened.
    pub what: String,
}

impl Pinned {
    /// Pins `pid` (from SO_PEERCRED, with `uid`) and its pidfd when the kernel gave one.
    pub fn pin(pid: i32, uid: u32, pidfd: Option<OwnedFd>) -> Result<Self, Vanished> {
        let vanished = |what: String| Vanished { pid, what };
        if pid <= 0 {
            return Err(vanished("has no pid in this pid namespace".into()));
        }
        let dir =
            openat(CWD, format!("/proc/{pid}"), OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| vanished(format!("cannot be inspected: /proc/{pid}: {e}")))?;
        let mut pinned = Self { pid, uid, dir, start_time: 0, pidfd };
        if let Some(pidfd) = &pinned.pidfd {
            if pidfd_pid(pidfd) != Some(pid) {
                return Err(vanished("exited before it could be inspected".into()));
            }
        }
        pinned.start_time =
            pinned.read_start_time().map_err(|e| vanished(format!("exited before it could be inspected ({e})")))?;
        Ok(pinned)
    }

    /// The pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Reads a text file under `/proc/<pid>/` (bounded).
    pub fn read(&self, name: &str) -> io::Result<String> {
        let fd = openat(&self.dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        // /proc files report size 0; start with room for the whole file so it takes one read, not five.
        let mut text = String::with_capacity(4096);
        std::fs::File::from(fd).take(MAX_PROC_FILE).read_to_string(&mut text)?;
        Ok(text)
    }

    /// The executable's path, as the host sees it.
    pub fn exe(&self) -> Option<PathBuf> {
        let target = readlinkat(&self.dir, "exe", Vec::new()).ok()?;
        Some(PathBuf::from(target.to_string_lossy().into_owned()))
    }

    /// The process's pid namespace (`pid:[inode]`).
    pub fn pid_namespace(&self) -> Option<String> {
        readlinkat(&self.dir, "ns/pid", Vec::new()).ok().map(|t| t.to_string_lossy().into_owned())
    }

    /// SHA-256 of the executable the process runs (opened through `/proc/<pid>/exe`, so it is the
    /// very file mapped, even if the path was replaced since); `None` above `limit` bytes.
    pub fn exe_sha256(&self, limit: u64) -> Option<String> {
        let fd = openat(&self.dir, "exe", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
        let file = std::fs::File::from(fd);
        if file.metadata().ok()?.len() > limit {
            return None;
        }
        let mut hasher = Sha256::new();
        let mut reader = file.take(limit.saturating_add(1));
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = reader.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > limit {
                return None;
            }
            hasher.update(&buf[..n]);
        }
        Some(hex::encode(hasher.finalize()))
    }

    /// Checks, after all lookups, that the pinned process is still alive, with the same start time
    /// and uid. Call this last, right before acting on the facts.
    pub fn verify(&self) -> Result<(), Vanished> {
        let vanished = |what: &str| Vanished { pid: self.pid, what: what.to_string() };
        if let Some(pidfd) = &self.pidfd {
            if pidfd_pid(pidfd) != Some(self.pid) {
                return Err(vanished("exited during attestation"));
            }
        }
        match self.read_start_time() {
            Ok(start) if start == self.start_time => {}
            Ok(_) => return Err(vanished("was replaced by another process with the same pid")),
            Err(_) => return Err(vanished("exited during attestation")),
        }
        let status = self.read("status").map_err(|_| vanished("exited during attestation"))?;
        match parse_effective_uid(&status) {
            Some(uid) if uid == self.uid => Ok(()),
            Some(_) => Err(vanished("changed its uid during attestation")),
            None => Err(vanished("has an unreadable status")),
        }
    }

    /// The start time of a live process; an error once it has exited (a zombie has exited too: it
    /// only waits for its parent to collect the status).
    fn read_start_time(&self) -> io::Result<u64> {
        let stat = self.read("stat")?;
        if matches!(parse_state(&stat), Some('Z' | 'X' | 'x')) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "the process has exited (zombie)"));
        }
        parse_start_time(&stat).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed stat"))
    }
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks). The command name (field 2) is in
/// parentheses and may contain spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ")": field 3 (state) is the first; field 22 is the 20th.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// How many pid namespaces a process is in: the number of fields on the `NSpid:` line of
/// `/proc/<pid>/status` (1 for a host process, 2 for a process in a container, …).
pub fn parse_nspid_depth(status: &str) -> Option<usize> {
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    let depth = line.split_whitespace().count();
    (depth > 0).then_some(depth)
}

/// Field 3 of `/proc/<pid>/stat`: the process state (`R`, `S`, `Z` for a zombie, …).
pub fn parse_state(stat: &str) -> Option<char> {
    stat[stat.rfind(')')? + 1..].split_whitespace().next()?.chars().next()
}

/// The effective uid from `/proc/<pid>/status` (`Uid: real effective saved fs`).
pub fn parse_effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_hostile_command_names() {
        let tail = "S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 424242 19 20";
        for comm in ["(bash)", "(a b) c)", "((x))", "()"] {
            assert_eq!(parse_start_time(&format!("123 {comm} {tail}")), Some(424242), "{comm}");
        }
        assert_eq!(parse_start_time("123 (x) S 1"), None);
        assert_eq!(parse_state(&format!("123 (a) b) Z {tail}")), Some('Z'));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn nspid_depth() {
        assert_eq!(parse_nspid_depth("Name:\tx\nNSpid:\t16399\t6\n"), Some(2));
        assert_eq!(parse_nspid_depth("NSpid:\t16399\n"), Some(1));
        assert_eq!(parse_nspid_depth("Name:\tx\n"), None);
    }

    #[test]
    fn effective_uid() {
        assert_eq!(parse_effective_uid("Name:\tx\nUid:\t1000\t998\t998\t998\nGid:\t1\n"), Some(998));
        assert_eq!(parse_effective_uid("Name:\tx\n"), None);
    }

    #[test]
    fn pinning_ourselves_reads_real_facts() {
        let me = i32::try_from(std::process::id()).unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        let pinned = Pinned::pin(me, uid, None).unwrap();
        assert_eq!(pinned.exe(), std::env::current_exe().ok());
        assert!(pinned.exe_sha256(u64::MAX).is_some_and(|h| h.len() == 64));
        assert!(pinned.exe_sha256(1).is_none(), "above the limit: not hashed");
        pinned.verify().unwrap();
        assert!(Pinned::pin(me, uid + 1, None).unwrap().verify().is_err(), "a uid that does not match is refused");
    }

    #[test]
    fn a_process_that_exits_is_caught_even_if_its_pid_is_reused() {
        let mut child = std::process::Command::new("/bin/sleep").arg("30").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let pinned = Pinned::pin(pid, nix::unistd::geteuid().as_raw(), None).unwrap();
        pinned.verify().unwrap();
        child.kill().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(pinned.verify().is_err(), "a zombie (killed, not yet reaped) has exited");
        child.wait().unwrap();
        assert!(pinned.verify().is_err(), "reads through the held /proc fd fail once the process is gone");
        assert!(pinned.read("cgroup").is_err());
    }
}
