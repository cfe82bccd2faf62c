//! Image references: `[registry/]path[:tag][@digest]`, checked with the distribution grammar
//! and kept as written (normalisation, e.g. `docker.io/library/`, is the graph's business).
//!
//! The grammar is distribution's (`reference/regexp.go`, the one registries and engines
//! implement), compiled here with ASCII classes as Go's regexp has them: the `oci-spec` crate's
//! copy reads `\w` as Unicode, which accepts tags no registry does and costs every run about
//! 20 MB and 250 million instructions to compile.

use std::fmt;
use std::sync::LazyLock;

/// `name` (host and path), `tag` and `digest` of a reference, anchored.
const REFERENCE: &str = concat!(
    r"^(?P<name>",
    // An optional host (a domain name or a bracketed IPv6 address) with an optional port.
    r"(?:(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])",
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*",
    r"|\[[a-fA-F0-9:]+\])(?::[0-9]+)?/)?",
    // Path components: lowercase letters and digits joined by one `.`, one or two `_`, or `-`s.
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*",
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*",
    r")",
    r"(?::(?P<tag>[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}))?",
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?$",
);

static GRAMMAR: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::RegexBuilder::new(REFERENCE)
        .unicode(false)
        .build()
        .expect("the reference grammar compiles")
});

/// The longest name (host and path) the grammar allows.
const NAME_MAX: usize = 255;

/// Why the grammar refuses a reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParseError {
    Format,
    NameTooLong,
    DigestUnsupported,
    DigestLength,
}

/// Checks `s` against the grammar: its (name, tag, digest) as written.
fn check(s: &str) -> Result<(&str, Option<&str>, Option<&str>), ParseError> {
    let c = GRAMMAR.captures(s).ok_or(ParseError::Format)?;
    let part = |k: &str| c.name(k).map(|m| &s[m.range()]);
    let name = part("name").unwrap_or_default();
    // The grammar reads a first component with upper case as a host; Docker's reference parser
    // (`ParseNormalizedNamed`, which engines apply to every name) takes only one with a `.` or a
    // `:`, or `localhost`, as a host, and the rest as the repository, which must be lowercase:
    // `FOO/bar` is refused, `Foo.com/bar` is not.
    if let Some((first, _)) = name.split_once('/') {
        if !is_host(first) && first.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ParseError::Format);
        }
    }
    if name.len() > NAME_MAX {
        return Err(ParseError::NameTooLong);
    }
    let digest = part("digest");
    if let Some((algorithm, hex)) = digest.and_then(|d| d.split_once(':')) {
        let want = match algorithm {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => return Err(ParseError::DigestUnsupported),
        };
        if hex.len() != want {
            return Err(ParseError::DigestLength);
        }
    }
    Ok((name, part("tag"), digest))
}

/// The local repository of the step cache: its entries are `pipeline-cache:<key>` and each
/// pipeline's `pipeline-cache:last-<digest>` pointer.
pub(crate) const CACHE_REPOSITORY: &str = "pipeline-cache";
/// The local repository of the images `apply --keep-failed` keeps.
pub(crate) const DEBUG_REPOSITORY: &str = "pipeline-debug";
/// The local repository of the empty image the tool writes for `[base] image = "scratch"`.
pub(crate) const SCRATCH_REPOSITORY: &str = "pipeline-scratch";
/// The base a pipeline on `scratch` starts from: an image with no layers, which the tool
/// writes and loads into the engine itself (an engine cannot create a container from nothing).
pub(crate) const SCRATCH_REFERENCE: &str = "pipeline-scratch:latest";
/// The repositories only the tool itself tags images in.
pub(crate) const RESERVED_REPOSITORIES: [&str; 3] =
    [CACHE_REPOSITORY, DEBUG_REPOSITORY, SCRATCH_REPOSITORY];

/// Whether the first component of a name is a registry host rather than part of the path:
/// it has a `.` or a `:`, or is `localhost` (distribution's `splitDockerDomain`).
fn is_host(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost"
}

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Registry host (with port), when the first component names one.
    pub registry: Option<String>,
    /// Repository path, e.g. `library/debian` or `team/app`.
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    /// The key two references are compared by: registry (docker.io and its `library/` spelled
    /// out), path and tag (`latest` when none). References by digest never match a produced tag.
    pub(crate) fn key(&self) -> Option<String> {
        if self.digest.is_some() {
            return None;
        }
        let registry = self.registry.as_deref().unwrap_or("docker.io");
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            "docker.io"
        } else {
            registry
        };
        let path = if registry == "docker.io" && !self.path.contains('/') {
            format!("library/{}", self.path)
        } else {
            self.path.clone()
        };
        Some(format!(
            "{registry}/{path}:{}",
            self.tag.as_deref().unwrap_or("latest")
        ))
    }

    /// Parses a reference with the distribution grammar, keeping the parts as written.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("the image reference is empty".into());
        }
        let (name, tag, digest) = check(s).map_err(|e| explain(s, e))?;
        // The grammar's own rule for a leading registry host.
        let registry = match name.split_once('/') {
            Some((first, _)) if is_host(first) => Some(first.to_string()),
            _ => None,
        };
        let path = match &registry {
            Some(r) => name[r.len() + 1..].to_string(),
            None => name.to_string(),
        };
        Ok(Self {
            registry,
            path,
            tag: tag.map(str::to_string),
            digest: digest.map(str::to_string),
        })
    }

    /// The repository as written, without tag or digest: `host:5000/team/app`.
    pub fn repository(&self) -> String {
        match &self.registry {
            Some(r) => format!("{r}/{}", self.path),
            None => self.path.clone(),
        }
    }

    /// The registry host used for credentials (`docker.io` when none is named).
    pub fn registry_host(&self) -> &str {
        self.registry.as_deref().unwrap_or("docker.io")
    }

    /// The tool's own repository this reference names in an engine, if it names one. An
    /// engine reads `pipeline-cache`, `library/pipeline-cache` and
    /// `docker.io/library/pipeline-cache` as one name, and Podman lists its own names as
    /// `localhost/NAME`, which the tool reads as `NAME`.
    pub(crate) fn reserved(&self) -> Option<&'static str> {
        let hub = |r: &str| {
            ["docker.io", "index.docker.io", "registry-1.docker.io"]
                .iter()
                .any(|h| r.eq_ignore_ascii_case(h))
        };
        let local = match self.registry.as_deref() {
            None => self.path.strip_prefix("library/").unwrap_or(&self.path),
            Some(r) if hub(r) => self.path.strip_prefix("library/").unwrap_or(&self.path),
            Some("localhost") => self.path.as_str(),
            Some(_) => return None,
        };
        RESERVED_REPOSITORIES.into_iter().find(|r| *r == local)
    }

    /// Whether two references name the same repository in the same registry: hosts compared
    /// without case, Docker Hub under any of its names, its official images with or without
    /// `library/`.
    pub(crate) fn same_repository(&self, other: &ImageRef) -> bool {
        fn canonical(r: &ImageRef) -> (String, String) {
            let host = r.registry_host().to_ascii_lowercase();
            let hub =
                ["docker.io", "index.docker.io", "registry-1.docker.io"].contains(&host.as_str());
            if hub {
                let path = if r.path.contains('/') {
                    r.path.clone()
                } else {
                    format!("library/{}", r.path)
                };
                ("docker.io".to_string(), path)
            } else {
                (host, r.path.clone())
            }
        }
        canonical(self) == canonical(other)
    }

    /// The reference with `latest` when it names neither tag nor digest.
    pub fn with_default_tag(mut self) -> Self {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some("latest".into());
        }
        self
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, as the distribution grammar has it.
pub fn validate_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.contains([':', '@', '/'])
        && check(&format!("x:{tag}")).is_ok_and(|(_, t, d)| t == Some(tag) && d.is_none());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{tag}` is not a valid tag: use letters, digits, `_`, `.` and `-` (not first), at most 128"
        ))
    }
}

/// Says what is wrong with a reference the grammar refused, in the user's terms.
fn explain(s: &str, e: ParseError) -> String {
    let name = s.split(['@']).next().unwrap_or(s);
    let path = match name.split_once('/') {
        Some((first, rest)) if is_host(first) => rest,
        _ => name,
    };
    let (path, tag) = match path.rsplit_once(':') {
        Some((p, t)) => (p, Some(t)),
        None => (path, None),
    };
    let mut reasons = Vec::new();
    // Upper case is the problem when the lower-case path would do.
    if path.chars().any(|c| c.is_ascii_uppercase()) && check(&path.to_ascii_lowercase()).is_ok() {
        reasons.push("the repository name must be lowercase".to_string());
    }
    if let Some(Err(t)) = tag.map(validate_tag) {
        reasons.push(t);
    }
    match e {
        ParseError::Format if !reasons.is_empty() => {
            format!(
                "`{s}` is not a valid image reference: {}",
                reasons.join("; ")
            )
        }
        ParseError::Format => format!(
            "`{s}` is not a valid image reference: write [HOST[:PORT]/]PATH[:TAG][@DIGEST], where \
             PATH's components are lowercase letters and digits joined by one `.`, one or two \
             `_`, or `-`s, and a TAG is letters, digits, `_`, `.`, `-` (not first), at most 128"
        ),
        ParseError::NameTooLong => format!(
            "`{s}` is not a valid image reference: the name is longer than {NAME_MAX} characters"
        ),
        ParseError::DigestUnsupported => format!(
            "`{s}` is not a valid image reference: unsupported digest algorithm (expected \
             `sha256:` and 64 hex digits, or sha384 / sha512)"
        ),
        ParseError::DigestLength => format!(
            "`{s}` is not a valid image reference: the digest has the wrong length (expected \
             e.g. `sha256:` and 64 hex digits)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_style_references() {
        let r = ImageRef::parse("localhost:5000/atguiguwh/myvim:1.1").unwrap();
        assert_eq!(r.registry.as_deref(), Some("localhost:5000"));
        assert_eq!(r.path, "atguiguwh/myvim");
        assert_eq!(r.tag.as_deref(), Some("1.1"));
        let r = ImageRef::parse("debian:bookworm").unwrap();
        assert_eq!(
            (r.registry, r.path.as_str(), r.tag.as_deref()),
            (None, "debian", Some("bookworm"))
        );
        let r = ImageRef::parse("127.0.0.1:5000/app").unwrap();
        assert_eq!(r.registry.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(r.tag, None);
        assert_eq!(
            r.with_default_tag().to_string(),
            "127.0.0.1:5000/app:latest"
        );
    }

    #[test]
    fn the_grammar_agrees_with_the_distribution_parser_on_ascii() {
        let long = format!("a/{}", "b".repeat(260));
        let cases = [
            "busybox",
            "busybox:1.36",
            "library/busybox:latest",
            "127.0.0.1:5000/team/app:v1.2-rc_3",
            "localhost/app",
            "localhost:5000/a__b/c.d/e-f---g:TAG",
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
            "xn--n3h.com/myimage:xn--n3h.com",
            "repo@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "repo:tag@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "repo@sha512:ffff",
            "repo@md5:ffffffffffffffffffffffffffffffff",
            "UPPER:1",
            "a//b",
            "a/b_-c",
            "app:-x",
            "app:",
            ":tag",
            "-host/app",
            "host-/app",
            "a..b",
            "a___b",
            "a.b_c__d-e",
            "app:.x",
            "app:_x",
            long.as_str(),
        ];
        for s in cases {
            let ours = check(s).is_ok();
            let theirs = oci_spec::distribution::Reference::try_from(s).is_ok();
            assert_eq!(ours, theirs, "`{s}`: ours {ours}, oci-spec {theirs}");
        }
    }

    #[test]
    fn tags_are_ascii_and_bracketed_ipv6_hosts_are_hosts() {
        // Go's `\w` (and every registry's) is ASCII.
        assert!(ImageRef::parse("app:caf\u{e9}").is_err());
        assert!(validate_tag("\u{e9}t\u{e9}").is_err());
        assert!(validate_tag(&"a".repeat(128)).is_ok());
        assert!(validate_tag(&"a".repeat(129)).is_err());
        let r = ImageRef::parse("[::1]:5000/app:1").unwrap();
        assert_eq!(r.registry.as_deref(), Some("[::1]:5000"));
        assert_eq!(r.path, "app");
        let e = ImageRef::parse("app@sha256:1234567890abcdef1234567890abcdef").unwrap_err();
        assert!(e.contains("wrong length"), "{e}");
        let e = ImageRef::parse("App:1").unwrap_err();
        assert!(e.contains("lowercase"), "{e}");
    }

    #[test]
    fn a_first_component_in_upper_case_is_a_repository_name_not_a_host() {
        // As Docker's `ParseNormalizedNamed` reads them (`docker tag IMG FOO/bar:1`: "repository
        // name must be lowercase"); oci-spec's parser takes `FOO` for a host.
        for bad in ["FOO/bar:1", "Team/app", "team/App", "FOO/bar/baz"] {
            let e = ImageRef::parse(bad).unwrap_err();
            assert!(e.contains("must be lowercase"), "{bad}: {e}");
        }
        for good in [
            "Foo.com/bar:1",
            "LOCALHOST:5000/app",
            "[::1]:5000/app",
            "localhost/app",
        ] {
            assert!(ImageRef::parse(good).is_ok(), "{good}");
        }
        let r = ImageRef::parse("Registry.Example.com/team/app:1").unwrap();
        assert_eq!(r.registry.as_deref(), Some("Registry.Example.com"));
    }

    #[test]
    fn the_tools_own_repositories_are_recognised_under_every_spelling() {
        for name in [
            "pipeline-cache:abc",
            "library/pipeline-cache:last-x",
            "docker.io/library/pipeline-cache:1",
            "index.docker.io/library/pipeline-cache",
            "localhost/pipeline-cache:1",
            "pipeline-debug:x",
        ] {
            assert!(
                ImageRef::parse(name).unwrap().reserved().is_some(),
                "{name}"
            );
        }
        for name in [
            "pipeline-cache-x:1",
            "team/pipeline-cache:1",
            "127.0.0.1:5000/pipeline-cache:1",
            "localhost:5000/pipeline-cache:1",
            "pipeline:1",
        ] {
            assert_eq!(ImageRef::parse(name).unwrap().reserved(), None, "{name}");
        }
        let r = |s: &str| ImageRef::parse(s).unwrap();
        assert!(r("debian").same_repository(&r("docker.io/library/debian:1")));
        assert!(r("Registry.Example.com/team/c").same_repository(&r("registry.example.com/team/c")));
        assert!(!r("127.0.0.1:5000/team/c").same_repository(&r("127.0.0.1:5000/team/d")));
        assert!(!r("127.0.0.1:5000/c").same_repository(&r("localhost:5000/c")));
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "UPPER:1",
            "a//b",
            "app:-x",
            "app:",
            "app@sha256:12",
            "x/-y",
            "ux/a..b:1",
            "a/b_-c",
            "localhost:0x/app",
            "FOO/bar:1",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
