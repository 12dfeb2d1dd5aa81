//! The byte tunnel of an upgraded connection (WebSocket and other `Upgrade` protocols).
//!
//! Entered only after the upstream answered `101 Switching Protocols` with an `Upgrade` the
//! client asked for (see `proxy::forward`); from then on both connections carry opaque bytes and
//! the gateway copies them both ways until one side is done.
//!
//! Invariants:
//! - Two fixed buffers per tunnel (no allocation per read); a write completes before the next
//!   read of the same direction, so a slow reader slows its writer (backpressure), never memory.
//! - Half-close is passed on: EOF from one side shuts down writing to the other, and the tunnel
//!   lasts until both directions ended.
//! - The tunnel closes after `idle` without a byte in either direction, and at the gateway's
//!   drain deadline (`server.drain_timeout` after a drain started): a drain never waits on an
//!   open WebSocket forever.
//! - The upstream connection is owned by the tunnel and dropped with it: never pooled.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::proxy::Shared;

const BUF: usize = 16 * 1024;

/// How a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides closed (or one failed).
    Closed,
    /// No byte in either direction for the idle timeout.
    Idle,
    /// The gateway's drain deadline passed.
    Drained,
}

impl End {
    /// The access log's `error_kind` for this ending (`None` for a normal close).
    pub fn error_kind(self) -> Option<&'static str> {
        match self {
            End::Closed => None,
            End::Idle => Some("tunnel_idle_timeout"),
            End::Drained => Some("tunnel_drained"),
        }
    }
}

/// Copies bytes both ways until both sides closed, the tunnel idled out, or the drain deadline.
/// Returns how it ended and the bytes copied client→upstream and upstream→client.
pub async fn run<C, U>(client: &mut C, upstream: &mut U, idle: Duration, shared: &Shared) -> (End, u64, u64)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let mut from_client = vec![0u8; BUF];
    let mut from_upstream = vec![0u8; BUF];
    let (mut up, mut down) = (0u64, 0u64);
    let (mut client_open, mut upstream_open) = (true, true);
    // Registered before the flag is read, so a drain that starts in between is not missed.
    let stop = shared.stop.notified();
    tokio::pin!(stop);
    stop.as_mut().enable();
    let drain = || Instant::now() + shared.snapshot.load().drain_timeout;
    let mut hard = shared.stopping.load(std::sync::atomic::Ordering::Relaxed).then(drain);
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    // Far enough to never fire; only used while no drain is under way.
    let never = Instant::now() + Duration::from_secs(86_400 * 365);
    while client_open || upstream_open {
        tokio::select! {
            r = client.read(&mut from_client), if client_open => match r {
                Ok(0) | Err(_) => {
                    client_open = false;
                    let _ = upstream.shutdown().await;
                }
                Ok(n) => {
                    if upstream.write_all(&from_client[..n]).await.is_err() {
                        return (End::Closed, up, down);
                    }
                    up += n as u64;
                    idle_timer.as_mut().reset(Instant::now() + idle);
                }
            },
            r = upstream.read(&mut from_upstream), if upstream_open => match r {
                Ok(0) | Err(_) => {
                    upstream_open = false;
                    let _ = client.shutdown().await;
                }
                Ok(n) => {
                    if client.write_all(&from_upstream[..n]).await.is_err() {
                        return (End::Closed, up, down);
                    }
                    down += n as u64;
                    idle_timer.as_mut().reset(Instant::now() + idle);
                }
            },
            _ = &mut idle_timer => return (End::Idle, up, down),
            _ = &mut stop, if hard.is_none() => hard = Some(drain()),
            _ = tokio::time::sleep_until(hard.unwrap_or(never)), if hard.is_some() => return (End::Drained, up, down),
        }
    }
    (End::Closed, up, down)
}
