//! Matching attested facts against the services' selectors. Pure.
//!
//! A service matches when every selector it has matches. A `unix`-only selector matches host
//! processes only, meaning processes whose cgroup names no container *and* that share the host's pid
//! and mount namespaces (those of pid 1): a container of any runtime running as uid 0 must not pass
//! for a host daemon running as uid 0. Exactly one service must match; zero or several is a denial.
//!
//! A denial answers the caller with its own facts only ([`Outcome::explain`]); the per-service
//! reasons, which name other services and their selectors, are for the server's log
//! ([`Outcome::log_detail`]).

use std::path::Path;

use crate::attest::facts::Facts;
use crate::attest::namespaces::HostNamespaces;
use crate::config::{DockerSelector, ServiceRule, UnixSelector};

/// The result of matching one caller against every service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exactly one service matched.
    Matched(String),
    /// None matched; for each service, the first thing that did not match.
    NoMatch(Vec<(String, String)>),
    /// Several matched: refusing is the only safe answer.
    Ambiguous(Vec<String>),
}

impl Outcome {
    /// What the caller is told: nothing about any service it does not match (no names, no
    /// selectors). Denial bodies put the caller's own facts ([`Facts::describe`]) next to it.
    pub fn explain(&self) -> String {
        match self {
            Outcome::Matched(name) => format!("matches service {name}"),
            Outcome::NoMatch(_) => {
                "no service matches your process (the server's log says which selector failed for each service)".into()
            }
            Outcome::Ambiguous(_) => "ambiguous: the selectors of several services match your process; the operator must make them distinct (the server's log names them)".into(),
        }
    }

    /// What the server logs: for each service, the first thing that did not match, or the names of
    /// the services that all matched. Never sent to the caller.
    pub fn log_detail(&self) -> String {
        match self {
            Outcome::Matched(name) => format!("matches service {name}"),
            Outcome::NoMatch(reasons) if reasons.is_empty() => "no service is configured".into(),
            Outcome::NoMatch(reasons) => {
                let parts: Vec<String> = reasons.iter().map(|(s, why)| format!("{s}: {why}")).collect();
                format!("no service matches ({})", parts.join("; "))
            }
            Outcome::Ambiguous(names) => {
                format!("ambiguous: the selectors of several services match this caller ({})", names.join(", "))
            }
        }
    }

    /// A denial as (the body's message for the caller, the detail for the server's log line).
    pub fn denial(&self, facts: &Facts) -> (String, String) {
        (format!("saw {}; {}", facts.describe(), self.explain()), self.log_detail())
    }
}

/// Whether the executable's SHA-256 is needed for a caller: some rule asks for `unix.sha256` and
/// could match the caller by uid, gid, kind (a `unix`-only rule never matches a container), systemd
/// unit and executable path (all known before hashing).
pub fn wants_exe_hash(
    rules: &[ServiceRule],
    uid: u32,
    gid: u32,
    in_container: bool,
    systemd_unit: Option<&str>,
    exe: Option<&Path>,
) -> bool {
    rules.iter().any(|rule| {
        let Some(unix) = rule.selectors.unix.as_ref().filter(|u| u.sha256.is_some()) else { return false };
        could_match(rule, unix, uid, gid, in_container)
            && unix.systemd_unit.as_deref().is_none_or(|want| Some(want) == systemd_unit)
            && unix.path.as_deref().is_none_or(|want| Some(want) == exe)
    })
}

/// Whether the executable file must be opened for a caller (its identity for the exec check, its
/// contents for a hash): some rule with `unix.path` or `unix.sha256` could match the caller by uid,
/// gid, kind and systemd unit. Opening it may block (see [`crate::attest`]), so callers no such
/// rule could match never get it opened.
pub fn wants_exe_file(
    rules: &[ServiceRule],
    uid: u32,
    gid: u32,
    in_container: bool,
    systemd_unit: Option<&str>,
) -> bool {
    rules.iter().any(|rule| {
        let Some(unix) = rule.selectors.unix.as_ref().filter(|u| u.sha256.is_some() || u.path.is_some()) else {
            return false;
        };
        could_match(rule, unix, uid, gid, in_container)
            && unix.systemd_unit.as_deref().is_none_or(|want| Some(want) == systemd_unit)
    })
}

fn could_match(rule: &ServiceRule, unix: &UnixSelector, uid: u32, gid: u32, in_container: bool) -> bool {
    unix.uid.is_none_or(|want| want == uid)
        && unix.gid.is_none_or(|want| want == gid)
        && (rule.selectors.docker.is_some() || !in_container)
}

/// Matches `facts` against every rule.
pub fn match_services(facts: &Facts, rules: &[ServiceRule]) -> Outcome {
    let mut matched = Vec::new();
    let mut reasons = Vec::new();
    for rule in rules {
        match check(facts, rule) {
            Ok(()) => matched.push(rule.name.clone()),
            Err(why) => reasons.push((rule.name.clone(), why)),
        }
    }
    match matched.len() {
        0 => Outcome::NoMatch(reasons),
        1 => Outcome::Matched(matched.remove(0)),
        _ => Outcome::Ambiguous(matched),
    }
}

fn check(facts: &Facts, rule: &ServiceRule) -> Result<(), String> {
    let selectors = &rule.selectors;
    if selectors.unix.is_none() && selectors.docker.is_none() {
        return Err("has no selectors (file token only)".into());
    }
    if selectors.docker.is_none() {
        if facts.container_id.is_some() {
            return Err("unix-only selectors match host processes, caller is in a container".into());
        }
        match &facts.host_namespaces {
            HostNamespaces::Yes => {}
            HostNamespaces::No(why) => {
                return Err(format!("unix-only selectors match host processes only, and this caller is not one: {why}"))
            }
            HostNamespaces::Unknown(why) => {
                return Err(format!(
                    "unix-only selectors match host processes only, and this caller is not proven one: {why}"
                ))
            }
        }
    }
    if let Some(unix) = &selectors.unix {
        check_unix(facts, unix)?;
    }
    match &selectors.docker {
        Some(docker) => check_docker(facts, docker),
        None => Ok(()),
    }
}

fn check_unix(facts: &Facts, want: &UnixSelector) -> Result<(), String> {
    if let Some(uid) = want.uid {
        if uid != facts.uid {
            return Err(format!("unix.uid wants {uid}, saw {}", facts.uid));
        }
    }
    if let Some(gid) = want.gid {
        if gid != facts.gid {
            return Err(format!("unix.gid wants {gid}, saw {}", facts.gid));
        }
    }
    if let Some(path) = &want.path {
        if facts.exe.as_ref() != Some(path) {
            let seen = facts.exe.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "unknown".into());
            return Err(format!("unix.path wants {}, saw {seen}", path.display()));
        }
    }
    if let Some(sha) = &want.sha256 {
        if facts.exe_sha256.as_deref() != Some(sha.to_ascii_lowercase().as_str()) {
            return Err("unix.sha256 does not match the executable".into());
        }
    }
    if let Some(unit) = &want.systemd_unit {
        if facts.systemd_unit.as_ref() != Some(unit) {
            let seen = facts.systemd_unit.as_deref().unwrap_or("none");
            return Err(format!("unix.systemd_unit wants {unit}, saw {seen}"));
        }
    }
    Ok(())
}

fn check_docker(facts: &Facts, want: &DockerSelector) -> Result<(), String> {
    let Some(container) = &facts.container else {
        return Err(match (&facts.container_id, &facts.docker_error) {
            (None, _) => "docker selectors need a container, caller is a host process".into(),
            (Some(_), Some(e)) => format!("the Docker daemon gave no facts about the caller's container: {e}"),
            (Some(_), None) => "the Docker daemon gave no facts about the caller's container".into(),
        });
    };
    if !container.running {
        return Err("the caller's container is not running".into());
    }
    let fields = [
        ("docker.compose_service", &want.compose_service, container.compose_service()),
        ("docker.compose_project", &want.compose_project, container.compose_project()),
        ("docker.name", &want.name, Some(container.name.as_str())),
        ("docker.image", &want.image, Some(container.image.as_str())),
    ];
    for (key, wanted, seen) in fields {
        if let Some(wanted) = wanted {
            if seen != Some(wanted.as_str()) {
                return Err(format!("{key} wants {wanted:?}, saw {:?}", seen.unwrap_or("none")));
            }
        }
    }
    for (label, value) in &want.labels {
        let seen = container.labels.get(label);
        if seen != Some(value) {
            return Err(format!(
                "docker.labels.{label} wants {value:?}, saw {:?}",
                seen.map(String::as_str).unwrap_or("none")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::facts::ContainerFacts;
    use crate::config::Selectors;
    use std::collections::BTreeMap;

    const ID: &str = "0a324bb8a3156d3b099482d165c49338ce9a005d967db33880d933f1a9b266c2";

    fn rule(name: &str, unix: Option<UnixSelector>, docker: Option<DockerSelector>) -> ServiceRule {
        ServiceRule {
            name: name.into(),
            role: format!("role-{name}"),
            selectors: Selectors { unix, docker },
            ttl: None,
            reuse: false,
            batch: false,
        }
    }

    fn compose(service: &str) -> DockerSelector {
        DockerSelector { compose_service: Some(service.into()), ..Default::default() }
    }

    fn in_container(service: &str, uid: u32) -> Facts {
        let labels = BTreeMap::from([("com.docker.compose.service".to_string(), service.to_string())]);
        Facts {
            pid: 100,
            uid,
            gid: uid,
            exe: Some("/usr/bin/app".into()),
            container_id: Some(ID.into()),
            container: Some(ContainerFacts {
                id: ID.into(),
                name: "x_1".into(),
                image: "app:1".into(),
                labels,
                running: true,
                init_pid: Some(1),
                init_pid_namespace: None,
            }),
            ..Default::default()
        }
    }

    fn host(uid: u32, exe: &str) -> Facts {
        Facts {
            pid: 200,
            uid,
            gid: uid,
            exe: Some(exe.into()),
            host_namespaces: HostNamespaces::Yes,
            ..Default::default()
        }
    }

    #[test]
    fn table() {
        let rules = vec![
            rule("alpha", None, Some(compose("alpha"))),
            rule("beta", None, Some(compose("beta"))),
            rule(
                "agent",
                Some(UnixSelector { uid: Some(998), path: Some("/usr/bin/agent".into()), ..Default::default() }),
                None,
            ),
            rule("file-only", None, None),
        ];
        let cases = [
            (in_container("alpha", 0), Outcome::Matched("alpha".into())),
            (in_container("beta", 1000), Outcome::Matched("beta".into())),
            (host(998, "/usr/bin/agent"), Outcome::Matched("agent".into())),
        ];
        for (facts, want) in cases {
            assert_eq!(match_services(&facts, &rules), want, "{}", facts.describe());
        }
        let denied = [
            (in_container("gamma", 0), "docker.compose_service wants \"alpha\", saw \"gamma\""),
            (host(1000, "/usr/bin/agent"), "unix.uid wants 998, saw 1000"),
            (host(998, "/tmp/agent"), "unix.path wants /usr/bin/agent, saw /tmp/agent"),
            (in_container("gamma", 998), "unix-only selectors match host processes"),
            (host(0, "/bin/sh"), "docker selectors need a container"),
            (host(0, "/bin/sh"), "file-only: has no selectors"),
        ];
        for (facts, want) in denied {
            let outcome = match_services(&facts, &rules);
            assert!(matches!(outcome, Outcome::NoMatch(_)), "{outcome:?}");
            assert!(outcome.log_detail().contains(want), "{want}: {}", outcome.log_detail());
        }
    }

    #[test]
    fn a_unix_only_selector_needs_the_host_namespaces() {
        let rules = vec![rule(
            "agent",
            Some(UnixSelector { uid: Some(998), path: Some("/usr/bin/agent".into()), ..Default::default() }),
            None,
        )];
        let cases = [
            (HostNamespaces::Yes, None),
            (
                HostNamespaces::No("its mount namespace mnt:[2] is not the host's mnt:[1]".into()),
                Some("mount namespace"),
            ),
            (HostNamespaces::No("its pid namespace pid:[2] is not the host's pid:[1]".into()), Some("pid namespace")),
            (HostNamespaces::Unknown("edgeseal cannot read the mount namespace links".into()), Some("not proven")),
            (HostNamespaces::default(), Some("not examined")),
        ];
        for (namespaces, denied) in cases {
            let facts = Facts { host_namespaces: namespaces.clone(), ..host(998, "/usr/bin/agent") };
            let outcome = match_services(&facts, &rules);
            match denied {
                None => assert_eq!(outcome, Outcome::Matched("agent".into()), "{namespaces:?}"),
                Some(text) => {
                    assert!(outcome.log_detail().contains(text), "{namespaces:?}: {}", outcome.log_detail());
                    let (public, _) = outcome.denial(&facts);
                    assert!(public.contains(&format!("host_namespaces={namespaces}")), "{public}");
                }
            }
        }
        // A docker selector does not need them: a container has its own namespaces by design.
        let docker_rules = vec![rule("alpha", None, Some(compose("alpha")))];
        let in_alpha = Facts { host_namespaces: HostNamespaces::No("container".into()), ..in_container("alpha", 0) };
        assert_eq!(match_services(&in_alpha, &docker_rules), Outcome::Matched("alpha".into()));
    }

    #[test]
    fn a_denial_tells_the_caller_nothing_about_other_services() {
        let rules = vec![
            rule("secret-alpha", None, Some(compose("alpha-compose-name"))),
            rule(
                "secret-agent",
                Some(UnixSelector { uid: Some(998), path: Some("/opt/agent/bin".into()), ..Default::default() }),
                None,
            ),
        ];
        let facts = host(1000, "/usr/bin/curl");
        for outcome in
            [match_services(&facts, &rules), Outcome::Ambiguous(vec!["secret-alpha".into(), "secret-agent".into()])]
        {
            let (public, log) = outcome.denial(&facts);
            for hidden in ["secret-alpha", "secret-agent", "alpha-compose-name", "998", "/opt/agent/bin"] {
                assert!(!public.contains(hidden), "{hidden} leaks: {public}");
            }
            assert!(public.contains("uid=1000") && public.contains("exe=/usr/bin/curl"), "{public}");
            assert!(log.contains("secret-agent"), "the log keeps the detail: {log}");
        }
    }

    #[test]
    fn hashing_is_wanted_only_for_callers_a_sha256_rule_could_match() {
        let sha = |uid: Option<u32>, gid: Option<u32>, docker: bool| {
            rule(
                "s",
                Some(UnixSelector { uid, gid, sha256: Some("ab".repeat(32)), ..Default::default() }),
                docker.then(|| compose("s")),
            )
        };
        let plain = rule("p", Some(UnixSelector { uid: Some(5), ..Default::default() }), None);
        let cases = [
            (vec![plain.clone()], (5, 5, false), false),
            (vec![plain, sha(Some(5), None, false)], (5, 7, false), true),
            (vec![sha(Some(5), None, false)], (6, 7, false), false),
            (vec![sha(Some(5), Some(7), false)], (5, 8, false), false),
            (vec![sha(Some(5), Some(7), false)], (5, 7, false), true),
            (vec![sha(None, None, false)], (5, 7, true), false),
            (vec![sha(None, None, true)], (5, 7, true), true),
            (vec![sha(Some(5), None, true)], (5, 7, false), true),
        ];
        for (rules, (uid, gid, in_container), want) in cases {
            assert_eq!(
                wants_exe_hash(&rules, uid, gid, in_container, None, None),
                want,
                "uid {uid} gid {gid} {in_container}"
            );
        }
    }

    #[test]
    fn hashing_is_also_filtered_by_the_rules_systemd_unit_and_path() {
        let sha = |unit: Option<&str>, path: Option<&str>| {
            let unix = UnixSelector {
                sha256: Some("ab".repeat(32)),
                systemd_unit: unit.map(str::to_string),
                path: path.map(Into::into),
                ..Default::default()
            };
            vec![rule("s", Some(unix), None)]
        };
        let agent = Some(Path::new("/usr/bin/agent"));
        let cases = [
            // A sha256 rule with only a systemd unit: callers in another unit (or none) are not hashed.
            (sha(Some("agent.service"), None), Some("agent.service"), agent, true),
            (sha(Some("agent.service"), None), Some("other.service"), agent, false),
            (sha(Some("agent.service"), None), None, agent, false),
            (sha(None, Some("/usr/bin/agent")), None, agent, true),
            (sha(None, Some("/usr/bin/agent")), None, Some(Path::new("/tmp/agent")), false),
            (sha(None, Some("/usr/bin/agent")), None, None, false),
            (sha(Some("agent.service"), Some("/usr/bin/agent")), Some("agent.service"), agent, true),
        ];
        for (rules, unit, exe, want) in cases {
            assert_eq!(wants_exe_hash(&rules, 5, 5, false, unit, exe), want, "{unit:?} {exe:?}");
        }
    }

    #[test]
    fn the_executable_is_opened_only_for_callers_a_path_or_sha256_rule_could_match() {
        let unix = |uid: u32, path: bool, sha: bool, unit: Option<&str>| {
            let unix = UnixSelector {
                uid: Some(uid),
                path: path.then(|| "/usr/bin/agent".into()),
                sha256: sha.then(|| "ab".repeat(32)),
                systemd_unit: unit.map(str::to_string),
                ..Default::default()
            };
            vec![rule("s", Some(unix), None)]
        };
        let cases = [
            (unix(5, false, false, None), (5, false, None), false),
            (unix(5, true, false, None), (5, false, None), true),
            (unix(5, false, true, None), (5, false, None), true),
            (unix(5, true, true, None), (6, false, None), false),
            (unix(5, true, false, None), (5, true, None), false),
            (unix(5, true, false, Some("a.service")), (5, false, Some("b.service")), false),
            (unix(5, true, false, Some("a.service")), (5, false, Some("a.service")), true),
            (vec![rule("d", None, Some(compose("d")))], (5, true, None), false),
        ];
        for (rules, (uid, in_container, unit), want) in cases {
            assert_eq!(wants_exe_file(&rules, uid, uid, in_container, unit), want, "uid {uid} {in_container} {unit:?}");
        }
    }

    #[test]
    fn a_unix_only_selector_never_matches_a_container_with_the_same_uid() {
        let rules = vec![rule("root-daemon", Some(UnixSelector { uid: Some(0), ..Default::default() }), None)];
        assert_eq!(match_services(&host(0, "/usr/sbin/d"), &rules), Outcome::Matched("root-daemon".into()));
        assert!(matches!(match_services(&in_container("x", 0), &rules), Outcome::NoMatch(_)));
        let mut no_docker = in_container("x", 0);
        no_docker.container = None;
        assert!(
            matches!(match_services(&no_docker, &rules), Outcome::NoMatch(_)),
            "a container id alone is enough to refuse"
        );
    }

    #[test]
    fn two_matching_services_are_ambiguous() {
        let rules = vec![
            rule("one", None, Some(compose("alpha"))),
            rule("two", None, Some(DockerSelector { image: Some("app:1".into()), ..Default::default() })),
        ];
        let outcome = match_services(&in_container("alpha", 0), &rules);
        assert_eq!(outcome, Outcome::Ambiguous(vec!["one".into(), "two".into()]));
        assert!(outcome.explain().starts_with("ambiguous"));
    }

    #[test]
    fn labels_and_stopped_containers() {
        let mut want = compose("alpha");
        want.labels.insert("tier".into(), "backend".into());
        let rules = vec![rule("alpha", None, Some(want))];
        let mut facts = in_container("alpha", 0);
        assert!(match_services(&facts, &rules)
            .log_detail()
            .contains("docker.labels.tier wants \"backend\", saw \"none\""));
        if let Some(c) = facts.container.as_mut() {
            c.labels.insert("tier".into(), "backend".into());
        }
        assert_eq!(match_services(&facts, &rules), Outcome::Matched("alpha".into()));
        if let Some(c) = facts.container.as_mut() {
            c.running = false;
        }
        assert!(match_services(&facts, &rules).log_detail().contains("not running"));
    }
}
