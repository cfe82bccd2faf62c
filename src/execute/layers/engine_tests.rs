//! The tool's layer of a container against the engine's own layer of the same container (its
//! commit, as `docker save` gives it): the same entries, each with the same type, permission
//! bits, owner, size, content and link target. On the machine's Docker engine.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::Command;

use sha2::{Digest as _, Sha256};

use super::*;
use crate::engine::docker::DockerEngine;

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes the test's containers and images however the test ends.
struct Cleanup(Vec<(&'static str, String)>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (what, name) in self.0.iter().rev() {
            let _ = Command::new("docker").args([what, "-f", name]).output();
        }
    }
}

/// What a layer entry is, for comparing: type, mode bits, uid, gid, size, content sha256,
/// link target.
type Facts = (char, u32, u64, u64, u64, String, Vec<u8>);

fn entries(tar: impl Read) -> BTreeMap<Vec<u8>, Facts> {
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(tar);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let path = crate::image::tarfmt::clean(&e.path_bytes());
        let ty = h.entry_type().as_byte() as char;
        let link = match ty {
            '1' => crate::image::tarfmt::clean(&e.link_name_bytes().unwrap()),
            '2' => e.link_name_bytes().unwrap().into_owned(),
            _ => Vec::new(),
        };
        let mut content = Vec::new();
        e.read_to_end(&mut content).unwrap();
        let uid = e
            .pax_extensions()
            .unwrap()
            .and_then(|p| {
                p.flatten()
                    .find(|x| x.key_bytes() == b"uid")
                    .map(|x| String::from_utf8_lossy(x.value_bytes()).parse().unwrap())
            })
            .unwrap_or(h.uid().unwrap());
        out.insert(
            path,
            (
                ty,
                h.mode().unwrap() & 0o7777,
                uid,
                h.gid().unwrap(),
                content.len() as u64,
                hex::encode(Sha256::digest(&content)),
                link,
            ),
        );
    }
    out
}

/// The layers of the engine's commit of container `id`, as `docker save` gives them: the
/// file system of its image (the lower layers unpacked), and its own top layer.
fn engine_layer(id: &str, image: &str, cleanup: &mut Cleanup) -> (Tree, Tree) {
    docker(&["commit", id, image]);
    cleanup.0.push(("rmi", image.to_string()));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("image.tar");
    docker(&["save", "-o", file.to_str().unwrap(), image]);
    let mut archive = tar::Archive::new(std::fs::File::open(&file).unwrap());
    archive.unpack(dir.path().join("x")).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("x/manifest.json")).unwrap())
            .unwrap();
    let layers = manifest[0]["Layers"].as_array().unwrap();
    let read = |l: &serde_json::Value| {
        entries(std::fs::File::open(dir.path().join("x").join(l.as_str().unwrap())).unwrap())
    };
    let mut below = Tree::new();
    for l in &layers[..layers.len() - 1] {
        unpack(&mut below, &read(l));
    }
    (below, read(layers.last().unwrap()))
}

type Tree = BTreeMap<Vec<u8>, Facts>;

/// Unpacks `layer` onto `tree` as an engine does: whiteouts and opaque markers first.
fn unpack(tree: &mut Tree, layer: &Tree) {
    let below = |tree: &Tree, dir: &[u8]| -> Vec<Vec<u8>> {
        let mut prefix = dir.to_vec();
        prefix.push(b'/');
        tree.keys()
            .filter(|k| k.starts_with(&prefix))
            .cloned()
            .collect()
    };
    for path in layer.keys() {
        let (dir, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&b""[..], &path[..]),
        };
        if name == b".wh..wh..opq" {
            for k in below(tree, dir) {
                tree.remove(&k);
            }
        } else if let Some(gone) = name.strip_prefix(b".wh.") {
            let target = crate::image::tarfmt::join(dir, gone);
            for k in below(tree, &target) {
                tree.remove(&k);
            }
            tree.remove(&target);
        }
    }
    for (path, facts) in layer {
        let name = path.rsplit(|&b| b == b'/').next().unwrap();
        if !name.starts_with(b".wh.") {
            tree.insert(path.clone(), facts.clone());
        }
    }
}

/// The tool's layer of container `id`, read path by path (`whole = false`) or from the whole
/// file system.
async fn tool_layer(id: &str, store: &BlobStore, whole: bool) -> (Layer, BTreeMap<Vec<u8>, Facts>) {
    let engine = engine().await;
    let started = std::time::Instant::now();
    let size = if whole { 0 } else { u64::MAX };
    let layer = container_layer(
        &engine,
        id,
        size,
        store,
        LayerSettings::default(),
        1_700_000_000,
    )
    .await
    .unwrap();
    eprintln!(
        "layer of {id}: {} bytes, {} compressed, in {:?}",
        layer.tar_size,
        layer.blob.size,
        started.elapsed()
    );
    let blob = store.open(&layer.blob.digest).unwrap();
    let tar = flate2::read::MultiGzDecoder::new(blob);
    (layer, entries(tar))
}

fn assert_same(ours: &Tree, engine: &Tree) {
    let show = |m: &BTreeMap<Vec<u8>, Facts>| {
        m.iter()
            .map(|(k, v)| format!("{} {v:?}", String::from_utf8_lossy(k)))
            .collect::<Vec<_>>()
    };
    let (o, e) = (show(ours), show(engine));
    let only_ours: Vec<_> = o.iter().filter(|x| !e.contains(x)).collect();
    let only_engine: Vec<_> = e.iter().filter(|x| !o.contains(x)).collect();
    assert!(
        only_ours.is_empty() && only_engine.is_empty(),
        "only in the tool's layer: {only_ours:#?}\nonly in the engine's: {only_engine:#?}"
    );
}

/// The tool's layer against the engine's: each of its entries is the engine's entry at that
/// path (whiteouts aside), and both unpack to the same file system on the image. The engine's
/// layer may hold more: what overlay copied up without changing it (a lock file opened for
/// writing; a folder whose only change is its time) and opaque markers where the tool writes
/// the deletions the engine listed, which unpack to the same.
fn compare(below: &Tree, ours: &Tree, engine: &Tree) {
    let whiteout = |p: &[u8]| {
        p.rsplit(|&b| b == b'/')
            .next()
            .unwrap()
            .starts_with(b".wh.")
    };
    let ours_only: Tree = ours
        .iter()
        .filter(|(p, f)| !whiteout(p) && engine.get(*p) != Some(*f))
        .map(|(p, f)| (p.clone(), f.clone()))
        .collect();
    assert_same(&ours_only, &Tree::new());
    let (mut a, mut b) = (below.clone(), below.clone());
    unpack(&mut a, ours);
    unpack(&mut b, engine);
    assert_same(&a, &b);
}

/// A container of `image` that stays up (`sleep`), removed by `cleanup`; its id.
fn container(image: &str, what: &str, cleanup: &mut Cleanup) -> String {
    let name = unique(what);
    let id = docker(&["run", "-d", "--name", &name, image, "sleep", "900"]);
    cleanup.0.push(("rm", name));
    id
}

/// The machine's Docker engine.
async fn engine() -> DockerEngine {
    DockerEngine::connect_url("unix:///var/run/docker.sock", None)
        .await
        .expect("the Docker engine at /var/run/docker.sock")
}

fn unique(what: &str) -> String {
    format!("pipeline-layers-{what}-{}", crate::execute::run_id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_holds_what_the_engines_own_layer_holds() {
    let mut cleanup = Cleanup(Vec::new());
    // A parent with folders to delete and to make again.
    let parent = unique("parent");
    docker(&["run", "--name", &parent, "busybox:latest", "sh", "-c",
        "mkdir -p /srv/old/sub /srv/gone && echo a > /srv/old/a && echo b > /srv/old/sub/b && echo g > /srv/gone/g && echo keep > /etc/keep"]);
    cleanup.0.push(("rm", parent.clone()));
    let parent_image = unique("parent-image");
    docker(&["commit", &parent, &parent_image]);
    cleanup.0.push(("rmi", parent_image.clone()));
    let id = container(&parent_image, "box", &mut cleanup);
    let script = r#"set -e
mkdir -p /opt/a && echo hi > /opt/a/f && ln /opt/a/f /opt/a/g && ln /opt/a/f /tmp/h
chmod 4755 /opt/a/f && chown 1000:1001 /opt/a
printf x > "/tmp/caf$(printf '\351')"
mkdir "/tmp/d$(printf '\377')" && echo y > "/tmp/d$(printf '\377')/inner"
rm /etc/keep /etc/passwd
rm -rf /srv/old /srv/gone && mkdir /srv/old && echo n > /srv/old/new
ln -s /nowhere /tmp/sym && mkfifo /tmp/fifo
touch /bin/busybox && cp -p /bin/busybox /bin/copy
mkdir -p /deep/a/b/c/d && echo deep > /deep/a/b/c/d/e
echo more >> /etc/group
"#;
    docker(&["exec", &id, "sh", "-c", script]);
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::at(dir.path());
    let (below, engine) = engine_layer(&id, &unique("commit"), &mut cleanup);
    for whole in [false, true] {
        let (_, ours) = tool_layer(&id, &store, whole).await;
        for must in [
            &b"tmp/caf\xe9"[..],
            b"etc/.wh.passwd",
            b"srv/.wh.gone",
            b"tmp/h",
        ] {
            assert!(ours.contains_key(must), "{}", String::from_utf8_lossy(must));
        }
        assert_eq!(ours[&b"tmp/h"[..]].0, '1', "a hard link stays one");
        assert_eq!(ours[&b"bin/copy"[..]].0, '0', "an equal copy stays a file");
        compare(&below, &ours, &engine);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debian_apt_layer_holds_what_the_engines_own_layer_holds() {
    let mut cleanup = Cleanup(Vec::new());
    let id = container("debian:bookworm", "apt", &mut cleanup);
    docker(&[
        "exec",
        "-e",
        "DEBIAN_FRONTEND=noninteractive",
        &id,
        "sh",
        "-c",
        "apt-get update -qq && apt-get install -y -qq --no-install-recommends file >/dev/null",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::at(dir.path());
    let (below, engine) = engine_layer(&id, &unique("apt-commit"), &mut cleanup);
    let (layer, ours) = tool_layer(&id, &store, true).await;
    assert!(ours.len() > 50, "{} entries", ours.len());
    compare(&below, &ours, &engine);
    // Path by path, or again: the same bytes.
    let (by_path, _) = tool_layer(&id, &store, false).await;
    assert_eq!(by_path, layer);
}

/// `image` as a `docker save` archive (its layers compressed, which `docker load` reads).
fn docker_archive(image: &crate::image::Image, store: &BlobStore, tag: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, bytes: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, bytes).unwrap();
    };
    let read = |digest: &str| {
        let mut v = Vec::new();
        store.open(digest).unwrap().read_to_end(&mut v).unwrap();
        v
    };
    add("config.json", &read(&image.config.digest));
    let mut names = Vec::new();
    for (i, l) in image.layers.iter().enumerate() {
        let name = format!("layer{i}.tar.gz");
        add(&name, &read(&l.digest));
        names.push(name);
    }
    let manifest =
        serde_json::json!([{"Config": "config.json", "RepoTags": [tag], "Layers": names}]);
    add("manifest.json", manifest.to_string().as_bytes());
    b.into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(
    clippy::too_many_lines,
    reason = "one scenario: commit, write the same image, load it, compare every config field"
)]
async fn an_image_the_tool_writes_loads_with_the_config_the_engines_commit_stores() {
    use crate::engine::{CommitSpec, ImageConfig};
    use crate::image::config::{assemble, History, Parts};
    let mut cleanup = Cleanup(Vec::new());
    let engine = engine().await;
    let id = container("busybox:latest", "load", &mut cleanup);
    docker(&["exec", &id, "sh", "-c", "echo made > /made && rm /bin/vi"]);
    let base = engine
        .inspect_image("busybox:latest")
        .await
        .unwrap()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::at(dir.path());
    let settings = LayerSettings::default();
    let base_image = base_image(&engine, &base, &store, settings.compression)
        .await
        .unwrap();
    assert!(
        super::recorded_base(
            &store,
            &format!("{}\n{}", base.id, settings.compression.id())
        )
        .is_some(),
        "found again without the engine"
    );
    let layer = container_layer(&engine, &id, base.size, &store, settings, 1_700_000_000)
        .await
        .unwrap();
    let mut labels = std::collections::BTreeMap::new();
    labels.insert("a".to_string(), "1".to_string());
    let config = ImageConfig {
        cmd: Some(vec!["sh".into(), "-c".into(), "cat /made".into()]),
        env: vec!["PATH=/bin".into(), "A=1".into()],
        labels,
        exposed_ports: vec!["80/tcp".into()],
        workdir: "/srv".into(),
        user: "0:0".into(),
        volumes: vec!["/data".into()],
        stop_signal: Some("SIGQUIT".into()),
        ..ImageConfig::default()
    };
    let committed = engine
        .commit(
            &id,
            &CommitSpec {
                author: None,
                message: None,
                config: config.clone(),
                // `sleep` is its command, the entrypoint the image's null.
                cat_as_command: true,
            },
        )
        .await
        .unwrap();
    cleanup.0.push(("rmi", committed.clone()));
    let stored = engine.inspect_image(&committed).await.unwrap().unwrap();
    let platform = crate::model::Platform {
        os: "linux".into(),
        arch: engine.platform().await.unwrap().1,
        variant: None,
    };
    let image = assemble(
        &store,
        &Parts {
            base: &base_image,
            layers: vec![(
                layer,
                History {
                    created: Some(rfc3339(1_700_000_000)),
                    created_by: Some("pipeline load: step 1 (make)".into()),
                    ..Default::default()
                },
            )],
            runtime: runtime_config(&config),
            platform: &platform,
            created: rfc3339(1_700_000_000),
            author: None,
            oci: false,
        },
    )
    .unwrap();
    let tag = format!("{}:1", unique("loaded"));
    let archive = dir.path().join("image.tar");
    std::fs::write(&archive, docker_archive(&image, &store, &tag)).unwrap();
    docker(&["load", "-i", archive.to_str().unwrap()]);
    cleanup.0.push(("rmi", tag.clone()));
    let loaded = engine.inspect_image(&tag).await.unwrap().unwrap();
    assert_eq!(
        loaded.id, image.config.digest,
        "the engine's id is the config digest"
    );
    assert_eq!(
        loaded.config, stored.config,
        "the config the engine's commit stores"
    );
    assert_eq!(loaded.layers, image.diff_ids);
    assert_eq!(
        loaded.layers[..base.layers.len()],
        base.layers[..],
        "base layers kept"
    );
    assert_eq!(docker(&["run", "--rm", &tag]), "made");
    let gone = Command::new("docker")
        .args(["run", "--rm", "--entrypoint", "/bin/ls", &tag, "/bin/vi"])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "the deletion is in the image");
    let history = docker(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", &tag]);
    assert!(
        history.starts_with("pipeline load: step 1 (make)"),
        "{history}"
    );
}

/// `VmHWM` (peak resident memory) of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A measurement, not a test (`bench/layers_rss.py` runs it): the peak memory of writing the
/// layer of a container that added a 1 GiB file, read path by path and from the whole file
/// system.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by bench/layers_rss.py"]
async fn measure_the_memory_of_a_1gib_layer() {
    let mut cleanup = Cleanup(Vec::new());
    let id = container("debian:bookworm", "rss", &mut cleanup);
    docker(&["exec", &id, "sh", "-c", "head -c 1073741824 /dev/urandom > /big && mkdir /many && for i in $(seq 1 2000); do echo $i > /many/$i; done"]);
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::at(dir.path());
    let engine = engine().await;
    for (mode, size) in [("path by path", u64::MAX), ("whole file system", 0)] {
        // Resets the peak (Linux: writing 5 to clear_refs).
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
        let before = peak_rss_kib();
        let started = std::time::Instant::now();
        let layer = container_layer(&engine, &id, size, &store, LayerSettings::default(), 0)
            .await
            .unwrap();
        println!(
            "RESULT mode={mode:?} tar_bytes={} blob_bytes={} seconds={:.1} peak_rss_kib={} rss_before_kib={before}",
            layer.tar_size,
            layer.blob.size,
            started.elapsed().as_secs_f64(),
            peak_rss_kib()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reproducible_layer_is_the_same_bytes_when_the_steps_run_again_later() {
    let mut cleanup = Cleanup(Vec::new());
    let engine = engine().await;
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::at(dir.path());
    // The busybox example's steps, with a copy through the archive API.
    let script = "mkdir -p /srv/www /etc/app && echo 'hello from pipeline' > /srv/www/index.html \
                  && echo conf > /etc/app/app.conf && ln /etc/app/app.conf /etc/app/same && rm /bin/vi";
    let mut layers = Vec::new();
    for (run, clamp) in [
        (1, Some(1_000_000_000)),
        (2, Some(1_000_000_000)),
        (3, None),
    ] {
        let id = container("busybox:latest", &format!("repro{run}"), &mut cleanup);
        if run > 1 {
            // Another second: file times differ.
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        }
        docker(&["exec", &id, "sh", "-c", script]);
        let settings = LayerSettings {
            clamp,
            ..LayerSettings::default()
        };
        let whole = run == 2;
        let size = if whole { 0 } else { u64::MAX };
        let now = 1_700_000_000 + run;
        layers.push(
            container_layer(&engine, &id, size, &store, settings, now)
                .await
                .unwrap(),
        );
    }
    assert_eq!(layers[0], layers[1], "same steps, clamped: the same layer");
    assert_ne!(
        layers[0].diff_id, layers[2].diff_id,
        "unclamped times differ"
    );
}
