//! Throwaway registries: a real `docker-registry serve` (Debian's distribution 2.8) on a free
//! 127.0.0.1 port with its storage in a temporary folder. The engine treats 127.0.0.0/8 as an
//! insecure registry, so plain http push/pull works without any daemon configuration.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::token_server::{self, TokenServer};

/// The registry binary: `$DOCKER_REGISTRY`, else `docker-registry` (from PATH).
fn registry_bin() -> String {
    std::env::var("DOCKER_REGISTRY").unwrap_or_else(|_| "docker-registry".to_string())
}

/// A port that was free on 127.0.0.1 a moment ago (bind to port 0, read, release).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) struct Registry {
    /// "127.0.0.1:PORT": use it in image references, e.g. format!("{}/team/app:1", reg.addr).
    pub(crate) addr: String,
    /// Some((user, password)) for a registry started with `start_with_auth`.
    pub(crate) credentials: Option<(String, String)>,
    /// Its `/v2/` asks for authentication (htpasswd or tokens).
    auth_required: bool,
    child: Child,
    dir: tempfile::TempDir,
}

impl Registry {
    /// An open registry (no authentication).
    pub(crate) fn start() -> Registry {
        Self::launch(&Auth::Open, true)
    }

    /// An open registry that refuses to delete manifests (`storage.delete` off, its default).
    pub(crate) fn start_without_delete() -> Registry {
        Self::launch(&Auth::Open, false)
    }

    /// A registry that requires HTTP basic authentication as `user`/`password` (htpasswd).
    pub(crate) fn start_with_auth(user: &str, password: &str) -> Registry {
        Self::launch(
            &Auth::Htpasswd(user.to_string(), password.to_string()),
            true,
        )
    }

    /// A registry that takes the Bearer tokens `tokens` signs (distribution's `auth.token`,
    /// as Docker Hub, GHCR or Harbor work). Its `get` and `tags` send no credentials.
    pub(crate) fn start_with_tokens(tokens: &TokenServer) -> Registry {
        Self::launch(&Auth::Token(tokens), true)
    }

    fn launch(auth: &Auth, delete: bool) -> Registry {
        let credentials = match auth {
            Auth::Htpasswd(user, password) => Some((user.clone(), password.clone())),
            _ => None,
        };
        let mut last_log = String::new();
        // free_port can race with another process; retry on a fresh port if the bind fails.
        for _ in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("pipeline-registry-")
                .tempdir()
                .expect("temp dir");
            let addr = format!("127.0.0.1:{}", free_port());
            let mut config = format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: {delete}\n\
                 http:\n  addr: {addr}\n",
                dir.path().join("storage").display()
            );
            if let Auth::Token(tokens) = auth {
                config += &format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    \
                     rootcertbundle: {}\n",
                    tokens.realm(),
                    token_server::SERVICE,
                    token_server::ISSUER,
                    tokens.root_cert().display()
                );
            }
            if let Some((user, password)) = &credentials {
                let hash = bcrypt::hash(password, 5).expect("bcrypt");
                let htpasswd = dir.path().join("htpasswd");
                std::fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("write htpasswd");
                config += &format!(
                    "auth:\n  htpasswd:\n    realm: pipeline-test\n    path: {}\n",
                    htpasswd.display()
                );
            }
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).expect("write registry config");
            let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
            let child = Command::new(registry_bin())
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run {} ({e}); run scripts/setup.sh (installs docker-registry)",
                        registry_bin()
                    )
                });
            let mut reg = Registry {
                addr,
                credentials: credentials.clone(),
                auth_required: !matches!(auth, Auth::Open),
                child,
                dir,
            };
            match reg.wait_until_up(Duration::from_secs(15)) {
                Ok(()) => return reg,
                Err(log) => last_log = log, // reg dropped here: process killed, dir removed
            }
        }
        panic!("docker-registry did not come up; last log:\n{last_log}");
    }

    /// Err(log text) when the process died or /v2/ never answered.
    fn wait_until_up(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(self.log());
            }
            if let Ok(resp) = http_get(&self.addr, "/v2/", &[]) {
                // 401 means up for an auth-enabled registry.
                if resp.status == 200 || (resp.status == 401 && self.auth_required) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// "http://127.0.0.1:PORT"
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The registry's own log so far (useful in assertion messages).
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The storage folder (rootdirectory) of this registry.
    pub(crate) fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// GET `path` on this registry, with basic auth when it has credentials.
    pub(crate) fn get(&self, path: &str, extra_headers: &[(&str, &str)]) -> HttpResponse {
        let auth;
        let mut headers: Vec<(&str, &str)> = extra_headers.to_vec();
        if let Some((u, p)) = &self.credentials {
            auth = format!("Basic {}", base64(format!("{u}:{p}").as_bytes()));
            headers.push(("Authorization", &auth));
        }
        http_get(&self.addr, path, &headers)
            .unwrap_or_else(|e| panic!("GET {}{path}: {e}", self.url()))
    }

    /// Pushes the main engine's `image` as `ADDR/name`, logged in through a throwaway docker
    /// config when the registry has credentials; the local `ADDR/name` tag is removed again.
    pub(crate) fn push_local(&self, image: &str, name: &str) {
        let target = format!("{}/{name}", self.addr);
        let config = tempfile::tempdir().expect("temp dir");
        let cfg = config.path().to_str().unwrap();
        super::engine::docker_ok(&["tag", image, &target]);
        if let Some((user, password)) = &self.credentials {
            let mut login = Command::new(super::engine::docker_bin())
                .args([
                    "--config",
                    cfg,
                    "login",
                    "-u",
                    user,
                    "--password-stdin",
                    &self.addr,
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("docker login");
            login
                .stdin
                .take()
                .unwrap()
                .write_all(password.as_bytes())
                .unwrap();
            let out = login.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "docker login {}: {}",
                self.addr,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let pushed = super::engine::docker(&["--config", cfg, "push", &target]);
        let _ = super::engine::docker(&["rmi", &target]);
        assert!(
            pushed.status.success(),
            "docker push {target}: {}",
            String::from_utf8_lossy(&pushed.stderr)
        );
    }

    /// Puts the manifest `repository:from` (an image, index or artifact) under the tag `to`
    /// as well: the same bytes, so the same digest. No credentials.
    pub(crate) fn copy_tag(&self, repository: &str, from: &str, to: &str) {
        let url = format!("{}/v2/{repository}/manifests", self.url());
        let accept = "application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.v2+json, \
             application/vnd.oci.image.index.v1+json, \
             application/vnd.docker.distribution.manifest.list.v2+json";
        let dir = tempfile::tempdir().unwrap();
        let (body, head) = (dir.path().join("m.json"), dir.path().join("h.txt"));
        let get = Command::new("curl")
            .args(["-sf", "-H", &format!("Accept: {accept}"), "-D"])
            .arg(&head)
            .arg("-o")
            .arg(&body)
            .arg(format!("{url}/{from}"))
            .status()
            .expect("curl");
        assert!(get.success(), "GET {url}/{from}");
        let head = std::fs::read_to_string(&head).unwrap();
        let media_type = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-type")
                    .then(|| v.trim().to_string())
            })
            .expect("a Content-Type");
        self.put_manifest(repository, to, &media_type, &std::fs::read(&body).unwrap());
    }

    /// PUTs `body` as the manifest `repository:reference` of type `media_type`. No credentials.
    pub(crate) fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.json");
        std::fs::write(&file, body).unwrap();
        let put = Command::new("curl")
            .args([
                "-sf",
                "-X",
                "PUT",
                "-H",
                &format!("Content-Type: {media_type}"),
            ])
            .arg("--data-binary")
            .arg(format!("@{}", file.display()))
            .arg(format!(
                "{}/v2/{repository}/manifests/{reference}",
                self.url()
            ))
            .status()
            .expect("curl");
        assert!(put.success(), "PUT {repository}:{reference}");
    }

    /// Tags of `repository` ("team/app"); empty when the repository does not exist.
    pub(crate) fn tags(&self, repository: &str) -> Vec<String> {
        let resp = self.get(&format!("/v2/{repository}/tags/list"), &[]);
        if resp.status == 404 {
            return Vec::new();
        }
        assert_eq!(
            resp.status,
            200,
            "tags/list of {repository}: {}",
            resp.text()
        );
        let v: serde_json::Value = serde_json::from_slice(&resp.body).expect("tags/list JSON");
        let mut tags: Vec<String> = v["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        tags.sort();
        tags
    }

    /// The manifest `repository:reference` names, parsed (panics when there is none).
    pub(crate) fn manifest(&self, repository: &str, reference: &str) -> serde_json::Value {
        let accept = "application/vnd.docker.distribution.manifest.v2+json, \
                      application/vnd.oci.image.manifest.v1+json";
        let resp = self.get(
            &format!("/v2/{repository}/manifests/{reference}"),
            &[("Accept", accept)],
        );
        assert_eq!(
            resp.status,
            200,
            "manifest {repository}:{reference}: {}",
            resp.text()
        );
        serde_json::from_slice(&resp.body).expect("manifest JSON")
    }

    /// The manifest digest ("sha256:...") of `repository:tag`, or None when it is not there.
    pub(crate) fn manifest_digest(&self, repository: &str, tag: &str) -> Option<String> {
        let accept = "application/vnd.docker.distribution.manifest.v2+json, \
                      application/vnd.docker.distribution.manifest.list.v2+json, \
                      application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";
        let resp = self.get(
            &format!("/v2/{repository}/manifests/{tag}"),
            &[("Accept", accept)],
        );
        match resp.status {
            200 => resp.header("Docker-Content-Digest").map(str::to_string),
            404 => None,
            s => panic!("manifest {repository}:{tag}: HTTP {s}: {}", resp.text()),
        }
    }
}

/// How a registry authenticates.
enum Auth<'a> {
    Open,
    Htpasswd(String, String),
    Token(&'a TokenServer),
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // self.dir (TempDir) removes the storage when dropped after this.
    }
}

pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl HttpResponse {
    /// First header named `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A minimal HTTP/1.0 GET (the server closes after the response, so no chunked bodies) to
/// `addr` ("127.0.0.1:PORT"). Err on connection errors, resets and malformed answers.
pub(crate) fn http_get(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<HttpResponse> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: pipeline-tests\r\n");
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// Standard base64 with padding (for basic auth headers).
pub(crate) fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = u32::from(c[0]) << 16
            | u32::from(*c.get(1).unwrap_or(&0)) << 8
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
