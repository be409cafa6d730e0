//! Which customer URLs Herald will call. A webhook URL is the customer's input: left
//! unchecked, it would let anyone with an API key make Herald probe the network it runs in
//! (its database, a cloud metadata service at 169.254.169.254). Loopback, private,
//! link-local and other non-public addresses are refused unless
//! `webhooks.allow_private_targets` is set — both in the URL as written and in what its
//! name resolves to when called (so a name cannot be pointed at 127.0.0.1 later).

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a URL cannot be a webhook target, if it cannot.
pub fn refusal(url: &str, allow_private: bool) -> Option<&'static str> {
    checked(url, allow_private).err()
}

/// The URL parsed, if it can be a webhook target; else why not. The dispatcher posts to
/// what this answers, so each post parses its URL once.
pub fn checked(url: &str, allow_private: bool) -> Result<Url, &'static str> {
    let Ok(parsed) = Url::parse(url) else {
        return Err("must be an absolute http or https URL");
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http or https URL");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry credentials");
    }
    let host = match parsed.host() {
        Some(h) => h,
        None => return Err("must name a host"),
    };
    let private = !allow_private
        && match host {
            url::Host::Ipv4(ip) => !is_public(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => !is_public(IpAddr::V6(ip)),
            url::Host::Domain(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                name == "localhost" || name.ends_with(".localhost")
            }
        };
    if private {
        return Err(
            "is on a loopback, private or link-local address (set webhooks.allow_private_targets to allow)",
        );
    }
    Ok(parsed)
}

/// Whether an address is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // Carrier-grade NAT, 100.64.0.0/10.
        || (a == 100 && (64..128).contains(&b))
        // Benchmarking, 198.18.0.0/15; reserved, 240.0.0.0/4.
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments().first().copied().unwrap_or(0);
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // Unique local fc00::/7 and link-local fe80::/10.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80)
}

/// A resolver that drops non-public addresses: the check at the moment of the call, which a
/// name re-pointed after the URL was accepted cannot get around.
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let public: Vec<SocketAddr> = found.filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_local_targets_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9000/hook",
            "http://localhost/hook",
            "http://api.localhost/hook",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
            "http://100.64.0.1/",
        ] {
            assert!(refusal(url, false).is_some(), "{url} was allowed");
            assert_eq!(refusal(url, true), None, "{url} refused though allowed");
        }
    }

    #[test]
    fn public_targets_pass_and_malformed_ones_do_not() {
        assert_eq!(refusal("https://hooks.example.com/herald", false), None);
        assert_eq!(refusal("http://8.8.8.8/", false), None);
        assert!(refusal("ftp://example.com/", true).is_some());
        assert!(refusal("https://user:pw@example.com/", true).is_some());
        assert!(refusal("not a url", true).is_some());
    }
}
