//! What the first `run` step needs of the image it starts in: `cat` (the build container's
//! command), `/bin/sh` for a string command (or a step with secrets, which the tool places
//! with `/bin/sh -c`), and an exec-form command's program. Pure: the paths to look for, less
//! those an earlier copy or one of the step's mounts may provide; `observe` asks the engine
//! which of them the image lacks, before any step runs.
//!
//! Only the first `run` step is certain to fail on what the base lacks: a command may install
//! anything (`apt-get install -y python3` before `run = ["python3", ...]`), so what a later
//! step needs is never held against the base.

use serde::Serialize;

use crate::model::{Action, Command, ImageConfig, Pipeline, Step, DEFAULT_PATH};

/// What the first `run` step needs, as paths to look for in the image it starts in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Needs {
    /// The step's index, from 0.
    pub(crate) step: usize,
    pub(crate) wants: Vec<Want>,
}

/// One thing the step needs: present when any of `paths` exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Want {
    pub(crate) missing: Missing,
    /// Where it may be: an absolute path, or a program's place in each folder of a PATH.
    pub(crate) paths: Vec<String>,
}

/// Something the image lacks, and why the step needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Missing {
    /// The path or the program: `/bin/sh`, `cat`.
    pub(crate) what: String,
    /// Where it was looked for, and why the step needs it, with what to do.
    pub(crate) why: String,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` {}", self.what, self.why)
    }
}

/// A `run` step that cannot start on its base, found before any step runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error(
    "step {step} `{name}` ({at}) cannot run on base `{reference}` ({}): {}",
    crate::engine::short(id),
    join(missing)
)]
pub(crate) struct Lack {
    /// The step's number, from 1.
    pub(crate) step: usize,
    pub(crate) name: String,
    /// Where the step's `run` is written: `file:line:col`.
    pub(crate) at: String,
    /// The base as written, and its image id.
    pub(crate) reference: String,
    pub(crate) id: String,
    pub(crate) missing: Vec<Missing>,
}

fn join(missing: &[Missing]) -> String {
    missing
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Needs {
    /// The failure when the image lacks `missing` (a subset of the wants).
    pub(crate) fn lack(&self, p: &Pipeline, id: &str, missing: Vec<Missing>) -> Lack {
        let step = &p.steps[self.step];
        Lack {
            step: self.step + 1,
            name: step.name.clone(),
            at: step.at.clone(),
            reference: p.base.image.to_string(),
            id: id.to_string(),
            missing,
        }
    }
}

/// What the first `run` step of `p` needs of an image with `config`, when it is not among
/// the `steps_cached` first steps; `None` when there is nothing to look for (no `run` step,
/// it is cached, or earlier copies and its mounts may provide all it needs).
pub(crate) fn first_run(p: &Pipeline, steps_cached: usize, config: &ImageConfig) -> Option<Needs> {
    let index = p
        .steps
        .iter()
        .position(|s| matches!(s.action, Action::Run(_)))?;
    if index < steps_cached {
        return None;
    }
    let step = &p.steps[index];
    let Action::Run(command) = &step.action else {
        return None;
    };
    let image_path = path_of(&config.env).unwrap_or(DEFAULT_PATH).to_string();
    let mut wants = vec![cat(&config.env)];
    let shell = "/bin/sh";
    match command {
        Command::Shell(_) => wants.push(absolute(
            shell,
            "is missing: a string `run` is run with `/bin/sh -c`; write it as an array, or \
             use a base with a shell",
        )),
        Command::Exec(argv) => {
            if let Some(w) = program(step, argv.first()?, &image_path, &config.workdir) {
                wants.push(w);
            }
            if !step.secrets.is_empty() {
                wants.push(absolute(
                    shell,
                    "is missing: the tool places the step's secrets with `/bin/sh -c`; use a \
                     base with a shell, or drop `secrets` from this step",
                ));
            }
        }
    }
    let earlier = &p.steps[..index];
    wants.retain(|w| !w.paths.iter().any(|path| provided(path, earlier, step)));
    wants.dedup_by(|a, b| a.missing.what == b.missing.what);
    (!wants.is_empty()).then_some(Needs { step: index, wants })
}

/// `cat` on the `PATH` of an image whose environment is `env` (else the default one): every
/// build container runs it.
pub(crate) fn cat(env: &[String]) -> Want {
    lookup(
        "cat",
        path_of(env).unwrap_or(DEFAULT_PATH),
        "the tool keeps the build container alive with `cat` from the image; use a base \
         with busybox or coreutils, or copy a static `cat` in before this step",
    )
}

/// The `PATH` an environment sets.
fn path_of(env: &[String]) -> Option<&str> {
    env.iter().find_map(|e| e.strip_prefix("PATH="))
}

fn absolute(path: &str, why: &str) -> Want {
    Want {
        missing: Missing {
            what: path.to_string(),
            why: why.to_string(),
        },
        paths: vec![path.to_string()],
    }
}

/// `name` in each absolute folder of `path`.
fn lookup(name: &str, path: &str, why: &str) -> Want {
    Want {
        missing: Missing {
            what: name.to_string(),
            why: format!("is not on the image's PATH (`{path}`): {why}"),
        },
        paths: path
            .split(':')
            .filter(|d| d.starts_with('/'))
            .map(|d| format!("{}/{name}", d.trim_end_matches('/')))
            .collect(),
    }
}

/// Where an exec-form command's program is: absolute as written, relative to the step's
/// working folder, or looked up on the step's PATH (its `env`'s, else the image's); `None`
/// when its place cannot be told (`..` in it).
fn program(step: &Step, name: &str, image_path: &str, image_workdir: &str) -> Option<Want> {
    let why = "copy it in before this step, or use a base that has it";
    if name.split('/').any(|c| c == "..") || name.is_empty() {
        return None;
    }
    if name.starts_with('/') {
        return Some(absolute(
            name,
            &format!("is missing: it is the step's program; {why}"),
        ));
    }
    if name.contains('/') {
        let dir = step
            .workdir
            .as_deref()
            .filter(|w| !w.is_empty())
            .or(Some(image_workdir).filter(|w| !w.is_empty()))
            .unwrap_or("/");
        let path = format!(
            "{}/{}",
            dir.trim_end_matches('/'),
            name.trim_start_matches("./")
        );
        return Some(absolute(
            &path,
            &format!("is missing: it is the step's program (`{name}` in `{dir}`); {why}"),
        ));
    }
    let path = step
        .env
        .get("PATH")
        .map_or(image_path, String::as_str)
        .to_string();
    Some(lookup(
        name,
        &path,
        &format!("it is the step's program; {why}"),
    ))
}

/// Whether `path` may be provided by the time `step` runs: a copy before it writes to the
/// path or to a folder above it, or one of the step's mounts covers it.
fn provided(path: &str, earlier: &[Step], step: &Step) -> bool {
    let covers = |at: &str| {
        let at = at.trim_end_matches('/');
        at.is_empty() || path == at || path.strip_prefix(at).is_some_and(|r| r.starts_with('/'))
    };
    earlier.iter().any(|s| match &s.action {
        Action::Copy(c) => covers(&c.dest),
        Action::Run(_) => false,
    }) || step.container.mount_points().any(covers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Pipeline;

    fn pipeline(steps: &str) -> Pipeline {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/busybox"), "x").unwrap();
        std::fs::write(dir.path().join("tool"), "x").unwrap();
        std::fs::create_dir_all(dir.path().join("vendor")).unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(
            &file,
            format!("[base]\nimage = \"distroless:1\"\n{steps}\n[commit]\ntags = [\"x:1\"]\n"),
        )
        .unwrap();
        let p = crate::config::load(&file, &Default::default()).unwrap();
        drop(dir);
        p
    }

    /// The step looked at and its wants, each as what it is and how many paths it may be at.
    type Wants = Option<(usize, Vec<(String, usize)>)>;

    fn wants(p: &Pipeline, cached: usize, env: &[&str]) -> Wants {
        let config = ImageConfig {
            env: env.iter().map(ToString::to_string).collect(),
            ..Default::default()
        };
        first_run(p, cached, &config).map(|n| {
            (
                n.step,
                n.wants
                    .iter()
                    .map(|w| (w.missing.what.clone(), w.paths.len()))
                    .collect(),
            )
        })
    }

    fn w(items: &[(&str, usize)]) -> Vec<(String, usize)> {
        items.iter().map(|(a, n)| (a.to_string(), *n)).collect()
    }

    #[test]
    fn the_first_run_step_needs_cat_and_its_shell_or_program_less_what_copies_and_mounts_bring() {
        let copy_bin = "[[step]]\ncopy = { src = \"bin\", dest = \"/bin\" }\n";
        let copy_tool = "[[step]]\ncopy = { src = \"tool\", dest = \"/opt/bin/\" }\n";
        let cases: Vec<(&str, String, usize, &[&str], Wants)> = vec![
            ("string run", "[[step]]\nrun = \"true\"\n".into(), 0, &[],
             Some((0, w(&[("cat", 6), ("/bin/sh", 1)])))),
            ("array run on the image's PATH", "[[step]]\nrun = [\"tool\", \"x\"]\n".into(), 0,
             &["PATH=/a:/b"], Some((0, w(&[("cat", 2), ("tool", 2)])))),
            ("array run, an absolute program", "[[step]]\nrun = [\"/app/tool\"]\n".into(), 0,
             &[], Some((0, w(&[("cat", 6), ("/app/tool", 1)])))),
            ("array run on the step's PATH",
             "[[step]]\nrun = [\"tool\"]\nenv = { PATH = \"/opt/bin\" }\n".into(), 0, &[],
             Some((0, w(&[("cat", 6), ("tool", 1)])))),
            ("a relative program, in the workdir",
             "[[step]]\nrun = [\"./tool\"]\nworkdir = \"/src\"\n".into(), 0, &[],
             Some((0, w(&[("cat", 6), ("/src/tool", 1)])))),
            ("secrets need a shell too",
             "[secrets.t]\nenv = \"T\"\n[[step]]\nrun = [\"/t\"]\nsecrets = [\"t\"]\n".into(), 0, &[],
             Some((0, w(&[("cat", 6), ("/t", 1), ("/bin/sh", 1)])))),
            ("a copy to /bin may bring the shell and cat",
             format!("{copy_bin}[[step]]\nrun = \"true\"\n"), 0, &[], None),
            ("a copy into a PATH folder may bring the program",
             format!("{copy_tool}[[step]]\nrun = [\"tool\"]\nenv = {{ PATH = \"/opt/bin\" }}\n"), 0, &[],
             Some((1, w(&[("cat", 6)])))),
            ("and anything else on that folder: `cat` too",
             "[[step]]\ncopy = { src = \"tool\", dest = \"/usr/bin/\" }\n[[step]]\nrun = [\"tool\"]\n".into(),
             0, &[], None),
            ("a copy to / may bring anything",
             "[[step]]\ncopy = { src = \"tool\", dest = \"/\" }\n[[step]]\nrun = \"x\"\n".into(),
             0, &[], None),
            ("a copy after the step brings nothing",
             format!("[[step]]\nrun = \"true\"\n{copy_bin}"), 0, &[],
             Some((0, w(&[("cat", 6), ("/bin/sh", 1)])))),
            ("a mount over the program's folder",
             "[[step]]\nrun = [\"/v/tool\"]\nmounts = [{ src = \"vendor\", dest = \"/v\" }]\n".into(),
             0, &[], Some((0, w(&[("cat", 6)])))),
            ("only the first run step: a command may install what later ones need",
             "[[step]]\nrun = [\"/bin/sh\", \"-c\", \"x\"]\n[[step]]\nrun = [\"python3\"]\n".into(),
             0, &[], Some((0, w(&[("cat", 6), ("/bin/sh", 1)])))),
            ("the first run step cached: it ran on this base",
             "[[step]]\nrun = \"true\"\n[[step]]\nrun = [\"x\"]\n".into(), 1, &[], None),
            ("copies only", copy_bin.to_string(), 0, &[], None),
            ("a program with `..` cannot be told", "[[step]]\nrun = [\"../x\"]\n".into(), 0, &[],
             Some((0, w(&[("cat", 6)])))),
        ];
        for (what, steps, cached, env, expected) in cases {
            let p = pipeline(&steps);
            assert_eq!(wants(&p, cached, env), expected, "{what}");
        }
    }

    #[test]
    fn a_lack_names_the_step_where_it_is_written_the_base_and_what_is_missing() {
        let p = pipeline("[[step]]\nname = \"build\"\nrun = \"make\"\n");
        let needs = first_run(&p, 0, &ImageConfig::default()).unwrap();
        let missing: Vec<Missing> = needs.wants.iter().map(|w| w.missing.clone()).collect();
        let text = needs
            .lack(&p, "sha256:0123456789abcdef", missing)
            .to_string();
        assert!(text.starts_with("step 1 `build` ("), "{text}");
        assert!(text.contains("p.toml:5:"), "{text}");
        assert!(
            text.contains("cannot run on base `distroless:1` (0123456789ab): `cat` is not on the image's PATH (`/usr/local/sbin:"),
            "{text}"
        );
        assert!(
            text.ends_with("; `/bin/sh` is missing: a string `run` is run with `/bin/sh -c`; write it as an array, or use a base with a shell"),
            "{text}"
        );
    }
}
