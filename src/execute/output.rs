//! A step's output: split into lines, secrets redacted, the last lines kept.

use std::collections::VecDeque;

use crate::engine::OutputStream;
use crate::events::{Event, Sink};

/// Lines of output kept to explain a failed step.
const TAIL_LINES: usize = 20;

/// Splits a step's output into lines, redacts secrets, keeps the last lines.
pub(super) struct Lines<'a> {
    step: usize,
    secrets: &'a [&'a str],
    sink: &'a dyn Sink,
    partial: [Vec<u8>; 2],
    tail: VecDeque<String>,
}

impl<'a> Lines<'a> {
    pub(super) fn new(step: usize, secrets: &'a [&'a str], sink: &'a dyn Sink) -> Self {
        Self {
            step,
            secrets,
            sink,
            partial: [Vec::new(), Vec::new()],
            tail: VecDeque::new(),
        }
    }

    pub(super) fn push(&mut self, stream: OutputStream, bytes: &[u8]) {
        let slot = stream as usize;
        self.partial[slot].extend_from_slice(bytes);
        while let Some(pos) = self.partial[slot].iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial[slot].drain(..=pos).collect();
            self.emit(stream, &line[..line.len() - 1]);
        }
    }

    pub(super) fn finish(&mut self) {
        for stream in [OutputStream::Stdout, OutputStream::Stderr] {
            let rest = std::mem::take(&mut self.partial[stream as usize]);
            if !rest.is_empty() {
                self.emit(stream, &rest);
            }
        }
    }

    fn emit(&mut self, stream: OutputStream, line: &[u8]) {
        let mut text = String::from_utf8_lossy(line)
            .trim_end_matches('\r')
            .to_string();
        for s in self.secrets {
            // The whole value, and each line of a multi-line value (a key file, say), since
            // output arrives line by line.
            let lines = s.lines().map(str::trim).filter(|l| l.len() >= 4);
            for variant in [s, s.trim()].into_iter().chain(lines) {
                if !variant.is_empty() {
                    text = text.replace(variant, "******");
                }
            }
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(text.clone());
        self.sink.event(Event::StepOutput {
            index: self.step,
            stream,
            line: text,
        });
    }

    pub(super) fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn output_is_split_into_lines_and_secrets_are_redacted_even_line_by_line() {
        let seen = Mutex::new(Vec::new());
        let sink = |e: Event| {
            if let Event::StepOutput { line, .. } = e {
                seen.lock().unwrap().push(line);
            }
        };
        let secrets = [
            "hunter2",
            "-----BEGIN KEY-----\nabcdefgh\n-----END KEY-----\n",
        ];
        let mut lines = Lines::new(1, &secrets, &sink);
        lines.push(OutputStream::Stdout, b"pass=hun");
        lines.push(OutputStream::Stdout, b"ter2 ok\nkey: abcdefgh\npartial");
        lines.finish();
        assert_eq!(
            *seen.lock().unwrap(),
            ["pass=****** ok", "key: ******", "partial"]
        );
        assert_eq!(lines.tail().len(), 3);
    }
}
