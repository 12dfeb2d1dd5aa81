//! HTTP/2 connections to upstream targets (`h2c://`, or `https://` with `protocol: http2`).
//!
//! Invariants:
//! - One multiplexed connection per target per worker thread (a thread-local map, like the
//!   HTTP/1.1 pool, so no lock is taken): every request on that worker to that target is a stream
//!   on it, up to the target's own `SETTINGS_MAX_CONCURRENT_STREAMS` (h2 queues beyond that).
//! - A connection that failed (`ready` errs: GOAWAY, reset, closed) is dropped from the map and
//!   a new one is opened for the next request; its in-flight streams end with their own errors.
//! - The connection's driver runs in its own task, so it keeps answering PINGs and flow control
//!   even while no request is reading from it; it ends when the map and every stream let go of it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;

use crate::upstream::pool::{self, ConnectError};
use crate::upstream::Target;

thread_local! {
    static CONNS: RefCell<HashMap<u64, SendRequest<Bytes>>> = RefCell::new(HashMap::new());
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

/// A ready sender for a new stream to `target`: the worker's connection, or a new one.
/// `fresh` says whether the connection was opened for this request.
pub async fn sender(target: &Target, connect_timeout: Duration) -> Result<(SendRequest<Bytes>, bool), H2ConnectError> {
    let id = target.state.id;
    if let Some(s) = CONNS.with(|c| c.borrow().get(&id).cloned()) {
        match s.ready().await {
            Ok(s) => return Ok((s, false)),
            Err(e) => {
                tracing::debug!(target = %target.url, error = %e, "HTTP/2 upstream connection is gone; reconnecting");
                CONNS.with(|c| c.borrow_mut().remove(&id));
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
    CONNS.with(|c| c.borrow_mut().insert(id, send.clone()));
    let send = send.ready().await.map_err(H2ConnectError::Handshake)?;
    Ok((send, true))
}

/// Whether this worker holds an open HTTP/2 connection to the target (tests, admin).
pub fn has_connection(target_id: u64) -> bool {
    CONNS.with(|c| c.borrow().contains_key(&target_id))
}
