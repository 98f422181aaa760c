//! OpenBao 2.7's TLS listener runs on the `openbao` leaf pki-init made, and a client that trusts only
//! pki-init's `ca.pem` and pins that leaf's key connects; a client trusting another CA is refused, and
//! so is one pinned to another leaf of the same CA.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use edgeseal_tests::openbao::OpenBao;
use edgeseal_tests::pki::TestPki;
use openbao_client::{Client, Pin};

#[test]
fn openbao_serves_tls_with_the_pki_init_certificate_and_only_that_ca_is_trusted() {
    let pki = TestPki::with_leaves(&[("other", &["127.0.0.1"])]);
    let bao = OpenBao::start(&pki);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    let trusting = Client::new(&bao.address(), &pki.ca(), &bao.pin(), Duration::from_secs(10)).unwrap();
    let health = rt.block_on(trusting.health()).unwrap();
    assert!(!health.initialized, "a fresh OpenBao answered over TLS: {health:?}");
    assert!(health.version.starts_with("2."), "OpenBao 2.x: {}", health.version);

    let other = TestPki::new();
    let stranger = Client::new(&bao.address(), &other.ca(), &Pin::CaOnly, Duration::from_secs(10)).unwrap();
    let err = rt.block_on(stranger.health()).unwrap_err();
    assert!(err.is_unreachable() && err.to_string().contains("certificate"), "{err}");

    let pinned_elsewhere =
        Client::new(&bao.address(), &pki.ca(), &Pin::ServerCert(pki.cert("other")), Duration::from_secs(10)).unwrap();
    let err = rt.block_on(pinned_elsewhere.health()).unwrap_err();
    assert!(err.is_identity_mismatch() && err.to_string().contains("identity does not match"), "{err}");

    let by_name =
        Client::new(&bao.address().replace("127.0.0.1", "localhost"), &pki.ca(), &bao.pin(), Duration::from_secs(10))
            .unwrap();
    rt.block_on(by_name.health()).unwrap();
}
