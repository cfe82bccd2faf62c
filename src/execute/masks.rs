//! The forms of a secret that step output masks: the value as it is, and the encodings a
//! step commonly prints it in, as the GitHub Actions runner masks them: base64 (standard and
//! URL-safe, with and without padding, also inside a longer encoded text), a JSON string's
//! escapes and URI percent-encoding.

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The shortest form masked: shorter ones would mask ordinary text.
const SHORTEST: usize = 4;

/// What RFC 3986 leaves unescaped (`encodeURIComponent`, `Uri.EscapeDataString`): letters,
/// digits and `-._~`.
const URI_RESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Every form of `secret` to mask, without repeats: the value itself, and its lines and
/// encodings of at least [`SHORTEST`] bytes.
pub(crate) fn forms(secret: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |v: String, shortest: usize| {
        if v.len() >= shortest.max(1) && !out.contains(&v) {
            out.push(v);
        }
    };
    // The whole value however short, and each line of a multi-line value (a key file, say),
    // since output is split into lines.
    add(secret.to_string(), 1);
    add(secret.trim().to_string(), 1);
    for line in secret.lines().map(str::trim) {
        add(line.to_string(), SHORTEST);
    }
    for value in [secret, secret.trim()] {
        if value.len() < SHORTEST {
            continue;
        }
        for encoded in encodings(value) {
            add(encoded, SHORTEST);
        }
    }
    out
}

/// `value` as base64, JSON and URI text.
fn encodings(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = value.as_bytes();
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        // `base64` of the value alone, with and without padding.
        let plain = engine.encode(bytes);
        let padding = "=".repeat((4 - plain.len() % 4) % 4);
        out.push(format!("{plain}{padding}"));
        out.push(plain);
        // The value inside a longer text that is encoded (`echo "$TOKEN" | base64`, a
        // `user:password` header): 3 bytes make 4 characters, so the value starts at one of
        // three offsets in a group; the characters made of its bytes alone are the same
        // whatever surrounds it.
        for offset in 0..3 {
            out.push(inner_base64(engine, bytes, offset));
        }
    }
    // Inside a JSON string (`jq`, a JSON log line).
    let json = serde_json::to_string(value).unwrap_or_default();
    if let Some(inner) = json.strip_prefix('"').and_then(|j| j.strip_suffix('"')) {
        out.push(inner.to_string());
    }
    // Percent-encoded (a URL's query or credentials), in both cases of hex digit.
    let uri = utf8_percent_encode(value, URI_RESERVED).to_string();
    out.push(lower_hex_escapes(&uri));
    out.push(uri);
    out
}

/// The base64 characters that only `bytes` determine when they follow `offset` (0-2) other
/// bytes of the same 3-byte group.
fn inner_base64(engine: &base64::engine::GeneralPurpose, bytes: &[u8], offset: usize) -> String {
    let mut framed = vec![0u8; offset];
    framed.extend_from_slice(bytes);
    // Room for the characters that take bits from what follows: they are left out.
    framed.extend_from_slice(&[0, 0]);
    let encoded = engine.encode(&framed);
    let (first_bit, end_bit) = (offset * 8, (offset + bytes.len()) * 8);
    // Character k holds bits 6k..6k+6.
    let first = first_bit.div_ceil(6);
    let end = end_bit / 6;
    encoded
        .get(first..end.max(first))
        .unwrap_or_default()
        .to_string()
}

/// `%2f` for `%2F`: some encoders write lower-case hex digits.
fn lower_hex_escapes(uri: &str) -> String {
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3).unwrap_or(&rest[at..]);
        out.push_str(&escape.to_ascii_lowercase());
        rest = &rest[at + escape.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` as a step's output line shows it, with `secret` given to the step.
    fn masked(secret: &str, text: &str) -> String {
        let seen = std::sync::Mutex::new(Vec::new());
        let sink = |e: crate::execute::events::Event| {
            if let crate::execute::events::Event::StepOutput { line, .. } = e {
                seen.lock().unwrap().push(line);
            }
        };
        let mut lines = super::super::output::Lines::new(1, &[secret], &sink);
        lines.push(crate::engine::OutputStream::Stdout, text.as_bytes());
        lines.finish();
        seen.into_inner().unwrap().join("\n")
    }

    #[test]
    fn base64_json_and_uri_forms_of_a_secret_are_masked() {
        let secret = "p@ss/w+rd \"quoted\"\tz~1";
        let std_pad = base64::engine::general_purpose::STANDARD.encode(secret);
        let std = STANDARD_NO_PAD.encode(secret);
        let url = URL_SAFE_NO_PAD.encode(secret);
        let url_pad = base64::engine::general_purpose::URL_SAFE.encode(secret);
        let json = serde_json::to_string(secret).unwrap();
        let uri = utf8_percent_encode(secret, URI_RESERVED).to_string();
        assert!(
            std.contains('+') || std.contains('/'),
            "{std}: a case where url-safe differs"
        );
        for (what, printed) in [
            ("base64", format!("token: {std_pad}")),
            ("base64, no padding", format!("token: {std}.")),
            ("url-safe", format!("token={url}&x")),
            ("url-safe, padding", format!("token={url_pad}&x")),
            ("json", format!("{{\"token\":{json}}}")),
            ("uri", format!("https://h/?t={uri}&x=1")),
            (
                "uri, lower-case hex",
                format!("https://h/?t={}&x=1", lower_hex_escapes(&uri)),
            ),
        ] {
            let out = masked(secret, &printed);
            assert!(out.contains("******"), "{what}: {out}");
            for piece in ["ss/w", "quoted", &std[..8], &url[..8], "%22quoted%22"] {
                assert!(!out.contains(piece), "{what}: `{piece}` shows in {out}");
            }
        }
    }

    #[test]
    fn a_secret_inside_a_longer_encoded_text_is_masked_at_every_offset() {
        let secret = "s3cr3t-t0ken-value";
        for prefix in ["", "a", "ab", "user:", "Authorization: Basic "] {
            for suffix in ["", "\n", ":x", "tail"] {
                let whole = format!("{prefix}{secret}{suffix}");
                for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                    let printed = engine.encode(&whole);
                    let out = masked(secret, &printed);
                    // What stays are the characters of the text around the secret, and at
                    // most two on each side that mix its bits with their neighbours'.
                    let shown = out.chars().filter(|c| *c != '*').count();
                    let around = engine.encode(prefix).len() + engine.encode(suffix).len();
                    assert!(out.contains("******"), "`{whole}`: {out}");
                    assert!(shown <= around + 4, "`{whole}`: {printed} -> {out}");
                }
            }
        }
    }

    #[test]
    fn short_values_and_forms_equal_to_the_value_are_not_repeated() {
        assert_eq!(
            forms("abc"),
            ["abc"],
            "a short value is masked, not its encodings"
        );
        let f = forms("plainvalue");
        assert_eq!(f.iter().filter(|v| *v == "plainvalue").count(), 1, "{f:?}");
        assert!(f.iter().all(|v| v.len() >= SHORTEST), "{f:?}");
    }
}
