//! Benchmark: a root CA, an intermediate CA and 50 leaves with pki-init, against the same PKI made by
//! the `openssl` CLI (`benches/openssl-pki.sh`, what EdgeX's old pki-init did), in the same run.
//!
//! ```text
//! cargo bench -p pki-init             # 50 leaves, median of 5 runs each
//! cargo bench -p pki-init -- 100 9    # 100 leaves, 9 runs
//! ```
//!
//! Both write to a fresh directory on tmpfs (`/dev/shm`, like the default `/run/edgeseal/pki`) when there
//! is one, or under `$PKI_BENCH_DIR` if set (e.g. a disk, where pki-init's fsyncs cost real time). pki-init's time is a full first-boot [`pki_init::run`]: scan, issue, atomic writes with fsync.
//! The openssl time includes starting bash and one openssl process per certificate. Without `--bench`
//! (as under `cargo test --all-targets`) it runs once with 3 leaves, as a smoke test.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pki_init::{CaKeys, CertConfig, PkiConfig, San};
use time::OffsetDateTime;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/openssl-pki.sh");

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench");
    let numbers: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let (leaves, runs) = match (bench, numbers.as_slice()) {
        (false, _) => (3, 1),
        (true, [l, r, ..]) => (*l, *r),
        (true, [l]) => (*l, 5),
        (true, []) => (50, 5),
    };
    let base = scratch_base();
    let scratch = tempfile::Builder::new().prefix("pki-bench.").tempdir_in(&base).unwrap();
    let fs = filesystem(scratch.path());

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut rerun = Vec::new();
    let mut check = Vec::new();
    for i in 0..runs {
        // Alternate which goes first so that neither always runs on a warmer machine.
        let (dir_a, dir_b) =
            (scratch.path().join(format!("pki-init-{i}")), scratch.path().join(format!("openssl-{i}")));
        let config = config(&dir_a, leaves);
        let run_ours = || {
            let now = OffsetDateTime::now_utc();
            let t = Instant::now();
            let report = pki_init::run(&config, None, now).unwrap();
            let elapsed = t.elapsed();
            assert_eq!(report.certs.len(), leaves + 2);
            elapsed
        };
        let run_theirs = || {
            let t = Instant::now();
            let status = Command::new("bash").arg(SCRIPT).arg(&dir_b).arg(leaves.to_string()).status().unwrap();
            let elapsed = t.elapsed();
            assert!(status.success(), "{SCRIPT} failed");
            elapsed
        };
        if i % 2 == 0 {
            ours.push(run_ours());
            theirs.push(run_theirs());
        } else {
            theirs.push(run_theirs());
            ours.push(run_ours());
        }
        let t = Instant::now();
        let report = pki_init::run(&config, None, OffsetDateTime::now_utc()).unwrap();
        rerun.push(t.elapsed());
        assert!(!report.changed());
        let t = Instant::now();
        pki_init::check(&config, OffsetDateTime::now_utc()).unwrap();
        check.push(t.elapsed());
        if i == 0 {
            for (dir, leaf) in [(&dir_a, "svc-1"), (&dir_b, "svc-1")] {
                openssl_verify(dir, leaf);
            }
        }
    }

    let (ours_m, theirs_m) = (median(&mut ours), median(&mut theirs));
    let ratio = theirs_m.as_secs_f64() / ours_m.as_secs_f64();
    println!();
    if !bench {
        println!("smoke test only; for the figures run: cargo bench -p pki-init");
    }
    println!("pki-init vs openssl CLI: root + intermediate + {leaves} leaves, EC P-256, {runs} runs, {fs}");
    println!();
    println!("| {:<50} | {:>10} | {:>10} | {:>10} |", "what", "median", "min", "max");
    println!("|{:-<52}|{:->12}|{:->12}|{:->12}|", "", "", "", "");
    row("pki-init run, first boot (issue + fsync'd writes)", &mut ours);
    row("openssl CLI script (benches/openssl-pki.sh)", &mut theirs);
    row("pki-init run, rerun with nothing to do", &mut rerun);
    row("pki-init check", &mut check);
    println!();
    println!(
        "openssl / pki-init (median): {ratio:.1}x   (target: at least 30x: {})",
        if ratio >= 30.0 { "met" } else { "NOT met" }
    );
    println!("both outputs verified with `openssl verify -x509_strict -purpose sslserver -verify_ip 127.0.0.1`");
}

fn config(dir: &Path, leaves: usize) -> PkiConfig {
    let mut config = PkiConfig { dir: dir.to_path_buf(), ca_keys: CaKeys::Destroy, ..PkiConfig::default() };
    for i in 1..=leaves {
        let name = format!("svc-{i}");
        let sans = vec![San::parse(&name).unwrap(), San::parse("127.0.0.1").unwrap()];
        config.certs.insert(name.parse().unwrap(), CertConfig::new(sans));
    }
    config
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn row(what: &str, v: &mut [Duration]) {
    let m = median(v);
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    println!("| {what:<50} | {:>10} | {:>10} | {:>10} |", ms(m), ms(v[0]), ms(v[v.len() - 1]));
}

fn scratch_base() -> PathBuf {
    if let Some(dir) = std::env::var_os("PKI_BENCH_DIR") {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && tempfile::tempdir_in(shm).is_ok() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn filesystem(dir: &Path) -> String {
    let out = Command::new("stat").args(["-f", "-c", "%T"]).arg(dir).output();
    let kind = out.ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    format!("on {kind} ({})", dir.parent().unwrap_or(dir).display())
}

fn openssl_verify(dir: &Path, leaf: &str) {
    let out = Command::new("openssl")
        .args(["verify", "-x509_strict", "-purpose", "sslserver", "-verify_ip", "127.0.0.1", "-CAfile"])
        .arg(dir.join("ca/ca.pem"))
        .arg("-untrusted")
        .arg(dir.join("ca/intermediate.pem"))
        .arg(dir.join(leaf).join("cert.pem"))
        .output()
        .expect("the openssl CLI is needed for this benchmark: apt-get install openssl");
    assert!(out.status.success(), "{}: {}", dir.display(), String::from_utf8_lossy(&out.stdout));
}
