//! Format detection from magic bytes.

use crate::{Error, Format};

/// Detects the archive format from the first bytes, never from a file name.
///
/// Zip is recognised by a local file header (`PK\x03\x04`) or an empty
/// archive's end record (`PK\x05\x06`) at offset 0; plain tar by `ustar` at
/// offset 257, or an old (v7) header whose checksum verifies; a zip after
/// other bytes by its end record. A compressed stream is assumed to hold a
/// tar; that is checked while reading it.
///
/// ```
/// use dragonfly_flatten::{detect_format, Format};
/// assert_eq!(detect_format(b"\x1f\x8b\x08\x00").unwrap(), Format::TarGz);
/// assert!(detect_format(b"\x89PNG\r\n\x1a\n").is_err());
/// ```
pub fn detect_format(bytes: &[u8]) -> Result<Format, Error> {
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return Ok(Format::Zip);
    }
    if bytes.starts_with(b"\x1f\x8b") {
        return Ok(Format::TarGz);
    }
    if bytes.len() >= 4 && bytes.starts_with(b"BZh") && (b'1'..=b'9').contains(&bytes[3]) {
        return Ok(Format::TarBz2);
    }
    if bytes.starts_with(b"\xfd7zXZ\x00") {
        return Ok(Format::TarXz);
    }
    if bytes.get(257..262) == Some(b"ustar".as_slice()) || is_v7_tar_header(bytes) {
        return Ok(Format::Tar);
    }
    // A zip after other data (a self-extractor stub), as CPython's
    // `zipfile` finds it: by its end record.
    if crate::zipfile::end_record(bytes).is_some() {
        return Ok(Format::Zip);
    }
    Err(Error::UnsupportedFormat { seen: describe(bytes) })
}

/// Whether `bytes` starts with a pre-POSIX tar header whose checksum verifies.
fn is_v7_tar_header(bytes: &[u8]) -> bool {
    let Some(header) = bytes.get(..512) else {
        return false;
    };
    // An empty name means no entry (all-zero blocks end an archive).
    if header[0] == 0 {
        return false;
    }
    let field = &header[148..156];
    let digits: Vec<u8> =
        field.iter().copied().skip_while(|b| *b == b' ').take_while(|b| (b'0'..=b'7').contains(b)).collect();
    if digits.is_empty() {
        return false;
    }
    let Some(stored) =
        digits.iter().try_fold(0u32, |acc, d| acc.checked_mul(8)?.checked_add(u32::from(d - b'0')))
    else {
        return false;
    };
    let sum: u32 = header
        .iter()
        .enumerate()
        .map(|(i, b)| if (148..156).contains(&i) { u32::from(b' ') } else { u32::from(*b) })
        .sum();
    sum == stored
}

/// Names what unsupported bytes look like.
fn describe(bytes: &[u8]) -> String {
    const KNOWN: &[(&[u8], &str)] = &[
        (b"\x89PNG", "PNG image"),
        (b"GIF8", "GIF image"),
        (b"\xff\xd8\xff", "JPEG image"),
        (b"%PDF", "PDF document"),
        (b"\x7fELF", "ELF executable"),
        (b"MZ", "Windows executable"),
        (b"\x28\xb5\x2f\xfd", "zstd-compressed data"),
        (b"7z\xbc\xaf\x27\x1c", "7z archive"),
        (b"Rar!", "RAR archive"),
        (b"\x1f\x9d", "Unix compress data"),
        (b"PK\x07\x08", "spanned zip archive"),
    ];
    if bytes.is_empty() {
        return "empty input".to_owned();
    }
    if let Some((_, name)) = KNOWN.iter().find(|(magic, _)| bytes.starts_with(magic)) {
        return (*name).to_owned();
    }
    let head = &bytes[..bytes.len().min(16)];
    if head.iter().all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()) {
        // Often an HTML error page or a text file served instead of an archive.
        return format!("text starting with {:?}", String::from_utf8_lossy(head));
    }
    let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
    format!("unknown data starting with {}", hex.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(bytes: &[u8]) -> String {
        match detect_format(bytes) {
            Err(Error::UnsupportedFormat { seen }) => seen,
            other => panic!("expected unsupported format, got {other:?}"),
        }
    }

    #[test]
    fn magic_bytes() {
        assert_eq!(detect_format(b"PK\x03\x04rest").unwrap(), Format::Zip);
        assert_eq!(detect_format(b"PK\x05\x06").unwrap(), Format::Zip);
        assert_eq!(detect_format(b"\x1f\x8b\x08").unwrap(), Format::TarGz);
        assert_eq!(detect_format(b"BZh91AY&SY").unwrap(), Format::TarBz2);
        assert_eq!(detect_format(b"\xfd7zXZ\x00\x00").unwrap(), Format::TarXz);
        let mut ustar = vec![0u8; 512];
        ustar[257..263].copy_from_slice(b"ustar\0");
        assert_eq!(detect_format(&ustar).unwrap(), Format::Tar);
    }

    #[test]
    fn v7_tar_needs_a_valid_checksum() {
        let mut header = vec![0u8; 1024];
        header[..5].copy_from_slice(b"a.txt");
        header[100..107].copy_from_slice(b"000644\0");
        let sum: u32 = header[..512].iter().map(|b| u32::from(*b)).sum::<u32>() + 8 * 32;
        let field = format!("{sum:06o}\0 ");
        header[148..156].copy_from_slice(field.as_bytes());
        assert_eq!(detect_format(&header).unwrap(), Format::Tar);
        header[0] = b'b';
        assert!(detect_format(&header).is_err());
    }

    #[test]
    fn unsupported_names_what_was_seen() {
        assert_eq!(seen(b""), "empty input");
        assert_eq!(seen(b"\x89PNG\r\n\x1a\n...."), "PNG image");
        assert_eq!(seen(b"BZh"), "text starting with \"BZh\"");
        assert_eq!(seen(b"<!DOCTYPE html><html>"), "text starting with \"<!DOCTYPE html><\"");
        assert_eq!(seen(&[0x00, 0x01, 0xfe]), "unknown data starting with 00 01 fe");
    }
}
