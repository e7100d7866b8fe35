//! [`WebConfig`] and the typed values it holds: the site's public URL, the proxies
//! whose `X-Forwarded-For` is believed, and the key that CSRF tokens are derived with.

use auth_core::ThrottlePolicy;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use axum::http::Uri;
use ipnet::IpNet;
use rand::RngCore;
use zeroize::Zeroizing;

/// Default request body limit: 16 KiB (credentials and tokens are small).
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;

/// Default bound on connections one client address holds open: 256. A browser opens at
/// most six per site over HTTP/1.1 and one over HTTP/2, but a carrier-grade NAT puts
/// hundreds of phones behind one IPv4 address, and refusing them would be the attack
/// done for the attacker. What the bound protects is file descriptors and memory;
/// the per-address throttles protect the CPU.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 256;

/// How the site behaves.
///
/// Cookies are `Secure` and `__Host-` prefixed when [`WebConfig::secure_cookies`] is
/// on, when [`WebConfig::public_url`] is `https://`, and on every request that
/// [`serve_tls`](crate::serve_tls) answers: over HTTPS they are secure by default.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Force `Secure`, `__Host-` prefixed cookies even when neither the public URL nor
    /// the listener says HTTPS (e.g. behind a TLS-terminating proxy whose URL is not
    /// configured). Leave off for plain-HTTP development, where browsers would drop
    /// such cookies. Default `false`.
    pub secure_cookies: bool,
    /// The URL browsers use to reach the site (`https://login.example.com`). With
    /// `https://`, cookies are secure; form posts whose `Origin` is another origin are
    /// refused. Default `None`: the `Host` header is taken as the origin.
    pub public_url: Option<PublicUrl>,
    /// Peers (reverse proxies, load balancers) whose `X-Forwarded-For` names the
    /// client. From any other peer the header is ignored and the socket's address is
    /// the client's. Default: none.
    pub trusted_proxies: Vec<TrustedProxy>,
    /// The key CSRF tokens are derived with. Give every instance behind one load
    /// balancer the same key; `None` (the default) draws a random one per process, so
    /// forms rendered before a restart must be reloaded.
    pub csrf_key: Option<CsrfKey>,
    /// Largest accepted request body; bigger ones get `413`. Default 16 KiB.
    pub max_body_bytes: usize,
    /// Throttling of logins, registrations and refreshes by client address, applied
    /// here before the auth service is called (which throttles too), so that a flood
    /// is refused at the edge. Default: [`ThrottlePolicy::default()`]; `None` turns it
    /// off (tests that drive many logins from one address).
    pub throttle: Option<ThrottlePolicy>,
    /// Connections one client address (an IPv6 client's /64) may hold open at once;
    /// more are closed as soon as they are accepted, so that one address cannot take
    /// the server's attention from everyone else. Trusted proxies are not bounded.
    /// Applied by [`serve`](crate::serve) and [`serve_tls`](crate::serve_tls).
    /// Default [`DEFAULT_MAX_CONNECTIONS_PER_ADDRESS`]; 0 = unbounded.
    pub max_connections_per_address: usize,
    /// How long a request refused by [`WebConfig::throttle`] is held before its 429 is
    /// sent (never longer than its `Retry-After`): a flooding address gets one answer
    /// per connection per delay instead of as many as it can send. Default 1 second;
    /// zero answers at once.
    pub refusal_delay: Duration,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            secure_cookies: false,
            public_url: None,
            trusted_proxies: Vec::new(),
            csrf_key: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            throttle: Some(ThrottlePolicy::default()),
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            refusal_delay: Duration::from_secs(1),
        }
    }
}

impl WebConfig {
    /// True if cookies are secure on every request, whatever the listener.
    pub(crate) fn always_secure(&self) -> bool {
        self.secure_cookies || self.public_url.as_ref().is_some_and(PublicUrl::is_https)
    }
}

/// The origin browsers reach the site at: `http://` or `https://`, a host and
/// optionally a port; no path, query or credentials.
///
/// ```
/// let url: auth_web::PublicUrl = "https://Login.Example.com:443/".parse().unwrap();
/// assert!(url.is_https());
/// assert_eq!(url.origin(), "https://login.example.com");
/// assert!("https://example.com/auth".parse::<auth_web::PublicUrl>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    /// `scheme://host[:port]`, lower case, default port omitted (as browsers send
    /// `Origin`).
    origin: String,
    https: bool,
}

impl PublicUrl {
    /// True for `https://`.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The origin, as a browser sends it in `Origin`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The passkey relying party of a site at this URL: its host is the relying
    /// party id. `None` for an IP address, which WebAuthn does not accept.
    pub fn passkeys(&self) -> Option<auth_core::PasskeyConfig> {
        let authority = self.origin.split_once("://").map_or("", |(_, a)| a);
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        if host.is_empty() || host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok() {
            return None;
        }
        Some(auth_core::PasskeyConfig::new(host, self.origin.clone()))
    }
}

/// Passkeys for a development site at `http://localhost:PORT` (browsers treat
/// `localhost` as a secure context, so WebAuthn works there without TLS).
pub fn localhost_passkeys(port: u16) -> auth_core::PasskeyConfig {
    auth_core::PasskeyConfig::new("localhost", format!("http://localhost:{port}"))
}

impl FromStr for PublicUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("invalid public URL {text:?}: {why}");
        let uri: Uri = text
            .trim()
            .parse()
            .map_err(|_| bad("not a URL (expected e.g. https://login.example.com)"))?;
        let https = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            _ => return Err(bad("the scheme must be http:// or https://")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials are not allowed"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad(
                "the site must be served at the root (no path or query)",
            ));
        }
        if authority.host().is_empty() {
            return Err(bad("no host"));
        }
        let default_port = if https { 443 } else { 80 };
        let host = authority.host().to_ascii_lowercase();
        let origin = match authority.port_u16() {
            Some(port) if port != default_port => {
                format!("{}://{host}:{port}", if https { "https" } else { "http" })
            }
            _ => format!("{}://{host}", if https { "https" } else { "http" }),
        };
        Ok(Self { origin, https })
    }
}

impl fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)
    }
}

/// A proxy address or network (`10.0.0.7`, `10.0.0.0/8`, `fd00::/8`) whose
/// `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedProxy(IpNet);

impl TrustedProxy {
    /// True if `ip` is this proxy or inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl FromStr for TrustedProxy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if let Ok(ip) = t.parse::<IpAddr>() {
            return Ok(Self(IpNet::from(ip.to_canonical())));
        }
        t.parse::<IpNet>()
            .map(|net| Self(net.trunc()))
            .map_err(|_| {
                format!("invalid trusted proxy {text:?}: expected an IP address or a CIDR network such as 10.0.0.0/8")
            })
    }
}

impl fmt::Display for TrustedProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The secret that CSRF tokens are derived with (HMAC-SHA-256). Never printed: its
/// `Debug` says only that it is redacted. Wiped from memory when dropped.
#[derive(Clone)]
pub struct CsrfKey(Zeroizing<Vec<u8>>);

impl CsrfKey {
    /// Fewest secret bytes a key may have.
    pub const MIN_BYTES: usize = 32;

    /// A key from secret bytes, at least [`CsrfKey::MIN_BYTES`] of them (e.g. the
    /// contents of a key file shared by every instance of the site).
    ///
    /// # Errors
    ///
    /// Fewer than [`CsrfKey::MIN_BYTES`] bytes. The message does not contain the key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < Self::MIN_BYTES {
            return Err(format!(
                "a CSRF key needs at least {} bytes, got {}",
                Self::MIN_BYTES,
                bytes.len()
            ));
        }
        Ok(Self(Zeroizing::new(bytes.to_vec())))
    }

    /// A new random key (32 bytes from the operating system's generator).
    pub fn random() -> Self {
        let mut bytes = Zeroizing::new(vec![0u8; Self::MIN_BYTES]);
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_are_origins() {
        let url: PublicUrl = "https://Login.Example.com".parse().unwrap();
        assert_eq!(url.origin(), "https://login.example.com");
        assert!(url.is_https());
        let url: PublicUrl = "http://127.0.0.1:8080/".parse().unwrap();
        assert_eq!(url.origin(), "http://127.0.0.1:8080");
        assert!(!url.is_https());
        let url: PublicUrl = "http://[::1]:80".parse().unwrap();
        assert_eq!(url.origin(), "http://[::1]");
        for bad in [
            "login.example.com",
            "ftp://example.com",
            "https://example.com/auth",
            "https://example.com/?x=1",
            "https://user:pw@example.com",
            "https://",
            "",
        ] {
            assert!(bad.parse::<PublicUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn secure_by_default_with_an_https_public_url() {
        let mut config = WebConfig::default();
        assert!(!config.always_secure());
        config.public_url = Some("http://example.com".parse().unwrap());
        assert!(!config.always_secure());
        config.public_url = Some("https://example.com".parse().unwrap());
        assert!(config.always_secure());
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks() {
        let one: TrustedProxy = "10.0.0.7".parse().unwrap();
        assert!(one.contains("10.0.0.7".parse().unwrap()));
        assert!(!one.contains("10.0.0.8".parse().unwrap()));
        let net: TrustedProxy = "10.1.2.3/16".parse().unwrap();
        assert_eq!(net.to_string(), "10.1.0.0/16");
        assert!(net.contains("10.1.255.1".parse().unwrap()));
        assert!(
            net.contains("::ffff:10.1.0.9".parse().unwrap()),
            "IPv4-mapped peers of a dual-stack listener"
        );
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        let v6: TrustedProxy = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        for bad in ["", "10.0.0", "10.0.0.0/33", "proxy.internal", "10.0.0.1:80"] {
            assert!(bad.parse::<TrustedProxy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn csrf_keys_are_long_and_never_printed() {
        assert!(CsrfKey::from_bytes(&[7; 31]).is_err());
        let key = CsrfKey::from_bytes(b"0123456789abcdef0123456789abcdef").unwrap();
        assert!(!format!("{key:?}").contains("0123"));
        assert_ne!(CsrfKey::random().bytes(), CsrfKey::random().bytes());
    }
}
