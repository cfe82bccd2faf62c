//! Retries of transient registry failures.

use crate::engine::EngineError;
use crate::events::{Event, Sink};

use super::Options;

/// Runs `op` until it succeeds, fails for good, or runs out of attempts. Returns the last
/// error and the number of attempts made.
pub(super) async fn retry<T, F, Fut>(
    opts: &Options,
    sink: &dyn Sink,
    push: Option<(&str, &str)>,
    mut op: F,
) -> Result<(T, u32), (EngineError, u32)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, EngineError>>,
{
    let mut delay = opts.retry_delay;
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok((v, attempt)),
            Err(e) if e.is_transient() && attempt < opts.attempts => {
                if let Some((repository, tag)) = push {
                    sink.event(Event::PushRetry {
                        repository: repository.into(),
                        tag: tag.into(),
                        attempt,
                        error: e.to_string(),
                        delay,
                    });
                } else {
                    sink.event(Event::Warning(format!(
                        "{e}; retrying in {}",
                        humantime::format_duration(delay)
                    )));
                }
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(e) => return Err((e, attempt)),
        }
    }
}
