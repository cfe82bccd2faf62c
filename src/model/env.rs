//! `$VAR` expansion in `[commit.config] env`, as a Dockerfile `ENV` and `docker commit
//! --change 'ENV ...'` do it: `$NAME`, `${NAME}`, `${NAME:-default}` and `${NAME:+alternative}`
//! are replaced by values from the base image's environment (an unset name is empty), and
//! `\$` is a literal `$`.

/// Why a value cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExpandError(pub(crate) String);

/// Expands `value` against `env` (`NAME=value` entries, as in an image config).
pub(crate) fn expand(value: &str, env: &[String]) -> Result<String, ExpandError> {
    let lookup = |name: &str| {
        env.iter().find_map(|e| {
            e.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    };
    let mut out = String::with_capacity(value.len());
    let mut chars = value.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(|(_, n)| *n == '$') => {
                out.push('$');
                chars.next();
            }
            '$' => match chars.peek().map(|(_, n)| *n) {
                Some('{') => {
                    chars.next();
                    let mut inner = String::new();
                    let mut closed = false;
                    for (_, n) in chars.by_ref() {
                        if n == '}' {
                            closed = true;
                            break;
                        }
                        inner.push(n);
                    }
                    if !closed {
                        return Err(ExpandError(format!("`${{{inner}` is missing its `}}`")));
                    }
                    let (name, modifier) = match inner.split_once(':') {
                        Some((n, m)) => (n, Some(m)),
                        None => (inner.as_str(), None),
                    };
                    if !is_name(name) {
                        return Err(ExpandError(format!(
                            "`${{{inner}}}`: `{name}` is not a variable name"
                        )));
                    }
                    let found = lookup(name).filter(|v| !v.is_empty());
                    match modifier {
                        None => out.push_str(&lookup(name).unwrap_or_default()),
                        Some(m) if m.starts_with('-') => {
                            out.push_str(&found.unwrap_or_else(|| m[1..].to_string()))
                        }
                        Some(m) if m.starts_with('+') => {
                            if found.is_some() {
                                out.push_str(&m[1..]);
                            }
                        }
                        Some(m) => {
                            return Err(ExpandError(format!(
                                "`${{{inner}}}`: unsupported modifier `:{m}` (use `:-` or `:+`)"
                            )))
                        }
                    }
                }
                Some(n) if n == '_' || n.is_ascii_alphabetic() => {
                    let mut name = String::new();
                    while let Some((_, n)) = chars.peek() {
                        if *n == '_' || n.is_ascii_alphanumeric() {
                            name.push(*n);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    out.push_str(&lookup(&name).unwrap_or_default());
                }
                // A `$` before anything else is kept, as the Dockerfile does.
                _ => out.push('$'),
            },
            other => out.push(other),
        }
    }
    Ok(out)
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<String> {
        vec!["PATH=/bin:/usr/bin".into(), "EMPTY=".into(), "A=1".into()]
    }

    #[test]
    fn expands_like_a_dockerfile_env() {
        let x = |v: &str| expand(v, &env()).unwrap();
        assert_eq!(x("/opt/bin:$PATH"), "/opt/bin:/bin:/usr/bin");
        assert_eq!(x("${PATH}:/x"), "/bin:/usr/bin:/x");
        assert_eq!(x("$UNSET-x"), "-x");
        assert_eq!(x("${EMPTY:-fallback}"), "fallback");
        assert_eq!(x("${A:-fallback}"), "1");
        assert_eq!(x("${A:+set}${UNSET:+set}"), "set");
        assert_eq!(x("\\$PATH costs $5"), "$PATH costs $5");
        assert_eq!(x("a$A$A.b"), "a11.b");
        assert_eq!(x("plain"), "plain");
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(expand("${PATH", &env()).is_err());
        assert!(expand("${1x}", &env()).is_err());
        assert!(expand("${A:?oops}", &env()).is_err());
    }
}
