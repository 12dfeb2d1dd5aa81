//! Active HTTP health checks.
//!
//! Invariants: one task per checked target, spawned for a snapshot and aborted when the next
//! snapshot replaces it; the health verdict lives in the target's registry state, so restarting
//! the tasks on reload neither forgets nor resets it. A target leaves rotation after
//! `unhealthy_threshold` consecutive failures and returns after `healthy_threshold` successes;
//! that return also ends a passive-health ejection (`outlier.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::{pool, Target, Upstream};
use crate::http1::parse_response;

/// Starts checks for every upstream that has `health_check`.
pub fn spawn_all(upstreams: &[Arc<Upstream>]) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for u in upstreams {
        let Some(hc) = u.health_check.clone() else { continue };
        for t in &u.targets {
            let t = t.clone();
            let hc = hc.clone();
            let name = u.name.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(hc.interval.0);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let result = probe(&t, &hc).await;
                    record(&name, &t, &hc, result);
                }
            }));
        }
    }
    tasks
}

fn record(upstream: &str, t: &Target, hc: &gatehouse_config::HealthCheck, result: Result<u16, String>) {
    let s = &t.state;
    let text = match &result {
        Ok(code) => format!("status {code}"),
        Err(e) => e.clone(),
    };
    if let Ok(mut l) = s.last_check.lock() {
        *l = Some(text.clone());
    }
    let ok = matches!(result, Ok(c) if c >= hc.expected_status.min && c <= hc.expected_status.max);
    if ok {
        s.hc_fail.store(0, Ordering::Relaxed);
        let n = s.hc_ok.fetch_add(1, Ordering::Relaxed) + 1;
        if !s.is_healthy() && n >= hc.healthy_threshold {
            s.set_healthy(true);
            // Active checks have the last word on a target they just saw recover.
            s.outlier.uneject();
            tracing::info!(upstream, target = %t.url, "target healthy again");
        }
    } else {
        s.hc_ok.store(0, Ordering::Relaxed);
        let n = s.hc_fail.fetch_add(1, Ordering::Relaxed) + 1;
        if s.is_healthy() && n >= hc.unhealthy_threshold {
            s.set_healthy(false);
            tracing::warn!(upstream, target = %t.url, reason = %text, "target unhealthy, removed from rotation");
        }
    }
}

/// One probe: `GET path` on a fresh connection; the status code or why it failed.
async fn probe(t: &Target, hc: &gatehouse_config::HealthCheck) -> Result<u16, String> {
    let work = async {
        let mut c = pool::connect(t, hc.timeout.0).await.map_err(|e| format!("connect: {e}"))?;
        let req = format!(
            "GET {} HTTP/1.1\r\nhost: {}\r\nuser-agent: gatehouse-health-check\r\nconnection: close\r\n\r\n",
            hc.path,
            String::from_utf8_lossy(&t.authority)
        );
        c.stream.write_all(req.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
        let mut buf = BytesMut::with_capacity(1024);
        loop {
            if let Some(head) = parse_response(&mut buf, 16 * 1024, false).map_err(|e| format!("response: {e}"))? {
                return Ok(head.status);
            }
            let n = c.stream.read_buf(&mut buf).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed before a response".to_string());
            }
        }
    };
    tokio::time::timeout(hc.timeout.0, work).await.map_err(|_| "timeout".to_string())?
}
