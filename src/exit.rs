//! Exit codes, in one place. Documented in README.md ("Exit codes").

/// Success; for `plan --detailed-exitcode`: nothing would change.
pub const OK: u8 = 0;
/// An unexpected internal error; for `plan --detailed-exitcode`: any error.
pub const INTERNAL: u8 = 1;
/// The pipeline file or the command line is invalid (nothing was run). For
/// `plan --detailed-exitcode`: apply would change something.
pub const USAGE: u8 = 2;
/// A step failed: non-zero exit, timeout, or a copy source that is unreadable or changed
/// during apply.
pub const STEP: u8 = 3;
/// Publishing failed; the committed image is kept in the engine.
pub const PUBLISH: u8 = 4;
/// The engine failed or is unreachable, or the base image is missing or cannot be pulled.
pub const ENGINE: u8 = 5;
/// Interrupted by SIGINT (128 + 2).
pub const SIGINT: u8 = 130;
/// Terminated by SIGTERM (128 + 15).
pub const SIGTERM: u8 = 143;

/// Exit code for an apply error.
pub fn of(e: &crate::execute::ApplyError) -> u8 {
    use crate::execute::ApplyError::*;
    match e {
        StepFailed { .. } | StepTimedOut { .. } | StepEngine { .. } | CopySource { .. } => STEP,
        Push { .. } => PUBLISH,
        Credentials(_) | Secret { .. } => USAGE,
        BaseMissing { .. } | Pull { .. } | Commit(_) | Engine(_) => ENGINE,
    }
}
