//! Where downloads may go: a job's URL (or a redirect) must not make the
//! node fetch from its own machine, its private network or a cloud
//! metadata service, unless that is allowed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};

use crate::error::{Error, ErrorKind};

/// The download destination policy of one client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Destinations {
    /// Loopback, private and link-local addresses allowed.
    pub(crate) allow_private: bool,
    /// Requests go through a proxy, which resolves host names itself:
    /// only literal addresses and `localhost` can be checked here.
    pub(crate) via_proxy: bool,
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
        if let Ok(ip) = host.parse::<IpAddr>() {
            return match kind_of(ip) {
                Some(kind) => refuse(ip.to_string(), kind),
                None => Ok(()),
            };
        }
        if self.via_proxy {
            return Ok(());
        }
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

/// What kind of non-public address `ip` is, if it is one.
pub(crate) fn kind_of(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => kind_of_v4(ip),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
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
    } else if ip.is_unspecified() || a == 0 || ip.is_broadcast() || ip.is_multicast() {
        Some("non-routable")
    } else {
        None
    }
}

fn kind_of_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if first & 0xfe00 == 0xfc00 {
        // Unique local (fd00:ec2::254 is a metadata service).
        Some("private")
    } else if first & 0xffc0 == 0xfe80 {
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
        let policy = Destinations { allow_private: false, via_proxy: true };
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
        ] {
            assert!(refused(url), "{url}");
        }
        for url in
            ["https://files.pythonhosted.org/p/a.whl", "http://93.184.215.14/x", "http://[2606:4700::1]/x"]
        {
            assert!(!refused(url), "{url}");
        }
        let allowed = Destinations { allow_private: true, via_proxy: false };
        assert!(allowed.check("http://127.0.0.1/x").is_ok());
        // Without a proxy, names are resolved and checked.
        let direct = Destinations { allow_private: false, via_proxy: false };
        assert!(direct.check("http://localhost.:8000/x").is_err());
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
