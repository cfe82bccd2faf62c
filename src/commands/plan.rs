use std::collections::HashMap;

use crate::cache::{CheckpointNote, StepInputs};
use crate::cli::{Format, PlanArgs};
use crate::credentials;
use crate::engine::Engine;
use crate::exit;
use crate::plan::{self, Observed, Plan, PushStatus, StepStatus};
use crate::ui::{short, Ui};

pub async fn run(args: PlanArgs, ui: &Ui) -> u8 {
    let error = if args.detailed_exitcode {
        exit::INTERNAL
    } else {
        exit::USAGE
    };
    let pipelines = match super::load_all(&args.files, &args.vars) {
        Ok(p) => p,
        Err(_) => return error,
    };
    // Several pipelines: their dependency graph decides the order (and is validated first).
    let graph = match crate::graph::build(&pipelines) {
        Ok(g) => g,
        Err(errors) => {
            for e in errors {
                ui.error(&e.to_string());
            }
            return error;
        }
    };
    let multi = pipelines.len() > 1;
    if super::check_passwords(&pipelines, ui).is_err() {
        return error;
    }
    let engine = match super::connect(ui).await {
        Ok(e) => e,
        Err(code) => {
            return if args.detailed_exitcode {
                exit::INTERNAL
            } else {
                code
            }
        }
    };
    let mut changes = false;
    let mut plans = Vec::new();
    let mut produced: HashMap<usize, Option<String>> = HashMap::new();
    for &i in &graph.order {
        let p = &pipelines[i];
        let known_base = graph.nodes[i]
            .dependency
            .as_ref()
            .map(|d| produced.get(&d.producer).cloned().flatten());
        let plan = match observe(&engine, p, args.no_cache, known_base).await {
            Ok(plan) => plan,
            Err(e) => {
                ui.error(&e);
                return if args.detailed_exitcode {
                    exit::INTERNAL
                } else {
                    exit::ENGINE
                };
            }
        };
        changes |= !plan.is_noop();
        // A dependent plans against its producer's result: the current one unless the producer
        // would make a new image first.
        let rebuilt = graph.nodes[i].dependency.as_ref().and_then(|d| {
            let made = produced.get(&d.producer).cloned().flatten();
            made.is_none().then(|| (d.producer, d.reference.clone()))
        });
        produced.insert(i, plan.commit.image.clone());
        match args.format {
            Format::Json if multi => plans.push(plan),
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
    if multi {
        match args.format {
            Format::Json => println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({ "graph": graph, "plans": plans })
                )
                .unwrap_or_default()
            ),
            Format::Text => print!("{}", graph.render()),
        }
    }
    if args.detailed_exitcode && changes {
        exit::USAGE
    } else {
        exit::OK
    }
}

/// Reads what the engine and registries hold, without changing anything, and plans.
/// Reads what the engine and registries hold, without changing anything, and plans.
/// `known_base` is the base image id when another pipeline of the same apply makes it
/// (`Some(None)`: it makes a new one, not known yet).
pub async fn observe<E: Engine>(
    engine: &E,
    p: &crate::model::Pipeline,
    no_cache: bool,
    known_base: Option<Option<String>>,
) -> Result<Plan, String> {
    let base = match known_base {
        Some(id) => id.map(|id| crate::engine::ImageInfo {
            id,
            ..Default::default()
        }),
        None => engine
            .inspect_image(&p.base.image.to_string())
            .await
            .map_err(|e| e.to_string())?,
    };
    let inputs = p
        .steps
        .iter()
        .map(|s| StepInputs::of(s).map_err(|e| format!("step `{}`: {e}", s.name)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut obs = Observed {
        base_id: base.map(|b| b.id),
        no_cache,
        ..Default::default()
    };
    if !no_cache {
        obs.cache = engine.list_cache().await.map_err(|e| e.to_string())?;
    }
    let (keys, _) = plan::keys(p, &inputs, obs.base_id.as_deref());
    let resume = plan::resume(&keys, &obs.cache, no_cache);
    // Notes of the images that held the first step to run explain why it misses.
    for sibling in plan::siblings(&resume, obs.base_id.as_deref(), &obs.cache)
        .into_iter()
        .take(10)
    {
        if let Ok(Some(info)) = engine.inspect_image(&sibling.id).await {
            if let Some(note) = CheckpointNote::from_comment(&info.comment) {
                obs.notes.insert(sibling.id.clone(), note);
            }
        }
    }
    let draft = plan::build(p, &inputs, &obs);
    if let Some(image) = &draft.commit.image {
        if let Ok(Some(info)) = engine.inspect_image(image).await {
            obs.local_digests = info.repo_digests;
        }
    }
    let mut remote = HashMap::new();
    for t in &p.publish {
        let repository = t.repository.repository();
        let creds = credentials::resolve(t.repository.registry_host(), t.login.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        for tag in &t.tags {
            if let Ok(digest) = engine
                .remote_digest(&format!("{repository}:{tag}"), creds.clone())
                .await
            {
                remote.insert((repository.clone(), tag.clone()), digest);
            }
        }
    }
    obs.remote = remote;
    Ok(plan::build(p, &inputs, &obs))
}

fn render(plan: &Plan) -> String {
    let mut out = format!("pipeline {}\n", plan.pipeline);
    let base = match (&plan.base.id, plan.base.pull) {
        (Some(id), false) => format!("present ({})", short(id)),
        (Some(id), true) => format!("pulled again (now {})", short(id)),
        (None, _) => "pulled".into(),
    };
    out.push_str(&format!("  base     {}: {base}\n", plan.base.reference));
    let total = plan.steps.len();
    let mut to_run = 0;
    for s in &plan.steps {
        let status = match &s.status {
            StepStatus::Cached => "cached".to_string(),
            StepStatus::Run { reason } => {
                to_run += 1;
                format!("run ({reason})")
            }
        };
        out.push_str(&format!(
            "  step     [{}/{total}] {}: {status}\n",
            s.index, s.name
        ));
    }
    let commit = match &plan.commit.image {
        Some(id) => format!("unchanged ({})", short(id)),
        None => "new image".into(),
    };
    out.push_str(&format!("  commit   {commit}\n"));
    for t in &plan.commit.tags {
        out.push_str(&format!("  tag      {t}\n"));
    }
    let mut pushes = 0;
    for p in &plan.publish {
        let status = match p.status {
            PushStatus::New => "new",
            PushStatus::Changed => "changed",
            PushStatus::UpToDate => "up to date",
            PushStatus::Unknown => "unknown (registry not reachable)",
        };
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
            "apply would run {to_run} of {total} steps, make {commit}, push {pushes} tags\n"
        ));
    }
    out
}
