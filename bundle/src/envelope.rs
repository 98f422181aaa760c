//! Bundles (SPEC §13): a JSON envelope, signed by the sender's Ed25519 key, encrypted with age to
//! one or more recipients and armored, so the reference `age` CLI can make and read them.
//!
//! Inside the age file:
//!
//! ```json
//! {"format": "edgeseal-bundle-v1", "kind": "secrets", "from": "node-…", "signer": "ed25519:…",
//!  "created": "2026-11-30T20:00:00Z", "payload": {…}, "signature": "<base64>"}
//! ```
//!
//! The signature covers [`SIGNATURE_CONTEXT`] followed by the canonical JSON of every other field.
//! An envelope without `signer`/`signature` is unsigned (what `secrets seal` makes without a
//! device); so is a plain JSON document made with `age -r` (then the whole document is the payload).
//! Receivers accept unsigned bundles only when told to ([`Trust::allow_unsigned`]).

use std::io::{Read as _, Write as _};

use base64::Engine as _;
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use crate::canonical::to_canonical;
use crate::keys::{Identities, NodeKeys, Recipient, SignerKey};

/// The envelope's `format`.
pub const FORMAT: &str = "edgeseal-bundle-v1";
/// Domain separation: what a signature is over starts with this.
pub const SIGNATURE_CONTEXT: &[u8] = b"edgeseal-bundle-v1 signature\0";
/// Largest bundle read (armored), and largest plaintext inside.
pub const MAX_BUNDLE: usize = 512 * 1024 * 1024;

/// Why a bundle could not be made or opened. None of these carries a value from inside the bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// No recipient given.
    #[error("a bundle needs at least one recipient (--to age1…)")]
    NoRecipients,
    /// Not an age file at all.
    #[error("this is not an age-encrypted bundle ({0})")]
    NotAge(String),
    /// Encrypted, but not to any identity we hold.
    #[error("this bundle is not encrypted to {0} (it was made for other recipients)")]
    NotForUs(String),
    /// The ciphertext was changed or cut short.
    #[error("the bundle is damaged, truncated or was altered after it was made (age: {0})")]
    Damaged(String),
    /// Decrypted, but not JSON.
    #[error("the bundle's content is not JSON: {0}")]
    NotJson(String),
    /// An edgeseal envelope that is not well formed.
    #[error("the bundle's envelope is malformed: {0}")]
    Malformed(String),
    /// Signed, and the signature does not verify.
    #[error("the bundle's signature does not verify against its signer {0}: it was altered or forged")]
    BadSignature(String),
    /// Signed by someone not in `--from`.
    #[error("the bundle is signed by {signer} ({node}), which is not a sender you accept (--from)")]
    Untrusted {
        /// The signer's key.
        signer: String,
        /// Its node id.
        node: String,
    },
    /// Signed by a key nobody named, and no flag accepts any signer.
    #[error("the bundle is signed by {signer} ({node}), a key you did not name: check it against the sender's `node show` and pass it with --from, or accept any signer with --allow-any-signer")]
    UnknownSigner {
        /// The signer's key.
        signer: String,
        /// Its node id.
        node: String,
    },
    /// Unsigned, and unsigned bundles were not accepted.
    #[error("the bundle is not signed (made with plain `age` or `secrets seal`); accept it with --allow-unsigned if you trust where it came from")]
    Unsigned,
    /// Another kind of bundle than expected.
    #[error("this is a {got:?} bundle, not a {expected:?} one")]
    WrongKind {
        /// What the command wanted.
        expected: String,
        /// What the bundle says.
        got: String,
    },
    /// Too big.
    #[error("the bundle is larger than {MAX_BUNDLE} bytes")]
    TooLarge,
    /// Writing the age stream failed (in memory: should not happen).
    #[error("encrypting the bundle: {0}")]
    Encrypt(String),
}

/// Whom a receiver accepts. By default nobody: a bundle is opened only when its signer is named
/// (`--from`), or the receiver says it trusts the channel instead.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Bundles signed by one of these (`--from`).
    pub senders: Vec<SignerKey>,
    /// Bundles with a valid signature by any key (`--allow-any-signer`; the signer is reported).
    pub any_signer: bool,
    /// Bundles with no signature (`--allow-unsigned`); a signature by an unknown key proves no less
    /// than none, so those are accepted too.
    pub allow_unsigned: bool,
}

impl Trust {
    /// Only bundles signed by one of `senders`.
    pub fn senders(senders: Vec<SignerKey>) -> Self {
        Self { senders, ..Self::default() }
    }
}

/// Who made a signed bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// Its node id (derived from the key, so it cannot be forged separately).
    pub node: String,
    /// Its signing key.
    pub key: SignerKey,
}

/// An opened, verified bundle. `Debug` shows everything but the payload.
pub struct Opened {
    /// Its kind.
    pub kind: String,
    /// The signer, when signed.
    pub sender: Option<Sender>,
    /// When it was made, as the sender wrote it (RFC 3339), when it says.
    pub created: Option<String>,
    /// The payload. It may hold secrets: never log it.
    pub payload: Value,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("kind", &self.kind)
            .field("sender", &self.sender)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// Seals `payload` as a bundle of `kind` for `recipients`, signed by `signer` when given. Returns
/// the armored age file.
pub fn seal(
    kind: &str,
    payload: Value,
    recipients: &[Recipient],
    signer: Option<&NodeKeys>,
) -> Result<String, BundleError> {
    if recipients.is_empty() {
        return Err(BundleError::NoRecipients);
    }
    let created =
        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let mut envelope = json!({"format": FORMAT, "kind": kind, "created": created, "payload": payload});
    if let (Some(keys), Value::Object(fields)) = (signer, &mut envelope) {
        fields.insert("from".into(), Value::String(keys.node_id()));
        fields.insert("signer".into(), Value::String(keys.signer().to_string()));
        let signature = keys.sign(&signed_bytes(fields));
        fields.insert("signature".into(), Value::String(base64::engine::general_purpose::STANDARD.encode(signature)));
    }
    let plaintext = Zeroizing::new(serde_json::to_vec(&envelope).unwrap_or_default());
    drop(envelope);
    encrypt(&plaintext, recipients)
}

/// Encrypts bytes to `recipients`, armored.
pub fn encrypt(plaintext: &[u8], recipients: &[Recipient]) -> Result<String, BundleError> {
    let failed = |e: &dyn std::fmt::Display| BundleError::Encrypt(e.to_string());
    let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r.as_age() as &dyn age::Recipient))
        .map_err(|e| match e {
            age::EncryptError::MissingRecipients => BundleError::NoRecipients,
            e => failed(&e),
        })?;
    let mut out = Vec::with_capacity(plaintext.len() * 4 / 3 + 512);
    let armor =
        age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor).map_err(|e| failed(&e))?;
    let mut writer = encryptor.wrap_output(armor).map_err(|e| failed(&e))?;
    writer.write_all(plaintext).map_err(|e| failed(&e))?;
    writer.finish().and_then(|armor| armor.finish()).map_err(|e| failed(&e))?;
    String::from_utf8(out).map_err(|e| failed(&e))
}

/// An age file as text: armored files as they are, binary ones armored (the same bytes in the
/// standard PEM-style armor, which every age implementation reads).
pub fn to_armored(file: &[u8]) -> Result<String, BundleError> {
    if file.trim_ascii_start().starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----") {
        return std::str::from_utf8(file)
            .map(str::to_string)
            .map_err(|_| BundleError::NotAge("the armor is not text".into()));
    }
    if !file.starts_with(b"age-encryption.org/") {
        return Err(BundleError::NotAge("it does not start like an age file, armored or binary".into()));
    }
    let failed = |e: std::io::Error| BundleError::Encrypt(e.to_string());
    let mut out = Vec::with_capacity(file.len() * 4 / 3 + 128);
    let mut armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor).map_err(failed)?;
    armor.write_all(file).map_err(failed)?;
    armor.finish().map_err(failed)?;
    String::from_utf8(out).map_err(|e| BundleError::Encrypt(e.to_string()))
}

/// Decrypts an age file (armored or binary) with `identities`; `whom` names them in errors.
pub fn decrypt(bundle: &[u8], identities: &Identities, whom: &str) -> Result<Zeroizing<Vec<u8>>, BundleError> {
    if bundle.len() > MAX_BUNDLE {
        return Err(BundleError::TooLarge);
    }
    let start = bundle.trim_ascii_start();
    if !start.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----") && !start.starts_with(b"age-encryption.org/") {
        return Err(BundleError::NotAge("it does not start like an age file, armored or binary".into()));
    }
    let reader = age::armor::ArmoredReader::new(bundle);
    let decryptor = age::Decryptor::new_buffered(std::io::BufReader::new(reader)).map_err(|e| match e {
        age::DecryptError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            BundleError::Damaged("the file ends early".into())
        }
        age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => BundleError::NotAge(e.to_string()),
        e => BundleError::Damaged(e.to_string()),
    })?;
    let mut reader = decryptor.decrypt(identities.as_age()).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => BundleError::NotForUs(whom.to_string()),
        e => BundleError::Damaged(e.to_string()),
    })?;
    let mut plaintext = Zeroizing::new(Vec::new());
    reader
        .by_ref()
        .take(MAX_BUNDLE as u64 + 1)
        .read_to_end(&mut plaintext)
        .map_err(|e| BundleError::Damaged(e.to_string()))?;
    if plaintext.len() > MAX_BUNDLE {
        return Err(BundleError::TooLarge);
    }
    Ok(plaintext)
}

/// Opens a bundle: decrypts it with `identities`, checks its envelope and signature against `trust`,
/// and that it is of `kind`. A plain JSON object (made with `age -r`) is an unsigned bundle of
/// `kind` whose payload is that object.
pub fn open(
    bundle: &[u8],
    identities: &Identities,
    whom: &str,
    trust: &Trust,
    kind: &str,
) -> Result<Opened, BundleError> {
    let plaintext = decrypt(bundle, identities, whom)?;
    let value: Value = serde_json::from_slice(&plaintext).map_err(|e| BundleError::NotJson(e.to_string()))?;
    drop(plaintext);
    let opened = match value {
        Value::Object(fields) if fields.get("format").is_some() => verify(fields, trust)?,
        payload @ Value::Object(_) if trust.allow_unsigned => {
            Opened { kind: kind.to_string(), sender: None, created: None, payload }
        }
        Value::Object(_) => return Err(BundleError::Unsigned),
        _ => return Err(BundleError::NotJson("expected a JSON object".into())),
    };
    if opened.kind != kind {
        return Err(BundleError::WrongKind { expected: kind.into(), got: opened.kind });
    }
    Ok(opened)
}

/// Checks an envelope's fields and signature.
fn verify(mut fields: Map<String, Value>, trust: &Trust) -> Result<Opened, BundleError> {
    let malformed = |what: &str| BundleError::Malformed(what.to_string());
    match fields.get("format").and_then(Value::as_str) {
        Some(FORMAT) => {}
        Some(other) => {
            return Err(BundleError::Malformed(format!("format {other:?} is not {FORMAT:?} (a newer edgeseal?)")))
        }
        None => return Err(malformed("format is not a string")),
    }
    let text = |fields: &Map<String, Value>, key: &str| -> Result<Option<String>, BundleError> {
        match fields.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(BundleError::Malformed(format!("{key} is not a string"))),
        }
    };
    let kind = text(&fields, "kind")?.ok_or_else(|| malformed("no kind"))?;
    let created = text(&fields, "created")?;
    let signer = text(&fields, "signer")?;
    let signature = match fields.remove("signature") {
        None => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(malformed("signature is not a string")),
    };
    let sender = match (signer, signature) {
        (None, None) if trust.allow_unsigned => None,
        (None, None) => return Err(BundleError::Unsigned),
        (Some(signer), Some(signature)) => {
            let key: SignerKey = signer.parse().map_err(|_| malformed("signer is not an ed25519: key"))?;
            let signature = base64::engine::general_purpose::STANDARD
                .decode(signature)
                .map_err(|_| malformed("signature is not base64"))?;
            if !key.verify(&signed_bytes(&fields), &signature) {
                return Err(BundleError::BadSignature(key.to_string()));
            }
            if text(&fields, "from")?.as_deref() != Some(key.node_id().as_str()) {
                return Err(BundleError::BadSignature(key.to_string()));
            }
            let named = trust.senders.contains(&key);
            if !named && !trust.any_signer && !trust.allow_unsigned {
                let (signer, node) = (key.to_string(), key.node_id());
                return Err(match trust.senders.is_empty() {
                    true => BundleError::UnknownSigner { signer, node },
                    false => BundleError::Untrusted { signer, node },
                });
            }
            Some(Sender { node: key.node_id(), key })
        }
        _ => return Err(malformed("signer and signature come together")),
    };
    let payload = fields.remove("payload").ok_or_else(|| malformed("no payload"))?;
    Ok(Opened { kind, sender, created, payload })
}

/// What a signature covers: the context, then the canonical JSON of every field but `signature`.
fn signed_bytes(fields: &Map<String, Value>) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(SIGNATURE_CONTEXT.to_vec());
    to_canonical(&Value::Object(fields.clone()), &mut out);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn node() -> NodeKeys {
        NodeKeys::generate().unwrap()
    }

    fn trust(senders: &[&NodeKeys], allow_unsigned: bool) -> Trust {
        Trust { senders: senders.iter().map(|k| k.signer()).collect(), any_signer: false, allow_unsigned }
    }

    #[test]
    fn a_signed_bundle_opens_for_each_recipient_and_names_its_sender() {
        let (a, b, c) = (node(), node(), node());
        let payload = json!({"svc/db": "hunter2"});
        let sealed = seal("secrets", payload.clone(), &[b.recipient(), c.recipient()], Some(&a)).unwrap();
        assert!(sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"), "{sealed}");
        assert!(!sealed.contains("hunter2"));
        for receiver in [&b, &c] {
            let opened =
                open(sealed.as_bytes(), &receiver.identities(), "me", &trust(&[&a], false), "secrets").unwrap();
            assert_eq!(opened.payload, payload);
            assert_eq!(opened.sender, Some(Sender { node: a.node_id(), key: a.signer() }));
            assert!(opened.created.is_some());
        }
    }

    #[test]
    fn every_kind_of_bad_bundle_is_refused_with_its_own_error() {
        let (a, b, mallory) = (node(), node(), node());
        let good = seal("secrets", json!({"svc/x": "v"}), &[b.recipient()], Some(&a)).unwrap();
        let unsigned = seal("secrets", json!({"svc/x": "v"}), &[b.recipient()], None).unwrap();
        let plain_age = encrypt(br#"{"svc/x": "v"}"#, &[b.recipient()]).unwrap();
        // An envelope whose payload was swapped after signing, re-encrypted by someone who knows b's recipient.
        let mut forged: Value =
            serde_json::from_slice(&decrypt(good.as_bytes(), &b.identities(), "b").unwrap()).unwrap();
        forged["payload"] = json!({"svc/x": "evil"});
        let forged = encrypt(&serde_json::to_vec(&forged).unwrap(), &[b.recipient()]).unwrap();
        let lines: Vec<&str> = good.lines().collect();
        let truncated = format!("{}\n{}\n", lines[..lines.len() / 2].join("\n"), lines[lines.len() - 1]);
        let mut flipped = good.clone().into_bytes();
        let at = flipped.len() / 2;
        flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
        let strict = trust(&[&a], false);
        // (bundle, receiver, trust, kind, error mentions)
        let cases: Vec<(&[u8], &NodeKeys, Trust, &str, &str)> = vec![
            (good.as_bytes(), &mallory, strict.clone(), "secrets", "not encrypted to"),
            (good.as_bytes(), &b, trust(&[&mallory], false), "secrets", "not a sender you accept"),
            (good.as_bytes(), &b, strict.clone(), "backup", "not a \"backup\""),
            (unsigned.as_bytes(), &b, strict.clone(), "secrets", "not signed"),
            (plain_age.as_bytes(), &b, strict.clone(), "secrets", "not signed"),
            (forged.as_bytes(), &b, trust(&[], true), "secrets", "signature does not verify"),
            (good.as_bytes(), &b, trust(&[], false), "secrets", "a key you did not name"),
            (truncated.as_bytes(), &b, strict.clone(), "secrets", "damaged"),
            (&flipped, &b, strict.clone(), "secrets", "damaged|not an age"),
            (b"hello", &b, strict.clone(), "secrets", "not an age"),
        ];
        for (i, (bundle, receiver, trust, kind, says)) in cases.into_iter().enumerate() {
            let e = open(bundle, &receiver.identities(), "this node", &trust, kind).unwrap_err().to_string();
            assert!(says.split('|').any(|says| e.contains(says)), "case {i}: {e}");
            assert!(!e.contains("evil") && !e.contains("\"v\""), "case {i} leaks a value: {e}");
        }
        // Any signer when allowed, with the signer reported; the payload never in Debug.
        let any = Trust { any_signer: true, ..Trust::default() };
        let opened = open(good.as_bytes(), &b.identities(), "b", &any, "secrets").unwrap();
        assert_eq!(opened.sender.as_ref().map(|s| s.key), Some(a.signer()));
        assert!(!format!("{opened:?}").contains("\"v\""), "{opened:?}");
        // Unsigned ones open when allowed; the plain one's whole document is the payload.
        for bundle in [&unsigned, &plain_age] {
            let opened = open(bundle.as_bytes(), &b.identities(), "b", &trust(&[], true), "secrets").unwrap();
            assert_eq!((opened.payload, opened.sender), (json!({"svc/x": "v"}), None));
        }
    }

    #[test]
    fn a_binary_age_file_armors_to_one_that_opens_the_same() {
        let b = node();
        let armored = encrypt(br#"{"svc/x": "v"}"#, &[b.recipient()]).unwrap();
        let mut binary = Vec::new();
        std::io::Read::read_to_end(&mut age::armor::ArmoredReader::new(armored.as_bytes()), &mut binary).unwrap();
        assert!(binary.starts_with(b"age-encryption.org/v1"));
        let again = to_armored(&binary).unwrap();
        let opened = open(
            again.as_bytes(),
            &b.identities(),
            "b",
            &Trust { allow_unsigned: true, ..Trust::default() },
            "secrets",
        );
        assert_eq!(opened.unwrap().payload, json!({"svc/x": "v"}));
        assert_eq!(to_armored(armored.as_bytes()).unwrap(), armored);
        assert!(matches!(to_armored(b"PK\x03\x04"), Err(BundleError::NotAge(_))));
    }

    #[test]
    fn a_bundle_needs_a_recipient() {
        assert!(matches!(seal("secrets", json!({}), &[], None), Err(BundleError::NoRecipients)));
    }
}
