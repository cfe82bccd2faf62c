//! Extra Docker engines on this machine: `dockerd` instances with their own `--data-root`,
//! `--exec-root`, `--pidfile`, socket and bridge, for tests that spread work over several
//! engines. One can listen on `tcp://127.0.0.1:PORT` with TLS (certificates made here with the
//! `openssl` CLI).
//!
//! Each daemon gets a bridge of its own, made first with `ip link add NAME type bridge` and
//! passed as `--bridge NAME --iptables=false --ip-masq=false`: `--bridge none` on a second
//! daemon deletes the main engine's `docker0`. Drop stops the daemon (SIGTERM, then SIGKILL of
//! it and its containerd), unmounts what it left, deletes its bridge and its folder, also on
//! panic. Starting fails loudly: a test never silently runs on fewer engines.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::engine::docker_bin;
use super::registry::free_port;

/// One extra engine.
pub(crate) struct Daemon {
    /// The `DOCKER_HOST` of this daemon: `unix:///...sock` or `tcp://127.0.0.1:PORT`.
    pub(crate) host: String,
    /// The value to give `pipeline apply --engine` (with `?cert_path=DIR` for TLS).
    pub(crate) engine_arg: String,
    /// Client certificates (`ca.pem`, `cert.pem`, `key.pem`) when the daemon uses TLS.
    pub(crate) client_certs: Option<PathBuf>,
    pub(crate) bridge: String,
    child: Option<Child>,
    /// The `dockerd` arguments, to start it again after a restart.
    args: Vec<String>,
    exec_root: PathBuf,
    dir: Option<tempfile::TempDir>,
}

pub(crate) fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

fn run_ok(cmd: &str, args: &[&str]) {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deletes bridges left by test processes that no longer exist (`plt<PID>x<N>`).
fn sweep_stale_bridges() {
    let out = run("ip", &["-o", "link", "show", "type", "bridge"]);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line
            .split(':')
            .nth(1)
            .map(|s| s.trim().split('@').next().unwrap_or(""))
        else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix("plt")
            .and_then(|r| r.split_once('x'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run("ip", &["link", "del", name]);
        }
    }
}

/// A /24 of 10.213.0.0/16 that no interface of this machine uses yet.
fn free_subnet() -> u8 {
    let out = run("ip", &["-o", "-4", "addr", "show"]);
    let used = String::from_utf8_lossy(&out.stdout).to_string();
    let start = (std::process::id() % 200) as u8;
    (0..=250u8)
        .map(|k| 2 + (start.wrapping_add(k)) % 250)
        .find(|x| !used.contains(&format!("10.213.{x}.")))
        .expect("no free 10.213.x.0/24 subnet")
}

/// Makes a CA, a server certificate for 127.0.0.1 and a client certificate in `dir`; returns
/// (server folder, client folder).
fn make_certs(dir: &Path) -> (PathBuf, PathBuf) {
    let which = run("sh", &["-c", "command -v openssl"]);
    assert!(
        which.status.success(),
        "the openssl CLI is missing: apt-get install -y openssl"
    );
    let server = dir.join("server");
    let client = dir.join("client");
    std::fs::create_dir_all(&server).unwrap();
    std::fs::create_dir_all(&client).unwrap();
    let d = dir.display();
    let script = format!(
        r"set -e
cd {d}
openssl genrsa -out ca-key.pem 2048
openssl req -new -x509 -days 2 -key ca-key.pem -sha256 -subj /CN=pipeline-test-ca -out ca.pem
openssl genrsa -out server/key.pem 2048
openssl req -new -key server/key.pem -subj /CN=127.0.0.1 -sha256 -out server.csr
printf 'subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\n' > server.ext
openssl x509 -req -days 2 -sha256 -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out server/cert.pem -extfile server.ext
openssl genrsa -out client/key.pem 2048
openssl req -new -key client/key.pem -subj /CN=pipeline-test-client -out client.csr
printf 'extendedKeyUsage = clientAuth\n' > client.ext
openssl x509 -req -days 2 -sha256 -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out client/cert.pem -extfile client.ext
cp ca.pem server/ca.pem
cp ca.pem client/ca.pem
"
    );
    let out = run("sh", &["-c", &script]);
    assert!(
        out.status.success(),
        "making TLS certificates failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (server, client)
}

impl Daemon {
    /// A daemon on a unix socket.
    pub(crate) fn start() -> Daemon {
        Self::launch(false)
    }

    /// A daemon on tcp://127.0.0.1:PORT that requires TLS client certificates.
    pub(crate) fn start_tls() -> Daemon {
        Self::launch(true)
    }

    fn launch(tls: bool) -> Daemon {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        sweep_stale_bridges();
        let dir = tempfile::Builder::new()
            .prefix("pl-dockerd-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let root = dir.path().to_path_buf();
        let bridge = format!("plt{}x{n}", std::process::id());
        assert!(bridge.len() <= 15, "bridge name {bridge} too long");
        let _ = run("ip", &["link", "del", &bridge]);
        run_ok("ip", &["link", "add", &bridge, "type", "bridge"]);
        let mut daemon = Daemon {
            host: String::new(),
            engine_arg: String::new(),
            client_certs: None,
            bridge: bridge.clone(),
            child: None,
            args: Vec::new(),
            exec_root: root.join("exec"),
            dir: Some(dir),
        };
        let subnet = free_subnet();
        run_ok(
            "ip",
            &[
                "addr",
                "add",
                &format!("10.213.{subnet}.1/24"),
                "dev",
                &bridge,
            ],
        );
        run_ok("ip", &["link", "set", &bridge, "up"]);
        let config = root.join("daemon.json");
        std::fs::write(&config, "{}").unwrap();
        let mut args: Vec<String> = vec![
            "--config-file".into(),
            config.display().to_string(),
            "--data-root".into(),
            root.join("data").display().to_string(),
            "--exec-root".into(),
            daemon.exec_root.display().to_string(),
            "--pidfile".into(),
            root.join("docker.pid").display().to_string(),
            "--bridge".into(),
            bridge.clone(),
            "--iptables=false".into(),
            "--ip-masq=false".into(),
            "--storage-driver".into(),
            "overlay2".into(),
        ];
        if tls {
            let (server, client) = make_certs(&root);
            let port = free_port();
            daemon.host = format!("tcp://127.0.0.1:{port}");
            daemon.engine_arg = format!("{}?cert_path={}", daemon.host, client.display());
            daemon.client_certs = Some(client);
            args.extend([
                "--tlsverify".into(),
                "--tlscacert".into(),
                server.join("ca.pem").display().to_string(),
                "--tlscert".into(),
                server.join("cert.pem").display().to_string(),
                "--tlskey".into(),
                server.join("key.pem").display().to_string(),
                "-H".into(),
                daemon.host.clone(),
            ]);
        } else {
            daemon.host = format!("unix://{}", root.join("docker.sock").display());
            daemon.engine_arg = daemon.host.clone();
            args.extend(["-H".into(), daemon.host.clone()]);
        }
        daemon.args = args;
        daemon.spawn();
        daemon
    }

    /// Starts `dockerd` (again) with the daemon's arguments and waits until it answers.
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.as_ref().unwrap().path().join("dockerd.log"))
            .expect("dockerd log");
        let child = Command::new("dockerd")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run dockerd ({e}); run scripts/setup.sh"));
        self.child = Some(child);
        self.wait_until_up(Duration::from_secs(60));
    }

    /// Restarts the daemon as a service manager would: SIGTERM (it stops its containers),
    /// wait for it to exit, start it again with the same data, socket and bridge.
    pub(crate) fn restart(&mut self) {
        self.terminate();
        self.spawn();
    }

    fn log(&self) -> String {
        let path = self.dir.as_ref().unwrap().path().join("dockerd.log");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn wait_until_up(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "dockerd ({}) exited at start ({status}); its log:\n{}",
                    self.host,
                    self.log()
                );
            }
            let out = self.docker(&["version", "--format", "{{.Server.Version}}"]);
            if out.status.success() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "dockerd ({}) did not answer within {timeout:?}: {}\nits log:\n{}",
                    self.host,
                    String::from_utf8_lossy(&out.stderr),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The docker CLI pointed at this daemon.
    pub(crate) fn command(&self) -> Command {
        let mut cmd = Command::new(docker_bin());
        cmd.env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH");
        cmd.args(["-H", &self.host]);
        if let Some(c) = &self.client_certs {
            cmd.arg("--tlsverify");
            for (flag, file) in [
                ("--tlscacert", "ca.pem"),
                ("--tlscert", "cert.pem"),
                ("--tlskey", "key.pem"),
            ] {
                cmd.arg(flag).arg(c.join(file));
            }
        }
        cmd
    }

    pub(crate) fn docker(&self, args: &[&str]) -> Output {
        cli_output(self.command(), args)
    }

    pub(crate) fn docker_ok(&self, args: &[&str]) -> String {
        cli_ok(self.command(), &self.host, args)
    }

    /// Copies `image` from the main engine into this one (`docker save | docker load`).
    pub(crate) fn load_image(&self, image: &str) {
        load_image_into(self.command(), &self.host, image);
    }

    /// Container events (`create`, `start`, `exec_start`, ...) of this engine between two
    /// unix times (seconds, fractional), as JSON values.
    pub(crate) fn events(&self, since: &str, until: &str) -> Vec<serde_json::Value> {
        events_of(&mut self.command(), since, until)
    }

    /// Stops the daemon now (as an engine that goes away would); Drop still cleans up.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.kill_containerd();
    }

    fn kill_containerd(&self) {
        // The daemon's own containerd (and its shims) would outlive a killed dockerd.
        let pidfile = self.exec_root.join("containerd").join("containerd.pid");
        if let Ok(pid) = std::fs::read_to_string(&pidfile) {
            let pid = pid.trim();
            if !pid.is_empty() {
                let _ = run("kill", &["-KILL", pid]);
            }
        }
        // Shims started for this daemon carry its (unique, temporary) folder in their
        // arguments: end exactly those, by pid.
        let Some(dir) = &self.dir else { return };
        let root = dir.path().display().to_string();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            let argv0 = cmdline.split('\0').next().unwrap_or("");
            // Only this daemon's containerd and shims (a client naming the socket must live).
            if argv0.contains("containerd") && cmdline.contains(&root) {
                let _ = run("kill", &["-KILL", &pid.to_string()]);
            }
        }
    }

    /// SIGTERM to the daemon, then SIGKILL after 20 s; then its containerd.
    fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = run("kill", &["-TERM", &child.id().to_string()]);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    _ if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    _ => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        }
        self.kill_containerd();
    }

    fn stop(&mut self) {
        self.terminate();
        // Unmount whatever the daemon left under its folder, deepest first.
        if let Some(dir) = &self.dir {
            unmount_below(dir.path());
        }
        let _ = run("ip", &["link", "del", &self.bridge]);
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_path_buf();
            if dir.close().is_err() {
                let _ = std::fs::remove_dir_all(path);
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Unmounts every mount point below `dir`, deepest first.
pub(crate) fn unmount_below(dir: &Path) {
    let prefix = dir.display().to_string();
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for m in points {
        let _ = run("umount", &["-l", m]);
    }
}

/// Runs `cmd` (a docker CLI pointed at some engine) with `args`, whatever its exit status.
pub(crate) fn cli_output(mut cmd: Command, args: &[&str]) -> Output {
    cmd.args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run docker")
}

/// Runs `cmd` (a docker CLI pointed at `host`) with `args`; panics with its stderr unless it
/// succeeds; returns the trimmed stdout.
pub(crate) fn cli_ok(cmd: Command, host: &str, args: &[&str]) -> String {
    let out = cli_output(cmd, args);
    assert!(
        out.status.success(),
        "docker -H {host} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Copies `image` from the main engine into the engine `target` (a docker CLI pointed at
/// `host`) reaches: `docker save | docker load`, so the image keeps its id.
pub(crate) fn load_image_into(mut target: Command, host: &str, image: &str) {
    let save = Command::new(docker_bin())
        .args(["save", image])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .output()
        .expect("docker save");
    assert!(
        save.status.success(),
        "docker save {image}: {}",
        String::from_utf8_lossy(&save.stderr)
    );
    let mut load = target
        .arg("load")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker load");
    load.stdin.take().unwrap().write_all(&save.stdout).unwrap();
    let out = load.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker load into {host}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `docker events --since .. --until ..` for container events, through `cmd` (a docker CLI
/// pointed at some engine).
pub(crate) fn events_of(cmd: &mut Command, since: &str, until: &str) -> Vec<serde_json::Value> {
    events_filtered(cmd, since, until, &["type=container"])
}

/// `docker events --since .. --until ..` with the given `--filter`s, through `cmd`.
pub(crate) fn events_filtered(
    cmd: &mut Command,
    since: &str,
    until: &str,
    filters: &[&str],
) -> Vec<serde_json::Value> {
    cmd.args([
        "events",
        "--format",
        "{{json .}}",
        "--since",
        since,
        "--until",
        until,
    ]);
    for f in filters {
        cmd.args(["--filter", f]);
    }
    let out = cmd.stdin(Stdio::null()).output().expect("docker events");
    assert!(
        out.status.success(),
        "docker events: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("event JSON"))
        .collect()
}

/// Now as a unix time with nanoseconds, as `docker events --since` takes it.
pub(crate) fn unix_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}
