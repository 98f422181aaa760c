//! The caller's container id, from `/proc/<pid>/cgroup` only (never mountinfo, which a container
//! controls). Pure.
//!
//! Forms recognised in each line's path: cgroup v1 and cgroupfs `/docker/<id>`, the systemd driver's
//! `docker-<id>.scope`, and nested `/../<id>` paths; a 64-hex id must be a whole path segment (or the
//! core of a `docker-<id>.scope` segment). Exactly one distinct id across all lines, or none.

use thiserror::Error;

/// Why the cgroup file does not name exactly one container.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CgroupError {
    /// Different container ids on different lines.
    #[error("the process's cgroups name {0} different container ids")]
    Ambiguous(usize),
    /// The file is not in the kernel's format.
    #[error("malformed cgroup line {0}")]
    Malformed(usize),
}

/// The container id (64 lowercase hex) the process belongs to, `None` for a host process.
pub fn container_id(cgroup_file: &str) -> Result<Option<String>, CgroupError> {
    let mut found: Option<&str> = None;
    for (n, line) in cgroup_file.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        // hierarchy-ID:controller-list:cgroup-path; the path may itself contain ':'.
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(_), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CgroupError::Malformed(n + 1));
        };
        for segment in path.split('/') {
            let candidate = segment.strip_prefix("docker-").and_then(|s| s.strip_suffix(".scope")).unwrap_or(segment);
            if is_container_id(candidate) {
                match found {
                    Some(id) if id != candidate => return Err(CgroupError::Ambiguous(2)),
                    _ => found = Some(candidate),
                }
            }
        }
    }
    Ok(found.map(str::to_string))
}

/// The systemd unit named by the `name=systemd` (v1) or unified (v2) line, if any.
pub fn systemd_unit(cgroup_file: &str) -> Option<String> {
    let mut unit = None;
    for line in cgroup_file.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        if controllers == "name=systemd" || (controllers.is_empty() && unit.is_none()) {
            if let Some(last) = path.rsplit('/').find(|s| s.ends_with(".service") || s.ends_with(".scope")) {
                unit = Some(last.to_string());
            }
        }
    }
    unit
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0a324bb8a3156d3b099482d165c49338ce9a005d967db33880d933f1a9b266c2";
    const OTHER: &str = "1b324bb8a3156d3b099482d165c49338ce9a005d967db33880d933f1a9b266c2";

    #[test]
    fn container_ids_in_every_known_form() {
        let v1 = format!("9:name=systemd:/docker/{ID}\n8:pids:/docker/{ID}\n1:cpu:/docker/{ID}\n0::/docker/{ID}\n");
        let v2_systemd = format!("0::/system.slice/docker-{ID}.scope\n");
        let nested = format!("0::/../{ID}\n");
        let kubepods = format!("0::/kubepods/besteffort/pod1/{ID}\n");
        let host = "12:memory:/user.slice\n0::/user.slice/user-0.slice/session-1.scope\n";
        let cases: Vec<(&str, Result<Option<String>, CgroupError>)> = vec![
            (&v1, Ok(Some(ID.into()))),
            (&v2_systemd, Ok(Some(ID.into()))),
            (&nested, Ok(Some(ID.into()))),
            (&kubepods, Ok(Some(ID.into()))),
            (host, Ok(None)),
            ("", Ok(None)),
            ("4:memory:/process_api/abc\n", Ok(None)),
        ];
        for (input, want) in cases {
            assert_eq!(container_id(input), want, "{input:?}");
        }
    }

    #[test]
    fn ambiguous_or_malformed_files_are_refused() {
        let two = format!("1:cpu:/docker/{ID}\n0::/docker/{OTHER}\n");
        assert_eq!(container_id(&two), Err(CgroupError::Ambiguous(2)));
        let nested_two = format!("0::/docker/{ID}/docker/{OTHER}\n");
        assert_eq!(container_id(&nested_two), Err(CgroupError::Ambiguous(2)));
        assert_eq!(container_id("garbage\n"), Err(CgroupError::Malformed(1)));
    }

    #[test]
    fn ids_must_be_whole_segments_of_lowercase_hex() {
        let upper = ID.to_uppercase();
        let cases = [
            format!("0::/docker/{upper}\n"),
            format!("0::/docker/x{ID}\n"),
            format!("0::/docker/{}\n", &ID[..63]),
            format!("0::/docker/{ID}0\n"),
            format!("0::/docker-{ID}.slice\n"),
        ];
        for input in cases {
            assert_eq!(container_id(&input), Ok(None), "{input:?}");
        }
    }

    #[test]
    fn systemd_units() {
        assert_eq!(systemd_unit("1:name=systemd:/system.slice/metrics.service\n").as_deref(), Some("metrics.service"));
        assert_eq!(systemd_unit("0::/system.slice/cron.service\n").as_deref(), Some("cron.service"));
        assert_eq!(systemd_unit("0::/\n"), None);
    }
}
