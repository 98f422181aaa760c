//! The I/O: which files are read under the root, in what order, with what limits. Every file is
//! resolved first and must stay under the root, so `--root IMAGE` never reads the host's identifiers
//! through an absolute symlink in the image.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::parse;
use super::{Entry, Fingerprint, Identifier, Outcome, Skip, Source, SourceReport};

/// Largest sysfs attribute or `/etc` file read; longer ones are malformed (sysfs caps at a page).
const SMALL_FILE_MAX: usize = 4096;
/// Largest `/proc/cpuinfo` read (hundreds of cores print a few hundred KiB).
const CPUINFO_MAX: usize = 4 << 20;

const DMI: &[(Source, &str)] = &[
    (Source::DmiProductUuid, "sys/class/dmi/id/product_uuid"),
    (Source::DmiProductSerial, "sys/class/dmi/id/product_serial"),
    (Source::DmiBoardSerial, "sys/class/dmi/id/board_serial"),
    (Source::DmiChassisSerial, "sys/class/dmi/id/chassis_serial"),
];
const MACHINE_ID: &str = "etc/machine-id";
const MACHINE_ID_DBUS: &str = "var/lib/dbus/machine-id";
const CPUINFO: &str = "proc/cpuinfo";
const NET: &str = "sys/class/net";

/// Reads every source under `root` (normally `/`). Never fails: a source that cannot be used is
/// recorded with the reason; [`Fingerprint::ikm`] decides whether enough was found.
pub fn collect(root: &Path) -> Fingerprint {
    let mut fp = Fingerprint { root: root.to_path_buf(), entries: Vec::new(), reports: Vec::new() };
    // Symlinks are resolved against the canonical root; if the root itself is missing every read
    // reports the file as not present.
    let root = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());

    for &(source, rel) in DMI {
        let normalize =
            if source == Source::DmiProductUuid { parse::normalize_dmi_uuid } else { parse::normalize_dmi_serial };
        let value = read_small(&root, Path::new(rel)).and_then(|text| normalize(&text));
        fp.record(source, rel.to_owned(), value);
    }

    let value = read_small(&root, Path::new(MACHINE_ID));
    if value.as_ref().err() == Some(&Skip::Missing) {
        fp.record(Source::MachineId, MACHINE_ID.to_owned(), Err(Skip::Missing));
        let value = read_small(&root, Path::new(MACHINE_ID_DBUS)).and_then(|text| parse::parse_machine_id(&text));
        fp.record(Source::MachineId, MACHINE_ID_DBUS.to_owned(), value);
    } else {
        let value = value.and_then(|text| parse::parse_machine_id(&text));
        fp.record(Source::MachineId, MACHINE_ID.to_owned(), value);
    }

    collect_cpuinfo(&root, &mut fp);
    collect_nics(&root, &mut fp);
    fp
}

impl Fingerprint {
    fn record(&mut self, source: Source, location: String, value: Result<String, Skip>) {
        let outcome = match value {
            Ok(value) => {
                self.entries.push(Entry { source, value: Identifier::new(value) });
                Outcome::Used
            }
            Err(why) => Outcome::Skipped(why),
        };
        self.reports.push(SourceReport { source, location, outcome });
    }
}

fn collect_cpuinfo(root: &Path, fp: &mut Fingerprint) {
    let text = match read_capped(root, Path::new(CPUINFO), CPUINFO_MAX) {
        Ok(text) => text,
        Err(why) => {
            fp.record(Source::CpuModel, CPUINFO.to_owned(), Err(why));
            fp.record(Source::CpuSerial, CPUINFO.to_owned(), Err(why));
            return;
        }
    };
    let info = parse::parse_cpuinfo(&text);
    let line = |key: &str| format!("{CPUINFO} \"{key}\"");
    let found = |v: Option<String>, normalize: fn(&str) -> Result<String, Skip>| {
        let v = Zeroizing::new(v.ok_or(Skip::Missing)?);
        normalize(&v)
    };
    // `Hardware` (the arm SoC) stands in for the model only where there is no `model name`.
    let has_model = info.model_name.is_some();
    fp.record(Source::CpuModel, line("model name"), found(info.model_name, parse::normalize_cpu_model));
    if !has_model {
        fp.record(Source::CpuHardware, line("Hardware"), found(info.hardware, parse::normalize_cpu_model));
    }
    fp.record(Source::CpuSerial, line("Serial"), found(info.serial, parse::normalize_cpu_serial));
}

fn collect_nics(root: &Path, fp: &mut Fingerprint) {
    let mut names = match fs::read_dir(root.join(NET)) {
        Ok(dir) => dir.filter_map(|e| e.ok().map(|e| e.file_name())).collect::<Vec<_>>(),
        Err(err) => {
            fp.record(Source::NicMac, NET.to_owned(), Err(io_skip(&err)));
            return;
        }
    };
    names.sort();
    for name in names {
        let rel = Path::new(NET).join(&name);
        let value = nic_mac(root, &rel);
        fp.record(Source::NicMac, rel.display().to_string(), value);
    }
}

/// The burned-in address of `sys/class/net/<if>` if it is a physical, non-USB NIC.
fn nic_mac(root: &Path, rel: &Path) -> Result<String, Skip> {
    let device = match fs::canonicalize(root.join(rel).join("device")) {
        Ok(device) => device,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(Skip::Virtual),
        Err(err) => return Err(io_skip(&err)),
    };
    let device = device.strip_prefix(root).map_err(|_| Skip::OutsideRoot)?;
    if parse::is_usb_device_path(device) {
        return Err(Skip::Usb);
    }
    // NET_ADDR_RANDOM: the kernel made the address up at boot; it changes on the next one.
    if let Ok(kind) = read_small(root, &rel.join("addr_assign_type")) {
        if kind.trim() == "1" {
            return Err(Skip::RandomAddress);
        }
    }
    let address = read_small(root, &rel.join("address"))?;
    parse::normalize_mac(&address)
}

fn read_small(root: &Path, rel: &Path) -> Result<Zeroizing<String>, Skip> {
    read_capped(root, rel, SMALL_FILE_MAX)
}

/// Reads `root/rel` as UTF-8, at most `max` bytes (more is [`Skip::Malformed`]), after checking that
/// the resolved path stays under `root` (which must be canonical).
fn read_capped(root: &Path, rel: &Path, max: usize) -> Result<Zeroizing<String>, Skip> {
    let path: PathBuf = fs::canonicalize(root.join(rel)).map_err(|e| io_skip(&e))?;
    if !path.starts_with(root) {
        return Err(Skip::OutsideRoot);
    }
    let file = File::open(&path).map_err(|e| io_skip(&e))?;
    // A sysfs attribute fits the first allocation, so no unwiped copy of its bytes is left behind.
    let mut bytes = Zeroizing::new(Vec::with_capacity(max.min(SMALL_FILE_MAX) + 1));
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    file.take(limit).read_to_end(&mut bytes).map_err(|e| io_skip(&e))?;
    if bytes.len() > max {
        return Err(Skip::Malformed);
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| Skip::Malformed)?;
    Ok(Zeroizing::new(text.to_owned()))
}

fn io_skip(err: &io::Error) -> Skip {
    match err.kind() {
        io::ErrorKind::NotFound => Skip::Missing,
        kind => Skip::Unreadable(kind),
    }
}
