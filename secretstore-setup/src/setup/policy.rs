//! The ACL policies and token roles edgeseal writes, as pure functions of the configuration.

use serde_json::{json, Value};

use crate::config::{ServiceSetup, TokenSettings};

/// Prefix of every per-service policy and token role. secretstore-setup owns this contract: it
/// creates the roles, and the token server is told each service's role ([`service_role_name`])
/// rather than rebuilding the name.
pub const SERVICE_PREFIX: &str = "edgeseal-svc-";
/// Policy of the token-issuing token.
pub const ISSUER_POLICY: &str = "edgeseal-token-issuer";
/// Token role the issuing token is created against.
pub const ISSUER_ROLE: &str = "edgeseal-token-issuer";
/// Policy of the bootstrap AppRole: only root-token generation (which also needs the unseal shares).
pub const BOOTSTRAP_POLICY: &str = "edgeseal-bootstrap";
/// Mount path of edgeseal's own AppRole auth method.
pub const APPROLE_MOUNT: &str = "edgeseal-approle";
/// The AppRole role edgeseal logs in with.
pub const APPROLE_ROLE: &str = "bootstrap";
/// Period of the issuing token: the token server renews it; after a longer power-off, setup makes a new one.
pub const ISSUER_PERIOD_SECS: u64 = 24 * 3600;

/// Policy of the admin credential (the admin socket's, in the server's memory only).
pub const ADMIN_POLICY: &str = "edgeseal-admin";
/// Token role the admin credential is created against.
pub const ADMIN_ROLE: &str = "edgeseal-admin";
/// Period of the admin credential: renewed by the server, revoked at shutdown.
pub const ADMIN_PERIOD_SECS: u64 = 24 * 3600;

/// The admin credential may read, write, version, delete and list the services' secrets, and read
/// the raft snapshot a `backup` carries (useless without the seal key) and a cluster's membership,
/// and nothing else: no policy, no token, no mount, no other path.
pub fn admin_policy(kv_mount: &str, prefix: &str) -> String {
    format!(
        "# edgeseal: the admin socket's credential (operators' secrets)\n\
         path \"{kv_mount}/data/{prefix}/*\" {{\n  capabilities = [\"create\", \"read\", \"update\", \"delete\"]\n}}\n\
         path \"{kv_mount}/metadata/{prefix}/*\" {{\n  capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\"]\n}}\n\
         path \"{kv_mount}/delete/{prefix}/*\" {{\n  capabilities = [\"update\"]\n}}\n\
         path \"{kv_mount}/destroy/{prefix}/*\" {{\n  capabilities = [\"update\"]\n}}\n\
         # `backup`: the store's raft snapshot (sealed by the store's keys; the backup adds the key)\n\
         path \"sys/storage/raft/snapshot\" {{\n  capabilities = [\"read\"]\n}}\n\
         # `cluster status`: who the members are and how healthy (read only)\n\
         path \"sys/storage/raft/configuration\" {{\n  capabilities = [\"read\"]\n}}\n\
         path \"sys/storage/raft/autopilot/state\" {{\n  capabilities = [\"read\"]\n}}\n"
    )
}

/// The token role of the admin credential: orphan (it outlives the setup token that made it),
/// periodic, its own policy only.
pub fn admin_role() -> Value {
    json!({
        "allowed_policies": [ADMIN_POLICY],
        "orphan": true,
        "renewable": true,
        "token_type": "service",
        "token_period": ADMIN_PERIOD_SECS,
        "token_explicit_max_ttl": 0,
    })
}

/// `edgeseal-svc-<service>`: the name of a service's policy and token role.
pub fn service_policy_name(service: &str) -> String {
    format!("{SERVICE_PREFIX}{service}")
}

/// `edgeseal-svc-<service>`: the token role a service's tokens are created against (the same name as
/// its policy). The token server receives it in `ServiceRule::role`.
pub fn service_role_name(service: &str) -> String {
    service_policy_name(service)
}

/// Service S may create/read/update/delete/list its own secrets and nothing else.
pub fn service_policy(kv_mount: &str, prefix: &str, service: &str) -> String {
    format!(
        "# edgeseal: service {service:?} may use its own secrets and nothing else\n\
         path \"{kv_mount}/data/{prefix}/{service}/*\" {{\n  capabilities = [\"create\", \"read\", \"update\", \"delete\"]\n}}\n\
         path \"{kv_mount}/metadata/{prefix}/{service}/*\" {{\n  capabilities = [\"read\", \"list\", \"delete\"]\n}}\n\
         path \"{kv_mount}/metadata/{prefix}/{service}/\" {{\n  capabilities = [\"list\"]\n}}\n"
    )
}

/// The token-issuing token may only create tokens against `edgeseal-svc-*` roles, and look up,
/// renew or revoke tokens by accessor (never read a secret, never create other tokens).
pub fn issuer_policy() -> String {
    format!(
        "# edgeseal: the token server's issuing token\n\
         path \"auth/token/create/{SERVICE_PREFIX}*\" {{\n  capabilities = [\"create\", \"update\"]\n}}\n\
         path \"auth/token/lookup-accessor\" {{\n  capabilities = [\"update\"]\n}}\n\
         path \"auth/token/revoke-accessor\" {{\n  capabilities = [\"update\"]\n}}\n\
         path \"auth/token/renew-accessor\" {{\n  capabilities = [\"update\"]\n}}\n\
         path \"auth/token/lookup-self\" {{\n  capabilities = [\"read\"]\n}}\n\
         path \"auth/token/renew-self\" {{\n  capabilities = [\"update\"]\n}}\n"
    )
}

/// The bootstrap AppRole's policy: root-token generation only, which is useless without the shares.
pub fn bootstrap_policy() -> String {
    "# edgeseal: bootstrap credential; generating a root token also needs the unseal shares\n\
     path \"sys/generate-root-token/*\" {\n  capabilities = [\"create\", \"read\", \"update\", \"delete\"]\n}\n"
        .to_string()
}

/// The token role of a service: its own policy only, orphan; renewable service tokens, or (for
/// `type: batch`) non-renewable batch tokens with no period and no explicit max TTL, the only batch
/// role OpenBao accepts. Every key is written either way, so a service that switches type converges
/// its role on the next setup. (Token roles carry no TTL: the TTL is given when each token is
/// created, see [`token_ttl`].)
pub fn service_role(service: &ServiceSetup) -> Value {
    let batch = service.token.is_batch();
    let period = if batch { 0 } else { service.token.period.map(|p| p.as_secs()).unwrap_or(0) };
    json!({
        "allowed_policies": [service_policy_name(&service.name)],
        "orphan": true,
        "renewable": !batch,
        "token_type": if batch { "batch" } else { "service" },
        "token_period": period,
        "token_explicit_max_ttl": 0,
    })
}

/// The TTL to request when creating a service's token (a periodic token takes its period instead;
/// a batch token is never periodic).
pub fn token_ttl(service: &ServiceSetup) -> Option<u64> {
    token_ttl_of(&service.token).map(|ttl| ttl.as_secs())
}

/// [`token_ttl`] from the `token:` settings alone (the token server's `ServiceRule::ttl`).
pub fn token_ttl_of(token: &TokenSettings) -> Option<std::time::Duration> {
    match token.period {
        Some(_) if !token.is_batch() => None,
        _ => Some(token.ttl),
    }
}

/// The token role of the issuing token.
pub fn issuer_role() -> Value {
    json!({
        "allowed_policies": [ISSUER_POLICY],
        "orphan": true,
        "renewable": true,
        "token_type": "service",
        "token_period": ISSUER_PERIOD_SECS,
        "token_no_default_policy": true,
        "token_explicit_max_ttl": 0,
    })
}

/// The bootstrap AppRole: secret-ids never expire (the device may be off for months); its tokens are
/// short-lived batch tokens, which OpenBao does not store (a login costs no storage write) and which
/// expire by themselves.
pub fn bootstrap_approle() -> Value {
    json!({
        "token_policies": [BOOTSTRAP_POLICY],
        "token_ttl": 300,
        "token_max_ttl": 600,
        "secret_id_ttl": 0,
        "secret_id_num_uses": 0,
        "token_type": "batch",
        "bind_secret_id": true,
    })
}

/// Whether the role OpenBao has already matches the desired one (only the keys we set are compared;
/// OpenBao reports durations as numbers of seconds).
pub fn role_matches(current: &serde_json::Map<String, Value>, desired: &Value) -> bool {
    let Some(desired) = desired.as_object() else { return false };
    desired.iter().all(|(key, want)| match (current.get(key), want) {
        (Some(Value::Array(have)), Value::Array(want)) => {
            let mut have: Vec<_> = have.iter().filter_map(Value::as_str).collect();
            let mut want: Vec<_> = want.iter().filter_map(Value::as_str).collect();
            have.sort_unstable();
            want.sort_unstable();
            have == want
        }
        (Some(have), want) => have == want || (have.as_u64().is_some() && have.as_u64() == want.as_u64()),
        (None, _) => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenType;
    use std::time::Duration;

    fn svc(name: &str) -> ServiceSetup {
        ServiceSetup {
            name: name.into(),
            secrets: vec![],
            token: TokenSettings {
                kind: TokenType::Service,
                ttl: Duration::from_secs(3600),
                period: Some(Duration::from_secs(7200)),
            },
            file_token: None,
            seed_file: None,
        }
    }

    #[test]
    fn a_service_policy_covers_only_its_own_path() {
        let policy = service_policy("secret", "edgeseal", "core-data");
        assert!(policy.contains("path \"secret/data/edgeseal/core-data/*\""));
        assert!(policy.contains("path \"secret/metadata/edgeseal/core-data/*\""));
        assert_eq!(policy.matches("path ").count(), 3);
        assert!(!policy.contains("edgeseal/*\"") && !policy.contains("sys/"));
    }

    #[test]
    fn the_issuer_can_only_create_against_service_roles() {
        let policy = issuer_policy();
        assert!(policy.contains("auth/token/create/edgeseal-svc-*"));
        assert!(!policy.contains("secret/") && !policy.contains("sys/") && !policy.contains("\"auth/token/create\""));
    }

    #[test]
    fn the_admin_credential_reaches_the_services_secrets_and_the_snapshot_and_nothing_else() {
        let policy = admin_policy("secret", "edgeseal");
        let paths: Vec<&str> = policy.lines().filter_map(|l| l.strip_prefix("path \"")).collect();
        assert_eq!(paths.len(), 7, "{policy}");
        let (kv, other): (Vec<&str>, Vec<&str>) = paths.iter().partition(|p| p.starts_with("secret/"));
        assert!(kv.iter().all(|p| p.contains("/edgeseal/*\"")), "{policy}");
        assert_eq!(
            other,
            [
                "sys/storage/raft/snapshot\" {",
                "sys/storage/raft/configuration\" {",
                "sys/storage/raft/autopilot/state\" {"
            ],
            "{policy}"
        );
        assert!(!policy.contains("remove-peer") && !policy.contains("autopilot/configuration"), "{policy}");
        assert!(
            !policy.contains("auth/") && !policy.contains("sudo") && !policy.contains("snapshot-force"),
            "{policy}"
        );
    }

    #[test]
    fn role_comparison_ignores_order_and_extra_fields() {
        let desired = service_role(&svc("a"));
        let mut current: serde_json::Map<String, Value> = desired.as_object().unwrap().clone();
        current.insert("bound_cidrs".into(), json!([]));
        assert!(role_matches(&current, &desired));
        current.insert("token_period".into(), json!(60));
        assert!(!role_matches(&current, &desired));
        current.remove("token_period");
        assert!(!role_matches(&current, &desired));
    }

    #[test]
    fn a_batch_service_gets_a_non_renewable_batch_role_without_period_or_max_ttl() {
        let mut service = svc("a");
        let periodic = service_role(&service);
        assert_eq!(periodic["token_type"], "service");
        assert_eq!(periodic["token_period"], 7200);
        service.token = TokenSettings { kind: TokenType::Batch, ttl: Duration::from_secs(900), period: None };
        let batch = service_role(&service);
        assert_eq!(batch["token_type"], "batch");
        assert_eq!(batch["renewable"], false);
        assert_eq!(batch["token_period"], 0);
        assert_eq!(batch["token_explicit_max_ttl"], 0);
        assert_eq!(token_ttl(&service), Some(900));
        // The role OpenBao holds for the service-token role does not satisfy the batch one: setup rewrites it.
        assert!(!role_matches(periodic.as_object().unwrap(), &batch));
    }
}
