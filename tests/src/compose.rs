//! docker-compose projects on the harness's Docker daemon, removed with their volumes on drop.
//!
//! [`Compose::find`] picks the compose implementation: `$EDGESEAL_COMPOSE` (a compose v1 or v2
//! executable, or `docker compose` for the CLI plug-in), else `docker-compose` on `PATH` (Debian's
//! 1.29, which `make test` installs), else the `docker compose` plug-in. [`Project`] runs it against a
//! [`Docker`] daemon (`DOCKER_HOST=unix://…`, every other `DOCKER_*`/`COMPOSE_*` variable removed so
//! that nothing from the environment leaks in) under a unique project name, with the variables a
//! test gives; on drop it runs `down -v --remove-orphans`, then removes whatever still carries the
//! project's label (containers, volumes, networks), also when the test failed half-way.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::docker::Docker;
use crate::poll_until;
use crate::process::wait_within;

const INSTALL_HINT: &str = "run `make test` (scripts/ensure-deps.sh docker installs docker.io and docker-compose) \
     or apt-get install docker-compose, or set EDGESEAL_COMPOSE to a compose executable";

/// `up` waits for dependency conditions (a healthy bootstrapper), so it gets longer than other calls.
const UP_TIMEOUT: Duration = Duration::from_secs(240);
/// Any other compose or docker call.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Distinguishes the projects of one test process.
static PROJECTS: AtomicU32 = AtomicU32::new(0);

/// A compose implementation: the program and the arguments before the subcommand.
#[derive(Debug, Clone)]
pub struct Compose {
    program: Vec<OsString>,
    version: String,
}

impl Compose {
    /// `$EDGESEAL_COMPOSE`, else `docker-compose`, else `docker compose`. Panics, saying how to
    /// install compose, when none answers `version`.
    pub fn find() -> Self {
        let candidates: Vec<Vec<OsString>> = match std::env::var_os("EDGESEAL_COMPOSE") {
            Some(given) => {
                vec![given.to_string_lossy().split_whitespace().map(OsString::from).collect()]
            }
            None => vec![vec!["docker-compose".into()], vec!["docker".into(), "compose".into()]],
        };
        for program in &candidates {
            let Some((first, rest)) = program.split_first() else { continue };
            let mut cmd = Command::new(first);
            cmd.args(rest).arg("version").env("DOCKER_CLI_HINTS", "false");
            let out = run(&mut cmd, Duration::from_secs(30));
            if out.status.success() {
                let version = out.stdout.lines().next().unwrap_or_default().trim().to_owned();
                return Self { program: program.clone(), version };
            }
        }
        panic!("no docker compose found (tried {candidates:?}): {INSTALL_HINT}")
    }

    /// The first line of `version`, e.g. `docker-compose version 1.29.2, build unknown`.
    pub fn version(&self) -> &str {
        &self.version
    }
}

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Output {
    /// Exit status (a signal when it was killed after its timeout).
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error, plus a note when it was killed after its timeout.
    pub stderr: String,
}

impl Output {
    /// Both streams, for messages.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// A compose project on a Docker daemon; `down -v` and removal of everything it left on drop.
#[derive(Debug)]
pub struct Project {
    docker: Docker,
    compose: Compose,
    name: String,
    file: PathBuf,
    env: BTreeMap<String, String>,
}

impl Project {
    /// A project named `<prefix>-<pid>-<n>` (unique on the daemon) for the compose file `file`;
    /// its directory is the project directory (relative paths in the file resolve against it).
    pub fn new(docker: &Docker, compose: Compose, prefix: &str, file: &Path) -> Self {
        assert!(file.is_file(), "compose file {} does not exist", file.display());
        let n = PROJECTS.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        Self { docker: docker.clone(), compose, name, file: file.to_path_buf(), env: BTreeMap::new() }
    }

    /// Sets a variable of the compose environment (interpolated into the compose file).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// The project name (label `com.docker.compose.project`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Docker daemon the project runs on.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The compose implementation.
    pub fn compose(&self) -> &Compose {
        &self.compose
    }

    /// A compose command for this project (`-p NAME -f FILE`) against the daemon; add the subcommand.
    pub fn command(&self) -> Command {
        let (first, rest) = self.compose.program.split_first().unwrap_or_else(|| panic!("empty compose program"));
        let mut cmd = Command::new(first);
        cmd.args(rest);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("DOCKER_") || key.starts_with("COMPOSE_") {
                cmd.env_remove(&*key);
            }
        }
        cmd.env("DOCKER_HOST", format!("unix://{}", self.docker.socket().display()))
            .env("DOCKER_CLI_HINTS", "false")
            .envs(&self.env)
            .arg("-p")
            .arg(&self.name)
            .arg("-f")
            .arg(&self.file)
            .stdin(Stdio::null());
        if let Some(dir) = self.file.parent() {
            cmd.current_dir(dir);
        }
        cmd
    }

    /// Runs `compose ARGS` to completion (bounded); the output whatever the status.
    pub fn run(&self, args: &[&str], timeout: Duration) -> Output {
        run(self.command().args(args), timeout)
    }

    /// `up -d`; panics with compose's output and every container's log when it fails. Returns how long it took.
    pub fn up(&self) -> Duration {
        let started = Instant::now();
        let out = self.run(&["up", "-d", "--no-color"], UP_TIMEOUT);
        assert!(out.status.success(), "compose up failed ({}):\n{}\n{}", out.status, out.text(), self.all_logs());
        started.elapsed()
    }

    /// `down` (`-v`: also the volumes); panics with the output when it fails. Returns how long it took.
    pub fn down(&self, volumes: bool) -> Duration {
        let started = Instant::now();
        let mut args = vec!["down", "--remove-orphans", "-t", "10"];
        if volumes {
            args.push("-v");
        }
        let out = self.run(&args, CALL_TIMEOUT);
        assert!(out.status.success(), "compose down failed ({}):\n{}", out.status, out.text());
        started.elapsed()
    }

    /// The ids of the containers of `service` (all when `None`), running or not, newest first.
    pub fn containers(&self, service: Option<&str>) -> Vec<String> {
        let mut cmd = self.docker.cli();
        cmd.args(["ps", "-a", "-q", "--no-trunc", "--filter"])
            .arg(format!("label=com.docker.compose.project={}", self.name));
        if let Some(service) = service {
            cmd.arg("--filter").arg(format!("label=com.docker.compose.service={service}"));
        }
        docker_lines(&mut cmd, "docker ps")
    }

    /// The names of the volumes labelled with the project.
    pub fn volumes(&self) -> Vec<String> {
        let mut cmd = self.docker.cli();
        cmd.args(["volume", "ls", "-q", "--filter"]).arg(format!("label=com.docker.compose.project={}", self.name));
        docker_lines(&mut cmd, "docker volume ls")
    }

    /// Everything the newest container of `service` wrote (stdout and stderr); empty when there is none.
    pub fn logs(&self, service: &str) -> String {
        let Some(id) = self.containers(Some(service)).into_iter().next() else { return String::new() };
        run(self.docker.cli().args(["logs", &id]), CALL_TIMEOUT).text()
    }

    /// `compose ps` and every container's log, for failure messages.
    pub fn all_logs(&self) -> String {
        let ps = self.run(&["ps"], CALL_TIMEOUT).text();
        let logs = self.run(&["logs", "--no-color"], CALL_TIMEOUT).text();
        format!("--- compose ps:\n{ps}--- compose logs:\n{logs}")
    }

    /// `docker inspect` of a container, as JSON.
    pub fn inspect(&self, id: &str) -> serde_json::Value {
        self.docker.inspect(id).unwrap_or_else(|| panic!("container {id} of project {} is gone", self.name))
    }

    /// Polls the newest container of `service` until `done(log)` holds; panics after `timeout`, or at
    /// once when the container exited with a non-zero status. Returns the log.
    pub fn wait_for_log(&self, service: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let found = poll_until(timeout, || {
            let log = self.logs(service);
            if done(&log) {
                return Some(log);
            }
            let exited = self.containers(Some(service)).first().and_then(|id| {
                let state = self.docker.inspect(id)?.get("State")?.clone();
                let running = state.get("Running")?.as_bool()?;
                let code = state.get("ExitCode")?.as_i64()?;
                (!running && code != 0).then_some(code)
            });
            if let Some(code) = exited {
                panic!("{service} exited with status {code}; its log:\n{log}\n{}", self.all_logs());
            }
            None
        });
        found.unwrap_or_else(|| {
            panic!("{service}: not done after {timeout:?}; its log:\n{}\n{}", self.logs(service), self.all_logs())
        })
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let out = self.run(&["down", "-v", "--remove-orphans", "-t", "5"], CALL_TIMEOUT);
        if !out.status.success() {
            eprintln!("edgeseal-tests: compose down -v of {} failed ({}): {}", self.name, out.status, out.text());
        }
        // Whatever compose did not remove (an interrupted `up`, a failed `down`).
        let label = format!("label=com.docker.compose.project={}", self.name);
        let containers = self.containers(None);
        if !containers.is_empty() {
            run(self.docker.cli().args(["rm", "-f", "-v"]).args(&containers), CALL_TIMEOUT);
        }
        let volumes = self.volumes();
        if !volumes.is_empty() {
            run(self.docker.cli().args(["volume", "rm", "-f"]).args(&volumes), CALL_TIMEOUT);
        }
        let networks = run(self.docker.cli().args(["network", "ls", "-q", "--filter", &label]), CALL_TIMEOUT).stdout;
        let networks: Vec<&str> = networks.lines().collect();
        if !networks.is_empty() {
            run(self.docker.cli().args(["network", "rm"]).args(&networks), CALL_TIMEOUT);
        }
    }
}

/// The lines a docker command printed; panics when it fails.
fn docker_lines(cmd: &mut Command, what: &str) -> Vec<String> {
    let out = run(cmd, CALL_TIMEOUT);
    assert!(out.status.success(), "{what} failed ({}): {}", out.status, out.text());
    out.stdout.lines().map(str::to_owned).collect()
}

/// Runs `cmd` (output through temp files: no pipe to drain) and kills it after `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let mut stdout = tempfile::tempfile().unwrap_or_else(|e| panic!("temp file: {e}"));
    let mut stderr = tempfile::tempfile().unwrap_or_else(|e| panic!("temp file: {e}"));
    cmd.stdout(stdout.try_clone().unwrap_or_else(|e| panic!("{e}")));
    cmd.stderr(stderr.try_clone().unwrap_or_else(|e| panic!("{e}")));
    let what = format!("{:?}", cmd.get_program());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("running {what}: {e}: {INSTALL_HINT}"));
    let status = wait_within(&mut child, timeout).unwrap_or_else(|| {
        let _ = child.kill();
        child.wait().unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
    });
    let mut out = Output { status, stdout: read_all(&mut stdout), stderr: read_all(&mut stderr) };
    if out.status.code().is_none() {
        out.stderr.push_str(&format!("\n({what} killed after {timeout:?})"));
    }
    out
}

fn read_all(file: &mut fs::File) -> String {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0)).and_then(|_| file.read_to_end(&mut bytes)).unwrap_or_else(|e| panic!("read: {e}"));
    String::from_utf8_lossy(&bytes).into_owned()
}
