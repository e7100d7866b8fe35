//! Who is on the other end: the client's address and `User-Agent`, passed to the core
//! (as `ClientInfo`) on every call that it throttles or records.
//!
//! The address is the TCP peer's. `X-Forwarded-For` is believed only when that peer
//! is one of [`WebConfig::trusted_proxies`](crate::WebConfig::trusted_proxies): then
//! the header is read from the right (each proxy appends the address it was reached
//! from), skipping trusted proxies, and the first address that is not one is the
//! client. Anything left of it was written by the client and may be forged.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use auth_core::api::ClientInfo;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use crate::AppState;
use crate::config::TrustedProxy;

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Where a request comes from: its `User-Agent` and the client's address (empty when
/// the server was not started with connection info, e.g. in some embeddings).
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientMeta {
    user_agent: String,
    ip: String,
}

impl ClientMeta {
    /// As the core's `ClientInfo`.
    pub(crate) fn info(&self) -> ClientInfo {
        ClientInfo {
            user_agent: self.user_agent.clone(),
            ip: self.ip.clone(),
        }
    }
}

impl FromRequestParts<AppState> for ClientMeta {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        Ok(Self::from_parts(parts, &state.config.trusted_proxies))
    }
}

impl ClientMeta {
    /// Where a request comes from, believing `X-Forwarded-For` from `trusted` proxies.
    pub(crate) fn from_parts(parts: &Parts, trusted: &[TrustedProxy]) -> Self {
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        // Present when served with `into_make_service_with_connect_info::<SocketAddr>()`.
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        let ip = peer
            .map(|peer| client_ip(peer, &parts.headers, trusted))
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        Self { user_agent, ip }
    }
}

/// The client's address for a request from `peer`.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[TrustedProxy]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|t| t.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    // Several header lines are one list, in order.
    let hops = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .flat_map(|line| line.as_bytes().split(|&b| b == b','))
        .collect::<Vec<_>>();
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        match parse_hop(hop) {
            Some(ip) if is_trusted(ip) => client = ip,
            Some(ip) => return ip,
            // Garbage: whatever is left of it cannot be traced, so the last proxy that
            // we trust is as far as we can see.
            None => return client,
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, maybe with a port (`1.2.3.4:5`,
/// `[::1]:5`) as some proxies write it.
fn parse_hop(raw: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    text.parse::<IpAddr>()
        .or_else(|_| text.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn xff(lines: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(X_FORWARDED_FOR, HeaderValue::from_static(l));
        }
        h
    }

    fn proxies(list: &[&str]) -> Vec<TrustedProxy> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_header_is_ignored_from_untrusted_peers() {
        let h = xff(&["1.1.1.1"]);
        assert_eq!(client_ip(ip("203.0.113.9"), &h, &[]), ip("203.0.113.9"));
        let trusted = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), &h, &trusted),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = proxies(&["10.0.0.0/8", "fd00::/8"]);
        // The client forged "6.6.6.6"; the outer proxy appended the real address.
        let h = xff(&["6.6.6.6, 198.51.100.7, 10.0.0.2"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("198.51.100.7"));
        // The same across several header lines, with ports and IPv6.
        let h = xff(&["6.6.6.6", "[2001:db8::5]:4431", "fd00::3"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("2001:db8::5"));
        let h = xff(&["198.51.100.7:5555"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("198.51.100.7"));
    }

    #[test]
    fn without_a_usable_header_the_nearest_trusted_hop_is_used() {
        let trusted = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
        // Only proxies: the leftmost is as far as we can see.
        let h = xff(&["10.9.9.9, 10.0.0.2"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.9.9.9"));
        // Garbage stops the walk at the last trusted hop; what is left of it is unknown.
        let h = xff(&["6.6.6.6, unknown, 10.0.0.2"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.2"));
    }

    #[test]
    fn ipv4_mapped_peers_count_as_ipv4() {
        let trusted = proxies(&["10.0.0.1"]);
        let h = xff(&["198.51.100.7"]);
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), &h, &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(ip("::ffff:203.0.113.9"), &h, &[]),
            ip("203.0.113.9")
        );
    }
}
