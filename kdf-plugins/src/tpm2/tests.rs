//! Unit tests of the derivation flows against a fake TPM on a loopback port (the `swtpm:` transport):
//! the exact commands sent, the flush on every exit path, the recovery policy, errors from response
//! codes. The real TPM (swtpm) and the real tpm2-tools are exercised by `tests/tests/tpm2_plugin.rs`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use super::commands::cc;
use super::*;

#[test]
fn the_versioned_label_and_template_are_frozen() {
    // Changing either changes every device's IKM: only ever add a v2 next to them.
    assert_eq!(LABEL, b"edgeseal-kdf-tpm2 ikm v1");
    assert_eq!(KEY_ATTRIBUTE_NAMES, "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|sign");
    assert_eq!(KEY_ATTRIBUTES, 0x2 | 0x10 | 0x20 | 0x40 | 0x400 | 0x4_0000);
    let template = ["0008", "000b", "00040472", "0000", "0005", "000b", "0000"];
    assert_eq!(hex::encode(commands::hmac_key_template(None)), template.concat());
}

const OBJECT: u32 = 0x8000_0000;
const SESSION: u32 = 0x0300_0000;
const MAC: [u8; 32] = [0x5a; 32];

/// A response: tag, size filled in, code, then `body`.
fn answer(tag: u16, code: u32, body: &[u8]) -> Vec<u8> {
    let mut out = tag.to_be_bytes().to_vec();
    out.extend_from_slice(&u32::try_from(10 + body.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn fail(code: u32) -> Vec<u8> {
    answer(0x8001, code, &[])
}

fn done() -> Vec<u8> {
    answer(0x8001, 0, &[])
}

fn created(handle: u32) -> Vec<u8> {
    let params = hex::decode("0000000000008021400000010000 0000".replace(' ', "")).unwrap();
    let mut body = handle.to_be_bytes().to_vec();
    body.extend_from_slice(&u32::try_from(params.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&params);
    body.extend_from_slice(&[0, 0, 1, 0, 0]);
    answer(0x8002, 0, &body)
}

fn mac() -> Vec<u8> {
    let mut body = 34u32.to_be_bytes().to_vec();
    body.extend_from_slice(&[0, 32]);
    body.extend_from_slice(&MAC);
    body.extend_from_slice(&[0, 0, 1, 0, 0]);
    answer(0x8002, 0, &body)
}

fn public(object_type: u16, attributes: u32, scheme: &[u8]) -> Vec<u8> {
    let mut area = object_type.to_be_bytes().to_vec();
    area.extend_from_slice(&[0, 0x0b]);
    area.extend_from_slice(&attributes.to_be_bytes());
    area.extend_from_slice(&[0, 0]);
    area.extend_from_slice(scheme);
    let mut body = u16::try_from(area.len()).unwrap().to_be_bytes().to_vec();
    body.extend_from_slice(&area);
    body.extend_from_slice(&[0, 0, 0, 0]);
    answer(0x8001, 0, &body)
}

#[test]
fn a_busy_policy_step_flushes_its_session_before_the_retry_starts_another() {
    let mut busy_once = true;
    let tpm = FakeTpm::start(move |c| match code_of(c) {
        cc::POLICY_PCR if std::mem::take(&mut busy_once) => Some(fail(0x922)),
        _ => healthy(c),
    });
    let policy = policy(&[[1; 32], [2; 32]]);
    derive_ikm(&tpm.options(Duration::from_secs(10)), KeySource::PcrBound(policy)).unwrap();
    let sent = tpm.commands();
    let starts = sent.iter().position(|c| code_of(c) == cc::START_AUTH_SESSION).unwrap();
    let second = sent.iter().rposition(|c| code_of(c) == cc::START_AUTH_SESSION).unwrap();
    assert!(second > starts, "retried: {:?}", tpm.codes());
    assert!(
        sent[starts..second].contains(&commands::flush_context(SESSION)),
        "the first session is flushed before the second starts: {:?}",
        tpm.codes()
    );
}

#[test]
fn out_of_session_memory_flushes_sessions_listed_under_either_range() {
    // A loaded policy session is listed as 0x03… in the 0x02… range; a saved one as 0x02… in the 0x03… range.
    let tpm = FakeTpm::start(|c| match code_of(c) {
        cc::CREATE_PRIMARY => Some(fail(0x903)),
        cc::GET_CAPABILITY if c[14] == 0x02 => Some(handles(&[0x0300_0001])),
        cc::GET_CAPABILITY if c[14] == 0x03 => Some(handles(&[0x0200_0002])),
        _ => healthy(c),
    });
    let _ = derive_ikm(&tpm.options(Duration::from_secs(10)), KeySource::Primary);
    let sent = tpm.commands();
    assert!(sent.contains(&commands::flush_context(0x0300_0001)), "{:?}", tpm.codes());
    assert!(sent.contains(&commands::flush_context(0x0200_0002)), "{:?}", tpm.codes());
}

fn session_started() -> Vec<u8> {
    let mut body = SESSION.to_be_bytes().to_vec();
    body.extend_from_slice(&[0, 16]);
    body.extend_from_slice(&[7; 16]);
    answer(0x8001, 0, &body)
}

fn pcr_values(selection: &str, values: &[[u8; 32]]) -> Vec<u8> {
    let selection: PcrSelection = selection.parse().unwrap();
    let mut body = 9u32.to_be_bytes().to_vec();
    body.extend_from_slice(&selection.marshal());
    body.extend_from_slice(&u32::try_from(values.len()).unwrap().to_be_bytes());
    for v in values {
        body.extend_from_slice(&[0, 32]);
        body.extend_from_slice(v);
    }
    answer(0x8001, 0, &body)
}

fn handles(list: &[u32]) -> Vec<u8> {
    let mut body = vec![0];
    body.extend_from_slice(&1u32.to_be_bytes());
    body.extend_from_slice(&u32::try_from(list.len()).unwrap().to_be_bytes());
    for h in list {
        body.extend_from_slice(&h.to_be_bytes());
    }
    answer(0x8001, 0, &body)
}

/// The command code of a command.
fn code_of(command: &[u8]) -> u32 {
    u32::from_be_bytes([command[6], command[7], command[8], command[9]])
}

type Answer = Box<dyn FnMut(&[u8]) -> Option<Vec<u8>> + Send>;

/// A fake TPM on a loopback port that answers each command with `answer(command)` (`None`: stays
/// silent) and logs the commands, over any number of connections.
struct FakeTpm {
    port: u16,
    log: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl FakeTpm {
    fn start(answer: impl FnMut(&[u8]) -> Option<Vec<u8>> + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let answer: Arc<Mutex<Answer>> = Arc::new(Mutex::new(Box::new(answer)));
        let server_log = Arc::clone(&log);
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                serve(conn, &server_log, &answer);
            }
        });
        Self { port, log }
    }

    fn options(&self, timeout: Duration) -> Options {
        Options { tcti: format!("swtpm:host=127.0.0.1,port={}", self.port).parse().unwrap(), timeout, path: None }
    }

    fn commands(&self) -> Vec<Vec<u8>> {
        self.log.lock().unwrap().clone()
    }

    fn codes(&self) -> Vec<u32> {
        self.commands().iter().map(|c| code_of(c)).collect()
    }
}

fn serve(mut conn: TcpStream, log: &Mutex<Vec<Vec<u8>>>, answer: &Mutex<Answer>) {
    loop {
        let mut header = [0u8; 10];
        if conn.read_exact(&mut header).is_err() {
            return;
        }
        let size = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
        let mut command = header.to_vec();
        command.resize(size, 0);
        if conn.read_exact(&mut command[10..]).is_err() {
            return;
        }
        log.lock().unwrap().push(command.clone());
        let reply = (answer.lock().unwrap())(&command);
        match reply {
            Some(reply) => {
                if conn.write_all(&reply).is_err() {
                    return;
                }
            }
            None => thread::sleep(Duration::from_secs(30)),
        }
    }
}

/// A TPM that does what the plug-in asks, with `hmac` as TPM2_HMAC's answer.
fn healthy(command: &[u8]) -> Option<Vec<u8>> {
    Some(match code_of(command) {
        cc::CREATE_PRIMARY => created(OBJECT),
        cc::HMAC => mac(),
        cc::START_AUTH_SESSION => session_started(),
        cc::READ_PUBLIC => public(0x0008, 0x0004_0472, &[0, 5, 0, 0x0b, 0, 0]),
        cc::GET_CAPABILITY => handles(&[]),
        _ => done(),
    })
}

#[test]
fn the_primary_derivation_sends_create_primary_hmac_and_flush() {
    let tpm = FakeTpm::start(healthy);
    let derivation = derive_ikm(&tpm.options(Duration::from_secs(10)), KeySource::Primary).unwrap();
    assert_eq!(derivation.ikm.expose(), &MAC);
    assert!(derivation.notes.is_empty());
    assert_eq!(
        tpm.commands(),
        [commands::create_primary(None), commands::hmac(OBJECT, None, LABEL), commands::flush_context(OBJECT)]
    );
}

#[test]
fn a_failed_hmac_still_flushes_the_object() {
    let tpm = FakeTpm::start(|c| if code_of(c) == cc::HMAC { Some(fail(0x9A2)) } else { healthy(c) });
    let err = derive_ikm(&tpm.options(Duration::from_secs(10)), KeySource::Primary).unwrap_err();
    assert!(
        matches!(&err, Tpm2Error::AuthFailed { what, counts_for_da: false, .. } if what == "the primary HMAC key"),
        "{err:?}"
    );
    assert_eq!(tpm.codes(), [cc::CREATE_PRIMARY, cc::HMAC, cc::FLUSH_CONTEXT]);
    assert_eq!(tpm.commands()[2], commands::flush_context(OBJECT));
}

#[test]
fn out_of_object_memory_is_flushed_and_retried_once_then_reported() {
    let tpm = FakeTpm::start(|c| match code_of(c) {
        cc::CREATE_PRIMARY => Some(fail(0x902)),
        cc::GET_CAPABILITY if c[14] == 0x80 => Some(handles(&[0x8000_0001, 0x8000_0002])),
        _ => healthy(c),
    });
    let started = Instant::now();
    let err = derive_ikm(&tpm.options(Duration::from_secs(10)), KeySource::Primary).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, Tpm2Error::OutOfMemory { code: ResponseCode(0x902) }), "{err:?}");
    assert_eq!(
        tpm.codes(),
        [
            cc::CREATE_PRIMARY,
            cc::GET_CAPABILITY,
            cc::FLUSH_CONTEXT,
            cc::FLUSH_CONTEXT,
            cc::GET_CAPABILITY,
            cc::GET_CAPABILITY,
            cc::CREATE_PRIMARY,
        ]
    );
    let commands = tpm.commands();
    assert_eq!(commands[2], commands::flush_context(0x8000_0001));
    assert_eq!(commands[3], commands::flush_context(0x8000_0002));
    assert_eq!(commands[4], commands::get_handles(0x0200_0000, 256));
    assert_eq!(commands[5], commands::get_handles(0x0300_0000, 256));

    // When the retry works, the operator is told what happened.
    let mut first = true;
    let recovers = FakeTpm::start(move |c| {
        if code_of(c) == cc::CREATE_PRIMARY && std::mem::take(&mut first) {
            return Some(fail(0x902));
        }
        healthy(c)
    });
    let derivation = derive_ikm(&recovers.options(Duration::from_secs(10)), KeySource::Primary).unwrap();
    assert_eq!(derivation.ikm.expose(), &MAC);
    let tcti = recovers.options(Duration::from_secs(1)).tcti;
    assert_eq!(
        derivation.notes,
        [format!(
            "the TPM was out of memory for objects or sessions (0x902), most likely left loaded by another client \
             (TCTI {tcti} has no resource manager): flushed all transient objects and sessions and retried"
        )]
    );
}

#[test]
fn a_busy_tpm_is_retried_with_back_off_until_the_deadline() {
    let tpm = FakeTpm::start(|c| if code_of(c) == cc::CREATE_PRIMARY { Some(fail(0x922)) } else { healthy(c) });
    let timeout = Duration::from_secs(2);
    let started = Instant::now();
    let err = derive_ikm(&tpm.options(timeout), KeySource::Primary).unwrap_err();
    assert!(started.elapsed() <= timeout + Duration::from_millis(500), "{:?}", started.elapsed());
    assert_eq!(
        err.to_string(),
        "the TPM stayed busy (TPM_RC_RETRY (0x922): the TPM was not able to start the command) until the \
         plug-in's deadline; try again later"
    );
    let attempts = tpm.codes().iter().filter(|&&c| c == cc::CREATE_PRIMARY).count();
    assert!((3..=8).contains(&attempts), "{attempts} attempts");
}

#[test]
fn a_silent_tpm_times_out_naming_the_command_and_a_confused_one_is_a_bad_answer() {
    let silent = FakeTpm::start(|_| None);
    let started = Instant::now();
    let err = derive_ikm(&silent.options(Duration::from_secs(2)), KeySource::Primary).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let text = err.to_string();
    assert!(text.starts_with("TPM2_CreatePrimary got no answer from the TPM through TCTI swtpm:"), "{text}");

    let confused = FakeTpm::start(|c| {
        if code_of(c) == cc::HMAC {
            Some(answer(0x8002, 0, &[0, 0, 0, 3, 0, 1, 9]))
        } else {
            healthy(c)
        }
    });
    let err = derive_ikm(&confused.options(Duration::from_secs(10)), KeySource::Primary).unwrap_err();
    assert_eq!(err.to_string(), "TPM2_HMAC gave an unexpected answer: outHMAC is not 32 bytes");
    assert_eq!(confused.codes().last(), Some(&cc::FLUSH_CONTEXT), "flushed after a bad answer too");

    let unstarted = FakeTpm::start(|_| Some(fail(0x100)));
    let err = derive_ikm(&unstarted.options(Duration::from_secs(10)), KeySource::Primary).unwrap_err();
    assert!(err.to_string().contains("has not been started (TPM_RC_INITIALIZE 0x100)"), "{err}");
}

#[test]
fn a_persistent_key_is_checked_then_used_without_flushing_it() {
    let handle: PersistentHandle = "0x81000101".parse().unwrap();
    let tpm = FakeTpm::start(healthy);
    let derivation = derive_ikm(&tpm.options(Duration::from_secs(10)), KeySource::Persistent(handle)).unwrap();
    assert_eq!(derivation.ikm.expose(), &MAC);
    assert_eq!(tpm.commands(), [commands::read_public(0x8100_0101), commands::hmac(0x8100_0101, None, LABEL)]);

    let ecc = FakeTpm::start(|c| match code_of(c) {
        cc::READ_PUBLIC => Some(public(0x0023, 0x0003_0472, &[0, 0x10, 0, 0x10, 0, 0x03, 0, 0x10])),
        _ => healthy(c),
    });
    let err = derive_ikm(&ecc.options(Duration::from_secs(10)), KeySource::Persistent(handle)).unwrap_err();
    assert!(err.to_string().contains("is an ecc object (attributes fixedtpm|"), "{err}");
    assert_eq!(ecc.codes(), [cc::READ_PUBLIC]);

    let missing = FakeTpm::start(|c| if code_of(c) == cc::READ_PUBLIC { Some(fail(0x18B)) } else { healthy(c) });
    let err = derive_ikm(&missing.options(Duration::from_secs(10)), KeySource::Persistent(handle)).unwrap_err();
    assert!(matches!(err, Tpm2Error::HandleMissing { handle: h } if h == handle), "{err:?}");
}

fn policy(values: &[[u8; 32]]) -> PcrPolicy {
    PcrPolicy::new("sha256:7,8".parse().unwrap(), values).unwrap()
}

#[test]
fn a_pcr_bound_derivation_runs_the_policy_and_flushes() {
    let policy = policy(&[[1; 32], [2; 32]]);
    let tpm = FakeTpm::start(healthy);
    let derivation = derive_ikm(&tpm.options(Duration::from_secs(10)), KeySource::PcrBound(policy.clone())).unwrap();
    assert_eq!(derivation.ikm.expose(), &MAC);
    let sent = tpm.commands();
    assert_eq!(sent[0], commands::create_primary(Some(&policy.auth_policy())));
    assert_eq!(code_of(&sent[1]), cc::START_AUTH_SESSION);
    assert_eq!(sent[2], commands::policy_pcr(SESSION, &policy.pcr_digest(), policy.selection()));
    assert_eq!(sent[3], commands::hmac(OBJECT, Some(SESSION), LABEL));
    assert_eq!(sent[4], commands::flush_context(OBJECT));
    assert_eq!(sent.len(), 5, "the session ended with the HMAC: nothing else to flush");
}

#[test]
fn a_pcr_mismatch_names_the_pcr_and_flushes_the_session_and_the_object() {
    let policy = policy(&[[1; 32], [2; 32]]);
    let tpm = FakeTpm::start(|c| match code_of(c) {
        cc::POLICY_PCR => Some(fail(0x1C4)),
        cc::PCR_READ => Some(pcr_values("sha256:7,8", &[[1; 32], [3; 32]])),
        _ => healthy(c),
    });
    let err = derive_ikm(&tpm.options(Duration::from_secs(10)), KeySource::PcrBound(policy.clone())).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("the TPM refuses the PCR-bound key (TPM response 0x1c4): "), "{text}");
    let values = format!("; PCR sha256:8 is {}, expected {}", "03".repeat(32), "02".repeat(32));
    assert!(text.ends_with(&values), "only the PCR that changed, last: {text}");
    assert!(text.contains("security-bootstrap restore"), "{text}");
    assert!(text.contains("security-bootstrap keystore rewrap"), "{text}");
    assert_eq!(
        tpm.codes(),
        [
            cc::CREATE_PRIMARY,
            cc::START_AUTH_SESSION,
            cc::POLICY_PCR,
            cc::FLUSH_CONTEXT,
            cc::PCR_READ,
            cc::FLUSH_CONTEXT
        ]
    );
    let sent = tpm.commands();
    assert_eq!(sent[3], commands::flush_context(SESSION), "a failed command does not end its session");
    assert_eq!(sent[5], commands::flush_context(OBJECT));

    // The HMAC refused by the policy (TPM_RC_POLICY_FAIL) is reported the same way.
    let on_hmac = FakeTpm::start(|c| match code_of(c) {
        cc::HMAC => Some(fail(0x99D)),
        cc::PCR_READ => Some(pcr_values("sha256:7,8", &[[9; 32], [2; 32]])),
        _ => healthy(c),
    });
    let err = derive_ikm(&on_hmac.options(Duration::from_secs(10)), KeySource::PcrBound(policy)).unwrap_err();
    assert!(
        matches!(&err, Tpm2Error::PcrMismatch { changes, .. } if changes.starts_with("PCR sha256:7 is 0909")),
        "{err:?}"
    );
}

#[test]
fn provision_pcrs_reads_the_values_and_proves_the_bound_key_answers() {
    let tpm = FakeTpm::start(|c| match code_of(c) {
        cc::PCR_READ => Some(pcr_values("sha256:7", &[[4; 32]])),
        _ => healthy(c),
    });
    let binding = provision_pcrs(&tpm.options(Duration::from_secs(10)), "sha256:7".parse().unwrap()).unwrap();
    assert_eq!(binding.policy.expected(), &[[4; 32]]);
    assert_eq!(
        tpm.codes(),
        [cc::PCR_READ, cc::CREATE_PRIMARY, cc::START_AUTH_SESSION, cc::POLICY_PCR, cc::HMAC, cc::FLUSH_CONTEXT]
    );
}

#[test]
fn provisioning_never_touches_an_occupied_handle() {
    let handle: PersistentHandle = "0x81000101".parse().unwrap();
    let present = FakeTpm::start(healthy);
    let (outcome, _) = provision(&present.options(Duration::from_secs(10)), handle).unwrap();
    assert_eq!(outcome, Provisioned::AlreadyPresent, "no tools needed: path is None and nothing was run");
    assert_eq!(present.codes(), [cc::READ_PUBLIC, cc::READ_PUBLIC, cc::HMAC]);

    let taken = FakeTpm::start(|c| match code_of(c) {
        cc::READ_PUBLIC => Some(public(0x0008, 0x0004_0072, &[0, 5, 0, 0x0b, 0, 0])),
        _ => healthy(c),
    });
    let err = provision(&taken.options(Duration::from_secs(10)), handle).unwrap_err();
    assert!(matches!(err, Tpm2Error::HandleTaken { .. }), "{err:?}");
    assert_eq!(taken.codes(), [cc::READ_PUBLIC]);

    let free_without_tools =
        FakeTpm::start(|c| if code_of(c) == cc::READ_PUBLIC { Some(fail(0x18B)) } else { healthy(c) });
    let empty = tempfile::tempdir().unwrap();
    let options = Options {
        path: Some(empty.path().as_os_str().to_owned()),
        ..free_without_tools.options(Duration::from_secs(10))
    };
    let err = provision(&options, handle).unwrap_err();
    assert!(matches!(err, Tpm2Error::ToolsMissing { tool: "tpm2_createprimary", .. }), "{err:?}");
}
