//! The unauthenticated OpenBao endpoints (SPEC §11: one local user cannot stop the others): a local
//! process that resets or feeds unseal attempts and cancels root generations does not stop setup; on
//! a supervised first boot a `sys/init` racer on the TCP listener gets nothing and the store is ours.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgeseal_tests::device::{service, Device};
use edgeseal_tests::openbao::{race_init, OpenBao};
use edgeseal_tests::pki::TestPki;
use edgeseal_tests::ports::free_port_pair;
use edgeseal_tests::process::ChildGuard;
use edgeseal_tests::{poll_until, wait_until, workspace_binary};
use openbao_client::{Client, Pin, Retry};
use security_bootstrap::config::{ServiceEntry, ServiceName};
use token_server::config::{Selectors, UnixSelector};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// What a local process with no token did to our attempts.
#[derive(Debug, Default)]
struct Disturbed {
    unseal: usize,
    root_generation: usize,
}

/// A local process with no token that watches OpenBao and disturbs our work `budget` times each: it
/// feeds its own share into an unseal attempt in progress, and cancels a root generation in
/// progress — through the endpoints OpenBao leaves unauthenticated. Then it resets unseal attempts
/// for good measure until told to stop.
fn attacker(address: String, ca: PathBuf, budget: usize, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Disturbed> {
    let ready = Arc::new(AtomicBool::new(false));
    let watching = ready.clone();
    let thread = std::thread::spawn(move || {
        let rt = rt();
        let client = Client::new(&address, &ca, &Pin::CaOnly, Duration::from_secs(5)).unwrap();
        let mut done = Disturbed::default();
        rt.block_on(async {
            while !stop.load(Ordering::SeqCst) {
                let sealed = match client.seal_status().await {
                    Ok(status) => {
                        ready.store(true, Ordering::SeqCst);
                        // Between two of our shares: one fake, or a reset and one fake (the progress
                        // then looks right; only the nonce tells). The budget is above the refusals
                        // that make setup give up on the keystore: none of these may count as one.
                        if status.sealed && status.progress > 0 && done.unseal < budget {
                            if done.unseal % 2 == 1 {
                                let _ = client.unseal_reset().await;
                            }
                            let _ = client.unseal(&[0x42; 33]).await;
                            done.unseal += 1;
                        }
                        status.sealed
                    }
                    Err(_) => true,
                };
                if sealed {
                    continue;
                }
                let generation: Result<serde_json::Value, _> =
                    client.call(hyper::Method::GET, "sys/generate-root/attempt", None, None::<&()>, Retry::Once).await;
                if generation.is_ok_and(|g| g["started"] == true) && done.root_generation < budget {
                    let path = "sys/generate-root/attempt";
                    let _ = client.call_empty(hyper::Method::DELETE, path, None, None::<&()>, Retry::Once).await;
                    done.root_generation += 1;
                }
            }
        });
        done
    });
    // It watches before we start: polled, not slept on.
    while !watching.load(Ordering::SeqCst) && !thread.is_finished() {
        std::thread::yield_now();
    }
    thread
}

#[test]
fn setup_converges_while_a_local_process_resets_feeds_and_cancels() {
    let pki = TestPki::new();
    let mut bao = OpenBao::start(&pki);
    let device = Device::new();
    let setup = device.setup(&bao, vec![service("alpha", &["db-password"], None)]);
    let rt = rt();
    rt.block_on(setup.run()).unwrap();
    bao.restart();

    let stop = Arc::new(AtomicBool::new(false));
    let attack = attacker(bao.address(), bao.ca().to_path_buf(), 8, stop.clone());
    let outcome = rt.block_on(setup.run());
    stop.store(true, Ordering::SeqCst);
    let disturbed = attack.join().unwrap();
    let report = outcome.unwrap_or_else(|e| panic!("setup must converge despite {disturbed:?}: {e}"));
    assert!(disturbed.unseal > 0 && disturbed.root_generation > 0, "the attacker got in: {disturbed:?}");
    assert!(report.unsealed && report.changes.is_empty(), "{report:?}");

    // The watchdog's path too, after OpenBao restarts sealed.
    bao.restart();
    let stop = Arc::new(AtomicBool::new(false));
    let attack = attacker(bao.address(), bao.ca().to_path_buf(), 8, stop.clone());
    let watchdog = rt.block_on(secretstore_setup::watchdog::check(&setup, &setup.client().unwrap()));
    stop.store(true, Ordering::SeqCst);
    let disturbed = attack.join().unwrap();
    assert!(disturbed.unseal > 0, "the attacker got in: {disturbed:?}");
    assert_eq!(watchdog.unwrap(), secretstore_setup::watchdog::Seen::Healthy);
}

/// Another client's hand between our shares, played deterministically against real OpenBao: a fake
/// share after our first (our second then completes the combination and gets the 400), or a reset
/// and a fake (the progress matches our count, the nonce does not). Neither may count as "the
/// keystore's shares are refused" — that verdict is fatal and points the operator at the keystore.
#[test]
fn a_fake_share_between_ours_is_a_disturbance_never_a_verdict_on_the_keystore() {
    use secretstore_setup::setup::unseal::{attempt, attempt_interleaved, Between, Outcome};
    let pki = TestPki::new();
    let mut bao = OpenBao::start(&pki);
    let device = Device::new();
    let setup = device.setup(&bao, vec![]);
    let rt = rt();
    rt.block_on(setup.run()).unwrap();
    bao.restart();
    let ikm = rt.block_on(setup.ikm()).unwrap();
    let (keystore, _) = setup.keystore_dir().open_with_ikm(&ikm).unwrap();
    let ours = setup.client().unwrap();
    let other = Client::new(&bao.address(), bao.ca(), &Pin::CaOnly, Duration::from_secs(5)).unwrap();
    rt.block_on(secretstore_setup::setup::unseal::wait_for_openbao(&ours, Duration::from_secs(30))).unwrap();

    for reset_first in [false, true] {
        let other = other.clone();
        let outcome = rt
            .block_on(attempt_interleaved(&ours, &keystore, move |given| -> Between {
                let other = other.clone();
                Box::pin(async move {
                    if given == 1 {
                        if reset_first {
                            other.unseal_reset().await.unwrap();
                        }
                        let fed = other.unseal(&[0x42; 33]).await.unwrap();
                        assert!(fed.sealed, "{fed:?}");
                    }
                })
            }))
            .unwrap();
        assert!(
            matches!(outcome, Outcome::Disturbed { .. }),
            "reset first: {reset_first}: a fake share between ours must read as a disturbance: {outcome:?}"
        );
    }
    assert_eq!(rt.block_on(attempt(&ours, &keystore)).unwrap(), Outcome::Unsealed);
}

struct Boot {
    device: Device,
    port: u16,
}

impl Boot {
    fn config(&self) -> PathBuf {
        let mut config = Device::shamir(self.device.supervised_config(self.port, "bao"));
        config.pki.certs.values_mut().for_each(|cert| cert.sans.retain(|san| san.to_string() == "127.0.0.1"));
        config.token_server.socket = self.device.path().join("token.sock");
        let demo = ServiceEntry {
            selectors: Selectors { unix: Some(UnixSelector { uid: Some(0), ..Default::default() }), docker: None },
            secrets: vec!["greeting".into()],
            ..Default::default()
        };
        config.services.insert(ServiceName("demo".into()), demo);
        self.device.write_yaml(&config)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.device.path().join("run.log")).unwrap_or_default()
    }
}

#[test]
fn on_a_supervised_first_boot_a_sys_init_racer_gets_nothing_and_the_store_is_ours() {
    let boot = Boot { device: Device::new(), port: free_port_pair() };
    let config = boot.config();
    let answers = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let tries = Arc::new(AtomicUsize::new(0));
    let racer = {
        let (answers, stop, tries, port) = (answers.clone(), stop.clone(), tries.clone(), boot.port);
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let (code, body) = race_init(port, r#"{"secret_shares":1,"secret_threshold":1}"#);
                tries.fetch_add(1, Ordering::SeqCst);
                if code != 0 {
                    answers.lock().unwrap().push((code, body));
                }
            }
        })
    };

    let ready = boot.device.path().join("ready");
    let log = fs::File::create(boot.device.path().join("run.log")).unwrap();
    let child = Command::new(workspace_binary("security-bootstrap"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(&config)
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut run = ChildGuard::new("security-bootstrap run", child);
    let outcome = poll_until(Duration::from_secs(120), || {
        if ready.exists() {
            return Some(Ok(()));
        }
        run.exited().map(|status| Err(format!("run exited ({status})")))
    })
    .unwrap_or_else(|| Err("not ready after 120 s".into()));
    // Keep racing a little after the TCP listener opened: the store is initialized by then.
    let after = tries.load(Ordering::SeqCst);
    wait_until("the racer has tried sys/init three more times", Duration::from_secs(60), || {
        (tries.load(Ordering::SeqCst) >= after + 3).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    racer.join().unwrap();
    let answers = answers.lock().unwrap().clone();

    assert!(tries.load(Ordering::SeqCst) > 3, "the racer ran");
    for (code, body) in &answers {
        assert!(!body.contains("keys") && !body.contains("root_token"), "the racer initialized the store: {body}");
        assert_eq!(*code, 400, "only 'already initialized' reaches the racer: {code} {body}");
    }
    outcome.unwrap_or_else(|e| panic!("{e}:\n{}", boot.log()));
    assert!(boot.log().contains("\"initialized\":true"), "edgeseal initialized its store:\n{}", boot.log());
    assert!(boot.log().contains("TCP listener is open"), "{}", boot.log());
    let api_dir = boot.device.path().join("bao/api");
    assert_eq!(fs::metadata(&api_dir).unwrap().permissions().mode() & 0o777, 0o700);
    let hcl = fs::read_to_string(boot.device.path().join("bao/openbao.hcl")).unwrap();
    assert!(hcl.contains("listener \"unix\""), "{hcl}");
    assert!(!hcl.contains("disable_unauthed_generate_root_endpoints = false"), "off by default: {hcl}");
    run.signal(nix::sys::signal::Signal::SIGTERM);
}

/// The recovery that needs the unauthenticated `sys/generate-root` (the bootstrap credential was never
/// stored: killed right after the first root token was made) fails, when the endpoint is off, with an
/// error that says how to turn it on.
#[test]
fn root_recovery_without_the_unauthenticated_endpoint_says_how_to_enable_it() {
    let pki = TestPki::new();
    let bao = OpenBao::start_with(&pki, false);
    let device = Device::new();
    let setup = device.setup(&bao, vec![]);
    let config = device.write_config(&setup);
    let cli = |crash: Option<&str>| {
        let mut command = Command::new(workspace_binary("security-bootstrap"));
        command.args(["setup", "--config"]).arg(&config).env_remove(secretstore_setup::crash::CRASH_ENV);
        if let Some(point) = crash {
            command.env(secretstore_setup::crash::CRASH_ENV, point);
        }
        command.output().unwrap()
    };
    let crashed = cli(Some("after-root"));
    assert!(!crashed.status.success());
    let refused = cli(None);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot obtain a root token")
            && stderr.contains("disable_unauthed_generate_root_endpoints = false"),
        "{stderr}"
    );
    drop(bao);
}
