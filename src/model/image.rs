//! The image config: what a committed image runs with, and how a pipeline's `[commit.config]`
//! changes its base's (as a Dockerfile does). Pure: the engine and the registry client read
//! and write it, `plan` and `apply` compute it the same way.

use std::collections::BTreeMap;

use super::ConfigChanges;

/// The parts of an image config the tool reads and writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ImageConfig {
    pub(crate) cmd: Option<Vec<String>>,
    pub(crate) entrypoint: Option<Vec<String>>,
    pub(crate) env: Vec<String>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) exposed_ports: Vec<String>,
    pub(crate) user: String,
    pub(crate) workdir: String,
    pub(crate) volumes: Vec<String>,
    pub(crate) healthcheck: Option<super::Healthcheck>,
    pub(crate) stop_signal: Option<String>,
    pub(crate) shell: Option<Vec<String>>,
    pub(crate) onbuild: Option<Vec<String>>,
}

/// The `PATH` an engine runs a container with when its image sets none.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The committed image's config: the base's, with the pipeline's changes.
pub(crate) fn final_config(base: &ImageConfig, c: &ConfigChanges) -> ImageConfig {
    let mut cfg = base.clone();
    if let Some(ep) = &c.entrypoint {
        cfg.entrypoint = Some(ep.clone());
        // As in a Dockerfile: a new entrypoint drops the inherited command.
        cfg.cmd = None;
    }
    if let Some(cmd) = &c.cmd {
        cfg.cmd = Some(cmd.clone());
    }
    // Values expand against the base's environment, as a Dockerfile `ENV` does; validation
    // has already refused what cannot be expanded.
    let mut base_env = base.env.clone();
    if !base_env.iter().any(|e| e.starts_with("PATH=")) {
        // What the engine runs the image with when it sets no PATH.
        base_env.push(format!("PATH={DEFAULT_PATH}"));
    }
    for (k, v) in &c.env {
        let value = super::env::expand(v, &base_env).unwrap_or_else(|_| v.clone());
        let entry = format!("{k}={value}");
        match cfg
            .env
            .iter_mut()
            .find(|e| e.split('=').next() == Some(k.as_str()))
        {
            Some(existing) => *existing = entry,
            None => cfg.env.push(entry),
        }
    }
    cfg.labels
        .extend(c.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    for port in &c.expose {
        if !cfg.exposed_ports.contains(port) {
            cfg.exposed_ports.push(port.clone());
        }
    }
    if let Some(u) = &c.user {
        cfg.user.clone_from(u);
    }
    if let Some(w) = &c.workdir {
        cfg.workdir.clone_from(w);
    }
    for v in &c.volumes {
        if !cfg.volumes.contains(v) {
            cfg.volumes.push(v.clone());
        }
    }
    if let Some(h) = &c.healthcheck {
        cfg.healthcheck = Some(h.clone());
    }
    if let Some(s) = &c.stop_signal {
        cfg.stop_signal = Some(s.clone());
    }
    if let Some(s) = &c.shell {
        cfg.shell = Some(s.clone());
    }
    if let Some(o) = &c.onbuild {
        cfg.onbuild = Some(o.clone());
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_config_keeps_the_base_and_applies_changes_like_a_dockerfile() {
        let base = ImageConfig {
            cmd: Some(vec!["bash".into()]),
            env: vec!["PATH=/bin".into(), "LANG=C".into()],
            labels: [("a".to_string(), "1".to_string())].into(),
            ..Default::default()
        };
        let unchanged = final_config(&base, &ConfigChanges::default());
        assert_eq!(unchanged, base);
        let changes = ConfigChanges {
            entrypoint: Some(vec!["/entry".into()]),
            env: [
                ("LANG".to_string(), "C.UTF-8".to_string()),
                ("EDITOR".to_string(), "vim".to_string()),
            ]
            .into(),
            labels: [("b".to_string(), "2".to_string())].into(),
            expose: vec!["80/tcp".into()],
            ..Default::default()
        };
        let cfg = final_config(&base, &changes);
        let expanded = final_config(
            &base,
            &ConfigChanges {
                env: [
                    ("PATH".to_string(), "/opt/bin:$PATH".to_string()),
                    ("HOME".to_string(), "${HOME:-/root}".to_string()),
                ]
                .into(),
                ..Default::default()
            },
        );
        assert_eq!(
            expanded.env,
            ["PATH=/opt/bin:/bin", "LANG=C", "HOME=/root"],
            "expanded against the base's env, as a Dockerfile ENV"
        );
        let no_path = final_config(
            &ImageConfig::default(),
            &ConfigChanges {
                env: [("PATH".to_string(), "/opt/bin:$PATH".to_string())].into(),
                ..Default::default()
            },
        );
        assert_eq!(no_path.env, [format!("PATH=/opt/bin:{DEFAULT_PATH}")]);
        assert_eq!(
            cfg.cmd, None,
            "a new entrypoint drops the inherited command"
        );
        assert_eq!(cfg.env, ["PATH=/bin", "LANG=C.UTF-8", "EDITOR=vim"]);
        assert_eq!(cfg.labels.len(), 2);
        assert_eq!(cfg.exposed_ports, ["80/tcp"]);
    }
}
