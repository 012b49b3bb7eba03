//! Where downloads may go: a job's URL (or a redirect) must not make the
//! node fetch from its own machine, its private network or a cloud
//! metadata service, unless that is allowed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};

use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};

use crate::error::{Error, ErrorKind};

/// The download destination policy of one client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Destinations {
    /// Loopback, private and link-local addresses allowed.
    pub(crate) allow_private: bool,
}

impl Destinations {
    /// Refuses `url` when its host is (or resolves to) an address that is
    /// not allowed.
    pub(crate) fn check(&self, url: &str) -> Result<(), Error> {
        if self.allow_private {
            return Ok(());
        }
        let uri: ureq::http::Uri =
            url.parse().map_err(|_| Error::new(ErrorKind::InvalidUrl, format!("invalid URL `{url}`")))?;
        let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        let refuse = |address: String, kind: &str| {
            Err(Error::new(
                ErrorKind::PrivateAddress,
                format!(
                    "refused to download `{url}`: {address} is a {kind} address \
                     (downloads from private networks are off: allow_private_downloads)"
                ),
            ))
        };
        let lower = host.trim_end_matches('.').to_ascii_lowercase();
        if lower == "localhost" || lower.ends_with(".localhost") {
            return refuse(host.to_owned(), "loopback");
        }
        // Literal addresses in every form a resolver accepts (`127.1`,
        // `0x7f.1`, `2130706433`), even when a proxy resolves the rest.
        if let Some(ip) = host.parse::<IpAddr>().ok().or_else(|| inet_aton(host).map(IpAddr::V4)) {
            return match kind_of(ip) {
                Some(kind) => refuse(ip.to_string(), kind),
                None => Ok(()),
            };
        }
        // Names are resolved here even behind a proxy (a proxy may be
        // skipped for `NO_PROXY` hosts). A name that does not resolve here
        // is left to the proxy.
        let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("http") { 80 } else { 443 });
        // Unresolvable names are left to the request, which reports them.
        let Ok(addresses) = (host, port).to_socket_addrs() else { return Ok(()) };
        for address in addresses {
            if let Some(kind) = kind_of(address.ip()) {
                return refuse(format!("{host} ({})", address.ip()), kind);
            }
        }
        Ok(())
    }
}

/// An IPv4 address written as `inet_aton` reads it: one to four parts,
/// each decimal, octal (`0` prefix) or hex (`0x`), the last filling the
/// remaining bytes; a trailing dot allowed.
fn inet_aton(host: &str) -> Option<Ipv4Addr> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let values: Vec<u64> = parts
        .iter()
        .map(|part| {
            let (digits, radix) = match part.as_bytes() {
                [b'0', b'x' | b'X', ..] => (&part[2..], 16),
                [b'0', _, ..] => (&part[1..], 8),
                _ => (*part, 10),
            };
            if digits.is_empty() && radix == 16 {
                return None;
            }
            if digits.is_empty() {
                return Some(0);
            }
            u64::from_str_radix(digits, radix).ok()
        })
        .collect::<Option<_>>()?;
    let (last, first) = values.split_last()?;
    if first.iter().any(|&v| v > 255) {
        return None;
    }
    let rest_bits = 8 * (4 - first.len() as u32);
    if rest_bits < 64 && *last >= 1u64 << rest_bits {
        return None;
    }
    let mut value: u64 = 0;
    for &part in first {
        value = (value << 8) | part;
    }
    value = (value << rest_bits) | last;
    Some(Ipv4Addr::from(u32::try_from(value).ok()?))
}

/// The resolver of the download agent when private destinations are not
/// allowed: it keeps only the public addresses a name resolves to, so that
/// the address connected to is the one checked (a name answering with a
/// public address to the check and a private one to the connection gets
/// nowhere).
#[derive(Debug, Default)]
pub(crate) struct PublicOnly(DefaultResolver);

impl Resolver for PublicOnly {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let resolved = self.0.resolve(uri, config, timeout)?;
        let mut public = self.empty();
        for address in &resolved {
            if kind_of(address.ip()).is_none() {
                public.push(*address);
            }
        }
        if public.is_empty() {
            let host = uri.host().unwrap_or_default();
            return Err(ureq::Error::Io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "refused to connect: {host} resolves only to loopback, private or link-local addresses"
                ),
            )));
        }
        Ok(public)
    }
}

/// What kind of non-public address `ip` is, if it is one.
pub(crate) fn kind_of(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => kind_of_v4(ip),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped().or_else(|| embedded_v4(ip)) {
            Some(v4) => kind_of_v4(v4),
            None => kind_of_v6(ip),
        },
    }
}

fn kind_of_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        // RFC 1918, and the carrier-grade NAT range.
        Some("private")
    } else if ip.is_link_local() {
        // 169.254.0.0/16: cloud metadata services live here.
        Some("link-local")
    } else if ip.is_unspecified()
        || a == 0
        || a >= 224
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (b == 18 || b == 19))
    {
        // Unspecified, multicast and reserved (240/4, broadcast), IETF
        // protocol assignments, benchmarking.
        Some("non-routable")
    } else {
        None
    }
}

/// The IPv4 address inside an IPv4-compatible (`::a.b.c.d`), NAT64
/// (`64:ff9b::/96`) or 6to4 (`2002::/16`) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0, _, _] if !ip.is_loopback() && !ip.is_unspecified() => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, a, b, ..] => Some(Ipv4Addr::new((a >> 8) as u8, a as u8, (b >> 8) as u8, b as u8)),
        _ => None,
    }
}

fn kind_of_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if first & 0xfe00 == 0xfc00 {
        // Unique local (fd00:ec2::254 is a metadata service).
        Some("private")
    } else if first & 0xffc0 == 0xfe80 || first & 0xffc0 == 0xfec0 {
        // Link-local, and the deprecated site-local range.
        Some("link-local")
    } else if ip.is_unspecified() || ip.is_multicast() {
        Some("non-routable")
    } else {
        None
    }
}

/// Where a redirect from `base` to `location` leads (absolute URL,
/// scheme-relative, absolute path or relative path).
pub(crate) fn redirect_target(base: &str, location: &str) -> Option<String> {
    let location = location.trim();
    if location.contains("://") {
        return Some(location.to_owned());
    }
    let (scheme, rest) = base.split_once("://")?;
    if let Some(authority_and_path) = location.strip_prefix("//") {
        return Some(format!("{scheme}://{authority_and_path}"));
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    if location.starts_with('/') {
        return Some(format!("{scheme}://{authority}{location}"));
    }
    let path = rest[authority.len()..].split(['?', '#']).next().unwrap_or_default();
    let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
    Some(format!("{scheme}://{authority}{dir}/{location}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> bool {
        let policy = Destinations { allow_private: false };
        matches!(policy.check(url), Err(e) if e.kind() == ErrorKind::PrivateAddress)
    }

    #[test]
    fn private_destinations_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9464/metrics",
            "http://localhost/x",
            "http://api.localhost/x",
            "http://10.1.2.3/x",
            "http://172.16.0.1/x",
            "http://192.168.1.1/x",
            "http://100.64.0.1/x",
            "http://169.254.169.254/latest/meta-data/",
            "http://0.0.0.0/x",
            "http://[::1]/x",
            "http://[fd00:ec2::254]/x",
            "http://[fe80::1]/x",
            "http://[::ffff:127.0.0.1]/x",
            "http://2130706433/x",
            "http://0x7f.1/x",
            "http://127.1/x",
            "http://017700000001/x",
            "http://127.0.0.1./x",
            "http://0251.0376.0251.0376/latest/",
            "http://[64:ff9b::a9fe:a9fe]/x",
            "http://[2002:7f00:1::]/x",
            "http://[::127.0.0.1]/x",
            "http://[fec0::1]/x",
            "http://198.18.0.1/x",
        ] {
            assert!(refused(url), "{url}");
        }
        for url in
            ["https://files.pythonhosted.org/p/a.whl", "http://93.184.215.14/x", "http://[2606:4700::1]/x"]
        {
            assert!(!refused(url), "{url}");
        }
        let allowed = Destinations { allow_private: true };
        assert!(allowed.check("http://127.0.0.1/x").is_ok());
        assert!(refused("http://localhost.:8000/x"));
        assert_eq!(inet_aton("1.2.3.4"), Some(Ipv4Addr::new(1, 2, 3, 4)));
        assert_eq!(inet_aton("files"), None);
        assert_eq!(inet_aton("1.2.3.256"), None);
    }

    #[test]
    fn the_download_resolver_keeps_only_public_addresses() {
        let resolve = |url: &str| {
            let uri: ureq::http::Uri = url.parse().unwrap();
            let config = ureq::config::Config::default();
            PublicOnly::default().resolve(&uri, &config, ureq::unversioned::transport::NextTimeout::default())
        };
        // What a name answers at connection time is what counts.
        match resolve("http://localhost:8000/x") {
            Err(ureq::Error::Io(err)) => {
                assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}")
            }
            other => panic!("loopback was resolved: {other:?}"),
        }
        let public = resolve("http://93.184.215.14:80/x").unwrap();
        assert_eq!(public.len(), 1);
    }

    #[test]
    fn redirect_targets_resolve_like_a_browser() {
        let base = "https://h.example/a/b/c.whl?x=1";
        assert_eq!(redirect_target(base, "https://o.example/z").as_deref(), Some("https://o.example/z"));
        assert_eq!(redirect_target(base, "//o.example/z").as_deref(), Some("https://o.example/z"));
        assert_eq!(redirect_target(base, "/z").as_deref(), Some("https://h.example/z"));
        assert_eq!(redirect_target(base, "d.whl").as_deref(), Some("https://h.example/a/b/d.whl"));
    }
}
