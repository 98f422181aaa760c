//! Converging OpenBao's configuration with a root token: mounts, the bootstrap AppRole, service
//! policies and roles, EdgeX seed files ([`super::seed_files`]), generated secrets, the
//! token-issuing token, file tokens. Reads first and writes only what differs, so a converged store
//! is left untouched.

use std::collections::BTreeSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use kdf_plugins::Kek;
use openbao_client::api::kv::Created;
use openbao_client::{Client, SecretString, Token};
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use super::policy::{
    self, ADMIN_POLICY, ADMIN_ROLE, APPROLE_MOUNT, APPROLE_ROLE, BOOTSTRAP_POLICY, ISSUER_POLICY, ISSUER_ROLE,
    SERVICE_PREFIX,
};
use super::root::ApproleCredential;
use super::{concurrently, file_tokens, Doing, Report, Setup, SetupError, ITEM_APPROLE, ITEM_ISSUER};
use crate::crash;
use crate::keystore::KeystoreDir;
use crate::SecretBytes;

/// Bytes of randomness in a generated service secret.
const SECRET_BYTES: usize = 32;

/// How setup got its privileged token, and so what it keeps in place for the next run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bootstrap {
    /// A root token generated from the unseal shares (the Shamir path): the bootstrap AppRole that
    /// authenticates the next generation is kept; `ok` when its stored credential worked this run.
    Approle {
        /// The stored credential worked (it need not be re-issued).
        ok: bool,
    },
    /// A setup token from edgeseal's client-certificate login (the static seal): its policy is
    /// kept current with the configuration.
    Cert,
}

/// Applies the whole configuration with `token` (a root token, or the static seal's setup token).
pub async fn converge(
    setup: &Setup,
    client: &Client,
    token: &Token,
    bootstrap: Bootstrap,
    store: &KeystoreDir,
    kek: &Kek,
    report: &mut Report,
) -> Result<(), SetupError> {
    let (_, made) = crate::identity::ensure(store, kek).map_err(|e| SetupError::Config(e.to_string()))?;
    if made {
        report.changes.push("node identity made and stored in the keystore".into());
    }
    match bootstrap {
        Bootstrap::Approle { ok } => {
            ensure_kv_mount(setup, client, token, report).await?;
            crash::point("after-kv-mount");
            ensure_bootstrap_approle(client, token, store, kek, ok, report).await?;
            crash::point("after-approle");
        }
        Bootstrap::Cert => {
            let policy = crate::seal::setup_policy(&setup.store.kv_mount, &setup.store.service_prefix);
            ensure_policy(client, token, crate::seal::SETUP_POLICY, &policy, report).await?;
            ensure_kv_mount(setup, client, token, report).await?;
            crash::point("after-kv-mount");
        }
    }
    // From here four parts depend on nothing but the mount: the services' policies and roles; the
    // seed files and generated secrets; the issuing token; the admin credential's policy and role.
    // They run concurrently — a converged store is mostly their reads — each in its own order of
    // reads and writes, each with its own report (merged in this order). Only the issuing token
    // writes the keystore. The file tokens need the services' roles and the issuing token.
    let (mut services, mut secrets, mut issuing, mut admin) =
        (Report::default(), Report::default(), Report::default(), Report::default());
    let ((), (), issuer, ()) = tokio::try_join!(
        async {
            converge_services(setup, client, token, &mut services).await?;
            crash::point("after-services");
            Ok::<_, SetupError>(())
        },
        async {
            super::seed_files::import(setup, client, token, kek, &mut secrets).await?;
            ensure_secrets(setup, client, token, &mut secrets).await?;
            crash::point("after-secrets");
            Ok(())
        },
        async {
            let issuer = ensure_issuer(client, token, store, kek, &mut issuing).await?;
            crash::point("after-issuer");
            Ok(issuer)
        },
        async {
            let text = policy::admin_policy(&setup.store.kv_mount, &setup.store.service_prefix);
            ensure_policy(client, token, ADMIN_POLICY, &text, &mut admin).await?;
            ensure_token_role(client, token, ADMIN_ROLE, &policy::admin_role(), &mut admin).await
        },
    )?;
    for part in [services, secrets, issuing, admin] {
        report.merge(part);
    }
    file_tokens::refresh(setup, client, &issuer, report).await?;
    crash::point("after-file-tokens");
    Ok(())
}

/// A new admin credential for this run's admin socket, made with the run's privileged token: it
/// lives only in the server's memory and is revoked at shutdown (and expires a period after the last
/// renewal if edgeseal dies without revoking it).
pub async fn admin_token(client: &Client, token: &Token) -> Result<Token, SetupError> {
    let meta = Map::from_iter([("edgeseal".to_string(), Value::String("admin".into()))]);
    let auth =
        client.create_token(token, ADMIN_ROLE, &meta, None).await.doing(|| "creating the admin credential".into())?;
    Ok(auth.client_token)
}

async fn ensure_kv_mount(setup: &Setup, client: &Client, token: &Token, report: &mut Report) -> Result<(), SetupError> {
    let mount = &setup.store.kv_mount;
    let mounts = client.mounts(token).await.doing(|| "listing secrets engines".into())?;
    match mounts.get(&format!("{mount}/")) {
        Some(m) if m.kind == "kv" && m.options.as_ref().and_then(|o| o.get("version")).map(String::as_str) == Some("2") => Ok(()),
        Some(m) => Err(SetupError::Config(format!(
            "secret_store.kv_mount {mount:?} is already mounted as {:?} {:?}, not KV version 2; choose another kv_mount",
            m.kind, m.options
        ))),
        None => {
            client
                .enable_mount(token, mount, "kv", json!({"version": "2"}))
                .await
                .doing(|| format!("mounting KV v2 at {mount}/"))?;
            report.changes.push(format!("mounted KV v2 at {mount}/"));
            Ok(())
        }
    }
}

async fn ensure_policy(
    client: &Client,
    token: &Token,
    name: &str,
    text: &str,
    report: &mut Report,
) -> Result<(), SetupError> {
    let current = client.read_policy(token, name).await.doing(|| format!("reading policy {name}"))?;
    if current.as_deref().map(str::trim) != Some(text.trim()) {
        client.write_policy(token, name, text).await.doing(|| format!("writing policy {name}"))?;
        report.changes.push(format!("policy {name} written"));
    }
    Ok(())
}

async fn ensure_token_role(
    client: &Client,
    token: &Token,
    name: &str,
    role: &Value,
    report: &mut Report,
) -> Result<(), SetupError> {
    let current = client.read_token_role(token, name).await.doing(|| format!("reading token role {name}"))?;
    if !current.is_some_and(|c| policy::role_matches(&c, role)) {
        client.write_token_role(token, name, role).await.doing(|| format!("writing token role {name}"))?;
        report.changes.push(format!("token role {name} written"));
    }
    Ok(())
}

async fn ensure_bootstrap_approle(
    client: &Client,
    token: &Token,
    store: &KeystoreDir,
    kek: &Kek,
    approle_ok: bool,
    report: &mut Report,
) -> Result<(), SetupError> {
    ensure_policy(client, token, BOOTSTRAP_POLICY, &policy::bootstrap_policy(), report).await?;
    let auths = client.auth_mounts(token).await.doing(|| "listing auth methods".into())?;
    if !auths.contains_key(&format!("{APPROLE_MOUNT}/")) {
        client
            .enable_auth(token, APPROLE_MOUNT, "approle")
            .await
            .doing(|| format!("enabling AppRole at {APPROLE_MOUNT}/"))?;
        report.changes.push(format!("enabled AppRole at {APPROLE_MOUNT}/"));
    }
    let role = policy::bootstrap_approle();
    let current = client
        .read_approle(token, APPROLE_MOUNT, APPROLE_ROLE)
        .await
        .doing(|| format!("reading AppRole {APPROLE_ROLE}"))?;
    if !current.is_some_and(|c| policy::role_matches(&c, &role)) {
        client
            .write_approle(token, APPROLE_MOUNT, APPROLE_ROLE, &role)
            .await
            .doing(|| format!("writing AppRole {APPROLE_ROLE}"))?;
        report.changes.push(format!("AppRole {APPROLE_ROLE} written"));
    }
    if approle_ok {
        return Ok(());
    }
    // A new credential: stored in the keystore first, then every other secret-id destroyed.
    let role_id = client
        .approle_role_id(token, APPROLE_MOUNT, APPROLE_ROLE)
        .await
        .doing(|| "reading the AppRole role-id".into())?;
    let secret = client
        .create_secret_id(token, APPROLE_MOUNT, APPROLE_ROLE)
        .await
        .doing(|| "creating the AppRole secret-id".into())?;
    let credential = ApproleCredential { role_id, secret_id: secret.secret_id };
    let bytes = Zeroizing::new(serde_json::to_vec(&credential).unwrap_or_default());
    store.update(kek, |k| k.set_item(ITEM_APPROLE, SecretBytes::new(bytes.to_vec())))?;
    for accessor in client
        .list_secret_id_accessors(token, APPROLE_MOUNT, APPROLE_ROLE)
        .await
        .doing(|| "listing AppRole secret-ids".into())?
    {
        if accessor != secret.secret_id_accessor {
            client
                .destroy_secret_id(token, APPROLE_MOUNT, APPROLE_ROLE, &accessor)
                .await
                .doing(|| "destroying a superseded AppRole secret-id".into())?;
        }
    }
    report.changes.push("bootstrap credential issued and stored in the keystore".into());
    Ok(())
}

async fn converge_services(
    setup: &Setup,
    client: &Client,
    token: &Token,
    report: &mut Report,
) -> Result<(), SetupError> {
    let kv = &setup.store.kv_mount;
    let prefix = &setup.store.service_prefix;
    let wanted: BTreeSet<String> = setup.services.iter().map(|s| policy::service_policy_name(&s.name)).collect();
    // Read every service's policy and role concurrently, then write only what differs.
    let current = concurrently(setup.services.iter().map(|service| async move {
        let name = policy::service_policy_name(&service.name);
        let policy = client.read_policy(token, &name).await.doing(|| format!("reading policy {name}"))?;
        let role = client.read_token_role(token, &name).await.doing(|| format!("reading token role {name}"))?;
        Ok::<_, SetupError>((policy, role))
    }))
    .await?;
    for (service, (current_policy, current_role)) in setup.services.iter().zip(current) {
        let name = policy::service_policy_name(&service.name);
        let text = policy::service_policy(kv, prefix, &service.name);
        if current_policy.as_deref().map(str::trim) != Some(text.trim()) {
            client.write_policy(token, &name, &text).await.doing(|| format!("writing policy {name}"))?;
            report.changes.push(format!("policy {name} written"));
        }
        let role = policy::service_role(service);
        if !current_role.is_some_and(|c| policy::role_matches(&c, &role)) {
            client.write_token_role(token, &name, &role).await.doing(|| format!("writing token role {name}"))?;
            report.changes.push(format!("token role {name} written"));
        }
        crash::point("mid-services");
    }
    // A cluster's members share one store: a member whose `services:` lags behind another's must
    // not delete what that one added. Removing a service from a cluster is `cluster`-wide by hand.
    if setup.store.cluster.is_some() {
        return Ok(());
    }
    for role in client.list_token_roles(token).await.doing(|| "listing token roles".into())? {
        if role.starts_with(SERVICE_PREFIX) && !wanted.contains(&role) {
            client.delete_token_role(token, &role).await.doing(|| format!("deleting token role {role}"))?;
            report.changes.push(format!("token role {role} removed (service no longer configured)"));
        }
    }
    for name in client.list_policies(token).await.doing(|| "listing policies".into())? {
        if name.starts_with(SERVICE_PREFIX) && !wanted.contains(&name) {
            client.delete_policy(token, &name).await.doing(|| format!("deleting policy {name}"))?;
            report.changes.push(format!("policy {name} removed (service no longer configured)"));
        }
    }
    Ok(())
}

/// KV path (below the mount's `data/`) of a service's secret.
pub fn secret_path(setup: &Setup, service: &str, secret: &str) -> String {
    format!("{}/{service}/{secret}", setup.store.service_prefix)
}

async fn ensure_secrets(setup: &Setup, client: &Client, token: &Token, report: &mut Report) -> Result<(), SetupError> {
    let mount = &setup.store.kv_mount;
    let paths: Vec<String> = setup
        .services
        .iter()
        .flat_map(|service| service.secrets.iter().map(|secret| secret_path(setup, &service.name, secret)))
        .collect();
    // Reads concurrently; secrets are generated only where none exists, and never regenerated.
    let present = concurrently(paths.iter().map(|path| async move {
        let found = client.kv_read(token, mount, path).await.doing(|| format!("reading secret {path}"))?;
        Ok::<_, SetupError>(found.is_some())
    }))
    .await?;
    for (path, _) in paths.iter().zip(present).filter(|(_, present)| !present) {
        let mut raw = Zeroizing::new([0u8; SECRET_BYTES]);
        getrandom::getrandom(raw.as_mut_slice())
            .map_err(|e| SetupError::Config(format!("random generator failed: {e}")))?;
        let value = SecretString::new(URL_SAFE_NO_PAD.encode(raw.as_slice()));
        let data = Map::from_iter([("value".to_string(), Value::String(value.expose().to_string()))]);
        let created = client.kv_create(token, mount, path, &data).await.doing(|| format!("creating secret {path}"))?;
        if created == Created::Written {
            report.changes.push(format!("generated secret {mount}/{path}"));
        }
    }
    Ok(())
}

/// Keeps one valid issuing token in the keystore: renewed when it still works, replaced otherwise.
async fn ensure_issuer(
    client: &Client,
    token: &Token,
    store: &KeystoreDir,
    kek: &Kek,
    report: &mut Report,
) -> Result<Token, SetupError> {
    ensure_policy(client, token, ISSUER_POLICY, &policy::issuer_policy(), report).await?;
    ensure_token_role(client, token, ISSUER_ROLE, &policy::issuer_role(), report).await?;
    let keystore = store.open(kek)?;
    let previous = keystore.item(ITEM_ISSUER).and_then(|item| std::str::from_utf8(item.expose()).ok().map(Token::new));
    if let Some(previous) = previous {
        if let Ok(info) = client.lookup_self(&previous).await {
            if info.policies.iter().any(|p| p == ISSUER_POLICY) && client.renew_self(&previous).await.is_ok() {
                report.refreshed.push("token-issuing token renewed".into());
                return Ok(previous);
            }
            let _ = client.revoke_accessor(token, &info.accessor).await;
        }
    }
    let meta = Map::from_iter([("edgeseal".to_string(), Value::String("token-issuer".into()))]);
    let auth = client
        .create_token(token, ISSUER_ROLE, &meta, None)
        .await
        .doing(|| "creating the token-issuing token".into())?;
    store.update(kek, |k| k.set_item(ITEM_ISSUER, SecretBytes::new(auth.client_token.expose().as_bytes().to_vec())))?;
    report.changes.push("token-issuing token created and stored in the keystore".into());
    Ok(auth.client_token)
}
