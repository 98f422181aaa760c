//! Source discovery against fake sysfs/procfs trees built in a temporary directory.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::*;

const UUID_FILE: &str = "4C4C4544-0042-3510-8052-B4C04F4E3732\n";
const UUID: &str = "4c4c4544-0042-3510-8052-b4c04f4e3732";
const PRODUCT_SERIAL: &str = "CN7016351S0123";
const BOARD_SERIAL: &str = "PF2ABCDE";
const CHASSIS_SERIAL: &str = "J9XK2L7Q";
const MACHINE_ID: &str = "5f1c0a9e2b7d4c3e8a6f0b1d2c3e4f5a";
const CPU_MODEL: &str = "Zenith Q7 Processor @ 2.10GHz";
const MAC0: &str = "3c:ec:ef:12:34:56";
const MAC1: &str = "a4:bb:6d:01:02:03";
const PI_SERIAL: &str = "10000000abcdef01";

/// Every value the fake trees contain, in the spellings that could leak.
const ALL_VALUES: &[&str] = &[
    UUID,
    UUID_FILE,
    PRODUCT_SERIAL,
    BOARD_SERIAL,
    CHASSIS_SERIAL,
    MACHINE_ID,
    CPU_MODEL,
    "Zenith",
    MAC0,
    MAC1,
    "3C:EC:EF",
    PI_SERIAL,
    "10000000ABCDEF01",
];

/// Where a fake NIC's `device` entry points.
#[derive(Clone, Copy)]
enum Dev {
    /// No `device` entry: a virtual interface.
    None,
    /// `device` is a symlink to a PCI device under `sys/devices`.
    Pci,
    /// `device` is a plain directory.
    Dir,
    /// `device` is a symlink to a device on a USB bus.
    Usb,
}

struct Tree {
    dir: TempDir,
}

impl Tree {
    fn new() -> Self {
        Self { dir: TempDir::new().unwrap() }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    fn file(&self, rel: &str, contents: &str) -> &Self {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
        self
    }

    fn remove(&self, rel: &str) -> &Self {
        fs::remove_file(self.path(rel)).unwrap();
        self
    }

    fn dmi(&self, name: &str, contents: &str) -> &Self {
        self.file(&format!("sys/class/dmi/id/{name}"), contents)
    }

    fn cpuinfo(&self, contents: &str) -> &Self {
        self.file("proc/cpuinfo", contents)
    }

    fn nic(&self, name: &str, address: &str, dev: Dev) -> &Self {
        let dir = format!("sys/class/net/{name}");
        self.file(&format!("{dir}/address"), &format!("{address}\n"));
        let device = self.path(&format!("{dir}/device"));
        match dev {
            Dev::None => {}
            Dev::Dir => fs::create_dir_all(device).unwrap(),
            Dev::Pci | Dev::Usb => {
                let target = match dev {
                    Dev::Usb => format!("sys/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/{name}"),
                    _ => format!("sys/devices/pci0000:00/0000:00:1f.{}", name.len()),
                };
                fs::create_dir_all(self.path(&target)).unwrap();
                symlink(format!("../../../../{target}"), device).unwrap();
            }
        }
        self
    }

    /// The full tree used by most tests: every source present and valid.
    fn full() -> Self {
        let tree = Self::new();
        tree.dmi("product_uuid", UUID_FILE)
            .dmi("product_serial", &format!("{PRODUCT_SERIAL}\n"))
            .dmi("board_serial", &format!("  {BOARD_SERIAL}  \n"))
            .dmi("chassis_serial", &format!("{CHASSIS_SERIAL}\n"))
            .file("etc/machine-id", &format!("{MACHINE_ID}\n"))
            .cpuinfo(&x86_cpuinfo(CPU_MODEL))
            .nic("lo", "00:00:00:00:00:00", Dev::None)
            .nic("eth0", &MAC0.to_uppercase(), Dev::Pci)
            .nic("eth1", MAC1, Dev::Dir);
        tree
    }

    fn collect(&self) -> Fingerprint {
        collect(self.root())
    }

    fn ikm_hex(&self) -> String {
        hex::encode(self.collect().ikm().unwrap().expose())
    }
}

fn x86_cpuinfo(model: &str) -> String {
    format!(
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: {model}\nflags\t\t: fpu vme\n\n\
         processor\t: 1\nvendor_id\t: GenuineIntel\nmodel name\t: {model}\nflags\t\t: fpu vme\n"
    )
}

fn outcome(fp: &Fingerprint, location: &str) -> Outcome {
    let report = fp.reports().iter().find(|r| r.location == location);
    report.unwrap_or_else(|| panic!("{location} not looked at: {fp:?}")).outcome
}

fn used_labels(fp: &Fingerprint) -> Vec<&'static str> {
    fp.used().map(|r| r.source.label()).collect()
}

fn assert_no_value(shown: &str) {
    for value in ALL_VALUES {
        assert!(!shown.contains(value.trim()), "{value:?} leaked into:\n{shown}");
    }
}

#[test]
fn a_full_tree_uses_every_source_and_answers() {
    let fp = Tree::full().collect();
    assert_eq!(
        used_labels(&fp),
        [
            "dmi.product_uuid",
            "dmi.product_serial",
            "dmi.board_serial",
            "dmi.chassis_serial",
            "machine-id",
            "cpu.model",
            "net.mac",
            "net.mac"
        ]
    );
    assert_eq!(fp.stable_count(), 7);
    assert_eq!(outcome(&fp, "sys/class/net/lo"), Outcome::Skipped(Skip::Virtual));
    assert_eq!(outcome(&fp, "proc/cpuinfo \"Serial\""), Outcome::Skipped(Skip::Missing));
    let ikm = fp.ikm().unwrap();
    assert_eq!(ikm.len(), 32);
}

/// Pins format v1: a change here changes every device's KEK and locks it out of its keystore.
#[test]
fn the_ikm_is_sha256_of_the_documented_canonical_list() {
    let canonical = "edgeseal-kdf-hwfp v1\n\
                     cpu.model=Zenith Q7 Processor @ 2.10GHz\n\
                     dmi.board_serial=PF2ABCDE\n\
                     dmi.chassis_serial=J9XK2L7Q\n\
                     dmi.product_serial=CN7016351S0123\n\
                     dmi.product_uuid=4c4c4544-0042-3510-8052-b4c04f4e3732\n\
                     machine-id=5f1c0a9e2b7d4c3e8a6f0b1d2c3e4f5a\n\
                     net.mac=3c:ec:ef:12:34:56\n\
                     net.mac=a4:bb:6d:01:02:03\n";
    let expected = "af7f1260a6aed0d79f240f0fd610a239e9b9df69628e0fd754d9229d7c6f3555";
    assert_eq!(hex::encode(Sha256::digest(canonical.as_bytes())), expected);
    assert_eq!(Tree::full().ikm_hex(), expected);
}

#[test]
fn dmi_placeholders_unreadable_and_missing_files_are_skipped() {
    let tree = Tree::new();
    tree.dmi("product_uuid", "03000200-0400-0500-0006-000700080009\n")
        .dmi("product_serial", "To be filled by O.E.M.\n")
        .dmi("chassis_serial", "Default string\n")
        .file("etc/machine-id", &format!("{MACHINE_ID}\n"));
    // Root can read a 0400 file, so "unreadable" is a path that cannot be read as a file.
    fs::create_dir_all(tree.path("sys/class/dmi/id/board_serial")).unwrap();
    let fp = tree.collect();
    let dmi = |name: &str| outcome(&fp, &format!("sys/class/dmi/id/{name}"));
    assert_eq!(dmi("product_uuid"), Outcome::Skipped(Skip::Placeholder));
    assert_eq!(dmi("product_serial"), Outcome::Skipped(Skip::Placeholder));
    assert_eq!(dmi("chassis_serial"), Outcome::Skipped(Skip::Placeholder));
    assert_eq!(dmi("board_serial"), Outcome::Skipped(Skip::Unreadable(ErrorKind::IsADirectory)));
    assert_eq!(used_labels(&fp), ["machine-id"]);
    assert_eq!(outcome(&fp, "proc/cpuinfo"), Outcome::Skipped(Skip::Missing));
    assert_eq!(outcome(&fp, "sys/class/net"), Outcome::Skipped(Skip::Missing));
    assert!(fp.ikm().is_ok());

    // A real DMI UUID alone is enough.
    let tree = Tree::new();
    tree.dmi("product_uuid", UUID_FILE);
    assert_eq!(used_labels(&tree.collect()), ["dmi.product_uuid"]);
    assert!(tree.collect().ikm().is_ok());
}

#[test]
fn machine_id_falls_back_to_dbus_only_when_missing() {
    let dbus = "var/lib/dbus/machine-id";
    let other_id = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

    let tree = Tree::new();
    tree.file(dbus, &format!("{other_id}\n"));
    let fp = tree.collect();
    assert_eq!(outcome(&fp, "etc/machine-id"), Outcome::Skipped(Skip::Missing));
    assert_eq!(outcome(&fp, dbus), Outcome::Used);

    // Present but malformed (first boot of an image): no fallback, and no stable source.
    tree.file("etc/machine-id", "uninitialized\n");
    let fp = tree.collect();
    assert_eq!(outcome(&fp, "etc/machine-id"), Outcome::Skipped(Skip::Malformed));
    assert!(fp.reports().iter().all(|r| r.location != dbus), "{fp:?}");
    assert!(fp.ikm().is_err());

    for (contents, why) in [("", Skip::Placeholder), ("00000000000000000000000000000000\n", Skip::Placeholder)] {
        tree.file("etc/machine-id", contents);
        assert_eq!(outcome(&tree.collect(), "etc/machine-id"), Outcome::Skipped(why));
    }

    // The etc copy wins over the dbus copy.
    tree.file("etc/machine-id", &format!("{MACHINE_ID}\n"));
    let with_both = tree.ikm_hex();
    let only_etc = Tree::new();
    only_etc.file("etc/machine-id", &format!("{MACHINE_ID}\n"));
    assert_eq!(with_both, only_etc.ikm_hex());
}

#[test]
fn only_burned_in_addresses_of_physical_non_usb_nics_are_used() {
    let tree = Tree::new();
    tree.nic("lo", "00:00:00:00:00:00", Dev::None)
        .nic("docker0", "3c:ec:ef:00:00:01", Dev::None)
        .nic("veth12ab", "3c:ec:ef:00:00:02", Dev::None)
        .nic("usb0", "3c:ec:ef:00:00:03", Dev::Usb)
        .nic("eth9", "02:fc:00:00:00:01", Dev::Pci)
        .nic("eth8", "ff:ff:ff:ff:ff:ff", Dev::Pci)
        .nic("eth7", "00:00:00:00:00:00", Dev::Pci)
        .nic("eth6", "not-a-mac", Dev::Pci)
        .nic("wlan0", "3c:ec:ef:00:00:04", Dev::Dir)
        .file("sys/class/net/wlan0/addr_assign_type", "1\n")
        .nic("eth0", MAC0, Dev::Pci)
        .file("sys/class/net/eth0/addr_assign_type", "0\n")
        .nic("eth1", MAC1, Dev::Dir);
    let fp = tree.collect();
    let nic = |name: &str| outcome(&fp, &format!("sys/class/net/{name}"));
    assert_eq!(nic("lo"), Outcome::Skipped(Skip::Virtual));
    assert_eq!(nic("docker0"), Outcome::Skipped(Skip::Virtual));
    assert_eq!(nic("veth12ab"), Outcome::Skipped(Skip::Virtual));
    assert_eq!(nic("usb0"), Outcome::Skipped(Skip::Usb));
    assert_eq!(nic("eth9"), Outcome::Skipped(Skip::LocallyAdministered));
    assert_eq!(nic("eth8"), Outcome::Skipped(Skip::Multicast));
    assert_eq!(nic("eth7"), Outcome::Skipped(Skip::Placeholder));
    assert_eq!(nic("eth6"), Outcome::Skipped(Skip::Malformed));
    assert_eq!(nic("wlan0"), Outcome::Skipped(Skip::RandomAddress));
    assert_eq!(nic("eth0"), Outcome::Used);
    assert_eq!(nic("eth1"), Outcome::Used);
    assert_eq!(fp.stable_count(), 2);

    // Only the two used addresses count: the same IKM as a tree holding just them.
    let minimal = Tree::new();
    minimal.nic("eth0", MAC0, Dev::Pci).nic("eth1", MAC1, Dev::Pci);
    assert_eq!(tree.ikm_hex(), minimal.ikm_hex());
}

#[test]
fn the_real_sysfs_layout_with_symlinked_interfaces_is_followed() {
    // sys/class/net/eth0 -> ../../devices/pci…/net/eth0, whose device -> ../../../0000:00:03.0
    let tree = Tree::new();
    let pci = "sys/devices/pci0000:00/0000:00:03.0";
    tree.file(&format!("{pci}/net/eth0/address"), &format!("{MAC0}\n"));
    tree.file("sys/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/net/usb0/address", "3c:ec:ef:00:00:03\n");
    fs::create_dir_all(tree.path("sys/class/net")).unwrap();
    fs::create_dir_all(tree.path("sys/devices/virtual/net/lo")).unwrap();
    fs::write(tree.path("sys/devices/virtual/net/lo/address"), "00:00:00:00:00:00\n").unwrap();
    symlink("../../../0000:00:03.0", tree.path(&format!("{pci}/net/eth0/device"))).unwrap();
    symlink("../../../1-1:1.0", tree.path("sys/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/net/usb0/device"))
        .unwrap();
    symlink("../../devices/pci0000:00/0000:00:03.0/net/eth0", tree.path("sys/class/net/eth0")).unwrap();
    symlink("../../devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/net/usb0", tree.path("sys/class/net/usb0"))
        .unwrap();
    symlink("../../devices/virtual/net/lo", tree.path("sys/class/net/lo")).unwrap();

    let fp = tree.collect();
    assert_eq!(outcome(&fp, "sys/class/net/eth0"), Outcome::Used);
    assert_eq!(outcome(&fp, "sys/class/net/usb0"), Outcome::Skipped(Skip::Usb));
    assert_eq!(outcome(&fp, "sys/class/net/lo"), Outcome::Skipped(Skip::Virtual));
    let flat = Tree::new();
    flat.nic("eth0", MAC0, Dev::Dir);
    assert_eq!(tree.ikm_hex(), flat.ikm_hex());
}

#[test]
fn symlinks_leaving_the_root_are_not_followed() {
    let outside = Tree::new();
    outside.file("machine-id", &format!("{MACHINE_ID}\n"));
    let tree = Tree::new();
    fs::create_dir_all(tree.path("etc")).unwrap();
    symlink(outside.path("machine-id"), tree.path("etc/machine-id")).unwrap();
    let fp = tree.collect();
    assert_eq!(outcome(&fp, "etc/machine-id"), Outcome::Skipped(Skip::OutsideRoot));
    assert!(fp.ikm().is_err());
}

#[test]
fn arm_boards_use_hardware_and_a_non_zero_serial() {
    let pi = "processor\t: 0\nBogoMIPS\t: 108.00\n\nHardware\t: BCM2835\nRevision\t: c03114\n\
              Serial\t\t: 10000000ABCDEF01\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n";
    let tree = Tree::new();
    tree.cpuinfo(pi);
    let fp = tree.collect();
    assert_eq!(used_labels(&fp), ["cpu.hardware", "cpu.serial"]);
    assert_eq!(outcome(&fp, "proc/cpuinfo \"model name\""), Outcome::Skipped(Skip::Missing));
    assert_eq!(fp.stable_count(), 1);
    let with_serial = tree.ikm_hex();

    tree.cpuinfo(&pi.replace("10000000ABCDEF01", "0000000000000000"));
    let fp = tree.collect();
    assert_eq!(outcome(&fp, "proc/cpuinfo \"Serial\""), Outcome::Skipped(Skip::Placeholder));
    assert!(matches!(fp.ikm(), Err(HwfpError::NoStableSource { .. })));

    tree.cpuinfo(&pi.replace("10000000ABCDEF01", "10000000abcdef02"));
    assert_ne!(tree.ikm_hex(), with_serial);
}

#[test]
fn a_cpu_model_alone_is_refused_without_leaking_it() {
    let tree = Tree::new();
    tree.cpuinfo(&x86_cpuinfo(CPU_MODEL)).nic("lo", "00:00:00:00:00:00", Dev::None).nic(
        "eth0",
        "02:fc:00:00:00:01",
        Dev::Pci,
    );
    let fp = tree.collect();
    assert_eq!(used_labels(&fp), ["cpu.model"]);
    assert_eq!(fp.stable_count(), 0);
    let err = fp.ikm().unwrap_err();
    let message = err.to_string();
    for looked_for in ["sys/class/dmi/id", "etc/machine-id", "proc/cpuinfo", "sys/class/net", "CPU model"] {
        assert!(message.contains(looked_for), "{looked_for} missing from: {message}");
    }
    assert!(message.contains(&tree.root().display().to_string()), "{message}");
    assert_no_value(&message);
    assert_no_value(&format!("{err:?}"));
    assert!(fp.explain().contains("result: no stable identifier"), "{}", fp.explain());
}

#[test]
fn an_empty_root_is_refused() {
    let tree = Tree::new();
    assert!(tree.collect().ikm().is_err());
    assert!(collect(&tree.path("does/not/exist")).ikm().is_err());
}

#[test]
fn the_ikm_does_not_depend_on_creation_order_or_interface_names() {
    let forward = Tree::full();

    let backward = Tree::new();
    backward
        .nic("eth1", MAC1, Dev::Dir)
        .nic("eth0", MAC0, Dev::Pci)
        .nic("lo", "00:00:00:00:00:00", Dev::None)
        .cpuinfo(&x86_cpuinfo(CPU_MODEL))
        .file("etc/machine-id", &format!("{MACHINE_ID}\n"))
        .dmi("chassis_serial", &format!("{CHASSIS_SERIAL}\n"))
        .dmi("board_serial", &format!("{BOARD_SERIAL}\n"))
        .dmi("product_serial", &format!("{PRODUCT_SERIAL}\n"))
        .dmi("product_uuid", &UUID_FILE.to_lowercase());
    assert_eq!(forward.ikm_hex(), backward.ikm_hex());

    // Predictable interface names after an OS upgrade: same addresses, swapped and renamed.
    let renamed = Tree::full();
    fs::rename(renamed.path("sys/class/net/eth0"), renamed.path("sys/class/net/enp0s31f6")).unwrap();
    fs::rename(renamed.path("sys/class/net/eth1"), renamed.path("sys/class/net/eth0")).unwrap();
    assert_eq!(forward.ikm_hex(), renamed.ikm_hex());

    // Collecting twice gives the same answer.
    assert_eq!(forward.ikm_hex(), forward.ikm_hex());
}

#[test]
fn changing_any_identifier_changes_the_ikm() {
    let base = Tree::full().ikm_hex();
    type Change = fn(&Tree);
    let changes: &[(&str, Change)] = &[
        ("product_uuid", |t| {
            t.dmi("product_uuid", "4c4c4544-0042-3510-8052-b4c04f4e3733\n");
        }),
        ("product_serial", |t| {
            t.dmi("product_serial", "CN7016351S0124\n");
        }),
        ("board_serial", |t| {
            t.dmi("board_serial", "PF2ABCDF\n");
        }),
        ("chassis_serial", |t| {
            t.dmi("chassis_serial", "J9XK2L7R\n");
        }),
        ("machine-id", |t| {
            t.file("etc/machine-id", "5f1c0a9e2b7d4c3e8a6f0b1d2c3e4f5b\n");
        }),
        ("cpu model", |t| {
            t.cpuinfo(&x86_cpuinfo("Zenith Q9 Processor @ 2.10GHz"));
        }),
        ("mac", |t| {
            t.file("sys/class/net/eth0/address", "3c:ec:ef:12:34:57\n");
        }),
        ("nic added", |t| {
            t.nic("eth2", "3c:ec:ef:12:34:58", Dev::Pci);
        }),
        ("nic removed", |t| {
            fs::remove_dir_all(t.path("sys/class/net/eth1")).unwrap();
        }),
        ("dmi file removed", |t| {
            t.remove("sys/class/dmi/id/chassis_serial");
        }),
        ("serial swapped between labels", |t| {
            t.dmi("product_serial", &format!("{BOARD_SERIAL}\n")).dmi("board_serial", &format!("{PRODUCT_SERIAL}\n"));
        }),
    ];
    let mut seen = vec![base.clone()];
    for (what, change) in changes {
        let tree = Tree::full();
        change(&tree);
        let ikm = tree.ikm_hex();
        assert!(!seen.contains(&ikm), "changing the {what} did not change the IKM");
        seen.push(ikm);
    }
}

#[test]
fn explain_and_debug_list_names_never_values() {
    let tree = Tree::full();
    tree.cpuinfo(&format!("{}Serial\t\t: 10000000ABCDEF01\n", x86_cpuinfo(CPU_MODEL)));
    let fp = tree.collect();
    let ikm = hex::encode(fp.ikm().unwrap().expose());
    let explain = fp.explain();
    for expected in [
        "used:",
        "skipped:",
        "dmi.product_uuid",
        "sys/class/dmi/id/product_uuid",
        "machine-id",
        "etc/machine-id",
        "cpu.model",
        "cpu.serial",
        "sys/class/net/eth0",
        "sys/class/net/lo: virtual interface (no device)",
        "ikm-v1 answers",
    ] {
        assert!(explain.contains(expected), "{expected:?} missing from:\n{explain}");
    }
    assert_no_value(&explain);
    assert!(!explain.contains(&ikm), "{explain}");
    let debug = format!("{fp:?}");
    assert_no_value(&debug);
    assert!(debug.contains("value: Identifier([REDACTED])"), "{debug}");
    assert!(!debug.contains(&ikm), "{debug}");
    assert_no_value(&format!("{:?}", parse::parse_cpuinfo(&x86_cpuinfo(CPU_MODEL))));
}
