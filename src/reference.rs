//! Image references: `[registry/]path[:tag][@digest]`, checked with the distribution grammar
//! and kept as written (normalisation, e.g. `docker.io/library/`, is the graph's business).

use std::fmt;

use oci_spec::distribution::{ParseError, Reference as OciReference};

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
    /// Parses a reference with the distribution grammar (the `oci-spec` crate's parser, the
    /// one registries and engines implement), keeping the parts as written.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("the image reference is empty".into());
        }
        let parsed = OciReference::try_from(s).map_err(|e| explain(s, &e))?;
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.to_string())),
            None => (s, None),
        };
        // A tag follows the last ':' that comes after the last '/'.
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(rest[i + 1..].to_string())),
            _ => (rest, None),
        };
        // The grammar's own rule for a leading registry host.
        let registry = match name.split_once('/') {
            Some((first, _))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                Some(first.to_string())
            }
            _ => None,
        };
        let path = match &registry {
            Some(r) => name[r.len() + 1..].to_string(),
            None => name.to_string(),
        };
        debug_assert!(tag.is_none() || tag.as_deref() == parsed.tag());
        Ok(Self {
            registry,
            path,
            tag,
            digest,
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
        && OciReference::try_from(format!("x:{tag}").as_str())
            .is_ok_and(|r| r.tag() == Some(tag) && r.digest().is_none());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{tag}` is not a valid tag: use letters, digits, `_`, `.` and `-` (not first), at most 128"
        ))
    }
}

/// Says what is wrong with a reference the grammar refused, in the user's terms.
fn explain(s: &str, e: &ParseError) -> String {
    let name = s.split(['@']).next().unwrap_or(s);
    let path = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => rest,
        _ => name,
    };
    let (path, tag) = match path.rsplit_once(':') {
        Some((p, t)) => (p, Some(t)),
        None => (path, None),
    };
    let mut reasons = Vec::new();
    // Upper case is the problem when the lower-case path would do.
    if path.chars().any(|c| c.is_ascii_uppercase())
        && OciReference::try_from(path.to_ascii_lowercase().as_str()).is_ok()
    {
        reasons.push("the repository name must be lowercase".to_string());
    }
    if let Some(Err(t)) = tag.map(validate_tag) {
        reasons.push(t);
    }
    match e {
        ParseError::ReferenceInvalidFormat if !reasons.is_empty() => {
            format!(
                "`{s}` is not a valid image reference: {}",
                reasons.join("; ")
            )
        }
        ParseError::ReferenceInvalidFormat => format!(
            "`{s}` is not a valid image reference: write [HOST[:PORT]/]PATH[:TAG][@DIGEST], where \
             PATH's components are lowercase letters and digits joined by one `.`, one or two \
             `_`, or `-`s, and a TAG is letters, digits, `_`, `.`, `-` (not first), at most 128"
        ),
        ParseError::NameContainsUppercase => {
            format!("`{s}` is not a valid image reference: the repository name must be lowercase")
        }
        ParseError::DigestInvalidFormat
        | ParseError::DigestInvalidLength
        | ParseError::DigestUnsupported => format!(
            "`{s}` is not a valid image reference: {e} (expected e.g. `sha256:` and 64 hex digits)"
        ),
        other => format!("`{s}` is not a valid image reference: {other}"),
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
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
