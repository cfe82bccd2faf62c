//! Command-line types (clap) only.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Turn a version-controlled TOML file into a published container image.
#[derive(Debug, Parser)]
#[command(name = "pipeline", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// Output style: `auto` (live on a terminal, plain timestamped lines otherwise), `tty`, `plain`.
    #[arg(long, global = true, value_enum, default_value_t = Progress::Auto, env = "PIPELINE_PROGRESS")]
    pub(crate) progress: Progress,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Progress {
    Auto,
    Tty,
    Plain,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Build, commit, tag and publish the image each pipeline file describes.
    Apply(ApplyArgs),
    /// Show what apply would do (cached or run, and why; what it would push), touching nothing.
    Plan(PlanArgs),
    /// Check pipeline files and report every problem at once.
    Validate(ValidateArgs),
    /// Print the JSON Schema of the pipeline file format, or of a document the tool writes.
    Schema(SchemaArgs),
    /// Remove the tool's cache images that the newest apply of their pipeline no longer uses
    /// (and, with `--mounts`, the steps' cache mounts).
    Gc(GcArgs),
    /// Show what differs between two images the tool wrote: config fields, layer entries and
    /// which of their fields (the way to explain two digests that should be one).
    Diff(DiffArgs),
    /// Make a key pair that signs remote cache entries: the private key on stdout (a secret
    /// for trusted jobs, read from the variable `[cache] signing_key_env` names), the
    /// `verify_key` line for the pipeline file on stderr.
    Keygen,
    /// Print a shell completion script, e.g. `pipeline completions bash >
    /// ~/.local/share/bash-completion/completions/pipeline`.
    Completions(CompletionsArgs),
    /// Print the manual page (roff), e.g. `pipeline man | man -l -`.
    Man(ManArgs),
    /// Write `pipeline.lock` beside the files: each base's index, per-platform manifest and
    /// config digests. Keeps the entries still used, adds missing ones, drops unused ones.
    Lock(LockArgs),
}

#[derive(Debug, Args)]
pub(crate) struct LockArgs {
    #[command(flatten)]
    pub(crate) files: FileArgs,
    /// Read the entries again from the registries: all of them, or only the base REF.
    #[arg(long, value_name = "REF", num_args = 0..=1, default_missing_value = "")]
    pub(crate) update: Option<String>,
    #[command(flatten)]
    pub(crate) engines: EngineArgs,
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// The page of one subcommand (`apply`, `plan`, ...) instead of the whole tool's.
    #[arg(value_name = "COMMAND")]
    pub(crate) command: Option<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub(crate) struct VarArgs {
    /// Give a declared template variable a value, converted to its type (repeatable; wins
    /// over `--var-file` and `PIPELINE_VAR_<name>`).
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub(crate) vars: Vec<(String, String)>,
    /// Set any key of the pipeline files over the files' values, e.g. `base.image=debian:trixie`
    /// or `step.0.run=make` (repeatable; the value is read as the key's type).
    #[arg(long = "set", value_name = "PATH=VALUE", value_parser = parse_var)]
    pub(crate) sets: Vec<(String, String)>,
    /// Load template variables from a TOML file of `key = value` lines (repeatable).
    #[arg(long = "var-file", value_name = "FILE")]
    pub(crate) var_files: Vec<PathBuf>,
    /// Build for this platform, e.g. `linux/arm64` (repeatable); replaces the file's
    /// `platforms`.
    #[arg(long = "platform", value_name = "OS/ARCH")]
    pub(crate) platforms: Vec<String>,
}

/// The pipeline files of a command and the values their templates read (every command that
/// reads files).
#[derive(Debug, Args)]
pub(crate) struct FileArgs {
    /// Pipeline files; a folder means every pipeline `*.toml` in it. Several files form a
    /// dependency graph.
    #[arg(required = true, value_name = "FILE")]
    pub(crate) files: Vec<PathBuf>,
    #[command(flatten)]
    pub(crate) vars: VarArgs,
}

/// How the step cache is used (`plan` and `apply`).
#[derive(Debug, Args)]
pub(crate) struct CacheArgs {
    /// Ignore the cache: every step runs (`plan`: would run). Neither the engine's cache nor
    /// the remote cache is read; `apply` still writes new entries to the engine's cache.
    #[arg(long)]
    pub(crate) no_cache: bool,
    /// A registry repository used as a shared step cache (`REGISTRY/REPOSITORY`, no tag);
    /// overrides `[cache] remote` of every pipeline file.
    #[arg(long, value_name = "REF")]
    pub(crate) cache_remote: Option<String>,
    /// `readwrite` (default): pull from the remote cache and push to it; `read`: pull only.
    #[arg(long, value_enum, default_value_t = CacheRemoteMode::Readwrite, value_name = "MODE")]
    pub(crate) cache_remote_mode: CacheRemoteMode,
}

/// The engines a command builds on or reads (`plan` and `apply`).
#[derive(Debug, Args)]
pub(crate) struct EngineArgs {
    /// A Docker engine (repeatable): unix://PATH, tcp://HOST:PORT (TLS per DOCKER_TLS_VERIFY /
    /// DOCKER_CERT_PATH, or `?tls=1&cert_path=DIR`), https://, ssh://USER@HOST. Default:
    /// DOCKER_HOST, else the local socket. `plan` reads the first that answers; `apply` places
    /// each pipeline on the least loaded one.
    #[arg(long = "engine", value_name = "URL")]
    pub(crate) engines: Vec<String>,
}

#[derive(Debug, Args)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "each bool is one command-line flag, as clap reads it"
)]
pub(crate) struct ApplyArgs {
    #[command(flatten)]
    pub(crate) files: FileArgs,
    #[command(flatten)]
    pub(crate) cache: CacheArgs,
    #[command(flatten)]
    pub(crate) engines: EngineArgs,
    /// On a failing step, keep its container as a debug image and print how to enter it.
    #[arg(long)]
    pub(crate) keep_failed: bool,
    /// Write a JSON run report to FILE (on success, failure and interrupt).
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,
    /// Write to FILE every reference pushed with its digest (indexes with their platforms'
    /// manifests) and every image committed with its local tags, as JSON.
    #[arg(long, value_name = "FILE")]
    pub(crate) metadata_file: Option<PathBuf>,
    /// Attempts for a push or pull that fails with a transient error.
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=20))]
    pub(crate) attempts: u32,
    /// First delay between attempts; it doubles each time, up to 30 s, with random jitter.
    #[arg(long, default_value = "500ms", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub(crate) retry_delay: std::time::Duration,
    /// How many pipelines run at once (default: 4 per engine).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub(crate) jobs: Option<u32>,
    /// Apply only the pipeline named NAME. The files (a folder) are all loaded, to know the
    /// graph; the image NAME builds on is pulled from the registry its pipeline publishes to,
    /// never rebuilt. One CI job per pipeline: see docs/ci.md.
    #[arg(long, value_name = "NAME")]
    pub(crate) only: Option<String>,
    /// After a failure, start nothing new and let running pipelines finish (the default).
    #[arg(long, overrides_with = "keep_going")]
    pub(crate) fail_fast: bool,
    /// After a failure, go on with every pipeline that does not build on the failed one.
    #[arg(long, overrides_with = "fail_fast")]
    pub(crate) keep_going: bool,
    /// Run the steps and commit, but push nothing: no `[[publish]]` target, no index, no
    /// remote cache entry (the build a pull request runs). The report lists each publish tag
    /// as `skipped`.
    #[arg(long)]
    pub(crate) no_push: bool,
    /// Also write the image to `oci:PATH` (an OCI image layout folder) or `tar:PATH` (one tar
    /// that `docker load` and `podman load` read); repeatable, added to the file's `[[output]]`.
    #[arg(long = "output", value_name = "oci:PATH|tar:PATH", value_parser = crate::model::Output::parse)]
    pub(crate) outputs: Vec<crate::model::Output>,
    /// Use the bases at exactly the digests of `pipeline.lock` beside the files; a missing
    /// lock, or one that lacks a base the files use or has an entry none uses, is an error.
    #[arg(long)]
    pub(crate) locked: bool,
}

#[derive(Debug, Args)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "each bool is one command-line flag, as clap reads it"
)]
pub(crate) struct PlanArgs {
    #[command(flatten)]
    pub(crate) files: FileArgs,
    #[command(flatten)]
    pub(crate) cache: CacheArgs,
    #[command(flatten)]
    pub(crate) engines: EngineArgs,
    /// Exit 0 when apply would change nothing, 2 when it would, 1 on error (also when apply
    /// would fail).
    #[arg(long)]
    pub(crate) detailed_exitcode: bool,
    /// Ask no registry and send no credentials anywhere: only read the engine (inspect and
    /// list). Publish status is `unknown`. For pipeline files you do not trust.
    #[arg(long)]
    pub(crate) offline: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
    /// Print each pipeline file as resolved (variables given, `--set` applied, templates
    /// rendered) as TOML, with where each value came from as a comment, and stop: no engine
    /// or registry is read.
    #[arg(long, conflicts_with_all = ["format", "detailed_exitcode", "offline"])]
    pub(crate) resolved: bool,
    /// Plan an `apply --no-push`: every publish tag is `skipped (--no-push)`.
    #[arg(long)]
    pub(crate) no_push: bool,
    /// Plan an `apply --output`: also names these outputs.
    #[arg(long = "output", value_name = "oci:PATH|tar:PATH", value_parser = crate::model::Output::parse)]
    pub(crate) outputs: Vec<crate::model::Output>,
    /// Use the bases at exactly the digests of `pipeline.lock` beside the files; a missing
    /// lock, or one that lacks a base the files use or has an entry none uses, is an error.
    #[arg(long)]
    pub(crate) locked: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CacheRemoteMode {
    Read,
    Readwrite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct SchemaArgs {
    /// Which format: the pipeline file, or a document for machines (README, "Output for
    /// machines").
    #[arg(value_enum, default_value_t = Document::Pipeline)]
    pub(crate) document: Document,
}

/// The formats `pipeline schema` describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Document {
    /// The pipeline file.
    Pipeline,
    /// `apply --report`.
    Report,
    /// `apply --metadata-file`.
    Metadata,
    /// `plan --format json`.
    Plan,
    /// `validate --format json`.
    Validate,
    /// A command's failure under `--format json`.
    Error,
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    #[command(flatten)]
    pub(crate) files: FileArgs,
    /// Output format: `json` prints one document, each file with its diagnostics.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
}

#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    /// An image the tool wrote: its manifest digest (`sha256:...`, in the local store) or the
    /// run report (`apply --report FILE`) of the apply that wrote it.
    #[arg(value_name = "IMAGE_A")]
    pub(crate) a: String,
    /// The other image, named the same ways.
    #[arg(value_name = "IMAGE_B")]
    pub(crate) b: String,
}

#[derive(Debug, Args)]
pub(crate) struct GcArgs {
    /// Show what would be removed without removing it.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Also remove the cache mounts of steps (`cache = [...]`, engine volumes), except those a
    /// container uses right now.
    #[arg(long, conflicts_with = "remote")]
    pub(crate) mounts: bool,
    /// An engine to collect on (repeatable); default: DOCKER_HOST, else the local socket.
    /// The blob store keeps what the images these engines hold need.
    #[arg(long = "engine", value_name = "URL", conflicts_with = "remote")]
    pub(crate) engines: Vec<String>,
    /// Then remove the least recently used blobs of the blob store until it holds at most
    /// SIZE (`500MB`, `10GB`; binary units: 1 GB = 1024 MB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, conflicts_with = "remote")]
    pub(crate) keep_storage: Option<u64>,
    /// Keep what the blob store's records name for this long after they were last written
    /// or read, whether or not an engine holds their image (`12h`, `7days`).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "48h",
        value_parser = humantime::parse_duration,
        conflicts_with = "remote"
    )]
    pub(crate) keep_duration: std::time::Duration,
    /// Collect a remote step cache (`REGISTRY/REPOSITORY`, no tag) instead of the engines:
    /// delete its tags that the newest apply of their pipeline no longer uses. The registry
    /// must allow deletion.
    #[arg(long, value_name = "REF")]
    pub(crate) remote: Option<String>,
    /// User name for the remote cache's registry (with `--remote-password-env`); default: the
    /// docker config, else anonymous.
    #[arg(long, value_name = "NAME", requires_all = ["remote", "remote_password_env"])]
    pub(crate) remote_username: Option<String>,
    /// The NAME of the environment variable holding that user's password.
    #[arg(long, value_name = "VAR", requires = "remote_username")]
    pub(crate) remote_password_env: Option<String>,
}

/// A size in bytes: a number, optionally with a unit (`B`, `K`/`KB`/`KiB`, `M`..., `G`...,
/// `T`...; any case), each 1024 times the one before, as Docker's `--memory` reads them.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let not_size = || format!("`{s}` is not a size such as `10GB`");
    if number.is_empty() {
        return Err(not_size());
    }
    let power = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 1,
        "m" | "mb" | "mib" => 2,
        "g" | "gb" | "gib" => 3,
        "t" | "tb" | "tib" => 4,
        other => return Err(format!("unknown unit `{other}`: use B, KB, MB, GB or TB")),
    };
    let n: f64 = number.parse().map_err(|_| not_size())?;
    let bytes = n * 1024f64.powi(power);
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("`{s}` is too large"));
    }
    // Whole bytes: a fraction of one is dropped.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(bytes as u64)
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_read_as_docker_reads_them() {
        let cases: [(&str, Result<u64, &str>); 11] = [
            ("0", Ok(0)),
            ("512", Ok(512)),
            ("512B", Ok(512)),
            ("10k", Ok(10 << 10)),
            ("500MB", Ok(500 << 20)),
            ("10GB", Ok(10 << 30)),
            ("1.5 GiB", Ok(3 << 29)),
            ("2tb", Ok(2 << 40)),
            (
                "10 parsecs",
                Err("unknown unit `parsecs`: use B, KB, MB, GB or TB"),
            ),
            ("-1GB", Err("`-1GB` is not a size such as `10GB`")),
            ("1.2.3GB", Err("`1.2.3GB` is not a size such as `10GB`")),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text), want.map_err(String::from), "{text}");
        }
        assert!(parse_size("99999999999TB").is_err());
    }
}
