//! Benchmark: a root CA, an intermediate CA and 50 leaves with pki-init, against the same PKI made by
//! the `openssl` CLI (`benches/openssl-pki.sh`, what EdgeX's old pki-init did), in the same run.
//!
//! ```text
//! cargo bench -p pki-init                                  # 50 leaves, median of 5 runs each
//! cargo bench -p pki-init -- 100 9                         # 100 leaves, 9 runs
//! PKI_BENCH_DIR=/var/tmp cargo bench -p pki-init           # and again with pki.dir on that disk
//! ```
//!
//! Both always write to a fresh directory on tmpfs (`/dev/shm`, like the default `/run/edgeseal/pki`)
//! when there is one; with `$PKI_BENCH_DIR` set they do it a second time under that directory (e.g. on
//! ext4, where pki-init's syncs cost real time) and a second table is printed. pki-init's time is a
//! full first-boot [`pki_init::run`]: scan, issue, atomic writes made durable (one `syncfs` per write
//! phase). The openssl time includes starting bash and one openssl process per certificate; the script
//! syncs nothing (its output is synced after its clock stops, so that pki-init's next `syncfs` does not
//! write the script's files: each side pays only for its own durability, and openssl for none). Without `--bench` (as under `cargo test --all-targets`) it runs once with 3 leaves,
//! as a smoke test.

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
    let mut bases = vec![memory_base()];
    bases.extend(std::env::var_os("PKI_BENCH_DIR").map(PathBuf::from));
    println!();
    if !bench {
        println!("smoke test only; for the figures run: cargo bench -p pki-init");
    }
    let mut ratios = Vec::new();
    for base in &bases {
        ratios.push(measure(base, leaves, runs));
    }
    println!();
    for (fs, ratio, ours, theirs) in &ratios {
        println!(
            "openssl / pki-init (median), {fs}: {ratio:.1}x   (target: at least 30x: {})",
            if *ratio >= 30.0 { "met" } else { "NOT met" }
        );
        record_figure(&format!("root + intermediate + {leaves} leaves on {fs}, median"), *ours, *theirs, *ratio);
    }
    println!("both outputs verified with `openssl verify -x509_strict -purpose sslserver -verify_ip 127.0.0.1`");
}

/// Appends this bench's figure to `make bench`'s summary (`EDGESEAL_BENCH_SUMMARY`, one JSON object
/// per line, the shape of `edgeseal_tests::bench::Figure`, which this crate cannot depend on).
fn record_figure(figure: &str, ours: Duration, theirs: Duration, ratio: f64) {
    use std::io::Write as _;
    let Some(path) = std::env::var_os("EDGESEAL_BENCH_SUMMARY") else { return };
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let line = format!(
        "{{\"bench\":\"pki-init\",\"figure\":{},\"value\":{},\"anchor\":{},\"ratio\":{},\"target\":\">= 30x faster\",\"met\":{}}}\n",
        quote(figure),
        quote(&ms(ours)),
        quote(&format!("openssl CLI script: {}", ms(theirs))),
        quote(&format!("{ratio:.1}x faster")),
        ratio >= 30.0
    );
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = appended {
        eprintln!("cannot append to the bench summary: {e}");
    }
}

/// Runs both, alternately, `runs` times in fresh directories under `base`; prints the table and
/// returns the filesystem, the ratio of the medians (openssl / pki-init) and both medians.
fn measure(base: &Path, leaves: usize, runs: usize) -> (String, f64, Duration, Duration) {
    let scratch = tempfile::Builder::new().prefix("pki-bench.").tempdir_in(base).unwrap();
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
            // The script syncs nothing; its dirty pages are written out here, untimed, so that the
            // `syncfs` of a pki-init run right after it does not pay for them.
            let synced = Command::new("sync").arg("-f").arg(&dir_b).status().unwrap();
            assert!(synced.success(), "sync -f {}", dir_b.display());
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
    println!();
    println!("pki-init vs openssl CLI: root + intermediate + {leaves} leaves, EC P-256, {runs} runs, {fs}");
    println!();
    println!("| {:<50} | {:>10} | {:>10} | {:>10} |", "what", "median", "min", "max");
    println!("|{:-<52}|{:->12}|{:->12}|{:->12}|", "", "", "", "");
    row("pki-init run, first boot (issue + durable writes)", &mut ours);
    row("openssl CLI script (benches/openssl-pki.sh)", &mut theirs);
    row("pki-init run, rerun with nothing to do", &mut rerun);
    row("pki-init check", &mut check);
    (fs, theirs_m.as_secs_f64() / ours_m.as_secs_f64(), ours_m, theirs_m)
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

/// A tmpfs (`/dev/shm`) if there is a usable one, else the temp directory.
fn memory_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && tempfile::tempdir_in(shm).is_ok() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// `on ext4 (/var/tmp)`: `df` names ext4 as such (`stat -f` says ext2/ext3).
fn filesystem(dir: &Path) -> String {
    let out = Command::new("df").arg("--output=fstype").arg(dir).output();
    let text = out.ok().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let kind = text.lines().nth(1).unwrap_or("unknown filesystem").trim().to_string();
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
