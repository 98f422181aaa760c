//! The static seal of a supervised OpenBao (SPEC §6): edgeseal generates a 32-byte seal key and its
//! own TLS client identity, keeps both only KEK-encrypted in the keystore, and starts OpenBao with
//! `seal "static"` (the key in the child's environment) and an `initialize` block. Empty storage
//! initializes itself on first start: OpenBao writes edgeseal's setup policy, mounts `cert` auth and
//! registers edgeseal's certificate. edgeseal then logs in with its client key over TLS. No
//! `sys/init`, no root token, no unseal share ever crosses the API, and a restarted OpenBao opens
//! itself.
//!
//! - [`material`]: the seal key(s) and client identity, as keystore items.
//! - [`storage`]: the one on-disk fact that decides a boot — whether edgeseal is still *creating*
//!   the store (`store-pending` beside the keystore) — and what the raft directory holds ([`plan`]).
//! - [`boot`]: the supervised boot itself: keystore, OpenBao, login, converge; seal-key rotation.
//! - [`restore`]: `restore`, a backup's store and keys moved onto this device, crash-safe.
//! - [`migrate`]: `migrate-seal`, a Shamir-sealed store moved to the static seal, crash-safe.

pub mod boot;
pub mod material;
pub mod migrate;
pub mod restore;
pub mod storage;

use serde::{Deserialize, Serialize};

use crate::server_config::SelfInit;

/// `secret_store.supervise.seal`: how a supervised OpenBao is sealed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SealMode {
    /// A key edgeseal holds; self-initialization; no root token, no shares (the default).
    #[default]
    Static,
    /// Shamir unseal shares in the keystore, `sys/init` and root generation (the path for stores
    /// edgeseal does not start; kept for supervised stores until `migrate-seal`).
    Shamir,
}

/// Name of the setup policy the cert login gets.
pub const SETUP_POLICY: &str = "edgeseal-setup";
/// Mount path of edgeseal's `cert` auth method.
pub const CERT_MOUNT: &str = "edgeseal-cert";
/// Name of edgeseal's certificate entry in it.
pub const CERT_NAME: &str = "edgeseal";
/// TTL of a setup token: one setup run; revoked at its end.
pub const SETUP_TOKEN_TTL_SECS: u64 = 15 * 60;

/// The setup policy: what one setup run does (mounts, policies, token roles and tokens, the
/// service secrets, recovery-key rotation, its own cert entry). It can rewrite policies, so it is
/// as strong as root while it lives — which is why it lives 15 minutes, is made only by a TLS login
/// with a key that exists only KEK-encrypted in the keystore, and is revoked at the end of each run.
pub fn setup_policy(kv_mount: &str, service_prefix: &str) -> String {
    let crud = r#"["create", "read", "update", "delete", "list"]"#;
    let paths: &[(&str, &str)] = &[
        ("sys/mounts", r#"["read"]"#),
        // Enable, never disable: a setup token cannot unmount a secrets engine or edgeseal's own
        // cert auth (which would lock edgeseal out).
        ("sys/mounts/*", r#"["create", "read", "update", "sudo"]"#),
        ("sys/auth", r#"["read"]"#),
        ("sys/auth/*", r#"["create", "read", "update", "sudo"]"#),
        ("sys/policies/acl", r#"["list"]"#),
        ("sys/policies/acl/*", crud),
        ("sys/rotate/recovery/*", r#"["update", "sudo"]"#),
        // `restore`: the backup's snapshot into a store that has just initialized itself.
        ("sys/storage/raft/snapshot-force", r#"["update", "sudo"]"#),
        ("auth/token/roles", r#"["list"]"#),
        ("auth/token/*", r#"["create", "read", "update", "delete", "list", "sudo"]"#),
        ("auth/edgeseal-cert/certs/*", crud),
        // Clusters (SPEC §15): autopilot's rules, the membership, a member leaving.
        ("sys/storage/raft/configuration", r#"["read"]"#),
        ("sys/storage/raft/autopilot/state", r#"["read"]"#),
        ("sys/storage/raft/autopilot/configuration", r#"["read", "update"]"#),
        ("sys/storage/raft/remove-peer", r#"["update"]"#),
        ("sys/step-down", r#"["update", "sudo"]"#),
    ];
    let mut text = String::from("# edgeseal: one setup run (cert login, 15 min, revoked at the end of the run)\n");
    for (path, caps) in paths {
        text.push_str(&format!("path \"{path}\" {{\n  capabilities = {caps}\n}}\n"));
    }
    for kv in [format!("{kv_mount}/data/{service_prefix}/*"), format!("{kv_mount}/metadata/{service_prefix}/*")] {
        text.push_str(&format!("path \"{kv}\" {{\n  capabilities = {crud}\n}}\n"));
    }
    text
}

/// The `initialize` block for a store whose services live under `kv_mount`/`service_prefix`.
pub fn self_init(client_cert: &str, kv_mount: &str, service_prefix: &str) -> SelfInit {
    SelfInit {
        client_cert: client_cert.to_string(),
        policy_name: SETUP_POLICY.into(),
        policy: setup_policy(kv_mount, service_prefix),
        cert_mount: CERT_MOUNT.into(),
        cert_name: CERT_NAME.into(),
        token_ttl_secs: SETUP_TOKEN_TTL_SECS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setup_policy_enables_but_never_disables_and_covers_only_edgeseals_kv_paths() {
        let policy = setup_policy("secret", "edgeseal");
        for path in ["sys/mounts/*", "sys/auth/*"] {
            let block = policy.split(&format!("path \"{path}\"")).nth(1).and_then(|rest| rest.split('}').next());
            assert!(block.is_some_and(|b| !b.contains("delete")), "{path}: {policy}");
        }
        assert!(
            policy.contains("path \"secret/data/edgeseal/*\"")
                && policy.contains("path \"secret/metadata/edgeseal/*\"")
        );
        assert!(!policy.contains("path \"secret/*\"") && !policy.contains("path \"*\""), "{policy}");
    }
}
