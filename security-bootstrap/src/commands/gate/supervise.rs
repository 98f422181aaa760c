//! `gate` as the app's parent: starts the app with its values, forwards the signals gate gets,
//! checks the secrets' versions every `--check-interval` and, on a new version, rewrites the files
//! (atomically, then the app is told as `--on-change` says); removes the files when the app has exited
//! and returns its status.
//!
//! A failed check (the token server restarting, OpenBao sealed) or a file that cannot be written
//! (its tmpfs full) changes nothing: the app keeps the values it has, is not signalled, and the next
//! check tries again. A secret removed since the app started keeps its
//! last value, with a warning: an operator's mistake must not take a running app's password away.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use zeroize::Zeroizing;

use super::spec::OnChange;
use super::{fetch_secret, fetch_versions, files, Fetched, Gate, Sink, Values};

/// The app's command line and the token it gets in its environment, if any.
pub(super) struct App {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub token_env: Option<(String, Zeroizing<String>)>,
}

impl App {
    fn spawn(&self, values: &Values) -> anyhow::Result<Child> {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        for (var, value) in values.env.iter().chain(self.token_env.iter()) {
            command.env(var, value.as_str());
        }
        command.spawn().with_context(|| format!("cannot start {}", self.program.to_string_lossy()))
    }
}

/// What a check of the versions found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Changes {
    /// Secrets with another version than the app has (newer, or older after a restore).
    pub changed: Vec<String>,
    /// Secrets the app has that are no longer listed.
    pub missing: Vec<String>,
}

/// Compares the versions the app has with those listed (pure).
pub(super) fn changes(have: &BTreeMap<String, u64>, listed: &BTreeMap<String, u64>) -> Changes {
    let mut found = Changes::default();
    for (name, version) in have {
        match listed.get(name) {
            Some(now) if now != version => found.changed.push(name.clone()),
            Some(_) => {}
            None => found.missing.push(name.clone()),
        }
    }
    found
}

/// What woke the supervisor.
enum Event {
    Exited(std::io::Result<ExitStatus>),
    Signal(Signal),
    Check,
}

/// Runs the app until it exits; returns gate's exit status (the app's, or 128 + the signal that
/// killed it).
pub(super) async fn run(
    gate: &Gate,
    app: &App,
    mut secrets: BTreeMap<String, Fetched>,
    mut values: Values,
) -> anyhow::Result<u8> {
    let mut written: Vec<PathBuf> = Vec::new();
    if let Some(Sink::File(path)) = &gate.token {
        written.push(path.clone());
    }
    for (path, text) in &values.files {
        if let Err(e) = files::write(path, text, gate.file_owner) {
            // None of the app's files stays behind when it cannot be started with all of them.
            files::remove_all(written.iter().map(PathBuf::as_path));
            return Err(e);
        }
        written.push(path.clone());
    }
    let status = supervise(gate, app, &mut secrets, &mut values).await;
    files::remove_all(written.iter().map(|p| p.as_path()));
    status
}

async fn supervise(
    gate: &Gate,
    app: &App,
    secrets: &mut BTreeMap<String, Fetched>,
    values: &mut Values,
) -> anyhow::Result<u8> {
    let mut term = listen(SignalKind::terminate())?;
    let mut int = listen(SignalKind::interrupt())?;
    let mut hup = listen(SignalKind::hangup())?;
    let mut quit = listen(SignalKind::quit())?;
    let mut usr1 = listen(SignalKind::user_defined1())?;
    let mut usr2 = listen(SignalKind::user_defined2())?;
    let mut child = app.spawn(values)?;
    let mut stopping = false;
    let mut ticker = interval_at(Instant::now() + gate.check_interval, gate.check_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            status = child.wait() => Event::Exited(status),
            Some(()) = term.recv() => Event::Signal(Signal::SIGTERM),
            Some(()) = int.recv() => Event::Signal(Signal::SIGINT),
            Some(()) = hup.recv() => Event::Signal(Signal::SIGHUP),
            Some(()) = quit.recv() => Event::Signal(Signal::SIGQUIT),
            Some(()) = usr1.recv() => Event::Signal(Signal::SIGUSR1),
            Some(()) = usr2.recv() => Event::Signal(Signal::SIGUSR2),
            _ = ticker.tick(), if !stopping => Event::Check,
        };
        match event {
            Event::Exited(status) => {
                let status = status.context("waiting for the app")?;
                return Ok(exit_status(status));
            }
            Event::Signal(sig) => {
                stopping |= matches!(sig, Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT);
                send(&child, sig);
            }
            Event::Check => {
                if let Err(e) = check(gate, secrets).await {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "checking the secrets' versions failed: the app keeps its values"
                    );
                    continue;
                }
                let fresh = match Values::render(&gate.deliveries, secrets) {
                    Ok(fresh) => fresh,
                    Err(e) => {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "a secret's new version cannot be delivered: the app keeps its values"
                        );
                        continue;
                    }
                };
                // A file that cannot be written (its tmpfs full) leaves the app on its values, and
                // `values` as the app has them: the next check renders and writes again.
                let file_changed = match rewrite(gate, values, &fresh) {
                    Ok(changed) => changed,
                    Err(e) => {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "a secret file cannot be rewritten: the app keeps its values; trying again at the next check"
                        );
                        continue;
                    }
                };
                let env_changed = fresh.env.iter().zip(&values.env).any(|(a, b)| a.1 != b.1);
                *values = fresh;
                if !file_changed && !env_changed {
                    continue;
                }
                match gate.on_change {
                    OnChange::None => {
                        if env_changed {
                            tracing::warn!("a secret in the app's environment changed: it gets the new value when it restarts (--on-change restart does that)");
                        }
                    }
                    OnChange::Signal(sig) => {
                        tracing::info!(signal = %sig, "a secret changed: signalling the app");
                        send(&child, sig);
                    }
                    OnChange::Restart => {
                        tracing::info!("a secret changed: restarting the app");
                        stop(&mut child, gate.grace).await?;
                        child = app.spawn(values)?;
                    }
                }
            }
        }
    }
}

/// Lists the versions and reads again every secret whose version changed. A failed list changes
/// nothing; a secret that cannot be read keeps its value (with a warning) and the others are updated.
async fn check(gate: &Gate, secrets: &mut BTreeMap<String, Fetched>) -> anyhow::Result<()> {
    let listed = fetch_versions(&gate.socket, &gate.service).await?;
    let have: BTreeMap<String, u64> = secrets.iter().map(|(name, f)| (name.clone(), f.version)).collect();
    let found = changes(&have, &listed);
    for name in &found.missing {
        tracing::warn!(secret = %name, "the secret is no longer there: the app keeps its last value");
    }
    let mut read = Vec::new();
    for name in &found.changed {
        match fetch_secret(&gate.socket, &gate.service, name, std::time::Instant::now()).await {
            Ok(fetched) => {
                tracing::info!(secret = %name, from = have[name], to = fetched.version, "the secret has a new version");
                read.push((name.clone(), fetched));
            }
            Err(e) => tracing::warn!(
                secret = %name,
                error = format!("{e:#}"),
                "the secret's new version cannot be read: the app keeps its value"
            ),
        }
    }
    secrets.extend(read);
    Ok(())
}

/// Writes the files whose text changed; whether any did.
fn rewrite(gate: &Gate, old: &Values, fresh: &Values) -> anyhow::Result<bool> {
    let mut any = false;
    for ((path, text), (_, before)) in fresh.files.iter().zip(&old.files) {
        if text != before {
            files::write(path, text, gate.file_owner)?;
            tracing::info!(path = %path.display(), "rewrote the secret file");
            any = true;
        }
    }
    Ok(any)
}

fn listen(kind: SignalKind) -> anyhow::Result<tokio::signal::unix::Signal> {
    signal(kind).context("listening for the signals gate forwards to the app")
}

fn send(child: &Child, sig: Signal) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        if let Err(e) = kill(Pid::from_raw(pid), sig) {
            tracing::warn!(signal = %sig, error = %e, "signalling the app failed");
        }
    }
}

/// SIGTERM, then SIGKILL after `grace`; returns once the app is gone.
async fn stop(child: &mut Child, grace: Duration) -> anyhow::Result<()> {
    send(child, Signal::SIGTERM);
    if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
        status.context("waiting for the app")?;
        return Ok(());
    }
    tracing::warn!(grace = ?grace, "the app did not stop on SIGTERM: killing it");
    child.kill().await.context("killing the app")
}

/// The status gate exits with: the app's exit code, or 128 + the signal that killed it.
fn exit_status(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(255),
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(n, v)| (n.to_string(), *v)).collect()
    }

    #[test]
    fn a_change_is_any_other_version_and_an_unlisted_secret_is_missing_not_changed() {
        let have = versions(&[("a", 1), ("b", 3), ("c", 2)]);
        type Case<'a> = (&'a [(&'a str, u64)], &'a [&'a str], &'a [&'a str]);
        let cases: &[Case] = &[
            (&[("a", 1), ("b", 3), ("c", 2)], &[], &[]),
            (&[("a", 2), ("b", 3), ("c", 2), ("other", 9)], &["a"], &[]),
            (&[("a", 1), ("b", 2), ("c", 5)], &["b", "c"], &[]),
            (&[("a", 1)], &[], &["b", "c"]),
            (&[], &[], &["a", "b", "c"]),
        ];
        for (listed, changed, missing) in cases {
            let found = changes(&have, &versions(listed));
            assert_eq!(found.changed, *changed, "{listed:?}");
            assert_eq!(found.missing, *missing, "{listed:?}");
        }
    }

    #[test]
    fn gate_exits_with_the_app_s_code_or_128_plus_its_signal() {
        assert_eq!(exit_status(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_status(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_status(ExitStatus::from_raw(15)), 143);
        assert_eq!(exit_status(ExitStatus::from_raw(9)), 137);
    }
}
