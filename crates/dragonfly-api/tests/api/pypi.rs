//! PyPI release look-ups against a mockito index.

use dragonfly_api::{Auth, ErrorKind, Secret, pypi};
use mockito::{Matcher, Server};

use crate::common::*;

const LATEST: &str = r#"{
  "info": {"name": "Demo-Pkg", "version": "2.0", "summary": "x"},
  "urls": [
    {"filename": "demo_pkg-2.0-py3-none-any.whl", "url": "https://files.example/packages/aa/demo_pkg-2.0-py3-none-any.whl", "packagetype": "bdist_wheel"},
    {"filename": "demo_pkg-2.0.tar.gz", "url": "https://files.example/packages/bb/demo_pkg-2.0.tar.gz", "packagetype": "sdist"}
  ],
  "releases": {}
}"#;

#[test]
fn resolves_the_latest_and_a_given_version() {
    let mut server = Server::new();
    let latest = server
        .mock("GET", "/pypi/demo-pkg/json")
        .match_header("authorization", Matcher::Missing)
        .with_body(LATEST)
        .create();
    let pinned = server
        .mock("GET", "/pypi/demo-pkg/1.0/json")
        .with_body(r#"{"info":{"name":"Demo-Pkg","version":"1.0"},"urls":[{"url":"https://files.example/p/demo-pkg-1.0.zip"},{"url":"file:///nope"}]}"#)
        .create();
    // Credentials of the control server never go to the index.
    let client = client(&server, Auth::Token(Secret::new(STATIC_TOKEN)));
    let index = format!("{}/pypi/", server.url());

    let release = pypi::resolve(&client, &index, "demo-pkg", None).unwrap();
    assert_eq!(release.name, "Demo-Pkg");
    assert_eq!(release.version, "2.0");
    assert_eq!(
        release.urls,
        [
            "https://files.example/packages/aa/demo_pkg-2.0-py3-none-any.whl",
            "https://files.example/packages/bb/demo_pkg-2.0.tar.gz"
        ]
    );

    let release = pypi::resolve(&client, &index, "demo-pkg", Some("1.0")).unwrap();
    assert_eq!(release.version, "1.0");
    assert_eq!(release.urls, ["https://files.example/p/demo-pkg-1.0.zip"]);
    latest.assert();
    pinned.assert();
}

#[test]
fn unknown_releases_are_not_found() {
    let mut server = Server::new();
    let _missing = server
        .mock("GET", "/pypi/nope/json")
        .with_status(404)
        .with_body(r#"{"message":"Not Found"}"#)
        .create();
    let client = client(&server, Auth::None);
    let err = pypi::resolve(&client, &format!("{}/pypi", server.url()), "nope", None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(!err.is_transient());
}

#[test]
fn bad_names_and_documents_are_rejected() {
    let mut server = Server::new();
    let _odd = server.mock("GET", "/pypi/odd/json").with_body(r#"{"urls":[]}"#).create();
    let client = client(&server, Auth::None);
    let index = format!("{}/pypi", server.url());
    assert_eq!(pypi::resolve(&client, &index, "../admin", None).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(
        pypi::resolve(&client, &index, "ok", Some("1/../2")).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(pypi::resolve(&client, &index, "odd", None).unwrap_err().kind(), ErrorKind::Malformed);
    assert_eq!(pypi::resolve(&client, "ftp://index", "odd", None).unwrap_err().kind(), ErrorKind::InvalidUrl);
}
