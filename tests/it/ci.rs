//! docs/ci.md is run, not only read: every shell step of its GitHub Actions workflows and GitLab
//! CI jobs runs with bash, as the CI system would, each job on a brand-new engine (an empty
//! `dockerd`: a fresh runner) against a throwaway registry that requires a password. The
//! registry address and credentials reach the steps only as environment variables, as the
//! docs say. `cargo install` is a stand-in that installs the binary under test; the other
//! non-shell steps are checked for what they name (the report an upload step uploads exists).
//!
//! Also here: the pipeline file that builds the tool's own image (`pipeline-image.toml`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_yaml_ng::Value as Yaml;

use crate::harness::{
    output_text, Project, CACHE_SIGNING_ENV, CACHE_SIGNING_KEY, CACHE_VERIFY_KEY,
};
use crate::support::daemons::Daemon;
use crate::support::engine::require_image;
use crate::support::registry::Registry;

const USER: &str = "ci-bot";
const PASSWORD: &str = "ci-s3cret-Pa55";

/// The ```yaml block of docs/ci.md whose first line is `first_line`.
fn doc_yaml(first_line: &str) -> Yaml {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/ci.md")).unwrap();
    let block = doc
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.lines().next() == Some(first_line))
        .unwrap_or_else(|| panic!("docs/ci.md has no yaml block starting `{first_line}`"));
    serde_yaml_ng::from_str(block)
        .unwrap_or_else(|e| panic!("docs/ci.md `{first_line}` is not YAML: {e}"))
}

/// The ```toml block of docs/ci.md (the example pipeline).
fn doc_toml() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/ci.md")).unwrap();
    let block = doc
        .split("```toml\n")
        .nth(1)
        .expect("docs/ci.md has a toml block");
    // Indented under a list item in the docs.
    block
        .split("```")
        .next()
        .unwrap()
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

fn get<'a>(v: &'a Yaml, key: &str) -> Option<&'a Yaml> {
    v.as_mapping().and_then(|m| m.get(key))
}

fn text(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn strings(v: Option<&Yaml>) -> Vec<String> {
    v.and_then(Yaml::as_sequence)
        .map(|s| s.iter().map(text).collect())
        .unwrap_or_default()
}

/// A repository with pipelines in `images/` (the docs' example `app` on `base`, and `other`),
/// a registry with a password holding `busybox:latest`, and the environment a CI job gets.
struct Repo {
    reg: Registry,
    project: Project,
    /// `cargo` stand-in and the folder it installs to.
    tools: tempfile::TempDir,
}

impl Repo {
    fn new() -> Repo {
        require_image("busybox:latest");
        let reg = Registry::start_with_auth(USER, PASSWORD);
        reg.push_local("busybox:latest", "busybox:latest");
        let project = Project::new();
        let creds =
            "username = \"{{ env.REGISTRY_USER }}\"\npassword_env = \"REGISTRY_PASSWORD\"\n";
        let repo = Repo {
            reg,
            project,
            tools: tempfile::tempdir().unwrap(),
        };
        repo.base("base");
        repo.project.file("images/app.toml", doc_toml());
        repo.project.file(
            "images/other.toml",
            format!(
                "name = \"other\"\n[base]\nimage = \"{{{{ env.REGISTRY }}}}/busybox:latest\"\n{creds}\
                 [[step]]\nrun = \"echo other > /other\"\n\
                 [[publish]]\nrepository = \"{{{{ env.REGISTRY }}}}/team/other\"\ntags = [\"1\"]\n{creds}"
            ),
        );
        let bin = repo.tools.path().join("shim");
        std::fs::create_dir_all(&bin).unwrap();
        let cargo = bin.join("cargo");
        std::fs::write(
            &cargo,
            "#!/bin/sh\n# Stands in for `cargo install`: installs the binary under test.\n\
             [ \"$1\" = install ] || { echo \"cargo stand-in: only install\" >&2; exit 97; }\n\
             mkdir -p \"$CARGO_HOME/bin\" && ln -sf \"$PIPELINE_UNDER_TEST\" \"$CARGO_HOME/bin/pipeline\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        repo
    }

    /// (Re)writes `images/base.toml`, whose step writes `content` into `/base`.
    fn base(&self, content: &str) {
        let creds =
            "username = \"{{ env.REGISTRY_USER }}\"\npassword_env = \"REGISTRY_PASSWORD\"\n";
        self.project.file(
            "images/base.toml",
            format!(
                "name = \"base\"\n[base]\nimage = \"{{{{ env.REGISTRY }}}}/busybox:latest\"\n{creds}\
                 [[step]]\nrun = \"echo {content} > /base\"\n\
                 [[publish]]\nrepository = \"{{{{ env.REGISTRY }}}}/team/base\"\ntags = [\"1\"]\n{creds}\
                 [cache]\nremote = \"{{{{ env.REGISTRY }}}}/team/cache\"\n{creds}\
                 verify_key = \"{CACHE_VERIFY_KEY}\"\nsigning_key_env = \"{CACHE_SIGNING_ENV}\"\n"
            ),
        );
    }

    /// What a CI system puts in a job's environment, besides the job's own variables (the
    /// protected ones, `REGISTRY_PASSWORD` and the cache's signing key, for main-branch jobs).
    fn env(&self) -> BTreeMap<String, String> {
        [
            ("REGISTRY", self.reg.addr.as_str()),
            ("REGISTRY_USER", USER),
            ("REGISTRY_PASSWORD", PASSWORD),
            // The test registry has one user: the pull token is its password too.
            ("REGISTRY_PULL_TOKEN", PASSWORD),
            (CACHE_SIGNING_ENV, CACHE_SIGNING_KEY),
            ("PIPELINE_GIT", "https://git.example.com/tools/pipeline.git"),
            ("PIPELINE_VERSION", "v0.1.0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Starts `script` with bash as a CI runner does: on `engine`, in the checkout, with the
    /// runner's home `runner` (where `cargo install` puts the tool).
    fn spawn(
        &self,
        script: &str,
        env: &BTreeMap<String, String>,
        engine: &Daemon,
        runner: &Path,
    ) -> Child {
        let path = format!(
            "{}:{}:{}",
            self.tools.path().join("shim").display(),
            runner.join("cargo/bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("bash")
            .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
            .current_dir(self.project.path())
            .env_clear()
            .env("PATH", path)
            .env("HOME", runner)
            .env("CARGO_HOME", runner.join("cargo"))
            .env("XDG_CACHE_HOME", runner.join("cache"))
            .env("DOCKER_CONFIG", runner.join("docker-config"))
            .env("DOCKER_HOST", &engine.host)
            .env(
                "PIPELINE_UNDER_TEST",
                assert_cmd::cargo::cargo_bin("pipeline"),
            )
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run bash")
    }

    /// Runs `script`; asserts it succeeds and never prints the password.
    fn run(
        &self,
        what: &str,
        script: &str,
        env: &BTreeMap<String, String>,
        engine: &Daemon,
        runner: &Path,
    ) -> String {
        // Stdout; the failure message shows both.
        let out = self
            .spawn(script, env, engine, runner)
            .wait_with_output()
            .unwrap();
        finish(what, out)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.project.path().join(rel)
    }
}

/// Asserts `out` succeeded and never shows the password; returns its stdout.
fn finish(what: &str, out: Output) -> String {
    let text = output_text(&out);
    assert!(out.status.success(), "{what} failed:\n{text}");
    assert!(
        !text.contains(PASSWORD),
        "{what} printed the password:\n{text}"
    );
    assert!(
        !text.contains(CACHE_SIGNING_KEY),
        "{what} printed the signing key:\n{text}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `${{ X }}` expressions of a GitHub workflow, as the test's CI system fills them.
fn github_expr(s: &str, ctx: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("closed expression") + start;
        let expr = rest[start + 3..end].trim();
        out.push_str(
            ctx.get(expr)
                .unwrap_or_else(|| panic!("the test does not know `{expr}`")),
        );
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// GitHub's context for the expressions the workflows use.
fn github_context(repo: &Repo, matrix: Option<&str>) -> BTreeMap<String, String> {
    let env = repo.env();
    let mut ctx: BTreeMap<String, String> = [
        ("vars.REGISTRY", "REGISTRY"),
        ("vars.REGISTRY_USER", "REGISTRY_USER"),
        ("secrets.REGISTRY_PASSWORD", "REGISTRY_PASSWORD"),
        ("secrets.REGISTRY_PULL_TOKEN", "REGISTRY_PULL_TOKEN"),
        ("secrets.PIPELINE_CACHE_KEY", CACHE_SIGNING_ENV),
        ("vars.PIPELINE_GIT", "PIPELINE_GIT"),
        ("vars.PIPELINE_VERSION", "PIPELINE_VERSION"),
    ]
    .into_iter()
    .map(|(expr, var)| (expr.to_string(), env[var].clone()))
    .collect();
    if let Some(m) = matrix {
        ctx.insert("matrix.pipeline".into(), m.into());
    }
    ctx
}

/// Env of a workflow or job (`env:`), its expressions filled in.
fn github_env(v: &Yaml, ctx: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    get(v, "env")
        .and_then(Yaml::as_mapping)
        .into_iter()
        .flatten()
        .map(|(k, v)| (text(k), github_expr(&text(v), ctx)))
        .collect()
}

/// Runs the steps of one GitHub job on `engine` (a fresh one); returns what it printed and its
/// `$GITHUB_OUTPUT` entries.
fn github_job(
    repo: &Repo,
    workflow: &Yaml,
    job: &str,
    matrix: Option<&str>,
    engine: &Daemon,
) -> (String, BTreeMap<String, String>) {
    let spec = get(get(workflow, "jobs").unwrap(), job).unwrap_or_else(|| panic!("no job {job}"));
    let ctx = github_context(repo, matrix);
    let mut env = github_env(workflow, &ctx);
    env.extend(github_env(spec, &ctx));
    // Push credentials and the signing key only in jobs of an environment limited to main.
    let trusted = get(spec, "environment").is_some();
    let names = |v: &Yaml| serde_yaml_ng::to_string(&get(v, "env").cloned()).unwrap();
    for secret in ["secrets.REGISTRY_PASSWORD", "secrets.PIPELINE_CACHE_KEY"] {
        assert!(!names(workflow).contains(secret), "{secret} for every job");
        assert!(
            trusted || !names(spec).contains(secret),
            "{job}: {secret} outside the `images` environment"
        );
    }
    if job == "plan" {
        assert!(
            !trusted && !env.contains_key(CACHE_SIGNING_ENV),
            "{job}: {env:?}"
        );
    }
    let outputs = tempfile::NamedTempFile::new().unwrap();
    env.insert("GITHUB_OUTPUT".into(), outputs.path().display().to_string());
    let runner = tempfile::tempdir().unwrap();
    let mut printed = String::new();
    for step in get(spec, "steps").and_then(Yaml::as_sequence).unwrap() {
        if let Some(script) = get(step, "run") {
            let script = text(script);
            assert!(
                !script.contains("${{"),
                "{job}: a script reads only environment variables: {script}"
            );
            printed += &repo.run(
                &format!("{job}: {script}"),
                &script,
                &env,
                engine,
                runner.path(),
            );
        } else {
            let uses = text(get(step, "uses").expect("a step runs or uses"));
            if uses.starts_with("actions/upload-artifact@") {
                let path = github_expr(
                    &text(get(get(step, "with").unwrap(), "path").unwrap()),
                    &ctx,
                );
                assert!(
                    repo.path(&path).is_file(),
                    "{job}: {path} is not there to upload"
                );
                assert_eq!(
                    text(get(step, "if").unwrap()),
                    "always()",
                    "{job}: uploaded also on failure"
                );
            } else {
                assert!(
                    uses.starts_with("actions/checkout@"),
                    "{job}: unknown action {uses}"
                );
            }
        }
    }
    let outputs = std::fs::read_to_string(outputs.path())
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (printed, outputs)
}

/// The image a registry tag holds, run on a fresh engine: what `cat FILES` prints.
fn show(repo: &Repo, image: &str, files: &[&str]) -> String {
    let engine = Daemon::start();
    let script = format!(
        "printf '%s' \"$REGISTRY_PASSWORD\" | docker login -u \"$REGISTRY_USER\" --password-stdin \"$REGISTRY\" >/dev/null\n\
         docker run --rm \"$REGISTRY/{image}\" cat {}",
        files.join(" ")
    );
    let runner = tempfile::tempdir().unwrap();
    repo.run("show", &script, &repo.env(), &engine, runner.path())
        .trim()
        .to_string()
}

fn report_status(repo: &Repo, file: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(repo.path(file)).unwrap()).unwrap()
}

#[test]
fn the_github_actions_workflows_of_the_docs_work_on_fresh_runners() {
    let repo = Repo::new();
    let workflow = doc_yaml("# .github/workflows/images.yml");
    // A pull request before anything was built: the plan says what would change, and passes.
    let (plan, _) = github_job(&repo, &workflow, "plan", None, &Daemon::start());
    assert!(plan.contains("apply would run"), "{plan}");
    // Main: apply on a fresh runner; the report is there for the upload.
    let (apply, _) = github_job(&repo, &workflow, "apply", None, &Daemon::start());
    let report = report_status(&repo, "report.json");
    assert_eq!(report["status"], "succeeded", "{report:#}\n{apply}");
    assert_eq!(show(&repo, "team/app:1", &["/base", "/app"]), "base\napp");
    // The next pull request, unchanged, on another fresh runner: the shared cache knows it all.
    let (plan, _) = github_job(&repo, &workflow, "plan", None, &Daemon::start());
    assert!(plan.contains("cached (remote)"), "{plan}");

    // Fan-out after an edit of the base: the waves, then one job per pipeline per wave.
    repo.base("base-v2");
    let fanout = doc_yaml("# .github/workflows/images-fanout.yml");
    let (_, outputs) = github_job(&repo, &fanout, "waves", None, &Daemon::start());
    assert_eq!(outputs["wave1"], r#"["base","other"]"#, "{outputs:?}");
    assert_eq!(outputs["wave2"], r#"["app"]"#, "{outputs:?}");
    assert_eq!(outputs["wave3"], "[]", "{outputs:?}");
    let jobs = get(&fanout, "jobs").unwrap();
    for n in 1..=3 {
        let job = format!("wave{n}");
        let spec = get(jobs, &job).unwrap();
        let needs = strings(get(spec, "needs"));
        let mut expected = vec!["waves".to_string()];
        if n > 1 {
            expected.push(format!("wave{}", n - 1));
        }
        assert_eq!(needs, expected, "{job} waits for the wave before it");
        let matrix = text(
            get(
                get(get(spec, "strategy").unwrap(), "matrix").unwrap(),
                "pipeline",
            )
            .unwrap(),
        );
        assert_eq!(
            matrix,
            format!("${{{{ fromJSON(needs.waves.outputs.wave{n}) }}}}")
        );
        assert_eq!(
            text(get(spec, "if").unwrap()),
            format!("needs.waves.outputs.wave{n} != '[]'")
        );
        let names: Vec<String> = serde_json::from_str(&outputs[&job]).unwrap();
        // The matrix of a wave runs at once, each job on its own fresh runner.
        let engines: Vec<Daemon> = names.iter().map(|_| Daemon::start()).collect();
        std::thread::scope(|s| {
            for (name, engine) in names.iter().zip(&engines) {
                let (repo, fanout, job) = (&repo, &fanout, &job);
                s.spawn(move || github_job(repo, fanout, job, Some(name), engine));
            }
        });
        for name in &names {
            let report = report_status(&repo, &format!("report-{name}.json"));
            assert_eq!(report["status"], "succeeded", "{report:#}");
        }
    }
    assert_eq!(
        show(&repo, "team/app:1", &["/base", "/app"]),
        "base-v2\napp"
    );
    // The next main apply: nothing to build, and the entries of the old base go.
    let (apply, _) = github_job(&repo, &workflow, "apply", None, &Daemon::start());
    assert!(apply.contains("deleted "), "{apply}");
    assert_eq!(
        show(&repo, "team/app:1", &["/base", "/app"]),
        "base-v2\napp"
    );
}

/// Job `name` of a GitLab CI file, with what it `extends` merged under it.
fn gitlab_spec(ci: &Yaml, name: &str) -> Yaml {
    let spec = get(ci, name).unwrap_or_else(|| panic!("no job `{name}`"));
    let Some(parent) = get(spec, "extends") else {
        return spec.clone();
    };
    let mut merged = get(ci, &text(parent))
        .unwrap()
        .as_mapping()
        .unwrap()
        .clone();
    for (k, v) in spec.as_mapping().unwrap() {
        match (merged.get_mut(k), v) {
            (Some(Yaml::Mapping(base)), Yaml::Mapping(more)) => {
                base.extend(more.iter().map(|(a, b)| (a.clone(), b.clone())))
            }
            _ => {
                merged.insert(k.clone(), v.clone());
            }
        }
    }
    Yaml::Mapping(merged)
}

/// Runs one GitLab job (its `before_script`, else the default one, then its `script`) on
/// `engine`; checks its artifacts are there. The runner's own variables (`DOCKER_HOST` of the
/// `docker:dind` service) are the test's engine instead.
fn gitlab_job(repo: &Repo, ci: &Yaml, name: &str, engine: &Daemon) -> String {
    let spec = gitlab_spec(ci, name);
    let mut env = repo.env();
    // Protected variables reach pipelines of protected branches only, never a merge request.
    if name == "plan" {
        env.remove("REGISTRY_PASSWORD");
        env.remove(CACHE_SIGNING_ENV);
    }
    for vars in [get(ci, "variables"), get(&spec, "variables")]
        .into_iter()
        .flatten()
    {
        for (k, v) in vars.as_mapping().unwrap() {
            let (k, v) = (text(k), text(v));
            match k.as_str() {
                "DOCKER_HOST" => assert_eq!(v, "tcp://docker:2375", "the dind service"),
                "DOCKER_TLS_CERTDIR" => {}
                _ => {
                    // `$NAME`: another variable's value, as GitLab expands it.
                    let v = match v.strip_prefix('$') {
                        Some(name) => env.get(name).cloned().unwrap_or_default(),
                        None => v,
                    };
                    env.insert(k, v);
                }
            }
        }
    }
    let before = get(&spec, "before_script")
        .or_else(|| get(ci, "default").and_then(|d| get(d, "before_script")));
    let lines: Vec<String> = strings(before)
        .into_iter()
        .chain(strings(get(&spec, "script")))
        .collect();
    assert!(!lines.is_empty(), "{name} has a script");
    let runner = tempfile::tempdir().unwrap();
    let out = repo.run(name, &lines.join("\n"), &env, engine, runner.path());
    let artifacts = get(&spec, "artifacts").and_then(|a| get(a, "paths"));
    for path in strings(artifacts) {
        let found = match path.split_once('*') {
            Some((prefix, suffix)) => std::fs::read_dir(repo.project.path())
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .any(|f| f.starts_with(prefix) && f.ends_with(suffix)),
            None => repo.path(&path).is_file(),
        };
        assert!(found, "{name}: its artifact {path} is not there");
    }
    out
}

#[test]
fn the_gitlab_ci_jobs_of_the_docs_work_on_fresh_runners() {
    let repo = Repo::new();
    let ci = doc_yaml("# .gitlab-ci.yml");
    let plan = gitlab_job(&repo, &ci, "plan", &Daemon::start());
    assert!(plan.contains("apply would run"), "{plan}");
    gitlab_job(&repo, &ci, "apply", &Daemon::start());
    let report = report_status(&repo, "report.json");
    assert_eq!(report["status"], "succeeded", "{report:#}");
    let plan = gitlab_job(&repo, &ci, "plan", &Daemon::start());
    assert!(plan.contains("cached (remote)"), "{plan}");

    // Fan-out after an edit of the base: the generated child pipeline, stage by stage.
    repo.base("base-v2");
    let ci = doc_yaml("# .gitlab-ci.yml (fan-out)");
    gitlab_job(&repo, &ci, "waves", &Daemon::start());
    let trigger = get(get(&ci, "apply").unwrap(), "trigger").unwrap();
    assert_eq!(text(get(trigger, "strategy").unwrap()), "depend");
    let child: Yaml =
        serde_yaml_ng::from_str(&std::fs::read_to_string(repo.path("fanout.yml")).unwrap())
            .expect("the generated child pipeline is YAML");
    let stages = strings(get(&child, "stages"));
    assert_eq!(stages, ["wave1", "wave2"]);
    let jobs: Vec<(String, String)> = child
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, _)| text(k))
        .filter(|k| k != "stages" && !k.starts_with('.'))
        .map(|k| {
            let stage = text(get(&gitlab_spec(&child, &k), "stage").unwrap());
            (k, stage)
        })
        .collect();
    let names = |stage: &str| -> Vec<String> {
        let mut v: Vec<String> = jobs
            .iter()
            .filter(|(_, s)| s == stage)
            .map(|(j, _)| j.clone())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("wave1"), ["apply base", "apply other"]);
    assert_eq!(names("wave2"), ["apply app"]);
    for stage in &stages {
        let wave = names(stage);
        // The jobs of a stage run at once, each on its own fresh runner.
        let engines: Vec<Daemon> = wave.iter().map(|_| Daemon::start()).collect();
        std::thread::scope(|s| {
            for (job, engine) in wave.iter().zip(&engines) {
                let (repo, child) = (&repo, &child);
                s.spawn(move || gitlab_job(repo, child, job, engine));
            }
        });
    }
    for name in ["base", "other", "app"] {
        let report = report_status(&repo, &format!("report-{name}.json"));
        assert_eq!(report["status"], "succeeded", "{report:#}");
    }
    assert_eq!(
        show(&repo, "team/app:1", &["/base", "/app"]),
        "base-v2\napp"
    );
    // The next main apply: nothing to build, and the entries of the old base go.
    let ci = doc_yaml("# .gitlab-ci.yml");
    let apply = gitlab_job(&repo, &ci, "apply", &Daemon::start());
    assert!(apply.contains("deleted "), "{apply}");
}

#[test]
fn the_tool_builds_its_own_image() {
    require_image("debian:bookworm");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let file = root.join("pipeline-image.toml");
    let vars: toml::Table = toml::from_str::<toml::Table>(&std::fs::read_to_string(&file).unwrap())
        .unwrap()["vars"]
        .as_table()
        .unwrap()
        .clone();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        vars["version"].as_str(),
        Some(version),
        "pipeline-image.toml: version"
    );
    // The file copies the release binary: the one under test when the tests run in release.
    let binary = root.join("target/release/pipeline");
    assert!(
        binary.is_file(),
        "{} is missing: `cargo build --release` first (scripts/test.sh does)",
        binary.display()
    );
    let reg = Registry::start();
    let project = Project::new();
    let registry = format!("registry={}", reg.addr);
    let out = project
        .std_cmd(&["apply", file.to_str().unwrap(), "--var", &registry])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    let image = format!("{}/pipeline:{version}", reg.addr);
    let engine = Daemon::start();
    let shown = engine.docker_ok(&["run", "--rm", &image, "--version"]);
    assert_eq!(shown, format!("pipeline {version}"));
    let config = engine.docker_ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Entrypoint}}",
        &image,
    ]);
    assert_eq!(config, r#"["/usr/local/bin/pipeline"]"#);
    let _ =
        crate::support::engine::docker(&["rmi", &image, &format!("{}/pipeline:latest", reg.addr)]);
}
