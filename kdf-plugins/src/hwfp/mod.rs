//! The hardware fingerprint behind the `edgeseal-kdf-hwfp` plug-in (SPEC §4): IKM = SHA-256 over a
//! canonical, labelled list of device identifiers read from sysfs, procfs and `/etc`.
//!
//! Layout:
//! - [`parse`]: pure parsing and the rules for what is a usable identifier (placeholders, MAC bits).
//! - `collect`: the I/O — which files are read under a root directory, and why each source was skipped.
//! - this module: the [`Fingerprint`], its canonical encoding and the [`Ikm`] it yields.
//!
//! Canonical encoding (format `v1`, frozen: changing it changes every device's KEK):
//!
//! ```text
//! edgeseal-kdf-hwfp v1\n
//! <label>=<value>\n        one line per identifier, sorted by label, then value
//! ```
//!
//! Labels are fixed ([`Source::label`]); a NIC's interface name is not part of its line, so renaming
//! `eth0` to `enp3s0` keeps the IKM. Values are trimmed; UUIDs, MACs and cpuinfo serials are lowercased;
//! values with control characters are rejected so that no value can forge a line.
//!
//! The CPU model is mixed in when present but is not a stable identifier (every device of the model
//! shares it): [`Fingerprint::ikm`] refuses unless at least one stable identifier was found — a DMI
//! UUID or serial, a machine-id, a cpuinfo serial or the address of a physical NIC.
//!
//! Values never appear in `Debug` output, in errors, or in [`Fingerprint::explain`].

mod collect;
pub mod parse;

#[cfg(test)]
mod tests;

use std::fmt::{self, Write as _};
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::secret::Ikm;

pub use collect::collect;

/// The domain-separation line that starts the canonical list.
pub const DOMAIN: &str = "edgeseal-kdf-hwfp v1";

/// The root the plug-in reads when not told otherwise.
pub const DEFAULT_ROOT: &str = "/";

/// A kind of identifier. Its [`label`](Source::label) names its line in the canonical list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Source {
    /// `sys/class/dmi/id/product_uuid` (SMBIOS system UUID; root-only on most systems).
    DmiProductUuid,
    /// `sys/class/dmi/id/product_serial`.
    DmiProductSerial,
    /// `sys/class/dmi/id/board_serial`.
    DmiBoardSerial,
    /// `sys/class/dmi/id/chassis_serial`.
    DmiChassisSerial,
    /// `etc/machine-id`, or `var/lib/dbus/machine-id` when the former is missing.
    MachineId,
    /// The first `model name` line of `proc/cpuinfo`. Not stable on its own.
    CpuModel,
    /// The `Hardware` line of `proc/cpuinfo` (arm SoC), used when there is no `model name`. Not stable.
    CpuHardware,
    /// The `Serial` line of `proc/cpuinfo` (unique per board on a Raspberry Pi).
    CpuSerial,
    /// The burned-in MAC address of a physical, non-USB NIC.
    NicMac,
}

impl Source {
    /// The label of this source's lines in the canonical list; part of format `v1`.
    pub fn label(self) -> &'static str {
        match self {
            Self::DmiProductUuid => "dmi.product_uuid",
            Self::DmiProductSerial => "dmi.product_serial",
            Self::DmiBoardSerial => "dmi.board_serial",
            Self::DmiChassisSerial => "dmi.chassis_serial",
            Self::MachineId => "machine-id",
            Self::CpuModel => "cpu.model",
            Self::CpuHardware => "cpu.hardware",
            Self::CpuSerial => "cpu.serial",
            Self::NicMac => "net.mac",
        }
    }

    /// Whether this identifier tells one device from another of the same model. The fingerprint
    /// needs at least one stable identifier.
    pub fn is_stable(self) -> bool {
        !matches!(self, Self::CpuModel | Self::CpuHardware)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Why a source was not used. Says nothing about the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Skip {
    /// The file or line does not exist.
    Missing,
    /// The file exists but could not be read (e.g. DMI serials are readable by root only).
    Unreadable(io::ErrorKind),
    /// The path is a symlink that leaves the root directory (e.g. an absolute link in an image).
    OutsideRoot,
    /// Not in the expected format (or too long, or not UTF-8, or with control characters).
    Malformed,
    /// A firmware default or empty value that many devices share.
    Placeholder,
    /// A network interface without a `device` entry: loopback, bridge, veth, tunnel, …
    Virtual,
    /// A network interface on a USB bus: a removable dongle.
    Usb,
    /// A MAC address with the locally-administered bit set: assigned by software, not burned in.
    LocallyAdministered,
    /// A multicast or broadcast MAC address.
    Multicast,
    /// A MAC address the kernel randomized (`addr_assign_type` 1).
    RandomAddress,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("not present"),
            Self::Unreadable(kind) => write!(f, "unreadable ({kind})"),
            Self::OutsideRoot => f.write_str("symlink points outside the root"),
            Self::Malformed => f.write_str("malformed value"),
            Self::Placeholder => f.write_str("placeholder value"),
            Self::Virtual => f.write_str("virtual interface (no device)"),
            Self::Usb => f.write_str("USB device (removable)"),
            Self::LocallyAdministered => f.write_str("locally administered address"),
            Self::Multicast => f.write_str("multicast or broadcast address"),
            Self::RandomAddress => f.write_str("random address"),
        }
    }
}

/// What happened to one source that was looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Its value is part of the fingerprint.
    Used,
    /// It was looked at and left out.
    Skipped(Skip),
}

/// One source looked at: which, where (relative to the root), and the outcome. No value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceReport {
    /// The kind of identifier.
    pub source: Source,
    /// Where it was looked for, relative to the root, e.g. `sys/class/net/eth0` or
    /// `proc/cpuinfo "Serial"`.
    pub location: String,
    /// Used or skipped, and why.
    pub outcome: Outcome,
}

/// Errors from turning a [`Fingerprint`] into IKM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HwfpError {
    /// Nothing that tells this device from another of the same model was found.
    #[error(
        "no stable hardware identifier under {}: looked for a DMI product UUID or serial \
         (sys/class/dmi/id), a machine-id (etc/machine-id, var/lib/dbus/machine-id), a cpuinfo \
         Serial (proc/cpuinfo) and MAC addresses of physical NICs (sys/class/net); \
         the CPU model alone is shared by every device of the model",
        root.display()
    )]
    NoStableSource {
        /// The root directory that was searched.
        root: PathBuf,
    },
}

secret_types::secret_string! {
    /// One identifier's normalized value (an input of the IKM); wiped on drop, never printed.
    struct Identifier;
}

/// One identifier found, and where it came from.
#[derive(Debug)]
struct Entry {
    source: Source,
    value: Identifier,
}

/// The identifiers found under a root, and a report on every source looked at. Build it with
/// [`collect`]. `Debug` shows the sources and reports, never the values.
#[derive(Debug)]
pub struct Fingerprint {
    root: PathBuf,
    entries: Vec<Entry>,
    reports: Vec<SourceReport>,
}

impl Fingerprint {
    /// The root directory the sources were read under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every source looked at, used or skipped, in the order they were looked at.
    pub fn reports(&self) -> &[SourceReport] {
        &self.reports
    }

    /// The sources whose values are part of the fingerprint.
    pub fn used(&self) -> impl Iterator<Item = &SourceReport> {
        self.reports.iter().filter(|r| r.outcome == Outcome::Used)
    }

    /// How many stable identifiers were found; [`ikm`](Self::ikm) needs at least one.
    pub fn stable_count(&self) -> usize {
        self.entries.iter().filter(|e| e.source.is_stable()).count()
    }

    /// The IKM: SHA-256 of the canonical list (32 bytes). Refuses when no stable identifier was found.
    pub fn ikm(&self) -> Result<Ikm, HwfpError> {
        if self.stable_count() == 0 {
            return Err(HwfpError::NoStableSource { root: self.root.clone() });
        }
        let preimage = canonical_list(&self.entries);
        let mut digest = Sha256::digest(preimage.as_slice());
        let ikm = Ikm::new(digest.to_vec());
        digest.as_mut_slice().zeroize();
        Ok(ikm)
    }

    /// A human-readable report for operators: the sources used and those skipped with the reason,
    /// then whether `ikm-v1` would answer. Names and paths only — never a value, never the IKM.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_explain(&mut out);
        out
    }

    fn write_explain(&self, out: &mut String) -> fmt::Result {
        writeln!(out, "{DOMAIN}: identifiers under {}", self.root.display())?;
        let width = self.reports.iter().map(|r| r.source.label().len()).max().unwrap_or(0);
        writeln!(out, "used:")?;
        let mut any = false;
        for report in self.used() {
            any = true;
            let kind = if report.source.is_stable() { "stable" } else { "not stable alone" };
            writeln!(out, "  {:<width$}  {} ({kind})", report.source.label(), report.location)?;
        }
        if !any {
            writeln!(out, "  (none)")?;
        }
        writeln!(out, "skipped:")?;
        any = false;
        for report in &self.reports {
            if let Outcome::Skipped(why) = report.outcome {
                any = true;
                writeln!(out, "  {:<width$}  {}: {why}", report.source.label(), report.location)?;
            }
        }
        if !any {
            writeln!(out, "  (none)")?;
        }
        let stable = self.stable_count();
        if stable == 0 {
            writeln!(out, "result: no stable identifier; ikm-v1 refuses (exit 1)")
        } else {
            writeln!(out, "result: {} identifiers, {stable} stable; ikm-v1 answers", self.entries.len())
        }
    }
}

/// The canonical list (format `v1`): the domain line, then `label=value` lines sorted by label and
/// value. Built in one allocation so that no unwiped copy is left behind.
fn canonical_list(entries: &[Entry]) -> Zeroizing<Vec<u8>> {
    let mut lines: Vec<(&str, &str)> = entries.iter().map(|e| (e.source.label(), e.value.expose())).collect();
    lines.sort_unstable();
    let len = DOMAIN.len() + 1 + lines.iter().map(|(l, v)| l.len() + v.len() + 2).sum::<usize>();
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    out.extend_from_slice(DOMAIN.as_bytes());
    out.push(b'\n');
    for (label, value) in lines {
        out.extend_from_slice(label.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out
}
