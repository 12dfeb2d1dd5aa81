//! Gatehouse's data plane: client connections, the request path, the policies, the one
//! forwarder for HTTP/1.1 and HTTP/2, upstreams and balancers, the compiled snapshot and router,
//! and the admin API. `docs/architecture.md` walks the request path
//! through these modules in the order the code runs them.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod access_log;
pub mod admin;
pub mod control;
pub mod counted;
pub mod ctx;
pub mod downstream;
pub mod error;
pub mod forward;
pub mod gateway;
pub mod grpc;
pub mod http1;
pub mod http2;
pub mod identity;
pub mod log_phase;
pub mod metrics;
pub mod normalize;
pub mod policy;
pub mod request;
pub mod retry;
pub mod router;
pub mod serve;
pub mod simple_http;
pub mod snapshot;
pub mod state;
pub mod terminal;
pub mod timer;
pub mod tls;
pub mod trace;
pub mod upstream;
pub mod watch;

pub use error::{GatewayError, LocalResponse};
pub use gateway::{Gateway, Options, ReloadError, StartError};
/// The identity policies (`auth`, `authorize`, `external_auth`) live in `policy/auth/`.
pub use policy::auth;
pub use snapshot::Snapshot;
