//! Gatehouse's data plane: the compiled snapshot, the router, the request pipeline, upstreams and
//! balancers, the HTTP/1.1 proxy, and the admin API. `docs/architecture.md` walks the request path
//! through these modules in the order the code runs them.

pub mod access_log;
pub mod admin;
pub mod auth;
pub mod counted;
pub mod ctx;
pub mod downstream;
pub mod error;
pub mod forward;
pub mod gateway;
pub mod grpc;
pub mod http1;
pub mod http2;
pub mod metrics;
pub mod normalize;
pub mod policy;
pub mod request;
pub mod retry;
pub mod router;
pub mod simple_http;
pub mod snapshot;
pub mod state;
pub mod terminal;
pub mod tls;
pub mod trace;
pub mod upstream;
pub mod watch;

pub use error::{GatewayError, LocalResponse};
pub use gateway::{Gateway, Options, ReloadError, StartError};
pub use snapshot::Snapshot;
