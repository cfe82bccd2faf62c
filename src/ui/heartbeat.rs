//! In plain mode (CI logs), a line at least every interval while something long runs quietly
//! (a step without output, a pull, a push), with the elapsed time and, for transfers, the
//! bytes done, so a log never looks hung.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Where heartbeat lines go (the Ui's own line printer).
pub(super) type Emit = Box<dyn Fn(&str) + Send + Sync>;

struct Beat {
    last_line: Instant,
    activity: Option<Activity>,
}

struct Activity {
    what: String,
    since: Instant,
    /// Bytes done and total per layer of a transfer.
    layers: BTreeMap<String, (i64, i64)>,
}

/// The heartbeat of one renderer.
pub(super) struct Heartbeat {
    state: Arc<Mutex<Beat>>,
    interval: Duration,
    emit: Arc<Emit>,
    started: std::sync::Once,
}

impl Heartbeat {
    pub(super) fn new(interval: Duration, emit: Emit) -> Self {
        Self {
            state: Arc::new(Mutex::new(Beat {
                last_line: Instant::now(),
                activity: None,
            })),
            interval,
            emit: Arc::new(emit),
            started: std::sync::Once::new(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Beat) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A line was printed: the next heartbeat is an interval from now.
    pub(super) fn printed(&self) {
        self.with(|b| b.last_line = Instant::now());
    }

    /// Something long starts (unless it is already going on).
    pub(super) fn begin(&self, what: String) {
        self.with(|b| {
            if b.activity.as_ref().is_none_or(|a| a.what != what) {
                b.activity = Some(Activity {
                    what,
                    since: Instant::now(),
                    layers: BTreeMap::new(),
                });
            }
        });
        self.start();
    }

    /// Progress of a transfer's layer. Push progress names no layer: its size stands in.
    pub(super) fn progress(&self, layer: Option<&str>, current: Option<i64>, total: Option<i64>) {
        let Some(current) = current else {
            return;
        };
        let layer = match (layer, total) {
            (Some(l), _) => l.to_string(),
            (None, Some(t)) => format!("size {t}"),
            (None, None) => return,
        };
        self.with(|b| {
            if let Some(a) = b.activity.as_mut() {
                let entry = a.layers.entry(layer).or_insert((0, 0));
                entry.0 = entry.0.max(current);
                entry.1 = entry.1.max(total.unwrap_or(0));
            }
        });
    }

    /// The long thing ended.
    pub(super) fn end(&self) {
        self.with(|b| b.activity = None);
    }

    /// Starts the ticker thread once; it ends with the renderer.
    fn start(&self) {
        self.started.call_once(|| {
            let state: Weak<Mutex<Beat>> = Arc::downgrade(&self.state);
            let emit = Arc::clone(&self.emit);
            let interval = self.interval;
            let tick = (interval / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
            std::thread::spawn(move || loop {
                std::thread::sleep(tick);
                let Some(state) = state.upgrade() else { return };
                let line = {
                    let mut b = state.lock().unwrap_or_else(|e| e.into_inner());
                    let due = b.last_line.elapsed() >= interval;
                    match (&b.activity, due) {
                        (Some(a), true) => {
                            let text = describe(a);
                            b.last_line = Instant::now();
                            Some(text)
                        }
                        _ => None,
                    }
                };
                if let Some(line) = line {
                    emit(&line);
                }
            });
        });
    }
}

fn describe(a: &Activity) -> String {
    let elapsed = a.since.elapsed().as_secs();
    let (done, total) = a
        .layers
        .values()
        .fold((0i64, 0i64), |(d, t), (c, tt)| (d + c, t + tt));
    let bytes = match (done, total) {
        (0, _) => String::new(),
        (d, 0) => format!(", {}", super::mib(d)),
        (d, t) => format!(
            ", {} of {} in {} layers",
            super::mib(d),
            super::mib(t),
            a.layers.len()
        ),
    };
    format!("… {} still running ({elapsed}s{bytes})", a.what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_activity_gets_a_line_each_interval_and_none_after_it_ends() {
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = Arc::clone(&lines);
        let hb = Heartbeat::new(
            Duration::from_millis(40),
            Box::new(move |l: &str| sink.lock().unwrap().push(l.to_string())),
        );
        hb.begin("push r/app:1".into());
        hb.progress(Some("layer1"), Some(1 << 20), Some(2 << 20));
        hb.progress(Some("layer2"), Some(1 << 20), Some(2 << 20));
        std::thread::sleep(Duration::from_millis(150));
        hb.end();
        let seen = lines.lock().unwrap().len();
        assert!(seen >= 2, "{:?}", lines.lock().unwrap());
        let first = lines.lock().unwrap()[0].clone();
        assert!(
            first.contains("push r/app:1 still running")
                && first.contains("2.0 MiB of 4.0 MiB in 2 layers"),
            "{first}"
        );
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(lines.lock().unwrap().len(), seen, "no line after the end");
    }

    #[test]
    fn printed_lines_postpone_the_heartbeat() {
        let lines = Arc::new(Mutex::new(0usize));
        let sink = Arc::clone(&lines);
        let hb = Heartbeat::new(
            Duration::from_millis(100),
            Box::new(move |_: &str| *sink.lock().unwrap() += 1),
        );
        hb.begin("step 1 `build`".into());
        for _ in 0..6 {
            std::thread::sleep(Duration::from_millis(30));
            hb.printed();
        }
        assert_eq!(*lines.lock().unwrap(), 0);
    }
}
