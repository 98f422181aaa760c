//! [`Report`]: what [`crate::run`] did, or what [`crate::check`] found and a run would do.

use std::fmt;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

pub use crate::action::Action;
use crate::config::PkiConfig;
use crate::issue::{Fresh, Issued};
use crate::plan::{Plan, Step};
use crate::scan::{Disk, CA_DIR, CERT_FILE, INTERMEDIATE_FILE, ROOT_FILE};
use crate::x509::{self, show_time, CertFacts};

/// Which certificate of the PKI an entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertKind {
    /// `ca/ca.pem`.
    Root,
    /// `ca/intermediate.pem`.
    Intermediate,
    /// `<name>/cert.pem`.
    Leaf,
}

/// Whether a certificate chains up to `ca/ca.pem` and is within its validity, at the run's `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainStatus {
    /// Signatures, issuers and validity periods all check out up to the root.
    Valid,
    /// It, or a CA above it, has expired.
    Expired,
    /// It, or a CA above it, is not valid yet (is the clock behind?).
    NotYetValid,
    /// It does not chain up to the root on disk; the text says where it breaks.
    Broken(String),
}

impl fmt::Display for ChainStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainStatus::Valid => f.write_str("valid"),
            ChainStatus::Expired => f.write_str("expired"),
            ChainStatus::NotYetValid => f.write_str("not yet valid"),
            ChainStatus::Broken(why) => write!(f, "broken: {why}"),
        }
    }
}

/// Report name of the root CA.
pub const ROOT_NAME: &str = "root CA";
/// Report name of the intermediate CA.
pub const INTERMEDIATE_NAME: &str = "intermediate CA";

/// A certificate as it is on disk (after a run: as the run left it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// Subject, e.g. `O=edgeseal, CN=openbao`.
    pub subject: String,
    /// DNS names and IP addresses.
    pub sans: Vec<String>,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Whether it chains to the root.
    pub chain: ChainStatus,
}

/// One certificate of the PKI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertReport {
    /// `root CA`, `intermediate CA`, or the name under `pki.certs`.
    pub name: String,
    /// Root, intermediate or leaf.
    pub kind: CertKind,
    /// The certificate file.
    pub path: PathBuf,
    /// What was (or would be) done.
    pub action: Action,
    /// Why, in words for an operator.
    pub reason: String,
    /// The certificate; `None` when there is none (a check before the first run, a removed leaf).
    pub cert: Option<CertSummary>,
}

/// Per-certificate outcome of [`crate::run`] or [`crate::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `pki.dir`.
    pub dir: PathBuf,
    /// `true` from [`crate::run`] (actions were carried out), `false` from [`crate::check`] (actions are
    /// what a run would do; nothing was changed).
    pub applied: bool,
    /// Root, intermediate, then the leaves by name, then removed leaves.
    pub certs: Vec<CertReport>,
}

impl Report {
    /// Whether anything was (or would be) written or removed.
    pub fn changed(&self) -> bool {
        self.certs.iter().any(|c| c.action.changes())
    }

    /// The entry for a leaf name, or for `root CA` / `intermediate CA`.
    pub fn get(&self, name: &str) -> Option<&CertReport> {
        self.certs.iter().find(|c| c.name == name)
    }

    /// Whether every certificate present chains to the root and is valid now.
    pub fn all_valid(&self) -> bool {
        self.certs
            .iter()
            .filter(|c| c.action != Action::Removed)
            .all(|c| c.cert.as_ref().is_some_and(|s| s.chain == ChainStatus::Valid))
    }
}

impl fmt::Display for Report {
    /// One paragraph per certificate, for an operator's terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "PKI in {}", self.dir.display())?;
        for c in &self.certs {
            writeln!(f, "{}: {} ({})", c.name, c.action.word(self.applied), c.reason)?;
            writeln!(f, "  file:     {}", c.path.display())?;
            if let Some(s) = &c.cert {
                writeln!(f, "  subject:  {}", s.subject)?;
                if !s.sans.is_empty() {
                    writeln!(f, "  SANs:     {}", s.sans.join(", "))?;
                }
                writeln!(f, "  serial:   {}", s.serial)?;
                writeln!(f, "  valid:    {} to {}", show_time(s.not_before), show_time(s.not_after))?;
                writeln!(f, "  chain:    {}", s.chain)?;
            }
        }
        Ok(())
    }
}

/// A certificate as the report sees it: its facts, and whether it is linked to its parent.
struct Node {
    facts: CertFacts,
    linked: Result<(), String>,
}

pub(crate) fn build(
    config: &PkiConfig,
    disk: &Disk,
    plan: &Plan,
    fresh: Option<&Fresh>,
    now: OffsetDateTime,
    applied: bool,
) -> Report {
    let dir = &config.dir;
    let new = |issued: Option<&Issued>| {
        issued.and_then(|i| x509::parse(&i.der).ok()).map(|facts| Node { facts, linked: Ok(()) })
    };
    let root = new(fresh.and_then(|f| f.root.as_ref())).or_else(|| {
        disk.root.as_ref().map(|r| Node {
            facts: r.facts.clone(),
            linked: if r.signed_by_parent { Ok(()) } else { Err("ca/ca.pem is not self-signed".into()) },
        })
    });
    let intermediate = new(fresh.and_then(|f| f.intermediate.as_ref())).or_else(|| {
        disk.intermediate.as_ref().map(|i| Node {
            facts: i.facts.clone(),
            linked: if i.signed_by_parent { Ok(()) } else { Err("not issued by ca/ca.pem".into()) },
        })
    });
    let root_status = root.as_ref().map(|r| status(r, None, now));
    let int_status = intermediate.as_ref().map(|i| {
        let parent = root_status.clone().unwrap_or_else(|| ChainStatus::Broken("ca/ca.pem is missing".into()));
        status(i, Some(parent), now)
    });
    let summary = |node: &Node, chain: ChainStatus| CertSummary {
        subject: node.facts.subject.clone(),
        sans: node.facts.sans.iter().map(|s| s.to_string()).collect(),
        serial: node.facts.serial.clone(),
        not_before: node.facts.not_before,
        not_after: node.facts.not_after,
        chain,
    };
    let entry = |name: &str, kind: CertKind, path: &Path, step: &Step, cert: Option<CertSummary>| CertReport {
        name: name.to_string(),
        kind,
        path: path.to_path_buf(),
        action: step.action,
        reason: step.reason.clone(),
        cert,
    };
    let ca_dir = dir.join(CA_DIR);
    let mut certs = vec![
        entry(
            ROOT_NAME,
            CertKind::Root,
            &ca_dir.join(ROOT_FILE),
            &plan.root,
            root.as_ref().zip(root_status.clone()).map(|(n, s)| summary(n, s)),
        ),
        entry(
            INTERMEDIATE_NAME,
            CertKind::Intermediate,
            &ca_dir.join(INTERMEDIATE_FILE),
            &plan.intermediate,
            intermediate.as_ref().zip(int_status.clone()).map(|(n, s)| summary(n, s)),
        ),
    ];
    for (name, step) in &plan.leaves {
        let node = new(fresh.and_then(|f| f.leaves.get(name))).or_else(|| {
            let leaf = disk.leaves.get(name)?;
            let cert = leaf.cert.as_ref()?;
            let linked = if !cert.signed_by_intermediate {
                Err("not issued by ca/intermediate.pem".to_string())
            } else if !cert.chain_ok {
                Err("the chain in cert.pem is not ca/intermediate.pem".to_string())
            } else if !leaf.key.as_ref().is_some_and(|k| k.matches_cert) {
                Err("key.pem is missing or does not match cert.pem".to_string())
            } else {
                Ok(())
            };
            Some(Node { facts: cert.facts.clone(), linked })
        });
        let cert = node.map(|n| {
            let parent =
                int_status.clone().unwrap_or_else(|| ChainStatus::Broken("ca/intermediate.pem is missing".into()));
            let chain = status(&n, Some(parent), now);
            summary(&n, chain)
        });
        certs.push(entry(name.as_str(), CertKind::Leaf, &dir.join(name.as_str()).join(CERT_FILE), step, cert));
    }
    for name in &plan.removed {
        let step = Step { action: Action::Removed, reason: "no longer in pki.certs".into() };
        certs.push(entry(name, CertKind::Leaf, &dir.join(name).join(CERT_FILE), &step, None));
    }
    Report { dir: dir.clone(), applied, certs }
}

/// The chain status of `node` given its parent's.
fn status(node: &Node, parent: Option<ChainStatus>, now: OffsetDateTime) -> ChainStatus {
    if let Err(why) = &node.linked {
        return ChainStatus::Broken(why.clone());
    }
    match parent {
        Some(ChainStatus::Broken(why)) => return ChainStatus::Broken(why),
        Some(s @ (ChainStatus::Expired | ChainStatus::NotYetValid)) => return s,
        _ => {}
    }
    if now < node.facts.not_before {
        ChainStatus::NotYetValid
    } else if now > node.facts.not_after {
        ChainStatus::Expired
    } else {
        ChainStatus::Valid
    }
}
