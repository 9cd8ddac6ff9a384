//! Request rate limits (the `LOKIZ_RATE_LIMIT_*` settings), counted in the
//! store every API process shares (`lokiz_infra::rate_limit`).
//!
//! Every request under `/v1` counts against one general bucket: its user's
//! when it carries a valid access token, else its IP's (IPv6: the /64).
//! Some routes count against a second, narrower bucket first: login and
//! sign-up per IP, views per IP and video (login per account is counted by
//! the login handler, which reads the body). Answers carry
//! `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`
//! (unix seconds) of the general bucket, or of the bucket that refused:
//! `429 RATE_LIMIT_EXCEEDED` with `Retry-After`.
//!
//! Not counted: `/v1/blobs/…` (files, already bounded by their signed URLs;
//! a player makes many range requests) and the providers' signed webhooks.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lokiz_infra::rate_limit::{Decision, Limit};

use crate::error::ApiError;
use crate::ApiContext;

pub const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
pub const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
pub const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn rate_limit(State(ctx): State<ApiContext>, mut req: Request, next: Next) -> Response {
    // the token is verified once here, for everything after (extractors,
    // idempotency)
    let verdict = crate::extract::bearer(&ctx, req.headers());
    req.extensions_mut().insert(verdict);
    let limits = ctx.config.rate_limits;
    let path = req.uri().path();
    if !limits.enabled || !is_limited(path) {
        return next.run(req).await;
    }
    let ip = client_ip(
        req.headers(),
        req.extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip()),
        limits.trusted_proxies,
    );
    let ip_key = ip
        .map(|ip| address_key(&ctx, ip))
        .unwrap_or_else(|| "unknown".to_owned());
    if let Some((key, limit)) = narrow_bucket(req.method(), path, &ip_key, &limits) {
        let d = ctx.rate_limiter.check(&key, limit).await;
        if !d.allowed {
            return refused(d);
        }
    }
    let (key, limit) = match verdict {
        crate::extract::Bearer::User(user) => (format!("u:{user}"), limits.user),
        _ => (format!("ip:{ip_key}"), limits.anonymous),
    };
    let d = ctx.rate_limiter.check(&key, limit).await;
    if !d.allowed {
        return refused(d);
    }
    let mut resp = next.run(req).await;
    // a route's own, narrower verdict (login per account) is already there
    if !resp.headers().contains_key(LIMIT) {
        set_headers(resp.headers_mut(), d);
    }
    resp
}

/// Counts one request against `key` and answers 429 when it is over.
/// For limits a handler applies itself (login per account).
pub async fn check(ctx: &ApiContext, key: &str, limit: Limit) -> Result<(), Response> {
    if !ctx.config.rate_limits.enabled {
        return Ok(());
    }
    let d = ctx.rate_limiter.check(key, limit).await;
    if d.allowed {
        Ok(())
    } else {
        Err(refused(d))
    }
}

/// Whether requests to `path` (a route template or a request path) count
/// against the limits.
pub fn is_limited(path: &str) -> bool {
    path.starts_with("/v1/") && !is_exempt(path)
}

fn is_exempt(path: &str) -> bool {
    path.starts_with("/v1/blobs/")
        || path == "/v1/payments/webhook"
        || path.starts_with("/v1/ai/callbacks/")
}

fn narrow_bucket(
    method: &Method,
    path: &str,
    ip: &str,
    limits: &lokiz_infra::config::RateLimits,
) -> Option<(String, Limit)> {
    if method != Method::POST {
        return None;
    }
    match path {
        "/v1/auth/login" => Some((format!("login:{ip}"), limits.login_ip)),
        "/v1/auth/register" => Some((format!("signup:{ip}"), limits.signup_ip)),
        _ => {
            let video = path
                .strip_prefix("/v1/videos/")
                .and_then(|rest| rest.strip_suffix("/view"))
                .filter(|id| !id.contains('/'))?;
            let video = crate::extract::parse_id(video)?;
            Some((format!("view:{ip}:{video}"), limits.views))
        }
    }
}

/// The client's address: the TCP peer, or with `trusted` proxies in front,
/// the entry that many places from the right of `X-Forwarded-For` (the
/// proxies append; what the client wrote itself is further left).
pub fn client_ip(headers: &HeaderMap, peer: Option<IpAddr>, trusted: u8) -> Option<IpAddr> {
    if trusted == 0 {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .map(|s| s.parse::<IpAddr>().ok())
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default();
    forwarded
        .len()
        .checked_sub(usize::from(trusted))
        .and_then(|i| forwarded.get(i).copied())
        .or(peer)
}

/// What the limits table keys an address by: a salted hash of its bucket
/// (the salt derives from the server secret), never the address itself.
fn address_key(ctx: &ApiContext, ip: IpAddr) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(b"lokiz-rate-limit:");
    h.update(ctx.config.jwt_secret.expose().as_bytes());
    h.update(b":");
    h.update(ip_bucket(ip).as_bytes());
    h.finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// IPv4: the address; IPv6: its /64 (one subscriber's prefix).
pub fn ip_bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

fn set_headers(headers: &mut HeaderMap, d: Decision) {
    headers.insert(LIMIT, HeaderValue::from(d.limit));
    headers.insert(REMAINING, HeaderValue::from(d.remaining));
    headers.insert(RESET, HeaderValue::from(d.reset_at));
}

fn refused(d: Decision) -> Response {
    metrics::counter!("lokiz_rate_limited_total").increment(1);
    let mut resp = ApiError::TooManyRequests {
        code: "RATE_LIMIT_EXCEEDED",
        message: "Too many requests; retry after the time Retry-After gives.",
        retry_after: d.retry_after,
    }
    .into_response();
    set_headers(resp.headers_mut(), d);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_callers_share_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_bucket(a), ip_bucket(b));
        assert_ne!(ip_bucket(a), ip_bucket(c));
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert_eq!(ip_bucket(mapped), "10.0.0.7");
    }

    #[test]
    fn forwarded_for_is_read_only_behind_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.9"),
        );
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(client_ip(&h, Some(peer), 0), Some(peer));
        // one proxy appended the client's address: the rightmost entry
        assert_eq!(
            client_ip(&h, Some(peer), 1),
            Some("203.0.113.9".parse().unwrap())
        );
        assert_eq!(
            client_ip(&h, Some(peer), 2),
            Some("6.6.6.6".parse().unwrap())
        );
        // fewer entries than proxies: the peer
        assert_eq!(client_ip(&h, Some(peer), 3), Some(peer));
    }
}
