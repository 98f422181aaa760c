//! Small helpers shared by the benchmark programs in `benches/`.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

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

/// The nearest-rank percentile `p` (0..=1) of `samples` (not empty).
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// `d` in whole milliseconds.
pub fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// A count from the environment variable `name` (default `default`, at least `min`).
pub fn env_count(name: &str, default: usize, min: usize) -> usize {
    let n = std::env::var(name).ok().map_or(default, |v| v.parse().unwrap_or_else(|e| panic!("{name}={v}: {e}")));
    assert!(n >= min, "{name}={n}: at least {min}");
    n
}
