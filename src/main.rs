use std::process::ExitCode;

fn main() -> ExitCode {
    pipeline::run(std::env::args_os())
}
