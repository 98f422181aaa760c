//! Small helpers shared by the benchmark programs in `benches/`.

use std::fs;
use std::path::Path;
use std::process::Command;

/// "MET" or "MISSED", for a target line of a benchmark report.
pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "MISSED"
    }
}

/// CPUs available to this process, printed beside the figures.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The 1, 5 and 15 minute load averages: a noisy machine explains noisy figures.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg").map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

/// What `bao version` prints, to name the OpenBao a benchmark ran against.
pub fn bao_version(bao: &Path) -> String {
    Command::new(bao)
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
