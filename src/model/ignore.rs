//! `.dockerignore` patterns with Docker's semantics: a port of moby's `patternmatcher` and
//! `ignorefile` (github.com/moby/patternmatcher, Apache-2.0), with its test tables.
//!
//! No crate on crates.io implements Docker's rules: gitignore crates differ (a pattern without
//! `/` matches at any depth there, only at the root here; `**file` is a suffix here), and the
//! dockerignore crates there classify lines without matching paths. Differences from moby,
//! all towards `filepath.Match`, which moby documents as the syntax: a literal character is
//! always escaped in the regular expression (moby passes `^` and `\d` through as regex syntax),
//! and a character class is translated member by member (the `regex` crate reads `[[`, `&&`
//! and `--` inside a class as set operations).

use regex::Regex;

/// A list of patterns; the last one that matches a path decides whether it is excluded.
#[derive(Debug, Clone, Default)]
pub(crate) struct Patterns {
    patterns: Vec<Pattern>,
    exceptions: bool,
}

/// Two lists are equal when they hold the same patterns in the same order.
impl PartialEq for Patterns {
    fn eq(&self, other: &Self) -> bool {
        let key = |p: &Pattern| (p.text.clone(), p.exception);
        self.patterns
            .iter()
            .map(key)
            .eq(other.patterns.iter().map(key))
    }
}

impl Eq for Patterns {}

#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern, without its `!`.
    text: String,
    exception: bool,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Exact,
    /// `dir/**`: the text before the final `**`.
    Prefix(String),
    /// `**/name`: the text after the leading `**`.
    Suffix(String),
    Regex(Regex),
}

impl Patterns {
    /// Compiles `patterns` (each perhaps starting with `!`, an exception); blank ones are
    /// skipped. A bare `!` or a pattern `filepath.Match` refuses is an error naming it.
    pub(crate) fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, String> {
        let mut out = Self::default();
        for p in patterns {
            let p = p.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            let cleaned = clean(p);
            let (exception, text) = match cleaned.strip_prefix('!') {
                Some("") => return Err("`!` alone is not a pattern".into()),
                Some(rest) => (true, rest.to_string()),
                None => (false, cleaned),
            };
            check_syntax(&text).map_err(|why| format!("pattern `{p}`: {why}"))?;
            let kind = compile(&text).map_err(|why| format!("pattern `{p}`: {why}"))?;
            out.exceptions |= exception;
            out.patterns.push(Pattern {
                text,
                exception,
                kind,
            });
        }
        Ok(out)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether some pattern is an exception (`!`): then an excluded folder may still hold
    /// files that are not excluded.
    pub(crate) fn has_exceptions(&self) -> bool {
        self.exceptions
    }

    /// Whether `path` (relative, `/`-separated) is excluded: a pattern matches the path or one
    /// of its parent folders (moby's `MatchesOrParentMatches`).
    pub(crate) fn excludes(&self, path: &str) -> bool {
        if clean(path) == "." {
            return false;
        }
        // Go's `filepath.Dir`, split: `a/b/c` has the parents `a` and `a/b`.
        let dir = match path.rfind('/') {
            Some(0) => "/".to_string(),
            Some(end) => clean(&path[..end]),
            None => ".".to_string(),
        };
        let parts: Vec<&str> = dir.split('/').collect();
        let parents: Vec<String> = if dir == "." {
            Vec::new()
        } else {
            (1..=parts.len()).map(|n| parts[..n].join("/")).collect()
        };
        let mut matched = false;
        for p in &self.patterns {
            if p.exception != matched {
                continue;
            }
            if p.matches(path) || parents.iter().any(|parent| p.matches(parent)) {
                matched = !p.exception;
            }
        }
        matched
    }
}

/// One glob of `filepath.Match` syntax (with `**`), matched against a whole path or name.
#[derive(Debug, Clone)]
pub(crate) struct Glob(Pattern);

impl Glob {
    pub(crate) fn new(pattern: &str) -> Result<Self, String> {
        check_syntax(pattern).map_err(|why| format!("pattern `{pattern}`: {why}"))?;
        let kind = compile(pattern).map_err(|why| format!("pattern `{pattern}`: {why}"))?;
        Ok(Self(Pattern {
            text: pattern.to_string(),
            exception: false,
            kind,
        }))
    }

    pub(crate) fn matches(&self, name: &str) -> bool {
        self.0.matches(name)
    }
}

/// Whether `text` has a character that makes it a glob (`*`, `?`, `[`).
pub(crate) fn is_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.text,
            Kind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Kind::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|s| path == s)
            }
            Kind::Regex(re) => re.is_match(path),
        }
    }
}

/// The lines of a `.dockerignore` file as patterns, each with its line number (1-based):
/// a UTF-8 BOM dropped, `#` lines skipped, blanks trimmed, each pattern cleaned and a
/// leading `/` dropped (moby's `ignorefile.ReadAll`).
pub(crate) fn read_ignore_file(text: &str) -> Vec<(usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        let mut pattern = line.trim();
        if pattern.is_empty() {
            continue;
        }
        let exception = pattern.starts_with('!');
        if exception {
            pattern = pattern[1..].trim();
        }
        let mut cleaned = if pattern.is_empty() {
            String::new()
        } else {
            clean(pattern)
        };
        if cleaned.len() > 1 && cleaned.starts_with('/') {
            cleaned.remove(0);
        }
        if exception {
            cleaned.insert(0, '!');
        }
        out.push((i + 1, cleaned));
    }
    out
}

/// Go's `path.Clean`: the shortest equivalent path, lexically.
pub(crate) fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Checks the syntax `filepath.Match` accepts: `\` escapes the next character (none: an
/// error), `[...]` is a non-empty class, perhaps negated by `^`, of characters and ranges,
/// where `-` and `]` must be escaped.
fn check_syntax(pattern: &str) -> Result<(), &'static str> {
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next().ok_or("a `\\` at the end escapes nothing")?;
            }
            '[' => {
                if chars.peek() == Some(&'^') {
                    chars.next();
                }
                let mut ranges = 0;
                loop {
                    match chars.peek() {
                        None => return Err("a `[` without its `]`"),
                        Some(']') if ranges > 0 => {
                            chars.next();
                            break;
                        }
                        _ => {}
                    }
                    class_char(&mut chars)?;
                    if chars.peek() == Some(&'-') {
                        chars.next();
                        class_char(&mut chars)?;
                    }
                    ranges += 1;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// One character of a class (`getEsc` of Go's `filepath`).
fn class_char(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<char, &'static str> {
    match chars.next() {
        None => Err("a `[` without its `]`"),
        Some('-' | ']') => Err("a `-` or `]` in a class must be escaped with `\\`"),
        Some('\\') => chars.next().ok_or("a `[` without its `]`"),
        Some(c) => Ok(c),
    }
}

/// Compiles a cleaned pattern as moby's `Pattern.compile` does: exact, prefix (`dir/**`),
/// suffix (`**/name`) or a regular expression.
fn compile(pattern: &str) -> Result<Kind, String> {
    #[derive(PartialEq)]
    enum Detected {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let mut re = String::from("^");
    let mut detected = Detected::Exact;
    let mut chars = pattern.chars().peekable();
    let mut i = 0;
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                if chars.peek() == Some(&'/') {
                    chars.next();
                }
                if chars.peek().is_none() {
                    if detected == Detected::Exact {
                        detected = Detected::Prefix;
                    } else {
                        re.push_str(".*");
                        detected = Detected::Regex;
                    }
                } else {
                    re.push_str("(.*/)?");
                    detected = Detected::Regex;
                }
                if i == 0 {
                    detected = Detected::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                detected = Detected::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                detected = Detected::Regex;
            }
            '\\' => {
                if let Some(next) = chars.next() {
                    re.push_str(&regex::escape(&next.to_string()));
                    detected = Detected::Regex;
                }
            }
            '[' => {
                re.push_str(&class(&mut chars));
                detected = Detected::Regex;
            }
            _ => re.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    Ok(match detected {
        Detected::Exact => Kind::Exact,
        Detected::Prefix => Kind::Prefix(pattern[..pattern.len() - 2].to_string()),
        Detected::Suffix => Kind::Suffix(pattern[2..].to_string()),
        Detected::Regex => {
            re.push('$');
            Kind::Regex(Regex::new(&re).map_err(|e| e.to_string())?)
        }
    })
}

/// The regular expression of a class whose `[` was read (its syntax already checked).
fn class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> String {
    let escape = |c: char| format!("\\x{{{:x}}}", c as u32);
    let mut out = String::from("[");
    if chars.peek() == Some(&'^') {
        chars.next();
        out.push('^');
    }
    let mut first = true;
    while let Some(c) = chars.next() {
        let c = match c {
            ']' if !first => break,
            '\\' => chars.next().unwrap_or('\\'),
            c => c,
        };
        first = false;
        out.push_str(&escape(c));
        if chars.peek() == Some(&'-') {
            chars.next();
            let hi = match chars.next() {
                Some('\\') => chars.next().unwrap_or('\\'),
                Some(hi) => hi,
                None => break,
            };
            out.push('-');
            out.push_str(&escape(hi));
        }
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests;
