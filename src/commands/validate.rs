use crate::cli::ValidateArgs;
use crate::exit;

pub fn run(args: ValidateArgs) -> u8 {
    match super::load_all(&args.files, &args.vars) {
        Ok(pipelines) => {
            // Files given together also form a dependency graph: no cycles, one producer per base.
            if let Err(errors) = crate::graph::build(&pipelines) {
                for e in errors {
                    eprintln!("error: {e}");
                }
                return exit::USAGE;
            }
            for p in pipelines {
                eprintln!(
                    "{}: ok ({} steps, {} publish targets)",
                    crate::diag::clean(&p.file.display().to_string()),
                    p.steps.len(),
                    p.publish.len()
                );
            }
            exit::OK
        }
        Err(code) => code,
    }
}
