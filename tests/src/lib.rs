//! The test harness: starts the real components edgeseal works with — OpenBao, swtpm, the Docker
//! daemon — on loopback and Unix sockets only, in temp directories, and stops them by PID on drop.
//!
//! Nothing here installs anything: `make test` does (scripts/ensure-deps.sh). A missing component is a
//! loud failure that says how to install it, never a silent skip.
//!
//! - [`bench`]: small helpers the benchmark programs share.
//! - [`boot`]: a device booted by `security-bootstrap run` with a supervised OpenBao.
//! - [`compose`]: the docker-compose deployment in `docker/`, built and run offline.
//! - [`device`]: a simulated device (KDF plug-in, keystore, file tokens) and its edgeseal config.
//! - [`docker`]: a Docker daemon (the system one, or a private `dockerd`), offline images, containers.
//! - [`impostor`]: an HTTPS server posing as OpenBao with another leaf, recording what it receives.
//! - [`openbao`]: a real OpenBao (raft, TLS, file audit) on a free loopback port.
//! - [`central`]: a fleet's central OpenBao (initialized, its root token) and the `fleet` admin CLI.
//! - [`pki`]: a device PKI for the OpenBao listener.
//! - [`poll`]: waiting for a condition ([`wait_until`], [`poll_until`]) instead of sleeping.
//! - [`ports`]: free loopback ports.
//! - [`process`]: a child process killed and reaped on drop.
//! - [`token_server`]: the token server running in-process against a real OpenBao.
//! - [`swtpm`]: a TPM 2.0 simulator with its own state directory.

#![forbid(unsafe_code)]
// A test harness fails the test that uses it by panicking, with a message that says what to do.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

pub mod bench;
pub mod boot;
pub mod central;
pub mod compose;
pub mod device;
pub mod docker;
pub mod impostor;
pub mod openbao;
pub mod pki;
pub mod poll;
pub mod ports;
pub mod process;
pub mod release;
pub mod swtpm;
pub mod token_server;

pub use poll::{poll_until, poll_until_async, wait_until};

/// A binary of this workspace (`target/<profile>/<name>`), built by `cargo test --workspace`.
/// Panics, saying how to build it, when it is missing.
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    // target/<profile>/deps/<test>-HASH → target/<profile>/<name>
    let dir = exe.parent().and_then(std::path::Path::parent).unwrap_or_else(|| panic!("unexpected test binary path"));
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: run the workspace tests (`make test` or `cargo test --workspace`), which build every binary",
        path.display()
    );
    path
}

/// Installs an executable at `dst` (mode 0755) by a child process (`install`), so that this
/// multi-threaded test process never holds a write descriptor to a file it is about to execute
/// (another thread's fork would inherit it until its exec, and exec would then fail with ETXTBSY).
pub fn install_executable(src: &std::path::Path, dst: &std::path::Path) {
    let status = std::process::Command::new("install")
        .args(["-m", "0755"])
        .arg(src)
        .arg(dst)
        .status()
        .unwrap_or_else(|e| panic!("running install: {e}"));
    assert!(status.success(), "install {} {} failed", src.display(), dst.display());
}

/// Writes a shell script to `dst` (mode 0755) the same way: text to a side file, then `install`.
pub fn write_script(dst: &std::path::Path, body: &str) {
    let side = dst.with_extension("src");
    std::fs::write(&side, format!("#!/bin/sh\n{body}\n")).unwrap_or_else(|e| panic!("writing {}: {e}", side.display()));
    install_executable(&side, dst);
    let _ = std::fs::remove_file(&side);
}

/// Every regular file below `dir` (recursively; symbolic links are not followed), for the scans
/// that no secret lands in clear on disk.
pub fn regular_files_below(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
        let kind = entry.file_type().unwrap_or_else(|e| panic!("{}: {e}", entry.path().display()));
        if kind.is_dir() {
            out.extend(regular_files_below(&entry.path()));
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
    out
}

/// The newest modification time of any file below `dir` (to tell a stale binary from its sources).
pub fn newest_mtime(dir: &std::path::Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() { newest_mtime(&path) } else { entry.metadata().ok()?.modified().ok() };
        newest = newest.max(time);
    }
    newest
}

/// Runs `command` with `stdin` piped in (a child that exits before reading it is fine) and its
/// output captured.
pub fn output_with_stdin(command: &mut std::process::Command, stdin: &[u8]) -> std::process::Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    // A refused caller may exit before it reads its stdin.
    let _ = child.stdin.take().map(|mut pipe| pipe.write_all(stdin));
    child.wait_with_output().unwrap_or_else(|e| panic!("{command:?}: {e}"))
}

/// A world-readable (0755) temp directory holding a copy of the workspace's `security-bootstrap`, so
/// that callers running as other uids, or in other namespaces, can execute it.
pub fn public_client_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    install_executable(&workspace_binary("security-bootstrap"), &dir.path().join("security-bootstrap"));
    dir
}

/// The reference `age` CLI's `tool` (`age` or `age-keygen`), or a loud failure naming the install
/// command.
pub fn age_tool(tool: &str) -> std::path::PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let path = std::path::Path::new(dir).join(tool);
        if path.is_file() {
            return path;
        }
    }
    panic!("{tool} (the reference age CLI) is not installed: run `scripts/ensure-deps.sh age` (apt-get install -y age)")
}

/// A new age identity file made with `age-keygen` in `dir`: its path and its recipient.
pub fn age_keygen(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
    let path = dir.join(name);
    let out = std::process::Command::new(age_tool("age-keygen")).arg("-o").arg(&path).output().unwrap();
    assert!(out.status.success(), "age-keygen: {}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&path).unwrap();
    let recipient = text.lines().find_map(|l| l.strip_prefix("# public key: ")).unwrap().to_string();
    (path, recipient)
}

/// A small tmpfs mounted over a directory (a full disk on demand), unmounted on drop. Needs root.
#[derive(Debug)]
pub struct SmallTmpfs(std::path::PathBuf);

impl SmallTmpfs {
    /// Mounts a tmpfs of `size` (`64k`, `2m`, …; mode 0700) over `dir`.
    pub fn mount(dir: &std::path::Path, size: &str) -> Self {
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount: {}", String::from_utf8_lossy(&out.stderr));
        Self(dir.to_path_buf())
    }

    /// Fills it: a file `filler` takes every free byte. Returns its path (remove it to free the space).
    pub fn fill(&self) -> std::path::PathBuf {
        use std::io::Write as _;
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        while file.write_all(&chunk[..512]).is_ok() {}
        while file.write_all(&[0]).is_ok() {}
        path
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
