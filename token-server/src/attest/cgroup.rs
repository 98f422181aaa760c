//! The caller's container id, from `/proc/<pid>/cgroup` only (never mountinfo, which a container
//! controls). Pure.
//!
//! Forms recognised, as the **last** segment of a line's path: `/docker/<id>` (cgroupfs driver, v1 and
//! v2), `docker-<id>.scope` (systemd driver) and `/../<id>` (seen across cgroup namespaces). An id
//! anywhere else is not a container: in particular nothing under `user.slice` or `user@…`, subtrees
//! that unprivileged users may create cgroups in (a user could otherwise name a cgroup after a
//! container's id). Exactly one distinct id across all lines, or none.

use thiserror::Error;

/// Why the cgroup file does not name exactly one container.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CgroupError {
    /// Different container ids on different lines, or nested containers.
    #[error("the process's cgroups name more than one container")]
    Ambiguous,
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
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if segments.iter().any(|s| *s == "user.slice" || s.starts_with("user@")) {
            continue;
        }
        let Some(id) = line_container_id(&segments) else { continue };
        // Nested containers (an id above the last one) are refused rather than guessed.
        let nested = segments[..segments.len() - 1].iter().any(|s| is_container_id(scope_core(s)));
        match found {
            _ if nested => return Err(CgroupError::Ambiguous),
            Some(other) if other != id => return Err(CgroupError::Ambiguous),
            _ => found = Some(id),
        }
    }
    Ok(found.map(str::to_string))
}

/// The id named by the last segment of one path, in one of the recognised forms.
fn line_container_id<'a>(segments: &[&'a str]) -> Option<&'a str> {
    let (last, parent) = match segments {
        [.., parent, last] => (*last, Some(*parent)),
        [last] => (*last, None),
        [] => return None,
    };
    if let Some(id) = last.strip_prefix("docker-").and_then(|s| s.strip_suffix(".scope")) {
        return is_container_id(id).then_some(id);
    }
    (is_container_id(last) && matches!(parent, Some("docker" | ".."))).then_some(last)
}

fn scope_core(segment: &str) -> &str {
    segment.strip_prefix("docker-").and_then(|s| s.strip_suffix(".scope")).unwrap_or(segment)
}

/// The systemd system unit of the process: the last segment of its `name=systemd` (v1) or unified (v2)
/// path, only directly under `system.slice` — never a unit in a user's own service manager, which any
/// user can name as they like.
pub fn systemd_unit(cgroup_file: &str) -> Option<String> {
    let mut unit = None;
    for line in cgroup_file.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        if controllers == "name=systemd" || (controllers.is_empty() && unit.is_none()) {
            let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            if let ["system.slice", name] = segments.as_slice() {
                if name.ends_with(".service") || name.ends_with(".scope") {
                    unit = Some((*name).to_string());
                }
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
        let user_scope = format!("0::/user.slice/user-1000.slice/user@1000.service/app.slice/docker-{ID}.scope\n");
        let user_dir = format!("0::/user.slice/user-1000.slice/session-3.scope/docker/{ID}\n");
        let not_last = format!("0::/docker/{ID}/extra\n");
        let host = "12:memory:/user.slice\n0::/user.slice/user-0.slice/session-1.scope\n";
        let cases: Vec<(&str, Result<Option<String>, CgroupError>)> = vec![
            (&v1, Ok(Some(ID.into()))),
            (&v2_systemd, Ok(Some(ID.into()))),
            (&nested, Ok(Some(ID.into()))),
            (&kubepods, Ok(None)),
            (&user_scope, Ok(None)),
            (&user_dir, Ok(None)),
            (&not_last, Ok(None)),
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
        assert_eq!(container_id(&two), Err(CgroupError::Ambiguous));
        let nested_two = format!("0::/docker/{ID}/docker/{OTHER}\n");
        assert_eq!(container_id(&nested_two), Err(CgroupError::Ambiguous));
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
        let user_unit = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/metrics.service\n";
        assert_eq!(systemd_unit(user_unit), None, "a user's own unit never passes for a system unit");
    }
}
