//! Release look-ups against a mockito package index (simple repository API).

use dragonfly_api::{Auth, ErrorKind, Secret, pypi};
use mockito::{Matcher, Server};

use crate::common::*;

/// A PEP 691 JSON project page with three releases, one of them yanked.
fn json_page(server_url: &str) -> String {
    format!(
        r#"{{"meta": {{"api-version": "1.1"}}, "name": "Demo-Pkg", "files": [
  {{"filename": "demo_pkg-1.0.tar.gz", "url": "{server_url}/files/demo_pkg-1.0.tar.gz", "hashes": {{"sha256": "{sha}"}}, "yanked": false}},
  {{"filename": "demo_pkg-2.0-py3-none-any.whl", "url": "https://files.example/packages/aa/demo_pkg-2.0-py3-none-any.whl", "hashes": {{}}}},
  {{"filename": "demo_pkg-2.0.tar.gz", "url": "../../packages/bb/demo_pkg-2.0.tar.gz", "hashes": {{}}, "yanked": false}},
  {{"filename": "demo_pkg-3.0.tar.gz", "url": "https://files.example/demo_pkg-3.0.tar.gz", "yanked": "broken build"}},
  {{"filename": "demo_pkg-4.0rc1.tar.gz", "url": "https://files.example/demo_pkg-4.0rc1.tar.gz"}}
]}}"#,
        sha = SHA_OF_HELLO
    )
}

/// SHA-256 of `hello`.
const SHA_OF_HELLO: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

#[test]
fn resolves_the_latest_and_a_given_version_through_the_json_api() {
    let mut server = Server::new();
    let page = server
        .mock("GET", "/simple/demo-pkg/")
        .match_header("accept", Matcher::Regex("application/vnd.pypi.simple.v1\\+json".into()))
        .match_header("authorization", Matcher::Missing)
        .with_header("content-type", "application/vnd.pypi.simple.v1+json")
        .with_body(json_page(&server.url()))
        .expect(3)
        .create();
    // Credentials of the control server never go to the index.
    let client = client(&server, Auth::Token(Secret::new(STATIC_TOKEN)));
    let index = format!("{}/simple/", server.url());

    let latest = pypi::resolve(&client, &index, "Demo.Pkg", None).unwrap();
    assert_eq!(
        (latest.name.as_str(), latest.version.as_str()),
        ("Demo-Pkg", "2.0"),
        "3.0 is yanked, 4.0rc1 a pre-release"
    );
    let urls: Vec<&str> = latest.files.iter().map(|f| f.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "https://files.example/packages/aa/demo_pkg-2.0-py3-none-any.whl",
            &format!("{}/packages/bb/demo_pkg-2.0.tar.gz", server.url()),
        ]
    );
    let pinned = pypi::resolve(&client, &index, "demo-pkg", Some("1.0")).unwrap();
    assert_eq!(pinned.files.len(), 1);
    assert_eq!(pinned.files[0].sha256.as_deref(), Some(SHA_OF_HELLO));
    // A yanked release still resolves when asked for by name.
    let yanked = pypi::resolve(&client, &index, "demo-pkg", Some("3.0")).unwrap();
    assert_eq!(yanked.files[0].url, "https://files.example/demo_pkg-3.0.tar.gz");
    page.assert();
}

#[test]
fn html_pages_are_read_where_the_index_serves_no_json() {
    let mut server = Server::new();
    let html = format!(
        r#"<!DOCTYPE html><html><body><h1>Links for demo</h1>
<a href="{}/files/demo-1.0.tar.gz#sha256={SHA_OF_HELLO}">demo-1.0.tar.gz</a><br/>
<a href="/files/demo-1.1.tar.gz" data-yanked="">demo-1.1.tar.gz</a><br/>
</body></html>"#,
        server.url()
    );
    let _page =
        server.mock("GET", "/simple/demo/").with_header("content-type", "text/html").with_body(html).create();
    let download = server.mock("GET", "/files/demo-1.0.tar.gz").with_body("hello").expect(2).create();
    let client = client(&server, Auth::None);
    let index = format!("{}/simple", server.url());
    let release = pypi::resolve(&client, &index, "demo", None).unwrap();
    assert_eq!(release.version, "1.0", "1.1 is yanked");
    assert_eq!(pypi::download(&client, &release.files[0], 1024).unwrap(), b"hello");

    // Bytes that do not match the index's hash are refused.
    let mut tampered = release.files[0].clone();
    tampered.sha256 = Some("00".repeat(32));
    let err = pypi::download(&client, &tampered, 1024).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Malformed);
    assert!(err.to_string().contains("does not match"), "{err}");
    download.assert();
}

#[test]
fn unknown_projects_and_versions_are_not_found() {
    let mut server = Server::new();
    let _missing = server.mock("GET", "/simple/nope/").with_status(404).with_body("Not Found").create();
    let _page = server
        .mock("GET", "/simple/demo-pkg/")
        .with_header("content-type", "application/vnd.pypi.simple.v1+json")
        .with_body(json_page(&server.url()))
        .create();
    let client = client(&server, Auth::None);
    let index = format!("{}/simple", server.url());
    let err = pypi::resolve(&client, &index, "nope", None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(!err.is_transient());
    let err = pypi::resolve(&client, &index, "demo-pkg", Some("9.9")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("demo-pkg==9.9"), "{err}");
}

#[test]
fn bad_names_and_documents_are_rejected() {
    let mut server = Server::new();
    let _odd = server
        .mock("GET", "/simple/odd/")
        .with_header("content-type", "application/vnd.pypi.simple.v1+json")
        .with_body(r#"{"files": 3}"#)
        .create();
    let client = client(&server, Auth::None);
    let index = format!("{}/simple", server.url());
    assert_eq!(pypi::resolve(&client, &index, "../admin", None).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(
        pypi::resolve(&client, &index, "ok", Some("1/../2")).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(pypi::resolve(&client, &index, "odd", None).unwrap_err().kind(), ErrorKind::Malformed);
    assert_eq!(pypi::resolve(&client, "ftp://index", "odd", None).unwrap_err().kind(), ErrorKind::InvalidUrl);
}
