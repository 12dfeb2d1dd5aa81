//! What a route ends in, once its request phase let the request through.
//!
//! Today every route ends in `Terminal::Proxy`: the request goes to the route's upstream through
//! the one forwarder (`forward`), streaming both ways. A terminal that builds the answer itself
//! (service aggregation, REST→gRPC transcoding) is a new variant here plus its handler module in
//! this folder; it calls upstreams with `call`, which runs the very same forwarder (admission,
//! balancing, health, breakers, retries, hedging, deadlines, pools, the route's response phase)
//! (`call.rs`) with a `Client::Capture` in place of a client connection, and gets the answer in memory.
//!
//! Invariants:
//! - A call is an ordinary forwarded request: every rule of `forward` holds for it; nothing here
//!   re-implements attempts or framing.
//! - A call's answer is bounded (`Call::limit`); a larger one fails the call with
//!   `upstream_response_too_large`, never grows memory without bound.
//! - A call never upgrades and is never streamed to the client: its body is complete in memory
//!   before it is sent (so it can be retried) and after it came back.

pub mod call;

pub use call::{call, Call};

pub use crate::snapshot::Terminal;
