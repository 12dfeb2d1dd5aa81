//! Gatehouse configuration: the YAML file's types, its parsing with locations, and its validation.
//!
//! Invariants: this crate has no I/O beyond reading the given text, no tokio, no hyper. `load` either
//! returns a `Config` that passed every check (so compiling it cannot fail) or every problem found,
//! each with its path (`routes[2].upstream`) and, where known, line:column.
//!
//! Layout, with dependencies pointing one way (a module never imports one listed above it):
//! - `load`: orchestration only: text → `yaml` tree → typed `Config` → `validate`, every error
//!   collected and sorted by location.
//! - `validate/`: semantic checks, one file per config section; `validate/mod.rs` runs them in a
//!   fixed order and collects every error.
//! - `yaml/`: the located tree, `${ENV}` substitution, the all-errors deserializer that tracks
//!   paths, and the source map (path → line:column).
//! - `types/`: the serde types, one file per config section, and `defaults`.
//! - `net`, `path`, `origin`, `units`: parsers shared with the data plane.
//! - `error`: `ConfigError` and `PathError`; depends on nothing.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod error;
pub mod load;
pub mod net;
pub mod origin;
pub mod path;
pub mod types;
pub mod units;
pub mod validate;
pub mod yaml;

pub use error::ConfigError;
pub use load::{load_file, load_str, load_str_env};
pub use net::Cidr;
pub use origin::OriginPattern;
pub use types::*;
pub use units::{ByteSize, Dur};
pub use validate::{validate, validate_with_locations, SourceMap};
