//! The control plane's view of a running gateway: what the admin API and the config watcher
//! may ask of it (the running snapshot, apply a config, re-read the file, roll back), and what a
//! reload reports. `Gateway` implements `Control`; `admin.rs` and `watch.rs` only know this
//! trait, so the gateway, which starts them, is not imported back by them.

use std::sync::Arc;

use gatehouse_config::Config;

use crate::snapshot::Snapshot;

/// What the admin API and the watcher need from the gateway.
pub trait Control: Send + Sync + 'static {
    /// The snapshot serving now.
    fn snapshot(&self) -> Arc<Snapshot>;
    /// The config file the gateway was started with, if any.
    fn config_path(&self) -> Option<&std::path::Path>;
    /// Validates, compiles and swaps in `text` (see `Gateway::apply_text`).
    fn apply_text(&self, text: &str, source: &'static str) -> Result<Applied, ReloadError>;
    /// Re-reads the config file and applies it.
    fn reload_file(&self, source: &'static str) -> Result<Applied, ReloadError>;
    /// Applies the config of history entry `id` again.
    fn rollback(&self, id: u64) -> Result<Applied, ReloadError>;
    /// The applied configs, oldest first.
    fn history(&self) -> Vec<Applied>;
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Invalid(String),
    /// The text did not load: every problem, each with its path.
    #[error("invalid config: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Config(Vec<gatehouse_config::ConfigError>),
    #[error("listeners changed ({0}); restart the gateway to apply listener changes")]
    ListenersChanged(String),
    #[error("no config file to re-read (the gateway was started without one)")]
    NoFile,
    #[error("no config with id {0} in the history")]
    UnknownVersion(u64),
}

/// One applied config, kept for `GET /config/history` and rollback.
#[derive(Debug, Clone)]
pub struct Applied {
    /// 1 for the config the gateway started with, then one more per successful reload.
    pub id: u64,
    /// FNV-1a of the config's canonical JSON form: equal configs hash equal whatever the
    /// formatting, and the hash is exported as `gatehouse_config_info{hash}`.
    pub hash: String,
    pub applied_at_ms: u64,
    /// `start`, `signal`, `file`, `tls_files` (a certificate file changed), `admin`, `api` or
    /// `rollback`.
    pub source: &'static str,
    /// Validation, compilation and the swap, in µs.
    pub took_us: u64,
    pub config: Arc<Config>,
}
