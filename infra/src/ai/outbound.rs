//! Where the Replicate provider may download outputs from. A prediction's
//! output URL comes from outside; followed blindly it would let whoever
//! controls it make the worker fetch internal addresses (cloud metadata,
//! Postgres' HTTP neighbours, the worker's own loopback).
//!
//! An output URL must be `https`, name a configured host
//! (`LOKIZ_REPLICATE_OUTPUT_HOSTS`; `*.example.com` matches subdomains), and
//! resolve only to public addresses — checked when connecting (a resolver
//! that drops loopback, private, link-local, CGNAT, multicast and unspecified
//! addresses), so DNS rebinding does not get around it. Redirects are
//! followed (at most 3) only to URLs that pass the same checks.
//!
//! `LOKIZ_REPLICATE_INSECURE_OUTPUTS=1` (development only; the process
//! refuses it in production) lifts the https and address rules for a local
//! fake provider.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// The rules for output downloads.
#[derive(Debug, Clone)]
pub struct OutputPolicy {
    pub hosts: Vec<String>,
    pub insecure: bool,
}

impl OutputPolicy {
    /// Whether `url` may be fetched (before any DNS: scheme, host, literal
    /// addresses).
    pub fn check(&self, url: &url::Url) -> Result<(), String> {
        if url.scheme() != "https" && !(self.insecure && url.scheme() == "http") {
            return Err(format!("{} is not https", url.scheme()));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => {
                self.check_ip(IpAddr::V4(ip))?;
                ip.to_string()
            }
            Some(url::Host::Ipv6(ip)) => {
                self.check_ip(IpAddr::V6(ip))?;
                ip.to_string()
            }
            None => return Err("no host".into()),
        };
        let allowed = self.hosts.iter().any(|h| match h.strip_prefix("*.") {
            Some(parent) => host.ends_with(&format!(".{parent}")),
            None => *h == host,
        });
        if allowed {
            Ok(())
        } else {
            Err(format!("{host} is not a configured output host"))
        }
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        if self.insecure || is_public(ip) {
            Ok(())
        } else {
            Err(format!("{ip} is not a public address"))
        }
    }

    /// An HTTP client that applies the policy on every connection and
    /// redirect.
    pub fn client(&self, timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
        let redirects = self.clone();
        let mut builder = reqwest::Client::builder().timeout(timeout).redirect(
            reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 3 {
                    attempt.error("too many redirects")
                } else if let Err(why) = redirects.check(attempt.url()) {
                    attempt.error(format!("redirect refused: {why}"))
                } else {
                    attempt.follow()
                }
            }),
        );
        if !self.insecure {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        builder.build()
    }
}

/// Addresses anybody on the internet can reach: not loopback, private,
/// link-local, shared (CGNAT), multicast, broadcast, documentation or
/// unspecified.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
        }
    }
}

/// Resolves names, keeping public addresses only.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> OutputPolicy {
        OutputPolicy {
            hosts: vec!["replicate.delivery".into(), "*.replicate.delivery".into()],
            insecure: false,
        }
    }

    fn check(url: &str) -> Result<(), String> {
        policy().check(&url::Url::parse(url).unwrap())
    }

    #[test]
    fn only_https_on_configured_hosts() {
        assert!(check("https://replicate.delivery/x/out.mp4").is_ok());
        assert!(check("https://pbxt.replicate.delivery/x/out.mp4").is_ok());
        assert!(check("http://replicate.delivery/x/out.mp4").is_err());
        assert!(check("https://evil.example/out.mp4").is_err());
        assert!(check("https://replicate.delivery.evil.example/out.mp4").is_err());
        assert!(check("file:///etc/passwd").is_err());
    }

    #[test]
    fn internal_addresses_are_never_fetched() {
        for url in [
            "https://127.0.0.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.5/x",
            "https://[::1]/x",
            "https://[fe80::1]/x",
            "https://[::ffff:192.168.0.1]/x",
            "https://100.64.0.1/x",
        ] {
            assert!(check(url).is_err(), "{url}");
        }
        assert!(is_public("8.8.8.8".parse().unwrap()));
        assert!(is_public("2606:4700::1111".parse().unwrap()));
        assert!(!is_public("172.16.3.4".parse().unwrap()));
        assert!(!is_public("fd00::1".parse().unwrap()));
    }
}
