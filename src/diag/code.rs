//! Every diagnostic code: one variant each, with its stable kebab-case name and what it means.
//!
//! The names are part of the output (`error[unknown-key]`, the `code` of JSON reports): they
//! never change once released. Each is documented in `docs/diagnostics.md`, which a test keeps
//! in step with [`Code::ALL`].

use std::fmt;

/// Declares [`Code`] with each variant's name and summary, and [`Code::ALL`].
macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal : $summary:literal, )*) => {
        /// A diagnostic's stable code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $( $(#[$doc])* #[doc = $summary] $variant, )*
        }

        impl Code {
            /// Every code, in the order declared.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The kebab-case name, as printed: `unknown-key`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)*
                }
            }

            /// What the code means, in one line (the table of `docs/diagnostics.md`).
            pub const fn summary(self) -> &'static str {
                match self {
                    $(Code::$variant => $summary,)*
                }
            }
        }
    };
}

codes! {
    // The file as a whole.
    UnreadableFile = "unreadable-file": "a file cannot be read: missing, not a regular file, larger than 1 MiB, or a broken symlink",
    InvalidUtf8 = "invalid-utf8": "the file is not valid UTF-8",
    TomlSyntax = "toml-syntax": "the file is not valid TOML",
    // Structure: the schema.
    UnknownKey = "unknown-key": "a key the file format does not have at that place",
    InvalidType = "invalid-type": "a value of the wrong type, e.g. a string where a list is expected",
    MissingKey = "missing-key": "a required key is missing",
    InvalidValue = "invalid-value": "a value outside the allowed set or range",
    // Variables and templates.
    InvalidVar = "invalid-var": "a `[vars]` entry that declares no type: a table, a date or a list of mixed or nested values, other than `{ type = ..., default = ... }`",
    VarType = "var-type": "a value given for a variable (`--var`, a var file, `PIPELINE_VAR_*`) that does not fit its declared type",
    UnknownVariable = "unknown-variable": "a value given (`--var`, a var file, `PIPELINE_VAR_*`) for a variable that no pipeline file declares under `[vars]`",
    InvalidVarFile = "invalid-var-file": "a `--var-file` that cannot be read or is not a TOML table",
    InvalidMatrix = "invalid-matrix": "a `[matrix]` key with no values, values of more than one type or not of its declared type, a list variable as a key, or more than 64 variants",
    MatrixValue = "matrix-value": "a value given for a matrix key (`--var`, a var file, `PIPELINE_VAR_*`) that is not one of its values",
    DuplicateName = "duplicate-name": "two variants of a matrix with the same name",
    InvalidSet = "invalid-set": "a `--set` whose path is not a key of the file format, or names an array item or a table the file does not have",
    UndefinedVariable = "undefined-variable": "a template names a variable that is not declared, or prints one without a value or an environment variable that is not set",
    TemplateSyntax = "template-syntax": "a template that minijinja cannot parse",
    TemplateError = "template-error": "a template that fails while it renders, or uses up its work budget",
    TemplateTooComplex = "template-too-complex": "a template with more than 1000 names, literals and operators",
    TemplateLoop = "template-loop": "a `{% for %}` loop in a template",
    TemplateUnsupported = "template-unsupported": "a template construct outside the supported subset (macros, calls, containers out of place)",
    UnknownFilter = "unknown-filter": "a filter that is not one of the supported ones",
    SecretInTemplate = "secret-in-template": "a template reads the environment variable behind a secret",
    // Images and registries.
    InvalidReference = "invalid-reference": "an image reference that does not follow the reference grammar",
    InvalidTag = "invalid-tag": "a tag that does not follow the tag grammar",
    TagInRepository = "tag-in-repository": "a repository that names a tag or digest where only a repository belongs",
    EmptyTags = "empty-tags": "an empty list of tags",
    DuplicateTarget = "duplicate-target": "the same repository and tag published twice, or one reference produced by two files of a run (a local tag or a publish target)",
    ReservedName = "reserved-name": "a local tag or publish repository in a repository only the tool writes (`pipeline-cache`, `pipeline-debug`)",
    PlatformInPublish = "platform-in-publish": "a `[[publish]]` repository or tag that reads `platform` in a pipeline built for several platforms",
    IncompleteCredentials = "incomplete-credentials": "`username` without `password_env`, or the reverse, or credentials without a registry",
    InvalidEnvName = "invalid-env-name": "a name that is not a valid environment variable name",
    InvalidPlatform = "invalid-platform": "a platform that is not `OS/ARCH` or `OS/ARCH/VARIANT`",
    InvalidVerifyKey = "invalid-verify-key": "a `verify_key` that is not `ed25519:` and the base64 of a 32-byte public key",
    PublishIntoCache = "publish-into-cache": "a `[[publish]]` into the remote cache repository, where only signed cache entries belong",
    // Steps.
    StepAction = "step-action": "a step with both or neither of `run` and `copy`",
    StepOption = "step-option": "a container option (`cache`, `mounts`, `tmpfs`, `network`) on a copy step",
    EmptyCommand = "empty-command": "an empty command, shell or health check",
    RelativePath = "relative-path": "a path in the image that is not absolute",
    InvalidDestination = "invalid-destination": "a destination or mount point with `.`, `..`, `//` or a NUL byte, or `/` as a mount point",
    MountOverlap = "mount-overlap": "mount points of one step inside one another, or over `/run/secrets`",
    MountNotFolder = "mount-not-folder": "a read-only mount whose source is not a folder",
    ExtendsCycle = "extends-cycle": "extended files that extend each other in a cycle, or more than 64 files extended by one pipeline",
    PathEscapes = "path-escapes": "a host path that leaves the build context (by default the pipeline's folder)",
    PathNotFound = "path-not-found": "a host path that does not exist",
    InvalidContext = "invalid-context": "a `context` that is not a folder or cannot be read",
    InvalidIgnoreFile = "invalid-ignore-file": "a `.dockerignore` that cannot be read or holds a pattern Docker refuses",
    IgnoredSource = "ignored-source": "a copy source that the context's `.dockerignore` excludes",
    InvalidPattern = "invalid-pattern": "an `exclude` pattern Docker refuses: a bare `!`, an unclosed `[`, an unescaped `-` in a class",
    UnknownFrom = "unknown-from": "a copy's `from` that names no pipeline of the run and is no image reference",
    InvalidMode = "invalid-mode": "a file mode that is not octal",
    InvalidOwner = "invalid-owner": "an owner that is not `uid[:gid]` or `name[:group]`",
    InvalidDuration = "invalid-duration": "a duration that cannot be read or is zero",
    RunOnScratch = "run-on-scratch": "a `run` step in a pipeline on `scratch`, which has no shell and no files to run",
    // Secrets.
    UnknownSecret = "unknown-secret": "a step lists a secret that is not declared under `[secrets]`",
    SecretSource = "secret-source": "a secret with both or neither of `env` and `file`",
    InvalidSecretName = "invalid-secret-name": "a secret name other than letters, digits and `_`",
    InvalidSecretFile = "invalid-secret-file": "a secret file that is not a regular file of at most 512 KiB",
    // Image config.
    InvalidEnvValue = "invalid-env-value": "an image `env` value whose `$NAME` expansion is malformed",
    InvalidLabel = "invalid-label": "an empty label name",
    InvalidPort = "invalid-port": "a port that is not 1-65535 with an optional `/tcp`, `/udp` or `/sctp`",
    InvalidSignal = "invalid-signal": "a stop signal that is neither a signal name nor a number 1-64",
    InvalidOnbuild = "invalid-onbuild": "an `onbuild` entry that is not a Dockerfile instruction allowed there",
    // Image writing.
    InvalidImageSetting = "invalid-image-setting": "an `[image]` compression level outside the compression's range, or an epoch before 1970",
    InvalidOutput = "invalid-output": "an `[[output]]` without `type` or `path`, or whose path is not a plain relative path inside the pipeline's folder",
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn codes_are_unique_kebab_case_names() {
        let mut seen = BTreeSet::new();
        for code in Code::ALL {
            let name = code.as_str();
            assert!(seen.insert(name), "`{name}` is the name of two codes");
            assert!(
                !name.is_empty()
                    && name.split('-').all(|w| !w.is_empty()
                        && w.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())),
                "`{name}` is not kebab-case"
            );
            assert!(!code.summary().is_empty(), "`{name}` has no summary");
        }
    }

    /// `docs/diagnostics.md` has one table row per code, with the code's summary, and no row
    /// for a code that does not exist.
    #[test]
    fn every_code_is_documented() {
        let doc = include_str!("../../docs/diagnostics.md");
        let rows: Vec<(&str, &str)> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| {
                let (name, rest) = l.split_once("` |")?;
                Some((name, rest.trim().trim_end_matches('|').trim()))
            })
            .collect();
        for code in Code::ALL {
            let row = rows.iter().find(|(name, _)| *name == code.as_str());
            let Some((_, text)) = row else {
                panic!(
                    "`{code}` is not in docs/diagnostics.md; add:\n| `{code}` | {} |",
                    code.summary()
                );
            };
            assert_eq!(
                *text,
                code.summary(),
                "docs/diagnostics.md describes `{code}` differently from its summary"
            );
        }
        for (name, _) in &rows {
            assert!(
                Code::ALL.iter().any(|c| c.as_str() == *name),
                "docs/diagnostics.md documents `{name}`, which is not a code"
            );
        }
        assert_eq!(rows.len(), Code::ALL.len(), "a code is documented twice");
    }
}
