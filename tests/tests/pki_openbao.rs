//! OpenBao 2.7's TLS listener runs on the `openbao` leaf pki-init made, and a client that trusts only
//! pki-init's `ca.pem` connects; a client trusting another CA is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use edgeseal_tests::openbao::OpenBao;
use edgeseal_tests::pki::TestPki;
use openbao_client::Client;

#[test]
fn openbao_serves_tls_with_the_pki_init_certificate_and_only_that_ca_is_trusted() {
    let pki = TestPki::new();
    let bao = OpenBao::start(&pki);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    let trusting = Client::new(&bao.address(), &pki.ca(), Duration::from_secs(10)).unwrap();
    let health = rt.block_on(trusting.health()).unwrap();
    assert!(!health.initialized, "a fresh OpenBao answered over TLS: {health:?}");
    assert!(health.version.starts_with("2."), "OpenBao 2.x: {}", health.version);

    let other = TestPki::new();
    let stranger = Client::new(&bao.address(), &other.ca(), Duration::from_secs(10)).unwrap();
    let err = rt.block_on(stranger.health()).unwrap_err();
    assert!(err.is_unreachable() && err.to_string().contains("certificate"), "{err}");

    let by_name =
        Client::new(&bao.address().replace("127.0.0.1", "localhost"), &pki.ca(), Duration::from_secs(10)).unwrap();
    rt.block_on(by_name.health()).unwrap();
}
