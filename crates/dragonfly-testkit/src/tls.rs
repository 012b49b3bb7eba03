//! An HTTPS file server on loopback whose certificate is signed by a CA of
//! its own, as a TLS-inspecting proxy's is: a client trusts it only when
//! told to (`SSL_CERT_FILE`, an extra CA file).

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Serves one file at every path over HTTPS until dropped.
pub struct TlsFileServer {
    addr: SocketAddr,
    ca_pem: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TlsFileServer {
    /// Starts a server for `body` on 127.0.0.1 with a new CA and a
    /// certificate for `127.0.0.1` signed by it.
    pub fn start(body: Vec<u8>) -> io::Result<TlsFileServer> {
        let invalid = |err: rcgen::Error| io::Error::other(err.to_string());
        let ca_key = rcgen::KeyPair::generate().map_err(invalid)?;
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(invalid)?;
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, "dragonfly test kit CA");
        let ca_cert = ca.self_signed(&ca_key).map_err(invalid)?;
        let key = rcgen::KeyPair::generate().map_err(invalid)?;
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).map_err(invalid)?;
        let cert = leaf.signed_by(&key, &ca_cert, &ca_key).map_err(invalid)?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .map_err(io::Error::other)?;
        let config = Arc::new(config);

        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if let Err(err) = serve(&config, stream, &body) {
                                log::debug!("tls file server: {err}");
                            }
                        }
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(std::time::Duration::from_millis(10));
                        }
                        Err(err) => log::debug!("tls file server: accept: {err}"),
                    }
                }
            })
        };
        Ok(TlsFileServer { addr, ca_pem: ca_cert.pem(), stop, thread: Some(thread) })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA certificate that signed the server's, as PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
}

/// One request, one answer, then the connection closes.
fn serve(config: &Arc<rustls::ServerConfig>, stream: std::net::TcpStream, body: &[u8]) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let connection = rustls::ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(connection, stream);
    let mut reader = BufReader::new(&mut tls);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes())?;
    tls.write_all(body)?;
    tls.conn.send_close_notify();
    tls.flush()
}

impl Drop for TlsFileServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
