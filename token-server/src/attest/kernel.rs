//! Kernel facts about a peer process, read through a held `/proc/<pid>` directory descriptor.
//!
//! Holding the directory pins the process: if it exits and its pid is reused, reads through the old
//! descriptor fail (ESRCH) instead of describing the new process. With a pidfd (SO_PEERPIDFD, the
//! usual case), "still the same process" is one `poll` of it: a process whose pidfd is not readable has
//! not exited, so its pid was never reused and everything read through `/proc/<pid>` described it.
//! Without one, the start time (field 22 of `stat`) is read at pin time and compared again after every
//! other lookup. The effective uid is compared again in both cases: with a pidfd, from
//! `PIDFD_GET_INFO` (Linux ≥ 6.13; one ioctl), otherwise from `/proc/<pid>/status`.

use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use rustix::fs::{openat, readlinkat, Mode, OFlags, CWD};

use super::pidfd::pidfd_exited;

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
        match &pinned.pidfd {
            // SO_PEERCRED and SO_PEERPIDFD name the same process (the socket's peer): alive after the
            // directory was opened means the directory is that process's.
            Some(pidfd) if pidfd_exited(pidfd) => return Err(vanished("exited before it could be inspected".into())),
            Some(_) => {}
            None => {
                pinned.start_time = pinned
                    .read_start_time()
                    .map_err(|e| vanished(format!("exited before it could be inspected ({e})")))?;
            }
        }
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

    /// The executable's path, as the host sees it. Reading the link does not open the file (the
    /// kernel prints the path it holds), so this never waits on the executable's file system.
    pub fn exe(&self) -> Option<PathBuf> {
        let target = readlinkat(&self.dir, "exe", Vec::new()).ok()?;
        Some(PathBuf::from(target.to_string_lossy().into_owned()))
    }

    /// The process's pid namespace (`pid:[inode]`).
    pub fn pid_namespace(&self) -> Option<String> {
        self.namespace("pid").ok()
    }

    /// One of the process's namespace links, `ns/<kind>` (`mnt:[4026531841]`). Reading it needs
    /// ptrace access to the process (root on the host, or CAP_SYS_PTRACE).
    pub fn namespace(&self, kind: &str) -> io::Result<String> {
        let target = readlinkat(&self.dir, format!("ns/{kind}"), Vec::new())?;
        Ok(target.to_string_lossy().into_owned())
    }

    /// A duplicate of the held `/proc/<pid>` directory descriptor (for work moved to another thread,
    /// such as opening the executable: see [`super::exe::ExeOpener`]). Touches no file system.
    pub fn dir(&self) -> io::Result<OwnedFd> {
        self.dir.try_clone()
    }

    /// The executable the process runs, opened through `/proc/<pid>/exe`: the very file mapped, even
    /// if its path was replaced since. Blocking, and it goes to the file system the executable lives
    /// on (which may be the caller's own FUSE mount that never answers): the attestor never calls it
    /// on an async worker, it uses [`super::exe::ExeOpener`].
    pub fn open_exe(&self) -> io::Result<std::fs::File> {
        let fd = openat(&self.dir, "exe", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(std::fs::File::from(fd))
    }

    /// SHA-256 of the executable the process runs; `None` above `limit` bytes. Blocking: the
    /// attestor runs it through [`super::exe::ExeHasher`], off the async workers and cached.
    pub fn exe_sha256(&self, limit: u64) -> Option<String> {
        super::exe::sha256_file(&self.open_exe().ok()?, limit)
    }

    /// Checks, after all lookups, that the pinned process is still alive, with the same start time
    /// and uid. Call this last, right before acting on the facts.
    pub fn verify(&self) -> Result<(), Vanished> {
        let vanished = |what: &str| Vanished { pid: self.pid, what: what.to_string() };
        match &self.pidfd {
            Some(pidfd) if pidfd_exited(pidfd) => return Err(vanished("exited during attestation")),
            // Alive (the poll), the same process (a pidfd is never reused): only the uid is left to
            // check, and the kernel tells it without a `/proc` file to render.
            Some(pidfd) => match super::pidfd::effective_uid(pidfd) {
                Ok(Some(uid)) if uid == self.uid => return Ok(()),
                Ok(Some(_)) => return Err(vanished("changed its uid during attestation")),
                Ok(None) => {}
                Err(_) => return Err(vanished("exited during attestation")),
            },
            None => match self.read_start_time() {
                Ok(start) if start == self.start_time => {}
                Ok(_) => return Err(vanished("was replaced by another process with the same pid")),
                Err(_) => return Err(vanished("exited during attestation")),
            },
        }
        let status = self.read("status").map_err(|_| vanished("exited during attestation"))?;
        // Without a pidfd (or before Linux 6.13): a main thread that exited while others run shows as
        // a zombie here, and counts as exited. (With PIDFD_GET_INFO such a process is alive, which it
        // is; its executable link is gone with its memory map, so the executable check that precedes
        // this one refuses it when it was readable at connect.)
        if matches!(parse_status_state(&status), Some('Z' | 'X' | 'x')) {
            return Err(vanished("exited during attestation"));
        }
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
        if matches!(parse_state(&stat), Some('Z' | 'X' | 'x')) || is_exiting(&stat) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "the process has exited (or is exiting)"));
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

/// The `NSpid:` line of `/proc/<pid>/status`: the process's pid in each pid namespace it is in,
/// from the one of the `/proc` that was read down to its own. `None` when the line is missing, empty,
/// repeated, or holds anything but positive pids. Pure; fuzzed.
pub fn parse_nspid(status: &str) -> Option<Vec<u32>> {
    let mut lines = status.lines().filter_map(|l| l.strip_prefix("NSpid:"));
    let line = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    let pids = line.split_whitespace().map(|f| f.parse::<u32>().ok().filter(|p| *p > 0)).collect::<Option<Vec<_>>>()?;
    (!pids.is_empty()).then_some(pids)
}

/// How many pid namespaces a process is in, as seen from the `/proc` that was read (1: the same pid
/// namespace as that `/proc`, 2: one level below, …). See [`parse_nspid`].
pub fn parse_nspid_depth(status: &str) -> Option<usize> {
    parse_nspid(status).map(|pids| pids.len())
}

/// `PF_KTHREAD`: the flag the kernel sets on its own threads (field 9 of `stat`).
const PF_KTHREAD: u64 = 0x0020_0000;

/// `PF_EXITING`: set when a process starts to exit, before its memory (and so its executable link)
/// is released and long before it shows as a zombie.
const PF_EXITING: u64 = 0x4;

/// Field 9 of `/proc/<pid>/stat` (the kernel's `PF_*` flags).
fn parse_flags(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ")": field 3 (state) is the first; field 9 (flags) is the 7th.
    rest.split_whitespace().nth(6)?.parse().ok()
}

/// Whether a `/proc/<pid>/stat` line describes a kernel thread. Kernel threads exist only in the
/// initial pid namespace, and no process can set the flag: seeing one in a `/proc` proves that
/// `/proc` belongs to the host's pid namespace.
pub fn is_kernel_thread(stat: &str) -> bool {
    parse_flags(stat).is_some_and(|flags| flags & PF_KTHREAD != 0)
}

/// Whether a `/proc/<pid>/stat` line describes a process that has begun to exit: its executable
/// link may already be unreadable while its state is not yet `Z`.
pub fn is_exiting(stat: &str) -> bool {
    parse_flags(stat).is_some_and(|flags| flags & PF_EXITING != 0)
}

/// Field 3 of `/proc/<pid>/stat`: the process state (`R`, `S`, `Z` for a zombie, …).
pub fn parse_state(stat: &str) -> Option<char> {
    stat[stat.rfind(')')? + 1..].split_whitespace().next()?.chars().next()
}

/// The state letter from `/proc/<pid>/status` (`State:\tZ (zombie)`).
pub fn parse_status_state(status: &str) -> Option<char> {
    status.lines().find_map(|l| l.strip_prefix("State:"))?.trim_start().chars().next()
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
    fn status_state() {
        let cases = [
            ("Name:\tx\nState:\tS (sleeping)\nUid:\t0\t0\t0\t0\n", Some('S')),
            ("State:\tZ (zombie)\n", Some('Z')),
            ("State:\tX (dead)\n", Some('X')),
            ("Name:\tState: Z\n", None),
            ("", None),
        ];
        for (status, want) in cases {
            assert_eq!(parse_status_state(status), want, "{status:?}");
        }
    }

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
        let cases: [(&str, Option<Vec<u32>>); 9] = [
            ("NSpid:\t16399\t6\t1\n", Some(vec![16399, 6, 1])),
            ("Name:\tNSpid: 3\nNSpid:\t7\n", Some(vec![7])),
            ("NSpid:\n", None),
            ("NSpid:\t12\tx\n", None),
            ("NSpid:\t-1\n", None),
            ("NSpid:\t0\n", None),
            ("NSpid:\t99999999999\n", None),
            ("NSpid:\t1\nNSpid:\t1\t2\n", None),
            ("", None),
        ];
        for (status, want) in cases {
            assert_eq!(parse_nspid(status), want, "{status:?}");
        }
    }

    #[test]
    fn kernel_threads() {
        let kthreadd = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 2 0 0";
        assert!(is_kernel_thread(kthreadd));
        assert!(!is_kernel_thread("2 (bash) S 1 2 2 0 -1 4194560 0 0 0 0"));
        assert!(!is_kernel_thread("2 (x) 2129984) S 1 2 2 0 -1 0 0"), "the flag is counted after the last ')'");
        assert!(!is_kernel_thread("garbage"));
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            assert!(!is_kernel_thread(&stat), "this test is not a kernel thread");
        }
    }

    #[test]
    fn an_exiting_process_is_told_by_its_flags() {
        // 4194564 = PF_RANDOMIZE | PF_EXITING: released its memory, not yet a zombie.
        assert!(is_exiting("2265 (python3.11) R 1 2 2 0 -1 4194564 0 0 0 0"));
        assert!(!is_exiting("2265 (python3.11) S 1 2 2 0 -1 4194560 0 0 0 0"));
        assert!(!is_exiting("2 (x) 4) S 1 2 2 0 -1 0 0"), "the flags are counted after the last ')'");
        assert!(!is_exiting("garbage"));
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            assert!(!is_exiting(&stat), "this test is not exiting");
        }
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
        // With a pidfd (the uid then comes from PIDFD_GET_INFO where the kernel has it).
        let pidfd = || {
            let raw = rustix::process::Pid::from_raw(me).unwrap();
            Some(rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()).unwrap())
        };
        Pinned::pin(me, uid, pidfd()).unwrap().verify().unwrap();
        assert!(Pinned::pin(me, uid + 1, pidfd()).unwrap().verify().is_err(), "with a pidfd too");
    }

    #[test]
    fn a_process_that_exits_is_caught_even_if_its_pid_is_reused() {
        // Pinned by /proc alone (start time), and by a pidfd (as SO_PEERPIDFD gives): both must catch it.
        for with_pidfd in [false, true] {
            let mut child = std::process::Command::new("/bin/sleep").arg("30").spawn().unwrap();
            let pid = i32::try_from(child.id()).unwrap();
            let pidfd = with_pidfd.then(|| {
                let raw = rustix::process::Pid::from_raw(pid).unwrap();
                rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()).unwrap()
            });
            let pinned = Pinned::pin(pid, nix::unistd::geteuid().as_raw(), pidfd).unwrap();
            pinned.verify().unwrap();
            child.kill().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(100));
            assert!(pinned.verify().is_err(), "a zombie (killed, not yet reaped) has exited (pidfd: {with_pidfd})");
            child.wait().unwrap();
            assert!(pinned.verify().is_err(), "gone: caught (pidfd: {with_pidfd})");
            assert!(pinned.read("cgroup").is_err(), "reads through the held /proc fd fail once the process is gone");
            let late = pinned.pidfd.as_ref().map(|fd| fd.try_clone().unwrap());
            assert!(Pinned::pin(pid, 0, late).is_err(), "pinning an exited process fails (pidfd: {with_pidfd})");
        }
    }
}
