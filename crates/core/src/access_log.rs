//! The JSON access log: one object per request, written by a dedicated thread.
//!
//! Invariants: the request path never blocks on logging: lines go through a bounded channel with
//! `try_send`; when the writer falls behind, lines are dropped and counted (`dropped`), never
//! queued without bound. Query strings are left out unless configured, and no header values are
//! logged, so credentials do not reach the log. One writer per output, shared by all workers and
//! kept across reloads (`AccessLogs`). `reopen` (SIGUSR1) makes each file writer close and reopen
//! its path after the lines already queued, so `logrotate` can rename the file (`create` mode).

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

const QUEUE: usize = 16 * 1024;

/// What the writer thread receives.
#[derive(Debug)]
enum Msg {
    Line(Vec<u8>),
    /// Close the file and open its path again (after the lines queued before).
    Reopen,
}

/// One output (stdout or a file) with its writer thread.
#[derive(Debug)]
pub struct AccessLog {
    tx: SyncSender<Msg>,
    /// Lines dropped because the writer could not keep up.
    pub dropped: AtomicU64,
}

impl AccessLog {
    /// Opens `path` (`stdout` or a file, appended to) and starts its writer thread.
    pub fn open(path: &str) -> std::io::Result<Arc<AccessLog>> {
        let out = open_output(path)?;
        let (tx, rx) = sync_channel(QUEUE);
        let path = path.to_string();
        std::thread::Builder::new().name("gatehouse-access-log".into()).spawn(move || write_loop(rx, out, path))?;
        Ok(Arc::new(AccessLog { tx, dropped: AtomicU64::new(0) }))
    }

    /// Queues one line (a trailing newline is added by the writer). Never blocks.
    pub fn write(&self, line: Vec<u8>) {
        if self.tx.try_send(Msg::Line(line)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Asks the writer to reopen its file once the lines queued so far are written (waits for
    /// queue room: called from the control plane, never from a worker).
    pub fn reopen(&self) {
        let _ = self.tx.send(Msg::Reopen);
    }
}

fn open_output(path: &str) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(if path == "stdout" {
        Box::new(std::io::stdout())
    } else {
        Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?)
    })
}

fn write_loop(rx: Receiver<Msg>, out: Box<dyn Write + Send>, path: String) {
    let mut w = std::io::BufWriter::with_capacity(64 * 1024, out);
    let handle = |w: &mut std::io::BufWriter<Box<dyn Write + Send>>, m: Msg| match m {
        Msg::Line(line) => {
            let _ = w.write_all(&line);
            let _ = w.write_all(b"\n");
        }
        Msg::Reopen => {
            let _ = w.flush();
            if path == "stdout" {
                return;
            }
            match open_output(&path) {
                Ok(out) => *w = std::io::BufWriter::with_capacity(64 * 1024, out),
                // Keep writing to the old file rather than losing lines.
                Err(e) => tracing::error!(path = %path, error = %e, "cannot reopen the access log"),
            }
        }
    };
    while let Ok(m) = rx.recv() {
        handle(&mut w, m);
        // Batch whatever is already queued, then flush once the queue is empty.
        loop {
            match rx.try_recv() {
                Ok(m) => handle(&mut w, m),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    let _ = w.flush();
                    return;
                }
            }
        }
        let _ = w.flush();
    }
    let _ = w.flush();
}

/// Open access logs by output, so a reload that keeps the output keeps the writer.
#[derive(Debug, Default)]
pub struct AccessLogs {
    open: Mutex<HashMap<String, Arc<AccessLog>>>,
}

impl AccessLogs {
    /// Reopens every file output (log rotation).
    pub fn reopen_all(&self) {
        let open: Vec<Arc<AccessLog>> = self.open.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        for l in open {
            l.reopen();
        }
    }

    /// The writer for `cfg`, or `None` when the access log is off or cannot be opened (logged).
    pub fn get(&self, cfg: &gatehouse_config::AccessLog) -> Option<Arc<AccessLog>> {
        if !cfg.enabled {
            return None;
        }
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = open.get(&cfg.path) {
            return Some(l.clone());
        }
        match AccessLog::open(&cfg.path) {
            Ok(l) => {
                open.insert(cfg.path.clone(), l.clone());
                Some(l)
            }
            Err(e) => {
                tracing::error!(path = %cfg.path, error = %e, "cannot open the access log; requests are not logged");
                None
            }
        }
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-28T05:16:08.123Z`.
pub fn rfc3339_now() -> String {
    rfc3339(SystemTime::now())
}

/// RFC 3339 UTC time of `ms` milliseconds since the Unix epoch.
pub fn rfc3339_at(ms: u64) -> String {
    rfc3339(UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

/// (year, month, day) of a day counted from 1970-01-01, negative before it (Howard Hinnant's
/// `civil_from_days`). Shared by every timestamp the gateway renders.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `t` in RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_shape() {
        let t = rfc3339_now();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }

    #[test]
    fn writes_lines_to_a_file() {
        let path = std::env::temp_dir().join(format!("gatehouse-al-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let logs = AccessLogs::default();
        let cfg = gatehouse_config::AccessLog {
            enabled: true,
            path: path.to_string_lossy().into_owned(),
            include_query: false,
        };
        let l = logs.get(&cfg).expect("opens");
        assert!(Arc::ptr_eq(&l, &logs.get(&cfg).expect("same writer")));
        l.write(b"{\"a\":1}".to_vec());
        l.write(b"{\"a\":2}".to_vec());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text == "{\"a\":1}\n{\"a\":2}\n" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "got {text:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = std::fs::remove_file(&path);
        let off = gatehouse_config::AccessLog { enabled: false, ..cfg };
        assert!(logs.get(&off).is_none());
    }
}
