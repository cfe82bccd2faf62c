//! `plan --offline` on a file you do not trust: the registries it names are never contacted
//! and no credential is read or sent; only the engine is read.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::harness::{busybox_pipeline, output_text, unique, Project};
use crate::support::engine::require_image;

/// A TCP listener on a free loopback port that counts connections and closes each at once.
struct Listener {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl Listener {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                seen.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Self { port, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

#[test]
fn plan_offline_asks_no_registry_and_needs_no_password() {
    require_image("busybox:latest");
    let listener = Listener::start();
    let project = Project::new();
    let name = unique("offline");
    // A hostile file: it sends a host secret to a registry of its choice.
    let body = format!(
        r#"
[[step]]
run = "true"
[commit]
message = "m"
[[publish]]
repository = "127.0.0.1:{port}/{{{{ env.PLAN_TEST_TOKEN }}}}/app"
tags = ["1"]
username = "ci"
password_env = "PLAN_TEST_PASSWORD"
"#,
        port = listener.port
    );
    project.pipeline(&busybox_pipeline(&name, &body));
    let plan = |args: &[&str], password: Option<&str>| {
        let mut cmd = project.cmd(&[&["plan", "pipeline.toml"], args].concat());
        cmd.env("PLAN_TEST_TOKEN", "token-from-the-host");
        match password {
            Some(p) => cmd.env("PLAN_TEST_PASSWORD", p),
            None => cmd.env_remove("PLAN_TEST_PASSWORD"),
        };
        let out = cmd.output().unwrap();
        (out.status.code(), output_text(&out))
    };

    // Offline: no password needed, nothing contacted, the publish status is unknown.
    for password in [None, Some("host-secret")] {
        let (code, text) = plan(&["--offline"], password);
        assert_eq!(code, Some(0), "{text}");
        assert!(text.contains(": unknown (offline)"), "{text}");
    }
    let (code, text) = plan(&["--offline", "--format", "json"], None);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(r#""reason": "offline""#), "{text}");
    assert_eq!(
        listener.connections(),
        0,
        "plan --offline contacted the registry"
    );

    // Without --offline the file's registry is asked (with the password), so the listener sees
    // the engine connect.
    let (code, text) = plan(&[], Some("host-secret"));
    assert_eq!(code, Some(0), "{text}");
    assert!(
        listener.connections() > 0,
        "plan did not ask the registry:\n{text}"
    );
}
