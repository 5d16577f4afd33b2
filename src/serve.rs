//! The accept loop. Every connection's request head is bounded in size and in time
//! (a client that never finishes its request would otherwise hold a file descriptor
//! and the shutdown drain forever), and the drain waits for open connections only
//! until the process's drain deadline.

use std::time::Duration;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What bounds one connection's request head, and how many connections may be
/// waiting for theirs.
pub(crate) struct HeadBounds {
    pub(crate) read_timeout: Duration,
    pub(crate) max_bytes: usize,
    /// Connections accepted and not (yet) upgraded to a WebSocket (`server.max_unconnected_sockets`).
    pub(crate) max_unconnected: usize,
}

/// One accepted connection counted against [`HeadBounds::max_unconnected`] until it
/// is dropped: when its HTTP connection ends, which for a WebSocket is when it has
/// been upgraded (the session then counts in the registry).
struct Unconnected(Arc<AtomicUsize>);

impl Unconnected {
    /// A slot, or None when `max` connections already hold one.
    fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(count.clone()))
    }
}

impl Drop for Unconnected {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Binds `addr` with an accept queue of `backlog` connections (the kernel caps it at
/// `net.core.somaxconn`). Connections the process has not accepted yet wait there; when
/// it is full the kernel drops new SYNs and the clients retry after 1, 3, 7, 15 s…, so a
/// reconnect storm larger than the queue turns into tens of seconds of connect time.
pub(crate) fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As TcpListener::bind does: a restarted pod rebinds while old sockets linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Pause after a failed accept (typically EMFILE: out of file descriptors), so the
/// loop does not spin while the process is at its limit.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `stop`; every connection runs on `conns`, and
/// finishes its request in flight once `stop` fires (see [`drain`]). Upgraded
/// WebSockets leave `conns`: they follow their own shutdown (close 1012).
pub(crate) async fn accept(
    listener: TcpListener,
    router: axum::Router,
    head: HeadBounds,
    stop: CancellationToken,
    conns: TaskTracker,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(head.read_timeout)
        .max_buf_size(head.max_bytes);
    let unconnected = Arc::new(AtomicUsize::new(0));
    loop {
        let tcp = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    metrics::counter!("ferry_accept_errors_total").increment(1);
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Silent and half-sent connections are bounded in number as well as in time:
        // past the cap a new one is closed at once instead of holding a descriptor.
        let Some(slot) = Unconnected::take(&unconnected, head.max_unconnected) else {
            metrics::counter!("ferry_unconnected_refused_total").increment(1);
            tracing::debug!("server.max_unconnected_sockets reached: connection closed");
            drop(tcp);
            continue;
        };
        // Small frames (acks, pushes) go out at once instead of waiting behind Nagle's
        // algorithm for the peer's delayed ACK (about 40 ms per request otherwise).
        let _ = tcp.set_nodelay(true);
        let (builder, router, stop) = (builder.clone(), router.clone(), stop.clone());
        conns.spawn(async move {
            let _slot = slot;
            if !first_byte(&tcp, &stop).await {
                return;
            }
            let conn = builder
                .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(router))
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

/// How long an accepted connection may stay silent before its first byte. The head
/// timeout counts from that byte, not from the accept: in a reconnect storm the kernel
/// completes thousands of handshakes at once and ferry accepts them within seconds,
/// while many requests reach it only later (measured: ferry's sockets held no unread
/// bytes while thousands of clients had not sent their upgrade yet). Counted from the
/// accept, the head timeout closed those connections before their request arrived
/// ("Handshake not finished" for about 10–20% of a 10k storm). A client that never
/// sends is still dropped, after this long; one that starts its head and stops is cut
/// by the head timeout as before.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits until `tcp` has a byte to read (peeked, left for the HTTP parser); false at
/// EOF, when it stayed silent for [`FIRST_BYTE_TIMEOUT`], failed, or the server is
/// stopping. (`readable()` is not enough: it may report a fresh socket ready at once.)
async fn first_byte(tcp: &tokio::net::TcpStream, stop: &CancellationToken) -> bool {
    let mut byte = [0u8; 1];
    tokio::select! {
        r = tokio::time::timeout(FIRST_BYTE_TIMEOUT, tcp.peek(&mut byte)) => matches!(r, Ok(Ok(1))),
        () = stop.cancelled() => false,
    }
}

/// Waits for the tasks of `tracker` (open HTTP connections, WebSocket sessions) to
/// finish, until `deadline` (the one deadline of the whole drain); the rest are
/// dropped with the process.
pub(crate) async fn drain(tracker: &TaskTracker, deadline: Instant, what: &str) {
    tracker.close();
    if tokio::time::timeout_at(deadline, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tracker.len(),
            "{what} still open at the drain deadline; dropped"
        );
    }
}

/// File descriptors kept for everything that is not a client socket: the backends'
/// connections and files, the HTTP connections that are not WebSockets.
fn reserved_fds(limit: u64) -> u64 {
    (limit / 10).max(256)
}

/// The open-file soft limit of this process (RLIMIT_NOFILE), where the platform
/// tells it (Linux: /proc/self/limits).
fn fd_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `configured` lowered to what the file-descriptor limit can hold, with a warning
/// when it had to be lowered: accepting sockets beyond it would fail with EMFILE for
/// every client and for the backends alike.
pub(crate) fn max_connections(configured: usize) -> usize {
    within_fds(configured, 1, "limits.max_connections")
}

/// `configured` lowered to half of what the file-descriptor limit leaves for
/// sockets, with a warning when it had to be: connections that never become a
/// session (silent, mid-head) may hold at most half of the descriptors, so they can
/// never exhaust the process for the sessions and the backends.
pub(crate) fn max_unconnected(configured: usize) -> usize {
    within_fds(configured, 2, "server.max_unconnected_sockets")
}

/// `configured`, or the descriptors left for sockets divided by `share` when that is
/// smaller (logged, naming `key`).
fn within_fds(configured: usize, share: u64, key: &str) -> usize {
    let Some(limit) = fd_limit() else {
        return configured;
    };
    let allowed = usize::try_from(limit.saturating_sub(reserved_fds(limit)) / share)
        .unwrap_or(usize::MAX)
        .max(1);
    if configured > allowed {
        tracing::warn!(
            key,
            configured,
            fd_limit = limit,
            effective = allowed,
            "above what the open-file limit allows; lowered"
        );
        allowed
    } else {
        configured
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unconnected_sockets_hold_at_most_half_of_the_fds() {
        let limit = fd_limit().expect("/proc/self/limits names the open-file limit");
        let capped = max_unconnected(usize::MAX) as u64;
        assert!(
            capped <= (limit - reserved_fds(limit)) / 2,
            "{capped} of {limit}"
        );
        assert_eq!(max_unconnected(1), 1);
    }

    #[test]
    fn the_connection_cap_leaves_room_below_the_fd_limit() {
        let limit = fd_limit().expect("/proc/self/limits names the open-file limit");
        let capped = max_connections(usize::MAX) as u64;
        assert!(capped < limit, "{capped} sockets with {limit} fds");
        assert!(capped >= limit - reserved_fds(limit));
        assert_eq!(max_connections(10), 10);
    }

    /// Opens `n` connections to a listener that never accepts; how many complete the
    /// handshake within the timeout (the rest wait for room in its accept queue).
    async fn handshakes_queued(backlog: u32, n: usize) -> usize {
        let listener = bind("127.0.0.1:0".parse().expect("addr"), backlog).expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let mut tries = tokio::task::JoinSet::new();
        for _ in 0..n {
            tries.spawn(async move {
                tokio::time::timeout(
                    Duration::from_millis(700),
                    tokio::net::TcpStream::connect(addr),
                )
                .await
            });
        }
        let mut open = Vec::new();
        while let Some(r) = tries.join_next().await {
            if let Ok(Ok(Ok(s))) = r {
                open.push(s);
            }
        }
        drop(listener);
        open.len()
    }

    #[tokio::test]
    async fn the_listen_backlog_is_the_configured_one() {
        // Linux lets backlog + 1 connections wait; with mio's default (128) all 64 would.
        let small = handshakes_queued(4, 64).await;
        assert!(
            small <= 5,
            "{small} of 64 handshakes completed with a backlog of 4"
        );
        assert_eq!(handshakes_queued(128, 64).await, 64);
    }
}
