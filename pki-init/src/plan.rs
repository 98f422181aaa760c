//! Deciding what to issue (pure): the configuration, what is on disk, which CA keys are at hand, and
//! the time go in; one [`Step`] per certificate comes out.
//!
//! The rules:
//! - The root is regenerated when missing, not self-signed, of another key algorithm, not yet valid, or
//!   within `leaf_validity + renew_before` of its end (so that a leaf issued under it never outlives it).
//!   A new root means a new intermediate and every leaf reissued.
//! - The intermediate is regenerated under the same root for the same reasons, if the root key is at
//!   hand; otherwise the whole CA is.
//! - A leaf is renewed within `renew_before` of its end, and reissued when its SANs, usages, owner, key
//!   algorithm, key file or chain no longer fit. A new name is created.
//! - Issuing a leaf needs the intermediate key. Without it (`ca_keys: destroy`, or a keystore that lost
//!   it) a new CA is made and every leaf is reissued under it — EdgeX's behaviour.
//! - Leaf directories of names no longer configured are removed.

use std::time::Duration;

use time::{OffsetDateTime, PrimitiveDateTime};

use crate::action::Action;
use crate::config::{CertConfig, CertName, PkiConfig};
use crate::scan::{CaCert, Disk, LeafDir, Meta};
use crate::x509::show_time;

/// Whether each CA key can be used this run; the error says why not (it completes "the … key …").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyAccess {
    pub(crate) root: Result<(), String>,
    pub(crate) intermediate: Result<(), String>,
}

impl KeyAccess {
    /// `ca_keys: destroy`: no key survives a run.
    pub(crate) fn destroyed() -> Self {
        let why = || Err("was destroyed after the run that made it (ca_keys: destroy)".to_string());
        Self { root: why(), intermediate: why() }
    }

    /// Both keys usable.
    pub(crate) fn available() -> Self {
        Self { root: Ok(()), intermediate: Ok(()) }
    }
}

/// What to do with one certificate, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) action: Action,
    pub(crate) reason: String,
}

impl Step {
    pub(crate) fn new(action: Action, reason: impl Into<String>) -> Self {
        Self { action, reason: reason.into() }
    }

    pub(crate) fn issues(&self) -> bool {
        matches!(self.action, Action::Created | Action::Renewed | Action::Reissued)
    }
}

/// Every decision of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) root: Step,
    pub(crate) intermediate: Step,
    /// Every configured certificate, by name.
    pub(crate) leaves: Vec<(CertName, Step)>,
    /// Names of leaf directories to delete.
    pub(crate) removed: Vec<String>,
}

impl Plan {
    /// Whether the run writes or removes anything.
    pub(crate) fn changes(&self) -> bool {
        self.root.action.changes()
            || self.intermediate.action.changes()
            || self.leaves.iter().any(|(_, s)| s.action.changes())
            || !self.removed.is_empty()
    }
}

/// `t + d`, saturating far in the future.
pub(crate) fn later(t: OffsetDateTime, d: Duration) -> OffsetDateTime {
    time::Duration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d))
        .unwrap_or_else(|| PrimitiveDateTime::MAX.assume_utc())
}

/// `t - d`, saturating far in the past.
fn earlier(t: OffsetDateTime, d: Duration) -> OffsetDateTime {
    time::Duration::try_from(d)
        .ok()
        .and_then(|d| t.checked_sub(d))
        .unwrap_or_else(|| PrimitiveDateTime::MIN.assume_utc())
}

/// Decides what a run does. `euid` is the owner of leaves that configure none.
pub(crate) fn plan(config: &PkiConfig, disk: &Disk, keys: &KeyAccess, now: OffsetDateTime, euid: u32) -> Plan {
    let ca_window = config.leaf_validity + config.renew_before;
    let root_problem = ca_problem(config, disk.root.as_ref(), "ca/ca.pem", "self-signed", ca_window, now);
    let intermediate_problem = match (&root_problem, &disk.intermediate, &disk.root) {
        (Some(_), _, _) => None,
        (None, Some(i), Some(r)) if i.facts.not_after > r.facts.not_after => {
            Some(Step::new(Action::Reissued, "ca/intermediate.pem outlives ca/ca.pem"))
        }
        (None, i, _) => ca_problem(config, i.as_ref(), "ca/intermediate.pem", "issued by ca/ca.pem", ca_window, now),
    };
    let intermediate_ok = root_problem.is_none() && intermediate_problem.is_none();
    let needs: Vec<(&CertName, Option<Step>)> = config
        .certs
        .iter()
        .map(|(name, cert)| {
            let issuer = disk.intermediate.as_ref().filter(|_| intermediate_ok);
            (name, leaf_need(config, cert, disk.leaves.get(name), issuer, now, euid))
        })
        .collect();

    // Decide the CA: keep it, a new intermediate under the same root, or all new.
    let (root, intermediate) = if let Some(problem) = root_problem {
        let action = if disk.intermediate.is_some() { Action::Reissued } else { Action::Created };
        (problem, Step::new(action, "issued under the new root CA"))
    } else if let Some(problem) = intermediate_problem {
        match &keys.root {
            Ok(()) => (unchanged_ca(disk.root.as_ref()), problem),
            Err(why) => (
                Step::new(
                    Action::Reissued,
                    format!("{}, and the root CA key, needed to issue an intermediate, {why}", problem.reason),
                ),
                Step::new(problem.action, "issued under the new root CA"),
            ),
        }
    } else if let Some((name, need)) = needs.iter().find_map(|(n, s)| s.as_ref().map(|s| (n, s))) {
        let cause =
            format!("{name} must be issued ({}) and the intermediate CA key {}", need.reason, why(&keys.intermediate));
        match (&keys.intermediate, &keys.root) {
            (Ok(()), _) => (unchanged_ca(disk.root.as_ref()), unchanged_ca(disk.intermediate.as_ref())),
            (Err(_), Ok(())) => (unchanged_ca(disk.root.as_ref()), Step::new(Action::Reissued, cause)),
            (Err(_), Err(root_why)) => (
                Step::new(Action::Reissued, format!("{cause}; the root CA key {root_why}")),
                Step::new(Action::Reissued, "issued under the new root CA"),
            ),
        }
    } else {
        (unchanged_ca(disk.root.as_ref()), unchanged_ca(disk.intermediate.as_ref()))
    };

    let new_intermediate = intermediate.issues();
    let leaves = needs
        .into_iter()
        .map(|(name, need)| {
            let step = match need {
                Some(step) => step,
                None if new_intermediate => Step::new(Action::Reissued, "issued under the new intermediate CA"),
                None => {
                    let kept = disk.leaves.get(name).and_then(|l| l.cert.as_ref()).map(|c| c.facts.not_after);
                    match kept {
                        Some(end) => Step::new(
                            Action::Unchanged,
                            format!(
                                "valid until {}, renewal from {}",
                                show_time(end),
                                show_time(earlier(end, config.renew_before))
                            ),
                        ),
                        None => Step::new(Action::Unchanged, "up to date"),
                    }
                }
            };
            (name.clone(), step)
        })
        .collect();
    let removed = disk.stale.iter().map(|s| s.name.clone()).collect();
    Plan { root, intermediate, leaves, removed }
}

fn why(access: &Result<(), String>) -> &str {
    match access {
        Ok(()) => "is at hand",
        Err(why) => why,
    }
}

fn unchanged_ca(ca: Option<&CaCert>) -> Step {
    match ca {
        Some(ca) => Step::new(Action::Unchanged, format!("valid until {}", show_time(ca.facts.not_after))),
        None => Step::new(Action::Unchanged, "up to date"),
    }
}

/// Why a CA certificate must be made again, if it must.
fn ca_problem(
    config: &PkiConfig,
    ca: Option<&CaCert>,
    file: &str,
    parent: &str,
    window: Duration,
    now: OffsetDateTime,
) -> Option<Step> {
    let Some(ca) = ca else {
        return Some(Step::new(Action::Created, format!("{file} does not exist")));
    };
    let f = &ca.facts;
    let reissue = |why: String| Some(Step::new(Action::Reissued, why));
    if !f.is_ca {
        return reissue(format!("{file} is not a CA certificate"));
    }
    if !ca.signed_by_parent {
        return reissue(format!("{file} is not {parent}"));
    }
    if f.algorithm != Some(config.key_algorithm) {
        return reissue(format!("pki.key_algorithm is {} and {file} has another key type", config.key_algorithm));
    }
    if now < f.not_before {
        return reissue(format!("{file} is not valid before {} (was the clock set back?)", show_time(f.not_before)));
    }
    if later(now, window) >= f.not_after {
        return Some(Step::new(
            Action::Renewed,
            format!(
                "{file} expires {}, within leaf_validity + renew_before ({})",
                show_time(f.not_after),
                crate::config::show(window)
            ),
        ));
    }
    None
}

/// Why a leaf must be issued, if it must. `issuer` is the intermediate, when it is being kept.
fn leaf_need(
    config: &PkiConfig,
    cert: &CertConfig,
    dir: Option<&LeafDir>,
    issuer: Option<&CaCert>,
    now: OffsetDateTime,
    euid: u32,
) -> Option<Step> {
    let reissue = |why: String| Some(Step::new(Action::Reissued, why));
    let Some(dir) = dir else {
        return Some(Step::new(Action::Created, "new in pki.certs"));
    };
    let Some(leaf) = &dir.cert else {
        return reissue("cert.pem is missing".into());
    };
    let Some(key) = &dir.key else {
        return reissue("key.pem is missing".into());
    };
    let f = &leaf.facts;
    if !key.matches_cert {
        return reissue("key.pem does not match cert.pem".into());
    }
    if key.algorithm != config.key_algorithm || f.algorithm != Some(config.key_algorithm) {
        return reissue(format!("pki.key_algorithm is {} and the leaf has another key type", config.key_algorithm));
    }
    if f.is_ca {
        return reissue("cert.pem is a CA certificate".into());
    }
    if let Some(issuer) = issuer {
        if !leaf.signed_by_intermediate {
            return reissue("cert.pem was not issued by ca/intermediate.pem".into());
        }
        if !leaf.chain_ok {
            return reissue("the chain in cert.pem is not ca/intermediate.pem".into());
        }
        if f.not_after > issuer.facts.not_after {
            return reissue("cert.pem outlives ca/intermediate.pem".into());
        }
    }
    let want_sans: std::collections::BTreeSet<_> = cert.sans.iter().cloned().collect();
    if f.sans != want_sans || f.other_sans {
        let list = |s: &mut dyn Iterator<Item = String>| s.collect::<Vec<_>>().join(", ");
        return reissue(format!(
            "SANs changed from [{}] to [{}]",
            list(&mut f.sans.iter().map(|s| s.to_string())),
            list(&mut cert.sans.iter().map(|s| s.to_string()))
        ));
    }
    if f.usages != cert.usages || f.other_usages {
        let list = |u: &std::collections::BTreeSet<crate::config::Usage>| {
            u.iter().map(|u| u.to_string()).collect::<Vec<_>>().join(", ")
        };
        return reissue(format!("usages changed from [{}] to [{}]", list(&f.usages), list(&cert.usages)));
    }
    if let Some(why) = ownership_problem(cert, dir, euid) {
        return reissue(why);
    }
    if now < f.not_before {
        return reissue(format!("not valid before {} (was the clock set back?)", show_time(f.not_before)));
    }
    if later(now, config.renew_before) >= f.not_after {
        let when = if now >= f.not_after { "expired" } else { "expires" };
        return Some(Step::new(
            Action::Renewed,
            format!(
                "{when} {}, within renew_before ({})",
                show_time(f.not_after),
                crate::config::show(config.renew_before)
            ),
        ));
    }
    None
}

/// A key readable by others, or files that belong to someone other than the configured owner.
fn ownership_problem(cert: &CertConfig, dir: &LeafDir, euid: u32) -> Option<String> {
    let (uid, gid) = match cert.owner {
        Some(o) => (o.uid, Some(o.gid)),
        None => (euid, None),
    };
    let key_meta = dir.key.as_ref().map(|k| k.meta);
    if dir.meta.mode & 0o077 != 0 {
        return Some(format!("its directory has mode {:04o}; it must be 0700", dir.meta.mode));
    }
    if let Some(m) = key_meta.filter(|m| m.mode & 0o077 != 0) {
        return Some(format!("key.pem has mode {:04o} and may have been read by others", m.mode));
    }
    let files: [(&str, Option<Meta>); 3] =
        [("its directory", Some(dir.meta)), ("cert.pem", dir.cert.as_ref().map(|c| c.meta)), ("key.pem", key_meta)];
    for (what, meta) in files {
        let Some(m) = meta else { continue };
        if m.uid != uid || gid.is_some_and(|g| g != m.gid) {
            let want = gid.map_or(format!("uid {uid}"), |g| format!("{uid}:{g}"));
            return Some(format!("{what} belongs to {}:{}, not {want}", m.uid, m.gid));
        }
    }
    None
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
