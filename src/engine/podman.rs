//! What differs when the engine behind the Docker API is Podman (`podman system service`).
//! `docker.rs` asks these helpers; nothing outside `engine/` knows which engine it talks to.
//!
//! - Podman's `POST /commit` ignores the JSON config body and reads only `changes`
//!   (Dockerfile instructions), with a parser of its own: one instruction per line, one
//!   `KEY=VALUE` per `ENV`/`LABEL`, one port per `EXPOSE`, the value taken as written except
//!   for one pair of surrounding double quotes; no `HEALTHCHECK`, `SHELL` or `ONBUILD`.
//! - Podman's commit copies the container's whole environment into the image, and every
//!   container gets `container=podman` and containers.conf's `env` (`TERM=xterm`): build
//!   containers are created with `UnsetEnvAll` (a Podman extension of the create body that
//!   bollard's types lack, hence the request of its own) and exactly the image's environment.

use std::collections::BTreeMap;

use super::{EngineError, ImageConfig};

/// True when a `/version` answer's component names say Podman.
pub(crate) fn is_podman<'a>(components: impl IntoIterator<Item = &'a str>) -> bool {
    components
        .into_iter()
        .any(|name| name.to_ascii_lowercase().contains("podman"))
}

/// The config as Podman's commit `changes`, one instruction per line. `entrypoint` is what
/// the commit must set (`None`: keep the container's, which is the image's). A value Podman's
/// parser cannot carry (a line break, a label key with `=` or `"`) or a key its commit cannot
/// set is an error naming it: the image would silently differ otherwise.
pub(crate) fn commit_changes(
    c: &ImageConfig,
    entrypoint: Option<&[String]>,
) -> Result<String, String> {
    let json = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
    let cannot = |key: &str, why: &str| {
        Err(format!(
            "Podman's commit cannot set `{key}` ({why}); build this pipeline on a Docker engine, \
             or leave `{key}` out of [commit.config]"
        ))
    };
    let one_line = |what: &str, text: &str| {
        if text.contains(['\n', '\r']) {
            Err(format!(
                "Podman's commit cannot store {what} with a line break in it; build this \
                 pipeline on a Docker engine, or keep the value on one line"
            ))
        } else {
            Ok(())
        }
    };
    if c.healthcheck.is_some() {
        return cannot("healthcheck", "its commit has no HEALTHCHECK");
    }
    if c.shell.as_ref().is_some_and(|s| !s.is_empty()) {
        return cannot("shell", "its commit has no SHELL");
    }
    if c.onbuild.as_ref().is_some_and(|s| !s.is_empty()) {
        return cannot("onbuild", "its commit drops ONBUILD");
    }
    let mut lines = vec![format!(
        "CMD {}",
        json(c.cmd.as_deref().unwrap_or_default())
    )];
    if let Some(ep) = entrypoint {
        lines.push(format!("ENTRYPOINT {}", json(ep)));
    }
    for entry in &c.env {
        let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
        one_line(&format!("the value of `{key}` in `env`"), entry)?;
        lines.push(format!("ENV {key}=\"{value}\""));
    }
    for (key, value) in &c.labels {
        one_line(&format!("the label `{key}`"), &format!("{key}{value}"))?;
        if key.contains(['=', '"']) || key.is_empty() {
            return Err(format!(
                "Podman's commit cannot store the label key `{key}` (it holds `=` or `\"`); \
                 build this pipeline on a Docker engine, or rename the label"
            ));
        }
        lines.push(format!("LABEL \"{key}\"=\"{value}\""));
    }
    for port in &c.exposed_ports {
        lines.push(format!("EXPOSE {port}"));
    }
    if !c.user.is_empty() {
        one_line("`user`", &c.user)?;
        lines.push(format!("USER {}", c.user));
    }
    if !c.workdir.is_empty() {
        one_line("`workdir`", &c.workdir)?;
        lines.push(format!("WORKDIR {}", c.workdir));
    }
    if !c.volumes.is_empty() {
        for v in &c.volumes {
            one_line("a volume", v)?;
        }
        lines.push(format!("VOLUME {}", json(&c.volumes)));
    }
    if let Some(signal) = &c.stop_signal {
        one_line("`stop_signal`", signal)?;
        lines.push(format!("STOPSIGNAL {signal}"));
    }
    for line in &lines {
        one_line("the command", line)?;
    }
    Ok(lines.join("\n"))
}

/// The config Podman stores for one asked for, where both mean the same at run time: an
/// unset working directory is stored as `/`, a stop signal by its number (`SIGQUIT` as `3`).
pub(crate) fn as_stored(asked: &ImageConfig, stored: &ImageConfig) -> ImageConfig {
    let mut c = asked.clone();
    if super::same_workdir(&c.workdir, &stored.workdir) {
        c.workdir.clone_from(&stored.workdir);
    }
    if let (Some(a), Some(s)) = (&c.stop_signal, &stored.stop_signal) {
        if signal_number(a).is_some() && signal_number(a) == signal_number(s) {
            c.stop_signal = Some(s.clone());
        }
    }
    c
}

/// The number of a signal given by name (`SIGQUIT`, `QUIT`) or number.
fn signal_number(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse() {
        return Some(n);
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "WINCH" => libc::SIGWINCH,
        "STOP" => libc::SIGSTOP,
        "PWR" => libc::SIGPWR,
        _ => return None,
    };
    Some(n)
}

/// A hint for a failure only Podman's setup causes, to go after the engine's message.
pub(crate) fn hint(message: &str) -> Option<&'static str> {
    let m = message.to_ascii_lowercase();
    if m.contains("http response to https client") {
        return Some(
            "Podman talks HTTPS to every registry not marked insecure (Docker allows plain HTTP \
             to 127.0.0.0/8 by itself): add `[[registry]]` with `location = \"HOST:PORT\"` and \
             `insecure = true` to registries.conf (/etc/containers/registries.conf, rootless: \
             ~/.config/containers/registries.conf) and restart `podman system service`",
        );
    }
    if m.contains("setting rlimit") {
        return Some(
            "Podman gives containers higher limits than this host allows: set \
             `default_ulimits = [\"nofile=20000:20000\", \"nproc=20000:20000\"]` (at most the \
             host's `ulimit -Hn` / `ulimit -Hu`) under `[containers]` in containers.conf and \
             restart `podman system service`",
        );
    }
    if m.contains("catatonit") || (m.contains("init") && m.contains("no such file")) {
        return Some(
            "build containers run under the engine's init: Podman needs `catatonit` (Debian, \
             Fedora: the `catatonit` package; or set `init_path` in containers.conf)",
        );
    }
    None
}

/// The request that creates a Podman build container, which bollard's create cannot send:
/// the create body (as JSON) with `UnsetEnvAll` and exactly `env`.
pub(crate) fn create_body(
    mut body: serde_json::Value,
    env: &[String],
) -> Result<String, EngineError> {
    let object = body
        .as_object_mut()
        .ok_or_else(|| EngineError::Other("the container config is not an object".into()))?;
    object.insert("UnsetEnvAll".into(), true.into());
    object.insert("Env".into(), env.into());
    Ok(body.to_string())
}

/// A plain HTTP client for the one call bollard cannot make, over the engine's unix socket or
/// TCP address.
pub(crate) struct RawClient {
    client: reqwest::Client,
    base: String,
    endpoint: String,
}

impl RawClient {
    /// A client for `url` (`unix://PATH` or `tcp://HOST:PORT`/`http://HOST:PORT` without TLS),
    /// `None` for other kinds of engine address.
    pub(crate) fn new(url: &str, tls: bool) -> Option<Self> {
        crate::tls::install();
        let (builder, base) = if let Some(path) = url.strip_prefix("unix://") {
            (
                reqwest::Client::builder().unix_socket(path),
                "http://podman".to_string(),
            )
        } else if !tls && (url.starts_with("tcp://") || url.starts_with("http://")) {
            let host = url.split_once("://").map_or(url, |(_, h)| h);
            (
                reqwest::Client::builder(),
                format!("http://{}", host.trim_end_matches('/')),
            )
        } else {
            return None;
        };
        Some(Self {
            client: builder.build().ok()?,
            base,
            endpoint: url.to_string(),
        })
    }

    /// `POST /containers/create?name=NAME` with `body`; returns the new container's id.
    pub(crate) async fn create_container(
        &self,
        name: &str,
        body: String,
    ) -> Result<String, EngineError> {
        let response = self
            .client
            .post(format!("{}/containers/create?name={name}", self.base))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| EngineError::Connection {
                endpoint: self.endpoint.clone(),
                detail: super::docker::root_cause(&e),
            })?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let answer: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(&text).unwrap_or_default();
        let field = |k: &str| {
            answer
                .get(k)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .unwrap_or_default()
        };
        match status {
            200..=299 if !field("Id").is_empty() => Ok(field("Id")),
            404 => Err(EngineError::NotFound(field("message"))),
            _ => Err(EngineError::Api {
                status,
                message: if field("message").is_empty() {
                    text
                } else {
                    field("message")
                },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_quote_every_value_and_refuse_what_podman_cannot_store() {
        let c = ImageConfig {
            cmd: Some(vec!["httpd".into(), "-h".into(), "a \"b\"".into()]),
            env: vec![
                "A=x y".into(),
                "B=\"q\"".into(),
                "C=".into(),
                "D=$PATH".into(),
            ],
            labels: [("my key".to_string(), "va=lue ".to_string())].into(),
            exposed_ports: vec!["8080/tcp".into(), "53/udp".into()],
            user: "42:42".into(),
            workdir: "/srv".into(),
            volumes: vec!["/data".into()],
            stop_signal: Some("SIGQUIT".into()),
            ..Default::default()
        };
        let text = commit_changes(&c, Some(&[])).unwrap();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                r#"CMD ["httpd","-h","a \"b\""]"#,
                "ENTRYPOINT []",
                r#"ENV A="x y""#,
                r#"ENV B=""q"""#,
                r#"ENV C="""#,
                r#"ENV D="$PATH""#,
                r#"LABEL "my key"="va=lue ""#,
                "EXPOSE 8080/tcp",
                "EXPOSE 53/udp",
                "USER 42:42",
                "WORKDIR /srv",
                r#"VOLUME ["/data"]"#,
                "STOPSIGNAL SIGQUIT",
            ]
        );
        let mut bad = c.clone();
        bad.env.push("E=two\nlines".into());
        assert!(commit_changes(&bad, None).unwrap_err().contains("`E`"));
        let mut bad = c.clone();
        bad.labels.insert("a=b".into(), "x".into());
        assert!(commit_changes(&bad, None).unwrap_err().contains("a=b"));
        let mut bad = c;
        bad.shell = Some(vec!["/bin/bash".into(), "-c".into()]);
        assert!(commit_changes(&bad, None).unwrap_err().contains("`shell`"));
    }

    #[test]
    fn stored_forms_that_mean_the_same_are_accepted() {
        let asked = ImageConfig {
            stop_signal: Some("SIGQUIT".into()),
            ..Default::default()
        };
        let stored = ImageConfig {
            stop_signal: Some("3".into()),
            workdir: "/".into(),
            ..Default::default()
        };
        assert_eq!(as_stored(&asked, &stored), stored);
        let other = ImageConfig {
            stop_signal: Some("15".into()),
            ..stored
        };
        assert_ne!(as_stored(&asked, &other), other);
    }

    #[test]
    fn setup_failures_get_the_fix() {
        for (message, fix) in [
            ("http: server gave HTTP response to HTTPS client", "insecure = true"),
            ("container-init binary not found on the host: stat /usr/libexec/podman/catatonit: no such file or directory", "catatonit"),
            ("error setting rlimit type 7: operation not permitted", "default_ulimits"),
        ] {
            assert!(hint(message).is_some_and(|h| h.contains(fix)), "{message}");
        }
        assert_eq!(hint("exit code 3"), None);
    }

    #[test]
    fn podman_is_recognised_by_its_version_components() {
        assert!(is_podman(["Podman Engine", "Conmon"]));
        assert!(!is_podman(["Engine", "containerd", "runc", "docker-init"]));
    }
}
