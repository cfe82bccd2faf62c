//! The dependency graph of the pipelines of one apply.
//!
//! A pipeline whose `base.image` names an image another pipeline of the same apply produces
//! (one of its `commit.tags`, or a `[[publish]]` `repository:tag`) depends on it: it runs after
//! it, on that fresh result. A pipeline has one base, so it has at most one dependency; the
//! graph is a forest unless the files form a cycle. Cycles and references two pipelines produce
//! are validation errors that name the files.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::model::{Login, Pipeline};
use crate::reference::ImageRef;

/// How a pipeline gets the image it builds on from the pipeline that produces it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Dependency {
    /// Index of the producing pipeline.
    pub(crate) producer: usize,
    /// The base reference as the dependent writes it.
    pub(crate) reference: String,
    /// A reference the producer pushes to a registry, which another engine can pull: the base
    /// reference itself when it is a publish target, else the producer's first published tag.
    /// `None` when the producer publishes nothing: the dependent must run on its engine.
    pub(crate) pull_from: Option<String>,
    /// Credentials of the publish target `pull_from` names.
    #[serde(skip)]
    pub(crate) login: Option<Login>,
}

/// One pipeline of the graph.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) file: String,
    /// The pipeline's `[matrix]` values, when its file has a matrix.
    pub(crate) variant: Option<crate::model::Variant>,
    pub(crate) dependency: Option<Dependency>,
    /// Indexes of the pipelines whose images this one copies files from: they run first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) copies_from: Vec<usize>,
    /// Indexes of the pipelines built on this one.
    pub(crate) dependents: Vec<usize>,
    /// 1 for pipelines without a dependency, else the producer's stage + 1.
    pub(crate) stage: usize,
}

impl Node {
    /// The file as people read it (with its variant: see [`Pipeline::shown`]).
    pub(crate) fn shown(&self) -> String {
        match &self.variant {
            Some(v) => v.shown(&self.file),
            None => self.file.clone(),
        }
    }
}

/// The validated graph.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Graph {
    pub(crate) nodes: Vec<Node>,
    /// A topological order (producers first; command-line order within a stage).
    pub(crate) order: Vec<usize>,
}

/// Why the pipelines cannot be ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GraphError {
    /// Several pipelines produce the image another one builds on.
    Ambiguous {
        reference: String,
        consumer: String,
        producers: Vec<String>,
    },
    /// Pipelines that (transitively) build on each other, as file names in cycle order.
    Cycle { files: Vec<String> },
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GraphError::Ambiguous {
                reference,
                consumer,
                producers,
            } => write!(
                f,
                "{consumer}: base image `{reference}` is produced by several pipelines: {}; \
                 give them distinct tags",
                producers.join(", ")
            ),
            GraphError::Cycle { files } => {
                let mut path = files.clone();
                if let Some(first) = files.first() {
                    path.push(first.clone());
                }
                write!(
                    f,
                    "the pipelines build on each other in a cycle: {}",
                    path.join(" -> ")
                )
            }
        }
    }
}

/// The key two references are compared by: registry (docker.io and its `library/` spelled out),
/// path and tag (`latest` when none). References by digest never match a produced tag.
pub(crate) fn key(r: &ImageRef) -> Option<String> {
    r.key()
}

/// A reference a pipeline produces.
struct Produced {
    pipeline: usize,
    published: bool,
    /// `repository:tag` as the producer writes it.
    reference: String,
    login: Option<Login>,
}

fn file_of(p: &Pipeline) -> String {
    p.file.display().to_string()
}

/// Every reference `p` leaves in the engine or a registry: commit tags, then publish targets.
fn produced(i: usize, p: &Pipeline) -> Vec<(String, Produced)> {
    let mut out = Vec::new();
    for t in &p.commit.tags {
        let t = t.clone().with_default_tag();
        if let Some(k) = key(&t) {
            out.push((
                k,
                Produced {
                    pipeline: i,
                    published: false,
                    reference: t.to_string(),
                    login: None,
                },
            ));
        }
    }
    for target in &p.publish {
        for tag in &target.tags {
            let mut r = target.repository.clone();
            r.tag = Some(tag.clone());
            r.digest = None;
            if let Some(k) = key(&r) {
                out.push((
                    k,
                    Produced {
                        pipeline: i,
                        published: true,
                        reference: r.to_string(),
                        login: target.login.clone(),
                    },
                ));
            }
        }
    }
    out
}

/// Builds and checks the graph of `pipelines` (in command-line order).
pub(crate) fn build(pipelines: &[Pipeline]) -> Result<Graph, Vec<GraphError>> {
    let mut nodes: Vec<Node> = pipelines
        .iter()
        .map(|p| Node {
            name: p.name.clone(),
            file: file_of(p),
            variant: p.variant.clone(),
            dependency: None,
            copies_from: Vec::new(),
            dependents: Vec::new(),
            stage: 1,
        })
        .collect();
    link(pipelines, &mut nodes)?;
    let (order, placed) = order(&mut nodes);
    if order.len() < nodes.len() {
        return Err(cycles(&nodes, &placed));
    }
    Ok(Graph { nodes, order })
}

/// Finds each pipeline's producer (the one pipeline that makes its base), if any.
fn link(pipelines: &[Pipeline], nodes: &mut [Node]) -> Result<(), Vec<GraphError>> {
    let mut producers: BTreeMap<String, Vec<Produced>> = BTreeMap::new();
    for (i, p) in pipelines.iter().enumerate() {
        for (k, prod) in produced(i, p) {
            producers.entry(k).or_default().push(prod);
        }
    }
    let mut errors = Vec::new();
    for (i, p) in pipelines.iter().enumerate() {
        let Some(found) = key(&p.base.image).and_then(|k| producers.get(&k)) else {
            continue;
        };
        // A pipeline that builds on its own previous result does not depend on itself.
        let mut others: Vec<usize> = found
            .iter()
            .map(|f| f.pipeline)
            .filter(|&j| j != i)
            .collect();
        others.sort_unstable();
        others.dedup();
        match others.as_slice() {
            [] => {}
            [j] => {
                nodes[i].dependency = Some(dependency(pipelines, i, *j, found));
                nodes[*j].dependents.push(i);
            }
            many => errors.push(GraphError::Ambiguous {
                reference: p.base.image.to_string(),
                consumer: p.shown(),
                producers: many.iter().map(|&j| pipelines[j].shown()).collect(),
            }),
        }
    }
    link_copies(pipelines, nodes);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Orders each pipeline after the pipelines it copies files from (named by
/// [`crate::config::from::link`]).
fn link_copies(pipelines: &[Pipeline], nodes: &mut [Node]) {
    for (i, p) in pipelines.iter().enumerate() {
        for step in &p.steps {
            let crate::model::Action::Copy(c) = &step.action else {
                continue;
            };
            let Some(name) = c.from.as_ref().and_then(|f| f.pipeline.as_deref()) else {
                continue;
            };
            for j in (0..pipelines.len()).filter(|&j| j != i && pipelines[j].name == name) {
                if !nodes[i].copies_from.contains(&j) {
                    nodes[i].copies_from.push(j);
                    nodes[j].dependents.push(i);
                }
            }
        }
    }
}

/// The pipelines `n` runs after: its base's producer and the pipelines it copies from.
fn producers(n: &Node) -> impl Iterator<Item = usize> + '_ {
    n.dependency
        .iter()
        .map(|d| d.producer)
        .chain(n.copies_from.iter().copied())
}

/// How pipeline `i` gets its base from its producer `j`, which makes it (`found`: what the
/// base reference names).
fn dependency(pipelines: &[Pipeline], i: usize, j: usize, found: &[Produced]) -> Dependency {
    let exact = found.iter().find(|f| f.pipeline == j && f.published);
    let any_published = produced(j, &pipelines[j])
        .into_iter()
        .map(|(_, prod)| prod)
        .find(|prod| prod.published);
    let source = exact
        .map(|f| (f.reference.clone(), f.login.clone()))
        .or_else(|| any_published.map(|f| (f.reference, f.login)));
    let (pull_from, login) = match source {
        Some((r, l)) => (Some(r), l),
        None => (None, None),
    };
    Dependency {
        producer: j,
        reference: pipelines[i].base.image.to_string(),
        pull_from,
        login,
    }
}

/// Kahn's algorithm (at most one dependency per node): the order, stage first and
/// command-line order within a stage, and which nodes it placed (the others are in cycles).
fn order(nodes: &mut [Node]) -> (Vec<usize>, Vec<bool>) {
    let mut order = Vec::new();
    let mut placed = vec![false; nodes.len()];
    let mut progress = true;
    while progress {
        progress = false;
        for i in 0..nodes.len() {
            if placed[i] {
                continue;
            }
            let ready = producers(&nodes[i]).all(|j| placed[j]);
            if ready {
                nodes[i].stage = producers(&nodes[i])
                    .map(|j| nodes[j].stage + 1)
                    .max()
                    .unwrap_or(1);
                placed[i] = true;
                order.push(i);
                progress = true;
            }
        }
    }
    order.sort_by_key(|&i| (nodes[i].stage, i));
    (order, placed)
}

/// The cycles among the nodes `order` could not place: every such node leads into one.
fn cycles(nodes: &[Node], placed: &[bool]) -> Vec<GraphError> {
    let mut errors = Vec::new();
    let mut reported = vec![false; nodes.len()];
    for start in 0..nodes.len() {
        if placed[start] || reported[start] {
            continue;
        }
        let mut path = Vec::new();
        let mut at = start;
        while !path.contains(&at) && !reported[at] {
            path.push(at);
            at = producers(&nodes[at])
                .find(|&j| !placed[j])
                .expect("an unplaced node has an unplaced producer");
        }
        for &n in &path {
            reported[n] = true;
        }
        let Some(pos) = path.iter().position(|&n| n == at) else {
            continue; // leads into a cycle already reported
        };
        // Producers first reads naturally: reverse the dependent -> producer walk, then
        // start at the first file in command-line order, for stable messages.
        let mut cycle: Vec<usize> = path[pos..].iter().rev().copied().collect();
        let first = (0..cycle.len()).min_by_key(|&k| cycle[k]).unwrap_or(0);
        cycle.rotate_left(first);
        errors.push(GraphError::Cycle {
            files: cycle.iter().map(|&n| nodes[n].shown()).collect(),
        });
    }
    errors
}

impl Graph {
    /// Number of stages (longest dependency chain).
    pub(crate) fn stages(&self) -> usize {
        self.nodes.iter().map(|n| n.stage).max().unwrap_or(0)
    }

    /// The pipelines in dependency waves: every pipeline of a wave builds only on pipelines of
    /// earlier waves, so the pipelines of one wave can run at once (on separate machines).
    pub(crate) fn waves(&self) -> Vec<Vec<usize>> {
        (1..=self.stages())
            .map(|stage| {
                self.order
                    .iter()
                    .copied()
                    .filter(|&i| self.nodes[i].stage == stage)
                    .collect()
            })
            .collect()
    }

    /// Every transitive dependent of `i`.
    pub(crate) fn descendants(&self, i: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut stack = self.nodes[i].dependents.clone();
        while let Some(n) = stack.pop() {
            if !out.contains(&n) {
                out.push(n);
                stack.extend(self.nodes[n].dependents.iter().copied());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, Overrides};
    use std::path::Path;

    fn p(file: &str, base: &str, tags: &[&str], publish: Option<(&str, &[&str])>) -> Pipeline {
        let mut t = format!("[base]\nimage = \"{base}\"\n[[step]]\nrun = \"true\"\n");
        if !tags.is_empty() {
            let tags: Vec<String> = tags.iter().map(|t| format!("\"{t}\"")).collect();
            t += &format!("[commit]\ntags = [{}]\n", tags.join(", "));
        }
        if let Some((repo, tags)) = publish {
            let tags: Vec<String> = tags.iter().map(|t| format!("\"{t}\"")).collect();
            t += &format!(
                "[[publish]]\nrepository = \"{repo}\"\ntags = [{}]\n",
                tags.join(", ")
            );
        }
        load_str(Path::new(file), &t, Path::new("/"), &Overrides::default())
            .unwrap_or_else(|d| panic!("{file}: {d:?}"))
    }

    #[test]
    fn references_match_with_docker_defaults() {
        let k = |s: &str| key(&ImageRef::parse(s).unwrap());
        assert_eq!(k("busybox"), k("docker.io/library/busybox:latest"));
        assert_eq!(k("team/app:1"), k("docker.io/team/app:1"));
        assert_ne!(k("localhost:5000/app"), k("app"));
        assert_eq!(
            k("app@sha256:0123456789012345678901234567890123456789012345678901234567890123"),
            None
        );
    }

    #[test]
    fn dependents_follow_their_producers_and_know_what_to_pull() {
        let g = build(&[
            p("app.toml", "reg:5000/t/base:1", &[], None),
            p(
                "base.toml",
                "busybox",
                &["base:local"],
                Some(("reg:5000/t/base", &["1"])),
            ),
            p("local.toml", "base:local", &[], None),
            p("lonely.toml", "busybox", &["lonely:1"], None),
            p("onlylocal.toml", "lonely:1", &[], None),
            p("own.toml", "own:1", &["own:1"], None),
        ])
        .unwrap();
        assert_eq!(g.order, vec![1, 3, 5, 0, 2, 4]);
        let d = g.nodes[0].dependency.as_ref().unwrap();
        assert_eq!(
            (d.producer, d.pull_from.as_deref()),
            (1, Some("reg:5000/t/base:1"))
        );
        // Built on a local tag of a producer that publishes: another engine pulls the push.
        let d = g.nodes[2].dependency.as_ref().unwrap();
        assert_eq!(d.pull_from.as_deref(), Some("reg:5000/t/base:1"));
        // Not published at all: pinned to the producer's engine.
        assert_eq!(g.nodes[4].dependency.as_ref().unwrap().pull_from, None);
        assert!(
            g.nodes[5].dependency.is_none(),
            "its own tag is not a dependency"
        );
        assert_eq!(g.stages(), 2);
        assert_eq!(g.waves(), vec![vec![1, 3, 5], vec![0, 2, 4]]);
        assert_eq!(g.descendants(1), vec![2, 0]);
    }

    #[test]
    fn cycles_and_ambiguous_producers_name_the_files() {
        let e = build(&[
            p("a.toml", "c:1", &["a:1"], None),
            p("b.toml", "a:1", &["b:1"], None),
            p("c.toml", "b:1", &["c:1"], None),
            p("d.toml", "a:1", &[], None),
        ])
        .unwrap_err();
        assert_eq!(
            e,
            vec![GraphError::Cycle {
                files: vec!["a.toml".into(), "b.toml".into(), "c.toml".into()]
            }]
        );
        assert!(e[0]
            .to_string()
            .contains("a.toml -> b.toml -> c.toml -> a.toml"));
        let e = build(&[
            p("x.toml", "busybox", &["x:1"], None),
            p("y.toml", "busybox", &[], Some(("x", &["1"]))),
            p("z.toml", "x:1", &[], None),
        ])
        .unwrap_err();
        assert!(
            matches!(&e[0], GraphError::Ambiguous { producers, .. } if producers == &["x.toml", "y.toml"])
        );
    }
}
