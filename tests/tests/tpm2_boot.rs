//! A full setup whose KEK comes from a TPM (swtpm) through `edgeseal-kdf-tpm2`, against a real
//! OpenBao: after a reboot (OpenBao and TPM restarted) it unseals from the keystore; with another TPM
//! it refuses with the "hardware changed" error and touches nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;

use edgeseal_tests::device::{service, Device};
use edgeseal_tests::openbao::OpenBao;
use edgeseal_tests::pki::TestPki;
use edgeseal_tests::swtpm::Swtpm;

#[test]
fn a_tpm_bound_keystore_unseals_after_a_reboot_and_refuses_another_tpm() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let pki = TestPki::new();
    let mut bao = OpenBao::start(&pki);
    let mut tpm = Swtpm::start();
    let device = Device::new();
    let mut setup = device.setup(&bao, vec![service("alpha", &["db-password"], None)]);
    setup.kdf.plugin = device.install_plugin("edgeseal-kdf-tpm2");
    setup.kdf.args = vec!["--tcti".into(), tpm.tcti()];

    let first = rt.block_on(setup.run()).unwrap();
    assert!(first.initialized);

    // Reboot: the TPM loses power (kill -9), OpenBao restarts sealed.
    tpm.kill_and_restart();
    setup.kdf.args = vec!["--tcti".into(), tpm.tcti()];
    bao.restart();
    let reboot = rt.block_on(setup.run()).unwrap();
    assert!(reboot.unsealed && reboot.changes.is_empty(), "{reboot:?}");

    // The TPM is swapped for another one: same plug-in, other owner seed.
    let other = Swtpm::start();
    setup.kdf.args = vec!["--tcti".into(), other.tcti()];
    bao.restart();
    let keystore = device.keystore_dir().join("keystore.json");
    let before = fs::read(&keystore).unwrap();
    let err = rt.block_on(setup.run()).unwrap_err();
    assert!(err.to_string().contains("the hardware or the KDF plug-in changed"), "{err}");
    assert_eq!(fs::read(&keystore).unwrap(), before, "the keystore is untouched");
    assert!(rt.block_on(setup.client().unwrap().health()).unwrap().sealed, "OpenBao stays sealed");
}
