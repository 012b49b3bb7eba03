//! Package name and version from distribution file names (wheel, sdist and
//! egg conventions).

/// Archive suffixes of source distributions, longest first.
const SDIST_SUFFIXES: &[&str] = &[".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tbz2", ".txz", ".zip", ".tar"];

/// Reads `(name, version)` from a distribution file name:
///
/// - wheel: `{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`
/// - egg: `{name}-{version}(-{python}(-{platform})?)?.egg`
/// - sdist: `{name}-{version}.tar.gz` (and `.zip`, `.tar.bz2`, ...), where
///   the version is the part after the last `-` that starts with a digit.
///
/// Returns `None` when the name follows none of these.
pub fn parse_distribution_filename(filename: &str) -> Option<(String, String)> {
    let filename = filename.rsplit(['/', '\\']).next().unwrap_or(filename);
    let pair = |name: &str, version: &str| {
        (!name.is_empty() && !version.is_empty()).then(|| (name.to_owned(), version.to_owned()))
    };
    if let Some(stem) = filename.strip_suffix(".whl").or_else(|| filename.strip_suffix(".egg")) {
        let mut parts = stem.splitn(3, '-');
        return pair(parts.next()?, parts.next()?);
    }
    let stem = SDIST_SUFFIXES.iter().find_map(|suffix| {
        filename
            .len()
            .checked_sub(suffix.len())
            .and_then(|cut| filename[cut..].eq_ignore_ascii_case(suffix).then(|| &filename[..cut]))
    })?;
    // The version starts after the last '-' followed by a digit.
    let split = stem
        .char_indices()
        .rev()
        .find(|&(i, c)| c == '-' && stem[i + 1..].starts_with(|d: char| d.is_ascii_digit()))
        .map(|(i, _)| i)?;
    pair(&stem[..split], &stem[split + 1..])
}

#[cfg(test)]
mod tests {
    use super::parse_distribution_filename as parse;

    fn p(name: &str, version: &str) -> Option<(String, String)> {
        Some((name.to_owned(), version.to_owned()))
    }

    #[test]
    fn wheels() {
        assert_eq!(parse("requests-2.32.3-py3-none-any.whl"), p("requests", "2.32.3"));
        assert_eq!(parse("numpy-2.1.0-1-cp312-cp312-manylinux_2_17_x86_64.whl"), p("numpy", "2.1.0"));
        assert_eq!(
            parse("/tmp/dl/typing_extensions-4.12.2-py3-none-any.whl"),
            p("typing_extensions", "4.12.2")
        );
    }

    #[test]
    fn sdists_and_eggs() {
        assert_eq!(parse("discord.py-2.2.3.tar.gz"), p("discord.py", "2.2.3"));
        assert_eq!(parse("python-dateutil-2.9.0.post0.tar.gz"), p("python-dateutil", "2.9.0.post0"));
        assert_eq!(parse("foo-bar-1.0.zip"), p("foo-bar", "1.0"));
        assert_eq!(parse("Foo-1.0rc1.TAR.BZ2"), p("Foo", "1.0rc1"));
        assert_eq!(parse("pkg-0.1-py2.7.egg"), p("pkg", "0.1"));
    }

    #[test]
    fn unknown_names() {
        assert_eq!(parse("README.md"), None);
        assert_eq!(parse("noversion.tar.gz"), None);
        assert_eq!(parse("-1.0.tar.gz"), None);
        assert_eq!(parse(".whl"), None);
    }
}
