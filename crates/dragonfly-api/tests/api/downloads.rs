//! Distribution downloads: size limits, schemes, redirects, no credentials.

use std::io::Write as _;

use dragonfly_api::{Auth, ErrorKind, Secret};
use mockito::{Matcher, Server};

use crate::common::*;

#[test]
fn downloads_fit_the_limit_exactly() {
    let mut server = Server::new();
    let body: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let _file = server.mock("GET", "/packages/a/pkg-1.0.tar.gz").with_body(&body).create();
    let client = client(&server, Auth::None);
    let url = format!("{}/packages/a/pkg-1.0.tar.gz", server.url());
    assert_eq!(client.download(&url, 1000).unwrap(), body);
    assert_eq!(client.download(&url, 999).unwrap_err().kind(), ErrorKind::TooLarge);
}

#[test]
fn declared_length_over_the_limit_is_refused_before_reading() {
    let mut server = Server::new();
    // Declares 1 MB but sends nothing: reading would fail with a network
    // error, so TooLarge shows the length was checked first.
    let _file = server
        .mock("GET", "/big.whl")
        .with_header("content-length", "1000000")
        .with_chunked_body(|_| Ok(()))
        .create();
    let client = client(&server, Auth::None);
    let err = client.download(&format!("{}/big.whl", server.url()), 64 * 1024).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    assert!(!err.is_transient());
    assert!(err.to_string().contains("declared size 1000000"), "{err}");
}

#[test]
fn chunked_bodies_stop_at_the_limit() {
    let mut server = Server::new();
    // An endless body: the download must stop by itself.
    let _file = server
        .mock("GET", "/endless.tar.gz")
        .with_chunked_body(|writer| {
            let chunk = vec![b'x'; 16 * 1024];
            loop {
                writer.write_all(&chunk)?;
            }
        })
        .create();
    let client = client(&server, Auth::None);
    let err = client.download(&format!("{}/endless.tar.gz", server.url()), 100_000).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
}

#[test]
fn a_small_declared_length_does_not_hide_a_large_body() {
    // Content-Length counts the gzip-encoded bytes (about 1 KB here); the
    // limit applies to the bytes received after decoding (1 MB).
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&vec![0u8; 1024 * 1024]).unwrap();
    let gzipped = encoder.finish().unwrap();
    assert!(gzipped.len() < 10_000);

    let mut server = Server::new();
    let _file =
        server.mock("GET", "/bomb.tar").with_header("content-encoding", "gzip").with_body(&gzipped).create();
    let client = client(&server, Auth::None);
    let err = client.download(&format!("{}/bomb.tar", server.url()), 64 * 1024).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    // Under a large enough limit the decoded body comes back whole.
    let bytes = client.download(&format!("{}/bomb.tar", server.url()), 2 * 1024 * 1024).unwrap();
    assert_eq!(bytes.len(), 1024 * 1024);
}

#[test]
fn only_http_and_https_urls() {
    let server = Server::new();
    let client = client(&server, Auth::None);
    for url in ["file:///etc/passwd", "ftp://files.example/pkg.tar.gz", "packages/pkg.tar.gz"] {
        let err = client.download(url, 1000).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidUrl, "{url}");
        assert!(!err.is_transient());
    }
}

#[test]
fn downloads_carry_no_credentials() {
    let mut server = Server::new();
    let file = server
        .mock("GET", "/pkg.zip")
        .match_header("authorization", Matcher::Missing)
        .with_body("zip")
        .create();
    let client = client(&server, Auth::Token(Secret::new(STATIC_TOKEN)));
    assert_eq!(client.download(&format!("{}/pkg.zip", server.url()), 10).unwrap(), b"zip");
    file.assert();
}

#[test]
fn redirects_are_followed_a_few_times() {
    let mut server = Server::new();
    let _hop =
        server.mock("GET", "/old.tar.gz").with_status(302).with_header("location", "/new.tar.gz").create();
    let _file = server.mock("GET", "/new.tar.gz").with_body("data").create();
    let _loop = server.mock("GET", "/loop").with_status(302).with_header("location", "/loop").create();
    let client = client(&server, Auth::None);
    assert_eq!(client.download(&format!("{}/old.tar.gz", server.url()), 100).unwrap(), b"data");
    let err = client.download(&format!("{}/loop", server.url()), 100).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Redirect, "{err}");
}

#[test]
fn download_statuses_are_classified() {
    let mut server = Server::new();
    let _gone = server.mock("GET", "/gone.whl").with_status(404).create();
    let _busy = server.mock("GET", "/busy.whl").with_status(503).create();
    let client = client(&server, Auth::None);
    let err = client.download(&format!("{}/gone.whl", server.url()), 100).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(!err.is_transient());
    let err = client.download(&format!("{}/busy.whl", server.url()), 100).unwrap_err();
    assert!(err.is_transient());
}
