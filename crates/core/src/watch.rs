//! Hot reload on file change: watches the config file's *directory* (not the file), so editors
//! that replace the file and Kubernetes ConfigMap updates (an atomic `..data` symlink swap) are
//! both seen, then re-reads the file through the same validate → compile → swap path as SIGHUP
//! and the admin API.
//!
//! Invariants: events are debounced (`DEBOUNCE`), so a burst of writes is one reload; the file is
//! applied only when its content differs from the last content this watcher saw, so a `touch` or
//! an event for a sibling file reloads nothing; a file that does not load (half written, invalid)
//! leaves the running config in place and the next change is tried again. `server.watch_config:
//! false` in the running config pauses reloads from the watcher. The watcher holds the gateway
//! weakly and stops with the gateway's shutdown signal.
//!
//! TLS files (certificates, keys, client CA bundles of the running snapshot) are watched the same
//! way, by their directories: when their content changes the config file is applied again, which
//! re-reads them through the normal reload path (a bad certificate fails that reload and the old
//! one keeps serving; open connections keep the certificate they were accepted with).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::time::Duration;

use notify::Watcher;
use tokio::sync::{mpsc, watch};

use crate::control::Control;

/// Quiet time after the last event before the file is read.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

fn file_hash(text: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in text {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The directory to watch: the config file's parent (`.` for a bare file name).
fn watch_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The TLS files the running snapshot was built from.
fn tls_files(gw: &dyn Control) -> Vec<PathBuf> {
    let snap = gw.snapshot();
    let mut files: Vec<PathBuf> =
        snap.listeners.iter().flat_map(|l| l.tls.iter().flat_map(|t| t.files.clone())).collect();
    files.sort();
    files.dedup();
    files
}

/// One hash over the content of `files` (a missing file hashes differently from an empty one).
fn files_hash(files: &[PathBuf]) -> u64 {
    let mut all = Vec::new();
    for f in files {
        match std::fs::read(f) {
            Ok(t) => all.extend_from_slice(&file_hash(&t).to_le_bytes()),
            Err(_) => all.extend_from_slice(b"missing"),
        }
    }
    file_hash(&all)
}

/// Adds watches for the directories of `files` not watched yet (failures are logged once).
fn watch_dirs(watcher: &mut impl Watcher, watched: &mut HashSet<PathBuf>, files: &[PathBuf]) {
    for f in files {
        let dir = watch_dir(f);
        if watched.insert(dir.clone()) {
            if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch a TLS file directory; reload to pick up certificate changes");
            }
        }
    }
}

/// Starts watching the gateway's config file, if it has one. Must run inside a tokio runtime.
pub fn spawn(gw: Weak<dyn Control>, mut shutdown: watch::Receiver<bool>) {
    let Some(path) = gw.upgrade().and_then(|g| g.config_path().map(Path::to_path_buf)) else { return };
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        // Reads (`Access`) change nothing; counting them would let any reader of a watched
        // directory (the gateway itself re-reading certificates, a client reading a CA file
        // next to them) keep the debounce window open forever.
        // A close after writing still counts.
        use notify::event::{AccessKind, AccessMode, EventKind};
        let read_only = |k: &EventKind| {
            matches!(k, EventKind::Access(AccessKind::Open(_) | AccessKind::Read | AccessKind::Close(AccessMode::Read)))
        };
        if ev.is_ok_and(|e| !read_only(&e.kind)) {
            let _ = tx.send(());
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config file; reload with SIGHUP or the admin API");
            return;
        }
    };
    let dir = watch_dir(&path);
    if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the config directory; reload with SIGHUP or the admin API");
        return;
    }
    let mut last = std::fs::read(&path).map(|t| file_hash(&t)).ok();
    let mut watched = HashSet::from([dir]);
    let mut tls = gw.upgrade().map(|g| tls_files(&*g)).unwrap_or_default();
    watch_dirs(&mut watcher, &mut watched, &tls);
    let mut last_tls = files_hash(&tls);
    tokio::spawn(async move {
        // Dropped (and the inotify watches removed) when this task ends.
        let mut watcher = watcher;
        loop {
            tokio::select! {
                ev = rx.recv() => if ev.is_none() { return },
                _ = shutdown.changed() => return,
            }
            // Debounce: wait until no event came for DEBOUNCE.
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let Some(gw) = gw.upgrade() else { return };
            if !gw.snapshot().config.server.watch_config {
                continue;
            }
            let text = match std::fs::read(&path) {
                Ok(t) => t,
                Err(e) => {
                    // Mid-swap or removed: the next event tries again.
                    tracing::warn!(file = %path.display(), error = %e, "config file changed but cannot be read");
                    continue;
                }
            };
            let h = file_hash(&text);
            let h_tls = files_hash(&tls);
            if last == Some(h) && last_tls == h_tls {
                continue;
            }
            let source = if last == Some(h) { "tls_files" } else { "file" };
            last = Some(h);
            last_tls = h_tls;
            let text = String::from_utf8_lossy(&text).into_owned();
            // Errors are logged and counted by `apply_text`; compiling runs off the runtime.
            let g = gw.clone();
            let _ = tokio::task::spawn_blocking(move || g.apply_text(&text, source)).await;
            // The applied config may name other TLS files.
            let now = tls_files(&*gw);
            if now != tls {
                tls = now;
                watch_dirs(&mut watcher, &mut watched, &tls);
                last_tls = files_hash(&tls);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_the_parent_directory() {
        assert_eq!(watch_dir(Path::new("/etc/gatehouse/config.yaml")), PathBuf::from("/etc/gatehouse"));
        assert_eq!(watch_dir(Path::new("config.yaml")), PathBuf::from("."));
        assert_ne!(file_hash(b"a"), file_hash(b"b"));
    }
}
