//! A real Docker engine for tests, images built offline, and containers removed on drop.
//!
//! [`Docker::ensure`] uses the daemon that answers on `/var/run/docker.sock` if there is one (and never
//! stops it). Otherwise it starts a private `dockerd` as a child process with everything in a temp dir
//! (data root, exec root, pid file, socket, log, trust key): no bridge, no iptables, no TCP listener.
//! That daemon is shared by every [`Docker`] value alive in the process (reference counted) and is
//! stopped when the last one is dropped: containers are removed first, then SIGTERM and a wait, then
//! whatever it started (its containerd, shims, container processes) is killed if it is still there.
//! Nothing is kept in a static, so nothing outlives the test binary — unless it is SIGKILLed.
//!
//! No registry is reachable: images are `FROM scratch` with host binaries and the libraries `ldd`
//! lists, at the same absolute paths ([`Docker::image_from_binaries`]); `docker create` runs with
//! `--pull never` and `--network none`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::poll_until;
use crate::process::{wait_within, ChildGuard};

const INSTALL_HINT: &str = "run `make test` (scripts/ensure-deps.sh docker installs docker.io and docker-compose) \
     or apt-get install docker.io docker-compose";

/// The system daemon's socket, used when a daemon answers there.
pub const SYSTEM_SOCKET: &str = "/var/run/docker.sock";

/// The users in every image's `/etc/passwd` (and `/etc/group`, one group per user): name, uid = gid.
pub const IMAGE_USERS: &[(&str, u32)] =
    &[("root", 0), ("edgeseal-app", 1000), ("edgeseal-other", 1001), ("nobody", 65534)];

/// How long a private `dockerd` may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a private `dockerd` may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Any single `docker` CLI call (a build of large binaries included).
const CLI_TIMEOUT: Duration = Duration::from_secs(180);

/// The daemon of the process: shared while any [`Docker`] value holds it, stopped with the last one.
static SHARED: Mutex<Weak<Daemon>> = Mutex::new(Weak::new());
/// Distinguishes the containerd namespaces of private daemons started by one process.
static DAEMONS_STARTED: AtomicU32 = AtomicU32::new(0);

/// A Docker daemon: the system one, or a private one this process started. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Docker {
    daemon: Arc<Daemon>,
}

#[derive(Debug)]
struct Daemon {
    /// The `docker` CLI.
    docker: PathBuf,
    socket: PathBuf,
    own: Option<OwnDaemon>,
    /// tag → fingerprint of the files of the images built on this daemon.
    images: Mutex<HashMap<String, u64>>,
}

#[derive(Debug)]
struct OwnDaemon {
    child: ChildGuard,
    dir: tempfile::TempDir,
    started_in: Duration,
}

impl Docker {
    /// The daemon on `/var/run/docker.sock` if one answers, else the private daemon this process
    /// already runs for other tests, else a new private daemon (needs root). Panics, saying how to
    /// install Docker, when `dockerd` is missing.
    pub fn ensure() -> Self {
        let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(daemon) = shared.upgrade() {
            return Self { daemon };
        }
        let daemon = Arc::new(Daemon::system().unwrap_or_else(Daemon::start));
        *shared = Arc::downgrade(&daemon);
        Self { daemon }
    }

    /// A new private daemon for this value (and its clones) alone, even if a system daemon runs:
    /// for tests that stop or restart the daemon, or must see no other test's containers.
    pub fn start_own() -> Self {
        Self { daemon: Arc::new(Daemon::start()) }
    }

    /// The daemon's Unix socket: what edgeseal's token server talks to.
    pub fn socket(&self) -> PathBuf {
        self.daemon.socket.clone()
    }

    /// A `docker` command already pointed at this daemon (`-H unix://…`); add the subcommand.
    pub fn cli(&self) -> Command {
        cli_for(&self.daemon.docker, &self.daemon.socket)
    }

    /// Whether this process started the daemon (and will stop it).
    pub fn is_own(&self) -> bool {
        self.daemon.own.is_some()
    }

    /// The private daemon's process id; `None` for the system daemon.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.own.as_ref().map(|own| own.child.pid())
    }

    /// Spawn → first answer of the private daemon; `None` for the system daemon.
    pub fn startup_time(&self) -> Option<Duration> {
        self.daemon.own.as_ref().map(|own| own.started_in)
    }

    /// The private daemon's log (dockerd and its containerd); empty for the system daemon.
    pub fn daemon_log(&self) -> String {
        self.daemon
            .own
            .as_ref()
            .map(|own| fs::read_to_string(own.dir.path().join("dockerd.log")).unwrap_or_default())
            .unwrap_or_default()
    }

    /// `docker info` as JSON (`Driver`, `CgroupDriver`, `CgroupVersion`, `ServerVersion`, …).
    pub fn info(&self) -> serde_json::Value {
        let out = self.run_cli(self.cli().args(["info", "--format", "{{json .}}"]), "docker info");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("docker info: not JSON ({e}): {out}"))
    }

    /// The full ids of all containers on the daemon, running or not.
    pub fn containers(&self) -> Vec<String> {
        self.run_cli(self.cli().args(["ps", "-a", "-q", "--no-trunc"]), "docker ps")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// `docker inspect` of a container or image by id or name, if it exists.
    pub fn inspect(&self, what: &str) -> Option<serde_json::Value> {
        let out = run_with_timeout(self.cli().args(["inspect", "--", what]), CLI_TIMEOUT);
        if !out.status.success() {
            return None;
        }
        let mut all: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("docker inspect {what}: not JSON ({e}): {}", out.stdout));
        all.get_mut(0).map(serde_json::Value::take)
    }

    /// Builds (offline, legacy builder) a `FROM scratch` image `tag` holding `binaries` and every
    /// library `ldd` lists for them, each at its host path (symlinks followed), `/tmp` (1777), and
    /// `/etc/passwd` + `/etc/group` with [`IMAGE_USERS`]. `entrypoint` may be empty (then give the
    /// program in [`RunSpec::args`]). No label and no `ENV`: containers carry only the labels a test
    /// gives them. Idempotent per tag: asking again for the same files (path, size, mtime) on the same
    /// daemon returns at once; otherwise it builds, and the build cache gives unchanged content the
    /// same image id (on the system daemon, a new test process rebuilds from that cache). Returns `tag`.
    pub fn image_from_binaries(&self, tag: &str, binaries: &[&Path], entrypoint: &[&str]) -> String {
        let mut files = BTreeSet::new();
        for binary in binaries {
            assert!(binary.is_absolute(), "image {tag}: binary path {} is not absolute", binary.display());
            assert!(binary.is_file(), "image {tag}: binary {} does not exist", binary.display());
            files.insert(binary.to_path_buf());
            files.extend(shared_libraries(binary));
        }
        let entrypoint = if entrypoint.is_empty() {
            String::new()
        } else {
            format!("ENTRYPOINT {}\n", serde_json::json!(entrypoint))
        };
        let mut hasher = DefaultHasher::new();
        entrypoint.hash(&mut hasher);
        for file in &files {
            let meta = fs::metadata(file).unwrap_or_else(|e| panic!("image {tag}: {}: {e}", file.display()));
            (file, meta.len(), meta.mtime(), meta.mtime_nsec()).hash(&mut hasher);
        }
        passwd().hash(&mut hasher);
        let fingerprint = hasher.finish();

        // Holding the lock serializes builds on this daemon: two tests asking for one tag build it once.
        let mut images = self.daemon.images.lock().unwrap_or_else(PoisonError::into_inner);
        if images.get(tag) != Some(&fingerprint) {
            self.build_scratch_image(tag, &files, &entrypoint);
        }
        images.insert(tag.to_owned(), fingerprint);
        tag.to_owned()
    }

    fn build_scratch_image(&self, tag: &str, files: &BTreeSet<PathBuf>, entrypoint: &str) {
        let context = tempfile::Builder::new()
            .prefix("edgeseal-image-")
            .tempdir()
            .unwrap_or_else(|e| panic!("image {tag}: temp dir: {e}"));
        let rootfs = context.path().join("rootfs");
        for file in files {
            let relative = file.strip_prefix("/").unwrap_or(file);
            let target = rootfs.join(relative);
            if let Some(parent) = target.parent() {
                create_dirs(parent);
            }
            // fs::copy follows symlinks and keeps the mode bits.
            fs::copy(file, &target).unwrap_or_else(|e| panic!("image {tag}: copying {}: {e}", file.display()));
        }
        let tmp = rootfs.join("tmp");
        create_dirs(&tmp);
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).unwrap_or_else(|e| panic!("chmod /tmp: {e}"));
        create_dirs(&rootfs.join("etc"));
        write_file(&rootfs.join("etc/passwd"), &passwd());
        write_file(&rootfs.join("etc/group"), &group());
        write_file(&context.path().join("Dockerfile"), &format!("FROM scratch\nCOPY rootfs/ /\n{entrypoint}"));
        let mut build = self.cli();
        build.env("DOCKER_BUILDKIT", "0").args(["build", "-q", "--network", "none", "-t", tag]).arg(context.path());
        self.run_cli(&mut build, &format!("docker build -t {tag}"));
    }

    /// Creates and starts a container (detached, `--network none`, `--pull never`); the returned guard
    /// removes it (`docker rm -f`) on drop, also when starting it fails.
    pub fn run(&self, spec: RunSpec) -> Container {
        let mut create = self.cli();
        create.args(["create", "--pull", "never", "--network", "none"]);
        if let Some(name) = &spec.name {
            create.args(["--name", name]);
        }
        for (key, value) in &spec.labels {
            create.arg("--label").arg(format!("{key}={value}"));
        }
        for bind in &spec.binds {
            let (source, target) = (bind.host.display().to_string(), bind.container.display().to_string());
            assert!(
                !source.contains(',') && !target.contains(','),
                "bind mount paths must not contain ',': {source} → {target}"
            );
            let readonly = if bind.read_only { ",readonly" } else { "" };
            create.arg("--mount").arg(format!("type=bind,source={source},target={target}{readonly}"));
        }
        if let Some(user) = &spec.user {
            create.args(["--user", user]);
        }
        for (key, value) in &spec.env {
            create.arg("--env").arg(format!("{key}={value}"));
        }
        let mut args = spec.args.clone();
        if let Some(entrypoint) = &spec.entrypoint {
            // --entrypoint takes the program only; its arguments go in front of the command.
            create.arg("--entrypoint").arg(entrypoint.first().map(String::as_str).unwrap_or(""));
            args.splice(0..0, entrypoint.iter().skip(1).cloned());
        }
        create.arg("--").arg(&spec.image).args(&args);
        let id = self.run_cli(&mut create, &format!("docker create {}", spec.image)).trim().to_owned();
        assert!(
            id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "docker create {}: unexpected output {id:?}",
            spec.image
        );
        let container = Container { docker: self.clone(), id };
        let out = run_with_timeout(self.cli().args(["start", &container.id]), CLI_TIMEOUT);
        assert!(
            out.status.success(),
            "docker start {} (image {}, args {args:?}): {}{}",
            container.id,
            spec.image,
            out.stdout,
            out.stderr
        );
        container
    }

    /// Runs a `docker` command to completion; panics with its output on failure; returns stdout.
    fn run_cli(&self, cmd: &mut Command, what: &str) -> String {
        let out = run_with_timeout(cmd, CLI_TIMEOUT);
        assert!(out.status.success(), "{what} failed ({}):\n{}{}", out.status, out.stdout, out.stderr);
        out.stdout
    }
}

/// A bind mount of a host path (a Unix socket, a directory, a file) into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Host path; must exist (`--mount` refuses a missing source instead of creating a directory).
    pub host: PathBuf,
    /// Absolute path in the container.
    pub container: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

/// What [`Docker::run`] starts. Build it with [`RunSpec::new`] and the chained setters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSpec {
    /// Image tag or id.
    pub image: String,
    /// `--name`; unique on the daemon (tests sharing a daemon should not pick fixed names).
    pub name: Option<String>,
    /// `--label key=value`.
    pub labels: BTreeMap<String, String>,
    /// `--mount type=bind,…`.
    pub binds: Vec<Bind>,
    /// `--user`, e.g. `"1000:1000"`.
    pub user: Option<String>,
    /// `--env KEY=VALUE`.
    pub env: BTreeMap<String, String>,
    /// Replaces the image's entrypoint (program and leading arguments); `Some(vec![])` clears it.
    pub entrypoint: Option<Vec<String>>,
    /// The command: arguments to the entrypoint, or the program and its arguments if there is none.
    pub args: Vec<String>,
}

impl RunSpec {
    /// A container of `image` with the image's entrypoint and no arguments.
    pub fn new(image: impl Into<String>) -> Self {
        Self { image: image.into(), ..Self::default() }
    }

    /// Sets `--name`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds a read-write bind mount.
    pub fn bind(mut self, host: impl Into<PathBuf>, container: impl Into<PathBuf>) -> Self {
        self.binds.push(Bind { host: host.into(), container: container.into(), read_only: false });
        self
    }

    /// Adds a read-only bind mount.
    pub fn bind_ro(mut self, host: impl Into<PathBuf>, container: impl Into<PathBuf>) -> Self {
        self.binds.push(Bind { host: host.into(), container: container.into(), read_only: true });
        self
    }

    /// Sets `--user` (`"uid:gid"`, `"uid"` or a name from [`IMAGE_USERS`]).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Replaces the image's entrypoint.
    pub fn entrypoint<I: IntoIterator<Item = S>, S: Into<String>>(mut self, entrypoint: I) -> Self {
        self.entrypoint = Some(entrypoint.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the command arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }
}

/// A started container; removed with `docker rm -f` on drop. Keeps its daemon alive.
#[derive(Debug)]
pub struct Container {
    docker: Docker,
    id: String,
}

impl Container {
    /// The full container id (64 hex digits), as in `/proc/<pid>/cgroup` of its processes.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `docker inspect` of the container.
    pub fn inspect(&self) -> serde_json::Value {
        self.docker.inspect(&self.id).unwrap_or_else(|| panic!("container {} no longer exists", self.id))
    }

    /// The host PID of the container's PID 1 (`State.Pid`); panics, with the logs, if it is not running.
    pub fn pid(&self) -> u32 {
        let state = &self.inspect()["State"];
        match state["Pid"].as_u64().and_then(|pid| u32::try_from(pid).ok()) {
            Some(pid) if pid != 0 => pid,
            _ => panic!("container {} is not running (State: {state}); logs:\n{}", self.id, self.logs()),
        }
    }

    /// Waits until the container exits and returns its exit code; panics, with the logs, after `timeout`.
    pub fn wait(&self, timeout: Duration) -> i64 {
        let out = run_with_timeout(self.docker.cli().args(["wait", &self.id]), timeout);
        if out.status.code().is_none() {
            panic!("container {} did not exit within {timeout:?}; logs so far:\n{}", self.id, self.logs());
        }
        assert!(out.status.success(), "docker wait {} failed ({}): {}", self.id, out.status, out.stderr.trim());
        out.stdout.trim().parse().unwrap_or_else(|e| panic!("docker wait {}: {e}: {:?}", self.id, out.stdout))
    }

    /// Everything the container wrote, stdout and stderr interleaved in the order docker recorded them.
    pub fn logs(&self) -> String {
        let mut cmd = self.docker.cli();
        cmd.args(["logs", &self.id]);
        let mut file = tempfile::tempfile().unwrap_or_else(|e| panic!("temp file: {e}"));
        let err = file.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let copy = file.try_clone().unwrap_or_else(|e| panic!("{e}"));
        cmd.stdout(copy).stderr(err);
        let status = wait_with_timeout(&mut cmd, CLI_TIMEOUT, "docker logs");
        assert!(status.success(), "docker logs {} failed ({status})", self.id);
        read_all(&mut file)
    }

    /// What the container wrote to stdout.
    pub fn stdout(&self) -> String {
        self.docker.run_cli(self.docker.cli().args(["logs", &self.id]), "docker logs")
    }

    /// What the container wrote to stderr.
    pub fn stderr(&self) -> String {
        let out = run_with_timeout(self.docker.cli().args(["logs", &self.id]), CLI_TIMEOUT);
        assert!(out.status.success(), "docker logs {} failed: {}", self.id, out.stderr);
        out.stderr
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let out = run_with_timeout(self.docker.cli().args(["rm", "-f", "-v", &self.id]), CLI_TIMEOUT);
        if !out.status.success() {
            eprintln!("edgeseal-tests: docker rm -f {} failed: {}", self.id, out.stderr.trim());
        }
    }
}

impl Daemon {
    /// The system daemon, if it answers.
    fn system() -> Option<Self> {
        let socket = PathBuf::from(SYSTEM_SOCKET);
        if !socket.exists() || !ping(&socket) {
            return None;
        }
        let docker = find_program("docker").unwrap_or_else(|| panic!("the docker CLI not found: {INSTALL_HINT}"));
        let out = run_with_timeout(cli_for(&docker, &socket).arg("version"), CLI_TIMEOUT);
        assert!(
            out.status.success(),
            "a Docker daemon answers on {SYSTEM_SOCKET} but `docker version` fails ({INSTALL_HINT}):\n{}{}",
            out.stdout,
            out.stderr
        );
        Some(Self { docker, socket, own: None, images: Mutex::default() })
    }

    /// Starts a private dockerd and waits until it answers.
    fn start() -> Self {
        let dockerd = find_program("dockerd").unwrap_or_else(|| panic!("dockerd not found: {INSTALL_HINT}"));
        let docker = find_program("docker").unwrap_or_else(|| panic!("the docker CLI not found: {INSTALL_HINT}"));
        assert!(
            nix::unistd::geteuid().is_root(),
            "starting dockerd needs root: run the tests as root, or start a Docker daemon on {SYSTEM_SOCKET}"
        );
        let dir = private_dir();
        let path = dir.path();
        let socket = path.join("docker.sock");
        let config = path.join("daemon.json");
        // Our own config file: nothing from /etc/docker/daemon.json, and the trust key stays here
        // instead of /etc/docker/key.json.
        write_file(&config, &serde_json::json!({ "deprecated-key-path": path.join("key.json") }).to_string());
        let log_path = path.join("dockerd.log");
        let log = fs::File::create(&log_path).unwrap_or_else(|e| panic!("creating {}: {e}", log_path.display()));
        let err = log.try_clone().unwrap_or_else(|e| panic!("{e}"));
        // If a system containerd runs, dockerd uses it instead of starting its own: a namespace of
        // our own keeps our containers apart from anyone else's there.
        let namespace =
            format!("edgeseal-test-{}-{}", std::process::id(), DAEMONS_STARTED.fetch_add(1, Ordering::Relaxed));
        let started = Instant::now();
        let child = Command::new(&dockerd)
            .arg("--config-file")
            .arg(&config)
            .arg("--data-root")
            .arg(path.join("data"))
            .arg("--exec-root")
            .arg(path.join("exec"))
            .arg("--pidfile")
            .arg(path.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false"])
            .args(["--shutdown-timeout", "5"])
            .arg("--containerd-namespace")
            .arg(&namespace)
            .arg("--containerd-plugins-namespace")
            .arg(format!("{namespace}-plugins"))
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}: {INSTALL_HINT}", dockerd.display()));
        // From here on, a panic drops the daemon, which stops dockerd and cleans up.
        let mut daemon = Self {
            docker,
            socket,
            own: Some(OwnDaemon { child: ChildGuard::new("dockerd", child), dir, started_in: Duration::ZERO }),
            images: Mutex::default(),
        };
        let Some(own) = daemon.own.as_mut() else { unreachable!() };
        let answered = poll_until(START_TIMEOUT.saturating_sub(started.elapsed()), || {
            if ping(&daemon.socket) {
                return Some(());
            }
            if let Some(status) = own.child.exited() {
                panic!("dockerd exited during start-up ({status}); its log ends:\n{}", log_tail(&log_path, 40));
            }
            None
        });
        assert!(
            answered.is_some(),
            "dockerd did not answer on {} within {START_TIMEOUT:?}; its log ends:\n{}",
            daemon.socket.display(),
            log_tail(&log_path, 40)
        );
        own.started_in = started.elapsed();
        eprintln!(
            "edgeseal-tests: started dockerd (pid {}) on unix://{} in {:.2} s",
            own.child.pid(),
            daemon.socket.display(),
            own.started_in.as_secs_f64()
        );
        daemon
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let Some(own) = self.own.as_mut() else { return };
        let stopping = Instant::now();
        let cli =
            |args: &[&str]| run_with_timeout(cli_for(&self.docker, &self.socket).args(args), Duration::from_secs(60));
        // Containers first, with SIGKILL: dockerd's own shutdown would give each one a stop timeout
        // (a PID 1 without a SIGTERM handler ignores SIGTERM).
        let ids = cli(&["ps", "-a", "-q", "--no-trunc"]).stdout;
        let mut ids: Vec<&str> = ids.lines().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(&ids);
            cli(&args);
        }
        let pid = own.child.pid();
        own.child.stop(Signal::SIGTERM, STOP_TIMEOUT);
        // Whatever it started and left behind: processes naming our dir (containerd, shims) and
        // processes in the cgroup of one of our containers.
        let dir = own.dir.path().to_owned();
        let known = fs::read_dir(dir.join("data/containers")).into_iter().flatten().flatten();
        let known: Vec<String> = known.map(|entry| entry.file_name().to_string_lossy().into_owned()).collect();
        ids.extend(known.iter().map(String::as_str));
        let (engine, containers) = processes_of(&dir, &ids);
        if !engine.is_empty() || !containers.is_empty() {
            eprintln!(
                "edgeseal-tests: dockerd left processes behind, killing them: engine {engine:?}, containers {containers:?}"
            );
            // Container processes as `docker rm -f` would (SIGKILL), then the engine's politely.
            kill_all(&containers, Signal::SIGKILL);
            kill_all(&engine, Signal::SIGTERM);
        }
        unmount_below(&dir);
        eprintln!("edgeseal-tests: stopped dockerd (pid {pid}) in {:.2} s", stopping.elapsed().as_secs_f64());
        // The temp dir is removed when `own` is dropped, after this.
    }
}

/// A `docker` command talking to the daemon on `socket`, whatever the environment says.
fn cli_for(docker: &Path, socket: &Path) -> Command {
    let mut cmd = Command::new(docker);
    cmd.arg("-H")
        .arg(format!("unix://{}", socket.display()))
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .env("DOCKER_CLI_HINTS", "false")
        .stdin(Stdio::null());
    cmd
}

/// The private daemon's directory: short enough for the Unix socket paths below it (108 bytes).
fn private_dir() -> tempfile::TempDir {
    let make = |parent: &Path| {
        tempfile::Builder::new()
            .prefix("edgeseal-docker-")
            .tempdir_in(parent)
            .unwrap_or_else(|e| panic!("creating a temp dir in {}: {e}", parent.display()))
    };
    let dir = make(&std::env::temp_dir());
    // The longest socket dockerd makes there: exec/containerd/containerd.sock.ttrpc.
    if dir.path().as_os_str().len() + 40 < 100 {
        dir
    } else {
        make(Path::new("/tmp"))
    }
}

/// `GET /_ping` on a daemon socket: `true` once it answers 200.
fn ping(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else { return false };
    let timeout = Some(Duration::from_secs(2));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    if stream.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n").is_err() {
        return false;
    }
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    reply.starts_with("HTTP/1.") && reply.split(' ').nth(1) == Some("200")
}

/// The shared libraries `ldd` lists for `binary` (the loader included); none for a static binary.
fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    let out = run_with_timeout(Command::new("ldd").arg(binary), Duration::from_secs(30));
    let text = format!("{}{}", out.stdout, out.stderr);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Vec::new();
    }
    assert!(out.status.success(), "ldd {} failed ({}): {text}", binary.display(), out.status);
    assert!(!text.contains("not found"), "ldd {}: a library is missing on the host:\n{text}", binary.display());
    text.lines()
        .flat_map(str::split_whitespace)
        .filter(|word| word.starts_with('/'))
        .map(PathBuf::from)
        .inspect(|lib| assert!(lib.is_file(), "ldd {} lists {}, which is not a file", binary.display(), lib.display()))
        .collect()
}

fn passwd() -> String {
    IMAGE_USERS
        .iter()
        .map(|(name, id)| {
            let home = if *id == 0 { "/root" } else { "/tmp" };
            format!("{name}:x:{id}:{id}:{name}:{home}:/sbin/nologin\n")
        })
        .collect()
}

fn group() -> String {
    IMAGE_USERS.iter().map(|(name, id)| format!("{name}:x:{id}:\n")).collect()
}

/// Creates `dir` and its parents, each 0755 whatever the umask (users other than root must reach the binaries).
fn create_dirs(dir: &Path) {
    if dir.is_dir() {
        return;
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent);
    }
    fs::create_dir(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.display()));
}

fn write_file(path: &Path, contents: &str) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// `name` in `$PATH`, or in the sbin directories a non-root `$PATH` lacks.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0))
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What a command printed and how it ended.
#[derive(Debug)]
struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` (stdout and stderr captured through temp files: no pipe to drain) and kills it after
/// `timeout`, reporting that as a failed status with a note in `stderr`.
fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let mut stdout = tempfile::tempfile().unwrap_or_else(|e| panic!("temp file: {e}"));
    let mut stderr = tempfile::tempfile().unwrap_or_else(|e| panic!("temp file: {e}"));
    cmd.stdout(stdout.try_clone().unwrap_or_else(|e| panic!("{e}")));
    cmd.stderr(stderr.try_clone().unwrap_or_else(|e| panic!("{e}")));
    let program = format!("{:?}", cmd.get_program());
    let status = wait_with_timeout(cmd, timeout, &program);
    let mut out = Output { status, stdout: read_all(&mut stdout), stderr: read_all(&mut stderr) };
    if out.status.code().is_none() {
        out.stderr.push_str(&format!("\n(killed after {timeout:?})"));
    }
    out
}

/// Spawns `cmd`, waits up to `timeout`, then kills it; returns its status.
fn wait_with_timeout(cmd: &mut Command, timeout: Duration, what: &str) -> ExitStatus {
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("running {what}: {e}"));
    wait_within(&mut child, timeout).unwrap_or_else(|| {
        let _ = child.kill();
        child.wait().unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
    })
}

fn read_all(file: &mut fs::File) -> String {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0)).and_then(|_| file.read_to_end(&mut bytes)).unwrap_or_else(|e| panic!("read: {e}"));
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What a private daemon started: (dockerd/containerd/shim/runc processes whose command line names
/// `dir`, processes in the cgroup of one of `container_ids`).
fn processes_of(dir: &Path, container_ids: &[&str]) -> (Vec<i32>, Vec<i32>) {
    let needle = format!("{}/", dir.display());
    let me = std::process::id();
    let (mut engine, mut containers) = (Vec::new(), Vec::new());
    let Ok(entries) = fs::read_dir("/proc") else { return (engine, containers) };
    let pids = entries.flatten().filter_map(|entry| entry.file_name().to_str().and_then(|name| name.parse().ok()));
    for pid in pids.filter(|pid: &i32| u32::try_from(*pid).is_ok_and(|pid| pid != me)) {
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        let program = cmdline.split('\0').next().and_then(|argv0| argv0.rsplit('/').next()).unwrap_or("");
        let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        if ["dockerd", "containerd", "runc", "docker-"].iter().any(|name| program.starts_with(name))
            && cmdline.contains(&needle)
        {
            engine.push(pid);
        } else if container_ids.iter().any(|id| cgroup.contains(id)) {
            containers.push(pid);
        }
    }
    (engine, containers)
}

/// `signal`, up to 5 s for them to exit, then SIGKILL.
fn kill_all(pids: &[i32], signal: Signal) {
    let alive = |pid: i32| kill(Pid::from_raw(pid), None).is_ok();
    for pid in pids {
        let _ = kill(Pid::from_raw(*pid), signal);
    }
    poll_until(Duration::from_secs(5), || (!pids.iter().any(|pid| alive(*pid))).then_some(()));
    for pid in pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
}

/// Lazily unmounts whatever is still mounted below `dir` (after an unclean stop), deepest first.
fn unmount_below(dir: &Path) {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(dir))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in points {
        let _ = Command::new("umount").args(["-l", point]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}
