//! What the `cluster` commands do with a member's keystore and its OpenBao: invite a new gateway
//! (a join bundle for it, and its login registered in the cluster), accept a join bundle, set
//! autopilot's rules, and remove a member.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edgeseal_bundle::{BundleError, Recipient, Trust};
use openbao_client::api::raft::AutopilotConfig;
use openbao_client::retry::{retry, Attempt, Backoff};
use openbao_client::{Client, Token};

use super::invite::{Invite, InviteError};
use super::{join_pending_marker, login_name, Member, Membership, JOIN_KIND};
use crate::crash;
use crate::identity::{self, IdentityError};
use crate::seal::boot::{login_as, Login};
use crate::seal::material::{IdentityPem, SealMaterial, ITEM_RECOVERY_KEY};
use crate::seal::{storage, CERT_MOUNT, CERT_NAME, SETUP_POLICY, SETUP_TOKEN_TTL_SECS};
use crate::setup::{Doing, Report, Setup, SetupError};

/// Autopilot's rules on a cluster of gateways. A dead member is removed only when the cluster has
/// more than `min_quorum` (3) servers — a replacement joined — and it has been silent for 10 min;
/// otherwise only `cluster leave` removes it. A new member votes after 2 s of good health.
pub const AUTOPILOT: AutopilotConfig = AutopilotConfig {
    cleanup_dead_servers: true,
    dead_server_last_contact_threshold: 600,
    min_quorum: 3,
    server_stabilization_time: 2,
};

/// Why a cluster command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The configuration, keystore or OpenBao failed as in setup.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The keystore could not be read or written.
    #[error(transparent)]
    Keystore(#[from] crate::KeystoreError),
    /// The node identity could not be read or made.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The bundle could not be opened or is not to be trusted.
    #[error("the join bundle is refused: {0}")]
    Bundle(#[from] BundleError),
    /// The bundle's payload is refused.
    #[error(transparent)]
    Invite(#[from] InviteError),
    /// The command does not apply here; nothing was changed.
    #[error("{0}")]
    Refused(String),
}

fn config(setup: &Setup) -> Result<&super::ClusterConfig, ClusterError> {
    setup.store.cluster.as_ref().ok_or_else(|| {
        ClusterError::Refused(
            "edgeseal.yaml has no secret_store.cluster: add it (node_id, and join for a new member) first".into(),
        )
    })
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Writes autopilot's rules ([`AUTOPILOT`]) through any member (forwarded to the active one).
pub async fn ensure_autopilot(client: &Client, token: &Token, report: &mut Report) -> Result<(), SetupError> {
    client.set_autopilot_config(token, &AUTOPILOT).await.doing(|| "setting autopilot's rules".into())?;
    report.refreshed.push("autopilot rules".into());
    Ok(())
}

/// A join bundle made by [`invite`].
#[derive(Debug)]
pub struct Invitation {
    /// The armored, signed age bundle (it holds the seal key: write it only where the operator said).
    pub bundle: String,
    /// The cluster's id.
    pub cluster_id: String,
    /// The inviting node's signing key (the new gateway's `cluster join --from`).
    pub signer: String,
}

/// Logs in to this member's OpenBao with the keystore's client identity: the setup token, its
/// client, and the keystore's node keys. The caller revokes the token.
async fn member_login(setup: &Setup) -> Result<(Client, Token, crate::Keystore, kdf_plugins::Kek), ClusterError> {
    let ikm = setup.ikm().await?;
    let store = setup.keystore_dir();
    let (keystore, kek) = store.open_with_ikm(&ikm)?;
    drop(ikm);
    let material =
        SealMaterial::from_keystore(&keystore).map_err(|e| SetupError::Config(e.to_string()))?.ok_or_else(|| {
            ClusterError::Refused(format!(
                "keystore {} holds no seal key: boot this gateway (`security-bootstrap run`) first",
                store.path().display()
            ))
        })?;
    let identity = material.identity.client_identity().doing(|| "loading edgeseal's client identity".into())?;
    let client = setup.tcp_client_as(Some(&identity))?;
    let membership = Membership::read(store.dir()).map_err(|source| SetupError::Io {
        doing: "reading",
        path: Membership::path(store.dir()),
        source,
    })?;
    let name = membership.as_ref().map_or_else(|| CERT_NAME.to_string(), Membership::login_name);
    let token = login_as(&client, &Login { name: &name, standby_ok: true }, setup.store.wait_timeout).await?;
    Ok((client, token, keystore, kek))
}

/// `cluster invite`: a join bundle for the gateway that will be `node_id`, encrypted to `recipients`
/// and signed by this node, valid for `valid`. Registers the new member's login (a client
/// certificate made here, travelling only in the bundle) in the cluster's `cert` auth method.
pub async fn invite(
    setup: &Setup,
    node_id: &str,
    recipients: &[Recipient],
    valid: Duration,
) -> Result<Invitation, ClusterError> {
    let cluster = config(setup)?;
    if !super::valid_node_id(node_id) || node_id == cluster.node_id || node_id == super::DEFAULT_NODE_ID {
        return Err(ClusterError::Refused(format!(
            "node id {node_id:?} cannot be given to a new member: it must be 1 to 64 of [A-Za-z0-9_-], and neither this member's ({}) nor {}",
            cluster.node_id,
            super::DEFAULT_NODE_ID
        )));
    }
    let (client, token, keystore, kek) = member_login(setup).await?;
    let made = async {
        let material = SealMaterial::from_keystore(&keystore)
            .map_err(|e| SetupError::Config(e.to_string()))?
            .ok_or_else(|| ClusterError::Refused("the keystore holds no seal key".into()))?;
        if material.next.is_some() {
            return Err(ClusterError::Refused(
                "a seal-key rotation is pending in this keystore: finish it before inviting a member".into(),
            ));
        }
        let health = client.health().await.doing(|| "reading the cluster id".into())?;
        let servers = client.raft_configuration(&token).await.doing(|| "reading the raft members".into())?;
        if servers.iter().any(|s| s.node_id == node_id) {
            return Err(ClusterError::Refused(format!(
                "{node_id} is a member already: its login would be replaced. To replace that gateway, remove it first (`security-bootstrap cluster leave --node {node_id}`), or give the new one another id"
            )));
        }
        let (node, _) = identity::ensure(&setup.keystore_dir(), &kek)?;
        let login = IdentityPem::generate_named(&format!("edgeseal member {node_id}"))
            .map_err(|e| SetupError::Config(format!("making the new member's client certificate: {e}")))?;
        client
            .write_cert_entry(
                &token,
                CERT_MOUNT,
                &login_name(node_id),
                &login.cert,
                &[SETUP_POLICY],
                SETUP_TOKEN_TTL_SECS,
            )
            .await
            .doing(|| format!("registering the login of member {node_id}"))?;
        let own_ca = std::fs::read_to_string(&setup.ca_cert).map_err(|source| SetupError::Io {
            doing: "reading",
            path: setup.ca_cert.clone(),
            source,
        })?;
        let mut members =
            vec![Member { node_id: cluster.node_id.clone(), address: setup.store.address.clone(), ca_pem: own_ca }];
        let membership = Membership::read(setup.keystore_dir().dir()).ok().flatten();
        for member in membership.into_iter().flat_map(|m| m.members) {
            if member.node_id != node_id && !members.iter().any(|m| m.node_id == member.node_id) {
                members.push(member);
            }
        }
        let invite = Invite {
            cluster_id: health.cluster_id.clone(),
            node_id: node_id.to_string(),
            expires: now().saturating_add(valid.as_secs()),
            members,
            seal_key: material.current,
            recovery_key: keystore.item(ITEM_RECOVERY_KEY).cloned(),
            identity: login,
        };
        let bundle = edgeseal_bundle::seal(JOIN_KIND, invite.to_payload(), recipients, Some(&node.keys))?;
        Ok(Invitation { bundle, cluster_id: health.cluster_id, signer: node.keys.signer().to_string() })
    }
    .await;
    let revoked = client.revoke_self(&token).await.doing(|| "revoking the setup token".into());
    let invitation = made?;
    revoked?;
    tracing::info!(node_id, cluster_id = %invitation.cluster_id, "invited a new member");
    Ok(invitation)
}

/// What [`join`] stored.
#[derive(Debug)]
pub struct Joined {
    /// The cluster's id.
    pub cluster_id: String,
    /// This member's node id.
    pub node_id: String,
    /// The members it will join through.
    pub members: Vec<String>,
    /// The inviting node.
    pub from: String,
}

/// `cluster join`: opens a join bundle with this gateway's node key, trusting only `trust`'s
/// senders, and stores what it carries — the membership, `join-pending`, then the seal key, the
/// recovery key and the member's login, re-encrypted under this gateway's KEK. The next boot joins.
/// Nothing is written when any check fails. Killed at any step, the boot refuses what it finds with
/// a message, and running the command again (the same bundle, until it expires) completes it.
/// A member removed from the cluster (`cluster leave --node`) whose storage is gone may join again
/// with a new bundle: its old keys are replaced.
pub async fn join(setup: &Setup, bundle: &[u8], trust: &Trust) -> Result<Joined, ClusterError> {
    let cluster = config(setup)?;
    let supervise = setup
        .store
        .supervise
        .as_ref()
        .ok_or_else(|| ClusterError::Refused("a member needs secret_store.supervise".into()))?;
    let ikm = setup.ikm().await?;
    let store = setup.keystore_dir();
    let (kek, node) = identity::ensure_with_ikm(&store, &ikm)?;
    drop(ikm);
    let unsigned = || {
        ClusterError::Refused(
            "the join bundle is not signed: only a bundle made by `cluster invite` on a member is accepted".into(),
        )
    };
    let opened = edgeseal_bundle::open(bundle, &node.keys.identities(), "this gateway's node key", trust, JOIN_KIND)
        .map_err(|e| match e {
            BundleError::Unsigned => unsigned(),
            e => ClusterError::Bundle(e),
        })?;
    let from = opened.sender.as_ref().map(|s| s.node.clone()).ok_or_else(unsigned)?;
    let invite = Invite::from_payload(&opened.payload, now())?;
    drop(opened);
    if invite.node_id != cluster.node_id {
        return Err(ClusterError::Refused(format!(
            "the bundle invites node {}, but this gateway's secret_store.cluster.node_id is {}: set it to {} or ask for a bundle for {}",
            invite.node_id, cluster.node_id, invite.node_id, cluster.node_id
        )));
    }
    let marker = join_pending_marker(store.dir());
    let keystore = store.open(&kek)?;
    let raft = supervise.data_dir.join("raft");
    let material = SealMaterial::from_keystore(&keystore).map_err(|e| SetupError::Config(e.to_string()))?.is_some();
    let storage = storage::has_data(&raft).map_err(|source| SetupError::Io {
        doing: "inspecting",
        path: raft.clone(),
        source,
    })?;
    let member = Membership::path(store.dir()).exists();
    // A member whose storage was lost joins again with a new bundle; a store of its own never.
    let has_store = (material && !member) || keystore.has_shares() || storage;
    if has_store && !marker.exists() {
        return Err(ClusterError::Refused(format!(
            "this gateway has a store already (keystore {} or {}): a gateway with a store of its own cannot join a cluster. Back it up and move it away first",
            store.path().display(),
            raft.display()
        )));
    }
    let membership = Membership {
        cluster_id: invite.cluster_id.clone(),
        node_id: invite.node_id.clone(),
        members: invite.members.clone(),
    };
    let written = |e: durable_file::Error| SetupError::Io {
        doing: "writing",
        path: e.path.clone(),
        source: std::io::Error::new(e.source.kind(), e.to_string()),
    };
    membership.write(store.dir()).map_err(written)?;
    crash::point("join-after-membership");
    let note = b"edgeseal stored a join bundle; the next boot joins the cluster\n";
    durable_file::write(&marker, note, &durable_file::Options::private()).map_err(written)?;
    crash::point("join-after-marker");
    // An interrupted creation of a store of its own (it holds nothing) is no longer to be finished.
    crate::seal::boot::remove_durably(&storage::pending_marker(store.dir()))?;
    let material = SealMaterial { current: invite.seal_key, next: None, identity: invite.identity };
    let recovery = invite.recovery_key;
    store.update(&kek, |k| {
        material.store(k)?;
        if let Some(recovery) = recovery {
            k.set_item(ITEM_RECOVERY_KEY, recovery)?;
        }
        Ok(())
    })?;
    crash::point("join-after-keys");
    tracing::info!(cluster_id = %membership.cluster_id, node_id = %membership.node_id, %from, "stored a join bundle; the next boot joins");
    Ok(Joined {
        cluster_id: membership.cluster_id,
        node_id: membership.node_id,
        members: membership.members.into_iter().map(|m| m.address).collect(),
        from,
    })
}

/// Waits until the raft leader is a member other than `node_id`, through `client` (after a
/// step-down, while an election runs: its errors and a missing leader only mean "not yet").
async fn leader_other_than(
    client: &Client,
    token: &Token,
    node_id: &str,
    patience: Duration,
) -> Result<(), ClusterError> {
    let every = Duration::from_millis(100);
    retry(Backoff::within(patience, every, every), || async {
        match client.raft_configuration(token).await {
            Ok(servers) if servers.iter().any(|s| s.leader && s.node_id != node_id) => Attempt::Done(()),
            _ => Attempt::Retry(()),
        }
    })
    .await
    .map_err(|()| {
        ClusterError::Refused(format!(
            "{node_id} stepped down, but no other member became active within {}: is the cluster healthy (`cluster status`)? Nothing was removed",
            humantime::format_duration(patience)
        ))
    })
}

/// The active member `node_id` may step down to leave only if another member votes: only a voter
/// can be elected, and a member that just joined votes once autopilot has promoted it (seconds
/// after it joined, once it is healthy).
fn another_voter(servers: &[openbao_client::api::raft::RaftServer], node_id: &str) -> Result<(), String> {
    if servers.iter().any(|s| s.voter && s.node_id != node_id) {
        return Ok(());
    }
    Err(format!(
        "{node_id} is the active member and no other member votes yet, so none could take over: nothing was removed. \
         A member that just joined votes once autopilot has promoted it; try again when `cluster status` shows it as a voter"
    ))
}

/// A request for the active member, sent through this one, until it got there: a standby answers
/// 307 while it cannot forward yet (just after a join or an election) and 500 while it knows no
/// active member, and in both cases nothing was done, so asking again is safe. Any other answer,
/// or the last one once `patience` has passed, is returned.
async fn forwarded<F, Fut>(patience: Duration, mut request: F) -> Result<(), openbao_client::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), openbao_client::Error>>,
{
    let every = Duration::from_millis(200);
    retry(Backoff::within(patience, every, every), || {
        let answer = request();
        async move {
            match answer.await {
                Ok(()) => Attempt::Done(()),
                Err(e) if matches!(e.status(), Some(307 | 500)) => {
                    tracing::debug!(error = %e, "not forwarded to the active member yet; asking again");
                    Attempt::Retry(e)
                }
                Err(e) => Attempt::Fail(e),
            }
        }
    })
    .await
}

/// Waits until `client`'s member knows an active member again (after a removal).
async fn active_member(client: &Client, node_id: &str, patience: Duration) -> Result<(), ClusterError> {
    let every = Duration::from_millis(100);
    retry(Backoff::within(patience, every, every), || async {
        match client.leader().await {
            Ok(leader) if !leader.leader_address.is_empty() => Attempt::Done(()),
            _ => Attempt::Retry(()),
        }
    })
    .await
    .map_err(|()| {
        ClusterError::Refused(format!(
            "{node_id} was removed, but no member is active after {}: the others may lack a quorum (`cluster status`)",
            humantime::format_duration(patience)
        ))
    })
}

/// `cluster leave`: removes member `node_id` (this one when `None`) from the raft configuration,
/// through this member, and deletes its login (only the login, for an id that is not a member: an
/// invite never used). The active member is never removed as such: it steps down first (asked
/// through this member, which forwards), and a leader that stays commits its removal — a leader
/// that removes itself leaves the others to an election without it, which a cluster of two was
/// seen not to finish. A removal of another member returns once an active member is known again.
/// Returns the node id removed.
pub async fn leave(setup: &Setup, node_id: Option<&str>) -> Result<String, ClusterError> {
    let cluster = config(setup)?;
    let node_id = node_id.unwrap_or(&cluster.node_id).to_string();
    let (client, token, _, _) = member_login(setup).await?;
    let done = async {
        let servers = client.raft_configuration(&token).await.doing(|| "reading the raft members".into())?;
        if servers.iter().any(|s| s.node_id == node_id) {
            let patience = setup.store.wait_timeout;
            if servers.iter().any(|s| s.node_id == node_id && s.leader) {
                another_voter(&servers, &node_id).map_err(ClusterError::Refused)?;
                forwarded(patience, || client.step_down(&token))
                    .await
                    .doing(|| format!("asking {node_id} to step down before it leaves"))?;
                leader_other_than(&client, &token, &node_id, patience).await?;
            }
            forwarded(patience, || client.remove_raft_peer(&token, &node_id))
                .await
                .doing(|| format!("removing {node_id} from the cluster"))?;
            if node_id != cluster.node_id {
                active_member(&client, &node_id, patience).await?;
            }
        } else {
            // Not a member (an invite never used, or removed already): only its login goes.
            tracing::info!(node_id, "not a raft member; deleting its login only");
        }
        if node_id != super::DEFAULT_NODE_ID {
            client
                .delete_cert_entry(&token, CERT_MOUNT, &login_name(&node_id))
                .await
                .doing(|| format!("deleting the login of {node_id}"))?;
        }
        Ok::<(), ClusterError>(())
    }
    .await;
    // Leaving itself, this member's token may be gone with it: a failed revoke is only logged.
    if let Err(e) = client.revoke_self(&token).await {
        tracing::warn!(error = %e, "could not revoke the setup token");
    }
    done?;
    Ok(node_id)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn answer(status: u16) -> Result<(), openbao_client::Error> {
        Err(openbao_client::Error::Api {
            method: "PUT".into(),
            path: "sys/step-down".into(),
            status,
            message: String::new(),
        })
    }

    #[test]
    fn the_active_member_leaves_only_when_another_member_votes() {
        let server = |node_id: &str, leader: bool, voter: bool| openbao_client::api::raft::RaftServer {
            node_id: node_id.into(),
            address: format!("{node_id}:8201"),
            leader,
            voter,
        };
        // (members, may gw1 step down?)
        let cases = [
            (vec![server("gw1", true, true), server("gw2", false, true)], true),
            (vec![server("gw1", true, true), server("gw2", false, false)], false),
            (vec![server("gw1", true, true)], false),
            (vec![server("gw1", true, true), server("gw2", false, false), server("gw3", false, true)], true),
        ];
        for (servers, may) in cases {
            let answer = another_voter(&servers, "gw1");
            assert_eq!(answer.is_ok(), may, "{servers:?}");
            if let Err(message) = answer {
                assert!(message.contains("nothing was removed") && message.contains("cluster status"), "{message}");
            }
        }
    }

    /// `forwarded` over a scripted sequence of answers: what it returned and how many were asked.
    fn forwarded_over(answers: &[u16], patience: Duration) -> (Result<(), openbao_client::Error>, usize) {
        let asked = Cell::new(0);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let done = runtime.block_on(forwarded(patience, || {
            let n = asked.get();
            asked.set(n + 1);
            async move {
                match answers.get(n) {
                    Some(&200) | None => Ok(()),
                    Some(&status) => answer(status),
                }
            }
        }));
        (done, asked.get())
    }

    #[test]
    fn a_request_a_standby_could_not_forward_is_asked_again_and_any_other_answer_is_returned() {
        let minute = Duration::from_secs(60);
        // (answers in order, asked, final status: None for success)
        let cases: [(&[u16], usize, Option<u16>); 5] = [
            (&[200], 1, None),
            (&[307, 500, 307, 200], 4, None),
            (&[403], 1, Some(403)),
            (&[307, 400], 2, Some(400)),
            (&[503], 1, Some(503)),
        ];
        for (answers, asked, status) in cases {
            let (done, n) = forwarded_over(answers, minute);
            assert_eq!((n, done.err().and_then(|e| e.status())), (asked, status), "{answers:?}");
        }
        // Never forwarded: the last answer once patience has passed.
        let (done, n) = forwarded_over(&[307; 100], Duration::from_secs(1));
        assert_eq!(done.err().and_then(|e| e.status()), Some(307));
        assert!(n < 100, "asked {n} times within 1 s");
    }
}
