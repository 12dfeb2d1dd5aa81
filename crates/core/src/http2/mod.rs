//! HTTP/2 on both sides of the proxy, with the `h2` crate (the framing layer hyper uses):
//! `server` takes client connections (ALPN `h2`, prior-knowledge h2c) and runs each stream
//! through the same pipeline as an HTTP/1.1 request; `client` keeps the multiplexed upstream connections; `io` turns a stream
//! into bytes for tunnels (WebSocket over extended CONNECT).

pub mod client;
pub mod io;
pub mod server;
