//! What the plug-in is told: which TPM (the TCTI), which key (primary or a persistent handle), how long
//! it may take. Pure parsing and validation; nothing here touches a TPM.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

use super::policy::PcrPolicy;

/// The TCTI used when `--tcti` is not given: the kernel's resource manager.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";

/// The whole-derivation deadline when `--timeout` is not given; below `kdf.timeout`'s default (30s) so the
/// plug-in reports its own clear error before edgeseal kills it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// The shortest `--timeout` accepted.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(500);

/// The longest `--timeout` accepted (edgeseal's own `kdf.timeout` limit).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// The longest TCTI string accepted.
const MAX_TCTI_LEN: usize = 256;

/// A bad `--tcti`, `--handle` or `--timeout` value.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParamError {
    /// Empty, too long, or with characters a TCTI string never has.
    #[error("--tcti {0:?} is not a TCTI string (expected NAME or NAME:CONFIG, e.g. device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321)")]
    TctiSyntax(String),
    /// The TCTI names a library file instead of a TCTI.
    #[error("--tcti {0:?}: name a TCTI (device:PATH or swtpm:host=HOST,port=PORT), not a library path")]
    TctiLibraryPath(String),
    /// A TCTI the plug-in does not speak.
    #[error("--tcti {0:?} is not supported: {1}")]
    TctiUnsupported(String, &'static str),
    /// A known TCTI with a configuration it cannot use.
    #[error("--tcti {0:?}: {1}")]
    TctiConfig(String, &'static str),
    /// Not a hexadecimal 32-bit number.
    #[error("--handle {0:?} is not a handle (expected hex like 0x81000101)")]
    HandleSyntax(String),
    /// A number outside the owner hierarchy's persistent range.
    #[error("--handle {0:?} is not an owner-hierarchy persistent handle (0x81000000 to 0x817fffff)")]
    HandleRange(String),
    /// Not a duration, or outside the accepted range.
    #[error("--timeout {0:?} must be a duration between 500ms and 10m (e.g. 20s)")]
    Timeout(String),
}

/// A TCTI string, in the syntax tpm2-tools read from `TPM2TOOLS_TCTI` (`NAME[:CONFIG]`), for the two
/// transports the plug-in speaks itself ([`Endpoint`]):
/// - `device[:PATH]`: a TPM character device; `PATH` defaults to `/dev/tpm0`, as in tpm2-tss (the
///   plug-in's own default is [`DEFAULT_TCTI`], the kernel resource manager);
/// - `swtpm[:host=HOST,port=PORT]`: swtpm's TCP command port (default `localhost`, 2321).
///
/// `tabrmd` (the D-Bus resource manager), `mssim` and other names are refused with what to use
/// instead; a library path is never accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tcti {
    text: String,
    endpoint: Endpoint,
}

/// Where the TPM is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A character device: `/dev/tpmrm0` (kernel resource manager) or `/dev/tpm0` (raw).
    Device(PathBuf),
    /// swtpm's command port, raw TPM commands over TCP.
    Swtpm {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
    },
}

/// tpm2-tss's tcti-device default.
const DEVICE_DEFAULT: &str = "/dev/tpm0";
/// tpm2-tss's tcti-swtpm defaults.
const SWTPM_DEFAULT_HOST: &str = "localhost";
const SWTPM_DEFAULT_PORT: u16 = 2321;

impl Tcti {
    /// The string as given (also what provisioning passes to tpm2-tools).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The TCTI's name (`device` or `swtpm`).
    pub fn name(&self) -> &str {
        self.text.split_once(':').map_or(self.text.as_str(), |(name, _)| name)
    }

    /// Where it points.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Whether the TPM is reached directly, without a resource manager (its transient object slots are
    /// shared with every other client, which may leave objects loaded).
    pub fn is_raw(&self) -> bool {
        match &self.endpoint {
            Endpoint::Device(path) => !path.to_string_lossy().contains("tpmrm"),
            Endpoint::Swtpm { .. } => true,
        }
    }
}

impl Default for Tcti {
    fn default() -> Self {
        Self { text: DEFAULT_TCTI.to_owned(), endpoint: Endpoint::Device(PathBuf::from("/dev/tpmrm0")) }
    }
}

impl FromStr for Tcti {
    type Err = ParamError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > MAX_TCTI_LEN || s.chars().any(|c| !c.is_ascii_graphic()) {
            return Err(ParamError::TctiSyntax(s.to_owned()));
        }
        let (name, config) = s.split_once(':').unwrap_or((s, ""));
        if name.contains('/') || name.contains(".so") {
            return Err(ParamError::TctiLibraryPath(s.to_owned()));
        }
        if name.is_empty() || !name.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_')) {
            return Err(ParamError::TctiSyntax(s.to_owned()));
        }
        let endpoint = match name {
            "device" if config.is_empty() => Endpoint::Device(PathBuf::from(DEVICE_DEFAULT)),
            "device" if config.starts_with('/') => Endpoint::Device(PathBuf::from(config)),
            "device" => return Err(ParamError::TctiConfig(s.to_owned(), "the device must be an absolute path")),
            "swtpm" => parse_swtpm(s, config)?,
            "tabrmd" => return Err(ParamError::TctiUnsupported(s.to_owned(), TABRMD_HINT)),
            _ => return Err(ParamError::TctiUnsupported(s.to_owned(), OTHER_HINT)),
        };
        Ok(Self { text: s.to_owned(), endpoint })
    }
}

const TABRMD_HINT: &str = "the plug-in talks to the TPM itself and does not speak D-Bus to tpm2-abrmd; use the \
     kernel resource manager instead (--tcti device:/dev/tpmrm0), which serves every client tabrmd serves";
const OTHER_HINT: &str = "the plug-in talks to the TPM itself through device:PATH (e.g. device:/dev/tpmrm0) or \
     swtpm:host=HOST,port=PORT only";

/// `host=HOST,port=PORT`, either or both, in any order (tcti-swtpm's keys).
fn parse_swtpm(s: &str, config: &str) -> Result<Endpoint, ParamError> {
    let (mut host, mut port) = (None, None);
    for pair in config.split(',').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("host", value)) if host.is_none() && !value.is_empty() => host = Some(value.to_owned()),
            Some(("port", value)) if port.is_none() => {
                port = Some(
                    value
                        .parse::<u16>()
                        .ok()
                        .filter(|&p| p != 0)
                        .ok_or(ParamError::TctiConfig(s.to_owned(), "port must be a number from 1 to 65535"))?,
                );
            }
            _ => return Err(ParamError::TctiConfig(s.to_owned(), "expected host=HOST,port=PORT")),
        }
    }
    Ok(Endpoint::Swtpm {
        host: host.unwrap_or_else(|| SWTPM_DEFAULT_HOST.to_owned()),
        port: port.unwrap_or(SWTPM_DEFAULT_PORT),
    })
}

impl fmt::Display for Tcti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A persistent handle in the owner hierarchy (0x81000000–0x817fffff), shown as `0x81000101`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersistentHandle(u32);

impl PersistentHandle {
    /// The first owner-hierarchy persistent handle.
    pub const FIRST: u32 = 0x8100_0000;
    /// The last owner-hierarchy persistent handle (platform handles start at 0x81800000).
    pub const LAST: u32 = 0x817F_FFFF;

    /// The handle's value.
    pub fn value(self) -> u32 {
        self.0
    }
}

impl FromStr for PersistentHandle {
    type Err = ParamError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .filter(|d| !d.is_empty() && d.len() <= 8 && d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| ParamError::HandleSyntax(s.to_owned()))?;
        let value = u32::from_str_radix(digits, 16).map_err(|_| ParamError::HandleSyntax(s.to_owned()))?;
        if !(Self::FIRST..=Self::LAST).contains(&value) {
            return Err(ParamError::HandleRange(s.to_owned()));
        }
        Ok(Self(value))
    }
}

impl fmt::Display for PersistentHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

/// Parses a `--timeout` value such as `20s` or `1500ms`.
pub fn parse_timeout(s: &str) -> Result<Duration, ParamError> {
    let timeout = humantime::parse_duration(s).map_err(|_| ParamError::Timeout(s.to_owned()))?;
    if !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&timeout) {
        return Err(ParamError::Timeout(s.to_owned()));
    }
    Ok(timeout)
}

/// Where the IKM's HMAC key lives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KeySource {
    /// A primary key the TPM re-derives from its owner seed and a fixed template on every call.
    #[default]
    Primary,
    /// A key provisioned once at a persistent handle.
    Persistent(PersistentHandle),
    /// A primary key like [`KeySource::Primary`] but usable only while the PCRs hold the policy's
    /// values (its own key: a different IKM).
    PcrBound(PcrPolicy),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Primary => f.write_str("the primary HMAC key"),
            Self::Persistent(handle) => write!(f, "the key at persistent handle {handle}"),
            Self::PcrBound(policy) => write!(f, "the primary HMAC key bound to PCRs {policy}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcti_strings_are_names_with_an_optional_config() {
        let swtpm = |host: &str, port| Endpoint::Swtpm { host: host.to_owned(), port };
        let cases = [
            (DEFAULT_TCTI, Endpoint::Device("/dev/tpmrm0".into())),
            ("device", Endpoint::Device("/dev/tpm0".into())),
            ("device:/dev/tpm0", Endpoint::Device("/dev/tpm0".into())),
            ("swtpm:host=127.0.0.1,port=2321", swtpm("127.0.0.1", 2321)),
            ("swtpm:port=7,host=tpm.local", swtpm("tpm.local", 7)),
            ("swtpm", swtpm("localhost", 2321)),
            ("swtpm:port=2400", swtpm("localhost", 2400)),
        ];
        for (ok, endpoint) in cases {
            let tcti = ok.parse::<Tcti>().unwrap();
            assert_eq!(tcti.as_str(), ok);
            assert_eq!(tcti.endpoint(), &endpoint, "{ok}");
        }
        assert_eq!("swtpm:port=1".parse::<Tcti>().unwrap().name(), "swtpm");
        assert_eq!(Tcti::default().as_str(), DEFAULT_TCTI);
        assert_eq!(Tcti::default(), DEFAULT_TCTI.parse().unwrap());
        type Expect = fn(&ParamError) -> bool;
        let bad: &[(&str, Expect)] = &[
            ("", |e| matches!(e, ParamError::TctiSyntax(_))),
            ("swtpm:host=a b", |e| matches!(e, ParamError::TctiSyntax(_))),
            ("swtpm:port=1\n", |e| matches!(e, ParamError::TctiSyntax(_))),
            (":port=1", |e| matches!(e, ParamError::TctiSyntax(_))),
            ("Device:/dev/tpm0", |e| matches!(e, ParamError::TctiSyntax(_))),
            ("/tmp/evil.so:x", |e| matches!(e, ParamError::TctiLibraryPath(_))),
            ("libtss2-tcti-device.so.0:/dev/tpm0", |e| matches!(e, ParamError::TctiLibraryPath(_))),
            ("tabrmd", |e| matches!(e, ParamError::TctiUnsupported(_, TABRMD_HINT))),
            ("tabrmd:bus_type=system", |e| matches!(e, ParamError::TctiUnsupported(_, TABRMD_HINT))),
            ("mssim:host=localhost,port=2321", |e| matches!(e, ParamError::TctiUnsupported(_, OTHER_HINT))),
            ("nosuchtcti:x", |e| matches!(e, ParamError::TctiUnsupported(_, OTHER_HINT))),
            ("device:tpm0", |e| matches!(e, ParamError::TctiConfig(..))),
            ("swtpm:port=0", |e| matches!(e, ParamError::TctiConfig(..))),
            ("swtpm:port=65536", |e| matches!(e, ParamError::TctiConfig(..))),
            ("swtpm:host=", |e| matches!(e, ParamError::TctiConfig(..))),
            ("swtpm:port=1,port=2", |e| matches!(e, ParamError::TctiConfig(..))),
            ("swtpm:path=/x", |e| matches!(e, ParamError::TctiConfig(..))),
        ];
        for (input, want) in bad {
            let err = input.parse::<Tcti>().unwrap_err();
            assert!(want(&err), "{input:?}: {err:?}");
        }
        assert!(ParamError::TctiSyntax("x".repeat(MAX_TCTI_LEN + 1)).to_string().contains("--tcti"));
        assert!("d".repeat(MAX_TCTI_LEN + 1).parse::<Tcti>().is_err());
    }

    #[test]
    fn only_the_kernel_resource_manager_counts_as_managed() {
        let raw = |s: &str| s.parse::<Tcti>().unwrap().is_raw();
        assert!(!raw("device:/dev/tpmrm0"));
        assert!(raw("device:/dev/tpm0"));
        assert!(raw("swtpm:host=127.0.0.1,port=2321"));
    }

    #[test]
    fn persistent_handles_are_owner_hierarchy_hex() {
        assert_eq!("0x81000101".parse::<PersistentHandle>().unwrap().value(), 0x8100_0101);
        assert_eq!("0X817FFFFF".parse::<PersistentHandle>().unwrap().to_string(), "0x817fffff");
        assert_eq!("0x81000000".parse::<PersistentHandle>().unwrap().to_string(), "0x81000000");
        for syntax in ["", "0x", "81000101", "0x8100010g", "0x081000101", "-0x1", "0x 81"] {
            assert_eq!(
                syntax.parse::<PersistentHandle>().unwrap_err(),
                ParamError::HandleSyntax(syntax.into()),
                "{syntax:?}"
            );
        }
        for range in ["0x80000000", "0x81800000", "0x01c00002", "0xffffffff"] {
            assert_eq!(range.parse::<PersistentHandle>().unwrap_err(), ParamError::HandleRange(range.into()));
        }
    }

    #[test]
    fn timeouts_are_bounded_durations() {
        assert_eq!(parse_timeout("20s").unwrap(), Duration::from_secs(20));
        assert_eq!(parse_timeout("1500ms").unwrap(), Duration::from_millis(1500));
        for bad in ["", "20", "0s", "100ms", "11m", "soon"] {
            assert!(parse_timeout(bad).is_err(), "{bad:?}");
        }
    }
}
