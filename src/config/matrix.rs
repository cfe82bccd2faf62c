//! `[matrix]`: one file, several pipelines. Each key is a variable and its value the list of
//! values it takes; the file is one pipeline (a variant) per combination, the first key
//! varying slowest. A key declared under `[vars]` takes values of its declared type; any other
//! is declared by the matrix, with the type of its values.
//!
//! A value given for a matrix key (`--var`, a var file, `PIPELINE_VAR_*`) selects: only the
//! variants with that value are loaded.

use std::collections::BTreeMap;
use std::ops::Range;

use minijinja::Value;
use toml::Spanned;

use super::vars::{Declaration, Given, GivenValue, Kind, Origin, Scalar};
use crate::diag::{Code, Diagnostic};
use crate::model::{Variant, VariantValue};

/// Most variants one file may have.
pub(crate) const MAX_VARIANTS: usize = 64;

/// One key of the matrix.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub(crate) name: String,
    pub(crate) scalar: Scalar,
    /// The values, converted to the key's type.
    pub(crate) values: Vec<VariantValue>,
    /// Where the list of values is written.
    pub(crate) span: Range<usize>,
}

/// A file's matrix, its keys in the order written.
#[derive(Debug, Clone, Default)]
pub(crate) struct Matrix {
    pub(crate) keys: Vec<Key>,
}

/// Reads `[matrix]`: its keys in the order `rank` gives their spans (the order written),
/// each checked against its declaration in `declared`; a key without one is declared here.
/// Every problem is a located diagnostic; a key with one is left out.
pub(crate) fn read(
    raw: &BTreeMap<String, Spanned<toml::Value>>,
    declared: &mut Vec<Declaration>,
    rank: &dyn Fn(usize) -> (usize, usize),
) -> (Matrix, Vec<Diagnostic>) {
    let mut entries: Vec<(&String, &Spanned<toml::Value>)> = raw.iter().collect();
    entries.sort_by_key(|(_, v)| rank(v.span().start));
    let mut keys = Vec::new();
    let mut diags = Vec::new();
    let mut count = 1usize;
    for (name, v) in entries {
        let span = v.span();
        // Not a list: the structural check reported it.
        let toml::Value::Array(items) = v.get_ref() else {
            continue;
        };
        let declaration = declared.iter().find(|d| &d.name == name);
        match key(name, items, span.clone(), declaration) {
            Ok(k) => {
                count = count.saturating_mul(k.values.len());
                if count > MAX_VARIANTS {
                    diags.push(
                        Diagnostic::new(
                            Code::InvalidMatrix,
                            format!("the matrix makes more than {MAX_VARIANTS} variants"),
                        )
                        .at(span)
                        .label(format!("{count} variants with this key"))
                        .hint("split the file, or build some combinations only: fewer values"),
                    );
                    return (Matrix::default(), diags);
                }
                if declaration.is_none() {
                    declared.push(Declaration {
                        name: name.clone(),
                        kind: Kind::Scalar(k.scalar),
                        value: None,
                        span: span.clone(),
                    });
                }
                keys.push(k);
            }
            Err(d) => diags.push(d),
        }
    }
    (Matrix { keys }, diags)
}

/// One key's values, all of one type (the declared one, when the key is declared).
fn key(
    name: &str,
    items: &[toml::Value],
    span: Range<usize>,
    declaration: Option<&Declaration>,
) -> Result<Key, Diagnostic> {
    let invalid = |message: String| Diagnostic::new(Code::InvalidMatrix, message).at(span.clone());
    let Some(first) = items.first() else {
        return Err(invalid(format!("matrix key `{name}` has no values"))
            .label("an empty list")
            .hint(format!(
                "give `{name}` the values to build, e.g. `{name} = [\"a\", \"b\"]`"
            )));
    };
    let scalar = match declaration.map(|d| d.kind) {
        Some(Kind::Scalar(s)) => s,
        Some(Kind::List(_)) => {
            let d = declaration.map(|d| d.span.clone()).unwrap_or_default();
            return Err(invalid(format!(
                "matrix key `{name}` is declared as a list variable under [vars]"
            ))
            .also(d, "declared as a list here")
            .hint("a matrix key is a string, a number or a bool: declare it as one, or drop it from [vars]"));
        }
        None => Scalar::of(first).ok_or_else(|| {
            invalid(format!(
                "matrix key `{name}`: a value is not a string, a number or a bool"
            ))
        })?,
    };
    let mut values = Vec::new();
    for item in items {
        match scalar.convert(item).ok().and_then(|v| value_of(scalar, &v)) {
            Some(v) => values.push(v),
            None => {
                let mut d = invalid(format!(
                    "matrix key `{name}` takes {}, and `{item}` is not one",
                    scalar.noun()
                ));
                d = match declaration {
                    Some(decl) => d
                        .label(format!("not {}", scalar.noun()))
                        .also(decl.span.clone(), format!("declared as {} here", scalar.noun())),
                    None => d
                        .label("values of more than one type")
                        .hint("write the values of one key all as strings, all as numbers or all as bools"),
                };
                return Err(d);
            }
        }
    }
    Ok(Key {
        name: name.to_string(),
        scalar,
        values,
        span,
    })
}

/// A converted template value as a variant's value.
fn value_of(scalar: Scalar, v: &Value) -> Option<VariantValue> {
    Some(match scalar {
        Scalar::String => VariantValue::String(v.as_str()?.to_string()),
        Scalar::Bool => VariantValue::Bool(v.is_true()),
        Scalar::Integer => VariantValue::Integer(i64::try_from(v.clone()).ok()?),
        Scalar::Float => VariantValue::Float(f64::try_from(v.clone()).ok()?),
    })
}

/// A variant's value as a TOML value.
fn toml_of(v: &VariantValue) -> toml::Value {
    match v {
        VariantValue::String(s) => toml::Value::String(s.clone()),
        VariantValue::Bool(b) => toml::Value::Boolean(*b),
        VariantValue::Integer(i) => toml::Value::Integer(*i),
        VariantValue::Float(f) => toml::Value::Float(*f),
    }
}

impl Matrix {
    /// Every combination, the first key varying slowest; one `None` without a matrix.
    fn all(&self) -> Vec<Option<Variant>> {
        if self.keys.is_empty() {
            return vec![None];
        }
        let mut out: Vec<Vec<(String, VariantValue)>> = vec![Vec::new()];
        for k in &self.keys {
            out = out
                .into_iter()
                .flat_map(|prefix| {
                    k.values.iter().map(move |v| {
                        let mut next = prefix.clone();
                        next.push((k.name.clone(), v.clone()));
                        next
                    })
                })
                .collect();
        }
        out.into_iter().map(|v| Some(Variant(v))).collect()
    }

    /// The variants to load: those with the values given for matrix keys (the last value given
    /// for a key wins), and only `only` when it is set. A given value that is not one of the
    /// key's values is a diagnostic at the key.
    pub(crate) fn select(
        &self,
        given: &[Given],
        only: Option<&Variant>,
    ) -> (Vec<Option<Variant>>, Vec<Diagnostic>) {
        let mut wanted: Vec<(&str, VariantValue)> = Vec::new();
        let mut diags = Vec::new();
        for k in &self.keys {
            let Some(g) = given.iter().rev().find(|g| g.name == k.name) else {
                continue;
            };
            let converted = match &g.value {
                GivenValue::Text(t) => k.scalar.parse(t),
                GivenValue::Toml(v) => k.scalar.convert(v),
            };
            match converted.ok().and_then(|v| value_of(k.scalar, &v)) {
                Some(v) if k.values.contains(&v) => wanted.push((&k.name, v)),
                _ => {
                    let allowed: Vec<String> = k.values.iter().map(|v| format!("`{v}`")).collect();
                    diags.push(
                        Diagnostic::new(
                            Code::MatrixValue,
                            format!(
                                "{}: `{}` is not a value of matrix key `{}`",
                                g.shown(),
                                shown_value(&g.value),
                                k.name
                            ),
                        )
                        .at(k.span.clone())
                        .label("the values the matrix builds")
                        .hint(format!("give one of {}", allowed.join(", "))),
                    );
                }
            }
        }
        let variants = self
            .all()
            .into_iter()
            .filter(|v| {
                let Some(v) = v else { return true };
                wanted.iter().all(|(k, value)| v.get(k) == Some(value))
                    && only.is_none_or(|o| o == v)
            })
            .collect();
        (variants, diags)
    }

    /// The values given from outside with the variant's values last (they win); a value given
    /// for a matrix key only selects variants, so it is left out.
    pub(crate) fn given_for(&self, given: &[Given], variant: Option<&Variant>) -> Vec<Given> {
        let mut out: Vec<Given> = given
            .iter()
            .filter(|g| !self.keys.iter().any(|k| k.name == g.name))
            .cloned()
            .collect();
        for (name, value) in variant.map(|v| v.0.as_slice()).unwrap_or_default() {
            let span = self
                .keys
                .iter()
                .find(|k| &k.name == name)
                .map(|k| k.span.clone())
                .unwrap_or_default();
            out.push(Given {
                name: name.clone(),
                value: GivenValue::Toml(toml_of(value)),
                origin: Origin::Matrix(span),
                key_span: None,
            });
        }
        out
    }

    /// Where the matrix is written: its first key's values.
    pub(crate) fn span(&self) -> Option<Range<usize>> {
        self.keys.first().map(|k| k.span.clone())
    }
}

fn shown_value(v: &GivenValue) -> String {
    match v {
        GivenValue::Text(t) => t.clone(),
        GivenValue::Toml(v) => v.to_string(),
    }
}

/// The default name of a variant: the file's default name and the variant's values, each
/// with what a name may hold (letters, digits, `_`, `.`, `-`; others become `-`).
pub(crate) fn default_name(stem: &str, variant: &Variant) -> String {
    let mut name = stem.to_string();
    for (_, v) in &variant.0 {
        name.push('-');
        name.extend(v.to_string().chars().map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        }));
    }
    name
}

/// The diagnostics of every variant, each reported once: one found in every variant as it
/// is, any other with the variants it is found in (`file[key=value]`).
pub(crate) fn merge(
    file: &str,
    variants: &[Option<Variant>],
    found: Vec<Vec<Diagnostic>>,
) -> Vec<Diagnostic> {
    let mut groups: Vec<(Diagnostic, Vec<usize>)> = Vec::new();
    for (i, diags) in found.into_iter().enumerate() {
        for d in diags {
            match groups.iter_mut().find(|(g, _)| *g == d) {
                Some((_, seen)) if seen.contains(&i) => {}
                Some((_, seen)) => seen.push(i),
                None => groups.push((d, vec![i])),
            }
        }
    }
    groups
        .into_iter()
        .map(|(mut d, seen)| {
            let named: Vec<String> = seen
                .iter()
                .filter_map(|&i| variants.get(i).cloned().flatten())
                .map(|v| format!("`{}`", v.shown(file)))
                .collect();
            if seen.len() < variants.len() && !named.is_empty() {
                let shown = named.len().min(3);
                let more = match named.len() - shown {
                    0 => String::new(),
                    n => format!(" and {n} more"),
                };
                d.message = format!("{} (in {}{more})", d.message, named[..shown].join(", "));
            }
            d
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Matrix, Vec<Declaration>, Vec<Diagnostic>) {
        let raw: crate::config::raw::PipelineFile = toml::from_str(text).unwrap();
        let (mut declared, _) = super::super::vars::declare(&raw.vars);
        let (m, d) = read(&raw.matrix, &mut declared, &|at| (0, at));
        (m, declared, d)
    }

    fn shown(variants: &[Option<Variant>]) -> Vec<String> {
        variants
            .iter()
            .map(|v| v.as_ref().map(Variant::pairs).unwrap_or_default())
            .collect()
    }

    #[test]
    fn combinations_follow_the_keys_in_the_order_written() {
        let (m, declared, d) = parse(
            "[matrix]\nflavor = [\"slim\", \"full\"]\ndebian = [\"bookworm\", \"trixie\"]\njobs = [1, 2]\n",
        );
        assert!(d.is_empty(), "{d:?}");
        let (variants, d) = m.select(&[], None);
        assert!(d.is_empty());
        assert_eq!(variants.len(), 8);
        assert_eq!(
            shown(&variants)[..3],
            [
                "flavor=slim,debian=bookworm,jobs=1",
                "flavor=slim,debian=bookworm,jobs=2",
                "flavor=slim,debian=trixie,jobs=1"
            ]
        );
        let jobs = declared.iter().find(|d| d.name == "jobs").unwrap();
        assert_eq!(jobs.kind, Kind::Scalar(Scalar::Integer));
        assert!(jobs.value.is_none());
    }

    #[test]
    fn bad_matrices_are_located_diagnostics() {
        let cases: &[(&str, &str)] = &[
            ("[matrix]\nx = []\n", "matrix key `x` has no values"),
            (
                "[matrix]\nx = [\"a\", 1]\n",
                "takes a string, and `1` is not one",
            ),
            (
                "[vars]\nx = true\n[matrix]\nx = [\"a\"]\n",
                "takes a bool, and `\"a\"` is not one",
            ),
            (
                "[vars]\nx = [\"a\"]\n[matrix]\nx = [\"a\"]\n",
                "is declared as a list variable",
            ),
            (
                "[matrix]\na = [1, 2, 3, 4]\nb = [1, 2, 3, 4]\nc = [1, 2, 3, 4, 5]\n",
                "more than 64 variants",
            ),
        ];
        for (text, message) in cases {
            let (_, _, d) = parse(text);
            assert_eq!(d.len(), 1, "{text}: {d:?}");
            assert_eq!(d[0].code, Code::InvalidMatrix);
            assert!(d[0].message.contains(message), "{text}: {}", d[0].message);
            assert!(d[0].span.is_some());
        }
        // A number declared under [vars] takes integers too.
        let (m, _, d) = parse("[vars]\nr = 0.5\n[matrix]\nr = [1, 1.5]\n");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(m.keys[0].values[0], VariantValue::Float(1.0));
    }

    #[test]
    fn a_given_value_selects_the_variants_with_it() {
        let (m, _, _) = parse("[matrix]\nflavor = [\"slim\", \"full\"]\njobs = [1, 2]\n");
        let given = |name: &str, text: &str| Given {
            name: name.into(),
            value: GivenValue::Text(text.into()),
            origin: Origin::Cli,
            key_span: None,
        };
        let (v, d) = m.select(&[given("jobs", "2")], None);
        assert!(d.is_empty());
        assert_eq!(shown(&v), ["flavor=slim,jobs=2", "flavor=full,jobs=2"]);
        let (v, d) = m.select(&[given("jobs", "1"), given("flavor", "full")], None);
        assert!(d.is_empty());
        assert_eq!(shown(&v), ["flavor=full,jobs=1"]);
        let (_, d) = m.select(&[given("flavor", "fat")], None);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].code, Code::MatrixValue);
        assert_eq!(
            d[0].message,
            "`--var flavor=fat`: `fat` is not a value of matrix key `flavor`"
        );
        assert_eq!(d[0].hint.as_deref(), Some("give one of `slim`, `full`"));
        let (_, d) = m.select(&[given("jobs", "x")], None);
        assert_eq!(d[0].code, Code::MatrixValue);
    }

    #[test]
    fn default_names_hold_the_values_as_names_may() {
        let v = Variant(vec![
            ("a".into(), VariantValue::String("x y/z".into())),
            ("b".into(), VariantValue::Bool(true)),
            ("c".into(), VariantValue::Float(1.5)),
        ]);
        assert_eq!(default_name("web", &v), "web-x-y-z-true-1.5");
        assert_eq!(v.shown("web.toml"), "web.toml[a=x y/z,b=true,c=1.5]");
    }

    #[test]
    fn a_problem_of_every_variant_is_reported_once_others_name_their_variants() {
        let variants: Vec<Option<Variant>> = ["a", "b", "c"]
            .iter()
            .map(|x| {
                Some(Variant(vec![(
                    "k".into(),
                    VariantValue::String((*x).into()),
                )]))
            })
            .collect();
        let common = Diagnostic::new(Code::InvalidTag, "everywhere").at(1..2);
        let some = Diagnostic::new(Code::InvalidTag, "in two").at(3..4);
        let found = vec![
            vec![common.clone(), some.clone()],
            vec![common.clone()],
            vec![common.clone(), some.clone()],
        ];
        let merged = merge("f.toml", &variants, found);
        let messages: Vec<&str> = merged.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            ["everywhere", "in two (in `f.toml[k=a]`, `f.toml[k=c]`)"]
        );
    }
}
