use std::collections::HashMap;

use crate::cli::{Format, PlanArgs};
use serde::Serialize;

use crate::engine::Engine;
use crate::error::{CliError, ExitStatus};
use crate::front::{self, Prepared, Settings};
use crate::graph::Graph;
use crate::observe::{self, PlanOptions};
use crate::plan::{Plan, PushStatus, Source, StepStatus};
use crate::ui::{self, short, Ui};

pub(super) async fn run(args: PlanArgs, ui: &Ui) -> Result<ExitStatus, CliError> {
    let detailed = args.detailed_exitcode;
    plan(args, ui).await.map_err(|e| {
        if detailed {
            CliError::Detailed(Box::new(e))
        } else {
            e
        }
    })
}

async fn plan(args: PlanArgs, ui: &Ui) -> Result<ExitStatus, CliError> {
    let settings = Settings::plan(&args)?;
    let Prepared {
        builds: pipelines,
        groups,
        graph,
        engines,
    } = front::prepare(&settings, ui).await.map_err(|r| r.error)?;
    let multi = pipelines.len() > 1;
    // A folder always gets the graph document, so CI scripts read one shape.
    let document = multi || args.files.files.iter().any(|f| f.is_dir());
    let engine = &engines[0];
    if engines.len() > 1 {
        ui.line(&format!(
            "planning against {}: apply places each pipeline on the least loaded engine",
            engine.endpoint()
        ));
    }
    let opts = PlanOptions {
        look: settings.look(),
        notes: crate::cache::NoteStore::user(),
    };
    let mut changes = false;
    let mut plans = Vec::new();
    let mut produced: HashMap<usize, Option<String>> = HashMap::new();
    let mut reusable: HashMap<usize, Option<String>> = HashMap::new();
    for &i in &graph.order {
        let p = &pipelines[i];
        let known_base = graph.nodes[i]
            .dependency
            .as_ref()
            .map(|d| produced.get(&d.producer).cloned().flatten());
        let plan = observe::plan(engine, p, &opts, known_base)
            .await
            .map_err(|e| CliError::Plan {
                pipeline: p.name.clone(),
                detail: e.to_string(),
            })?;
        changes |= !plan.is_noop();
        // A dependent plans against its producer's result: the current one unless the producer
        // would make a new image first.
        let rebuilt = graph.nodes[i].dependency.as_ref().and_then(|d| {
            let made = produced.get(&d.producer).cloned().flatten();
            made.is_none().then(|| (d.producer, d.reference.clone()))
        });
        produced.insert(i, plan.commit.image.clone());
        reusable.insert(i, plan.commit.image.clone());
        match args.format {
            Format::Json if document => plans.push(plan),
            Format::Json => println!(
                "{}",
                serde_json::to_string_pretty(&plan).unwrap_or_default()
            ),
            Format::Text => {
                print!("{}", render(&plan));
                if let Some((producer, reference)) = &rebuilt {
                    println!(
                        "  note: `{}` makes a new `{reference}` first in the same apply: this pipeline runs on it",
                        graph.nodes[*producer].name
                    );
                }
            }
        }
    }
    // A multi-platform pipeline publishes one index per tag, once every platform is built.
    let mut indexes = Vec::new();
    for g in &groups {
        let images: Vec<Option<String>> = g
            .builds
            .iter()
            .map(|i| reusable.get(i).cloned().flatten())
            .collect();
        let planned = crate::observe::plan_index(engine, g, &images, args.offline).await;
        changes |= planned.iter().any(|x| x.status != PushStatus::UpToDate);
        if args.format == Format::Text && !planned.is_empty() {
            println!(
                "pipeline {} ({})",
                g.pipeline.name,
                planned[0].platforms.join(", ")
            );
            for x in &planned {
                println!(
                    "  publish  {}:{}: index of {}: {}",
                    x.repository,
                    x.tag,
                    ui::plural(x.platforms.len(), "platform", "platforms"),
                    status_text(x.status, x.reason.as_deref())
                );
            }
        }
        indexes.extend(planned);
    }
    match args.format {
        Format::Json if document => {
            let mut doc = Document::new(&graph, &plans);
            // Index publishes count as changes too.
            doc.changes = changes;
            doc.indexes = &indexes;
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default())
        }
        Format::Text if multi => print!("{}", render_graph(&graph, engines.len())),
        _ => {}
    }
    Ok(if args.detailed_exitcode && changes {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    })
}

/// `plan --format json` of a folder or several files: the stable document CI scripts read
/// (described in docs/ci.md). `graph` and `plans` are the detailed forms, indexed as
/// `graph.nodes` (command-line order) and `graph.order`.
#[derive(Serialize)]
struct Document<'a> {
    /// Bumped only when a field changes meaning or goes away.
    format_version: u32,
    /// Whether apply would change anything (what `--detailed-exitcode` reports).
    changes: bool,
    /// Pipeline names in dependency waves: a wave builds only on earlier waves.
    waves: Vec<Vec<&'a str>>,
    /// Every pipeline, wave by wave.
    pipelines: Vec<Entry<'a>>,
    graph: &'a Graph,
    plans: &'a [Plan],
    /// The indexes multi-platform pipelines would publish (absent when there are none).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    indexes: &'a [crate::plan::platforms::IndexPlan],
}

#[derive(Serialize)]
struct Entry<'a> {
    name: &'a str,
    file: &'a str,
    /// 1-based index into `waves`.
    wave: usize,
    /// The pipeline whose image this one builds on.
    builds_on: Option<&'a str>,
    /// Where a separate machine pulls that image from (`null`: not published).
    base_from: Option<&'a str>,
    changes: bool,
    plan: &'a Plan,
}

impl<'a> Document<'a> {
    /// `plans` in `graph.order`.
    fn new(graph: &'a Graph, plans: &'a [Plan]) -> Self {
        let name = |i: usize| graph.nodes[i].name.as_str();
        let pipelines: Vec<Entry<'a>> = graph
            .order
            .iter()
            .zip(plans)
            .map(|(&i, plan)| {
                let node = &graph.nodes[i];
                Entry {
                    name: name(i),
                    file: &node.file,
                    wave: node.stage,
                    builds_on: node.dependency.as_ref().map(|d| name(d.producer)),
                    base_from: node
                        .dependency
                        .as_ref()
                        .and_then(|d| d.pull_from.as_deref()),
                    changes: !plan.is_noop(),
                    plan,
                }
            })
            .collect();
        Self {
            format_version: 1,
            changes: pipelines.iter().any(|e| e.changes),
            waves: graph
                .waves()
                .into_iter()
                .map(|w| w.into_iter().map(name).collect())
                .collect(),
            pipelines,
            graph,
            plans,
            indexes: &[],
        }
    }
}

fn render(plan: &Plan) -> String {
    let mut out = format!("pipeline {}\n", plan.pipeline);
    let base = match (&plan.base.id, plan.base.pull) {
        (Some(id), false) => format!("present ({})", short(id)),
        (Some(id), true) => format!("pulled again (now {})", short(id)),
        (None, _) => "pulled".into(),
    };
    out.push_str(&format!("  base     {}: {base}\n", plan.base.reference));
    if let Some(c) = &plan.cache_remote {
        let status = match &c.error {
            Some(e) => format!("unavailable, planned without it ({e})"),
            None => "consulted".into(),
        };
        out.push_str(&format!("  cache    remote {}: {status}\n", c.repository));
    }
    let total = plan.steps.len();
    let mut to_run = 0;
    for s in &plan.steps {
        let status = match &s.status {
            StepStatus::Cached => match s.source {
                Some(Source::Remote) => "cached (remote)".to_string(),
                _ => "cached".to_string(),
            },
            StepStatus::Run { reason } => {
                to_run += 1;
                format!("run ({reason})")
            }
        };
        let options = if s.options.is_empty() {
            String::new()
        } else {
            format!("; {}", s.options.join(", "))
        };
        out.push_str(&format!(
            "  step     [{}/{total}] {}: {status}{options}\n",
            s.index, s.name
        ));
    }
    let commit = match &plan.commit.image {
        Some(id) if plan.commit.source == Some(Source::Remote) => {
            format!("unchanged ({}, in the remote cache)", short(id))
        }
        Some(id) => format!("unchanged ({})", short(id)),
        None => "new image".into(),
    };
    out.push_str(&format!("  commit   {commit}\n"));
    for t in &plan.commit.tags {
        out.push_str(&format!("  tag      {t}\n"));
    }
    let mut pushes = 0;
    for p in &plan.publish {
        let status = status_text(p.status, p.reason.as_deref());
        if p.status != PushStatus::UpToDate {
            pushes += 1;
        }
        out.push_str(&format!(
            "  publish  {}:{}: {status}\n",
            p.repository, p.tag
        ));
    }
    if plan.is_noop() {
        out.push_str("no changes: apply would run, commit and push nothing\n");
    } else {
        let commit = if plan.commit.image.is_some() {
            "no new commit"
        } else {
            "a new commit"
        };
        out.push_str(&format!(
            "apply would run {to_run} of {}, make {commit}, push {}\n",
            ui::plural(total, "step", "steps"),
            ui::plural(pushes, "tag", "tags")
        ));
    }
    out
}

/// The graph for people; `engines` is how many engines the apply would use (a dependent
/// pulls its base from a registry only when it runs on another engine than its producer).
fn render_graph(graph: &Graph, engines: usize) -> String {
    let mut out = format!(
        "graph: {} pipelines, {}\n",
        graph.nodes.len(),
        ui::plural(graph.stages(), "stage", "stages")
    );
    for (k, wave) in graph.waves().iter().enumerate() {
        out.push_str(&format!("  stage {}\n", k + 1));
        for &i in wave {
            let n = &graph.nodes[i];
            out.push_str(&format!("    {} ({})", n.name, n.file));
            if let Some(d) = &n.dependency {
                let producer = &graph.nodes[d.producer].name;
                match &d.pull_from {
                    Some(r) if engines > 1 => out.push_str(&format!(
                        " <- {producer} via `{}` (on another engine it pulls `{r}`)",
                        d.reference
                    )),
                    Some(_) => out.push_str(&format!(
                        " <- {producer} via `{}` (the same engine: its fresh image)",
                        d.reference
                    )),
                    None => out.push_str(&format!(
                        " <- {producer} via `{}` (not published: runs on {producer}'s engine)",
                        d.reference
                    )),
                }
            }
            out.push('\n');
        }
    }
    let names: Vec<&str> = graph
        .order
        .iter()
        .map(|&i| graph.nodes[i].name.as_str())
        .collect();
    out.push_str(&format!("order: {}\n", names.join(", ")));
    out
}

/// How a push would go, in words.
fn status_text(status: PushStatus, reason: Option<&str>) -> String {
    match (status, reason) {
        (PushStatus::New, _) => "new".to_string(),
        (PushStatus::Changed, _) => "changed".to_string(),
        (PushStatus::UpToDate, _) => "up to date".to_string(),
        (PushStatus::Unknown, Some(reason)) => format!("unknown ({reason})"),
        (PushStatus::Unknown, None) => "unknown".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::Folder;

    #[test]
    fn the_graph_text_names_each_stage_its_dependencies_and_the_order() {
        let folder = Folder::new();
        let producer = folder.load(
            "base",
            "[base]\nimage = \"busybox\"\n[commit]\ntags = [\"made:1\"]\n",
        );
        let dependent = folder.load("app", "[base]\nimage = \"made:1\"\n");
        let graph = crate::graph::build(&[dependent, producer]).unwrap();
        let text = super::render_graph(&graph, 1);
        assert!(text.starts_with("graph: 2 pipelines, 2 stages\n"), "{text}");
        assert!(
            text.contains("app (") && text.contains("<- base via `made:1` (not published"),
            "{text}"
        );
        assert!(text.ends_with("order: base, app\n"), "{text}");
    }
}
