//! HTTP/2 connections to upstream targets (`h2c://`, or `https://` with `protocol: http2`).
//!
//! Invariants:
//! - Per worker thread and target, a few multiplexed connections in a thread-local map (the
//!   HTTP/1.1 pool's model, so no lock is taken). A request takes the first connection whose
//!   open streams (counted by us, released by `StreamSlot`) are below the target's own
//!   `SETTINGS_MAX_CONCURRENT_STREAMS`; when every one is full a new connection is opened, up to
//!   `MAX_CONNS_PER_TARGET`, and past that the least busy one queues the stream in h2. A busy
//!   gRPC service is thus not held to one connection's stream limit.
//! - A connection that failed (`ready` errs: GOAWAY, reset, closed) is dropped from the map and
//!   the request is sent on another or a new one; its in-flight streams end with their own errors.
//! - Each connection's driver runs in its own task, so it keeps answering PINGs and flow control
//!   even while no request is reading from it; it ends when the map and every stream let go of it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;

use crate::upstream::pool::{self, ConnectError};
use crate::upstream::Target;

/// Connections per target and worker before streams queue on the least busy one.
pub const MAX_CONNS_PER_TARGET: usize = 8;

struct Entry {
    send: SendRequest<Bytes>,
    /// Streams open on it (ours: h2 keeps its own count private).
    open: Arc<AtomicUsize>,
}

thread_local! {
    static CONNS: RefCell<HashMap<u64, Vec<Entry>>> = RefCell::new(HashMap::new());
}

/// A stream's place on its connection, given back when dropped (hold it as long as the stream).
#[derive(Debug)]
pub struct StreamSlot(Arc<AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why no stream could be opened to a target.
#[derive(Debug, thiserror::Error)]
pub enum H2ConnectError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("HTTP/2 handshake: {0}")]
    Handshake(h2::Error),
    #[error("HTTP/2 handshake timed out")]
    Timeout,
}

/// The connection a new stream to `id` should use, with its slot taken: one with room, else
/// (at the connection cap) the least busy; `None` means "open a new one".
fn pick(id: u64) -> Option<(SendRequest<Bytes>, StreamSlot)> {
    CONNS.with(|c| {
        let map = c.borrow();
        let list = map.get(&id)?;
        let room = list.iter().find(|e| e.open.load(Ordering::Relaxed) < e.send.current_max_send_streams());
        let chosen = match room {
            Some(e) => e,
            None if list.len() >= MAX_CONNS_PER_TARGET => list.iter().min_by_key(|e| e.open.load(Ordering::Relaxed))?,
            None => return None,
        };
        chosen.open.fetch_add(1, Ordering::Relaxed);
        Some((chosen.send.clone(), StreamSlot(chosen.open.clone())))
    })
}

/// A ready sender for a new stream to `target`, and the stream's slot.
pub async fn sender(
    target: &Target,
    connect_timeout: Duration,
) -> Result<(SendRequest<Bytes>, StreamSlot), H2ConnectError> {
    let id = target.state.id;
    while let Some((s, slot)) = pick(id) {
        match s.ready().await {
            Ok(s) => return Ok((s, slot)),
            Err(e) => {
                tracing::debug!(target = %target.url, error = %e, "HTTP/2 upstream connection is gone");
                CONNS.with(|c| {
                    if let Some(list) = c.borrow_mut().get_mut(&id) {
                        list.retain(|e| !Arc::ptr_eq(&e.open, &slot.0));
                    }
                });
            }
        }
    }
    let fut = async {
        let conn = pool::connect(target, connect_timeout).await?;
        let (send, driver) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(4 << 20)
            .enable_push(false)
            .handshake::<_, Bytes>(conn.stream)
            .await
            .map_err(H2ConnectError::Handshake)?;
        let url = target.url.clone();
        tokio::spawn(async move {
            if let Err(e) = driver.await {
                tracing::debug!(target = %url, error = %e, "HTTP/2 upstream connection ended");
            }
        });
        Ok::<_, H2ConnectError>(send)
    };
    let send = tokio::time::timeout(connect_timeout, fut).await.map_err(|_| H2ConnectError::Timeout)??;
    let open = Arc::new(AtomicUsize::new(1));
    CONNS.with(|c| c.borrow_mut().entry(id).or_default().push(Entry { send: send.clone(), open: open.clone() }));
    let slot = StreamSlot(open);
    let send = send.ready().await.map_err(H2ConnectError::Handshake)?;
    Ok((send, slot))
}

/// How many HTTP/2 connections this worker holds to the target (tests, admin).
pub fn connections(target_id: u64) -> usize {
    CONNS.with(|c| c.borrow().get(&target_id).map_or(0, Vec::len))
}
