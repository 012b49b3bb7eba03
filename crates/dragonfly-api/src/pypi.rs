//! Release look-ups through PyPI's JSON API (`scan pypi:NAME==VERSION`).
//!
//! ```no_run
//! use dragonfly_api::{Auth, Client, ClientConfig, pypi};
//!
//! let client = Client::new(ClientConfig::new("http://127.0.0.1:8000", Auth::None))?;
//! let (name, version) = pypi::parse_spec("requests==2.32.3")?;
//! let release = pypi::resolve(&client, pypi::DEFAULT_INDEX, &name, version.as_deref())?;
//! for url in &release.urls {
//!     let _bytes = client.download(url, 128_000_000)?;
//! }
//! # Ok::<(), dragonfly_api::Error>(())
//! ```

use serde::Deserialize;

use crate::client::{Client, check_http_url};
use crate::error::{Error, ErrorKind};

/// PyPI's JSON API root.
pub const DEFAULT_INDEX: &str = "https://pypi.org/pypi";

/// One release and its distribution files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// Project name as the index spells it.
    pub name: String,
    /// Release version (the latest when none was asked for).
    pub version: String,
    /// Download URLs of the distributions; may be empty (a release without files).
    pub urls: Vec<String>,
}

#[derive(Deserialize)]
struct ReleaseDocument {
    info: Info,
    #[serde(default)]
    urls: Vec<File>,
}

#[derive(Deserialize)]
struct Info {
    name: String,
    version: String,
}

#[derive(Deserialize)]
struct File {
    url: String,
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

/// Looks a release up: `GET {index_url}/{name}/json` (latest) or
/// `{index_url}/{name}/{version}/json`, and returns the files of its `urls`
/// array. No credentials are sent; a missing project or version is
/// [`ErrorKind::NotFound`].
pub fn resolve(
    client: &Client,
    index_url: &str,
    name: &str,
    version: Option<&str>,
) -> Result<Release, Error> {
    check_name(name)?;
    let index = index_url.trim_end_matches('/');
    check_http_url(index)?;
    let url = match version {
        Some(version) => {
            check_version(version)?;
            format!("{index}/{name}/{version}/json")
        }
        None => format!("{index}/{name}/json"),
    };
    let document: ReleaseDocument = client.get_public_json(&url)?;
    let urls = document
        .urls
        .into_iter()
        .map(|file| file.url)
        .filter(|url| {
            let ok = check_http_url(url).is_ok();
            if !ok {
                log::warn!("ignoring distribution URL `{url}` of {name}");
            }
            ok
        })
        .collect();
    Ok(Release { name: document.info.name, version: document.info.version, urls })
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
        assert_eq!(parse_spec("discord.py").unwrap(), ("discord.py".into(), None));
        assert_eq!(parse_spec("a==1!2.0+local").unwrap(), ("a".into(), Some("1!2.0+local".into())));
        for bad in ["", "pypi:", "..", "../x", "a/b", "-a", "a==", "a==../1", "a==1/2", "a b"] {
            let err = parse_spec(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
        }
    }
}
