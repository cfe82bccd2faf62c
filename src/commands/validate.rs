use crate::cli::ValidateArgs;
use crate::exit;

pub fn run(args: ValidateArgs) -> u8 {
    match super::load_all(&args.files, &args.vars) {
        Ok(pipelines) => {
            for p in pipelines {
                eprintln!(
                    "{}: ok ({} steps, {} publish targets)",
                    p.file.display(),
                    p.steps.len(),
                    p.publish.len()
                );
            }
            exit::OK
        }
        Err(code) => code,
    }
}
