#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The certificates pki-init issues verify with two independent verifiers and carry the right profile.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use pki_init::{Action, CaKeys, CertKind, ChainStatus, KeyAlgorithm};
use x509_parser::prelude::*;

#[test]
fn chains_verify_with_webpki_and_openssl() {
    for alg in [KeyAlgorithm::P256, KeyAlgorithm::P384] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        let config = with_algorithm(config(&dir, CaKeys::Destroy), alg);
        let now = t0();
        let report = pki_init::run(&config, None, now).unwrap();
        assert!(report.all_valid(), "{report}");
        let at = now + ::time::Duration::minutes(5);

        // openbao: a TLS server reachable as localhost and 127.0.0.1, trusting only ca.pem.
        for subject in ["localhost", "127.0.0.1", "openbao"] {
            webpki_verify(&dir, "openbao", webpki::KeyUsage::server_auth(), Some(subject), at)
                .unwrap_or_else(|e| panic!("{alg}: webpki openbao {subject}: {e:?}"));
        }
        webpki_verify(&dir, "openbao", webpki::KeyUsage::client_auth(), None, at).unwrap();
        openssl_verify(&dir, "openbao", &["-purpose", "sslserver", "-verify_hostname", "localhost"], at).unwrap();
        openssl_verify(&dir, "openbao", &["-purpose", "sslserver", "-verify_ip", "127.0.0.1"], at).unwrap();
        openssl_verify(&dir, "openbao", &["-purpose", "sslclient"], at).unwrap();

        // core-data: client only. The verifiers refuse it as a server.
        webpki_verify(&dir, "core-data", webpki::KeyUsage::client_auth(), None, at).unwrap();
        openssl_verify(&dir, "core-data", &["-purpose", "sslclient"], at).unwrap();
        assert!(webpki_verify(&dir, "core-data", webpki::KeyUsage::server_auth(), None, at).is_err());
        assert!(openssl_verify(&dir, "core-data", &["-purpose", "sslserver"], at).is_err());

        // The wrong name, or a time outside validity, fails.
        assert!(webpki_verify(&dir, "openbao", webpki::KeyUsage::server_auth(), Some("evil.example"), at).is_err());
        assert!(openssl_verify(&dir, "openbao", &["-verify_hostname", "evil.example"], at).is_err());
        assert!(openssl_verify(&dir, "openbao", &[], days(now, 91)).is_err());
        assert!(webpki_verify(&dir, "openbao", webpki::KeyUsage::server_auth(), None, days(now, -1)).is_err());
    }
}

#[test]
fn certificates_have_the_documented_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let now = t0();
    pki_init::run(&config(&dir, CaKeys::Destroy), None, now).unwrap();

    let root_der = certs(&dir.join("ca/ca.pem")).remove(0);
    let int_der = certs(&dir.join("ca/intermediate.pem")).remove(0);
    let chain = certs(&dir.join("openbao/cert.pem"));
    assert_eq!(chain.len(), 2, "cert.pem is the leaf followed by the intermediate");
    assert_eq!(chain[1], int_der);
    let (_, root) = X509Certificate::from_der(&root_der).unwrap();
    let (_, int) = X509Certificate::from_der(&int_der).unwrap();
    let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();

    let bc = |c: &X509Certificate<'_>| {
        let ext = c.basic_constraints().unwrap().expect("basicConstraints present");
        assert!(ext.critical, "basicConstraints is critical");
        (ext.value.ca, ext.value.path_len_constraint)
    };
    assert_eq!(bc(&root), (true, Some(1)));
    assert_eq!(bc(&int), (true, Some(0)));
    assert_eq!(bc(&leaf), (false, None));

    let ku = |c: &X509Certificate<'_>| {
        let ext = c.key_usage().unwrap().expect("keyUsage present");
        assert!(ext.critical);
        (ext.value.key_cert_sign(), ext.value.crl_sign(), ext.value.digital_signature())
    };
    assert_eq!(ku(&root), (true, true, false));
    assert_eq!(ku(&int), (true, true, false));
    assert_eq!(ku(&leaf), (false, false, true));

    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth && !eku.any);

    let ski = |c: &X509Certificate<'_>| {
        c.extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .expect("subjectKeyIdentifier present")
    };
    let aki = |c: &X509Certificate<'_>| {
        c.extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(k) => k.key_identifier.as_ref().map(|k| k.0.to_vec()),
                _ => None,
            })
            .expect("authorityKeyIdentifier present")
    };
    assert_eq!(aki(&int), ski(&root));
    assert_eq!(aki(&leaf), ski(&int));

    let mut serials = Vec::new();
    for c in [&root, &int, &leaf] {
        let serial = c.raw_serial();
        assert!(serial[0] & 0x80 == 0, "positive serial");
        assert!(serial.len() >= 17 && serial.len() <= 20, "serial of {} bytes", serial.len());
        assert!(c.tbs_certificate.serial.bits() >= 128, "at least 128 bits");
        serials.push(serial.to_vec());
        assert_eq!(c.validity().not_before.timestamp(), now.unix_timestamp());
    }
    serials.dedup();
    assert_eq!(serials.len(), 3);
    assert_eq!(root.validity().not_after.timestamp() - now.unix_timestamp(), 3650 * DAY);
    assert_eq!(int.validity().not_after, root.validity().not_after);
    assert_eq!(leaf.validity().not_after.timestamp() - now.unix_timestamp(), 90 * DAY);
    assert_eq!(root.subject().to_string(), "O=edgeseal, CN=edgeseal root CA");
    assert_eq!(int.issuer(), root.subject());
    assert_eq!(leaf.subject().to_string(), "O=edgeseal, CN=openbao");
    assert_eq!(leaf.issuer(), int.subject());
    let sans = leaf.subject_alternative_name().unwrap().unwrap().value.general_names.clone();
    assert_eq!(
        sans,
        vec![
            GeneralName::DNSName("localhost"),
            GeneralName::IPAddress(&[127, 0, 0, 1]),
            GeneralName::DNSName("openbao")
        ]
    );
}

#[test]
fn layout_modes_and_report() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let now = t0();
    let report = pki_init::run(&config(&dir, CaKeys::Destroy), None, now).unwrap();
    let snap = snapshot(&dir);
    assert_eq!(
        snap.paths(),
        [
            "",
            "ca",
            "ca/ca.pem",
            "ca/intermediate.pem",
            "core-data",
            "core-data/cert.pem",
            "core-data/key.pem",
            "openbao",
            "openbao/cert.pem",
            "openbao/key.pem"
        ]
    );
    let mode = |p: &str| snap.entry(p).mode & 0o7777;
    assert_eq!((mode(""), mode("ca"), mode("ca/ca.pem"), mode("ca/intermediate.pem")), (0o755, 0o755, 0o644, 0o644));
    assert_eq!((mode("openbao"), mode("openbao/cert.pem"), mode("openbao/key.pem")), (0o700, 0o644, 0o600));

    assert!(report.applied);
    let names: Vec<_> = report.certs.iter().map(|c| (c.name.as_str(), c.kind, c.action)).collect();
    assert_eq!(
        names,
        [
            ("root CA", CertKind::Root, Action::Created),
            ("intermediate CA", CertKind::Intermediate, Action::Created),
            ("core-data", CertKind::Leaf, Action::Created),
            ("openbao", CertKind::Leaf, Action::Created),
        ]
    );
    let bao = report.get("openbao").unwrap();
    assert_eq!(bao.path, dir.join("openbao/cert.pem"));
    let summary = bao.cert.as_ref().unwrap();
    // DNS names first, alphabetically, then addresses.
    assert_eq!(summary.sans, ["localhost", "openbao", "127.0.0.1"]);
    assert_eq!(summary.chain, ChainStatus::Valid);
    assert_eq!(summary.not_after, days(now, 90));
    let text = report.to_string();
    assert!(text.contains("openbao: created (new in pki.certs)"), "{text}");
    assert!(text.contains("chain:    valid"), "{text}");
}

#[test]
fn owners_are_applied() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let mut config = config(&dir, CaKeys::Destroy);
    config.certs.get_mut("core-data").unwrap().owner = Some(pki_init::Owner { uid: 2002, gid: 2001 });
    pki_init::run(&config, None, t0()).unwrap();
    let snap = snapshot(&dir);
    for p in ["core-data", "core-data/cert.pem", "core-data/key.pem"] {
        assert_eq!((snap.entry(p).uid, snap.entry(p).gid), (2002, 2001), "{p}");
    }
    assert_eq!(snap.entry("core-data/key.pem").mode & 0o7777, 0o600);
    for p in ["ca/ca.pem", "openbao/key.pem"] {
        assert_eq!(snap.entry(p).uid, 0, "{p}");
    }
    // The directory is private to its owner.
    assert_eq!(std::fs::metadata(dir.join("core-data")).unwrap().permissions().mode() & 0o777, 0o700);
}
