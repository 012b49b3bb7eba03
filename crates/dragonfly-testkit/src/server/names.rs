//! Distribution file names, digests and URL paths.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::rng::mix64;

/// The SHA-256 of `bytes` in lower-case hex (what package indexes list).
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// `bytes` in lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Archive suffixes of source distributions, longest first.
const SDIST_SUFFIXES: [&str; 6] = [".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".zip", ".tar"];

/// The release a distribution file belongs to: `(normalized name, version)`.
///
/// Understands wheels (`name-version[-build]-py-abi-platform.whl`), eggs
/// (`name-version-pyX.Y.egg`) and sdists (`name-version.tar.gz`, `.zip`,
/// ...). Names are normalized as in PEP 503 (`Discord.py` -> `discord-py`).
/// Returns `None` for anything else.
///
/// ```
/// use dragonfly_testkit::server::release_of;
/// assert_eq!(
///     release_of("discord.py-2.2.3.tar.gz"),
///     Some(("discord-py".to_owned(), "2.2.3".to_owned()))
/// );
/// assert_eq!(
///     release_of("discord_py-2.2.3-py3-none-any.whl"),
///     Some(("discord-py".to_owned(), "2.2.3".to_owned()))
/// );
/// assert_eq!(release_of("README.md"), None);
/// ```
pub fn release_of(filename: &str) -> Option<(String, String)> {
    let (name, version) = if let Some(stem) = filename.strip_suffix(".whl") {
        let parts: Vec<&str> = stem.split('-').collect();
        if !(5..=6).contains(&parts.len()) {
            return None;
        }
        (parts[0], parts[1])
    } else if let Some(stem) = filename.strip_suffix(".egg") {
        let mut parts = stem.split('-');
        (parts.next()?, parts.next()?)
    } else {
        let stem = SDIST_SUFFIXES.iter().find_map(|suffix| filename.strip_suffix(suffix))?;
        stem.rsplit_once('-')?
    };
    let looks_like_version = version.starts_with(|c: char| c.is_ascii_digit());
    if name.is_empty() || !looks_like_version {
        return None;
    }
    Some((normalize_name(name), version.to_owned()))
}

/// PEP 503 normalization: lower case, runs of `-`, `_`, `.` become one `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut separator = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            separator = true;
            continue;
        }
        if separator && !out.is_empty() {
            out.push('-');
        }
        separator = false;
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// A stable 40-hex-digit digest of a rule set, shaped like the git commit
/// the real server reports. Not cryptographic.
pub fn rules_hash(rules: &BTreeMap<String, String>) -> String {
    let mut parts: Vec<&[u8]> = Vec::with_capacity(rules.len() * 2);
    for (name, source) in rules {
        parts.push(name.as_bytes());
        parts.push(source.as_bytes());
    }
    digest_hex(&parts, 40)
}

/// A hex digest of `len` digits (up to 64) over length-prefixed parts.
pub(crate) fn digest_hex(parts: &[&[u8]], len: usize) -> String {
    let mut lanes =
        [0xcbf2_9ce4_8422_2325u64, 0x6c62_272e_07bb_0142, 0x9e37_79b9_7f4a_7c15, 0x2545_f491_4f6c_dd1d];
    for part in parts {
        let len_bytes = (part.len() as u64).to_le_bytes();
        for &byte in len_bytes.iter().chain(part.iter()) {
            for (i, lane) in lanes.iter_mut().enumerate() {
                *lane = (*lane ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3 + 2 * i as u64);
            }
        }
    }
    let mut hex: String = lanes.iter().map(|lane| format!("{:016x}", mix64(*lane))).collect();
    hex.truncate(len.min(64));
    hex
}

/// Percent-encodes one URL path segment (RFC 3986 unreserved bytes stay).
pub(crate) fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'+') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(name: &str, version: &str) -> Option<(String, String)> {
        Some((name.to_owned(), version.to_owned()))
    }

    #[test]
    fn file_names() {
        assert_eq!(release_of("requests-2.32.3.tar.gz"), release("requests", "2.32.3"));
        assert_eq!(release_of("python-dateutil-2.8.2.tar.gz"), release("python-dateutil", "2.8.2"));
        assert_eq!(
            release_of("Foo_Bar-1.0-1-cp312-cp312-manylinux_2_17_x86_64.whl"),
            release("foo-bar", "1.0")
        );
        assert_eq!(release_of("six-1.16.0-py2.py3-none-any.whl"), release("six", "1.16.0"));
        assert_eq!(release_of("old-0.1-py2.7.egg"), release("old", "0.1"));
        assert_eq!(release_of("pkg-1.0.zip"), release("pkg", "1.0"));
        assert_eq!(release_of("pkg-1.0.tar.bz2"), release("pkg", "1.0"));
        assert_eq!(release_of("notes.tar.gz"), None);
        assert_eq!(release_of("foo-bar.tar.gz"), None);
        assert_eq!(release_of("broken-1.0.whl"), None);
        assert_eq!(release_of("x.yar"), None);
    }

    #[test]
    fn normalization() {
        assert_eq!(normalize_name("Discord.py"), "discord-py");
        assert_eq!(normalize_name("a__b-.c"), "a-b-c");
    }

    #[test]
    fn digests_are_stable_and_distinct() {
        let mut rules = BTreeMap::new();
        let empty = rules_hash(&rules);
        assert_eq!(empty.len(), 40);
        assert!(empty.bytes().all(|b| b.is_ascii_hexdigit()));
        rules.insert("a.yar".to_owned(), "rule a { condition: true }".to_owned());
        let one = rules_hash(&rules);
        assert_ne!(one, empty);
        assert_eq!(one, rules_hash(&rules.clone()));
        // Moving bytes between name and source changes the digest.
        assert_ne!(digest_hex(&[b"ab", b"c"], 64), digest_hex(&[b"a", b"bc"], 64));
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("pkg-1.0.tar.gz"), "pkg-1.0.tar.gz");
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
    }
}
