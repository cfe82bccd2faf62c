//! Retries of transient registry failures.

use std::hash::BuildHasher;
use std::time::Duration;

use crate::engine::EngineError;
use crate::execute::events::{Event, Sink};

use super::Options;

/// The longest wait between two attempts (unless `--retry-delay` itself is longer).
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

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
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok((v, attempt)),
            Err(e) if e.is_transient() && attempt < opts.attempts => {
                let delay = delay(opts.retry_delay, attempt);
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
                        super::events::rounded(delay)
                    )));
                }
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return Err((e, attempt)),
        }
    }
}

/// The wait after failed attempt `attempt` (from 1): `first` doubled each time, capped at
/// [`MAX_RETRY_DELAY`] (or at `first` when that is longer), with equal jitter (half of it
/// fixed, half random) so that many clients failing together do not retry together.
fn delay(first: Duration, attempt: u32) -> Duration {
    let cap = MAX_RETRY_DELAY.max(first);
    let doubled = first.saturating_mul(1u32 << (attempt - 1).min(31)).min(cap);
    let half = doubled / 2;
    half + half.mul_f64(random_unit())
}

/// A number in [0, 1): the standard library's hasher keys are random per process and per
/// `RandomState`, which is all a jitter needs.
fn random_unit() -> f64 {
    let bits = std::collections::hash_map::RandomState::new().hash_one(0u8);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The waits between 20 attempts against a registry that keeps resetting the connection.
    async fn waits() -> Vec<Duration> {
        let opts = Options {
            no_cache: false,
            keep_failed: false,
            attempts: 20,
            retry_delay: Duration::from_millis(500),
            notes: None,
            store: None,
            no_push: false,
        };
        let starts = Mutex::new(Vec::new());
        let result: Result<((), u32), _> = retry(&opts, &|_e: Event| {}, None, || {
            starts.lock().unwrap().push(tokio::time::Instant::now());
            async {
                Err(EngineError::Connection {
                    endpoint: "registry".into(),
                    detail: "connection reset by peer".into(),
                })
            }
        })
        .await;
        assert_eq!(result.err().map(|(_, attempts)| attempts), Some(20));
        let starts = starts.into_inner().unwrap();
        starts.windows(2).map(|w| w[1] - w[0]).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn twenty_attempts_wait_at_most_the_cap_each_and_the_waits_vary() {
        let started = tokio::time::Instant::now();
        let first = waits().await;
        assert_eq!(first.len(), 19);
        assert!(
            started.elapsed() <= 20 * MAX_RETRY_DELAY,
            "{:?}",
            started.elapsed()
        );
        for w in &first {
            assert!(*w <= MAX_RETRY_DELAY, "{first:?}");
        }
        // Jitter: the capped waits are not all the same, and a second run differs.
        let capped = &first[10..];
        assert!(capped.iter().any(|w| *w != capped[0]), "{capped:?}");
        assert!(
            capped.iter().all(|w| *w >= MAX_RETRY_DELAY / 2),
            "{capped:?}"
        );
        assert_ne!(first, waits().await);
    }

    #[test]
    fn delays_double_up_to_the_cap_and_never_overflow() {
        let first = Duration::from_millis(100);
        for attempt in 1..=5 {
            let d = delay(first, attempt);
            let full = first * (1 << (attempt - 1));
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
        assert!(delay(first, 40) <= MAX_RETRY_DELAY);
        let long = Duration::from_secs(90);
        assert!(delay(long, 19) <= long);
        assert!(delay(Duration::MAX, 19) <= Duration::MAX);
    }
}
