//! [`Action`]: what the plan decides for one certificate, what the run does, and what the report says.
//! A leaf of the crate's module graph: `plan`, `write` and `report` all use it.

/// What happened (or, in a check, would happen) to one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Issued for the first time.
    Created,
    /// Issued again because it was about to expire.
    Renewed,
    /// Issued again for another reason: SANs changed, a new CA, a broken chain, a changed owner…
    Reissued,
    /// Left exactly as it was.
    Unchanged,
    /// Its directory was deleted: the name is no longer configured.
    Removed,
    /// A CA certificate written back, byte for byte, from the keystore (`ca_keys: keystore`) because
    /// `pki.dir` had lost it — typically a tmpfs after a reboot.
    Restored,
}

impl Action {
    /// Whether this action writes something.
    pub fn changes(self) -> bool {
        self != Action::Unchanged
    }

    /// The past-tense word for a report, or the conditional one for a check.
    pub(crate) fn word(self, applied: bool) -> &'static str {
        match (self, applied) {
            (Action::Created, true) => "created",
            (Action::Renewed, true) => "renewed",
            (Action::Reissued, true) => "reissued",
            (Action::Removed, true) => "removed",
            (Action::Restored, true) => "restored",
            (Action::Restored, false) => "would restore",
            (Action::Created, false) => "would create",
            (Action::Renewed, false) => "would renew",
            (Action::Reissued, false) => "would reissue",
            (Action::Removed, false) => "would remove",
            (Action::Unchanged, _) => "unchanged",
        }
    }
}
