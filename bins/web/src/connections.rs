//! Connections per client address, bounded at accept ([`WebConfig::max_connections_per_address`](crate::WebConfig::max_connections_per_address)).
//!
//! Every open connection is a task the server polls. A flood from one address over
//! hundreds of keep-alive connections is refused request by request (429), but each
//! refusal still costs a turn of the scheduler, and every other client's request waits
//! behind those turns. Bounding the connections one address may hold open bounds the
//! share of the server it can take: a connection over the bound is never read, no TLS
//! handshake, no HTTP parsing. It is held, idle, for
//! [`WebConfig::refusal_delay`](crate::WebConfig::refusal_delay) and then reset
//! (HAProxy's tarpit): closing it at once would hand the flood its connection slot
//! back for the next attempt, and the churn of accepts and closes would cost more than
//! the requests it replaced. At most [`MAX_HELD`] are held at once over all addresses
//! (they cost a file descriptor each); beyond that they are reset at once.
//!
//! The key is the peer's address, an IPv6 peer's /64 (one subscriber's prefix: an
//! attacker holding a /64 must not get 2^64 allowances). Trusted proxies
//! ([`WebConfig::trusted_proxies`](crate::WebConfig::trusted_proxies)) carry many
//! clients on their connections and are not bounded.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::WebConfig;
use crate::config::TrustedProxy;

/// Refused connections held idle at once, over all addresses, before they are reset.
pub(crate) const MAX_HELD: usize = 1024;

/// Counts open connections by client key and refuses those over the bound.
#[derive(Debug)]
pub(crate) struct ConnectionLimit {
    per_address: usize,
    exempt: Vec<TrustedProxy>,
    open: Mutex<HashMap<IpAddr, usize>>,
    /// How long a refused connection is held before it is reset.
    hold: Duration,
    /// Refused connections being held now.
    held: AtomicUsize,
}

impl ConnectionLimit {
    pub(crate) fn new(config: &WebConfig) -> Arc<Self> {
        Arc::new(Self {
            per_address: config.max_connections_per_address,
            exempt: config.trusted_proxies.clone(),
            open: Mutex::new(HashMap::new()),
            hold: config.refusal_delay,
            held: AtomicUsize::new(0),
        })
    }

    /// Refuses `stream`: holds it, unread, for the refusal delay if fewer than
    /// [`MAX_HELD`] are held, then resets it (zero linger: no `TIME_WAIT` left behind).
    async fn refuse(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        tracing::debug!(peer = %peer.ip(), "connection refused: too many open from this address");
        let _ = stream.set_zero_linger();
        if self.hold.is_zero() {
            return;
        }
        let held = self.held.fetch_add(1, Ordering::SeqCst);
        if held < MAX_HELD {
            tokio::time::sleep(self.hold).await;
        }
        self.held.fetch_sub(1, Ordering::SeqCst);
        drop(stream);
    }

    /// A slot for a connection from `peer`, held until the returned guard drops;
    /// `None` when `peer` already holds as many as allowed.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Admitted> {
        let peer = peer.to_canonical();
        if self.per_address == 0 || self.exempt.iter().any(|p| p.contains(peer)) {
            return Some(Admitted(None));
        }
        let key = key(peer);
        let mut open = self.open.lock();
        let count = open.entry(key).or_insert(0);
        if *count >= self.per_address {
            return None;
        }
        *count += 1;
        Some(Admitted(Some((Arc::clone(self), key))))
    }

    #[cfg(test)]
    fn open_from(&self, peer: IpAddr) -> usize {
        self.open.lock().get(&key(peer)).copied().unwrap_or(0)
    }
}

/// The address a connection counts against: IPv4 as is, IPv6 by its /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// One admitted connection's place in the count, given back on drop.
#[derive(Debug)]
pub(crate) struct Admitted(Option<(Arc<ConnectionLimit>, IpAddr)>);

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some((limit, key)) = self.0.take() {
            let mut open = limit.open.lock();
            if let Some(count) = open.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    open.remove(&key);
                }
            }
        }
    }
}

/// A stream holding its connection's place in the count.
#[derive(Debug)]
pub(crate) struct Counted<S> {
    pub(crate) inner: S,
    _admitted: Admitted,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// `axum::serve`'s listener with the bound applied: connections over it are closed
/// at once and the next one is accepted.
pub(crate) struct LimitedListener {
    pub(crate) inner: TcpListener,
    pub(crate) limit: Arc<ConnectionLimit>,
}

impl axum::serve::Listener for LimitedListener {
    type Io = Counted<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, peer) = axum::serve::Listener::accept(&mut self.inner).await;
            match self.limit.admit(peer.ip()) {
                Some(admitted) => {
                    return (
                        Counted {
                            inner: stream,
                            _admitted: admitted,
                        },
                        peer,
                    );
                }
                None => {
                    tokio::spawn(Arc::clone(&self.limit).refuse(stream, peer));
                    // Let other tasks run between refusals: a burst of connections
                    // over the bound must not hold this worker thread for long.
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// The same bound for `axum-server` (HTTPS): applied before the TLS handshake.
#[derive(Debug, Clone)]
pub(crate) struct LimitAcceptor<A> {
    pub(crate) inner: A,
    pub(crate) limit: Arc<ConnectionLimit>,
}

impl<A, S> axum_server::accept::Accept<TcpStream, S> for LimitAcceptor<A>
where
    A: axum_server::accept::Accept<TcpStream, S> + Clone + Send + Sync + 'static,
    A::Future: Send,
    S: Send + 'static,
{
    type Stream = Counted<A::Stream>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let inner = self.inner.clone();
        let limit = Arc::clone(&self.limit);
        // axum-server runs this in the connection's own task: holding a refused
        // connection here holds nothing else up.
        Box::pin(async move {
            let peer = stream.peer_addr()?;
            let Some(admitted) = limit.admit(peer.ip()) else {
                limit.refuse(stream, peer).await;
                return Err(io::Error::other("too many connections from this address"));
            };
            let (stream, service) = inner.accept(stream, service).await?;
            Ok((
                Counted {
                    inner: stream,
                    _admitted: admitted,
                },
                service,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_address: usize, exempt: &[&str]) -> Arc<ConnectionLimit> {
        ConnectionLimit::new(&WebConfig {
            max_connections_per_address: per_address,
            trusted_proxies: exempt.iter().map(|p| p.parse().unwrap()).collect(),
            ..WebConfig::default()
        })
    }

    #[test]
    fn an_address_holds_at_most_its_bound_and_gets_places_back() {
        let limit = limit(2, &[]);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = limit.admit(a).unwrap();
        let _second = limit.admit(a).unwrap();
        assert!(limit.admit(a).is_none());
        assert!(limit.admit(b).is_some(), "another address is not affected");
        drop(first);
        assert_eq!(limit.open_from(a), 1);
        assert!(limit.admit(a).is_some());
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        let limit = limit(1, &[]);
        let _one = limit.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(
            limit
                .admit("2001:db8:1:2:ffff::9".parse().unwrap())
                .is_none()
        );
        assert!(limit.admit("2001:db8:1:3::1".parse().unwrap()).is_some());
        let _v4 = limit.admit("192.0.2.7".parse().unwrap()).unwrap();
        assert!(limit.admit("::ffff:192.0.2.7".parse().unwrap()).is_none());
    }

    #[test]
    fn trusted_proxies_and_zero_are_unbounded_and_the_table_empties() {
        let limit = limit(1, &["10.0.0.0/8"]);
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let held: Vec<_> = (0..5).map(|_| limit.admit(proxy).unwrap()).collect();
        assert_eq!(limit.open_from(proxy), 0, "proxies are not counted");
        drop(held);
        let other: IpAddr = "192.0.2.1".parse().unwrap();
        drop(limit.admit(other).unwrap());
        assert!(limit.open.lock().is_empty());
        let off = self::limit(0, &[]);
        let _all: Vec<_> = (0..100).map(|_| off.admit(other).unwrap()).collect();
    }
}
