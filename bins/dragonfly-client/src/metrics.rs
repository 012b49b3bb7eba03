//! `DRAGONFLY_METRICS_ADDR`: Prometheus metrics at `/metrics` and health at
//! `/healthz` and `/readyz`, served by one thread of its own.
//!
//! Every value is read from the node's [`Stats`] and the API client at
//! scrape time; the node never waits for this server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dragonfly_api::Client;
use dragonfly_orchestrator::{SCAN_SECONDS_BUCKETS, Stats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// `Content-Type` of `/metrics` (Prometheus text format 0.0.4).
const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// What the endpoints report on: the node's counters and its API client.
pub struct Probe {
    stats: Arc<Stats>,
    client: Client,
    registry: Registry,
}

impl Probe {
    /// A probe of a node's `stats` and `client`.
    pub fn new(stats: Arc<Stats>, client: Client) -> Probe {
        let mut registry = Registry::with_prefix("dragonfly");
        registry.register_collector(Box::new(NodeCollector {
            stats: Arc::clone(&stats),
            client: client.clone(),
        }));
        Probe { stats, client, registry }
    }

    /// Ready to work: logged in (or no login needed) and rules compiled.
    pub fn is_ready(&self) -> bool {
        self.client.is_authenticated() && self.stats.rule_hash().is_some()
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String fails only if a collector does, and ours do not.
        if let Err(err) = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry) {
            log::warn!("can not encode metrics: {err}");
        }
        text
    }
}

/// Reads the node's counters on every scrape.
#[derive(Debug)]
struct NodeCollector {
    stats: Arc<Stats>,
    client: Client,
}

/// One counter: name (without prefix and `_total`), help, unit, value.
type Row<'a> = (&'a str, &'a str, Option<Unit>, u64);

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let s = self.stats.snapshot();
        let auth = self.client.auth_stats();

        Info::new([("version", env!("CARGO_PKG_VERSION"))]).encode(encoder.encode_descriptor(
            "build",
            "Version of the running node.",
            None,
            MetricType::Info,
        )?)?;

        let counters: [Row; 20] = [
            ("jobs_leased", "Jobs leased from the control server.", None, s.jobs_leased),
            ("jobs_succeeded", "Jobs scanned completely (a score was reported).", None, s.jobs_succeeded),
            ("results_delivered", "Results the control server accepted.", None, s.results_delivered),
            (
                "results_dropped",
                "Results the control server refused for good (404, 409, invalid).",
                None,
                s.results_dropped,
            ),
            (
                "results_retried",
                "Result submissions retried after a transient or login error.",
                None,
                s.results_retried,
            ),
            ("files_scanned", "Files scanned.", None, s.files_scanned),
            ("files_skipped", "Files skipped because no rule applies to them.", None, s.files_skipped),
            ("downloaded", "Bytes of distributions downloaded.", Some(Unit::Bytes), s.bytes_downloaded),
            ("scanned", "Bytes of file content scanned.", Some(Unit::Bytes), s.bytes_scanned),
            ("rules_loads", "Rule sets compiled or loaded from the cache.", None, s.rule_loads),
            ("rules_failures", "Rule set fetches or compilations that failed.", None, s.rule_failures),
            (
                "auth_renewals",
                "Successful logins (Auth0 token or Cloudflare cookie), the first included.",
                None,
                auth.renewals,
            ),
            ("auth_failures", "Login attempts that failed.", None, auth.failures),
            (
                "scan_reuse_lookups",
                "Result cache lookups (a file and rule group each).",
                None,
                s.reuse.lookups,
            ),
            (
                "scan_reuse_hits",
                "Files whose results came from the result cache.",
                None,
                s.reuse.reused_files,
            ),
            (
                "scan_reuse_reused",
                "Bytes of files whose results came from the cache.",
                Some(Unit::Bytes),
                s.reuse.reused_bytes,
            ),
            ("scan_reuse_audits", "Cache hits checked by scanning again.", None, s.reuse.validated_files),
            (
                "scan_reuse_audit_mismatches",
                "Checked cache hits that differed from a new scan (reuse is then off for the rule set).",
                None,
                s.reuse.mismatched_files,
            ),
            (
                "scan_reuse_shared",
                "Files whose results came from the fleet's scan cache on the server.",
                None,
                s.reuse.shared_files,
            ),
            (
                "scan_reuse_errors",
                "Calls to the server's scan cache that failed (the files were scanned).",
                None,
                s.reuse.errors,
            ),
        ];
        for (name, help, unit, value) in &counters {
            let counter = ConstCounter::new(*value);
            counter.encode(encoder.encode_descriptor(name, help, unit.as_ref(), counter.metric_type())?)?;
        }

        {
            let mut failed = encoder.encode_descriptor(
                "jobs_failed",
                "Jobs reported as failures, by reason: download, archive (format, corruption, limits), \
                 scan (timeout or scan error), no_rules, no_distributions, internal (a panic).",
                None,
                MetricType::Counter,
            )?;
            for (kind, count) in &s.jobs_failed {
                ConstCounter::new(*count).encode(failed.encode_family(&[("reason", kind.label())])?)?;
            }
        }

        {
            let mut anomalies = encoder.encode_descriptor(
                "archive_anomalies",
                "Archive constructs readers disagree on (scanned under every reading), by kind.",
                None,
                MetricType::Counter,
            )?;
            for (kind, count) in &s.anomalies {
                ConstCounter::new(*count).encode(anomalies.encode_family(&[("kind", kind.label())])?)?;
            }
        }

        let gauges: [Row; 2] = [
            (
                "jobs_held",
                "Jobs held by the node (leased, not yet reported): its queue depth.",
                None,
                s.jobs_held,
            ),
            ("results_pending", "Results waiting to be delivered.", None, s.results_pending),
        ];
        for (name, help, unit, value) in &gauges {
            let gauge = ConstGauge::new(i64::try_from(*value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, unit.as_ref(), gauge.metric_type())?)?;
        }
        let seconds = [
            ("uptime", "Seconds since the node started.", s.uptime.as_secs_f64()),
            (
                "rules_compile",
                "Time spent compiling (or loading) the current rules.",
                s.rule_compile_time.as_secs_f64(),
            ),
        ];
        for (name, help, value) in seconds {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(
                name,
                help,
                Some(&Unit::Seconds),
                gauge.metric_type(),
            )?)?;
        }

        if let Some(bytes) = resident_bytes() {
            let gauge = ConstGauge::new(i64::try_from(bytes).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(
                "resident_memory",
                "Resident memory of the process (Linux only).",
                Some(&Unit::Bytes),
                gauge.metric_type(),
            )?)?;
        }

        // Per-bucket counts, not cumulative; the encoder accumulates them.
        let mut buckets: Vec<(f64, u64)> =
            SCAN_SECONDS_BUCKETS.iter().copied().zip(s.scan_buckets.iter().copied()).collect();
        buckets.push((f64::INFINITY, s.scan_buckets.last().copied().unwrap_or(0)));
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = s.scan_time.as_secs_f64();
        encoder
            .encode_descriptor(
                "scan_duration",
                "Time to scan one distribution (after download).",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;

        if let Some(hash) = s.rule_hash {
            Info::new([("hash", hash)]).encode(encoder.encode_descriptor(
                "rules",
                "Hash of the rules in use (absent until rules are compiled).",
                None,
                MetricType::Info,
            )?)?;
        }
        Ok(())
    }
}

/// The process's resident set size from `/proc/self/status` (Linux).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

/// The running HTTP server; stops its thread when dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// The address it listens on (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Connections held open at once; when full, the oldest that has sent
/// nothing is closed for the newcomer, so that idle clients never lock out
/// a probe.
const MAX_CONNECTIONS: usize = 64;
/// How long a connection may stay open: to send its request and take its
/// response.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read.
const MAX_REQUEST_BYTES: usize = 8 << 10;
/// Pause of the serving loop when nothing happened.
const IDLE_PAUSE: Duration = Duration::from_millis(10);

/// Binds `addr` now (failing with a message naming `DRAGONFLY_METRICS_ADDR`)
/// and serves `probe` on a thread of its own.
///
/// One thread serves every connection, none blocking it: at most
/// [`MAX_CONNECTIONS`] are open, each gets [`REQUEST_TIMEOUT`] to send its
/// request, and failing accepts (out of file descriptors) are retried, so
/// `/healthz` keeps answering whatever clients do.
pub fn serve(addr: &str, probe: Probe) -> Result<MetricsServer> {
    let context = || format!("can not serve metrics on `{addr}` (DRAGONFLY_METRICS_ADDR)");
    let listener = TcpListener::bind(addr).with_context(context)?;
    let local = listener.local_addr().with_context(context)?;
    listener.set_nonblocking(true).with_context(context)?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve_loop(&listener, &probe, &stop))?
    };
    Ok(MetricsServer { addr: local, stop, thread: Some(thread) })
}

/// One open connection: reading its request, then writing its response.
struct Pending {
    stream: TcpStream,
    opened: Instant,
    head: Vec<u8>,
    /// The response, once the request is complete, and how much is sent.
    response: Option<(Vec<u8>, usize)>,
}

/// New connections taken per pass, so that reading and writing go on under a flood.
const ACCEPTS_PER_PASS: usize = 16;

fn serve_loop(listener: &TcpListener, probe: &Probe, stop: &AtomicBool) {
    let mut open: Vec<Pending> = Vec::new();
    let mut last_accept_error: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let mut busy = false;
        for _ in 0..ACCEPTS_PER_PASS {
            match listener.accept() {
                Ok((stream, _)) => {
                    busy = true;
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    if open.len() >= MAX_CONNECTIONS {
                        evict(&mut open);
                    }
                    open.push(Pending { stream, opened: Instant::now(), head: Vec::new(), response: None });
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(err) => {
                    // Out of file descriptors: close a connection to make room.
                    if matches!(err.raw_os_error(), Some(23 | 24)) {
                        evict(&mut open);
                    }
                    if last_accept_error.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                        log::warn!("metrics server can not accept a connection: {err}");
                        last_accept_error = Some(Instant::now());
                    }
                    break;
                }
            }
        }
        open.retain_mut(|conn| {
            if conn.opened.elapsed() >= REQUEST_TIMEOUT {
                return false;
            }
            if conn.response.is_none() {
                match read_request(conn) {
                    Progress::Waiting => return true,
                    Progress::Closed => return false,
                    Progress::Complete => {
                        busy = true;
                        conn.response = Some((answer(probe, &conn.head), 0));
                    }
                }
            }
            match write_response(conn) {
                Progress::Waiting => true,
                Progress::Complete | Progress::Closed => {
                    busy = true;
                    false
                }
            }
        });
        if !busy {
            std::thread::sleep(IDLE_PAUSE);
        }
    }
}

/// Closes one connection for a newcomer: the oldest that has sent nothing,
/// else the oldest.
fn evict(open: &mut Vec<Pending>) {
    let silent = open.iter().position(|conn| conn.head.is_empty() && conn.response.is_none());
    if let Some(index) = silent.or(if open.is_empty() { None } else { Some(0) }) {
        open.remove(index);
    }
}

enum Progress {
    Waiting,
    Complete,
    Closed,
}

fn read_request(conn: &mut Pending) -> Progress {
    let mut buf = [0u8; 2048];
    loop {
        match conn.stream.read(&mut buf) {
            Ok(0) => return Progress::Closed,
            Ok(n) => {
                conn.head.extend_from_slice(&buf[..n]);
                if conn.head.windows(4).any(|w| w == b"\r\n\r\n") || conn.head.len() >= MAX_REQUEST_BYTES {
                    return Progress::Complete;
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return Progress::Waiting,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Progress::Closed,
        }
    }
}

/// Sends what the socket takes of the response, never blocking.
fn write_response(conn: &mut Pending) -> Progress {
    let Some((response, sent)) = &mut conn.response else { return Progress::Waiting };
    while *sent < response.len() {
        match conn.stream.write(&response[*sent..]) {
            Ok(0) => return Progress::Closed,
            Ok(n) => *sent += n,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return Progress::Waiting,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Progress::Closed,
        }
    }
    Progress::Complete
}

/// The response to a complete request head.
fn answer(probe: &Probe, head: &[u8]) -> Vec<u8> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let (status, content_type, body, head_only) = match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {
            let method = request.method.unwrap_or_default();
            let (status, content_type, body) = respond(probe, method, request.path.unwrap_or_default());
            (status, content_type, body, method == "HEAD")
        }
        _ => (400, TEXT, "bad request\n".to_owned(), false),
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        response.extend_from_slice(body.as_bytes());
    }
    response
}

const TEXT: &str = "text/plain; charset=utf-8";

/// Status, content type and body for `method` on `url`.
fn respond(probe: &Probe, method: &str, url: &str) -> (u16, &'static str, String) {
    if !matches!(method, "GET" | "HEAD") {
        return (405, TEXT, "method not allowed\n".to_owned());
    }
    match url.split('?').next().unwrap_or_default() {
        "/metrics" => (200, CONTENT_TYPE, probe.render()),
        "/healthz" => (200, TEXT, "ok\n".to_owned()),
        "/readyz" if probe.is_ready() => (200, TEXT, "ready\n".to_owned()),
        "/readyz" => (503, TEXT, "not ready: waiting for a login or for rules\n".to_owned()),
        _ => (404, TEXT, "not found; try /metrics, /healthz or /readyz\n".to_owned()),
    }
}

#[cfg(test)]
mod tests {

    use dragonfly_api::{Auth, ClientConfig, Secret};
    use dragonfly_engine::DistributionReport;
    use dragonfly_orchestrator::FailureKind;

    use super::*;

    fn client(auth: Auth) -> Client {
        // Never contacted: nothing here logs in or calls the API.
        Client::new(ClientConfig::new("http://127.0.0.1:9", auth)).unwrap()
    }

    fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(addr).unwrap();
        // A server that never answers fails the test instead of hanging it.
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        (status, body)
    }

    fn value_of<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn every_counter_is_exposed_with_prometheus_names() {
        let stats = Arc::new(Stats::default());
        stats.jobs_leased(5);
        stats.set_jobs_held(4);
        for _ in 0..3 {
            stats.job_succeeded();
        }
        stats.job_failed(FailureKind::Archive);
        stats.job_failed(FailureKind::Archive);
        stats.result_queued();
        stats.result_delivered();
        stats.result_queued();
        for _ in 0..6 {
            stats.result_retried();
        }
        stats.downloaded(1000);
        let reuse = dragonfly_engine::ReuseCounts {
            lookups: 11,
            reused_files: 9,
            reused_bytes: 3000,
            validated_files: 2,
            mismatched_files: 1,
            shared_files: 4,
            errors: 1,
            ..Default::default()
        };
        let report = DistributionReport {
            files_scanned: 7,
            files_skipped: 8,
            bytes_scanned: 4000,
            reuse,
            ..Default::default()
        };
        stats.distribution_scanned(&report, Duration::from_millis(1));
        stats.rules_loaded("abc\"1", Duration::from_millis(1500));
        let text = Probe::new(stats, client(Auth::None)).render();
        let expected = [
            ("dragonfly_jobs_leased_total", "5"),
            ("dragonfly_jobs_succeeded_total", "3"),
            ("dragonfly_jobs_failed_total{reason=\"archive\"}", "2"),
            ("dragonfly_jobs_failed_total{reason=\"download\"}", "0"),
            ("dragonfly_jobs_failed_total{reason=\"no_distributions\"}", "0"),
            ("dragonfly_jobs_held", "4"),
            ("dragonfly_results_pending", "1"),
            ("dragonfly_results_retried_total", "6"),
            ("dragonfly_downloaded_bytes_total", "1000"),
            ("dragonfly_scanned_bytes_total", "4000"),
            ("dragonfly_files_scanned_total", "7"),
            ("dragonfly_files_skipped_total", "8"),
            ("dragonfly_rules_compile_seconds", "1.5"),
            ("dragonfly_rules_info{hash=\"abc\\\"1\"}", "1"),
            ("dragonfly_auth_renewals_total", "0"),
            ("dragonfly_auth_failures_total", "0"),
            ("dragonfly_scan_reuse_lookups_total", "11"),
            ("dragonfly_scan_reuse_hits_total", "9"),
            ("dragonfly_scan_reuse_reused_bytes_total", "3000"),
            ("dragonfly_scan_reuse_audits_total", "2"),
            ("dragonfly_scan_reuse_audit_mismatches_total", "1"),
            ("dragonfly_scan_reuse_shared_total", "4"),
            ("dragonfly_scan_reuse_errors_total", "1"),
        ];
        for (series, value) in expected {
            assert_eq!(value_of(&text, series), Some(value), "{series} in\n{text}");
        }
        assert!(text.contains("# TYPE dragonfly_jobs_held gauge\n"), "{text}");
        assert!(text.contains("# TYPE dragonfly_jobs_leased_total counter\n"), "{text}");
        if cfg!(target_os = "linux") {
            let rss: u64 = value_of(&text, "dragonfly_resident_memory_bytes").unwrap().parse().unwrap();
            assert!(rss > 1024 * 1024, "{rss}");
        }
        assert!(
            text.contains(&format!("dragonfly_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")))
        );
    }

    #[test]
    fn scan_times_form_a_cumulative_histogram() {
        let stats = Arc::new(Stats::default());
        for millis in [5, 5, 40, 700, 60_000] {
            stats.distribution_scanned(&DistributionReport::default(), Duration::from_millis(millis));
        }
        let text = Probe::new(stats, client(Auth::None)).render();
        let series =
            |le: &str| value_of(&text, &format!("dragonfly_scan_duration_seconds_bucket{{le=\"{le}\"}}"));
        assert_eq!(series("0.01"), Some("2"), "{text}");
        assert_eq!(series("0.05"), Some("3"));
        assert_eq!(series("0.5"), Some("3"));
        assert_eq!(series("1.0").or(series("1")), Some("4"));
        assert_eq!(series("30.0").or(series("30")), Some("4"));
        assert_eq!(series("+Inf"), Some("5"));
        assert_eq!(value_of(&text, "dragonfly_scan_duration_seconds_count"), Some("5"));
        assert_eq!(value_of(&text, "dragonfly_scan_duration_seconds_sum"), Some("60.75"));
        assert_eq!(text.matches("dragonfly_scan_duration_seconds_bucket{le=\"+Inf\"}").count(), 1);
        // No rules yet: no info series.
        assert!(!text.contains("dragonfly_rules_info"), "{text}");
    }

    #[test]
    fn readiness_needs_rules_and_a_login() {
        let stats = Arc::new(Stats::default());
        let none = Probe::new(Arc::clone(&stats), client(Auth::None));
        let token = Probe::new(Arc::clone(&stats), client(Auth::Token(Secret::new("t"))));
        let cloudflare = Probe::new(
            Arc::clone(&stats),
            client(Auth::Cloudflare { client_id: "id".into(), client_secret: Secret::new("s") }),
        );
        assert!(!none.is_ready() && !token.is_ready());
        stats.rules_loaded("h", Duration::ZERO);
        assert!(none.is_ready() && token.is_ready());
        assert!(!cloudflare.is_ready(), "never logged in");
    }

    #[test]
    fn serves_metrics_and_health_on_its_own_thread() {
        let stats = Arc::new(Stats::default());
        let server = serve("127.0.0.1:0", Probe::new(Arc::clone(&stats), client(Auth::None))).unwrap();
        let addr = server.local_addr();
        assert_eq!(get(addr, "/healthz").0, 200);
        assert_eq!(get(addr, "/readyz").0, 503);
        stats.rules_loaded("h1", Duration::ZERO);
        for _ in 0..9 {
            stats.job_succeeded();
        }
        assert_eq!(get(addr, "/readyz").0, 200);
        let (status, body) = get(addr, "/metrics");
        assert_eq!(status, 200);
        assert_eq!(value_of(&body, "dragonfly_jobs_succeeded_total"), Some("9"), "{body}");
        assert_eq!(get(addr, "/nope").0, 404);
        // Dropping the server stops and joins its thread.
        drop(server);
    }

    #[test]
    fn idle_and_half_open_connections_never_lock_out_a_probe() {
        let server =
            serve("127.0.0.1:0", Probe::new(Arc::new(Stats::default()), client(Auth::None))).unwrap();
        let addr = server.local_addr();
        // Far more idle connections than the server keeps, some with half a request.
        let mut idle: Vec<TcpStream> =
            (0..MAX_CONNECTIONS * 4).map(|_| TcpStream::connect(addr).unwrap()).collect();
        for stream in idle.iter_mut().step_by(3) {
            stream.write_all(b"GET /metrics HTTP/1.1\r\nHost:").unwrap();
        }
        for _ in 0..5 {
            assert_eq!(get(addr, "/healthz").0, 200);
        }
        // Garbage gets a 400, HEAD no body, and the server goes on.
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(b"\x00\x01 nonsense\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 400"), "{response}");
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200") && response.ends_with("\r\n\r\n"), "{response}");
        drop(idle);
        assert_eq!(get(addr, "/healthz").0, 200);
    }

    #[test]
    fn a_taken_address_names_the_setting() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let err = serve(&addr, Probe::new(Arc::new(Stats::default()), client(Auth::None))).err().unwrap();
        let message = format!("{err:#}");
        assert!(message.contains("DRAGONFLY_METRICS_ADDR") && message.contains(&addr), "{message}");
    }
}
