//! `node show`, `secrets export|import|seal` and `backup` (SPEC §13): the node identity and the
//! bundles that move secrets and backups between devices and people. Export, import and backup go
//! through the admin socket (the running device opens its keystore for each); `node show --config`
//! and `secrets seal` need no running device.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::Context;
use edgeseal_bundle::{kind, NodePublic, Recipient};
use hyper::Method;
use serde_json::{json, Value};
use token_server::admin::transfer::{recipients, SecretSet, MAX_IMPORT};

use super::device::KeystoreDevice;
use super::secrets::call;
use crate::cli::{BackupArgs, NodeShowArgs};
use crate::config::Config;
use crate::UsageError;

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")
}

/// Writes a bundle to a new file, 0600; an existing file is never replaced.
pub(crate) fn write_new(path: &Path, bundle: &str) -> anyhow::Result<()> {
    let options = durable_file::Options::private().no_clobber();
    match durable_file::write(path, bundle.as_bytes(), &options) {
        Ok(durable_file::Outcome::Written) => Ok(()),
        Ok(durable_file::Outcome::Exists) => {
            Err(UsageError(format!("{} already exists: not overwritten (choose another -o)", path.display())).into())
        }
        Err(e) => Err(anyhow::anyhow!("writing {}: {e}", path.display())),
    }
}

pub(crate) fn check_recipients(to: &[String]) -> Result<Vec<Recipient>, UsageError> {
    recipients(to).map_err(UsageError)
}

/// `node show`.
pub fn node_show(args: &NodeShowArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let public: NodePublic = match &args.config {
        Some(path) => {
            let config = Config::load(path)?;
            let device = KeystoreDevice {
                kdf: config.kdf.clone(),
                store: secretstore_setup::KeystoreDir::new(&config.keystore.dir),
                config: Vec::new(),
            };
            device.identity()?.1.public()
        }
        None => {
            let answer = runtime()?.block_on(call(&args.socket, Method::GET, "/v1/node", None))?;
            serde_json::from_value(answer).context("the admin socket's node identity is not what edgeseal sends")?
        }
    };
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&public)?)?;
    } else {
        writeln!(out, "node id:          {}", public.node_id)?;
        writeln!(out, "recipient:        {}", public.recipient)?;
        writeln!(out, "signing key:      {}", public.signing_key)?;
        writeln!(out, "TLS cert SHA-256: {}", public.tls_cert_sha256)?;
    }
    Ok(())
}

/// `secrets export`.
pub fn export(
    to: &[String],
    selectors: &[String],
    output: &Path,
    socket: &Path,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    check_recipients(to)?;
    for selector in selectors {
        selector.parse::<token_server::admin::transfer::Selector>().map_err(UsageError)?;
    }
    if output.exists() {
        return Err(UsageError(format!("{} already exists: not overwritten", output.display())).into());
    }
    let body = json!({"selectors": selectors, "to": to});
    let answer = runtime()?.block_on(call(socket, Method::POST, "/v1/export", Some(body)))?;
    let bundle = answer["bundle"].as_str().context("the admin socket returned no bundle")?;
    write_new(output, bundle)?;
    let secrets = answer["secrets"].as_array().cloned().unwrap_or_default();
    let from = answer["from"].as_str().unwrap_or("?");
    writeln!(out, "{} secrets exported to {}, signed by {from}:", secrets.len(), output.display())?;
    for s in secrets {
        let text = |k: &str| s[k].as_str().unwrap_or_default().to_string();
        writeln!(out, "  {}/{} (version {})", text("service"), text("name"), s["version"])?;
    }
    Ok(())
}

/// How `secrets import` was asked to treat a bundle.
#[derive(Debug, Clone, Copy)]
pub struct ImportOptions {
    /// `--allow-any-signer`.
    pub allow_any_signer: bool,
    /// `--allow-unsigned`.
    pub allow_unsigned: bool,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--json`.
    pub json: bool,
}

/// `secrets import`.
pub fn import(
    file: &Path,
    from: &[String],
    options: ImportOptions,
    socket: &Path,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    for key in from {
        key.parse::<edgeseal_bundle::SignerKey>().map_err(|e| UsageError(e.to_string()))?;
    }
    let bundle = read_limited(file, MAX_IMPORT)?;
    let body = json!({
        "bundle": bundle,
        "from": from,
        "any_signer": options.allow_any_signer,
        "allow_unsigned": options.allow_unsigned,
        "dry_run": options.dry_run,
    });
    let answer = runtime()?.block_on(call(socket, Method::POST, "/v1/import", Some(body)))?;
    if options.json {
        writeln!(out, "{answer}")?;
        return Ok(());
    }
    let sender = match answer["sender"].as_object() {
        Some(s) => format!("signed by {} ({})", s["node"].as_str().unwrap_or("?"), s["key"].as_str().unwrap_or("?")),
        None => "unsigned".into(),
    };
    let verb = if options.dry_run { "would import (dry run: nothing changed)" } else { "imported" };
    writeln!(out, "bundle {}, {sender}; {verb}:", file.display())?;
    for c in answer["changes"].as_array().cloned().unwrap_or_default() {
        let text = |k: &str| c[k].as_str().unwrap_or_default().to_string();
        let version = c["version"].as_u64().map(|v| format!(" -> version {v}")).unwrap_or_default();
        writeln!(out, "  {:<9} {}/{}{version}", text("action"), text("service"), text("name"))?;
    }
    Ok(())
}

/// `secrets seal`: stdin to a bundle, no device.
pub fn seal(to: &[String], output: Option<&Path>, out: &mut dyn Write) -> anyhow::Result<()> {
    let recipients = check_recipients(to)?;
    let mut input = zeroize::Zeroizing::new(Vec::new());
    std::io::stdin().lock().take(MAX_IMPORT as u64 + 1).read_to_end(&mut input).context("reading stdin")?;
    let payload: Value = serde_json::from_slice(&input)
        .map_err(|e| UsageError(format!("stdin is not JSON ({e}): expected {{\"service/name\": \"value\", …}}")))?;
    drop(input);
    let set = SecretSet::parse(&payload).map_err(|e| UsageError(format!("{e}: no bundle was made")))?;
    let bundle = edgeseal_bundle::seal(kind::SECRETS, set.to_payload(), &recipients, None)?;
    match output {
        Some(path) => {
            write_new(path, &bundle)?;
            writeln!(
                out,
                "{} secrets sealed to {} (unsigned: import it with --allow-unsigned)",
                set.0.len(),
                path.display()
            )?;
        }
        None => out.write_all(bundle.as_bytes())?,
    }
    Ok(())
}

/// A file of at most `limit` bytes, as text.
fn read_limited(path: &Path, limit: usize) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| UsageError(format!("reading {}: {e}", path.display())))?;
    if bytes.len() > limit {
        return Err(UsageError(format!("{} is larger than {limit} bytes", path.display())).into());
    }
    edgeseal_bundle::to_armored(&bytes).map_err(|e| UsageError(format!("{}: {e}", path.display())).into())
}

/// `backup`.
pub fn backup(args: &BackupArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    check_recipients(&args.to)?;
    if args.output.exists() {
        return Err(UsageError(format!("{} already exists: not overwritten", args.output.display())).into());
    }
    let answer = runtime()?.block_on(call(&args.socket, Method::POST, "/v1/backup", Some(json!({"to": args.to}))))?;
    let bundle = answer["bundle"].as_str().context("the admin socket returned no backup")?;
    write_new(&args.output, bundle)?;
    writeln!(
        out,
        "backup of {} written to {} ({} bytes; raft snapshot {} bytes), encrypted to {} recipient(s)",
        answer["from"].as_str().unwrap_or("this node"),
        args.output.display(),
        bundle.len(),
        answer["snapshot_bytes"],
        args.to.len()
    )?;
    Ok(())
}
