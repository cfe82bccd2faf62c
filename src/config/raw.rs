//! The pipeline file exactly as written: serde types with source spans.
//!
//! These types are the file-format contract. Their `///` comments become the descriptions in
//! `schemas/pipeline.schema.json`. Nothing here is validated beyond its TOML shape: see
//! [`crate::model`] for the checked pipeline. Keys the schema requires are `Option`s to serde
//! (their schema comes from the type in `#[schemars(with)]`): the structural check reports a
//! missing one, and the rest of the file is still checked.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

pub use crate::model::{LayerCompression, Network, PullPolicy, Sharing};

/// A string as written in the file, with its byte range (a minijinja template).
pub type Str = Spanned<String>;

/// A pipeline: a base image, setup steps, commit metadata and publish targets.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// Files applied under this one, in order, then this file: tables merge key by key,
    /// arrays (`[[step]]` included) and other values replace. Named relative to this file,
    /// inside the pipeline's folder; an extended file may extend others. A file found in a
    /// folder that another file of the run extends is not applied on its own.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub extends: Vec<Str>,
    /// A name for this pipeline, used to group its cache images (`pipeline gc`).
    /// Defaults to the file name without its extension.
    #[schemars(with = "Option<String>")]
    pub name: Option<Str>,
    /// The build context: the folder that every copy and mount source, secret file and the
    /// ignore file (`.dockerignore` at its root) are relative to, written relative to this
    /// file's folder, e.g. `".."`. Defaults to this file's folder. Nothing outside it is read.
    #[schemars(with = "Option<String>")]
    pub context: Option<Str>,
    /// Platforms to build for, e.g. `["linux/amd64", "linux/arm64"]`: each is built from the
    /// base's image for it, and every publish tag becomes one multi-platform index. Defaults to
    /// the engine's own platform. `--platform` overrides it. Templates can read the platform
    /// being built as `{{ platform.os }}`, `{{ platform.arch }}`, `{{ platform.variant }}`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub platforms: Vec<Str>,
    /// Template variables, each declared with its type: by its value (`debug = false` is a
    /// bool, `arches = ["amd64"]` a list of strings), or by `{ type = "string" }` without a
    /// value. Every string value in this file is a minijinja template that can use them as
    /// `{{ name }}`; `PIPELINE_VAR_<name>`, `--var-file FILE.toml` and `--var NAME=VALUE` give
    /// them other values of the same type.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, VarValue>")]
    pub vars: BTreeMap<String, Spanned<toml::Value>>,
    /// Variants of this pipeline: each key a variable, each value the non-empty list of the
    /// values it takes (all strings, all numbers or all bools), e.g. `debian = ["bookworm",
    /// "trixie"]`. The file is one pipeline per combination (the first key varies slowest),
    /// each with those values; a key declared under `[vars]` takes values of its type, any
    /// other is declared by the matrix. `--var KEY=VALUE` keeps the variants with that value.
    /// At most 64 variants.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, Vec<VarItem>>")]
    pub matrix: BTreeMap<String, Spanned<toml::Value>>,
    /// The image the build starts from.
    // Optional to serde only (a missing `Option` is `None`): a missing `[base]` is reported by
    // the structural check, and the rest of the file is still checked.
    #[schemars(with = "Base")]
    pub base: Option<Base>,
    /// Setup steps, run in order in a container made from the base image.
    #[serde(default, rename = "step")]
    #[schemars(with = "Vec<Step>")]
    pub steps: Vec<Spanned<Step>>,
    /// How the result is committed: author, message, local tags and image config changes.
    #[serde(default)]
    pub commit: Commit,
    /// Registries to push the committed image to, in the order written.
    #[serde(default, rename = "publish")]
    pub publish: Vec<Publish>,
    /// Secrets that steps may read from `/run/secrets/NAME` while they run. Their values never
    /// enter the image, the cache key, the output or the report.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, Secret>")]
    pub secrets: BTreeMap<Str, Secret>,
    /// Step cache and checkpoint settings.
    #[serde(default)]
    pub cache: CacheSettings,
    /// How the image's layers, config and manifest are written.
    #[serde(default)]
    pub image: ImageSettings,
    /// Where `apply` also writes the image, besides the registries: an OCI image layout
    /// folder or a tar that `docker load` and `podman load` read. `--output` adds more.
    #[serde(default, rename = "output")]
    pub outputs: Vec<Output>,
}

/// An image written to a file or folder.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// `oci` (an OCI image layout folder) or `tar` (one tar: an OCI layout and the
    /// `manifest.json` of `docker save`).
    #[serde(rename = "type")]
    #[schemars(with = "crate::model::OutputKind")]
    pub kind: Option<Spanned<crate::model::OutputKind>>,
    /// Where, relative to the pipeline file's folder and inside it (plain names, no `..`).
    #[schemars(with = "String")]
    pub path: Option<Str>,
}

/// A template variable: its value, which declares its type, or its type without a value.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum VarValue {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    /// A list variable: its items all strings, all numbers or all bools.
    List(Vec<VarItem>),
    Declaration(VarDeclaration),
}

/// An item of a list variable.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum VarItem {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
}

/// A variable's default: a value or a list.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum VarDefault {
    Item(VarItem),
    List(Vec<VarItem>),
}

/// A variable declared by its type, e.g. `registry = { type = "string" }`: without
/// `default`, it is undefined unless given (`--var`, a var file, `PIPELINE_VAR_<name>`), and
/// `default`, `is defined` and `{% if %}` handle that in templates.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct VarDeclaration {
    /// `string`, `bool`, `integer`, `number` or `list`.
    #[serde(rename = "type")]
    kind: VarType,
    /// The value when none is given.
    default: Option<VarDefault>,
    /// What the variable is for.
    description: Option<String>,
}

/// The type of a declared variable.
#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum VarType {
    String,
    Bool,
    Integer,
    Number,
    List,
}

/// The base image.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Base {
    /// Base image reference, e.g. `debian:bookworm` or `registry.example.com/team/base:1.2`.
    #[schemars(with = "String")]
    pub image: Option<Str>,
    /// When to pull the base image: `always`, `missing` (default) or `never`.
    #[serde(default)]
    #[schemars(with = "Option<PullPolicy>")]
    pub pull: Option<Spanned<PullPolicy>>,
    /// User name for a private base image's registry (with `password_env`). Without it,
    /// credentials come from the docker config (`$DOCKER_CONFIG` or `~/.docker/config.json`).
    #[schemars(with = "Option<String>")]
    pub username: Option<Str>,
    /// The NAME of the environment variable holding the registry password, never the password.
    #[schemars(with = "Option<String>")]
    pub password_env: Option<Str>,
}

/// One setup step: exactly one of `run` or `copy`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// A name shown in the output and the report. Defaults to the command or the copy.
    #[schemars(with = "Option<String>")]
    pub name: Option<Str>,
    /// The command. A string runs with `/bin/sh -c`; an array runs as is (exec form).
    #[schemars(with = "Option<RunSpec>")]
    pub run: Option<Spanned<RunSpec>>,
    /// Copy a file or a directory from the host into the image.
    pub copy: Option<Copy>,
    /// Environment for this step only; never committed into the image.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub env: BTreeMap<Str, Str>,
    /// User to run the command as (`name`, `uid` or `uid:gid`). Defaults to the image's user.
    #[schemars(with = "Option<String>")]
    pub user: Option<Str>,
    /// Working directory of the command. Defaults to the image's.
    #[schemars(with = "Option<String>")]
    pub workdir: Option<Str>,
    /// Longest time the step may run, e.g. `"90s"`, `"10m"`. The step fails when it is exceeded.
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Str>,
    /// `true` commits a checkpoint after this step, `false` never does; unset: a checkpoint
    /// follows any step that ran longer than `cache.checkpoint_after`.
    pub checkpoint: Option<bool>,
    /// Secrets this step can read from `/run/secrets/NAME` (names from `[secrets]`).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub secrets: Vec<Str>,
    /// Cache mounts: persistent folders (engine volumes) mounted at these absolute paths while
    /// this step runs, kept for later applies of this pipeline on the same engine and platform,
    /// never part of the image. A path, or `{ path = "...", sharing = "locked" }`.
    #[serde(default)]
    #[schemars(with = "Vec<CacheMount>")]
    pub cache: Vec<Spanned<CacheMount>>,
    /// Read-only host folders (inside the build context) mounted while this step runs, never
    /// part of the image; their content is part of the step's cache key. Needs an engine on
    /// this host.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Empty in-memory folders mounted at these absolute paths while this step runs (e.g.
    /// `["/scratch"]`), never part of the image.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub tmpfs: Vec<Str>,
    /// The network of the step's container: `default` (the engine's), `none` (only a loopback
    /// interface) or `host` (the engine host's interfaces).
    #[schemars(with = "Option<Network>")]
    pub network: Option<Spanned<Network>>,
}

/// A cache mount: its absolute path, or a table with the path and how applies share it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum CacheMount {
    /// The absolute path, shared with concurrent applies.
    Path(String),
    /// The path and its sharing mode.
    Table(CacheMountTable),
}

/// A cache mount with options.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheMountTable {
    /// Absolute path in the step's container.
    pub path: String,
    /// `shared` (default): concurrent applies use the folder at once; `locked`: one apply at a
    /// time (others wait), also across hosts sharing the engine.
    #[serde(default)]
    pub sharing: Sharing,
}

/// A read-only host folder mounted into a step's container.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// A folder relative to the build context (`context`, by default the pipeline file's
    /// folder); must stay inside it.
    #[schemars(with = "String")]
    pub src: Option<Str>,
    /// Absolute path in the step's container.
    #[schemars(with = "String")]
    pub dest: Option<Str>,
}

/// A command: a shell string or an exec-form array.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RunSpec {
    /// Run by `/bin/sh -c`.
    Shell(String),
    /// Run as is, without a shell.
    Exec(Vec<String>),
}

/// Copy sources: one path or glob, or a list of them.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum CopySrc {
    /// One path or glob.
    One(String),
    /// Several, copied in order into the `dest` folder.
    Many(Vec<String>),
}

impl CopySrc {
    /// The sources as written.
    pub fn as_slice(&self) -> &[String] {
        match self {
            CopySrc::One(s) => std::slice::from_ref(s),
            CopySrc::Many(v) => v,
        }
    }
}

/// A file or directory copy.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Copy {
    /// Copy out of another image instead of the build context, like `COPY --from`: the name
    /// of a pipeline of the same apply (its fresh image, which then builds first) or an image
    /// reference (pulled like a base when missing, pinned by its id). `src` is then one
    /// absolute path in that image; files keep their owner and mode unless `owner`/`mode`
    /// say otherwise.
    #[schemars(with = "Option<String>")]
    pub from: Option<Str>,
    /// Source file or directory, relative to the build context (`context`, by default the
    /// pipeline file's folder); must stay inside it. Globs (`files/*.txt`, `conf/**/*.conf`)
    /// and a list of sources (`["a", "b/*.conf"]`, then `dest` ends with `/`) copy several.
    #[schemars(with = "CopySrc")]
    pub src: Option<Spanned<CopySrc>>,
    /// Patterns (`.dockerignore` syntax, relative to the source) of files and folders of the
    /// source left out of the copy, e.g. `["*.md", "tests/**"]`; `!` makes an exception.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub exclude: Vec<Str>,
    /// Absolute destination path of plain names (no `.`, `..` or `//`). For a file, the file's
    /// new path (or a folder when it ends with `/`); for a directory, the folder its contents go
    /// into, created with the owner when missing.
    #[schemars(with = "String")]
    pub dest: Option<Str>,
    /// Octal permission bits for every copied file, e.g. `"0644"`. Default: kept from the host.
    #[schemars(with = "Option<String>")]
    pub mode: Option<Str>,
    /// Owner of the copied files as `uid[:gid]` or `name[:group]` (names looked up in the
    /// image's `/etc/passwd` and `/etc/group` when the step runs; without a group, the gid is
    /// the uid). Default: `0:0` (root).
    #[schemars(with = "Option<String>")]
    pub owner: Option<Str>,
}

/// Commit metadata.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Commit {
    /// Author recorded in the image, like `docker commit -a`, e.g. `"Jane <jane@example.com>"`.
    #[schemars(with = "Option<String>")]
    pub author: Option<Str>,
    /// Commit message recorded in the image history, like `docker commit -m`.
    #[schemars(with = "Option<String>")]
    pub message: Option<Str>,
    /// Local names given to the committed image, e.g. `["myvim:1.1"]`.
    #[schemars(with = "Option<Vec<String>>")]
    pub tags: Option<Spanned<Vec<Str>>>,
    /// Image config changes; keys left out keep the base image's values.
    #[serde(default)]
    pub config: ImageConfig,
}

/// Typed image config changes.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    /// Default command (`CMD`). An array is the exec form; a string is the shell form, as in
    /// a Dockerfile: `"nginx -g 'daemon off;'"` is `["/bin/sh", "-c", "nginx -g 'daemon off;'"]`
    /// (with the file's `shell` instead of `/bin/sh -c` when it sets one).
    #[schemars(with = "Option<RunSpec>")]
    pub cmd: Option<Spanned<RunSpec>>,
    /// Entrypoint (`ENTRYPOINT`): an array (exec form) or a string (shell form, as `cmd`).
    /// Setting it without `cmd` clears the base's `CMD`, as a Dockerfile does.
    #[schemars(with = "Option<RunSpec>")]
    pub entrypoint: Option<Spanned<RunSpec>>,
    /// Environment variables added to (or replacing those of) the base image.
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub env: Option<BTreeMap<Str, Str>>,
    /// Labels added to (or replacing those of) the base image.
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub labels: Option<BTreeMap<Str, Str>>,
    /// Exposed ports, e.g. `[80, "443/tcp", "53/udp"]`.
    #[schemars(with = "Option<Vec<PortSpec>>")]
    pub expose: Option<Vec<Spanned<PortSpec>>>,
    /// Default user (`USER`).
    #[schemars(with = "Option<String>")]
    pub user: Option<Str>,
    /// Default working directory (`WORKDIR`), absolute.
    #[schemars(with = "Option<String>")]
    pub workdir: Option<Str>,
    /// Volumes (`VOLUME`), absolute paths.
    #[schemars(with = "Option<Vec<String>>")]
    pub volumes: Option<Vec<Str>>,
    /// How the engine checks that a container still works (`HEALTHCHECK`).
    pub healthcheck: Option<Healthcheck>,
    /// The signal that stops a container (`STOPSIGNAL`): a name such as `"SIGTERM"` or a number.
    #[schemars(with = "Option<String>")]
    pub stop_signal: Option<Str>,
    /// The shell for shell-form commands of images built on this one (`SHELL`), exec form, e.g.
    /// `["/bin/bash", "-c"]`.
    #[schemars(with = "Option<Vec<String>>")]
    pub shell: Option<Spanned<Vec<Str>>>,
    /// Dockerfile instructions run when another build uses this image as its base (`ONBUILD`),
    /// e.g. `["RUN make"]`.
    #[schemars(with = "Option<Vec<String>>")]
    pub onbuild: Option<Vec<Str>>,
}

/// A health check (`HEALTHCHECK`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    /// The check. A string runs with the image's shell (`CMD-SHELL`), an array as is (`CMD`);
    /// `"none"` turns off a check the base image has (`NONE`). An array may also be written
    /// as in Compose: `["CMD", "curl", "-f", "localhost"]`, `["CMD-SHELL", "curl -f localhost"]`
    /// or `["NONE"]`.
    #[schemars(with = "RunSpec")]
    pub test: Spanned<RunSpec>,
    /// Time between checks, e.g. `"30s"`. Default: the engine's (30 s).
    #[schemars(with = "Option<String>")]
    pub interval: Option<Str>,
    /// Time a check may take before it counts as failed. Default: the engine's (30 s).
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Str>,
    /// Time a container gets to start before failed checks count. Default: none.
    #[schemars(with = "Option<String>")]
    pub start_period: Option<Str>,
    /// Failed checks in a row that make the container unhealthy. Default: the engine's (3).
    #[schemars(with = "Option<u32>")]
    pub retries: Option<Spanned<i64>>,
}

/// A port: a number, or `"PORT/tcp"` / `"PORT/udp"`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PortSpec {
    Number(i64),
    Text(String),
}

/// A registry target.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    /// Repository including the registry host, e.g. `localhost:5000/team/app`.
    #[schemars(with = "String")]
    pub repository: Option<Str>,
    /// Tags to push, in order.
    #[schemars(with = "Vec<String>")]
    pub tags: Option<Spanned<Vec<Str>>>,
    /// User name for this registry (with `password_env`). Without it, credentials come from the
    /// docker config, else the push is anonymous.
    #[schemars(with = "Option<String>")]
    pub username: Option<Str>,
    /// The NAME of the environment variable holding the password, never the password itself.
    #[schemars(with = "Option<String>")]
    pub password_env: Option<Str>,
}

/// Where a secret's value comes from: exactly one of `env` or `file`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    /// Name of the environment variable holding the value.
    #[schemars(with = "Option<String>")]
    pub env: Option<Str>,
    /// File holding the value, relative to the build context (`context`, by default the
    /// pipeline file's folder); must stay inside it.
    #[schemars(with = "Option<String>")]
    pub file: Option<Str>,
}

/// How the image is written.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageSettings {
    /// Layer compression: `gzip` (default: every client pulls it) or `zstd` (smaller and
    /// faster to write and unpack; pulled by Docker 23+, containerd 1.5+ and Podman, not by
    /// Docker 20.10; written in an OCI manifest).
    #[serde(default)]
    #[schemars(with = "Option<LayerCompression>")]
    pub compression: Option<Spanned<LayerCompression>>,
    /// Compression level: gzip 0-9 (default 3), zstd 1-19 (default 3).
    #[schemars(with = "Option<i64>")]
    pub level: Option<Spanned<i64>>,
    /// Write the same image for the same inputs: file times after the epoch become the epoch,
    /// and the image's creation and history times are the epoch. Default `false`;
    /// `SOURCE_DATE_EPOCH` in the environment always turns it on (and is the epoch).
    pub reproducible: Option<bool>,
    /// The epoch of a reproducible image, in unix seconds. Default: the time of the pipeline
    /// file's last git commit; outside git, 0.
    #[schemars(with = "Option<i64>")]
    pub epoch: Option<Spanned<i64>>,
}

/// Step cache settings.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// A step that runs longer than this is followed by a checkpoint (a cached layer), e.g.
    /// `"1s"` (default), `"500ms"`.
    #[schemars(with = "Option<String>")]
    pub checkpoint_after: Option<Str>,
    /// A registry repository shared by every runner as a step cache, e.g.
    /// `"registry.example.com/team/app-cache"` (no tag: the tags are cache keys). A runner that
    /// misses a step locally pulls it from there; after a successful apply, the checkpoints and
    /// the final image are pushed there. `--cache-remote` overrides it.
    #[schemars(with = "Option<String>")]
    pub remote: Option<Str>,
    /// User name for the cache registry (with `password_env`). Without it, credentials come
    /// from the docker config, else access is anonymous.
    #[schemars(with = "Option<String>")]
    pub username: Option<Str>,
    /// The NAME of the environment variable holding the cache registry's password.
    #[schemars(with = "Option<String>")]
    pub password_env: Option<Str>,
    /// The public key that signs trusted cache entries, `"ed25519:BASE64"` (`pipeline keygen`
    /// prints one). An entry is used only when its signature verifies with it; without it,
    /// the remote cache is not used at all.
    #[schemars(with = "Option<String>")]
    pub verify_key: Option<Str>,
    /// The NAME of the environment variable holding the private key that signs the entries a
    /// `readwrite` apply pushes. Give that variable only to trusted jobs (the main branch):
    /// without it, an apply pushes nothing.
    #[schemars(with = "Option<String>")]
    pub signing_key_env: Option<Str>,
}
