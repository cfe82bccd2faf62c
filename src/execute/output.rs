//! A step's output: split into lines, secrets redacted, the last lines kept.
//!
//! Memory and time stay bounded whatever the step prints: each byte is looked at once for a
//! line end, and a line longer than [`MAX_LINE`] keeps only its first part (with the number of
//! bytes cut). Redaction happens before the cut, on enough bytes that a secret straddling the
//! cut is still recognised. `\n`, `\r` and `\r\n` end a line (carriage-return progress, as
//! curl, wget, apt and dpkg print it, shows as lines). Lines are emitted as soon as they are
//! complete, in the order the step wrote them across stdout and stderr.

use std::collections::VecDeque;

use crate::engine::OutputStream;
use crate::execute::events::{Event, Sink};

/// Lines of output kept to explain a failed step.
const TAIL_LINES: usize = 20;

/// The longest line shown, in bytes; the rest of a longer line is counted, not kept.
pub(super) const MAX_LINE: usize = 16 * 1024;

/// What replaces a secret in the output.
const MASK: &str = "******";

/// Splits a step's output into lines, redacts secrets, keeps the last lines.
pub(super) struct Lines<'a> {
    step: usize,
    /// The texts to redact: each secret, trimmed, each line of a multi-line one, and their
    /// encodings (see [`super::masks`]).
    secrets: Vec<String>,
    sink: &'a dyn Sink,
    /// The bytes of the unfinished line, at most [`MAX_LINE`] plus the longest secret.
    partial: Vec<u8>,
    /// The stream the unfinished line comes from.
    stream: OutputStream,
    /// A line too long to keep: its redacted first part and how many bytes were dropped.
    cut: Option<(String, usize)>,
    /// Per stream: the last line ended at a `\r` (or where the other stream took over), so a
    /// `\n` right after it ends nothing new.
    soft_end: [bool; 2],
    tail: VecDeque<String>,
}

impl<'a> Lines<'a> {
    pub(super) fn new(step: usize, secrets: &[&str], sink: &'a dyn Sink) -> Self {
        let mut variants: Vec<String> = Vec::new();
        for form in secrets.iter().flat_map(|s| super::masks::forms(s)) {
            if !variants.contains(&form) {
                variants.push(form);
            }
        }
        let longest = variants.iter().map(String::len).max().unwrap_or(0);
        Self {
            step,
            secrets: variants,
            sink,
            partial: Vec::with_capacity(MAX_LINE + longest),
            stream: OutputStream::Stdout,
            cut: None,
            soft_end: [false; 2],
            tail: VecDeque::new(),
        }
    }

    /// The most bytes of one line kept before it is cut: the cap, plus room for a secret
    /// that starts just before it.
    fn keep(&self) -> usize {
        MAX_LINE + self.secrets.iter().map(|v| v.len()).max().unwrap_or(0)
    }

    fn in_line(&self) -> bool {
        !self.partial.is_empty() || self.cut.is_some()
    }

    pub(super) fn push(&mut self, stream: OutputStream, mut bytes: &[u8]) {
        if stream != self.stream {
            // The other stream wrote: what came before it is shown before it.
            if self.in_line() {
                self.end_line();
                self.soft_end[self.stream as usize] = true;
            }
            self.stream = stream;
        }
        let slot = stream as usize;
        while !bytes.is_empty() {
            if std::mem::take(&mut self.soft_end[slot]) && bytes[0] == b'\n' {
                bytes = &bytes[1..];
                continue;
            }
            match bytes.iter().position(|b| *b == b'\n' || *b == b'\r') {
                Some(pos) => {
                    self.add(&bytes[..pos]);
                    if bytes[pos] == b'\r' {
                        // A bare `\r` on an empty line only moves the cursor.
                        if self.in_line() {
                            self.end_line();
                            self.soft_end[slot] = true;
                        }
                    } else {
                        self.end_line();
                    }
                    bytes = &bytes[pos + 1..];
                }
                None => {
                    self.add(bytes);
                    bytes = &[];
                }
            }
        }
    }

    /// Adds bytes of the current line; past the cap they are only counted.
    fn add(&mut self, bytes: &[u8]) {
        if let Some((_, dropped)) = &mut self.cut {
            *dropped += bytes.len();
            return;
        }
        let room = self.keep() - self.partial.len();
        if bytes.len() < room {
            self.partial.extend_from_slice(bytes);
            return;
        }
        self.partial.extend_from_slice(&bytes[..room]);
        let (head, dropped) = self.redact_head();
        self.partial.clear();
        self.cut = Some((head, dropped + bytes.len() - room));
    }

    /// The redacted text of the first [`MAX_LINE`] bytes of the kept line and how many bytes
    /// follow them. Secrets are found in all kept bytes first, so one that starts before the
    /// cut is masked even where it runs past it.
    fn redact_head(&self) -> (String, usize) {
        let raw = &self.partial;
        let mut masked = vec![false; raw.len()];
        for v in &self.secrets {
            let v = v.as_bytes();
            let mut from = 0;
            while let Some(at) = find(&raw[from..], v) {
                let start = from + at;
                masked[start..start + v.len()].fill(true);
                from = start + 1;
            }
        }
        let mut end = raw.len().min(MAX_LINE);
        // Cut on a character boundary.
        while end < raw.len() && end > 0 && (raw[end] & 0xC0) == 0x80 {
            end -= 1;
        }
        let mut text = Vec::with_capacity(end);
        let mut i = 0;
        while i < end {
            if masked[i] {
                text.extend_from_slice(MASK.as_bytes());
                while i < raw.len() && masked[i] {
                    i += 1;
                }
            } else {
                text.push(raw[i]);
                i += 1;
            }
        }
        let dropped = raw.len().saturating_sub(i);
        (String::from_utf8_lossy(&text).into_owned(), dropped)
    }

    fn end_line(&mut self) {
        let text = match self.cut.take() {
            Some((head, dropped)) => cut_text(head, dropped),
            None => {
                let (head, dropped) = self.redact_head();
                cut_text(head, dropped)
            }
        };
        self.partial.clear();
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(text.clone());
        self.sink.event(Event::StepOutput {
            index: self.step,
            stream: self.stream,
            line: text,
        });
    }

    pub(super) fn finish(&mut self) {
        if self.in_line() {
            self.end_line();
        }
    }

    pub(super) fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }
}

fn cut_text(head: String, dropped: usize) -> String {
    if dropped == 0 {
        head
    } else {
        format!("{head}… ({dropped} bytes cut)")
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    let first = needle[0];
    let last_start = haystack.len() - needle.len();
    let mut at = 0;
    while at <= last_start {
        let pos = haystack[at..=last_start].iter().position(|b| *b == first)?;
        let start = at + pos;
        if &haystack[start..start + needle.len()] == needle {
            return Some(start);
        }
        at = start + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The lines a step's output turns into, with their stream.
    fn collect(secrets: &[&str], chunks: &[(OutputStream, &[u8])]) -> Vec<(OutputStream, String)> {
        let seen = Mutex::new(Vec::new());
        let sink = |e: Event| {
            if let Event::StepOutput { line, stream, .. } = e {
                seen.lock().unwrap().push((stream, line));
            }
        };
        let mut lines = Lines::new(1, secrets, &sink);
        for (stream, bytes) in chunks {
            lines.push(*stream, bytes);
        }
        lines.finish();
        seen.into_inner().unwrap()
    }

    fn texts(secrets: &[&str], chunks: &[&[u8]]) -> Vec<String> {
        let chunks: Vec<_> = chunks.iter().map(|c| (OutputStream::Stdout, *c)).collect();
        collect(secrets, &chunks)
            .into_iter()
            .map(|(_, l)| l)
            .collect()
    }

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

    #[test]
    fn carriage_returns_end_lines_and_crlf_is_one_line_end() {
        let progress: &[&[u8]] = &[
            b"Downloading\n\r  0%",
            b"\r 50%\r",
            b"100%\r\nwindows line\r",
            b"\n\r\nlast\n\n",
        ];
        assert_eq!(
            texts(&[], progress),
            [
                "Downloading",
                "  0%",
                " 50%",
                "100%",
                "windows line",
                "",
                "last",
                ""
            ]
        );
    }

    #[test]
    fn megabytes_without_a_newline_take_linear_time_and_bounded_memory() {
        let count = Mutex::new(0usize);
        let last = Mutex::new(String::new());
        let sink = |e: Event| {
            if let Event::StepOutput { line, .. } = e {
                *count.lock().unwrap() += 1;
                *last.lock().unwrap() = line;
            }
        };
        let secrets = ["s3cr3t-value"];
        let mut lines = Lines::new(1, &secrets, &sink);
        let chunk = vec![b'x'; 64 * 1024];
        let started = std::time::Instant::now();
        for _ in 0..(48 * 16) {
            lines.push(OutputStream::Stdout, &chunk);
            assert!(lines.partial.capacity() <= lines.keep());
        }
        lines.push(OutputStream::Stdout, b"\nnext\n");
        lines.finish();
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_millis(500), "{took:?}");
        assert_eq!(*count.lock().unwrap(), 2);
        let line = &lines.tail()[0];
        let dropped = 48 * 1024 * 1024 - MAX_LINE;
        assert_eq!(
            line.as_str(),
            format!("{}… ({dropped} bytes cut)", "x".repeat(MAX_LINE))
        );
        assert_eq!(*last.lock().unwrap(), "next");
    }

    #[test]
    fn a_secret_split_across_chunks_and_across_the_cut_is_still_redacted() {
        let secret = "TOPSECRET-0123456789";
        // Across chunks, in a short line.
        assert_eq!(
            texts(&[secret], &[b"a TOPSEC", b"RET-01234", b"56789 b\n"]),
            ["a ****** b"]
        );
        // Straddling the cut: it starts 5 bytes before the cap and arrives a byte at a time.
        let mut chunks: Vec<Vec<u8>> = vec![vec![b'.'; MAX_LINE - 5]];
        chunks.extend(secret.bytes().map(|b| vec![b]));
        chunks.push(b"tail of the line\n".to_vec());
        let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        let out = texts(&[secret], &chunks);
        assert_eq!(out.len(), 1);
        assert!(!out[0].contains("TOPSE"), "{}", &out[0][MAX_LINE - 20..]);
        assert!(
            out[0].ends_with("...******… (16 bytes cut)"),
            "{}",
            &out[0][MAX_LINE - 20..]
        );
        // Starting right at the cap, and far past it: nothing of it shows.
        for at in [MAX_LINE, MAX_LINE + 3, 3 * MAX_LINE] {
            let mut line = vec![b'.'; at];
            line.extend_from_slice(secret.as_bytes());
            line.push(b'\n');
            let out = texts(&[secret], &[&line]);
            assert!(!out[0].contains("TOP"), "secret at {at}");
        }
    }

    #[test]
    fn interleaved_stdout_and_stderr_keep_the_order_they_were_written_in() {
        use OutputStream::{Stderr, Stdout};
        let out = collect(
            &[],
            &[
                (Stdout, b"about to fail\n"),
                (Stderr, b"ls: /nonexistent: No such file"),
                (Stderr, b" or directory\n"),
                (Stdout, b"no newline yet"),
                (Stderr, b"warning\n"),
                (Stdout, b"\nafter\n"),
            ],
        );
        assert_eq!(
            out,
            [
                (Stdout, "about to fail".to_string()),
                (
                    Stderr,
                    "ls: /nonexistent: No such file or directory".to_string()
                ),
                (Stdout, "no newline yet".to_string()),
                (Stderr, "warning".to_string()),
                (Stdout, "after".to_string()),
            ]
        );
    }
}
