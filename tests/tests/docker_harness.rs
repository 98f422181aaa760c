//! The Docker harness against a real daemon: an offline `FROM scratch` image of a host binary runs and
//! reports its output and exit code; labels, bind mounts and `--user` arrive; the host sees the
//! container's full id in `/proc/<pid>/cgroup` of its process (what the token server relies on); a
//! dropped container is gone; parallel tests share one daemon; a private daemon leaves nothing behind,
//! also when dockerd was SIGKILLed and its shim and container outlived it.
//!
//! The image holds `target/<profile>/edgeseal-kdf-test` (no shell, no busybox): run the workspace tests
//! (`make test` or `cargo test --workspace`), which build it, or `cargo build -p kdf-plugins --bins`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edgeseal_tests::docker::{Docker, RunSpec};
use edgeseal_tests::{wait_until, workspace_binary};

const PLUGIN: &str = "edgeseal-kdf-test";
const IMAGE: &str = "edgeseal-test/kdf-test:harness";
const IKM: &str = "5eed0fedcba9876543210123456789abcdef0123456789abcdef0123456789ab";
const WAIT: Duration = Duration::from_secs(60);

/// The image with the plug-in as its entrypoint; returns the tag and the plug-in's host path.
fn plugin_image(docker: &Docker) -> (String, PathBuf) {
    let plugin = workspace_binary(PLUGIN);
    let image = docker.image_from_binaries(IMAGE, &[&plugin], &[plugin.to_str().unwrap()]);
    (image, plugin)
}

fn image_id(docker: &Docker, image: &str) -> String {
    let out = docker.cli().args(["image", "inspect", "--format", "{{.Id}}", image]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The first entry of the tar stream `docker cp CONTAINER:PATH -` writes: (mode, contents).
fn copy_out(docker: &Docker, container: &str, path: &str) -> (u32, String) {
    let out = docker.cli().args(["cp", &format!("{container}:{path}"), "-"]).output().unwrap();
    assert!(out.status.success(), "docker cp {path}: {}", String::from_utf8_lossy(&out.stderr));
    let tar = out.stdout;
    assert!(tar.len() >= 512, "docker cp {path}: short tar ({} bytes)", tar.len());
    let octal = |field: &[u8]| {
        let text = String::from_utf8_lossy(field);
        u64::from_str_radix(text.trim_matches(|c: char| c == '\0' || c == ' '), 8).unwrap()
    };
    let mode = u32::try_from(octal(&tar[100..108])).unwrap();
    let size = usize::try_from(octal(&tar[124..136])).unwrap();
    (mode, String::from_utf8_lossy(&tar[512..512 + size]).into_owned())
}

/// Processes whose command line names `needle`.
fn processes_naming(needle: &str) -> Vec<(u32, String)> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter_map(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(needle).then_some((pid, cmdline))
        })
        .collect()
}

/// Waits up to 10 s until `holds` does; panics saying `what` was awaited.
fn eventually(what: &str, mut holds: impl FnMut() -> bool) {
    wait_until(what, Duration::from_secs(10), || holds().then_some(()));
}

fn cgroup_of(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default()
}

#[test]
fn scratch_image_of_a_host_binary_runs_and_reports_output_and_exit_code() {
    let docker = Docker::ensure();
    let (image, _) = plugin_image(&docker);
    let id = image_id(&docker, &image);
    assert_eq!(plugin_image(&docker).0, image);
    assert_eq!(image_id(&docker, &image), id, "building the same tag twice made a new image");

    let good = docker.run(RunSpec::new(&image).args(["ikm-v1", "good", "00ff"]));
    assert_eq!(good.wait(WAIT), 0, "logs:\n{}", good.logs());
    assert_eq!(good.stdout(), "00ff\n");
    assert_eq!(good.stderr(), "");

    let default = docker.run(RunSpec::new(&image));
    assert_eq!(default.wait(WAIT), 0);
    assert_eq!(default.logs(), format!("{IKM}\n"));

    let failing = docker.run(RunSpec::new(&image).args(["ikm-v1", "fail", "7"]));
    assert_eq!(failing.wait(WAIT), 7);
    assert_eq!(failing.stdout(), "");
    assert_eq!(failing.logs(), "edgeseal-kdf-test: failing on purpose with exit code 7\n");

    // The image's own files: a world-writable sticky /tmp and the test users.
    let (tmp_mode, _) = copy_out(&docker, good.id(), "/tmp");
    assert_eq!(tmp_mode & 0o7777, 0o1777, "/tmp mode {tmp_mode:o}");
    let (_, passwd) = copy_out(&docker, good.id(), "/etc/passwd");
    assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
    assert!(passwd.contains("\nedgeseal-app:x:1000:1000:"), "{passwd}");
}

#[test]
fn labels_mounts_and_user_arrive_and_the_host_sees_the_container_id_in_the_cgroup() {
    let docker = Docker::ensure();
    let (image, plugin) = plugin_image(&docker);
    // The plug-in also on a read-only bind mount, run from there: that path exists only through the mount.
    let host = tempfile::tempdir().unwrap();
    let plugins = host.path().join("plugins");
    let data = host.path().join("data");
    fs::create_dir(&plugins).unwrap();
    fs::create_dir(&data).unwrap();
    fs::copy(&plugin, plugins.join(PLUGIN)).unwrap();

    let name = format!("edgeseal-harness-{}", std::process::id());
    let labels = BTreeMap::from([
        ("org.edgeseal.service".to_owned(), "app-service".to_owned()),
        ("org.edgeseal.test".to_owned(), "docker-harness".to_owned()),
    ]);
    let mut spec = RunSpec::new(&image)
        .name(&name)
        .bind_ro(&plugins, "/plugins")
        .bind(&data, "/data")
        .user("1000:1000")
        .env("EDGESEAL_TEST", "1")
        .entrypoint([format!("/plugins/{PLUGIN}")])
        .args(["ikm-v1", "hang"]);
    spec.labels = labels.clone();
    let container = docker.run(spec);
    let id = container.id().to_owned();
    assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");

    // From the host: the container's process, its cgroup, its user, its program.
    let pid = container.pid();
    let cgroup = cgroup_of(pid);
    assert!(cgroup.contains(&id), "/proc/{pid}/cgroup does not name container {id}:\n{cgroup}");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|line| line.starts_with("Uid:")).unwrap();
    let gid = status.lines().find(|line| line.starts_with("Gid:")).unwrap();
    assert_eq!(uid.split_whitespace().collect::<Vec<_>>(), ["Uid:", "1000", "1000", "1000", "1000"]);
    assert_eq!(gid.split_whitespace().collect::<Vec<_>>(), ["Gid:", "1000", "1000", "1000", "1000"]);
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(String::from_utf8_lossy(&cmdline), format!("/plugins/{PLUGIN}\0ikm-v1\0hang\0"));

    // What the daemon says (what the token server reads through its socket).
    let inspect = container.inspect();
    assert_eq!(inspect["Id"], id);
    assert_eq!(inspect["Name"], format!("/{name}"));
    assert_eq!(inspect["Config"]["Labels"], serde_json::json!(labels));
    assert_eq!(inspect["Config"]["User"], "1000:1000");
    assert_eq!(inspect["HostConfig"]["NetworkMode"], "none");
    assert!(inspect["Config"]["Env"].as_array().unwrap().iter().any(|e| e == "EDGESEAL_TEST=1"), "{inspect}");
    let mounts: BTreeMap<String, bool> = inspect["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["Destination"].as_str().unwrap().to_owned(), m["RW"].as_bool().unwrap()))
        .collect();
    assert_eq!(mounts, BTreeMap::from([("/data".to_owned(), true), ("/plugins".to_owned(), false)]));

    // Dropping the guard removes the container and ends its process.
    drop(container);
    assert!(!docker.containers().contains(&id), "container {id} is still listed after drop");
    assert!(docker.inspect(&id).is_none(), "container {id} can still be inspected after drop");
    eventually(&format!("process {pid} of container {id} no longer runs after drop"), || !cgroup_of(pid).contains(&id));
}

#[test]
fn parallel_tests_share_one_daemon() {
    let docker = Docker::ensure();
    let sockets: Vec<PathBuf> = (0..4)
        .map(|_| std::thread::spawn(|| Docker::ensure().socket()))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|thread| thread.join().unwrap())
        .collect();
    assert!(sockets.iter().all(|socket| *socket == docker.socket()), "{sockets:?} vs {:?}", docker.socket());
    let info = docker.info();
    eprintln!(
        "daemon {} at {} (own: {}, start-up {:?}): cgroup driver {}, cgroup v{}, storage {}",
        info["ServerVersion"],
        docker.socket().display(),
        docker.is_own(),
        docker.startup_time(),
        info["CgroupDriver"],
        info["CgroupVersion"],
        info["Driver"]
    );
}

#[test]
fn a_private_daemon_leaves_nothing_behind() {
    let docker = Docker::start_own();
    assert!(docker.is_own());
    let daemon_pid = docker.daemon_pid().unwrap();
    let dir = docker.socket().parent().unwrap().to_owned();
    let startup = docker.startup_time().unwrap();
    eprintln!("private dockerd (pid {daemon_pid}) answered after {:.2} s", startup.as_secs_f64());
    assert!(startup < Duration::from_secs(60));
    assert_ne!(docker.socket(), Path::new(edgeseal_tests::docker::SYSTEM_SOCKET));

    // A container started behind the harness's back (no guard), whose PID 1 ignores SIGTERM.
    let (image, _) = plugin_image(&docker);
    let out = docker.cli().args(["run", "-d", "--network", "none", &image, "ikm-v1", "hang"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let pid = docker.inspect(&id).unwrap()["State"]["Pid"].as_u64().unwrap();
    let pid = u32::try_from(pid).unwrap();
    assert!(cgroup_of(pid).contains(&id));
    let ours = processes_naming(&dir.to_string_lossy());
    let names: Vec<&str> = ours.iter().map(|(_, cmd)| cmd.split(' ').next().unwrap()).collect();
    assert!(names.iter().any(|n| n.ends_with("dockerd")), "{ours:?}");
    assert!(names.iter().any(|n| n.ends_with("containerd")), "{ours:?}");
    assert!(names.iter().any(|n| n.ends_with("containerd-shim-runc-v2")), "{ours:?}");

    let stopping = Instant::now();
    drop(docker);
    eprintln!("private dockerd stopped and cleaned up in {:.2} s", stopping.elapsed().as_secs_f64());
    assert!(!Path::new(&format!("/proc/{daemon_pid}")).exists(), "dockerd {daemon_pid} still runs");
    assert_eq!(processes_naming(&dir.to_string_lossy()), []);
    eventually(&format!("container process {pid} no longer runs"), || !cgroup_of(pid).contains(&id));
    assert!(!dir.exists(), "{} was not removed", dir.display());
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(&*dir.to_string_lossy()), "still mounted below {}:\n{mountinfo}", dir.display());
}

#[test]
fn a_crashed_private_daemon_is_still_cleaned_up() {
    let docker = Docker::start_own();
    let daemon_pid = docker.daemon_pid().unwrap();
    let dir = docker.socket().parent().unwrap().to_owned();
    let (image, _) = plugin_image(&docker);
    let out = docker.cli().args(["run", "-d", "--network", "none", &image, "ikm-v1", "hang"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let pid = u32::try_from(docker.inspect(&id).unwrap()["State"]["Pid"].as_u64().unwrap()).unwrap();

    // dockerd dies without cleaning up: its containerd, the shim and the container stay behind.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(daemon_pid).unwrap()), nix::sys::signal::SIGKILL)
        .unwrap();
    eventually("dockerd is gone after SIGKILL", || {
        docker.cli().arg("version").output().unwrap().status.code() != Some(0)
    });
    eprintln!("after SIGKILL of dockerd: {:?}", processes_naming(&format!("{}/", dir.display())));
    assert!(cgroup_of(pid).contains(&id), "the container died with dockerd; this test needs it to outlive it");

    drop(docker);
    assert_eq!(processes_naming(&format!("{}/", dir.display())), []);
    eventually(&format!("container process {pid} no longer runs"), || !cgroup_of(pid).contains(&id));
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(&*dir.to_string_lossy()), "still mounted below {}:\n{mountinfo}", dir.display());
    assert!(!dir.exists(), "{} was not removed", dir.display());
}
