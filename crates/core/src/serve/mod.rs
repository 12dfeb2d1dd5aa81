//! Client connections: the loops that accept bytes from a client and turn them into requests for
//! `request::handle_request`. `h1.rs` serves HTTP/1.x connections (and hands a connection that
//! opens with the HTTP/2 preface to `h2.rs`); `h2.rs` serves HTTP/2 connections (ALPN `h2`, or h2c
//! with prior knowledge), one task per stream.
//!
//! Kept apart from `downstream/` (the client-side types and the exit) so the dependencies run one
//! way: `serve` → `request` → `forward` → `downstream`.

pub mod h1;
pub mod h2;
