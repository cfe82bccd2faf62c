//! A Podman engine of the test's own: `podman system service` as root, with its own storage
//! (`--root`, `--runroot`), configuration files (`CONTAINERS_CONF`,
//! `CONTAINERS_REGISTRIES_CONF`) and socket in a temporary folder, so it never touches the
//! machine's Podman storage. On this machine kind containers need `default_ulimits` (the
//! sandbox's rlimits are lower than Podman's defaults), and there is no systemd: cgroupfs and
//! a file events log.
//!
//! Drop removes its containers, stops the service, ends what it left running (conmon keeps an
//! exec's monitor for minutes), unmounts what it mounted and deletes the folder, also on
//! panic. Starting fails loudly when podman is missing or the service does not answer.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::daemons::{cli_ok, cli_output, load_image_into, run, unmount_below};
use super::engine::docker_bin;

/// One Podman service.
pub(crate) struct Podman {
    /// `unix://DIR/podman.sock`: the value of `--engine` and of `DOCKER_HOST`.
    pub(crate) host: String,
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
}

/// How to set the service up.
#[derive(Debug, Clone)]
pub(crate) struct PodmanSetup {
    /// Registries (`HOST:PORT`) marked `insecure = true` in its registries.conf.
    pub(crate) insecure: Vec<String>,
    /// Hide Podman's init binary (`/usr/libexec/podman/catatonit`) from the service, as on a
    /// machine without the `catatonit` package.
    pub(crate) without_init: bool,
    /// Leave out the `default_ulimits` this machine kind needs, as a first setup would.
    pub(crate) without_ulimits: bool,
}

impl Default for PodmanSetup {
    fn default() -> Self {
        Self {
            insecure: vec!["127.0.0.1:5000".into()],
            without_init: false,
            without_ulimits: false,
        }
    }
}

impl Podman {
    /// A service that trusts the local registry 127.0.0.1:5000 over plain HTTP.
    pub(crate) fn start() -> Podman {
        Self::start_with(PodmanSetup::default())
    }

    pub(crate) fn start_with(setup: PodmanSetup) -> Podman {
        let version = Command::new("podman").arg("--version").output();
        match version {
            Ok(out) if out.status.success() => {}
            _ => panic!("podman is missing or broken: run scripts/setup.sh (it installs podman)"),
        }
        let dir = tempfile::Builder::new()
            .prefix("pl-podman-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let root = dir.path().to_path_buf();
        let ulimits = if setup.without_ulimits {
            ""
        } else {
            "default_ulimits = [\"nofile=20000:20000\", \"nproc=20000:20000\"]\n"
        };
        std::fs::write(
            root.join("containers.conf"),
            format!(
                "[containers]\n{ulimits}[engine]\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n"
            ),
        )
        .unwrap();
        let registries: String = setup
            .insecure
            .iter()
            .map(|r| format!("[[registry]]\nlocation = \"{r}\"\ninsecure = true\n\n"))
            .collect();
        std::fs::write(root.join("registries.conf"), registries).unwrap();
        let host = format!("unix://{}", root.join("podman.sock").display());
        let service = format!(
            "podman --root {0}/root --runroot {0}/run --tmpdir {0}/tmp system service --time=0 {host}",
            root.display()
        );
        let script = if setup.without_init {
            // A mount namespace of the service's own: the machine's file stays.
            format!("mount -t tmpfs none /usr/libexec/podman && exec {service}")
        } else {
            format!("exec {service}")
        };
        let mut cmd = if setup.without_init {
            let mut c = Command::new("unshare");
            c.args(["-m", "sh", "-c", &script]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", &script]);
            c
        };
        let log = std::fs::File::create(root.join("service.log")).unwrap();
        let child = cmd
            .env("CONTAINERS_CONF", root.join("containers.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", root.join("registries.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start podman system service: {e}"));
        let mut podman = Podman {
            host,
            child: Some(child),
            dir: Some(dir),
        };
        podman.wait_until_up(Duration::from_secs(30));
        podman
    }

    fn folder(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.folder().join("service.log")).unwrap_or_default()
    }

    fn wait_until_up(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "podman system service exited at start ({status}); its log:\n{}",
                    self.log()
                );
            }
            if self.docker(&["version"]).status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "podman system service ({}) did not answer within {timeout:?}; its log:\n{}",
                self.host,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The docker CLI pointed at this service (Podman serves the Docker API).
    pub(crate) fn command(&self) -> Command {
        let mut cmd = Command::new(docker_bin());
        cmd.env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .args(["-H", &self.host]);
        cmd
    }

    pub(crate) fn docker(&self, args: &[&str]) -> Output {
        cli_output(self.command(), args)
    }

    pub(crate) fn docker_ok(&self, args: &[&str]) -> String {
        cli_ok(self.command(), &self.host, args)
    }

    /// Copies `image` from the main engine into this one: same image id, so the same cache
    /// keys as on Docker.
    pub(crate) fn load_image(&self, image: &str) {
        load_image_into(self.command(), &self.host, image);
    }

    /// Names of this engine's containers (any state).
    pub(crate) fn containers(&self) -> Vec<String> {
        self.docker_ok(&["ps", "-a", "--format", "{{.Names}}"])
            .lines()
            .map(str::to_string)
            .filter(|n| !n.is_empty())
            .collect()
    }

    /// Ends processes started for this service (conmon, init) that name its folder, by pid.
    fn end_leftovers(&self) {
        let dir = self.folder().display().to_string();
        let me = std::process::id().to_string();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.parse::<u32>().is_err() || name == me {
                continue;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&dir) {
                let _ = run("kill", &["-KILL", &name]);
            }
        }
    }

    fn stop(&mut self) {
        if self.dir.is_none() {
            return;
        }
        let ids = self.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        if let Some(mut child) = self.child.take() {
            let _ = run("kill", &["-TERM", &child.id().to_string()]);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !matches!(child.try_wait(), Ok(Some(_))) {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.end_leftovers();
        unmount_below(self.folder());
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_path_buf();
            if dir.close().is_err() {
                let _ = std::fs::remove_dir_all(path);
            }
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        self.stop();
    }
}
