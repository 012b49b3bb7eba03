//! Archive entry names as readable strings.

use std::fmt::Write;

/// Cuts a name at its first NUL, as CPython's `tarfile` and `zipfile` do.
pub(crate) fn nts(field: &[u8]) -> &[u8] {
    field.iter().position(|&b| b == 0).map_or(field, |end| &field[..end])
}

/// Turns stored name bytes into a string: valid UTF-8 is kept as is, each
/// byte of invalid UTF-8 becomes `\xNN`.
pub(crate) fn readable(bytes: &[u8]) -> String {
    if let Ok(name) = std::str::from_utf8(bytes) {
        return name.to_owned();
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for byte in chunk.invalid() {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::readable;

    #[test]
    fn escapes_only_invalid_bytes() {
        assert_eq!(readable(b"pkg/caf\xc3\xa9.py"), "pkg/café.py");
        assert_eq!(readable(b"pkg/\xff\xfe.py"), "pkg/\\xff\\xfe.py");
        assert_eq!(readable(b"a\xc3"), "a\\xc3");
        assert_eq!(readable(b"/abs/../x"), "/abs/../x");
    }
}
