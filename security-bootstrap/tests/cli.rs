//! The `security-bootstrap` commands as an operator runs them: exit codes, one clear error line,
//! nothing secret on stdout or stderr, nothing changed on disk when something is wrong.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EDGESEAL_IKM: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const OTHER_IKM: &str = "0f0e0d0c0b0a09080706050403020100f0e0d0c0b0a090807060504030201000";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../secretstore-setup/tests/fixtures/edgex").join(name)
}

fn expected_shares() -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&fs::read(fixture("expected-shares.json")).unwrap()).unwrap();
    v["shares_hex"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

/// A private working directory with plug-in scripts in it.
struct Device {
    dir: tempfile::TempDir,
}

impl Device {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An ikm-v1 plug-in that prints `ikm`.
    fn plugin(&self, name: &str, ikm: &str) -> PathBuf {
        self.script(
            name,
            &format!("[ \"$1\" = ikm-v1 ] || {{ echo \"unknown protocol $1\" >&2; exit 2; }}\necho {ikm}"),
        )
    }

    /// An EDGEX_IKM_HOOK-style executable that prints the fixture's IKM.
    fn edgex_hook(&self) -> PathBuf {
        let ikm = fs::read_to_string(fixture("ikm.hex")).unwrap();
        self.script("edgex-hook", &format!("echo {}", ikm.trim()))
    }

    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.path(name);
        let side = self.path(&format!("{name}.src"));
        fs::write(&side, format!("#!/bin/sh\n{body}\n")).unwrap();
        install(&side, &path);
        fs::remove_file(&side).unwrap();
        path
    }

    /// The shipped hardware-fingerprint plug-in, copied into this private directory.
    fn hwfp(&self) -> PathBuf {
        let built = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("edgeseal-kdf-hwfp");
        assert!(
            built.exists(),
            "{} is missing: run the whole workspace's tests (make test) so plug-ins are built",
            built.display()
        );
        let path = self.path("edgeseal-kdf-hwfp");
        install(&built, &path);
        path
    }

    /// Every path under the directory with a digest of its content, to prove nothing changed.
    fn snapshot(&self) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        walk(self.dir.path(), &mut out);
        out.sort();
        out.into_iter().map(|(p, bytes)| (p, format!("{} bytes, fnv1a {:08x}", bytes.len(), fnv1a(&bytes)))).collect()
    }
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c9dc5u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x01000193))
}

/// Copies an executable by a child process (`install`), so this multi-threaded test process never holds
/// a write descriptor to a file it executes (a concurrent fork would inherit it: ETXTBSY).
fn install(src: &Path, dst: &Path) {
    let status = Command::new("install").args(["-m", "0755"]).arg(src).arg(dst).status().unwrap();
    assert!(status.success());
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.push((path.clone(), Vec::new()));
            walk(&path, out);
        } else {
            out.push((path.clone(), fs::read(&path).unwrap()));
        }
    }
}

fn bootstrap(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_security-bootstrap")).args(args.iter().map(|a| a.as_ref())).output().unwrap()
}

fn text(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn kdf_check_reports_length_and_fingerprint_never_the_ikm() {
    let d = Device::new();
    let plugin = d.plugin("kdf", EDGESEAL_IKM);
    let out = bootstrap(&[&"kdf", &"check", &"--plugin", &plugin]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("valid: 32-byte IKM, identical on two runs"), "{stdout}");
    assert!(stdout.contains("fingerprint"), "{stdout}");
    assert!(!stdout.contains(&EDGESEAL_IKM[..12]) && !stderr.contains(&EDGESEAL_IKM[..12]));

    let other = d.plugin("other", OTHER_IKM);
    let (stdout2, _) = text(&bootstrap(&[&"kdf", &"check", &"--plugin", &other]));
    let fp = |s: &str| s.lines().find(|l| l.starts_with("fingerprint")).unwrap().to_string();
    assert_ne!(fp(&stdout), fp(&stdout2), "a different IKM gives a different fingerprint");
}

#[test]
fn kdf_check_runs_the_shipped_hardware_fingerprint_plugin() {
    let d = Device::new();
    let hwfp = d.hwfp();
    let out = bootstrap(&[&"kdf", &"check", &"--plugin", &hwfp]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("32-byte IKM, identical on two runs"), "{stdout}");
}

#[test]
fn kdf_check_refuses_an_unstable_plugin() {
    let d = Device::new();
    let plugin =
        d.script("random", "[ \"$1\" = ikm-v1 ] || exit 2\nhead -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo");
    let out = bootstrap(&[&"kdf", &"check", &"--plugin", &plugin]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("two different answers"), "{stderr}");
}

#[test]
fn plugin_failures_exit_1_with_one_line_naming_the_plugin() {
    let d = Device::new();
    let cases = [
        (d.script("fails", "echo 'tpm not found' >&2; exit 3"), "exit status 3; stderr: \"tpm not found\""),
        (d.script("badhex", "echo not-hex"), "is not a hex digit"),
        (d.script("silent", "exit 0"), "printed nothing"),
    ];
    for (plugin, want) in cases {
        let out = bootstrap(&[&"kdf", &"check", &"--plugin", &plugin, &"--timeout", &"5s"]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(want) && stderr.contains(&plugin.display().to_string()), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    }
    let writable = d.plugin("writable", EDGESEAL_IKM);
    fs::set_permissions(&writable, fs::Permissions::from_mode(0o777)).unwrap();
    let (_, stderr) = text(&bootstrap(&[&"kdf", &"check", &"--plugin", &writable]));
    assert!(stderr.contains("writable by group or others") && stderr.contains("chmod go-w"), "{stderr}");
}

#[test]
fn usage_and_config_errors_exit_64_naming_file_line_and_key() {
    let d = Device::new();
    let out = bootstrap(&[&"kdf", &"check", &"--plugin", &"relative/plugin"]);
    assert_eq!(out.status.code(), Some(64), "{:?}", text(&out));
    assert!(text(&out).1.contains("must be an absolute path"));

    let out = bootstrap(&[&"kdf", &"check"]);
    assert_eq!(out.status.code(), Some(64));
    let out = bootstrap(&[&"frobnicate"]);
    assert_eq!(out.status.code(), Some(64));

    let config = d.path("edgeseal.yaml");
    fs::write(&config, "keystore:\n  dir: /var/lib/edgeseal\nkdf:\n  plugin: /usr/libexec/x\n  timout: 5s\n").unwrap();
    let out = bootstrap(&[&"kdf", &"check", &"--config", &config]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains(&format!("{}:5:3", config.display())), "{stderr}");
    assert!(stderr.contains("unknown field `timout`"), "{stderr}");

    let out = bootstrap(&[&"kdf", &"check", &"--config", &d.path("missing.yaml")]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out).1.contains("missing.yaml"));

    let out = bootstrap(&[&"--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).0.contains("Exit codes: 0 success, 1 runtime failure, 64 bad usage"));
}

/// Every kind of configuration error — the schema, a section's own rule, a rule across sections —
/// is found when the file is loaded, by any command (here `kdf check`, which uses none of these
/// sections), and exits 64 with the file, line, column and key.
#[test]
fn every_kind_of_config_error_exits_64_at_load_with_file_line_and_column() {
    let d = Device::new();
    let plugin = d.plugin("kdf", EDGESEAL_IKM);
    let head = format!("kdf:\n  plugin: {}\n", plugin.display());
    let cases = [
        ("schema", "keystore:\n  dri: /x\n", "4:3", "keystore: unknown field `dri`"),
        ("kdf", "kdf:\n  plugin: /x\n  timeout: 0s\n", "5:3", "kdf.timeout must be between"),
        ("pki", "pki:\n  leaf_validity: 0s\n", "4:3", "pki.leaf_validity must be between"),
        (
            "secret_store",
            "secret_store:\n  server_cert: ca-only\n  threshold: 9\n",
            "5:3",
            "secret_store.threshold must be between 1 and shares (5), got 9",
        ),
        ("token_server", "token_server:\n  rate_burst: 0\n", "4:3", "token_server.rate_burst must be at least 1"),
        ("token_server", "token_server:\n  health_cache: 1h\n", "4:3", "token_server.health_cache must be at most 1m"),
        (
            "selectors",
            "services:\n  a:\n    selectors:\n      unix: { path: /usr/bin/a }\n",
            "6:7",
            "services.a.selectors.unix: give uid",
        ),
        (
            "store identity",
            "pki:\n  certs:\n    openbao: { sans: [127.0.0.1] }\n    web: { sans: [127.0.0.1] }\n",
            "6:12",
            "pki.certs.web: SANs cover 127.0.0.1",
        ),
        (
            "server pin",
            "secret_store:\n  address: https://bao.example:8200\n",
            "3:1",
            "secret_store.server_cert is required",
        ),
    ];
    for (kind, section, at, want) in cases {
        let config = d.path("edgeseal.yaml");
        // The plug-in line comes first, except where the case is about kdf.
        let yaml = if kind == "kdf" { section.replace("kdf:\n", "\n\nkdf:\n") } else { format!("{head}{section}") };
        fs::write(&config, &yaml).unwrap();
        let out = bootstrap(&[&"kdf", &"check", &"--config", &config]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(64), "{kind}: {stdout}{stderr}");
        assert!(stderr.contains(&format!("config {}:{at}: ", config.display())), "{kind}: want {at}: {stderr}");
        assert!(stderr.contains(want), "{kind}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{kind}: one line: {stderr}");
    }
}

fn import(d: &Device, resp_init: &str, extra: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let plugin = d.plugin("kdf", EDGESEAL_IKM);
    let keystore = d.path("keystore");
    let resp = fixture(resp_init);
    let salt = fixture("kdf-salt.dat");
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"keystore",
        &"import-edgex",
        &"--resp-init",
        &resp,
        &"--salt",
        &salt,
        &"--dir",
        &keystore,
        &"--kdf-plugin",
        &plugin,
    ];
    args.extend_from_slice(extra);
    bootstrap(&args)
}

fn assert_keystore_holds_no_plaintext_share(d: &Device) {
    let bytes = fs::read(d.path("keystore/keystore.json")).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    for share in expected_shares() {
        let raw = hex::decode(&share).unwrap();
        assert!(!text.contains(&share), "hex share in keystore");
        assert!(!bytes.windows(raw.len()).any(|w| w == raw), "raw share in keystore");
        use base64::Engine as _;
        assert!(!text.contains(&base64::engine::general_purpose::STANDARD.encode(&raw)), "base64 share in keystore");
    }
    assert!(!text.contains("FAKEedgeseal"), "root token in keystore");
}

#[test]
fn import_edgex_plain_then_inspect_with_this_devices_kek() {
    let d = Device::new();
    let out = import(&d, "resp-init-plain.json", &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("imported     5 unseal shares (threshold 3)") && stdout.contains("plaintext keys"),
        "{stdout}"
    );
    assert!(!stdout.contains("FAKEedgeseal") && !stderr.contains("FAKEedgeseal"), "the root token is never shown");
    assert_keystore_holds_no_plaintext_share(&d);

    let plugin = d.path("kdf");
    let keystore = d.path("keystore");
    let out = bootstrap(&[&"keystore", &"inspect", &"--dir", &keystore, &"--kdf-plugin", &plugin]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("shares       5 (threshold 3)"), "{stdout}");
    assert!(stdout.contains("unseal-share 0..=4"), "{stdout}");
    assert!(stdout.contains("opens this keystore: key check and all 5 items authenticate"), "{stdout}");
    for share in expected_shares() {
        assert!(!stdout.contains(&share[..16]));
    }
}

#[test]
fn import_edgex_encrypted_with_both_info_strings() {
    for (name, layout) in [
        ("resp-init-encrypted-vault.json", "info vault<i>"),
        ("resp-init-encrypted-secretstore.json", "info secretstore<i>"),
        ("resp-init-encrypted-vault-noroot.json", "info vault<i>"),
    ] {
        let d = Device::new();
        let hook = d.edgex_hook();
        let out = import(&d, name, &[&"--edgex-ikm-hook", &hook, &"--threshold", &"2"]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{name}: {stdout}{stderr}");
        assert!(stdout.contains(layout) && stdout.contains("(threshold 2)"), "{name}: {stdout}");
        assert_keystore_holds_no_plaintext_share(&d);
        // The shares really are the EdgeX ones: decrypt with the library and compare.
        let kek_plugin = kdf_plugins::KdfConfig { plugin: d.path("kdf"), ..Default::default() };
        let ikm = kdf_plugins::run_plugin(&kek_plugin).unwrap();
        let store = secretstore_setup::KeystoreDir::new(d.path("keystore"));
        let file = store.read().unwrap().unwrap();
        let kek = secretstore_setup::keystore::derive_file_kek(&file, &ikm).unwrap();
        let shares: Vec<String> = store.open(&kek).unwrap().shares().iter().map(|s| hex::encode(s.expose())).collect();
        assert_eq!(shares, expected_shares(), "{name}");
    }
}

#[test]
fn import_edgex_failures_change_nothing_on_disk() {
    let d = Device::new();
    let wrong_hook = d.script("wrong-hook", &format!("echo {OTHER_IKM}"));
    d.plugin("kdf", EDGESEAL_IKM);
    let before = d.snapshot();
    let out = import(&d, "resp-init-encrypted-vault.json", &[&"--edgex-ikm-hook", &wrong_hook]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not decrypt with the hook's IKM"), "{stderr}");
    assert_eq!(d.snapshot(), before, "no keystore directory, no file");

    // Encrypted keys without the salt file: a usage error.
    let plugin = d.path("kdf");
    let resp = fixture("resp-init-encrypted-vault.json");
    let dir = d.path("keystore");
    let out =
        bootstrap(&[&"keystore", &"import-edgex", &"--resp-init", &resp, &"--dir", &dir, &"--kdf-plugin", &plugin]);
    assert_eq!(out.status.code(), Some(64), "{:?}", text(&out));
    assert!(text(&out).1.contains("give --salt"));

    // A damaged resp-init.json.
    let damaged = d.path("resp-init.json");
    fs::write(&damaged, "{\"keys\": [\"0c9a3f51e2\"").unwrap();
    let before = d.snapshot();
    let out =
        bootstrap(&[&"keystore", &"import-edgex", &"--resp-init", &damaged, &"--dir", &dir, &"--kdf-plugin", &plugin]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not an EdgeX resp-init.json") && stderr.contains("resp-init.json"), "{stderr}");
    assert!(!stderr.contains("0c9a3f51e2"), "never quotes a key: {stderr}");
    assert_eq!(d.snapshot(), before);
}

#[test]
fn an_existing_keystore_is_never_replaced_by_an_import() {
    let d = Device::new();
    assert_eq!(import(&d, "resp-init-plain.json", &[]).status.code(), Some(0));
    let hook = d.edgex_hook();
    let before = d.snapshot();
    let out = import(&d, "resp-init-encrypted-secretstore.json", &[&"--edgex-ikm-hook", &hook]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(d.snapshot(), before);
}

#[test]
fn inspect_tells_a_wrong_kek_from_a_corrupted_file() {
    let d = Device::new();
    assert_eq!(import(&d, "resp-init-plain.json", &[]).status.code(), Some(0));
    let keystore = d.path("keystore");

    let other = d.plugin("other", OTHER_IKM);
    let before = d.snapshot();
    let out = bootstrap(&[&"keystore", &"inspect", &"--dir", &keystore, &"--kdf-plugin", &other]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("does NOT open this keystore"), "{stdout}");
    assert!(stderr.contains("hardware or the KDF plug-in changed"), "{stderr}");
    assert_eq!(d.snapshot(), before);

    let file = d.path("keystore/keystore.json");
    let mut bytes = fs::read(&file).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x04;
    fs::write(&file, &bytes).unwrap();
    let before = d.snapshot();
    let plugin = d.path("kdf");
    let out = bootstrap(&[&"keystore", &"inspect", &"--dir", &keystore, &"--kdf-plugin", &plugin]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("corrupted or was tampered with"), "{stderr}");
    assert_eq!(d.snapshot(), before);

    // Without a plug-in, inspect still reads the structure of a healthy file.
    fs::write(&file, {
        bytes[at] ^= 0x04;
        &bytes
    })
    .unwrap();
    let out = bootstrap(&[&"keystore", &"inspect", &"--dir", &keystore]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).0.contains("kek          not checked"));
}

#[test]
fn commands_accept_a_config_file_instead_of_flags() {
    let d = Device::new();
    let plugin = d.plugin("kdf", EDGESEAL_IKM);
    let config = d.path("edgeseal.yaml");
    fs::write(
        &config,
        format!(
            "keystore:\n  dir: {}\nkdf:\n  plugin: {}\n  timeout: 10s\n",
            d.path("keystore").display(),
            plugin.display()
        ),
    )
    .unwrap();
    let resp = fixture("resp-init-plain.json");
    let out = bootstrap(&[&"keystore", &"import-edgex", &"--config", &config, &"--resp-init", &resp]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let out = bootstrap(&[&"keystore", &"inspect", &"--config", &config]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(text(&out).0.contains("opens this keystore"));
    let out = bootstrap(&[&"kdf", &"check", &"--config", &config]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
}

/// Stands in for the token server on a Unix socket so the clients' exit codes can be checked for
/// every status the real server sends (the real server's 403/503 paths are covered end to end in
/// `tests/tests/token_server.rs`): answers every request with `status` and a JSON error body.
fn answering(d: &Device, status: u16) -> PathBuf {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::net::UnixListener;

    let socket = d.path(&format!("token-{status}.sock"));
    let listener = UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let answer = if status == 200 {
                r#"{"service":"svc","auth":{"client_token":"s.test"}}"#.to_string()
            } else {
                format!(r#"{{"error":"answered {status} on purpose"}}"#)
            };
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    socket
}

#[test]
fn token_socket_clients_share_one_exit_code_per_answer() {
    let d = Device::new();
    // status → exit code of `token`, `token --whoami`, `health` and `gate` (EX_* from sysexits.h).
    let cases: &[(u16, i32)] =
        &[(200, 0), (403, 77), (429, 75), (408, 75), (503, 69), (400, 76), (404, 76), (405, 76), (413, 76), (500, 1)];
    for &(status, want) in cases {
        let socket = answering(&d, status);
        let token = bootstrap(&[&"token", &"--socket", &socket]);
        let whoami = bootstrap(&[&"token", &"--whoami", &"--socket", &socket]);
        let health = bootstrap(&[&"health", &"--socket", &socket]);
        let gate = bootstrap(&[
            &"gate",
            &"--service",
            &"svc",
            &"--socket",
            &socket,
            &"--wait",
            &"0s",
            &"--token-env",
            &"T",
            &"--",
            &"/bin/true",
        ]);
        for (command, out) in [("token", &token), ("token --whoami", &whoami), ("health", &health), ("gate", &gate)] {
            let (_, stderr) = text(out);
            assert_eq!(out.status.code(), Some(want), "{command} on {status}: {stderr}");
            if status != 200 {
                assert!(stderr.contains(&format!("answered {status} on purpose")), "{command} on {status}: {stderr}");
                assert_eq!(stderr.lines().count(), 1, "{command} on {status}: one line: {stderr}");
            }
        }
    }

    // Nothing listening: unavailable, for every client.
    let missing = d.path("missing.sock");
    for args in [
        vec!["token", "--socket"],
        vec!["health", "--socket"],
        vec!["gate", "--service", "svc", "--wait", "0s", "--token-env", "T", "--socket"],
    ] {
        let mut argv: Vec<&dyn AsRef<std::ffi::OsStr>> =
            args.iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>).collect();
        argv.push(&missing);
        if args[0] == "gate" {
            argv.extend([&"--" as &dyn AsRef<std::ffi::OsStr>, &"/bin/true"]);
        }
        let out = bootstrap(&argv);
        assert_eq!(out.status.code(), Some(69), "{args:?}: {:?}", text(&out));
    }

    let out = bootstrap(&[&"token", &"--help"]);
    let help = text(&out).0;
    for code in ["69", "75", "76", "77"] {
        assert!(help.contains(code), "token --help documents exit code {code}: {help}");
    }
}
