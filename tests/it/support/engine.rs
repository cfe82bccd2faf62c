//! The Docker engine the tests drive, reached through the docker CLI (`$DOCKER`, default
//! `/usr/bin/docker`: /usr/local/bin/docker may be a newer client that is too new for the
//! 20.10 engine). The CLI honours DOCKER_HOST, so these helpers talk to the same engine as
//! `pipeline` does.

use serde_json::Value;
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The docker CLI binary: `$DOCKER`, else `/usr/bin/docker`.
pub(crate) fn docker_bin() -> String {
    std::env::var("DOCKER").unwrap_or_else(|_| "/usr/bin/docker".to_string())
}

/// Where the engine is expected, for messages.
pub(crate) fn engine_address() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string())
}

/// Panics unless a Docker engine answers. Never skips. Checked once per test binary.
pub(crate) fn require_engine() {
    static ENGINE: OnceLock<Result<String, String>> = OnceLock::new();
    let result = ENGINE.get_or_init(|| {
        match Command::new(docker_bin())
            .args(["version", "--format", "{{.Server.Version}}"])
            .output()
        {
            Ok(out) if out.status.success() => {
                Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
            }
            Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
            Err(e) => Err(format!("cannot run {}: {e}", docker_bin())),
        }
    });
    if let Err(why) = result {
        panic!(
            "no Docker engine reachable at {} ({why}); run scripts/setup.sh",
            engine_address()
        );
    }
}

/// Panics with a hint when `image` (e.g. "busybox:latest") is not in the engine.
pub(crate) fn require_image(image: &str) {
    require_engine();
    if !image_exists(image) {
        panic!(
            "base image {image} is missing from the Docker engine at {}; run scripts/setup.sh",
            engine_address()
        );
    }
}

/// Runs the docker CLI with `args` and returns its output, whatever the exit status.
pub(crate) fn docker(args: &[&str]) -> Output {
    Command::new(docker_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", docker_bin()))
}

/// Runs the docker CLI, panics (with its stderr) unless it succeeds, returns trimmed stdout.
pub(crate) fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Names of all containers (running or not) whose name starts with `prefix`.
pub(crate) fn containers_named(prefix: &str) -> Vec<String> {
    docker_ok(&["ps", "-a", "--no-trunc", "--format", "{{.Names}}"])
        .lines()
        .map(|l| l.trim().trim_start_matches('/'))
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// Force-removes every container whose name starts with `prefix` (cleanup helper).
pub(crate) fn remove_containers_named(prefix: &str) {
    for name in containers_named(prefix) {
        let _ = docker(&["rm", "-f", &name]);
    }
}

/// Removes the containers whose names start with its prefix when dropped, also when the test
/// panics.
pub(crate) struct ContainersNamed(pub(crate) String);

impl Drop for ContainersNamed {
    fn drop(&mut self) {
        remove_containers_named(&self.0);
    }
}

pub(crate) fn image_exists(reference: &str) -> bool {
    docker(&["image", "inspect", reference]).status.success()
}

/// `docker image inspect REFERENCE` as JSON (the single object, not the array), or None.
pub(crate) fn try_image_inspect(reference: &str) -> Option<Value> {
    let out = docker(&["image", "inspect", reference]);
    if !out.status.success() {
        return None;
    }
    let v: Value =
        serde_json::from_slice(&out.stdout).expect("docker image inspect printed invalid JSON");
    v.as_array().and_then(|a| a.first()).cloned()
}

/// `docker image inspect REFERENCE` as JSON; panics when the image does not exist.
pub(crate) fn image_inspect(reference: &str) -> Value {
    try_image_inspect(reference)
        .unwrap_or_else(|| panic!("image {reference} does not exist in the engine"))
}

/// Removes an image reference if present (cleanup helper; ignores errors).
pub(crate) fn remove_image(reference: &str) {
    let _ = docker(&["rmi", "-f", reference]);
}

/// Records engine events from the moment `start` returns until `stop`.
///
/// Runs `docker events --format '{{json .}}' --filter since=<start time, ns precision>` in a child
/// process. `stop` also replays the same window once more (`--since .. --until ..`) and merges,
/// so events still in flight when `stop` is called are not lost (the engine keeps the last 256).
/// The engine records every event of every client: when tests run in parallel, narrow the
/// events down (e.g. [`with_container_name_prefix`]) or pass filters to `start_with_filters`.
pub(crate) struct EventRecorder {
    child: Option<Child>,
    reader: Option<JoinHandle<()>>,
    lines: Arc<Mutex<Vec<String>>>,
    since: String,
    filters: Vec<String>,
}

impl EventRecorder {
    pub(crate) fn start() -> EventRecorder {
        Self::start_with_filters(&[])
    }

    /// `filters` are `docker events --filter` values, e.g. `"type=container"`, `"label=a=b"`.
    pub(crate) fn start_with_filters(filters: &[&str]) -> EventRecorder {
        require_engine();
        let since = unix_now();
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        let mut cmd = Command::new(docker_bin());
        cmd.args([
            "events",
            "--format",
            "{{json .}}",
            "--filter",
            &format!("since={since}"),
        ]);
        for f in &filters {
            cmd.args(["--filter", f]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} events: {e}", docker_bin()));
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) if !l.trim().is_empty() => sink.lock().unwrap().push(l),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        // Wait until the CLI has a connected socket to the engine, then give it time to subscribe.
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !has_connected_socket(pid) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "docker events exited early ({status}); is the engine at {} up?",
                    engine_address()
                );
            }
            assert!(
                Instant::now() < deadline,
                "docker events did not connect to the engine within 10 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
        EventRecorder {
            child: Some(child),
            reader: Some(reader),
            lines,
            since,
            filters,
        }
    }

    /// Stops recording and returns the events in engine order (by `timeNano`).
    pub(crate) fn stop(mut self) -> Vec<Value> {
        let until = unix_now();
        std::thread::sleep(Duration::from_millis(100));
        self.kill();
        let mut seen = HashSet::new();
        let mut all: Vec<String> = std::mem::take(&mut *self.lines.lock().unwrap());
        // Replay the window from the engine's buffer: catches events not yet delivered live.
        let mut args = vec![
            "events".to_string(),
            "--format".into(),
            "{{json .}}".into(),
            "--since".into(),
            self.since.clone(),
            "--until".into(),
            until,
        ];
        for f in &self.filters {
            args.push("--filter".into());
            args.push(f.clone());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let replay = docker(&args);
        if replay.status.success() {
            all.extend(
                String::from_utf8_lossy(&replay.stdout)
                    .lines()
                    .map(str::to_string),
            );
        }
        let mut events: Vec<Value> = all
            .into_iter()
            .filter(|l| !l.trim().is_empty() && seen.insert(l.clone()))
            .map(|l| {
                serde_json::from_str(&l).unwrap_or_else(|e| panic!("bad event line {l:?}: {e}"))
            })
            .collect();
        events.sort_by_key(|e| e["timeNano"].as_i64().unwrap_or(0));
        events
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for EventRecorder {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Events of type `typ` ("container", "image", "network", ...) whose Action starts with `action_prefix`.
pub(crate) fn count_events(events: &[Value], typ: &str, action_prefix: &str) -> usize {
    events
        .iter()
        .filter(|e| {
            e["Type"] == typ
                && e["Action"]
                    .as_str()
                    .is_some_and(|a| a.starts_with(action_prefix))
        })
        .count()
}

/// Container creations (Type=container, Action=create).
pub(crate) fn container_creates(events: &[Value]) -> usize {
    events
        .iter()
        .filter(|e| e["Type"] == "container" && e["Action"] == "create")
        .count()
}

/// Exec starts. The 20.10 engine prints them as Action `"exec_start: CMD ARGS "` (and
/// `"exec_create: ..."`, then `"exec_die"` with Actor.Attributes.exitCode).
pub(crate) fn exec_starts(events: &[Value]) -> usize {
    count_events(events, "container", "exec_start")
}

/// Container events whose container name (Actor.Attributes.name) starts with `prefix`.
pub(crate) fn with_container_name_prefix(events: &[Value], prefix: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|e| {
            e["Type"] == "container"
                && e["Actor"]["Attributes"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(prefix))
        })
        .cloned()
        .collect()
}

fn unix_now() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// True when process `pid` holds a connected unix socket or an established TCP connection.
fn has_connected_socket(pid: u32) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let inodes: HashSet<String> = fds
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy().into_owned();
            t.strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .map(str::to_string)
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    // /proc/PID/net/unix: "Num RefCount Protocol Flags Type St Inode [Path]", St 03 = connected.
    // /proc/PID/net/tcp{,6}: "sl local rem st ... inode" (inode is field 9), st 01 = established.
    let table = |file: &str, state_col: usize, inode_col: usize, state: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{file}"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > inode_col && f[state_col] == state && inodes.contains(f[inode_col])
            })
    };
    table("unix", 5, 6, "03") || table("tcp", 3, 9, "01") || table("tcp6", 3, 9, "01")
}
