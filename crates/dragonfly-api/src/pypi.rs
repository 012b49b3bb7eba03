//! Release look-ups through a package index's simple repository API, as pip
//! and uv use it (`scan pypi:NAME==VERSION`): PEP 691 JSON, or PEP 503 HTML
//! where the index serves only that. Works with PyPI, mirrors and proxies.
//!
//! ```no_run
//! use dragonfly_api::{Auth, Client, ClientConfig, pypi};
//!
//! let client = Client::new(ClientConfig::new("http://127.0.0.1:8000", Auth::None))?;
//! let (name, version) = pypi::parse_spec("requests==2.32.3")?;
//! let release = pypi::resolve(&client, pypi::DEFAULT_INDEX, &name, version.as_deref())?;
//! for file in &release.files {
//!     let _bytes = pypi::download(&client, file, 128_000_000)?; // checked against its sha256
//! }
//! # Ok::<(), dragonfly_api::Error>(())
//! ```

use std::str::FromStr;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::client::{Client, check_http_url};
use crate::error::{Error, ErrorKind};

/// PyPI's simple index.
pub const DEFAULT_INDEX: &str = "https://pypi.org/simple";

/// What a project page is asked for: PEP 691 JSON first, HTML as fallback.
pub(crate) const ACCEPT: &str =
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";

/// One release and its distribution files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// Project name as the index spells it.
    pub name: String,
    /// Release version (the latest final release when none was asked for).
    pub version: String,
    /// Its distribution files; may be empty (a release without files).
    pub files: Vec<ReleaseFile>,
}

/// One distribution file of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFile {
    /// File name, e.g. `requests-2.32.3-py3-none-any.whl`.
    pub filename: String,
    /// Absolute download URL.
    pub url: String,
    /// The index's SHA-256 of the file (lower-case hex), when it gave one.
    pub sha256: Option<String>,
}

/// A file as a project page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    file: ReleaseFile,
    yanked: bool,
}

/// Splits `NAME==VERSION` or `NAME` (the `pypi:` prefix is optional) and
/// checks both parts.
pub fn parse_spec(spec: &str) -> Result<(String, Option<String>), Error> {
    let spec = spec.trim();
    let spec = spec.strip_prefix("pypi:").unwrap_or(spec);
    let (name, version) = match spec.split_once("==") {
        Some((name, version)) => (name.trim(), Some(version.trim())),
        None => (spec, None),
    };
    check_name(name)?;
    if let Some(version) = version {
        check_version(version)?;
    }
    Ok((name.to_owned(), version.map(str::to_owned)))
}

/// Looks a release up on the index at `index_url` (its simple API root,
/// e.g. `https://pypi.org/simple`): `GET {index_url}/{normalized name}/`.
/// Without a version, the latest final release (a pre-release only when
/// there is nothing else); yanked files count only for a version asked
/// for by name (PEP 592). No credentials are sent; a missing project or
/// version is [`ErrorKind::NotFound`].
pub fn resolve(
    client: &Client,
    index_url: &str,
    name: &str,
    version: Option<&str>,
) -> Result<Release, Error> {
    check_name(name)?;
    if let Some(version) = version {
        check_version(version)?;
    }
    let index = index_url.trim_end_matches('/');
    check_http_url(index)?;
    let page_url = format!("{index}/{}/", normalize(name));
    let (content_type, body) = client.get_index_page(&page_url, ACCEPT)?;
    let (project, listed) = if content_type.contains("json") {
        parse_json(&page_url, &body)?
    } else {
        (name.to_owned(), parse_html(&page_url, &String::from_utf8_lossy(&body)))
    };
    let versioned: Vec<(String, Listed)> = listed
        .into_iter()
        .filter_map(|listed| Some((version_of(&listed.file.filename, name)?, listed)))
        .collect();
    let chosen = match version {
        Some(wanted) => versioned.iter().find(|(v, _)| same_version(v, wanted)).map(|(v, _)| v.clone()),
        None => latest(versioned.iter().filter(|(_, l)| !l.yanked).map(|(v, _)| v.as_str())),
    };
    let Some(chosen) = chosen else {
        let what = version.map_or_else(|| format!("{name}: no release"), |v| format!("{name}=={v}"));
        return Err(Error::new(ErrorKind::NotFound, format!("{what} not found on {index}")));
    };
    // Every file of that version, however its name spells it (`1.0.post1`,
    // `1.0-1`, `1.0RC1`, ...).
    let files = versioned
        .into_iter()
        .filter(|(v, listed)| same_version(v, &chosen) && (version.is_some() || !listed.yanked))
        .map(|(_, listed)| listed.file)
        .collect();
    Ok(Release { name: project, version: chosen, files })
}

/// Equal as PEP 440 versions, or as text where either does not parse.
fn same_version(a: &str, b: &str) -> bool {
    match (pep440_rs::Version::from_str(a), pep440_rs::Version::from_str(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Downloads `file` into memory (see [`Client::download`]) and checks it
/// against the index's SHA-256; a mismatch is [`ErrorKind::Malformed`].
pub fn download(client: &Client, file: &ReleaseFile, max_bytes: u64) -> Result<Vec<u8>, Error> {
    let bytes = client.download(&file.url, max_bytes)?;
    if let Some(expected) = &file.sha256 {
        let actual = hex(&Sha256::digest(&bytes));
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(Error::new(
                ErrorKind::Malformed,
                format!("{}: sha256 {actual} does not match the index's {expected}", file.url),
            ));
        }
    }
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// PEP 503 normalisation: lower case, runs of `-`, `_`, `.` become one `-`.
fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for part in name.split(['-', '_', '.']).filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push('-');
        }
        out.push_str(&part.to_ascii_lowercase());
    }
    out
}

/// The version in a distribution file name of project `name`: wheels and
/// eggs `{name}-{version}-...`, sdists `{name}-{version}.tar.gz` (the name
/// compared normalised). `None` for other files.
fn version_of(filename: &str, name: &str) -> Option<String> {
    const SDISTS: [&str; 6] = [".tar.gz", ".zip", ".tar.bz2", ".tar.xz", ".tgz", ".tar"];
    let wanted = normalize(name);
    let lower = filename.to_ascii_lowercase();
    if let Some(stem) = filename.strip_suffix(".whl").or_else(|| filename.strip_suffix(".egg")) {
        let mut parts = stem.split('-');
        let (project, version) = (parts.next()?, parts.next()?);
        return (normalize(project) == wanted && !version.is_empty()).then(|| version.to_owned());
    }
    let suffix = SDISTS.iter().find(|s| lower.ends_with(*s))?;
    let stem = &filename[..filename.len() - suffix.len()];
    stem.match_indices('-')
        .map(|(i, _)| i)
        .find(|&i| normalize(&stem[..i]) == wanted)
        .map(|i| stem[i + 1..].to_owned())
        .filter(|v| !v.is_empty())
}

/// The highest final version, or the highest of all when there are only
/// pre-releases; versions that do not parse are passed over.
fn latest<'a>(versions: impl Iterator<Item = &'a str>) -> Option<String> {
    let parsed: Vec<(pep440_rs::Version, &str)> =
        versions.filter_map(|v| Some((pep440_rs::Version::from_str(v).ok()?, v))).collect();
    let finals = parsed.iter().filter(|(v, _)| !v.any_prerelease());
    finals
        .max_by(|a, b| a.0.cmp(&b.0))
        .or_else(|| parsed.iter().max_by(|a, b| a.0.cmp(&b.0)))
        .map(|(_, v)| (*v).to_owned())
}

#[derive(Deserialize)]
struct JsonPage {
    name: String,
    #[serde(default)]
    files: Vec<JsonFile>,
}

#[derive(Deserialize)]
struct JsonFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: std::collections::BTreeMap<String, String>,
    /// `false`, `true` or a reason.
    #[serde(default)]
    yanked: serde_json::Value,
}

/// A PEP 691 JSON project page.
fn parse_json(page_url: &str, body: &[u8]) -> Result<(String, Vec<Listed>), Error> {
    let page: JsonPage = serde_json::from_slice(body).map_err(|err| {
        Error::new(ErrorKind::Malformed, format!("GET {page_url}: malformed project page: {err}"))
            .with_source(err)
    })?;
    let files = page
        .files
        .into_iter()
        .filter_map(|file| {
            let url = absolute(page_url, &file.url)?;
            let yanked = !matches!(file.yanked, serde_json::Value::Bool(false) | serde_json::Value::Null);
            let sha256 = file.hashes.get("sha256").cloned();
            Some(Listed { file: ReleaseFile { filename: file.filename, url, sha256 }, yanked })
        })
        .collect();
    Ok((page.name, files))
}

/// A PEP 503 HTML project page: one `<a href="URL#sha256=HEX">file</a>`
/// per file, `data-yanked` on yanked ones.
fn parse_html(page_url: &str, html: &str) -> Vec<Listed> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = find_ascii_ci(rest, "<a") {
        let after = &rest[start + 2..];
        if !after.starts_with(|c: char| c.is_ascii_whitespace()) {
            rest = after;
            continue;
        }
        let Some(tag_end) = after.find('>') else { break };
        let tag = &after[..tag_end];
        let body = &after[tag_end + 1..];
        let text_end = find_ascii_ci(body, "</a>").unwrap_or(body.len());
        let filename = unescape(body[..text_end].trim());
        rest = &body[text_end..];
        let Some(href) = attribute(tag, "href") else { continue };
        let (link, fragment) = href.split_once('#').map_or((href.as_str(), ""), |(l, f)| (l, f));
        let Some(url) = absolute(page_url, link) else { continue };
        let sha256 = fragment.strip_prefix("sha256=").map(str::to_ascii_lowercase);
        let yanked = attribute(tag, "data-yanked").is_some();
        out.push(Listed { file: ReleaseFile { filename, url, sha256 }, yanked });
    }
    out
}

fn find_ascii_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack.as_bytes().windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The value of attribute `name` in a tag's text (quoted or bare); an
/// attribute without a value gives an empty string.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let mut rest = tag;
    while let Some(at) = find_ascii_ci(rest, name) {
        let before_ok = rest[..at].ends_with(|c: char| c.is_ascii_whitespace());
        let after = &rest[at + name.len()..];
        if !before_ok || after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-') {
            rest = after;
            continue;
        }
        let after = after.trim_start();
        let Some(value) = after.strip_prefix('=') else { return Some(String::new()) };
        let value = value.trim_start();
        let raw = match value.chars().next() {
            Some(quote @ ('"' | '\'')) => value[1..].split(quote).next().unwrap_or_default(),
            _ => value.split(|c: char| c.is_ascii_whitespace()).next().unwrap_or_default(),
        };
        return Some(unescape(raw));
    }
    None
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// `link` resolved against `page_url`, when the result is http(s).
fn absolute(page_url: &str, link: &str) -> Option<String> {
    let (scheme, _) = page_url.split_once("://")?;
    // A link with a scheme of its own (before any `/`, `?` or `#`) is absolute.
    let has_scheme = link.split(['/', '?', '#']).next().is_some_and(|head| head.contains(':'));
    let url = if has_scheme {
        link.to_owned()
    } else if let Some(rest) = link.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if let Some(path) = link.strip_prefix('/') {
        let host = page_url.split_once("://")?.1.split('/').next()?;
        format!("{scheme}://{host}/{path}")
    } else {
        let base = &page_url[..page_url.rfind('/')? + 1];
        without_dot_segments(&format!("{base}{link}"))?
    };
    match check_http_url(&url) {
        Ok(()) => Some(url),
        Err(_) => {
            log::warn!("ignoring distribution URL `{link}` on {page_url}");
            None
        }
    }
}

/// `scheme://host/a/b/../c` -> `scheme://host/a/c` (RFC 3986 5.2.4).
fn without_dot_segments(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (path, query) = path.split_once('?').map_or((path, None), |(p, q)| (p, Some(q)));
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut out = format!("{scheme}://{host}/{}", segments.join("/"));
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Some(out)
}

fn check_name(name: &str) -> Result<(), Error> {
    // PEP 508: letters, digits, `.`, `_`, `-`; starts and ends with a letter or digit.
    let valid = !name.is_empty()
        && name.len() <= 200
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::InvalidInput, format!("invalid package name `{name}`")))
    }
}

fn check_version(version: &str) -> Result<(), Error> {
    // PEP 440 characters, including epochs (`1!2.0`) and local versions (`1.0+abc`).
    let valid = !version.is_empty()
        && version.len() <= 100
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+' | b'!'))
        && version.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && !version.contains("..");
    if valid {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::InvalidInput, format!("invalid version `{version}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(parse_spec("pypi:requests==2.32.3").unwrap(), ("requests".into(), Some("2.32.3".into())));
        assert_eq!(parse_spec(" six ").unwrap(), ("six".into(), None));
        for bad in ["", "pypi:", "..", "../x", "a/b", "-a", "a==", "a==../1", "a==1/2", "a b"] {
            assert!(parse_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions_from_file_names() {
        assert_eq!(version_of("Demo_Pkg-2.0-py3-none-any.whl", "demo-pkg").as_deref(), Some("2.0"));
        assert_eq!(version_of("demo-pkg-1.0rc1.tar.gz", "demo.pkg").as_deref(), Some("1.0rc1"));
        assert_eq!(
            version_of("python-dateutil-2.9.0.post0.tar.gz", "python-dateutil").as_deref(),
            Some("2.9.0.post0")
        );
        assert_eq!(version_of("other-1.0.tar.gz", "demo"), None);
        assert_eq!(version_of("demo-1.0.exe", "demo"), None);
        assert_eq!(latest(["1.0", "2.0rc1", "1.10", "x"].into_iter()).as_deref(), Some("1.10"));
        assert_eq!(latest(["2.0b1", "2.0rc1"].into_iter()).as_deref(), Some("2.0rc1"));
        assert!(same_version("1.0-1", "1.0.post1") && same_version("1.0RC1", "1.0rc1"));
        assert!(!same_version("1.0", "1.0.1"));
        assert_eq!(
            absolute("https://index.example/simple/demo/", "//files.example/demo-1.0.tar.gz").as_deref(),
            Some("https://files.example/demo-1.0.tar.gz")
        );
    }

    #[test]
    fn html_pages_as_pip_reads_them() {
        let html = r#"<!DOCTYPE html><html><body>
            <a href="../../packages/aa/demo-1.0.tar.gz#sha256=ABCDEF">demo-1.0.tar.gz</a><br/>
            <A HREF='https://files.example/demo-2.0-py3-none-any.whl?x=1&amp;y=2' data-yanked="bad build">demo-2.0-py3-none-any.whl</A>
            <a name="anchor-only">no link</a>
            <abbr>not a link</abbr>
            <a href="ftp://nope/demo-3.0.tar.gz">demo-3.0.tar.gz</a>
        </body></html>"#;
        let listed = parse_html("https://index.example/simple/demo/", html);
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert_eq!(listed[0].file.url, "https://index.example/packages/aa/demo-1.0.tar.gz");
        assert_eq!(listed[0].file.sha256.as_deref(), Some("abcdef"));
        assert!(!listed[0].yanked);
        assert_eq!(listed[1].file.url, "https://files.example/demo-2.0-py3-none-any.whl?x=1&y=2");
        assert!(listed[1].yanked);
        assert_eq!(listed[1].file.filename, "demo-2.0-py3-none-any.whl");
    }
}
