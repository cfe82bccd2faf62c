//! Step container options on the real engine: cache mounts that later applies share and that
//! never reach the image, read-only host folders, tmpfs folders, the step's network, locked
//! cache mounts, and `gc --mounts`.
//!
//! `gc --mounts` removes every cache mount of the engine, so the tests that use cache mounts
//! take [`CACHES`] and run one at a time.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::harness::{busybox_pipeline, output_text, unique, Project};
use crate::support::engine::{containers_named, docker, docker_ok, remove_image, require_image};

/// Held by the tests that use cache mounts (see the module comment).
static CACHES: Mutex<()> = Mutex::new(());

fn caches() -> std::sync::MutexGuard<'static, ()> {
    CACHES.lock().unwrap_or_else(|e| e.into_inner())
}

/// The cache volumes of pipeline `name`.
fn volumes_of(name: &str) -> Vec<String> {
    docker_ok(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("label=pipeline.cache-mount.pipeline={name}"),
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

fn remove_volumes_of(name: &str) {
    for v in volumes_of(name) {
        let _ = docker(&["volume", "rm", "-f", &v]);
    }
}

/// Runs `script` in a fresh container of `image`; returns its stdout.
fn in_image(image: &str, script: &str) -> String {
    docker_ok(&["run", "--rm", image, "sh", "-c", script])
}

#[test]
fn a_cache_mount_is_shared_by_later_applies_and_nothing_mounted_reaches_the_image() {
    require_image("busybox:latest");
    let _serial = caches();
    let name = unique("mounts-cache");
    let image = format!("mounts/{name}:1");
    let p = Project::new();
    p.file("vendor/lib.txt", "vendored\n");
    let pipeline = |marker: &str| {
        busybox_pipeline(
            &name,
            &format!(
                "[[step]]\nname = \"image content\"\nrun = \"mkdir -p /cache && echo image > /cache/from-image\"\n\n\
                 [[step]]\nname = \"count\"\n\
                 run = \"echo {marker} >> /cache/runs; echo runs=$(wc -l < /cache/runs); ls /cache; \
                 cat /src/vendor/lib.txt; echo x > /src/vendor/new || echo read-only-mount; \
                 echo scratch > /scratch/file && echo tmpfs-written\"\n\
                 cache = [\"/cache\"]\nmounts = [{{ src = \"vendor\", dest = \"/src/vendor\" }}]\n\
                 tmpfs = [\"/scratch\"]\n\n\
                 [commit]\ntags = [\"{image}\"]\n"
            ),
        )
    };
    // The marker makes the commands this test's own: cache keys do not depend on the name.
    p.pipeline(&pipeline(&format!("first-{name}")));
    let first = p.apply_ok(&name, &[]);
    assert!(first.contains("runs=1"), "{first}");
    assert!(first.contains("vendored"), "{first}");
    assert!(first.contains("read-only-mount"), "{first}");
    assert!(first.contains("tmpfs-written"), "{first}");
    // The cache starts empty: what the image had at the path is hidden from the step.
    assert!(!first.contains("] from-image"), "{first}");
    assert_eq!(volumes_of(&name).len(), 1, "one volume for the one cache");

    // plan shows the options where it shows the step.
    let plan = p
        .cmd(&["plan", "--offline", "pipeline.toml"])
        .output()
        .unwrap();
    let plan_text = output_text(&plan);
    assert!(
        plan_text.contains(
            "count: cached; cache /cache, mount vendor -> /src/vendor (read-only), tmpfs /scratch"
        ),
        "{plan_text}"
    );

    // A changed command runs again, with the cache as the first apply left it.
    p.pipeline(&pipeline(&format!("second-{name}")));
    let second = p.apply_ok(&name, &[]);
    assert!(second.contains("cached [1/2]"), "{second}");
    assert!(second.contains("runs=2"), "{second}");

    // The image holds what the image had at those paths, nothing the step wrote there.
    let listing = in_image(&image, "ls -A /cache /scratch /src/vendor");
    assert_eq!(
        listing.split_whitespace().collect::<Vec<_>>(),
        ["/cache:", "from-image", "/scratch:", "/src/vendor:"],
        "{listing}"
    );

    // A changed mounted folder is a changed step (its content is part of the key).
    p.file("vendor/lib.txt", "vendored v2\n");
    let third = p.apply_ok(&name, &[]);
    assert!(third.contains("vendored v2"), "{third}");
    assert!(third.contains("runs=3"), "{third}");

    // gc --mounts: listed by a dry run, removed for real.
    let dry = p.cmd(&["gc", "--mounts", "--dry-run"]).output().unwrap();
    let dry_text = output_text(&dry);
    assert!(dry.status.success(), "{dry_text}");
    let volume = &volumes_of(&name)[0];
    assert!(
        dry_text.contains(&format!(
            "would remove cache mount {volume} (pipeline {name}, /cache, linux/"
        )),
        "{dry_text}"
    );
    assert_eq!(volumes_of(&name).len(), 1, "a dry run removes nothing");
    let gc = p.cmd(&["gc", "--mounts"]).output().unwrap();
    let gc_text = output_text(&gc);
    assert!(gc.status.success(), "{gc_text}");
    assert!(
        gc_text.contains(&format!("removed cache mount {volume}")),
        "{gc_text}"
    );
    assert!(volumes_of(&name).is_empty(), "{gc_text}");
    remove_image(&image);
}

/// The names of this host's network interfaces.
fn host_interfaces() -> std::collections::BTreeSet<String> {
    std::fs::read_dir("/sys/class/net")
        .expect("/sys/class/net")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// What a probe in a step prints about its network: its interfaces (`ifaces=lo,eth0,`), then
/// whether a connection to port 9 (discard, closed) of its default gateway is refused. The
/// gateway is read from the step's own routing table, the one place that knows it whatever
/// the engine's bridge and however the engine was started; a step without a route probes a
/// documentation address (TEST-NET-1), which no interface but a real one could route.
const NETWORK_PROBE: &str =
    "echo ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\\\n' ,); \
     gw=$(ip route | awk '/^default/ {print $3; exit}'); echo gateway=${gw:-none}; \
     nc -w 3 ${gw:-192.0.2.1} 9 </dev/null 2>&1 | tr A-Z a-z | sed 's/^/connect: /'; true";

#[test]
fn a_step_without_network_reaches_nothing_and_a_host_network_step_sees_the_hosts() {
    require_image("busybox:latest");
    let name = unique("mounts-net");
    let probe = NETWORK_PROBE;
    let p = Project::new();
    p.pipeline(&busybox_pipeline(
        &name,
        &format!(
            "[[step]]\nname = \"isolated\"\nnetwork = \"none\"\nrun = \"echo none; {probe}\"\n\n\
             [[step]]\nname = \"bridged\"\nrun = \"echo default; {probe}\"\n\n\
             [[step]]\nname = \"host\"\nnetwork = \"host\"\nrun = \"echo host; {probe}\"\n"
        ),
    ));
    let before = host_interfaces();
    let text = p.apply_ok(&name, &["--no-cache"]);
    // Interfaces other tests add and remove meanwhile (their bridges, containers' veths) are
    // not this host's for certain: those present before and after are.
    let stable: Vec<String> = before
        .intersection(&host_interfaces())
        .filter(|i| !i.starts_with("veth"))
        .cloned()
        .collect();
    let section = |label: &str| -> String {
        let start = text
            .find(&format!("] {label}\n"))
            .unwrap_or_else(|| panic!("no `{label}` output:\n{text}"));
        text[start..].lines().take(5).collect::<Vec<_>>().join("\n")
    };
    let ifaces = |section: &str| -> Vec<String> {
        let list = section
            .split("ifaces=")
            .nth(1)
            .and_then(|rest| rest.lines().next())
            .unwrap_or_else(|| panic!("no interface list:\n{section}"));
        list.split(',')
            .filter(|i| !i.is_empty())
            .map(str::to_string)
            .collect()
    };
    let none = section("none");
    assert_eq!(ifaces(&none), ["lo"], "only a loopback interface:\n{none}");
    assert!(
        none.contains("gateway=none")
            && none.contains("network is unreachable")
            && !none.contains("refused"),
        "a step without network has no route anywhere:\n{none}"
    );
    let bridged = section("default");
    assert_eq!(ifaces(&bridged), ["eth0", "lo"], "{bridged}");
    assert!(
        !bridged.contains("gateway=none") && bridged.contains("refused"),
        "the probe reaches the gateway with a network:\n{bridged}"
    );
    let host = section("host");
    let seen = ifaces(&host);
    let missing: Vec<&String> = stable.iter().filter(|i| !seen.contains(i)).collect();
    assert!(
        missing.is_empty() && stable.len() > 1,
        "the host's interfaces ({stable:?}), missing {missing:?}:\n{host}"
    );
}

#[test]
fn a_locked_cache_mount_is_used_by_one_apply_at_a_time_and_a_stale_lock_is_taken_over() {
    require_image("busybox:latest");
    let _serial = caches();
    let name = unique("mounts-lock");
    let step = "[[step]]\nname = \"use the cache\"\n\
                cache = [{ path = \"/shared\", sharing = \"locked\" }]\n\
                run = \"echo start >> /shared/log; sleep 2; echo end >> /shared/log; cat /shared/log | tr '\\\\n' ' '; echo\"\n";
    let projects: Vec<Project> = (0..2)
        .map(|_| {
            let p = Project::new();
            p.pipeline(&busybox_pipeline(&name, step));
            p
        })
        .collect();
    let children: Vec<_> = projects
        .iter()
        .map(|p| {
            p.std_cmd(&["apply", "--no-cache", "pipeline.toml"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            let text = output_text(&out);
            assert!(out.status.success(), "{text}");
            text
        })
        .collect();
    let all = outputs.join("\n");
    assert!(
        all.contains("start end start end"),
        "the two applies used the cache one after the other:\n{all}"
    );
    assert!(
        all.contains("waiting: cache `/shared` is locked by another apply"),
        "{all}"
    );
    assert!(containers_named("pipeline-lock.").is_empty());

    // A lock whose owner is gone (here: a stopped container of the lock's name) is taken over.
    let volume = volumes_of(&name).pop().expect("the cache volume");
    let digest = volume.rsplit('-').next().unwrap();
    let lock = format!("pipeline-lock.{digest}");
    docker_ok(&["create", "--name", &lock, "busybox:latest", "true"]);
    docker_ok(&["start", &lock]);
    let started = Instant::now();
    let text = projects[0].apply_ok(&name, &["--no-cache"]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the stale lock held the apply:\n{text}"
    );
    assert!(text.contains("start end start end start end"), "{text}");
    let locks = containers_named("pipeline-lock.");
    assert!(locks.is_empty(), "lock containers left behind: {locks:?}");
    remove_volumes_of(&name);
}

#[test]
fn apt_downloads_nothing_again_with_warm_cache_mounts() {
    require_image("debian:bookworm");
    let _serial = caches();
    let name = unique("mounts-apt");
    let image = format!("mounts/{name}:1");
    let p = Project::new();
    let pipeline = |extra: &str| {
        format!(
            "name = \"{name}\"\n[base]\nimage = \"debian:bookworm\"\npull = \"never\"\n\n\
             [[step]]\nname = \"install vim\"\n\
             env = {{ DEBIAN_FRONTEND = \"noninteractive\" }}\n\
             cache = [\"/var/cache/apt\", \"/var/lib/apt/lists\"]\n\
             run = \"\"\"\nrm -f /etc/apt/apt.conf.d/docker-clean\n\
             echo 'Binary::apt::APT::Keep-Downloaded-Packages \"true\";' > /etc/apt/apt.conf.d/keep-cache\n\
             apt-get update && apt-get install -y --no-install-recommends vim{extra}\n# {name}\n\"\"\"\n\n\
             [commit]\ntags = [\"{image}\"]\n"
        )
    };
    p.pipeline(&pipeline(""));
    let started = Instant::now();
    let first = p.apply_ok(&name, &[]);
    let cold = started.elapsed();
    let fetched = |text: &str, what: &str| {
        text.lines()
            .filter(|l| l.contains("] Get:") && l.contains(what))
            .count()
    };
    assert_eq!(fetched(&first, "amd64 vim "), 1, "{first}");
    assert!(fetched(&first, "Packages") >= 1, "{first}");

    p.pipeline(&pipeline(" && echo rebuilt"));
    let started = Instant::now();
    let second = p.apply_ok(&name, &[]);
    let warm = started.elapsed();
    eprintln!("[mounts] apt step cold {cold:?}, rebuilt with warm cache mounts {warm:?}");
    assert!(second.contains("rebuilt"), "{second}");
    assert_eq!(
        fetched(&second, "Packages") + fetched(&second, "Translation") + fetched(&second, " all "),
        0,
        "nothing but the release file is downloaded again:\n{second}"
    );
    assert!(
        second.contains("Need to get 0 B/"),
        "every package comes from the cache:\n{second}"
    );

    // The image has vim and what the base had at the cache paths, no package and no list.
    assert!(in_image(&image, "vim --version | head -1").contains("VIM"));
    let paths = "ls -A /var/cache/apt /var/lib/apt/lists";
    assert_eq!(in_image(&image, paths), in_image("debian:bookworm", paths));
    remove_image(&image);
    remove_volumes_of(&name);
}
