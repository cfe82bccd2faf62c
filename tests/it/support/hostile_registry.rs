//! A registry that sends too much: a small manifest whose config is 512 MiB, a 512 MiB
//! manifest (also one whose HEAD names no digest, so it must be read to know its digest),
//! and a tag listing whose pages never end. Made up as it is sent (nothing is
//! stored), on a free 127.0.0.1 port, until dropped.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What it sends in total of a huge body, at most.
pub(crate) const HUGE: u64 = 512 << 20;

/// The config digest the manifest of `bigconfig` names (what the blob is claimed to be).
const CONFIG_DIGEST: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000001";

pub(crate) struct HostileRegistry {
    /// "127.0.0.1:PORT".
    pub(crate) addr: String,
    stop: Arc<AtomicBool>,
    /// Bytes of huge bodies sent so far (the client stops reading: far less than [`HUGE`]).
    sent: Arc<AtomicU64>,
    acceptor: Option<JoinHandle<()>>,
}

impl HostileRegistry {
    pub(crate) fn start() -> HostileRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap().to_string();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop2, sent2) = (stop.clone(), sent.clone());
        let acceptor = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let sent = sent2.clone();
                        std::thread::spawn(move || serve(conn, &sent));
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
        });
        HostileRegistry {
            addr,
            stop,
            sent,
            acceptor: Some(acceptor),
        }
    }

    /// Bytes of huge bodies sent so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for HostileRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

/// Answers the requests of one connection.
fn serve(conn: TcpStream, sent: &AtomicU64) {
    conn.set_nonblocking(false).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or_default().to_string(),
            parts.next().unwrap_or_default().to_string(),
        );
        // Headers, up to the blank line (requests here have no body).
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
        }
        if answer(&mut out, &method, &path, sent).is_err() {
            return;
        }
    }
}

fn head(out: &mut TcpStream, status: &str, headers: &[(&str, String)]) -> std::io::Result<()> {
    let mut text = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    out.write_all(text.as_bytes())
}

fn small(out: &mut TcpStream, method: &str, media_type: &str, body: &[u8]) -> std::io::Result<()> {
    let digest = format!(
        "sha256:{}",
        hex(&<sha2::Sha256 as sha2::Digest>::digest(body))
    );
    head(
        out,
        "200 OK",
        &[
            ("Content-Type", media_type.to_string()),
            ("Content-Length", body.len().to_string()),
            ("Docker-Content-Digest", digest),
        ],
    )?;
    if method != "HEAD" {
        out.write_all(body)?;
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends [`HUGE`] bytes of `fill` (without a length, so only the connection's end ends it);
/// stops when the client goes.
fn huge(out: &mut TcpStream, media_type: &str, fill: u8, sent: &AtomicU64) -> std::io::Result<()> {
    head(
        out,
        "200 OK",
        &[
            ("Content-Type", media_type.to_string()),
            ("Connection", "close".to_string()),
        ],
    )?;
    let chunk = vec![fill; 64 << 10];
    let mut n = 0;
    while n < HUGE {
        out.write_all(&chunk)?;
        n += chunk.len() as u64;
        sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    Err(std::io::Error::other("done"))
}

/// The signature artifact of the entry `key` (manifest `digest`), as a trusted apply writes it.
fn signature(key: &str, digest: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let pkcs8 = b64.decode(crate::harness::CACHE_SIGNING_KEY).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8).unwrap();
    let message = format!("pipeline remote cache entry v1\nkey {key}\nmanifest {digest}\n");
    let value = b64.encode(pair.sign(message.as_bytes()).as_ref());
    let config = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"{config}"}},"layers":[],"annotations":{{"pipeline.cache.key":"{key}","pipeline.cache.manifest":"{digest}","pipeline.cache.signature":"{value}"}}}}"#
    )
}

const DOCKER: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

fn answer(out: &mut TcpStream, method: &str, path: &str, sent: &AtomicU64) -> std::io::Result<()> {
    if path == "/v2/" {
        return small(out, method, "application/json", b"{}");
    }
    if let Some(reference) = path.strip_prefix("/v2/bigconfig/manifests/") {
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":{HUGE},"digest":"{CONFIG_DIGEST}"}},"layers":[]}}"#
        );
        // Every key holds that image, signed by the tests' trusted key.
        if let Some(key) = reference.strip_suffix(".sig") {
            let digest = format!(
                "sha256:{}",
                hex(&<sha2::Sha256 as sha2::Digest>::digest(manifest.as_bytes()))
            );
            return small(out, method, OCI, signature(key, &digest).as_bytes());
        }
        return small(out, method, DOCKER, manifest.as_bytes());
    }
    if path.starts_with("/v2/bigconfig/blobs/") {
        return huge(out, "application/octet-stream", b' ', sent);
    }
    if path.starts_with("/v2/nodigest/manifests/") {
        if method == "HEAD" {
            // No digest: the client has to read the manifest to know it.
            let headers = [
                ("Content-Type", DOCKER.to_string()),
                ("Content-Length", "2".into()),
            ];
            return head(out, "200 OK", &headers);
        }
        return huge(out, DOCKER, b' ', sent);
    }
    if path.starts_with("/v2/bigmanifest/manifests/") {
        if method == "HEAD" {
            return small(out, method, DOCKER, b"{}");
        }
        return huge(out, DOCKER, b' ', sent);
    }
    if let Some(query) = path
        .strip_prefix("/v2/endless/tags/list")
        .map(|q| q.trim_start_matches('?'))
    {
        // 1000 tags after `last`, whatever `last` is: the pages never end.
        let last = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("last="))
            .and_then(|l| l.strip_prefix('t')?.parse::<u64>().ok())
            .unwrap_or(0);
        let tags: Vec<String> = (last + 1..=last + 1000)
            .map(|i| format!("\"t{i:012}\""))
            .collect();
        let body = format!(r#"{{"name":"endless","tags":[{}]}}"#, tags.join(","));
        let next = format!(
            "</v2/endless/tags/list?n=1000&last=t{:012}>; rel=\"next\"",
            last + 1000
        );
        head(
            out,
            "200 OK",
            &[
                ("Content-Type", "application/json".to_string()),
                ("Content-Length", body.len().to_string()),
                ("Link", next),
            ],
        )?;
        return out.write_all(body.as_bytes());
    }
    let body = br#"{"errors":[{"code":"NAME_UNKNOWN","message":"unknown"}]}"#;
    head(
        out,
        "404 Not Found",
        &[
            ("Content-Type", "application/json".to_string()),
            ("Content-Length", body.len().to_string()),
        ],
    )?;
    out.write_all(body)
}
