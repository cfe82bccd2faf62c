use std::collections::HashMap;

use crate::cli::{Format, PlanArgs};
use serde::Serialize;

use crate::engine::Engine;
use crate::error::{CliError, ExitStatus};
use crate::execute;
use crate::front::{self, Prepared, Settings};
use crate::graph::Graph;
use crate::observe::{self, PlanOptions};
use crate::plan::platforms::IndexPlan;
use crate::plan::{Blocker, Plan, PushStatus, Source, StepStatus};
use crate::ui::{self, short, Ui};

pub(super) async fn run(args: PlanArgs, ui: &Ui) -> Result<ExitStatus, CliError> {
    let detailed = args.detailed_exitcode;
    let json = args.format == Format::Json;
    plan(args, ui).await.map_err(|e| {
        // The plan document, printed already, says what apply would fail on.
        if json && !matches!(e, CliError::WouldFail(_)) {
            crate::report::print(&crate::report::ErrorDocument::of(&e));
        }
        if detailed {
            CliError::Detailed(Box::new(e))
        } else {
            e
        }
    })
}

async fn plan(args: PlanArgs, ui: &Ui) -> Result<ExitStatus, CliError> {
    let settings = Settings::plan(&args)?;
    if args.resolved {
        let text = crate::config::resolved(&settings.files, &settings.overrides)
            .map_err(CliError::Invalid)?;
        print!("{text}");
        return Ok(ExitStatus::Success);
    }
    let prepared = front::prepare(&settings, ui).await.map_err(|r| r.error)?;
    let engine = &prepared.engines[0];
    if prepared.engines.len() > 1 {
        ui.line(&format!(
            "planning against {}: apply places each pipeline on the least loaded engine",
            engine.endpoint()
        ));
    }
    // JSON is always the one document (README, "Output for machines"), whatever the files.
    let out = Output {
        format: args.format,
    };
    for m in prepared.locks.iter().filter(|l| l.moved) {
        let line = format!(
            "{} moved: {}: {} -> {} (pipeline.lock pins the first; `pipeline lock --update {}` \
             moves it)",
            m.kind.noun(),
            m.reference,
            m.locked,
            m.current.as_deref().unwrap_or_default(),
            m.reference
        );
        match out.format {
            Format::Text => println!("{line}"),
            Format::Json => ui.line(&line),
        }
    }
    let opts = PlanOptions {
        look: settings.look(),
        notes: crate::cache::NoteStore::user(),
        look_in_base: None,
    };
    let plans = plan_builds(engine, &prepared, &opts, args.no_push, out).await?;
    let indexes = plan_indexes(engine, &prepared, &plans, opts.look.offline, out).await;
    let indexes = if args.no_push {
        indexes.into_iter().map(skip_index).collect()
    } else {
        indexes
    };
    // Index publishes count as changes too.
    let changes = plans.iter().any(|p| !p.is_noop())
        || indexes
            .iter()
            .any(|x| !matches!(x.status, PushStatus::UpToDate | PushStatus::Skipped));
    match out.format {
        Format::Json => {
            let mut doc = Document::new(&prepared.graph, &plans);
            doc.changes = changes;
            doc.indexes = &indexes;
            doc.locks = &prepared.locks;
            crate::report::print(&doc);
        }
        Format::Text if prepared.builds.len() > 1 => {
            print!("{}", render_graph(&prepared.graph, prepared.engines.len()));
        }
        Format::Text => {}
    }
    // Apply would fail: say so, whatever would change.
    let mut fails: Vec<(String, Blocker)> = Vec::new();
    for p in &plans {
        fails.extend(p.fails.iter().map(|b| (p.pipeline.clone(), b.clone())));
    }
    for (x, g) in indexes.iter().zip(index_owners(&prepared)) {
        fails.extend(x.fails.iter().map(|b| (g.to_string(), b.clone())));
    }
    if !fails.is_empty() {
        return Err(CliError::WouldFail(fails));
    }
    Ok(if args.detailed_exitcode && changes {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    })
}

/// An index `apply --no-push` would not publish: skipped, and nothing it could fail on.
fn skip_index(x: IndexPlan) -> IndexPlan {
    IndexPlan {
        status: PushStatus::Skipped,
        reason: None,
        fails: None,
        ..x
    }
}

/// How `plan` prints.
#[derive(Debug, Clone, Copy)]
struct Output {
    format: Format,
}

/// Plans every build in graph order, printing each plan as text; the plans in graph order.
async fn plan_builds<E: Engine>(
    engine: &E,
    prepared: &Prepared,
    opts: &PlanOptions,
    no_push: bool,
    out: Output,
) -> Result<Vec<Plan>, CliError> {
    let graph = &prepared.graph;
    let mut plans = Vec::new();
    let mut produced: HashMap<usize, Option<String>> = HashMap::new();
    let run_id = execute::run_id();
    for &i in &graph.order {
        let mut p = prepared.builds[i].clone();
        if no_push {
            // Nothing would be pushed: no publish password is read.
            for t in &mut p.publish {
                t.login = None;
            }
        }
        known_copy_sources(&mut p, &graph.nodes[i].copies_from, prepared, &produced);
        let p = &p;
        let dependency = graph.nodes[i].dependency.as_ref();
        let known_base = dependency.map(|d| produced.get(&d.producer).cloned().flatten());
        let rebuilt = known_base == Some(None);
        let opts = &PlanOptions {
            look_in_base: Some(format!("{}-1", execute::run_name(&p.name, &run_id))),
            ..opts.clone()
        };
        let mut plan = observe::plan(engine, p, opts, known_base)
            .await
            .map_err(|source| CliError::Plan {
                pipeline: p.name.clone(),
                source,
            })?;
        if no_push {
            plan.skip_publish();
        }
        with_locks(&mut plan, prepared, i);
        produced.insert(i, plan.commit.image.clone());
        if out.format == Format::Text {
            print!("{}", render(&plan));
            // A dependent plans against its producer's result: the current one unless
            // the producer would make a new image first.
            if let Some(d) = dependency.filter(|_| rebuilt) {
                println!(
                    "  note: `{}` makes a new `{}` first in the same apply: this pipeline runs on it",
                    graph.nodes[d.producer].name, d.reference
                );
            }
        }
        plans.push(plan);
    }
    Ok(plans)
}

/// Gives the plan of build `i` what the lock says of its base and of the images its copies
/// read (each as the file writes it).
fn with_locks(plan: &mut Plan, prepared: &Prepared, i: usize) {
    use crate::lockfile::Kind;
    if let Some(written) = prepared.bases_written.get(i) {
        plan.base.lock = prepared.lock_seen(Kind::Base, written);
    }
    for c in plan.steps.iter_mut().filter_map(|s| s.copies_from.as_mut()) {
        if c.pipeline.is_none() {
            c.lock = prepared.lock_seen(Kind::Copy, &c.from);
        }
    }
}

/// Where a copy step's files come from, pinned: `REF: present (ID)`, `REF: will pull`, or
/// the pipeline of the run that makes it.
fn copy_source(c: &crate::plan::CopySource) -> String {
    match (&c.pipeline, &c.image) {
        (Some(p), Some(id)) => format!("`{p}` of this apply: its current image ({})", short(id)),
        (Some(p), None) => format!("`{p}` of this apply: the new image it will make"),
        (None, image) => {
            let at = c
                .pinned
                .as_ref()
                .map(|r| format!(" (locked: `{r}`)"))
                .unwrap_or_default();
            match image {
                Some(id) => format!("`{}`{at}: present ({})", c.from, short(id)),
                None => format!("`{}`{at}: will pull", c.from),
            }
        }
    }
}

/// Gives `p`'s copies from pipelines planned before it (`producers`) the image each would
/// leave: its current image when it makes no new one; unknown (never cached) otherwise.
fn known_copy_sources(
    p: &mut crate::model::Pipeline,
    producers: &[usize],
    prepared: &Prepared,
    produced: &HashMap<usize, Option<String>>,
) {
    for step in &mut p.steps {
        let crate::model::Action::Copy(c) = &mut step.action else {
            continue;
        };
        let Some(from) = c.from.as_mut() else {
            continue;
        };
        let made = producers
            .iter()
            .find(|&&j| from.pipeline.as_deref() == Some(prepared.builds[j].name.as_str()))
            .and_then(|j| produced.get(j).cloned().flatten());
        if made.is_some() {
            from.image = made;
        }
    }
}

/// The pipeline each planned index belongs to, in the order [`plan_indexes`] plans them.
fn index_owners(prepared: &Prepared) -> Vec<&str> {
    prepared
        .groups
        .iter()
        .flat_map(|g| {
            let tags: usize = g.pipeline.publish.iter().map(|t| t.tags.len()).sum();
            std::iter::repeat_n(g.pipeline.name.as_str(), tags)
        })
        .collect()
}

/// A multi-platform pipeline publishes one index per tag, once every platform is built: how
/// each would go, printed as text.
async fn plan_indexes<E: Engine>(
    engine: &E,
    prepared: &Prepared,
    plans: &[Plan],
    offline: bool,
    out: Output,
) -> Vec<IndexPlan> {
    // Each build's reusable final image, by build.
    let order = &prepared.graph.order;
    let reusable = |i: usize| {
        let at = order.iter().position(|&o| o == i)?;
        plans.get(at)?.commit.image.clone()
    };
    let mut indexes = Vec::new();
    for g in &prepared.groups {
        let images: Vec<Option<String>> = g.builds.iter().map(|&i| reusable(i)).collect();
        let planned = crate::observe::plan_index(engine, g, &images, offline).await;
        if out.format == Format::Text && !planned.is_empty() {
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
                if let Some(b) = &x.fails {
                    println!("  fails    {b}");
                }
            }
        }
        indexes.extend(planned);
    }
    indexes
}

/// `plan --format json`: the stable document CI scripts read, one shape for one file or many
/// (described in docs/ci.md and README.md, "Output for machines"). `graph` and `plans` are the detailed forms, indexed as
/// `graph.nodes` (command-line order) and `graph.order`.
#[derive(Serialize, schemars::JsonSchema)]
struct Document<'a> {
    /// Bumped only when a field changes meaning or goes away.
    format_version: u32,
    /// Whether apply would change anything (what `--detailed-exitcode` reports).
    changes: bool,
    /// Pipeline names in dependency waves: a wave builds only on earlier waves.
    waves: Vec<Vec<&'a str>>,
    /// Every pipeline, wave by wave.
    pipelines: Vec<Entry<'a>>,
    /// The dependency graph: `nodes` in command-line order, `order`.
    #[schemars(with = "serde_json::Value")]
    graph: &'a Graph,
    /// Each pipeline's plan, in `graph.order`.
    #[schemars(with = "Vec<serde_json::Value>")]
    plans: &'a [Plan],
    /// The indexes multi-platform pipelines would publish.
    #[schemars(with = "Vec<serde_json::Value>")]
    indexes: &'a [crate::plan::platforms::IndexPlan],
    /// Each entry of the lock beside the files that the files use (bases and the images
    /// copies read), beside what its reference resolves to now: `moved` when they differ.
    /// Empty without a lock. The plans carry the same under `base.lock` and
    /// `steps[].copies_from.lock`.
    locks: &'a [crate::lockfile::LockSeen],
}

/// The schema of [`Document`]: its plans and graph are open objects.
pub(super) fn document_schema() -> schemars::Schema {
    schemars::schema_for!(Document<'static>)
}

#[derive(Serialize, schemars::JsonSchema)]
struct Entry<'a> {
    name: &'a str,
    file: &'a str,
    /// The pipeline's `[matrix]` values (`null`: its file has no matrix).
    variant: Option<&'a crate::model::Variant>,
    /// 1-based index into `waves`.
    wave: usize,
    /// The pipeline whose image this one builds on.
    builds_on: Option<&'a str>,
    /// Where a separate machine pulls that image from (`null`: not published).
    base_from: Option<&'a str>,
    changes: bool,
    /// What apply would do for it: base, steps, commit, tags, publish targets, fails.
    #[schemars(with = "serde_json::Value")]
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
                    variant: node.variant.as_ref(),
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
            format_version: crate::report::DOCUMENT_FORMAT,
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
            locks: &[],
        }
    }
}

fn render(plan: &Plan) -> String {
    let mut out = format!("pipeline {}\n", plan.pipeline);
    let base_fails = plan.fails.iter().any(|b| {
        matches!(
            b,
            Blocker::BaseMissing { .. }
                | Blocker::BaseNotInRegistry { .. }
                | Blocker::BaseRefused { .. }
        )
    });
    let base = match (&plan.base.id, plan.base.pull) {
        _ if base_fails => "cannot be made present".to_string(),
        (Some(id), false) => format!("present ({})", short(id)),
        (Some(id), true) => format!("will pull again (now {})", short(id)),
        (None, _) => "will pull".into(),
    };
    out.push_str(&format!("  base     {}: {base}\n", plan.base.reference));
    if let Some(c) = &plan.cache_remote {
        let status = match &c.error {
            Some(e) => format!("unavailable, planned without it ({e})"),
            None => "consulted".into(),
        };
        out.push_str(&format!("  cache    remote {}: {status}\n", c.repository));
        for why in &c.ignored {
            out.push_str(&format!("           ignored {why}\n"));
        }
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
                format!("will run ({reason})")
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
        if let Some(c) = &s.copies_from {
            out.push_str(&format!("           copies from {}\n", copy_source(c)));
        }
    }
    let commit = match &plan.commit.image {
        Some(id) if plan.commit.source == Some(Source::Remote) => {
            format!("unchanged ({}, in the remote cache)", short(id))
        }
        Some(id) => format!("unchanged ({})", short(id)),
        None => "will make a new image".into(),
    };
    out.push_str(&format!("  commit   {commit}\n"));
    for t in &plan.commit.tags {
        out.push_str(&format!("  tag      {t}\n"));
    }
    let mut pushes = 0;
    for p in &plan.publish {
        let status = status_text(p.status, p.reason.as_deref());
        if !matches!(p.status, PushStatus::UpToDate | PushStatus::Skipped) {
            pushes += 1;
        }
        out.push_str(&format!(
            "  publish  {}:{}: {status}\n",
            p.repository, p.tag
        ));
    }
    for o in &plan.outputs {
        out.push_str(&format!("  output   {o}\n"));
    }
    for b in &plan.fails {
        out.push_str(&format!("  fails    {b}\n"));
    }
    if !plan.fails.is_empty() {
        out.push_str(&format!(
            "apply would fail: {}\n",
            ui::plural(plan.fails.len(), "problem", "problems")
        ));
    } else if plan.is_noop() {
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
            out.push_str(&format!("    {} ({})", n.name, n.shown()));
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

/// How a push would go, in words (future tense: nothing is pushed yet).
fn status_text(status: PushStatus, reason: Option<&str>) -> String {
    match (status, reason) {
        (PushStatus::New, _) => "will push (new)".to_string(),
        (PushStatus::Changed, _) => "will push (changed)".to_string(),
        (PushStatus::UpToDate, _) => "up to date".to_string(),
        (PushStatus::Unknown, Some(reason)) => format!("unknown ({reason})"),
        (PushStatus::Unknown, None) => "unknown".to_string(),
        (PushStatus::Skipped, _) => "skipped (--no-push)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::{
        BasePlan, CommitPlan, Plan, PushPlan, PushStatus, Resume, StepPlan, StepStatus,
    };
    use crate::testing::Folder;

    #[test]
    fn the_plan_text_speaks_of_what_apply_will_do_in_the_future_tense() {
        let step = |index: usize, status: StepStatus| StepPlan {
            index,
            name: format!("s{index}"),
            key: None,
            status,
            source: None,
            options: Vec::new(),
            copies_from: None,
        };
        let push = |tag: &str, status: PushStatus| PushPlan {
            repository: "reg/app".into(),
            tag: tag.into(),
            status,
            reason: None,
        };
        let plan = Plan {
            pipeline: "app".into(),
            base: BasePlan {
                reference: "busybox:latest".into(),
                id: None,
                pull: true,
                lock: None,
            },
            steps: vec![
                step(1, StepStatus::Cached),
                step(
                    2,
                    StepStatus::Run {
                        reason: "changed: command".into(),
                    },
                ),
            ],
            resume: Resume::default(),
            commit: CommitPlan {
                key: None,
                image: None,
                source: None,
                tags: vec!["app:1".into()],
            },
            publish: vec![
                push("1", PushStatus::New),
                push("2", PushStatus::Changed),
                push("3", PushStatus::UpToDate),
            ],
            cache_remote: None,
            fails: Vec::new(),
            outputs: Vec::new(),
        };
        let text = super::render(&plan);
        assert!(!text.contains("copies from"), "{text}");
        for line in [
            "  base     busybox:latest: will pull\n",
            "  step     [1/2] s1: cached\n",
            "  step     [2/2] s2: will run (changed: command)\n",
            "  commit   will make a new image\n",
            "  publish  reg/app:1: will push (new)\n",
            "  publish  reg/app:2: will push (changed)\n",
            "  publish  reg/app:3: up to date\n",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
        for past in [
            ": pulled",
            ": run (",
            "commit   new image",
            ": new\n",
            ": changed\n",
        ] {
            assert!(!text.contains(past), "{past:?} in\n{text}");
        }
    }

    #[test]
    fn a_copy_from_another_image_names_that_image_as_plan_found_it() {
        let id = format!("sha256:{}", "ab".repeat(32));
        let source = |pipeline: Option<&str>, image: Option<&str>| crate::plan::CopySource {
            from: "tools:1".into(),
            pipeline: pipeline.map(str::to_string),
            image: image.map(str::to_string),
            pinned: None,
            lock: None,
        };
        for (c, text) in [
            (source(None, Some(&id)), "`tools:1`: present (abababababab)"),
            (source(None, None), "`tools:1`: will pull"),
            (
                source(Some("tools"), Some(&id)),
                "`tools` of this apply: its current image (abababababab)",
            ),
            (
                source(Some("tools"), None),
                "`tools` of this apply: the new image it will make",
            ),
            (
                crate::plan::CopySource {
                    pinned: Some("tools@sha256:cd".into()),
                    ..source(None, None)
                },
                "`tools:1` (locked: `tools@sha256:cd`): will pull",
            ),
        ] {
            assert_eq!(super::copy_source(&c), text);
        }
    }

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
