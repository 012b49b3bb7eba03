//! The error type.

use std::fmt;

use crate::Format;

/// Why an archive could not be flattened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Occurs when the bytes are not one of the supported archive formats.
    /// `seen` names what was found: "empty input", "PNG image", or the
    /// first bytes in hex.
    #[error("unsupported format: {seen}")]
    UnsupportedFormat {
        /// What the bytes look like.
        seen: String,
    },

    /// Occurs as soon as one of the [`Limits`](crate::Limits) is crossed.
    #[error("{kind} limit of {limit} exceeded{}", at(.path))]
    LimitExceeded {
        /// Which limit.
        kind: LimitKind,
        /// The configured value of that limit.
        limit: u64,
        /// The entry being read, skipped or counted when the limit was
        /// crossed; `None` before the first entry.
        path: Option<String>,
    },

    /// Occurs when a file entry is encrypted.
    #[error("encrypted entry `{path}` in {format} archive")]
    Encrypted {
        /// The archive format.
        format: Format,
        /// The encrypted entry.
        path: String,
    },

    /// Occurs when the archive is well formed but uses something this crate
    /// does not read, such as a zip compression method other than stored and
    /// deflate, or an xz dictionary above the memory limit.
    #[error("unsupported {format} feature{}: {message}", at(.path))]
    UnsupportedFeature {
        /// The archive format.
        format: Format,
        /// The entry concerned, if any.
        path: Option<String>,
        /// What is not supported.
        message: String,
    },

    /// Occurs when the archive is corrupt, truncated, or built to show
    /// different content to different readers (overlapping zip entries,
    /// local headers missing from the central directory).
    #[error("corrupt {format} archive{}: {message}", at(.path))]
    Corrupt {
        /// The archive format.
        format: Format,
        /// The entry being read or last reached, if any.
        path: Option<String>,
        /// What is wrong.
        message: String,
    },
}

/// Which limit was crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitKind {
    /// [`Limits::max_total_bytes`](crate::Limits::max_total_bytes).
    TotalBytes,
    /// [`Limits::max_file_bytes`](crate::Limits::max_file_bytes).
    FileBytes,
    /// [`Limits::max_entries`](crate::Limits::max_entries).
    Entries,
    /// [`Limits::max_ratio`](crate::Limits::max_ratio).
    Ratio,
    /// [`Limits::max_header_bytes`](crate::Limits::max_header_bytes).
    HeaderBytes,
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitKind::TotalBytes => "total size",
            LimitKind::FileBytes => "file size",
            LimitKind::Entries => "entry count",
            LimitKind::Ratio => "expansion ratio",
            LimitKind::HeaderBytes => "extension header size",
        })
    }
}

fn at(path: &Option<String>) -> String {
    match path {
        Some(path) => format!(" at `{path}`"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let err = Error::LimitExceeded { kind: LimitKind::FileBytes, limit: 10, path: Some("a/b.py".into()) };
        assert_eq!(err.to_string(), "file size limit of 10 exceeded at `a/b.py`");
        let err =
            Error::Corrupt { format: Format::TarGz, path: None, message: "unexpected end of file".into() };
        assert_eq!(err.to_string(), "corrupt tar.gz archive: unexpected end of file");
        let err = Error::UnsupportedFormat { seen: "PNG image".into() };
        assert_eq!(err.to_string(), "unsupported format: PNG image");
    }
}
