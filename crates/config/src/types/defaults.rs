//! Default values, in one place so docs and code agree.
//!
//! Invariants: every `#[serde(default = "...")]` of the config types names a function here, and
//! the types' `Default` impls use the same values, so a field left out and a section left
//! out get the same value.

use crate::units::{ByteSize, Dur};
use std::time::Duration;

use super::StatusRange;

pub fn access_log_path() -> String {
    "stdout".to_string()
}
pub fn request_id_header() -> String {
    "X-Request-Id".to_string()
}
pub fn zero() -> Dur {
    Dur(Duration::ZERO)
}
pub fn drain_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}
pub fn max_header_bytes() -> ByteSize {
    ByteSize(64 * 1024)
}
pub fn max_headers() -> usize {
    100
}
pub fn max_uri_bytes() -> ByteSize {
    ByteSize(8 * 1024)
}
pub fn max_body_bytes() -> ByteSize {
    ByteSize(10 * 1024 * 1024)
}
pub fn header_read() -> Dur {
    Dur(Duration::from_secs(10))
}
pub fn body_read() -> Dur {
    Dur(Duration::from_secs(60))
}
pub fn idle() -> Dur {
    Dur(Duration::from_secs(60))
}
pub fn admin_address() -> String {
    "127.0.0.1:9901".to_string()
}
pub fn admin_history() -> usize {
    10
}
pub fn tls_min_version() -> String {
    "1.2".into()
}
pub fn redirect_status() -> u16 {
    308
}
pub fn hsts_max_age() -> Dur {
    Dur(Duration::from_secs(365 * 24 * 3600))
}
pub fn yes() -> bool {
    true
}
pub fn weight() -> u32 {
    1
}
pub fn max_idle_per_target() -> usize {
    256
}
pub fn pool_idle_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}
pub fn connect() -> Dur {
    Dur(Duration::from_secs(2))
}
pub fn response_header() -> Dur {
    Dur(Duration::from_secs(30))
}
pub fn hc_path() -> String {
    "/".to_string()
}
pub fn hc_interval() -> Dur {
    Dur(Duration::from_secs(5))
}
pub fn hc_timeout() -> Dur {
    Dur(Duration::from_secs(1))
}
pub fn hc_healthy() -> u32 {
    2
}
pub fn hc_unhealthy() -> u32 {
    3
}
pub fn hc_status() -> StatusRange {
    StatusRange { min: 200, max: 399 }
}
pub fn rate_limit_key() -> super::LimitKey {
    super::LimitKey(vec![super::KeyPart::ClientIp])
}
pub fn concurrency_key() -> super::LimitKey {
    super::LimitKey(vec![super::KeyPart::Route])
}
pub fn cost() -> u64 {
    1
}
pub fn redis_timeout() -> Dur {
    Dur(Duration::from_millis(50))
}
pub fn redis_connect_timeout() -> Dur {
    Dur(Duration::from_secs(1))
}
pub fn redis_key_prefix() -> String {
    "gatehouse:".to_string()
}
pub fn redis_pool_size() -> usize {
    2
}
pub fn queue_timeout() -> Dur {
    Dur(Duration::from_secs(1))
}
pub fn window() -> Dur {
    Dur(Duration::from_secs(10))
}
pub fn od_consecutive() -> u32 {
    5
}
pub fn od_failure_rate() -> u32 {
    50
}
pub fn od_min_requests() -> u32 {
    20
}
pub fn od_base_ejection() -> Dur {
    Dur(Duration::from_secs(30))
}
pub fn od_max_ejection() -> Dur {
    Dur(Duration::from_secs(300))
}
pub fn od_max_ejected_percent() -> u32 {
    50
}
pub fn cb_failure_rate() -> u32 {
    50
}
pub fn cb_slow_call_rate() -> u32 {
    80
}
pub fn cb_min_calls() -> u32 {
    20
}
pub fn cb_open_duration() -> Dur {
    Dur(Duration::from_secs(5))
}
pub fn cb_half_open_probes() -> u32 {
    3
}
pub fn max_requests() -> u32 {
    1024
}
pub fn max_pending() -> u32 {
    1024
}
pub fn budget_percent() -> u32 {
    20
}
pub fn budget_min_per_second() -> u32 {
    3
}
pub fn retry_attempts() -> u32 {
    2
}
pub fn retry_on() -> Vec<super::RetryOn> {
    vec![super::RetryOn::ConnectFailure, super::RetryOn::Reset]
}
pub fn backoff_base() -> Dur {
    Dur(Duration::from_millis(25))
}
pub fn backoff_max() -> Dur {
    Dur(Duration::from_millis(250))
}
pub fn upgrades() -> Vec<String> {
    vec!["websocket".to_string()]
}
pub fn h2_max_streams() -> u32 {
    100
}
pub fn h2_stream_window() -> ByteSize {
    ByteSize(256 * 1024)
}
pub fn h2_connection_window() -> ByteSize {
    ByteSize(1024 * 1024)
}
pub fn h2_max_resets() -> u32 {
    200
}
pub fn h2_reset_window() -> Dur {
    Dur(Duration::from_secs(10))
}
pub fn tunnel_idle_timeout() -> Dur {
    Dur(Duration::from_secs(60))
}
pub fn cors_methods() -> Vec<String> {
    ["GET", "HEAD", "POST"].iter().map(|m| m.to_string()).collect()
}
pub fn realm() -> String {
    "gatehouse".to_string()
}
pub fn clock_skew() -> Dur {
    Dur(Duration::from_secs(60))
}
pub fn bearer() -> Vec<super::CredentialSource> {
    vec![super::CredentialSource::Bearer]
}
pub fn api_key_from() -> Vec<super::CredentialSource> {
    vec![super::CredentialSource::Header("X-API-Key".to_string())]
}
pub fn jwks_cache_min() -> Dur {
    Dur(Duration::from_secs(60))
}
pub fn jwks_cache_max() -> Dur {
    Dur(Duration::from_secs(24 * 3600))
}
pub fn jwks_refetch_interval() -> Dur {
    Dur(Duration::from_secs(30))
}
pub fn jwks_stale_for() -> Dur {
    Dur(Duration::from_secs(3600))
}
pub fn auth_call_timeout() -> Dur {
    Dur(Duration::from_secs(2))
}
pub fn introspection_cache() -> Dur {
    Dur(Duration::from_secs(30))
}
pub fn consumer_header() -> String {
    "X-Consumer-Name".to_string()
}
pub fn groups_header() -> String {
    "X-Consumer-Groups".to_string()
}
pub fn external_headers() -> Vec<String> {
    vec!["authorization".to_string(), "cookie".to_string()]
}
