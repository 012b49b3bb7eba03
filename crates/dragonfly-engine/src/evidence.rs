//! Where a rule matched inside a file: pattern, offset, line and column, and
//! a short excerpt that is safe to print.

use std::fmt::Write;
use std::ops::Range;

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
    /// Line of the first byte, from 1 (lines end at `\n`, `\r\n` or a
    /// lone `\r`).
    pub line: u64,
    /// Column of the first byte, from 1, in characters: UTF-8 sequences
    /// count once, other bytes once each.
    pub column: u64,
    /// Line of the byte after the match.
    pub end_line: u64,
    /// Column of the byte after the match.
    pub end_column: u64,
    /// The matched bytes (at most 80 of them), escaped as in
    /// [`escape_bytes`].
    pub matched: String,
    /// The match with up to 40 bytes of context either side, cut at line
    /// ends, escaped as in [`escape_bytes`].
    pub excerpt: String,
}

impl Evidence {
    /// The evidence of the match of `pattern` at `range` of `data`.
    pub fn new(pattern: &str, data: &[u8], range: Range<usize>) -> Evidence {
        Evidence::at(pattern, data, range, &mut Cursor::default())
    }

    /// As [`Evidence::new`], counting lines from where `cursor` is (which
    /// must be at or before the match); leaves `cursor` at the match.
    fn at(pattern: &str, data: &[u8], range: Range<usize>, cursor: &mut Cursor) -> Evidence {
        let mut start = range.start.min(data.len());
        let end = range.end.clamp(start, data.len());
        // A pattern anchored on a line break (`\nos.system(`) points at
        // what follows it.
        while start + 1 < end && matches!(data[start], b'\n' | b'\r') {
            start += 1;
        }
        if start < cursor.offset {
            *cursor = Cursor::default();
        }
        cursor.advance(data, start);
        let (line, column, line_start) = (cursor.line, cursor.column, cursor.line_start);
        let mut past = cursor.clone();
        past.advance(data, end);
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
            let after = &data[end..(end + CONTEXT_BYTES).min(data.len())];
            let line_end = after.iter().position(|&b| matches!(b, b'\n' | b'\r')).unwrap_or(after.len());
            excerpt.push_str(&escape_bytes(&after[..line_end]));
        }
        Evidence {
            pattern: pattern.to_owned(),
            offset: start as u64,
            length: (end - start) as u64,
            line,
            column,
            end_line: past.line,
            end_column: past.column,
            matched,
            excerpt,
        }
    }
}

/// A position in a file as line and column, moved forward only, so that
/// the evidence of a whole file costs one pass over it.
#[derive(Debug, Clone)]
struct Cursor {
    offset: usize,
    line: u64,
    column: u64,
    line_start: usize,
}

impl Default for Cursor {
    fn default() -> Self {
        Cursor { offset: 0, line: 1, column: 1, line_start: 0 }
    }
}

impl Cursor {
    /// Moves to byte `to`. Lines end at `\n`, `\r\n` or a lone `\r`
    /// (as Python reads source); columns count UTF-8 sequences once.
    fn advance(&mut self, data: &[u8], to: usize) {
        let to = to.min(data.len());
        for i in self.offset..to {
            let byte = data[i];
            let breaks = byte == b'\n' || (byte == b'\r' && data.get(i + 1) != Some(&b'\n'));
            if breaks {
                self.line += 1;
                self.column = 1;
                self.line_start = i + 1;
            } else if !is_continuation(byte) && byte != b'\r' {
                self.column += 1;
            }
        }
        self.offset = self.offset.max(to);
    }
}

/// Patterns that matched for one rule: (pattern identifier, range), the
/// first [`MAX_EVIDENCE`] of each pattern, and the count of all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Ranges {
    found: Vec<(String, Range<usize>)>,
    count: u64,
}

impl Ranges {
    /// The ranges of `rule`'s non-private patterns.
    pub(crate) fn of(rule: &yara_x::Rule<'_, '_>) -> Ranges {
        let mut ranges = Ranges::default();
        for pattern in rule.patterns().filter(|p| !p.is_private()) {
            let matches = pattern.matches();
            ranges.count += matches.len() as u64;
            let identifier = pattern.identifier();
            ranges.found.extend(matches.take(MAX_EVIDENCE).map(|m| (identifier.to_owned(), m.range())));
        }
        ranges.found.sort_by_key(|(_, range)| (range.start, range.end));
        ranges.found.truncate(MAX_EVIDENCE);
        ranges
    }

    /// How many matches there were in all.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Ranges read back from a store.
    pub(crate) fn from_parts(found: Vec<(String, Range<usize>)>, count: u64) -> Ranges {
        Ranges { found, count }
    }

    /// The (pattern, range) pairs kept.
    pub(crate) fn found(&self) -> &[(String, Range<usize>)] {
        &self.found
    }

    /// About how many bytes it holds.
    pub(crate) fn weight(&self) -> usize {
        self.found.iter().map(|(p, _)| 40 + p.len()).sum()
    }
}

/// The evidence of each rule's ranges in `data`, in one pass over it.
pub(crate) fn locate(data: &[u8], rules: Vec<Ranges>) -> Vec<Vec<Evidence>> {
    let count = rules.len();
    let mut all: Vec<(usize, usize, String, Range<usize>)> = rules
        .into_iter()
        .enumerate()
        .flat_map(|(rule, ranges)| ranges.found.into_iter().map(move |(p, r)| (rule, r.start, p, r)))
        .map(|(rule, start, pattern, range)| (start, rule, pattern, range))
        .collect();
    all.sort_by_key(|&(start, rule, ..)| (start, rule));
    let mut out: Vec<Vec<Evidence>> = (0..count).map(|_| Vec::new()).collect();
    let mut cursor = Cursor::default();
    for (_, rule, pattern, range) in all {
        out[rule].push(Evidence::at(&pattern, data, range, &mut cursor));
    }
    out
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
    fn lone_carriage_returns_end_lines_and_ends_are_located() {
        // Python reads `\r` alone as a line end: the match is on line 3.
        let data = b"a = 1\rb = 2\r\nos.system('x')\n";
        let start = data.windows(9).position(|w| w == b"os.system").unwrap();
        let e = Evidence::new("$a", data, start..start + 14);
        assert_eq!((e.line, e.column, e.end_line, e.end_column), (3, 1, 3, 15));
        assert_eq!(e.excerpt, "os.system('x')");
        let multi = Evidence::new("$b", data, 2..start + 2);
        assert_eq!((multi.line, multi.column, multi.end_line, multi.end_column), (1, 3, 3, 3));
        // One pass over many matches gives what one match at a time gives.
        let text: Vec<u8> = (0..50).flat_map(|i| format!("line {i} \u{e9}x\r\n").into_bytes()).collect();
        let xs: Vec<Range<usize>> =
            text.iter().enumerate().filter(|&(_, &b)| b == b'x').map(|(i, _)| i..i + 1).collect();
        let rules = vec![
            Ranges { found: xs.iter().step_by(2).map(|r| ("$x".to_owned(), r.clone())).collect(), count: 25 },
            Ranges::default(),
            Ranges {
                found: xs.iter().skip(1).step_by(2).map(|r| ("$y".to_owned(), r.clone())).collect(),
                count: 25,
            },
        ];
        let located = locate(&text, rules);
        assert_eq!(located.len(), 3);
        assert!(located[1].is_empty());
        for (i, range) in xs.iter().enumerate() {
            let one = Evidence::new(if i % 2 == 0 { "$x" } else { "$y" }, &text, range.clone());
            assert_eq!(located[if i % 2 == 0 { 0 } else { 2 }][i / 2], one);
            assert_eq!((one.line, one.column), (i as u64 + 1, if i < 10 { 9 } else { 10 }));
        }
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
