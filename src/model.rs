//! The validated pipeline: templates rendered, references parsed, paths resolved. Every
//! invariant the planner and executor rely on holds once a [`Pipeline`] exists.

pub(crate) mod env;
pub(crate) mod ignore;
mod image;

pub(crate) use image::{final_config, ImageConfig, DEFAULT_PATH};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::reference::ImageRef;

/// A checked pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Groups this pipeline's cache images (the `name` key, else the file stem).
    pub name: String,
    /// The pipeline file as given on the command line.
    pub file: PathBuf,
    /// The folder copies and secret files are relative to (canonical).
    pub dir: PathBuf,
    pub base: Base,
    pub steps: Vec<Step>,
    pub commit: Commit,
    pub publish: Vec<Target>,
    pub secrets: BTreeMap<String, SecretSource>,
    /// Steps that run longer than this are followed by a checkpoint.
    pub checkpoint_after: Duration,
    /// The registry-backed step cache, when one is configured.
    pub cache_remote: Option<RemoteCache>,
    /// Every platform the pipeline builds for (`platforms`, or `--platform`); empty: the
    /// engine's own platform.
    pub platforms: Vec<Platform>,
    /// The platform this build is for (templates rendered for it); `None`: the engine's own.
    pub platform: Option<Platform>,
    /// How the image is written (`[image]`).
    pub image: ImageSettings,
    /// Where the file writes each reference the pipeline produces: its local tags and
    /// publish targets, for the check that no two files of a run produce the same one.
    pub written: Vec<Written>,
    /// Where the image is written besides registries (`[[output]]`, then `--output`).
    pub outputs: Vec<Output>,
    /// The combination of `[matrix]` values this pipeline is, in matrix key order; `None`
    /// for a file without a matrix.
    pub variant: Option<Variant>,
}

impl Pipeline {
    /// The file as people read it: `web.toml`, or `web.toml[debian=trixie,flavor=slim]` for
    /// one variant of a matrix.
    pub fn shown(&self) -> String {
        let file = self.file.display().to_string();
        match &self.variant {
            Some(v) => v.shown(&file),
            None => file,
        }
    }
}

/// One combination of a file's `[matrix]` values: each key with its value, in the order the
/// matrix writes its keys. Serialized as a JSON object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Variant(pub Vec<(String, VariantValue)>);

/// A value of a matrix key.
#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum VariantValue {
    String(String),
    Bool(bool),
    Integer(i64),
    Float(f64),
}

impl std::fmt::Display for VariantValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VariantValue::String(s) => f.write_str(s),
            VariantValue::Bool(b) => write!(f, "{b}"),
            VariantValue::Integer(i) => write!(f, "{i}"),
            VariantValue::Float(x) => write!(f, "{x}"),
        }
    }
}

impl Variant {
    /// `key=value,key=value`, in matrix key order.
    pub fn pairs(&self) -> String {
        let pairs: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.join(",")
    }

    /// A file with this variant: `web.toml[debian=trixie,flavor=slim]`.
    pub fn shown(&self, file: &str) -> String {
        format!("{file}[{}]", self.pairs())
    }

    /// The value of a key.
    pub fn get(&self, key: &str) -> Option<&VariantValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl serde::Serialize for Variant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl schemars::JsonSchema for Variant {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Variant".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let value = generator.subschema_for::<VariantValue>();
        schemars::json_schema!({
            "description": "A variant of a `[matrix]`: each matrix key with its value.",
            "type": "object",
            "additionalProperties": value,
        })
    }
}

/// A reference a pipeline produces, and where its file writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub reference: ImageRef,
    /// A publish target (else a local tag).
    pub published: bool,
    pub span: std::ops::Range<usize>,
    /// The span's line, from 1.
    pub line: usize,
}

/// How the image is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImageSettings {
    pub compression: LayerCompression,
    /// The level, in the compression's range.
    pub level: Option<i32>,
    /// Clamp file times and set the image's times to an epoch.
    pub reproducible: bool,
    /// The epoch the file sets.
    pub epoch: Option<u64>,
}

/// A platform as registries name it: `linux/arm64`, `linux/arm/v7`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let valid = |p: &&str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if parts.iter().all(valid) => Ok(Self {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: parts.get(2).map(|v| v.to_string()),
            }),
            _ => Err(format!(
                "`{s}` is not a platform: write `OS/ARCH` or `OS/ARCH/VARIANT`, e.g. `linux/arm64`"
            )),
        }
    }

    /// True when an image or engine of `os`/`arch`/`variant` is this platform. A variant left
    /// out on either side matches any (`linux/arm64` is `linux/arm64/v8`).
    pub(crate) fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        self.os == os
            && self.arch == arch
            && match (&self.variant, variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A registry repository used as a step cache shared by runners.
#[derive(Debug, Clone)]
pub struct RemoteCache {
    /// The repository, without tag or digest.
    pub repository: ImageRef,
    pub login: Option<Login>,
    pub mode: RemoteMode,
    /// The Ed25519 public key whose signatures make an entry trusted (`verify_key`).
    pub verify_key: Option<[u8; 32]>,
    /// The variable holding the private key that signs pushed entries (`signing_key_env`).
    pub signing_key_env: Option<String>,
}

/// How the remote cache is used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteMode {
    /// Pull from it, never push.
    Read,
    /// Pull from it, and push what a successful apply made or used.
    #[default]
    ReadWrite,
}

#[derive(Debug, Clone)]
pub struct Base {
    pub image: ImageRef,
    pub pull: PullPolicy,
    pub login: Option<Login>,
}

impl Base {
    /// Whether the pipeline starts from nothing (`image = "scratch"`): its base is the empty
    /// image the tool writes for each platform (`pipeline-scratch:OS-ARCH`).
    pub fn is_scratch(&self) -> bool {
        self.image.to_string() == crate::reference::SCRATCH_REFERENCE
    }
}

/// Explicit registry credentials: a user and the NAME of the variable holding the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password_env: String,
}

#[derive(Debug, Clone)]
pub struct Step {
    /// Display name: the `name` key, else derived from the action.
    pub name: String,
    pub action: Action,
    /// Where the step's `run` (else the step) is written: `file:line:col`.
    pub at: String,
    pub env: BTreeMap<String, String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub timeout: Option<Duration>,
    pub checkpoint: Option<bool>,
    pub secrets: Vec<String>,
    /// What the step's container is made with (always the default for a copy).
    pub container: ContainerOptions,
}

/// What a step's container is created with. Consecutive steps with the same options share a
/// container; a step with other options starts a new one from a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerOptions {
    pub caches: Vec<CacheMount>,
    pub mounts: Vec<HostMount>,
    /// Absolute paths of empty tmpfs folders.
    pub tmpfs: Vec<String>,
    pub network: Network,
}

impl ContainerOptions {
    /// The options in words, for `plan`: `cache /var/cache/apt (locked)`, `mount vendor ->
    /// /src/vendor (read-only)`, `tmpfs /scratch`, `network none`.
    pub fn describe(&self) -> Vec<String> {
        let caches = self.caches.iter().map(|c| match c.sharing {
            Sharing::Shared => format!("cache {}", c.path),
            Sharing::Locked => format!("cache {} (locked)", c.path),
        });
        let mounts = self
            .mounts
            .iter()
            .map(|m| format!("mount {} -> {} (read-only)", m.src_display, m.dest));
        let tmpfs = self.tmpfs.iter().map(|t| format!("tmpfs {t}"));
        let network = match self.network {
            Network::Default => None,
            Network::None => Some("network none".to_string()),
            Network::Host => Some("network host".to_string()),
        };
        caches.chain(mounts).chain(tmpfs).chain(network).collect()
    }

    /// Every path something is mounted at.
    pub fn mount_points(&self) -> impl Iterator<Item = &str> {
        self.caches
            .iter()
            .map(|c| c.path.as_str())
            .chain(self.mounts.iter().map(|m| m.dest.as_str()))
            .chain(self.tmpfs.iter().map(String::as_str))
    }
}

/// A persistent cache folder mounted while a step runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheMount {
    /// Absolute path in the container.
    pub path: String,
    pub sharing: Sharing,
}

/// A read-only host folder mounted while a step runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMount {
    /// Absolute host path of a folder inside the pipeline's folder (resolved, no symlinks).
    pub src: PathBuf,
    /// The source as written, for messages.
    pub src_display: String,
    /// Absolute path in the container.
    pub dest: String,
}

/// True when one of two absolute plain paths is the other or lies under it.
pub fn paths_overlap(a: &str, b: &str) -> bool {
    let under = |x: &str, y: &str| {
        x == y || y == "/" || x.strip_prefix(y).is_some_and(|r| r.starts_with('/'))
    };
    under(a, b) || under(b, a)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Run(Command),
    Copy(CopySpec),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Shell(String),
    Exec(Vec<String>),
}

impl Command {
    /// The argv the engine runs.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Command::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
            Command::Exec(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    /// The resolved sources, in order (a glob's matches sorted): at least one.
    pub sources: Vec<CopySource>,
    /// The source as written, for messages.
    pub src_display: String,
    /// Absolute path in the image.
    pub dest: String,
    pub mode: Option<u32>,
    pub owner: Option<(u32, u32)>,
    /// An owner given by name (`app`, `app:app`, `1000:staff`), resolved in the image when
    /// the step runs; then `owner` is `None`.
    pub owner_name: Option<OwnerName>,
    /// Files out of another image (`sources` is empty then).
    pub from: Option<Box<CopyFrom>>,
}

/// A copy out of another image, like `COPY --from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFrom {
    /// `from` as written (rendered): a pipeline's name or an image reference.
    pub text: String,
    /// The image to copy from: the reference written, or one the named pipeline produces.
    pub reference: Option<ImageRef>,
    /// The name of the pipeline of this apply that makes the image, once known.
    pub pipeline: Option<String>,
    /// The absolute path in that image.
    pub src: String,
    /// The image's id, once the apply or plan has found it: part of the step's key.
    pub image: Option<String>,
    /// Where `from` is written: its span and `file:line:col`.
    pub span: std::ops::Range<usize>,
    pub at: String,
}

/// A copy's owner with a name in it, as written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OwnerName {
    /// The owner as written.
    pub text: String,
    /// A user name or uid.
    pub user: String,
    /// A group name or gid; `None`: the uid.
    pub group: Option<String>,
    /// Where it is written, `file:line:col`.
    #[serde(skip)]
    pub at: String,
}

/// One resolved copy source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySource {
    /// Absolute host path.
    pub path: PathBuf,
    /// What of it stays out of the image and the key.
    pub filter: CopyFilter,
}

/// What of a copy source stays out of the image and the step's key: what the context's ignore
/// file (`.dockerignore`) or the step's `exclude` patterns exclude.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyFilter {
    /// The context's ignore file, matched against paths relative to the context root.
    pub(crate) ignore: Option<std::sync::Arc<ignore::Patterns>>,
    /// The source's path relative to the context root, `/`-separated (`.`: the root).
    pub(crate) base: String,
    /// The step's `exclude` patterns, matched against paths relative to the source.
    pub(crate) exclude: Option<std::sync::Arc<ignore::Patterns>>,
}

impl CopyFilter {
    /// Whether the entry at `rel` (relative to the source; empty: the source itself) is left
    /// out.
    pub(crate) fn excludes(&self, rel: &std::path::Path) -> bool {
        let rel = rel.to_string_lossy();
        let in_context = match (self.base.as_str(), rel.is_empty()) {
            (base, true) => base.to_string(),
            (".", false) => rel.to_string(),
            (base, false) => format!("{base}/{rel}"),
        };
        self.ignore
            .as_ref()
            .is_some_and(|p| p.excludes(&in_context))
            || (!rel.is_empty() && self.exclude.as_ref().is_some_and(|p| p.excludes(&rel)))
    }

    /// Whether an excluded folder may hold entries that are not (an exception, `!`, matches
    /// below it), so that it must be walked all the same.
    pub(crate) fn has_exceptions(&self) -> bool {
        [&self.ignore, &self.exclude]
            .into_iter()
            .flatten()
            .any(|p| p.has_exceptions())
    }
}

#[derive(Debug, Clone, Default)]
pub struct Commit {
    pub author: Option<String>,
    pub message: Option<String>,
    pub tags: Vec<ImageRef>,
    pub config: ConfigChanges,
}

/// Image config changes; `None` and empty collections keep the base's values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigChanges {
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// `PORT/PROTO`.
    pub expose: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub volumes: Vec<String>,
    pub healthcheck: Option<Healthcheck>,
    pub stop_signal: Option<String>,
    pub shell: Option<Vec<String>>,
    pub onbuild: Option<Vec<String>>,
}

/// A health check, as the image config holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Healthcheck {
    /// `["CMD-SHELL", command]`, `["CMD", argv...]` or `["NONE"]`.
    pub test: Vec<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub retries: Option<u32>,
}

/// A registry repository and the tags pushed to it.
#[derive(Debug, Clone)]
pub struct Target {
    pub repository: ImageRef,
    pub tags: Vec<String>,
    pub login: Option<Login>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

/// Where `apply` writes the image besides registries: `--output KIND:PATH`, `[[output]]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Output {
    pub kind: OutputKind,
    /// From the command line: as given; from a file: inside the pipeline's folder.
    pub path: PathBuf,
}

/// What an output is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// An OCI image layout folder (`skopeo inspect oci:PATH` reads it).
    Oci,
    /// One tar that `docker load` and `podman load` read (an OCI layout and `manifest.json`).
    Tar,
}

impl Output {
    /// Parses `oci:PATH` or `tar:PATH`.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let (kind, path) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}`: write `oci:PATH` or `tar:PATH`"))?;
        let kind = match kind {
            "oci" => OutputKind::Oci,
            "tar" => OutputKind::Tar,
            other => {
                return Err(format!(
                    "`{other}` is no output kind: write `oci:PATH` or `tar:PATH`"
                ))
            }
        };
        if path.is_empty() {
            return Err(format!("`{s}` names no path"));
        }
        Ok(Self {
            kind,
            path: PathBuf::from(path),
        })
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            OutputKind::Oci => "oci",
            OutputKind::Tar => "tar",
        };
        write!(f, "{kind}:{}", self.path.display())
    }
}

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LayerCompression {
    /// gzip (zlib-rs): pulled by every client.
    #[default]
    Gzip,
    /// zstd (libzstd): needs Docker 23+, containerd 1.5+ or Podman to pull.
    Zstd,
}

/// Pull policy for the base image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Pull every time.
    Always,
    /// Pull only when the image is not in the engine.
    #[default]
    Missing,
    /// Never pull; fail when the image is not in the engine.
    Never,
}

/// How concurrent applies share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    /// Every apply uses the folder at once (the tool the step runs keeps it consistent, as
    /// apt and dpkg do with their own locks).
    #[default]
    Shared,
    /// One apply at a time uses the folder; the others wait for it.
    Locked,
}

/// The network of a step's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The engine's default network (a bridge with outside access).
    #[default]
    Default,
    /// No network: only a loopback interface.
    None,
    /// The engine host's network.
    Host,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_print_and_match_with_an_optional_variant() {
        let arm = Platform::parse("linux/arm64").unwrap();
        assert_eq!(arm.to_string(), "linux/arm64");
        let v8 = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(v8.variant.as_deref(), Some("v8"));
        assert!(arm.matches("linux", "arm64", Some("v8")));
        assert!(v8.matches("linux", "arm64", None));
        assert!(!v8.matches("linux", "arm64", Some("v7")));
        assert!(!arm.matches("linux", "amd64", None));
        for bad in [
            "linux",
            "linux/",
            "Linux/amd64",
            "linux/amd64/v1/x",
            "/amd64",
        ] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }
}
