//! EdgeX seed files (`services.<svc>.seed_file`): parsing and validating EdgeX's SecretsFile JSON, and
//! rendering it scrubbed. Pure: bytes in, typed seeds and bytes out; [`crate::setup::seed_files`]
//! does the I/O (the KV writes, the atomic rewrite).
//!
//! The format (go-mod-bootstrap `secret.ServiceSecrets`, used by edgex-go's secret store setup):
//!
//! ```json
//! {"secrets":[{"secretName":"credentials","imported":false,
//!              "secretData":[{"key":"username","value":"u"},{"key":"password","value":"p"}]}]}
//! ```
//!
//! Like Go's `encoding/json`, unknown fields are ignored and a missing `imported` is `false`. Stricter
//! than EdgeX where a mistake would otherwise land in the store: the whole file is checked before
//! anything is imported — every `secretName` is a valid secret name (the admin API's rule,
//! [`openbao_client::api::kv::valid_secret_name`]) and appears once; an entry still to import has at
//! least one key, every key is non-empty and appears once, every value is a non-empty string.
//!
//! Scrubbing is EdgeX's (`ScrubSecretsFile`): every entry becomes `imported: true` with an empty
//! `secretData`; fields Go does not know are dropped, as Go's re-marshalling drops them.
//!
//! Values live in [`SecretString`] (wiped on drop, never printed); no error message quotes a value:
//! errors name the file and the entry (index and `secretName`), and a JSON error only its position.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use openbao_client::api::kv::valid_secret_name;
use openbao_client::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

/// Largest seed file accepted (a KV secret is at most 1 MiB too).
pub const MAX_FILE_LEN: usize = 1024 * 1024;

/// The shape a seed file must have, for error messages.
const SHAPE: &str = r#"{"secrets":[{"secretName":"NAME","imported":false,"secretData":[{"key":"K","value":"V"}]}]}"#;

/// Why a seed file cannot be imported. Nothing of it was imported. Never quotes a value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SeedError {
    /// Larger than [`MAX_FILE_LEN`].
    #[error("seed file {path} is {len} bytes, larger than the {MAX_FILE_LEN} bytes a seed file may hold")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: usize,
    },
    /// Not JSON, or JSON of another shape.
    #[error("seed file {path} is not an EdgeX SecretsFile ({detail}); expected {SHAPE}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What and where (a position, never the text there).
        detail: String,
    },
    /// One entry breaks a rule.
    #[error("seed file {path}, secrets[{index}]{}: {problem}", name.as_deref().map(|n| format!(" ({n:?})")).unwrap_or_default())]
    Entry {
        /// The file.
        path: PathBuf,
        /// The entry's index in `secrets`.
        index: usize,
        /// Its `secretName`, when it has a printable one.
        name: Option<String>,
        /// What is wrong.
        problem: String,
    },
}

/// One key of a seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedKey {
    /// The key (not secret).
    pub key: String,
    /// The value.
    pub value: SecretString,
}

/// One entry of a seed file, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// `secretName`: the secret's name below the service's folder.
    pub name: String,
    /// `imported`: already in the store (its data is not kept).
    pub imported: bool,
    /// `secretData` of an entry still to import (empty for an imported one).
    pub data: Vec<SeedKey>,
    /// The file still holds values for this entry (an imported entry someone did not scrub).
    holds_values: bool,
}

impl Seed {
    /// The data as KV v2 wants it: `{key: value}`.
    pub fn kv_data(&self) -> Map<String, Value> {
        self.data.iter().map(|k| (k.key.clone(), Value::String(k.value.expose().to_string()))).collect()
    }

    /// A marker of this seed (this file, this name, these keys and values) keyed by the device's KEK:
    /// stored with the secret once imported, it tells a later run that this exact seed was imported
    /// already, whatever happened to the secret since (an admin's new version is never overwritten by
    /// a file that could not be scrubbed). Without the KEK it reveals nothing about the values.
    pub fn marker(&self, file: &Path, kek: &kdf_plugins::Kek) -> String {
        let mut info = zeroize::Zeroizing::new(Vec::new());
        for part in [file.as_os_str().as_encoded_bytes(), self.name.as_bytes()] {
            info.extend_from_slice(part);
            info.push(0);
        }
        let mut keys: Vec<&SeedKey> = self.data.iter().collect();
        keys.sort_by(|a, b| a.key.cmp(&b.key));
        for key in keys {
            for part in [key.key.as_bytes(), key.value.expose().as_bytes()] {
                info.extend_from_slice(&(part.len() as u64).to_be_bytes());
                info.extend_from_slice(part);
            }
        }
        let mut out = [0u8; 16];
        // 16 bytes is a valid HKDF-SHA256 output length: this cannot fail.
        let _ = kdf_plugins::kek::hkdf_sha256(kek.expose(), b"edgeseal seed marker v1", &info, &mut out);
        hex::encode(out)
    }

    /// Whether `current` (a secret's data in the store) holds exactly this seed's keys and values:
    /// then importing it again would only add an identical version.
    pub fn matches(&self, current: &Map<String, Value>) -> bool {
        current.len() == self.data.len()
            && self.data.iter().all(|k| {
                current
                    .get(&k.key)
                    .and_then(Value::as_str)
                    .is_some_and(|v| secret_types::constant_time_eq(v.as_bytes(), k.value.expose().as_bytes()))
            })
    }
}

/// A checked seed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretsFile {
    /// Its entries, in file order.
    pub seeds: Vec<Seed>,
}

impl SecretsFile {
    /// Parses and checks the whole file (`path` only names it in errors).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, SeedError> {
        if bytes.len() > MAX_FILE_LEN {
            return Err(SeedError::TooLarge { path: path.to_path_buf(), len: bytes.len() });
        }
        // serde's own message could quote the text it choked on (a value): only the kind and the
        // position are reported.
        let file: FileIn = serde_json::from_slice(bytes).map_err(|e| {
            let kind = match e.classify() {
                serde_json::error::Category::Syntax => "invalid JSON",
                serde_json::error::Category::Eof => "the JSON ends too early",
                serde_json::error::Category::Data => "a field of the wrong type",
                serde_json::error::Category::Io => "unreadable",
            };
            SeedError::Json {
                path: path.to_path_buf(),
                detail: format!("{kind} at line {} column {}", e.line(), e.column()),
            }
        })?;
        let entries = file
            .secrets
            .ok_or_else(|| SeedError::Json { path: path.to_path_buf(), detail: "it has no \"secrets\" list".into() })?;
        let mut names = BTreeSet::new();
        let mut seeds = Vec::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            let printable = entry.secret_name.as_deref().map(printable);
            let fail = |problem: String| SeedError::Entry {
                path: path.to_path_buf(),
                index,
                name: printable.clone(),
                problem,
            };
            let name = entry.secret_name.ok_or_else(|| fail("secretName is missing".into()))?;
            if !valid_secret_name(&name) {
                return Err(fail(
                    "secretName must be 1-128 of [A-Za-z0-9._-], not \".\" or \"..\" (it names one secret)".into(),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(fail("secretName appears twice in the file".into()));
            }
            let imported = entry.imported.unwrap_or(false);
            let data_in = entry.secret_data.unwrap_or_default();
            let holds_values = data_in.iter().any(|k| k.value.is_some());
            let data = if imported { Vec::new() } else { check_data(data_in).map_err(fail)? };
            seeds.push(Seed { name, imported, data, holds_values });
        }
        Ok(Self { seeds })
    }

    /// The entries still to import.
    pub fn pending(&self) -> impl Iterator<Item = &Seed> {
        self.seeds.iter().filter(|s| !s.imported)
    }

    /// Whether the file must be rewritten: an entry is still to import, or still holds a value.
    pub fn needs_scrub(&self) -> bool {
        self.seeds.iter().any(|s| !s.imported || s.holds_values)
    }

    /// The file as EdgeX scrubs it: every entry `imported: true`, no `secretData` left.
    pub fn scrubbed(&self) -> Vec<u8> {
        let out = FileOut {
            secrets: self
                .seeds
                .iter()
                .map(|s| EntryOut { secret_name: &s.name, imported: true, secret_data: [] })
                .collect(),
        };
        let mut bytes = serde_json::to_vec_pretty(&out).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

fn check_data(data: Vec<KeyIn>) -> Result<Vec<SeedKey>, String> {
    if data.is_empty() {
        return Err("secretData is empty: an entry to import needs at least one key and value".into());
    }
    let mut keys = BTreeSet::new();
    let mut out = Vec::with_capacity(data.len());
    for (i, item) in data.into_iter().enumerate() {
        let key = item.key.filter(|k| !k.is_empty()).ok_or_else(|| format!("secretData[{i}] has no key"))?;
        if !keys.insert(key.clone()) {
            return Err(format!("secretData[{i}]: key {:?} appears twice", printable(&key)));
        }
        let value = item
            .value
            .filter(|v| !v.expose().is_empty())
            .ok_or_else(|| format!("secretData[{i}] (key {:?}) has no value", printable(&key)))?;
        out.push(SeedKey { key, value });
    }
    Ok(out)
}

/// A name or key as it may appear in a message: at most 64 characters.
fn printable(text: &str) -> String {
    text.chars().take(64).collect()
}

#[derive(Deserialize)]
struct FileIn {
    #[serde(default)]
    secrets: Option<Vec<EntryIn>>,
}

#[derive(Deserialize)]
struct EntryIn {
    #[serde(default, rename = "secretName")]
    secret_name: Option<String>,
    #[serde(default)]
    imported: Option<bool>,
    #[serde(default, rename = "secretData")]
    secret_data: Option<Vec<KeyIn>>,
}

#[derive(Deserialize)]
struct KeyIn {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<SecretString>,
}

#[derive(Serialize)]
struct FileOut<'a> {
    secrets: Vec<EntryOut<'a>>,
}

#[derive(Serialize)]
struct EntryOut<'a> {
    #[serde(rename = "secretName")]
    secret_name: &'a str,
    imported: bool,
    #[serde(rename = "secretData")]
    secret_data: [(); 0],
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/etc/edgex/secrets.json";
    const VALUE: &str = "s3cr3t-VALUE-9d2";

    fn parse(json: &str) -> Result<SecretsFile, SeedError> {
        SecretsFile::parse(Path::new(FILE), json.as_bytes())
    }

    #[test]
    fn an_edgex_file_parses_into_seeds_and_tolerates_what_go_tolerates() {
        let file = parse(&format!(
            r#"{{"secrets":[
                {{"secretName":"credentials","imported":false,"secretData":[{{"key":"username","value":"u"}},{{"key":"password","value":"{VALUE}"}}]}},
                {{"secretName":"done","imported":true,"secretData":[]}},
                {{"secretName":"no-imported-field","secretData":[{{"key":"k","value":"v","comment":"x"}}],"extra":1}}
            ],"version":"3.1"}}"#
        ))
        .unwrap();
        let pending: Vec<&str> = file.pending().map(|s| s.name.as_str()).collect();
        assert_eq!(pending, ["credentials", "no-imported-field"]);
        let credentials = &file.seeds[0];
        let data = credentials.kv_data();
        assert_eq!(data.get("username"), Some(&Value::String("u".into())));
        assert_eq!(data.get("password"), Some(&Value::String(VALUE.into())));
        assert!(credentials.matches(&data));
        let mut other = data.clone();
        other.insert("password".into(), Value::String("different".into()));
        assert!(!credentials.matches(&other));
        let mut more = data.clone();
        more.insert("extra".into(), Value::String("x".into()));
        assert!(!credentials.matches(&more), "an extra key is not the seed");
        assert!(file.needs_scrub());
        assert!(!format!("{file:?}").contains(VALUE), "Debug never shows a value");
        assert!(parse(r#"{"secrets":[]}"#).unwrap().seeds.is_empty());
    }

    #[test]
    fn malformed_files_are_refused_naming_the_file_and_entry_and_never_a_value() {
        let entry = |data: &str| format!(r#"{{"secrets":[{{"secretName":"db","secretData":{data}}}]}}"#);
        let cases: Vec<(String, &str)> = vec![
            (
                format!(r#"{{"secrets":[{{"secretName":"db","secretData":[{{"key":"k","value":"{VALUE}"}}]"#),
                "the JSON ends too early",
            ),
            (
                format!(r#"{{"secrets":[{{"secretName":"db","secretData":[{{"key":"k","value":{VALUE}}}]}}]}}"#),
                "invalid JSON at line 1",
            ),
            (format!(r#"{{"secrets":[{{"secretName":"db","secretData":"{VALUE}"}}]}}"#), "a field of the wrong type"),
            (entry(r#"[{"key":"k","value":7}]"#), "a field of the wrong type"),
            (r#"{"secrets":[{"secretName":"db","imported":"no"}]}"#.into(), "a field of the wrong type"),
            (r#"[1,2]"#.into(), "a field of the wrong type"),
            (r#"{"keys":["abc"]}"#.into(), "no \"secrets\" list"),
            (
                format!(r#"{{"secrets":[{{"secretData":[{{"key":"k","value":"{VALUE}"}}]}}]}}"#),
                "secrets[0]: secretName is missing",
            ),
            (
                r#"{"secrets":[{"secretName":"../x","secretData":[{"key":"k","value":"v"}]}]}"#.into(),
                "secrets[0] (\"../x\"): secretName must be",
            ),
            (
                r#"{"secrets":[{"secretName":"a/b","secretData":[{"key":"k","value":"v"}]}]}"#.into(),
                "secretName must be",
            ),
            (r#"{"secrets":[{"secretName":"","secretData":[{"key":"k","value":"v"}]}]}"#.into(), "secretName must be"),
            (
                format!(
                    r#"{{"secrets":[{{"secretName":"db","secretData":[{{"key":"k","value":"{VALUE}"}}]}},{{"secretName":"db","imported":true}}]}}"#
                ),
                "secrets[1] (\"db\"): secretName appears twice",
            ),
            (entry("[]"), "secrets[0] (\"db\"): secretData is empty"),
            (r#"{"secrets":[{"secretName":"db"}]}"#.into(), "secretData is empty"),
            (entry(&format!(r#"[{{"value":"{VALUE}"}}]"#)), "secretData[0] has no key"),
            (entry(&format!(r#"[{{"key":"","value":"{VALUE}"}}]"#)), "secretData[0] has no key"),
            (entry(r#"[{"key":"k"}]"#), "secretData[0] (key \"k\") has no value"),
            (entry(r#"[{"key":"k","value":""}]"#), "secretData[0] (key \"k\") has no value"),
            (
                entry(&format!(r#"[{{"key":"k","value":"{VALUE}"}},{{"key":"k","value":"{VALUE}"}}]"#)),
                "secretData[1]: key \"k\" appears twice",
            ),
        ];
        for (json, want) in &cases {
            let message = parse(json).unwrap_err().to_string();
            assert!(message.contains(want), "{json}\n  gave: {message}\n  want: {want}");
            assert!(message.contains(FILE), "names the file: {message}");
            assert!(!message.contains(VALUE), "quotes a value: {message}");
        }
        let big = format!(
            r#"{{"secrets":[{{"secretName":"db","secretData":[{{"key":"k","value":"{}"}}]}}]}}"#,
            "x".repeat(MAX_FILE_LEN)
        );
        assert!(matches!(parse(&big), Err(SeedError::TooLarge { .. })));
    }

    #[test]
    fn the_scrubbed_file_marks_every_entry_imported_and_holds_no_value() {
        let file = parse(&format!(
            r#"{{"secrets":[
                {{"secretName":"credentials","imported":false,"secretData":[{{"key":"password","value":"{VALUE}"}}]}},
                {{"secretName":"old","imported":true,"secretData":[{{"key":"k","value":"{VALUE}-left"}}]}}
            ]}}"#
        ))
        .unwrap();
        let scrubbed = file.scrubbed();
        let text = String::from_utf8(scrubbed.clone()).unwrap();
        assert!(!text.contains(VALUE), "{text}");
        let json: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"secrets": [
                {"secretName": "credentials", "imported": true, "secretData": []},
                {"secretName": "old", "imported": true, "secretData": []},
            ]})
        );
        // The scrubbed file parses, imports nothing and needs no further rewrite.
        let again = SecretsFile::parse(Path::new(FILE), &scrubbed).unwrap();
        assert_eq!(again.pending().count(), 0);
        assert!(!again.needs_scrub());
        // An imported entry that still holds a value is scrubbed too.
        let leftover =
            parse(r#"{"secrets":[{"secretName":"old","imported":true,"secretData":[{"key":"k","value":"v"}]}]}"#)
                .unwrap();
        assert!(leftover.needs_scrub() && leftover.pending().count() == 0);
    }
}
