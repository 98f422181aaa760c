//! Is the caller in the host's pid and mount namespaces?
//!
//! Only Docker's cgroup forms mark a caller as containerized; a podman, LXC, nspawn or k3s container,
//! a Docker container with a custom cgroup parent, or a user's own `unshare` carries no Docker
//! cgroup, and reads its `exe` path inside its own mount namespace (where any binary can sit at any
//! path). A `unix`-only selector therefore matches only callers proven to share the pid and mount
//! namespaces of the host, meaning those of pid 1 as edgeseal sees it (`/proc/1/ns/{pid,mnt}`), or
//! where pid 1's links cannot be read, those of the kernel thread kthreadd (pid 2, checked to be a
//! kernel thread), which lives in the initial namespaces.
//!
//! The caller's namespace links are read through its pinned `/proc/<pid>` descriptor, which needs
//! ptrace access (root on the host, or CAP_SYS_PTRACE). Without it:
//! - pid namespace: `NSpid` in `/proc/<pid>/status` (readable by anyone) proves it when it has one
//!   field and the `/proc` edgeseal reads belongs to the initial pid namespace (edgeseal's own `NSpid`
//!   has one field and pid 2 is a kernel thread, which exist only there);
//! - mount namespace: there is no equivalent proof, so the answer is "unknown" and the caller is
//!   denied with the reason.
//!
//! [`decide`] is pure; [`observe`] gathers its inputs.

use std::fmt;

use serde::Serialize;

use super::kernel::{self, Pinned};

/// Whether the caller shares the host's pid and mount namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum HostNamespaces {
    /// Both proven equal to pid 1's.
    Yes,
    /// At least one differs: why.
    No(String),
    /// Could not be proven either way: why.
    Unknown(String),
}

impl Default for HostNamespaces {
    /// Fail closed: nothing was examined, nothing is proven.
    fn default() -> Self {
        HostNamespaces::Unknown("not examined".into())
    }
}

impl fmt::Display for HostNamespaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostNamespaces::Yes => f.write_str("yes"),
            HostNamespaces::No(why) => write!(f, "no ({why})"),
            HostNamespaces::Unknown(why) => write!(f, "unknown ({why})"),
        }
    }
}

/// What [`decide`] works from. Links are `Err(why)` when they could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The caller's `ns/pid` link.
    pub caller_pid: Result<String, String>,
    /// The caller's `ns/mnt` link.
    pub caller_mnt: Result<String, String>,
    /// pid 1's `ns/pid` link.
    pub host_pid: Result<String, String>,
    /// pid 1's `ns/mnt` link.
    pub host_mnt: Result<String, String>,
    /// Fields on the caller's `NSpid:` line, if its status could be read.
    pub caller_nspid_depth: Option<usize>,
    /// edgeseal's `/proc` belongs to the initial pid namespace and edgeseal is in it.
    pub proc_is_initial_pid_ns: bool,
}

/// Decides from the observations. A difference is reported before an unknown, the pid namespace
/// before the mount namespace.
pub fn decide(seen: &Observed) -> HostNamespaces {
    let pid = match (&seen.caller_pid, &seen.host_pid) {
        (Ok(caller), Ok(host)) if caller == host => Ok(()),
        (Ok(caller), Ok(host)) => {
            return HostNamespaces::No(format!(
                "its pid namespace {caller} is not the host's {host}: it runs in a container or under unshare"
            ))
        }
        _ => match seen.caller_nspid_depth {
            Some(depth) if depth > 1 => {
                return HostNamespaces::No(format!(
                    "it runs in a nested pid namespace (NSpid depth {depth}): a container or unshare"
                ))
            }
            Some(1) if seen.proc_is_initial_pid_ns => Ok(()),
            _ => Err(unreadable("pid", &seen.caller_pid, &seen.host_pid)),
        },
    };
    let mnt = match (&seen.caller_mnt, &seen.host_mnt) {
        (Ok(caller), Ok(host)) if caller == host => Ok(()),
        (Ok(caller), Ok(host)) => {
            return HostNamespaces::No(format!(
                "its mount namespace {caller} is not the host's {host}: it runs in a container, under unshare, or in a systemd unit with its own mounts (PrivateTmp=, ProtectSystem=, …)"
            ))
        }
        _ => Err(unreadable("mount", &seen.caller_mnt, &seen.host_mnt)),
    };
    match (pid, mnt) {
        (Ok(()), Ok(())) => HostNamespaces::Yes,
        (Err(why), _) | (_, Err(why)) => HostNamespaces::Unknown(why),
    }
}

fn unreadable(kind: &str, caller: &Result<String, String>, host: &Result<String, String>) -> String {
    let why = match (caller, host) {
        (Err(e), _) => format!("the caller's: {e}"),
        (_, Err(e)) => format!("pid 1's: {e}"),
        _ => "no proof".into(),
    };
    format!(
        "edgeseal cannot read the {kind} namespace links ({why}); it needs ptrace access (run it as root on the host, or grant CAP_SYS_PTRACE) to prove a caller is a host process"
    )
}

/// Reads the observations for a pinned caller.
pub fn observe(pinned: &Pinned) -> Observed {
    let caller_pid = pinned.namespace("pid").map_err(|e| e.to_string());
    let (host_pid, host_mnt) = host_namespaces().clone();
    // The NSpid fallback is only read when the links do not answer.
    let caller_nspid_depth = match (&caller_pid, &host_pid) {
        (Ok(_), Ok(_)) => None,
        _ => pinned.read("status").ok().and_then(|s| kernel::parse_nspid_depth(&s)),
    };
    Observed {
        caller_pid,
        caller_mnt: pinned.namespace("mnt").map_err(|e| e.to_string()),
        host_pid,
        host_mnt,
        caller_nspid_depth,
        proc_is_initial_pid_ns: proc_is_initial_pid_ns(),
    }
}

/// The host's pid and mount namespace links, read once: they do not change while edgeseal runs, and
/// neither does whether edgeseal may read them.
fn host_namespaces() -> &'static (Result<String, String>, Result<String, String>) {
    static HOST: std::sync::OnceLock<(Result<String, String>, Result<String, String>)> = std::sync::OnceLock::new();
    HOST.get_or_init(|| (host_namespace("pid"), host_namespace("mnt")))
}

/// The host's namespace link of `kind`: pid 1's; where edgeseal may not read pid 1's links (an init
/// with capabilities edgeseal lacks, a sandbox), those of pid 2 when it is a kernel thread (kthreadd),
/// which the kernel keeps in the initial namespaces and which no process can pass for.
fn host_namespace(kind: &str) -> Result<String, String> {
    let link =
        |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).map(|t| t.to_string_lossy().into_owned());
    link(1).or_else(|init| {
        let kthreadd = std::fs::read_to_string("/proc/2/stat").ok().is_some_and(|s| kernel::is_kernel_thread(&s));
        match kthreadd {
            true => link(2).map_err(|e| format!("{init}; kthreadd's: {e}")),
            false => Err(init.to_string()),
        }
    })
}

/// edgeseal's own `NSpid` has one field (it is in the pid namespace of the `/proc` it reads) and
/// pid 2 is a kernel thread (so that `/proc` is the initial pid namespace's). Computed once.
fn proc_is_initial_pid_ns() -> bool {
    static ANSWER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ANSWER.get_or_init(|| {
        let own = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| kernel::parse_nspid_depth(&s));
        let kthreadd = std::fs::read_to_string("/proc/2/stat").ok().is_some_and(|s| kernel::is_kernel_thread(&s));
        own == Some(1) && kthreadd
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PID: &str = "pid:[4026531836]";
    const MNT: &str = "mnt:[4026531841]";

    fn host_view() -> Observed {
        Observed {
            caller_pid: Ok(PID.into()),
            caller_mnt: Ok(MNT.into()),
            host_pid: Ok(PID.into()),
            host_mnt: Ok(MNT.into()),
            caller_nspid_depth: None,
            proc_is_initial_pid_ns: true,
        }
    }

    fn denied() -> Result<String, String> {
        Err("Permission denied (os error 13)".into())
    }

    #[test]
    fn table() {
        enum Want {
            Yes,
            No(&'static str),
            Unknown(&'static str),
        }
        let cases: Vec<(&str, Observed, Want)> = vec![
            ("host process", host_view(), Want::Yes),
            (
                "unshare --pid",
                Observed { caller_pid: Ok("pid:[4026532000]".into()), ..host_view() },
                Want::No("pid namespace pid:[4026532000] is not the host's"),
            ),
            (
                "unshare --mount",
                Observed { caller_mnt: Ok("mnt:[4026532001]".into()), ..host_view() },
                Want::No("mount namespace mnt:[4026532001] is not the host's"),
            ),
            (
                "both differ: the pid namespace is named",
                Observed { caller_pid: Ok("pid:[1]".into()), caller_mnt: Ok("mnt:[2]".into()), ..host_view() },
                Want::No("pid namespace"),
            ),
            (
                "no ptrace access, NSpid proves the pid ns, mount ns unknown",
                Observed { caller_pid: denied(), caller_mnt: denied(), caller_nspid_depth: Some(1), ..host_view() },
                Want::Unknown("cannot read the mount namespace"),
            ),
            (
                "no ptrace access, nested NSpid is a proof of difference",
                Observed { caller_pid: denied(), caller_mnt: denied(), caller_nspid_depth: Some(2), ..host_view() },
                Want::No("nested pid namespace (NSpid depth 2)"),
            ),
            (
                "NSpid depth 1 proves nothing when edgeseal's /proc is not the initial pid namespace",
                Observed {
                    caller_pid: denied(),
                    caller_nspid_depth: Some(1),
                    proc_is_initial_pid_ns: false,
                    ..host_view()
                },
                Want::Unknown("cannot read the pid namespace"),
            ),
            (
                "pid 1's links unreadable",
                Observed { host_pid: denied(), host_mnt: denied(), ..host_view() },
                Want::Unknown("pid 1's: Permission denied"),
            ),
            (
                "pid 1's mount link unreadable",
                Observed { host_mnt: denied(), ..host_view() },
                Want::Unknown("mount namespace links (pid 1's"),
            ),
            (
                "caller status unreadable too",
                Observed { caller_pid: denied(), caller_nspid_depth: None, ..host_view() },
                Want::Unknown("CAP_SYS_PTRACE"),
            ),
        ];
        for (name, seen, want) in cases {
            let got = decide(&seen);
            match (&got, want) {
                (HostNamespaces::Yes, Want::Yes) => {}
                (HostNamespaces::No(why), Want::No(text)) | (HostNamespaces::Unknown(why), Want::Unknown(text)) => {
                    assert!(why.contains(text), "{name}: {why:?} lacks {text:?}");
                }
                _ => panic!("{name}: got {got:?}"),
            }
        }
    }

    #[test]
    fn the_default_is_not_a_proof() {
        assert!(matches!(HostNamespaces::default(), HostNamespaces::Unknown(_)));
    }

    #[test]
    fn this_test_process_is_observed_like_pid_1_when_run_as_root_on_the_host() {
        let me = i32::try_from(std::process::id()).unwrap();
        let pinned = Pinned::pin(me, nix::unistd::geteuid().as_raw(), None).unwrap();
        let seen = observe(&pinned);
        assert!(seen.caller_pid.is_ok() && seen.caller_mnt.is_ok(), "a process may always read its own links");
        if seen.host_pid.is_ok() && seen.host_mnt.is_ok() {
            let same = seen.caller_pid == seen.host_pid && seen.caller_mnt == seen.host_mnt;
            assert_eq!(decide(&seen) == HostNamespaces::Yes, same, "{seen:?}");
        }
    }
}
