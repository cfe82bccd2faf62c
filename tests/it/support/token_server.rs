//! A token service for a token-auth registry (std threads only): on 127.0.0.1, it checks
//! HTTP Basic credentials and answers `GET /token?scope=..&scope=..&service=..` with a JWT
//! signed ES256 by a key whose self-signed certificate (made by `openssl`) rides in the
//! header's `x5c`, as distribution's `auth.token` verifies against its `rootcertbundle`.
//! It records the scopes of every request, and grants what its [`Grant`] says.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

/// The `service` (the tokens' audience) and issuer the registry is configured with.
pub(crate) const SERVICE: &str = "pipeline-test-registry";
pub(crate) const ISSUER: &str = "pipeline-test-token-issuer";

/// What the service grants of the scopes a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Grant {
    /// Every scope asked for.
    Asked,
    /// Only the scopes that push: a request that also asks to read another repository gets a
    /// token for the target alone (as a service grants a user without access to it).
    PushOnly,
    /// Answers 403 to a request with more than one scope (as a service that allows no
    /// wider token does); one scope is granted.
    RefuseSeveral,
}

/// One request the service answered.
#[derive(Clone, Debug)]
pub(crate) struct Asked {
    /// The scopes, as sent.
    pub(crate) scopes: Vec<String>,
    /// Whether it carried the right credentials.
    pub(crate) authenticated: bool,
}

struct State {
    user: String,
    password: String,
    grant: Mutex<Grant>,
    asked: Mutex<Vec<Asked>>,
    key: EcdsaKeyPair,
    /// The certificate, DER, standard base64 (the `x5c` entry).
    x5c: String,
    serial: AtomicU64,
}

pub(crate) struct TokenServer {
    /// "127.0.0.1:PORT".
    pub(crate) addr: String,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    dir: tempfile::TempDir,
}

impl TokenServer {
    /// A service that accepts `user`/`password` and grants as `grant` says.
    pub(crate) fn start(user: &str, password: &str, grant: Grant) -> TokenServer {
        let dir = tempfile::Builder::new()
            .prefix("pipeline-token-")
            .tempdir()
            .expect("temp dir");
        let (key_der, cert_der) = signing_key(dir.path());
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &key_der,
            &ring::rand::SystemRandom::new(),
        )
        .expect("openssl's PKCS#8 P-256 key");
        let state = Arc::new(State {
            user: user.to_string(),
            password: password.to_string(),
            grant: Mutex::new(grant),
            asked: Mutex::new(Vec::new()),
            key,
            x5c: STANDARD.encode(cert_der),
            serial: AtomicU64::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let state = state.clone();
                            std::thread::spawn(move || serve(&state, stream));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        TokenServer {
            addr,
            state,
            stop,
            acceptor: Some(acceptor),
            dir,
        }
    }

    /// The token endpoint (the registry's `realm`).
    pub(crate) fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The certificate the registry trusts tokens signed by (PEM).
    pub(crate) fn root_cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    pub(crate) fn set_grant(&self, grant: Grant) {
        *self.state.grant.lock().unwrap() = grant;
    }

    /// Every request answered so far, oldest first.
    pub(crate) fn asked(&self) -> Vec<Asked> {
        self.state.asked.lock().unwrap().clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

/// A P-256 key (PKCS#8 DER) and its self-signed certificate (DER; PEM in `dir/cert.pem`).
fn signing_key(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-subj",
        "/CN=pipeline-test-token-issuer",
    ]);
    openssl(&[
        "pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER", "-out", "key.der",
    ]);
    openssl(&[
        "x509", "-in", "cert.pem", "-outform", "DER", "-out", "cert.der",
    ]);
    (
        std::fs::read(dir.join("key.der")).unwrap(),
        std::fs::read(dir.join("cert.der")).unwrap(),
    )
}

/// Answers one request on `stream`, then closes it.
fn serve(state: &State, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let target = head.split_whitespace().nth(1).unwrap_or_default();
    let scopes: Vec<String> = target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.strip_prefix("scope="))
        .map(|v| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let expected = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", state.user, state.password))
    );
    let authorization = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("authorization").then(|| v.trim())
    });
    let authenticated = authorization == Some(expected.as_str());
    state.asked.lock().unwrap().push(Asked {
        scopes: scopes.clone(),
        authenticated,
    });
    let grant = *state.grant.lock().unwrap();
    let (status, body) = if authorization.is_some() && !authenticated {
        (
            "401 Unauthorized",
            r#"{"details":"wrong password"}"#.to_string(),
        )
    } else if grant == Grant::RefuseSeveral && scopes.len() > 1 {
        (
            "403 Forbidden",
            r#"{"details":"one scope only"}"#.to_string(),
        )
    } else {
        let granted: Vec<&String> = scopes
            .iter()
            .filter(|s| authenticated && (grant != Grant::PushOnly || pushes(s)))
            .collect();
        let token = jwt(state, &granted);
        (
            "200 OK",
            format!(r#"{{"token":"{token}","expires_in":300}}"#),
        )
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Whether `scope` (`repository:NAME:ACTION,...`) asks to push.
fn pushes(scope: &str) -> bool {
    scope
        .rsplit_once(':')
        .is_some_and(|(_, actions)| actions.split(',').any(|a| a == "push"))
}

/// A token granting `scopes` (`repository:NAME:ACTION,...`), signed ES256.
fn jwt(state: &State, scopes: &[&String]) -> String {
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|s| {
            let (kind, rest) = s.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            Some(serde_json::json!({
                "type": kind,
                "name": name,
                "actions": actions.split(',').collect::<Vec<_>>(),
            }))
        })
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [state.x5c]});
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": state.user,
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": state.serial.fetch_add(1, SeqCst).to_string(),
        "access": access,
    });
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = state
        .key
        .sign(&ring::rand::SystemRandom::new(), signed.as_bytes())
        .expect("ES256 signature");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}
