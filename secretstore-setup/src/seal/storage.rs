//! What decides a supervised, static-sealed boot: whether edgeseal is still *creating* the store.
//!
//! `store-pending` (beside the keystore) is written durably before the seal material is made and
//! removed durably right after edgeseal's first successful login — before edgeseal writes anything
//! into the store. While it exists, the store holds nothing (nobody but edgeseal can log in: there is
//! no root token and no recovery key yet), so a boot that finds it wipes OpenBao's storage and lets
//! OpenBao initialize itself again. A crash at any instant of a first boot therefore loses nothing.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The marker: edgeseal is creating the store in this keystore's OpenBao.
pub fn pending_marker(keystore_dir: &Path) -> PathBuf {
    keystore_dir.join("store-pending")
}

/// Whether OpenBao's raft directory holds anything (a store, or the start of one).
pub fn has_data(raft_dir: &Path) -> io::Result<bool> {
    match fs::read_dir(raft_dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Fails when a process (an OpenBao nobody accounted for) holds the raft database: bbolt takes an
/// exclusive `flock` on its files while it has them open. Checked before the storage is wiped or
/// copied, so that edgeseal never deletes or snapshots a store under a running OpenBao.
pub fn ensure_unheld(raft_dir: &Path) -> io::Result<()> {
    for db in [raft_dir.join("vault.db"), raft_dir.join("raft").join("raft.db")] {
        let file = match fs::File::open(&db) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "{} is held by a running process (an OpenBao edgeseal did not start?); stop it first",
                        db.display()
                    ),
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// [`ensure_unheld`], waiting up to `within` for a process that is dying (an orphan just killed:
/// its files close only when its last thread has exited) to let go.
pub async fn wait_unheld(raft_dir: &Path, within: std::time::Duration) -> io::Result<()> {
    let started = std::time::Instant::now();
    loop {
        match ensure_unheld(raft_dir) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && started.elapsed() < within => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            outcome => return outcome,
        }
    }
}

/// Empties OpenBao's raft directory (no process may hold it: checked) and syncs the change.
pub fn wipe(raft_dir: &Path) -> io::Result<()> {
    ensure_unheld(raft_dir)?;
    match fs::remove_dir_all(raft_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::DirBuilder::new().recursive(true).mode(0o700).create(raft_dir)?;
    durable_file::sync_parent(raft_dir).map_err(|e| io::Error::new(e.source.kind(), e.to_string()))
}

/// What the keystore and the disk say about the store, before OpenBao starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The keystore holds seal material.
    pub material: bool,
    /// The keystore holds Shamir unseal shares.
    pub shares: bool,
    /// `store-pending` exists.
    pub pending: bool,
    /// The raft directory holds something.
    pub storage: bool,
    /// `migrate-pending` exists: `migrate-seal` was interrupted.
    pub migrating: bool,
    /// `restore-pending` exists: `restore` was interrupted.
    pub restoring: bool,
    /// `join-pending` exists: `cluster join` stored a join bundle's keys (SPEC §15).
    pub joining: bool,
    /// `cluster.json` exists: the keystore belongs to a cluster it joined.
    pub member: bool,
    /// `secret_store.cluster` says this gateway joins a cluster (it lists `join` addresses, or a node
    /// id other than the first member's): it must never create a store of its own.
    pub joiner: bool,
}

/// What the boot does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Make the seal material (marking the store pending first), then as [`Plan::Create`].
    NewMaterial,
    /// The store is being created: wipe the storage, start OpenBao, let it initialize itself.
    Create,
    /// Start OpenBao on its store; it opens itself.
    Open,
    /// Join the cluster of the membership: wipe the storage (it holds no store of this keystore's),
    /// start OpenBao with `retry_join` and no `initialize` block; it opens itself once joined.
    Join,
}

/// Why a boot refuses to start OpenBao, changing nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A Shamir-sealed store made by an earlier edgeseal (or imported from EdgeX).
    ShamirStore,
    /// The storage holds a store, but the keystore has no seal key for it.
    StorageWithoutKey,
    /// The keystore's store was created, but the storage is empty.
    StorageMissing,
    /// A `migrate-seal` was interrupted: only it may continue.
    MigrationPending,
    /// A `restore` was interrupted: only it may continue.
    RestorePending,
    /// A `cluster join` was interrupted before the keys reached the keystore.
    JoinIncomplete,
    /// The keystore joined a cluster but holds no seal key: creating a store would split the cluster.
    MemberWithoutKey,
    /// A member's storage is gone: rejoining as a voter with an empty log could lose committed
    /// writes, so it is removed from the cluster first (`cluster leave --node`) and joins anew.
    MemberStorageLost,
    /// The configuration says this gateway joins a cluster, but it has not joined one yet.
    NotJoined,
}

/// The decision, as a pure function of what was seen (table-tested).
pub fn plan(seen: Seen) -> Result<Plan, Refusal> {
    match seen {
        Seen { migrating: true, .. } => Err(Refusal::MigrationPending),
        Seen { restoring: true, .. } => Err(Refusal::RestorePending),
        // Clusters first: a joined keystore never creates a store, whatever else lies around.
        Seen { joining: true, member: true, material: true, .. } => Ok(Plan::Join),
        Seen { joining: true, .. } => Err(Refusal::JoinIncomplete),
        Seen { member: true, material: false, .. } => Err(Refusal::MemberWithoutKey),
        Seen { member: true, storage: false, .. } => Err(Refusal::MemberStorageLost),
        Seen { member: true, .. } => Ok(Plan::Open),
        Seen { joiner: true, material: true, storage: true, pending: false, .. } => Ok(Plan::Open),
        Seen { joiner: true, .. } => Err(Refusal::NotJoined),
        Seen { material: true, pending: true, .. } => Ok(Plan::Create),
        Seen { material: true, storage: true, .. } => Ok(Plan::Open),
        Seen { material: true, .. } => Err(Refusal::StorageMissing),
        Seen { shares: true, .. } => Err(Refusal::ShamirStore),
        // A pending store has no data: whatever the storage holds is an interrupted self-init.
        Seen { pending: true, .. } => Ok(Plan::NewMaterial),
        Seen { storage: true, .. } => Err(Refusal::StorageWithoutKey),
        Seen { .. } => Ok(Plan::NewMaterial),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_boot_plan_follows_the_keystore_the_marker_and_the_storage() {
        use Plan::*;
        use Refusal::*;
        // (material, shares, pending, storage) -> plan, with no migration under way
        let cases = [
            ((false, false, false, false), Ok(NewMaterial)),
            ((false, false, true, false), Ok(NewMaterial)),
            ((false, false, true, true), Ok(NewMaterial)),
            ((false, false, false, true), Err(StorageWithoutKey)),
            ((false, true, false, true), Err(ShamirStore)),
            ((false, true, false, false), Err(ShamirStore)),
            ((true, false, true, false), Ok(Create)),
            ((true, false, true, true), Ok(Create)),
            ((true, false, false, true), Ok(Open)),
            ((true, false, false, false), Err(StorageMissing)),
            // migrated from Shamir: the shares stay in the keystore beside the seal key
            ((true, true, false, true), Ok(Open)),
            ((true, true, false, false), Err(StorageMissing)),
        ];
        for ((material, shares, pending, storage), want) in cases {
            let seen = Seen {
                material,
                shares,
                pending,
                storage,
                migrating: false,
                restoring: false,
                joining: false,
                member: false,
                joiner: false,
            };
            assert_eq!(plan(seen), want, "{seen:?}");
            assert_eq!(plan(Seen { migrating: true, ..seen }), Err(MigrationPending), "{seen:?}");
            assert_eq!(plan(Seen { restoring: true, ..seen }), Err(RestorePending), "{seen:?}");
        }
    }

    #[test]
    fn a_cluster_member_joins_once_and_never_creates_a_store_whatever_else_lies_around() {
        use Plan::*;
        use Refusal::*;
        // (material, joining, member, storage) -> plan, for a member or a gateway configured to join
        let cases = [
            ((true, true, true, false), Ok(Join)),
            ((true, true, true, true), Ok(Join)),
            ((false, true, true, false), Err(JoinIncomplete)),
            ((false, true, false, true), Err(JoinIncomplete)),
            ((true, true, false, false), Err(JoinIncomplete)),
            ((true, false, true, true), Ok(Open)),
            ((true, false, true, false), Err(MemberStorageLost)),
            ((false, false, true, false), Err(MemberWithoutKey)),
            ((false, false, true, true), Err(MemberWithoutKey)),
        ];
        for ((material, joining, member, storage), want) in cases {
            // Neither a stale `store-pending`, nor shares, nor the config changes a member's plan.
            for (pending, shares, joiner) in [(false, false, false), (true, false, true), (true, true, false)] {
                let seen = Seen {
                    material,
                    shares,
                    pending,
                    storage,
                    migrating: false,
                    restoring: false,
                    joining,
                    member,
                    joiner,
                };
                assert_eq!(plan(seen), want, "{seen:?}");
                assert_eq!(plan(Seen { restoring: true, ..seen }), Err(RestorePending), "{seen:?}");
            }
        }
        // A gateway configured to join that has not: it opens a store it has (it was a member and
        // its membership file was lost: nothing is made or wiped), and refuses anything else.
        for material in [false, true] {
            for storage in [false, true] {
                for pending in [false, true] {
                    let seen = Seen {
                        material,
                        shares: false,
                        pending,
                        storage,
                        migrating: false,
                        restoring: false,
                        joining: false,
                        member: false,
                        joiner: true,
                    };
                    let want = if material && storage && !pending { Ok(Open) } else { Err(NotJoined) };
                    assert_eq!(plan(seen), want, "{seen:?}");
                }
            }
        }
    }

    #[test]
    fn wipe_empties_the_raft_directory() {
        let dir = tempfile::tempdir().unwrap();
        let raft = dir.path().join("raft");
        assert!(!has_data(&raft).unwrap());
        fs::create_dir_all(raft.join("raft")).unwrap();
        fs::write(raft.join("vault.db"), b"x").unwrap();
        assert!(has_data(&raft).unwrap());
        wipe(&raft).unwrap();
        assert!(raft.is_dir() && !has_data(&raft).unwrap());
    }
}
