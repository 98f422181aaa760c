//! OpenBao's identity is pinned (SPEC §11): edgeseal sends unseal shares and `sys/init` only to the
//! OpenBao whose certificate it expects. An impostor holding another leaf of the same device CA, on
//! the store's address while OpenBao is down, receives nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use edgeseal_tests::device::Device;
use edgeseal_tests::impostor::Impostor;
use edgeseal_tests::openbao::OpenBao;
use edgeseal_tests::pki::TestPki;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A device PKI with a service leaf that also covers 127.0.0.1 (pki-init's config check refuses
/// this in edgeseal.yaml; an attacker may have such a leaf from an older config or another tool).
fn pki_with_a_rogue_leaf() -> TestPki {
    TestPki::with_leaves(&[("rogue", &["127.0.0.1"])])
}

#[test]
fn the_watchdog_hands_no_share_to_an_impostor_on_the_store_address() {
    let pki = pki_with_a_rogue_leaf();
    let mut bao = OpenBao::start(&pki);
    let device = Device::new();
    let setup = device.setup(&bao, vec![]);
    let rt = rt();
    rt.block_on(setup.run()).unwrap();
    let client = setup.client().unwrap();

    bao.stop();
    let impostor = Impostor::start(bao.listen(), &pki.cert("rogue"), &pki.key("rogue"), true);
    let outcome = rt.block_on(secretstore_setup::watchdog::check(&setup, &client));
    let requests = impostor.requests();
    assert!(impostor.connections() > 0, "the watchdog did reach the impostor");
    assert!(requests.iter().all(|r| !r.path.contains("unseal")), "the impostor received unseal requests: {requests:?}");
    assert!(requests.is_empty(), "nothing at all goes to a server that is not the pinned OpenBao: {requests:?}");
    let err = outcome.expect_err("an impostor is an error the watchdog reports");
    assert!(err.to_string().contains("identity does not match"), "{err}");
}

#[test]
fn first_boot_sends_no_sys_init_to_an_impostor() {
    let pki = pki_with_a_rogue_leaf();
    let mut bao = OpenBao::start(&pki);
    bao.stop();
    let device = Device::new();
    let mut setup = device.setup(&bao, vec![]);
    setup.store.wait_timeout = std::time::Duration::from_secs(5);
    let impostor = Impostor::start(bao.listen(), &pki.cert("rogue"), &pki.key("rogue"), false);
    let err = rt().block_on(setup.run()).unwrap_err();
    let requests = impostor.requests();
    assert!(requests.iter().all(|r| !r.path.contains("sys/init")), "the impostor received sys/init: {requests:?}");
    assert!(requests.is_empty(), "{requests:?}");
    assert!(err.to_string().contains("identity does not match"), "{err}");
    assert!(!device.keystore_dir().join("keystore.json").exists(), "nothing stored");
}

#[test]
fn a_reissued_openbao_leaf_is_pinned_on_the_next_boot() {
    let pki = TestPki::new();
    let mut bao = OpenBao::start(&pki);
    let device = Device::new();
    let setup = device.setup(&bao, vec![]);
    let rt = rt();
    rt.block_on(setup.run()).unwrap();
    let old_client = setup.client().unwrap();

    // A later boot: pki-init renews OpenBao's leaf (new key), OpenBao starts on it, setup runs again.
    bao.stop();
    pki.reissue_openbao();
    bao.restart();
    // (With `ca_keys: destroy` the CA is new as well, so the old client fails on the chain already.)
    let err = rt.block_on(old_client.health()).unwrap_err();
    assert!(err.to_string().contains("certificate"), "a client built before the renewal refuses the new one: {err}");
    let report = rt.block_on(setup.run()).expect("a client built after pki-init pins the new key");
    assert!(report.unsealed, "{report:?}");
}

/// `security-bootstrap` refuses, at config load with exit 64, a leaf for another name whose SANs
/// cover the store's address — and an external store with no pin.
#[test]
fn the_config_refuses_a_service_leaf_covering_the_store_address() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "secret_store:\n  address: https://127.0.0.1:8200\npki:\n  dir: /tmp/x/pki\n  certs:\n    openbao: { sans: [127.0.0.1] }\n    mqtt: { sans: [mqtt, 127.0.0.1] }\n",
            "pki-init",
            "pki.certs.mqtt: SANs cover 127.0.0.1, the host of secret_store.address (https://127.0.0.1:8200)",
        ),
        (
            "secret_store:\n  address: https://bao.example:8200\n  ca_cert: /etc/bao/ca.pem\n",
            "setup",
            "secret_store.server_cert is required",
        ),
    ];
    for (i, (yaml, command, want)) in cases.into_iter().enumerate() {
        let config = dir.path().join(format!("edgeseal-{i}.yaml"));
        std::fs::write(&config, yaml).unwrap();
        let out = std::process::Command::new(edgeseal_tests::workspace_binary("security-bootstrap"))
            .args([command, "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{command}: {stderr}");
        assert!(stderr.contains(want), "{command}: {stderr}");
    }
}

/// Even where the pin is given up (`server_cert: ca-only`) and a wrong server answers, no more than
/// the threshold of distinct shares ever leaves the device: each attempt gives at most `t` shares,
/// always the same ones, and a few failed attempts end the unseal. The threshold is the keystore's:
/// a server that states another one gets no share at all.
#[test]
fn at_most_the_threshold_of_shares_is_ever_sent() {
    let pki = pki_with_a_rogue_leaf();
    let mut bao = OpenBao::start(&pki);
    let device = Device::new();
    let mut setup = device.setup(&bao, vec![]);
    let rt = rt();
    rt.block_on(setup.run()).unwrap();
    assert!(setup.store.shares > edgeseal_tests::impostor::THRESHOLD as u64);

    bao.stop();
    setup.server_pin = openbao_client::Pin::CaOnly;
    let impostor = Impostor::start(bao.listen(), &pki.cert("rogue"), &pki.key("rogue"), true);
    let err = rt.block_on(setup.run()).unwrap_err();
    let shares: std::collections::BTreeSet<Vec<u8>> = impostor
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/v1/sys/unseal") && !String::from_utf8_lossy(&r.body).contains("reset"))
        .map(|r| r.body)
        .collect();
    assert!(!shares.is_empty(), "the unseal was attempted: {err}");
    assert!(
        shares.len() <= edgeseal_tests::impostor::THRESHOLD,
        "{} distinct shares left the device, more than the threshold",
        shares.len()
    );
    assert!(err.to_string().contains("do not unseal"), "{err}");
    drop(impostor);

    // A server that claims more shares are needed than a threshold's worth gets none at all.
    let liar = Impostor::start_with_threshold(bao.listen(), &pki.cert("rogue"), &pki.key("rogue"), true, 9);
    let err = rt.block_on(setup.run()).unwrap_err();
    let sent = liar.requests().into_iter().filter(|r| r.path.starts_with("/v1/sys/unseal")).count();
    assert_eq!(sent, 0, "no share for a server asking for 9 of 5: {err}");
    assert!(err.to_string().contains("asks for 9 shares"), "{err}");
    drop(liar);

    // Nor does one that claims fewer than the keystore's threshold (it would get them all and could
    // combine them); the keystore's own threshold decides, and a server stating another gets none.
    let liar = Impostor::start_with_threshold(bao.listen(), &pki.cert("rogue"), &pki.key("rogue"), true, 2);
    let err = rt.block_on(setup.run()).unwrap_err();
    let sent = liar.requests().into_iter().filter(|r| r.path.starts_with("/v1/sys/unseal")).count();
    assert_eq!(sent, 0, "no share for a server asking for 2 of a 3-of-5 keystore: {err}");
    assert!(err.to_string().contains("asks for 2 shares") && err.to_string().contains("threshold is 3"), "{err}");
}
