//! Upstream connections: opening them, and a per-worker keep-alive pool.
//!
//! Invariants: each worker thread runs a single-threaded runtime and owns its pool (a
//! thread-local), so checkout and checkin take no lock; no `RefCell` borrow is held across an
//! await. An idle connection is dropped once its deadline passes (checked on checkout and by a
//! periodic sweep), so the pool never hands out connections the upstream has likely closed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{Addr, Target};

/// An upstream connection with its read buffer.
#[derive(Debug)]
pub struct UpConn {
    pub stream: TcpStream,
    pub rbuf: BytesMut,
    /// Taken from the pool (it may have been closed by the upstream meanwhile).
    pub reused: bool,
}

struct Idle {
    conn: UpConn,
    expires: Instant,
}

thread_local! {
    static POOL: RefCell<HashMap<u64, Vec<Idle>>> = RefCell::new(HashMap::new());
}

/// Takes an idle connection to `target_id`, most recently used first.
pub fn checkout(target_id: u64, now: Instant) -> Option<UpConn> {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let list = p.get_mut(&target_id)?;
        while let Some(idle) = list.pop() {
            if idle.expires > now && !is_stale(&idle.conn.stream) {
                let mut c = idle.conn;
                c.reused = true;
                return Some(c);
            }
        }
        None
    })
}

/// Did the upstream close this idle connection or send unsolicited bytes on it? Such bytes must
/// never be served as the answer to the next request. Uses tokio's cached readiness, so a quiet
/// connection costs no syscall; only a readable one is probed with a non-blocking read.
fn is_stale(stream: &TcpStream) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        std::task::Poll::Pending => false,
        std::task::Poll::Ready(Err(_)) => true,
        std::task::Poll::Ready(Ok(())) => {
            let mut b = [0u8; 1];
            !matches!(stream.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
    }
}

/// Returns a connection after a complete exchange; it may be reused until `expires`.
pub fn checkin(target_id: u64, conn: UpConn, max_idle: usize, expires: Instant) {
    if max_idle == 0 || !conn.rbuf.is_empty() {
        // Unexpected bytes after a complete response: never reuse such a connection.
        return;
    }
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let list = p.entry(target_id).or_default();
        if list.len() >= max_idle {
            list.remove(0);
        }
        list.push(Idle { conn, expires });
    });
}

/// Drops expired idle connections on this worker.
pub fn sweep() {
    POOL.with(|p| {
        let now = Instant::now();
        let mut p = p.borrow_mut();
        p.values_mut().for_each(|l| l.retain(|i| i.expires > now));
        p.retain(|_, l| !l.is_empty());
    });
}

/// Number of idle connections on this worker (for tests and the admin view).
pub fn idle_count(target_id: u64) -> usize {
    POOL.with(|p| p.borrow().get(&target_id).map_or(0, Vec::len))
}

/// Opens a new connection to `target` within `timeout`.
pub async fn connect(target: &Target, timeout: Duration) -> std::io::Result<UpConn> {
    let fut = async {
        match &target.addr {
            Addr::Ip(a) => TcpStream::connect(*a).await,
            Addr::Dns(hostport) => TcpStream::connect(hostport.as_str()).await,
        }
    };
    let stream = tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timeout"))??;
    stream.set_nodelay(true)?;
    Ok(UpConn { stream, rbuf: BytesMut::with_capacity(8192), reused: false })
}
