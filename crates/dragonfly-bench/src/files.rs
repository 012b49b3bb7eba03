//! A minimal static file server on loopback for the distribution files,
//! behaving like a CDN: HTTP/1.1 keep-alive, `TCP_NODELAY`, one thread per
//! connection.
//!
//! The test kit's server (tiny_http) is fine for the API but distorts
//! download timings: see `docs/benchmarks.md`, "Where the files are served
//! from".

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// An idle keep-alive connection is closed after this long.
const IDLE: Duration = Duration::from_secs(30);

/// Serves fixed files at fixed paths until dropped.
pub struct FileServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl FileServer {
    /// Starts serving `files` (URL path -> bytes) on `127.0.0.1`.
    pub fn start(files: HashMap<String, Arc<Vec<u8>>>) -> io::Result<FileServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let files = Arc::new(files);
        let acceptor = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new().name("bench-files".into()).spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let files = Arc::clone(&files);
                    let _ = std::thread::Builder::new()
                        .name("bench-files-conn".into())
                        .spawn(move || serve_connection(stream, &files));
                }
            })?
        };
        Ok(FileServer { addr, stop, acceptor: Some(acceptor) })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the acceptor so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Percent-encodes a path segment (everything but `A-Z a-z 0-9 . _ -`).
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Answers requests on one connection until the client closes it, asks for
/// `Connection: close`, sends something unreadable or stays idle too long.
fn serve_connection(stream: TcpStream, files: &HashMap<String, Arc<Vec<u8>>>) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IDLE));
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    while let Ok(Some(head)) = read_head(&mut reader) {
        let Some(request) = parse_head(&head) else {
            let _ = writer
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return;
        };
        // Discard a request body, if any.
        if request.content_length > 0
            && io::copy(&mut (&mut reader).take(request.content_length), &mut io::sink()).is_err()
        {
            return;
        }
        let body =
            if request.method == "GET" || request.method == "HEAD" { files.get(request.path) } else { None };
        let connection = if request.close { "close" } else { "keep-alive" };
        let written = match body {
            Some(body) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
                    body.len()
                );
                writer
                    .write_all(head.as_bytes())
                    .and_then(|()| if request.method == "GET" { writer.write_all(body) } else { Ok(()) })
            }
            None => writer.write_all(
                format!("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: {connection}\r\n\r\n")
                    .as_bytes(),
            ),
        };
        if written.is_err() || request.close {
            return;
        }
    }
}

/// Reads one request head (up to the empty line); `None` at a clean end of
/// the connection.
fn read_head(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = reader.by_ref().take(MAX_HEAD as u64).read_line(&mut line)?;
        if n == 0 {
            return if head.is_empty() { Ok(None) } else { Err(io::ErrorKind::UnexpectedEof.into()) };
        }
        if line == "\r\n" || line == "\n" {
            if head.is_empty() {
                continue; // stray empty line between requests
            }
            return Ok(Some(head));
        }
        head.push_str(&line);
        if head.len() > MAX_HEAD {
            return Err(io::ErrorKind::InvalidData.into());
        }
    }
}

/// What the server needs from a request head.
#[derive(Debug, PartialEq, Eq)]
struct RequestHead<'a> {
    method: &'a str,
    path: &'a str,
    close: bool,
    content_length: u64,
}

fn parse_head(head: &str) -> Option<RequestHead<'_>> {
    let mut lines = head.lines();
    let mut parts = lines.next()?.split_whitespace();
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let path = target.split(['?', '#']).next().unwrap_or(target);
    let mut close = version == "HTTP/1.0";
    let mut content_length = 0;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().ok()?;
        }
    }
    Some(RequestHead { method, path, close, content_length })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_parsed() {
        let head =
            parse_head("GET /packages/a%2Bb.whl?x=1 HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n").unwrap();
        assert_eq!(
            head,
            RequestHead { method: "GET", path: "/packages/a%2Bb.whl", close: true, content_length: 0 }
        );
        let head = parse_head("PUT /x HTTP/1.0\r\ncontent-length: 12\r\n").unwrap();
        assert!(head.close && head.content_length == 12);
        assert_eq!(parse_head("GARBAGE\r\n"), None);
        assert_eq!(encode_segment("pkg-1.0+local!x.whl"), "pkg-1.0%2Blocal%21x.whl");
    }

    #[test]
    fn files_are_served_over_keep_alive_connections() {
        let files: HashMap<String, Arc<Vec<u8>>> = [
            ("/a.whl".to_owned(), Arc::new(vec![7u8; 300_000])),
            ("/b%2B1.tar.gz".to_owned(), Arc::new(b"small".to_vec())),
        ]
        .into();
        let server = FileServer::start(files).unwrap();
        let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
        for _ in 0..3 {
            let mut response = agent.get(format!("{}/a.whl", server.url())).call().unwrap();
            let body = response.body_mut().with_config().limit(1 << 20).read_to_vec().unwrap();
            assert_eq!(body, vec![7u8; 300_000]);
            let mut response = agent.get(format!("{}/b%2B1.tar.gz", server.url())).call().unwrap();
            assert_eq!(response.body_mut().read_to_vec().unwrap(), b"small");
        }
        let missing = agent.get(format!("{}/nope", server.url())).call();
        assert!(matches!(missing, Err(ureq::Error::StatusCode(404))), "{missing:?}");

        // A raw client: two requests on one connection, the second with close.
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream.write_all(b"GET /b%2B1.tar.gz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("\r\n\r\nsmallHTTP/1.1 404 Not Found\r\n"), "{answer}");
        drop(server);
    }
}
