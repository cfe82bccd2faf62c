//! From `--engine` URLs (or `DOCKER_HOST`, else the local socket) to connected engines: the
//! one way every command reaches its engines.

use std::path::PathBuf;

use super::docker::{DockerEngine, TlsDir};
use super::EngineError;

/// How to reach one engine.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EngineSpec {
    /// The URL without options: `unix:///var/run/docker.sock`, `tcp://10.0.0.5:2376`, `ssh://me@host`.
    pub(crate) url: String,
    /// Client certificate folder when the engine is reached over TLS.
    pub(crate) tls: Option<PathBuf>,
}

impl std::fmt::Display for EngineSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)?;
        if self.tls.is_some() {
            f.write_str(" (tls)")?;
        }
        Ok(())
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The docker CLI's certificate folder: `DOCKER_CERT_PATH`, else `~/.docker`.
fn default_cert_path() -> PathBuf {
    env_nonempty("DOCKER_CERT_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env_nonempty("HOME").unwrap_or_else(|| "/root".into())).join(".docker")
        })
}

/// Parses `--engine URL[?tls=1&cert_path=DIR]`.
///
/// `unix://PATH`, `ssh://[USER@]HOST` (a port goes in `~/.ssh/config`), `tcp://HOST:PORT` and `https://HOST:PORT`. A
/// `tcp://` engine uses TLS as the docker CLI does: when `DOCKER_TLS_VERIFY` is set (non-empty),
/// with the certificates (`ca.pem`, `cert.pem`, `key.pem`) in `DOCKER_CERT_PATH` or `~/.docker`.
/// Per engine, `?tls=1` turns TLS on, `?tls=0` off, and `?cert_path=DIR` names the folder (and
/// implies `tls=1`). `https://` always uses TLS.
pub(crate) fn parse(text: &str) -> Result<EngineSpec, String> {
    let (url, query) = match text.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (text, None),
    };
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
    if !["unix", "tcp", "https", "http", "ssh"].contains(&scheme) {
        return Err(format!(
            "`{text}`: an engine is unix://PATH, tcp://HOST:PORT, https://HOST:PORT or ssh://[USER@]HOST"
        ));
    }
    if url.len() <= scheme.len() + 3 {
        return Err(format!("`{text}`: the address is empty"));
    }
    if scheme == "ssh" {
        let host = &url["ssh://".len()..];
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        if host.contains(':') {
            return Err(format!(
                "`{text}`: the engine client cannot pass an ssh port; give it in ~/.ssh/config \
                 (`Host builder` / `HostName ...` / `Port ...`) and use ssh://USER@builder"
            ));
        }
    }
    let mut tls: Option<bool> = None;
    let mut cert_path: Option<PathBuf> = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("tls", v)) => {
                tls = Some(match v {
                    "1" | "true" | "yes" => true,
                    "0" | "false" | "no" => false,
                    _ => return Err(format!("`{text}`: tls is 1 or 0, not `{v}`")),
                })
            }
            Some(("cert_path", v)) if !v.is_empty() => cert_path = Some(PathBuf::from(v)),
            _ => {
                return Err(format!(
                    "`{text}`: unknown engine option `{pair}` (known: tls=1|0, cert_path=DIR)"
                ))
            }
        }
    }
    let tcp = matches!(scheme, "tcp" | "http" | "https");
    if !tcp && (tls.is_some() || cert_path.is_some()) {
        return Err(format!(
            "`{text}`: TLS options apply to tcp:// and https:// engines only"
        ));
    }
    let use_tls = match (scheme, tls) {
        ("https", Some(false)) => {
            return Err(format!("`{text}`: https:// always uses TLS"));
        }
        ("https", _) => true,
        ("http", None) => false,
        (_, Some(t)) => t,
        ("tcp", None) => cert_path.is_some() || env_nonempty("DOCKER_TLS_VERIFY").is_some(),
        _ => false,
    };
    let tls = use_tls.then(|| cert_path.unwrap_or_else(default_cert_path));
    Ok(EngineSpec {
        url: url.to_string(),
        tls,
    })
}

/// The engine used without `--engine`: `DOCKER_HOST`, else the local socket.
fn default_engine() -> Result<EngineSpec, String> {
    parse(&env_nonempty("DOCKER_HOST").unwrap_or_else(|| "unix:///var/run/docker.sock".into()))
}

/// Connects to one engine.
async fn connect(spec: &EngineSpec) -> Result<DockerEngine, EngineError> {
    let tls = spec.tls.clone().map(TlsDir);
    DockerEngine::connect_url(&spec.url, tls.as_ref()).await
}

/// The engines a command runs on.
pub(crate) struct Connected {
    pub(crate) engines: Vec<DockerEngine>,
    /// Engines that were named but did not answer; the command goes on without them.
    pub(crate) left_out: Vec<EngineError>,
}

/// Parses `urls` (none: `DOCKER_HOST`, else the local socket) and connects to each, at once.
/// Fails when an URL is malformed or given twice, or when no engine answers.
pub(crate) async fn connect_all(urls: &[String]) -> Result<Connected, ConnectError> {
    let specs: Vec<EngineSpec> = if urls.is_empty() {
        vec![default_engine().map_err(|e| ConnectError::Usage(format!("DOCKER_HOST {e}")))?]
    } else {
        urls.iter()
            .map(|u| parse(u).map_err(|e| ConnectError::Usage(format!("--engine {e}"))))
            .collect::<Result<_, _>>()?
    };
    for (k, s) in specs.iter().enumerate() {
        if specs[..k].iter().any(|o| o.url == s.url) {
            return Err(ConnectError::Usage(format!(
                "--engine `{}` is given twice",
                s.url
            )));
        }
    }
    let connected = futures_util::future::join_all(specs.iter().map(connect)).await;
    let mut engines = Vec::new();
    let mut left_out = Vec::new();
    for c in connected {
        match c {
            Ok(e) => engines.push(e),
            Err(e) => left_out.push(e),
        }
    }
    if engines.is_empty() {
        return Err(ConnectError::NoEngine(left_out));
    }
    Ok(Connected { engines, left_out })
}

/// Why no engine could be used.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// A malformed or repeated URL.
    Usage(String),
    /// Every engine failed to answer.
    NoEngine(Vec<EngineError>),
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn engine_urls_take_tls_options_per_engine() {
        let e = parse("tcp://127.0.0.1:2376?tls=1&cert_path=/certs/a").unwrap();
        assert_eq!(e.url, "tcp://127.0.0.1:2376");
        assert_eq!(e.tls.as_deref(), Some(std::path::Path::new("/certs/a")));
        let e = parse("tcp://127.0.0.1:2376?cert_path=/certs/b").unwrap();
        assert_eq!(e.tls.as_deref(), Some(std::path::Path::new("/certs/b")));
        assert_eq!(parse("tcp://127.0.0.1:2375?tls=0").unwrap().tls, None);
        assert_eq!(parse("unix:///run/x.sock").unwrap().tls, None);
        assert!(parse("https://h:2376").unwrap().tls.is_some());
        assert!(parse("ssh://me@builder").is_ok());
        for bad in [
            "ftp://x",
            "unix:///x?tls=1",
            "tcp://h?tls=maybe",
            "tcp://h?color=1",
            "ssh://me@builder:2222",
            "tcp://",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
