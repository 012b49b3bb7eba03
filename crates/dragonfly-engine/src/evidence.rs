//! Where a rule matched inside a file: pattern, offset, line and column, and
//! a short excerpt that is safe to print.

use std::fmt::Write;

/// Evidence kept per matched rule at most; [`crate::RuleMatch::match_count`]
/// counts them all.
pub const MAX_EVIDENCE: usize = 8;

/// Bytes of context shown on each side of a match, within its line.
const CONTEXT_BYTES: usize = 40;

/// Bytes of the match itself shown at most.
const MATCH_BYTES: usize = 80;

/// One place where one of a rule's patterns matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The pattern identifier (`$a`).
    pub pattern: String,
    /// Byte offset of the match in the file (past line breaks it starts
    /// with).
    pub offset: u64,
    /// Length of the match in bytes.
    pub length: u64,
    /// Line of the first byte, from 1 (lines end at `\n`).
    pub line: u64,
    /// Column of the first byte, from 1, in characters: UTF-8 sequences
    /// count once, other bytes once each.
    pub column: u64,
    /// The matched bytes (at most 80 of them), escaped as in
    /// [`escape_bytes`].
    pub matched: String,
    /// The match with up to 40 bytes of context either side, cut at line
    /// ends, escaped as in [`escape_bytes`].
    pub excerpt: String,
}

impl Evidence {
    /// The evidence of the match of `pattern` at `range` of `data`.
    pub fn new(pattern: &str, data: &[u8], range: std::ops::Range<usize>) -> Evidence {
        let mut start = range.start.min(data.len());
        let end = range.end.clamp(start, data.len());
        // A pattern anchored on a line break (`\nos.system(`) points at
        // what follows it.
        while start + 1 < end && matches!(data[start], b'\n' | b'\r') {
            start += 1;
        }
        let before = &data[..start];
        let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let line = before.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        let column = data[line_start..start].iter().filter(|&&b| !is_continuation(b)).count() as u64 + 1;
        let shown_end = end.min(start + MATCH_BYTES);
        let cut = shown_end < end;
        let context_start = start.saturating_sub(CONTEXT_BYTES).max(line_start);
        let mut matched = escape_bytes(&data[start..shown_end]);
        if cut {
            matched.push_str("...");
        }
        let mut excerpt = escape_bytes(&data[context_start..start]);
        excerpt.push_str(&matched);
        if !cut {
            let line_end = data[end..].iter().position(|&b| b == b'\n').map_or(data.len(), |i| end + i);
            excerpt.push_str(&escape_bytes(&data[end..(end + CONTEXT_BYTES).min(line_end)]));
        }
        Evidence {
            pattern: pattern.to_owned(),
            offset: start as u64,
            length: (end - start) as u64,
            line,
            column,
            matched,
            excerpt,
        }
    }
}

fn is_continuation(byte: u8) -> bool {
    byte & 0xC0 == 0x80
}

/// `bytes` as text that cannot act on a terminal or a log: printable ASCII
/// as it is, `\` as `\\`, tab, newline and carriage return as `\t`, `\n`,
/// `\r`, every other byte (control characters, and all non-ASCII bytes, so
/// no bidirectional override or escape sequence survives) as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        match byte {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b' '..=b'~' => out.push(byte as char),
            _ => {
                let _ = write!(out, "\\x{byte:02x}");
            }
        }
    }
    out
}

/// The evidence of `rule`'s matches in `data`: the first
/// [`MAX_EVIDENCE`] by offset over its non-private patterns, and how many
/// matches there were in all.
pub(crate) fn collect(rule: &yara_x::Rule<'_, '_>, data: &[u8]) -> (Vec<Evidence>, u64) {
    let mut found: Vec<(&str, std::ops::Range<usize>)> = Vec::new();
    let mut count = 0u64;
    for pattern in rule.patterns().filter(|p| !p.is_private()) {
        for m in pattern.matches() {
            count += 1;
            found.push((pattern.identifier(), m.range()));
        }
    }
    found.sort_by_key(|(_, range)| (range.start, range.end));
    found.truncate(MAX_EVIDENCE);
    let evidence = found.into_iter().map(|(pattern, range)| Evidence::new(pattern, data, range)).collect();
    (evidence, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_columns_and_excerpts() {
        let data = b"import os\n\xc3\xa9t\xc3\xa9 = 1; os.system('id')\nprint()\n";
        let start = data.windows(9).position(|w| w == b"os.system").unwrap();
        let e = Evidence::new("$a", data, start..start + 9);
        assert_eq!((e.line, e.column, e.offset, e.length), (2, 10, start as u64, 9));
        assert_eq!(e.matched, "os.system");
        // Context stays on the match's line; non-ASCII bytes are escaped.
        assert_eq!(e.excerpt, "\\xc3\\xa9t\\xc3\\xa9 = 1; os.system('id')");
        let newline = data.windows(6).position(|w| w == b"\nprint").unwrap();
        let anchored = Evidence::new("$c", data, newline..newline + 6);
        assert_eq!((anchored.line, anchored.column, anchored.matched.as_str()), (3, 1, "print"));
        assert_eq!((anchored.offset, anchored.length), (newline as u64 + 1, 5));
        let first = Evidence::new("$b", data, 0..6);
        assert_eq!((first.line, first.column, first.excerpt.as_str()), (1, 1, "import os"));
    }

    #[test]
    fn hostile_bytes_are_escaped_and_bounded() {
        let mut data = b"x = '\x1b[2J\x1b]0;owned\x07' \\ \xe2\x80\xae".to_vec();
        data.extend(std::iter::repeat_n(b'A', 10_000));
        let e = Evidence::new("$a", &data, 0..data.len());
        assert!(e.excerpt.chars().all(|c| c.is_ascii_graphic() || c == ' '), "{}", e.excerpt);
        assert!(e.excerpt.starts_with("x = '\\x1b[2J\\x1b]0;owned\\x07' \\\\ \\xe2\\x80\\xae"));
        assert!(e.matched.ends_with("...") && e.excerpt.len() < 400, "{}", e.excerpt.len());
        assert_eq!(e.length, data.len() as u64);
        // A range past the end (cannot come from yara-x) is clamped.
        let past = Evidence::new("$a", b"abc", 2..10);
        assert_eq!((past.offset, past.length, past.matched.as_str()), (2, 1, "c"));
    }
}
