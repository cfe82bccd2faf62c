//! `validate` of a generated 500-step pipeline file: parse, structural check, templates and
//! semantic checks (`config::load`), timed over many iterations.
//!
//! Run with `cargo bench --bench validate`; the target is well under 50 ms per file.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use pipeline::config::{self, Overrides};

fn generate(steps: usize) -> String {
    let mut s = String::from(
        "#:schema ../schemas/pipeline.schema.json\n[vars]\nversion = \"1.0\"\ngreeting = \"hi\"\n\n\
         [base]\nimage = \"debian:bookworm\"\npull = \"missing\"\n\n",
    );
    for i in 0..steps {
        match i % 4 {
            0 => writeln!(
                s,
                "[[step]]\nname = \"step {i}\"\nrun = \"echo {{{{ greeting }}}} {i} && test -d /tmp\"\n\
                 env = {{ STEP = \"{i}\", VERSION = \"{{{{ version }}}}\" }}\ntimeout = \"10m\"\n"
            ),
            1 => writeln!(
                s,
                "[[step]]\nrun = [\"/bin/sh\", \"-c\", \"echo {i}\"]\nworkdir = \"/srv\"\nuser = \"root\"\n"
            ),
            2 => writeln!(
                s,
                "[[step]]\ncopy = {{ src = \"files/app.conf\", dest = \"/etc/app/{i}.conf\", mode = \"0644\", owner = \"0:0\" }}\n"
            ),
            _ => writeln!(s, "[[step]]\nrun = \"true\"\ncheckpoint = {}\n", i % 8 == 3),
        }
        .unwrap();
    }
    s.push_str(
        "[commit]\nauthor = \"Bench <bench@example.com>\"\nmessage = \"v{{ version }}\"\n\
         tags = [\"bench:{{ version }}\"]\n\n[commit.config]\ncmd = [\"sh\"]\nexpose = [80, \"443/tcp\"]\n\n\
         [[publish]]\nrepository = \"localhost:5000/bench\"\ntags = [\"{{ version }}\", \"latest\"]\n",
    );
    s
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("files")).unwrap();
    std::fs::write(dir.path().join("files/app.conf"), "x\n").unwrap();
    let path = dir.path().join("pipeline.toml");
    let text = generate(500);
    std::fs::write(&path, &text).unwrap();
    let overrides = Overrides::default();

    let p = config::load(&path, &overrides).unwrap_or_else(|r| panic!("{}", r.render()));
    assert_eq!(p.steps.len(), 500);

    for _ in 0..5 {
        config::load(&path, &overrides).unwrap();
    }
    let mut times: Vec<Duration> = Vec::new();
    let started = Instant::now();
    while times.len() < 200 && started.elapsed() < Duration::from_secs(20) {
        let t = Instant::now();
        let p = config::load(&path, &overrides).unwrap();
        times.push(t.elapsed());
        std::hint::black_box(p);
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / u32::try_from(times.len()).unwrap();
    println!(
        "validate, 500 steps ({} bytes), {} runs: min {:.2?}, median {:.2?}, mean {:.2?}, p95 {:.2?}, max {:.2?}",
        text.len(),
        times.len(),
        times[0],
        times[times.len() / 2],
        mean,
        times[times.len() * 95 / 100],
        times[times.len() - 1],
    );
}
