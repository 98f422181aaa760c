//! Unit tests of the derivation and provisioning flows. The recovery policy and the exact tool
//! invocations are checked against fake tpm2-tools (shell scripts that log their arguments and answer
//! as told); the real tools against swtpm are exercised by `tests/tests/tpm2_plugin.rs`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::tool::Tool;
use super::*;

#[test]
fn the_hmac_answer_must_be_exactly_32_bytes_of_hex() {
    let good = "74d8fa81a1224bc58acd9c81f24622ca6d5d466a41d24222c391940e1bdb26c0";
    assert_eq!(hex::encode(parse_hmac_hex(good.as_bytes()).unwrap().expose()), good);
    assert_eq!(hex::encode(parse_hmac_hex(format!("{good}\n").as_bytes()).unwrap().expose()), good);
    for bad in ["", "74d8", &good[1..], &format!("{good}00"), &good.replace('7', "x"), "ERROR: nope"] {
        let err = parse_hmac_hex(bad.as_bytes()).unwrap_err();
        assert!(matches!(err, Tpm2Error::BadAnswer { .. }), "{bad:?}: {err:?}");
        assert!(!err.to_string().contains("74d8"), "never quotes the answer: {err}");
    }
}

#[test]
fn the_versioned_label_and_template_are_frozen() {
    // Changing either changes every device's IKM: only ever add a v2 next to them.
    assert_eq!(LABEL, b"edgeseal-kdf-tpm2 ikm v1");
    assert_eq!(KEY_ATTRIBUTES, "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|sign");
    assert_eq!(KEY_ATTRIBUTES_RAW, 0x2 | 0x10 | 0x20 | 0x40 | 0x400 | 0x4_0000);
}

#[test]
fn without_tpm2_tools_nothing_is_attempted() {
    let empty = tempfile::tempdir().unwrap();
    let options = Options { path: Some(empty.path().as_os_str().to_owned()), ..Options::default() };
    let err = derive_ikm(&options, KeySource::Primary).unwrap_err();
    assert!(matches!(err, Tpm2Error::ToolsMissing { tool: "tpm2_createprimary", .. }), "{err:?}");
}

const ZERO_HMAC: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A directory of fake tpm2-tools. Each logs `NAME ARGS` to `log`; `tpm2_hmac` also logs its stdin.
struct FakeTools {
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl FakeTools {
    /// Every tool succeeds; `tpm2_hmac` prints `ZERO_HMAC`.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls.log");
        let fake = Self { dir, log };
        for tool in
            [Tool::CreatePrimary, Tool::Create, Tool::Load, Tool::EvictControl, Tool::ReadPublic, Tool::FlushContext]
        {
            fake.script(tool, "exit 0");
        }
        fake.script(
            Tool::Hmac,
            &format!(
                "printf ' stdin=' >> '{}'; cat >> '{}'; printf '{ZERO_HMAC}'",
                fake.log.display(),
                fake.log.display()
            ),
        );
        fake
    }

    /// Replaces `tool`'s behaviour (after logging its call) with `body`.
    fn script(&self, tool: Tool, body: &str) {
        let path = self.dir.path().join(tool.name());
        let log = self.log.display();
        fs::write(&path, format!("#!/bin/sh\nprintf '\\n%s %s' \"${{0##*/}}\" \"$*\" >> '{log}'\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Makes `tool` fail like tpm2-tools does with response code `line`.
    fn fail(&self, tool: Tool, line: &str) {
        self.script(
            tool,
            &format!("echo 'ERROR: {line}' >&2; echo 'ERROR: Unable to run {}' >&2; exit 1", tool.name()),
        );
    }

    fn options(&self, timeout: Duration) -> Options {
        let path = format!("{}:/usr/bin:/bin", self.dir.path().display());
        Options { tcti: "swtpm:host=127.0.0.1,port=1".parse().unwrap(), timeout, path: Some(path.into()) }
    }

    /// The logged calls, one per line, with the working directory's path replaced by `WORK`.
    fn calls(&self) -> Vec<String> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.split(' ')
                    .map(|word| match Path::new(word).parent() {
                        Some(dir) if dir.to_string_lossy().contains("edgeseal-kdf-tpm2.") => {
                            format!("WORK/{}", Path::new(word).file_name().unwrap().to_string_lossy())
                        }
                        _ => word.to_owned(),
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }
}

#[test]
fn the_primary_derivation_runs_the_recipe_and_always_flushes() {
    let fake = FakeTools::new();
    let derivation = derive_ikm(&fake.options(Duration::from_secs(10)), KeySource::Primary).unwrap();
    assert_eq!(hex::encode(derivation.ikm.expose()), ZERO_HMAC);
    assert!(derivation.notes.is_empty());
    assert_eq!(
        fake.calls(),
        [
            "tpm2_createprimary -Q -C o -G hmac -g sha256 -a \
             fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|sign -c WORK/primary.ctx",
            "tpm2_flushcontext -t",
            "tpm2_hmac -c WORK/primary.ctx -g sha256 --hex stdin=edgeseal-kdf-tpm2 ikm v1",
            "tpm2_flushcontext -t",
        ]
    );
}

#[test]
fn a_failed_step_still_flushes_and_removes_the_work_dir() {
    let fake = FakeTools::new();
    fake.script(
        Tool::Hmac,
        &format!(
            "printf ' cwd=%s' \"$PWD\" >> '{}'; echo 'ERROR: Esys_HMAC(0x921) - tpm:warn(2.0): … DA lockout mode' >&2; exit 1",
            fake.log.display()
        ),
    );
    let handle: PersistentHandle = "0x81000101".parse().unwrap();
    fake.script(Tool::ReadPublic, &format!("cat <<'EOF'\n{}\nEOF", READPUBLIC_HMAC));
    let err = derive_ikm(&fake.options(Duration::from_secs(10)), KeySource::Persistent(handle)).unwrap_err();
    assert!(matches!(err, Tpm2Error::DaLockout { key: KeySource::Persistent(h) } if h == handle), "{err:?}");
    let calls = fake.calls();
    assert_eq!(calls.first().map(String::as_str), Some("tpm2_readpublic -c 0x81000101"));
    assert_eq!(calls.last().map(String::as_str), Some("tpm2_flushcontext -t"), "{calls:?}");
    let log = fs::read_to_string(&fake.log).unwrap();
    let work = log.split_once(" cwd=").and_then(|(_, rest)| rest.split_whitespace().next()).unwrap();
    assert!(work.contains("edgeseal-kdf-tpm2."), "tools run in the private working directory: {work}");
    assert!(!Path::new(work).exists(), "the working directory is removed after an error");
}

#[test]
fn out_of_object_memory_is_flushed_and_retried_once_then_reported() {
    let fake = FakeTools::new();
    fake.fail(Tool::CreatePrimary, "Esys_CreatePrimary(0x902) - tpm:warn(2.0): out of memory for object contexts");
    let started = Instant::now();
    let err = derive_ikm(&fake.options(Duration::from_secs(10)), KeySource::Primary).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, Tpm2Error::OutOfMemory { code: error::ResponseCode(0x902) }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the TPM is out of memory for objects or sessions (0x902) even after the plug-in flushed all transient \
         objects and sessions: another client keeps filling it; stop that client, or use the kernel resource \
         manager (--tcti device:/dev/tpmrm0)"
    );
    let calls: Vec<String> =
        fake.calls().into_iter().map(|c| c.split(" -Q").next().unwrap_or_default().to_owned()).collect();
    assert_eq!(
        calls,
        ["tpm2_createprimary", "tpm2_flushcontext -t -l -s", "tpm2_createprimary", "tpm2_flushcontext -t"]
    );
}

#[test]
fn a_busy_tpm_is_retried_with_back_off_until_the_deadline() {
    let fake = FakeTools::new();
    fake.fail(
        Tool::CreatePrimary,
        "Esys_CreatePrimary(0x922) - tpm:warn(2.0): the TPM was not able to start the command",
    );
    let timeout = Duration::from_secs(2);
    let started = Instant::now();
    let err = derive_ikm(&fake.options(timeout), KeySource::Primary).unwrap_err();
    assert!(started.elapsed() <= timeout + Duration::from_millis(500), "{:?}", started.elapsed());
    assert_eq!(
        err.to_string(),
        "the TPM stayed busy (0x922: tpm:warn(2.0): the TPM was not able to start the command) until the \
         plug-in's deadline; try again later"
    );
    let attempts = fake.calls().iter().filter(|c| c.starts_with("tpm2_createprimary")).count();
    assert!((3..=8).contains(&attempts), "{attempts} attempts");
}

#[test]
fn provisioning_follows_recipe_b_and_never_touches_an_occupied_handle() {
    let handle: PersistentHandle = "0x81000101".parse().unwrap();
    let fake = FakeTools::new();
    fake.fail(Tool::ReadPublic, "Esys_TR_FromTPMPublic(0x18B) - tpm:handle(1):the handle is not correct for the use");
    // Only the first readpublic finds the handle free; the check after persisting finds the key.
    fake.script(
        Tool::EvictControl,
        &format!(
            "cat > '{}' <<'EOF'\n#!/bin/sh\ncat <<'X'\n{READPUBLIC_HMAC}\nX\nEOF",
            fake.dir.path().join("tpm2_readpublic").display()
        ),
    );
    let (outcome, notes) = provision(&fake.options(Duration::from_secs(10)), handle).unwrap();
    assert_eq!(outcome, Provisioned::Created);
    assert!(notes.is_empty());
    assert_eq!(
        fake.calls(),
        [
            "tpm2_readpublic -c 0x81000101",
            "tpm2_createprimary -Q -C o -G ecc256 -g sha256 -a \
             fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt -c WORK/parent.ctx",
            "tpm2_flushcontext -t",
            "tpm2_create -Q -C WORK/parent.ctx -G hmac -g sha256 -a \
             fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|sign -u WORK/key.pub -r WORK/key.priv",
            "tpm2_flushcontext -t",
            "tpm2_load -Q -C WORK/parent.ctx -u WORK/key.pub -r WORK/key.priv -c WORK/key.ctx",
            "tpm2_flushcontext -t",
            "tpm2_evictcontrol -Q -C o -c WORK/key.ctx 0x81000101",
            "tpm2_flushcontext -t",
            "tpm2_hmac -c 0x81000101 -g sha256 --hex stdin=edgeseal-kdf-tpm2 ikm v1",
            "tpm2_flushcontext -t",
        ]
    );

    // Occupied by exactly such a key: nothing is created. By anything else: refused, nothing evicted.
    let present = FakeTools::new();
    present.script(Tool::ReadPublic, &format!("cat <<'EOF'\n{READPUBLIC_HMAC}\nEOF"));
    assert_eq!(provision(&present.options(Duration::from_secs(10)), handle).unwrap().0, Provisioned::AlreadyPresent);
    assert!(!present.calls().iter().any(|c| c.starts_with("tpm2_evictcontrol") || c.starts_with("tpm2_create")));

    let taken = FakeTools::new();
    let without_noda = READPUBLIC_HMAC.replace("raw: 0x40472", "raw: 0x40072");
    taken.script(Tool::ReadPublic, &format!("cat <<'EOF'\n{without_noda}\nEOF"));
    let err = provision(&taken.options(Duration::from_secs(10)), handle).unwrap_err();
    assert!(matches!(err, Tpm2Error::HandleTaken { .. }), "{err:?}");
    assert!(!taken.calls().iter().any(|c| c.starts_with("tpm2_evictcontrol") || c.starts_with("tpm2_create")));
}

const READPUBLIC_HMAC: &str = "\
name: 000b00
attributes:
  value: fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|sign
  raw: 0x40472
type:
  value: keyedhash
  raw: 0x8
algorithm: 
  value: hmac
  raw: 0x5
hash-alg:
  value: sha256
  raw: 0xb";
