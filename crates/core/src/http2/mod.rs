//! HTTP/2 pieces both sides of the proxy use, with the `h2` crate (the framing layer hyper
//! uses): `client` keeps the multiplexed upstream connections, `io` turns a stream into bytes
//! for tunnels (WebSocket over extended CONNECT). Client connections are `downstream::h2`; the
//! upstream leg is `forward::h2`.

pub mod client;
pub mod io;
