//! Lifecycle: bind listeners, start worker threads, serve admin, reload, drain.
//!
//! Threading model: N worker threads, each with its own single-threaded tokio runtime and its own
//! `SO_REUSEPORT` socket per listener, so the kernel spreads connections and each worker's
//! upstream pool is lock-free (see `upstream::pool`). The caller's runtime (the "control plane")
//! runs the admin API and the health checks. Workers share only the `Shared` state: an `ArcSwap`
//! snapshot (wait-free load per request), the registry, and atomics.
//!
//! Invariants: `reload` validates and compiles before swapping, so a bad config never replaces a
//! good one; in-flight requests keep the snapshot they loaded. Shutdown closes the listening
//! sockets first (new connections are refused), lets in-flight requests finish (their responses
//! carry `Connection: close`), closes idle keep-alive connections, and gives up after the drain
//! timeout.

pub use crate::control::{Applied, Control, ReloadError};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use gatehouse_config::Config;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::policy::{Limiters, SWEEP_INTERVAL};
use crate::serve::h1::serve_connection;
use crate::snapshot::{compile, parse_listen_addr, CompileError, Snapshot};
use crate::state::Shared;
use crate::upstream::{health, pool, Registry};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("config: {0}")]
    Compile(#[from] CompileError),
    #[error("cannot start worker: {0}")]
    Worker(std::io::Error),
}

/// A stable 64-bit hash of a config (not a security hash: it names versions).
pub fn config_hash(config: &Config) -> String {
    let bytes = serde_json::to_vec(config).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Start-up options that are not part of the config file.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Worker threads; 0 = config `server.workers`, then one per CPU.
    pub workers: usize,
    /// Serve the admin API if the config has an `admin` section.
    pub admin: bool,
    /// The file the config came from: `POST /reload`, SIGHUP and the file watch re-read it.
    pub config_path: Option<std::path::PathBuf>,
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    shutdown_tx: watch::Sender<bool>,
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    health: Mutex<Vec<JoinHandle<()>>>,
    admin_task: Mutex<Option<JoinHandle<()>>>,
    admin_stop: watch::Sender<bool>,
    /// Bound traffic addresses, in config order (ports resolved).
    pub listen_addrs: Vec<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    ready: Arc<AtomicBool>,
    reloads: AtomicUsize,
    config_path: Option<std::path::PathBuf>,
    /// Applied configs, oldest first, at most `admin.history` of them. Reloads are serialised
    /// by this lock (they are rare and run on the control runtime, never on a worker).
    history: Mutex<std::collections::VecDeque<Applied>>,
}

fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_tcp_nodelay(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

fn worker_count(opts: &Options, config: &Config) -> usize {
    if opts.workers > 0 {
        opts.workers
    } else if config.server.workers > 0 {
        config.server.workers
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

impl Gateway {
    /// Compiles `config`, binds every listener and starts serving. Must be called inside a tokio
    /// runtime, which then hosts the admin API and health checks.
    pub async fn start(config: Config, opts: Options) -> Result<Arc<Gateway>, StartError> {
        let started = std::time::Instant::now();
        let workers = worker_count(&opts, &config);
        let registry = Registry::new();
        let limiters = Limiters::new();
        let admin_cfg = config.admin.clone();
        let access_logs = crate::access_log::AccessLogs::default();
        let metrics = crate::metrics::Metrics::new(workers);
        let mut snapshot = compile(config, &registry, &limiters)?;
        snapshot.access_log = access_logs.get(&snapshot.config.access_log);
        snapshot.metrics = bind_metrics(&metrics, &snapshot);
        let tracer_slot = Mutex::new(None);
        snapshot.tracer = tracer_for(&tracer_slot, &snapshot.config.tracing);
        // Bind every listener once per worker (SO_REUSEPORT); port 0 resolves on the first bind.
        let mut per_worker: Vec<Vec<(usize, std::net::TcpListener)>> = (0..workers).map(|_| Vec::new()).collect();
        let mut listen_addrs = Vec::new();
        for (i, l) in snapshot.listeners.iter().enumerate() {
            let first =
                bind_reuseport(l.address).map_err(|e| StartError::Bind { addr: l.address.to_string(), source: e })?;
            let actual = first.local_addr().map_err(StartError::Worker)?;
            listen_addrs.push(actual);
            per_worker[0].push((i, first));
            for w in per_worker.iter_mut().skip(1) {
                let s = bind_reuseport(actual).map_err(|e| StartError::Bind { addr: actual.to_string(), source: e })?;
                w.push((i, s));
            }
        }
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            registry,
            limiters,
            access_logs,
            shutdown: shutdown_rx,
            stopping: AtomicBool::new(false),
            stop: Arc::new(tokio::sync::Notify::new()),
            connections: AtomicUsize::new(0),
            inflight: AtomicUsize::new(0),
            metrics,
            tracer: tracer_slot,
        });
        let mut handles = Vec::new();
        for (w, listeners) in per_worker.into_iter().enumerate() {
            let shared = shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("gatehouse-worker-{w}"))
                .spawn(move || run_worker(w, listeners, shared))
                .map_err(StartError::Worker)?;
            handles.push(h);
        }
        // Expired rate-limit keys are swept on the control runtime until shutdown.
        let sweep_shared = shared.clone();
        let mut sweep_stop = shared.shutdown.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                tokio::select! {
                    _ = t.tick() => sweep_shared.limiters.sweep(),
                    _ = sweep_stop.changed() => break,
                }
            }
        });
        let ready = Arc::new(AtomicBool::new(true));
        let (admin_stop, _) = watch::channel(false);
        let mut admin_addr = None;
        let mut admin_listener = None;
        if opts.admin {
            if let Some(a) = admin_cfg {
                let addr = parse_listen_addr(&a.address)?;
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| StartError::Bind { addr: a.address.clone(), source: e })?;
                admin_addr = l.local_addr().ok();
                admin_listener = Some(l);
            }
        }
        let first = {
            let snap = shared.snapshot.load();
            let config = snap.config.clone();
            let took = started.elapsed();
            let hash = config_hash(&config);
            shared.metrics.reload_succeeded(&hash, took, true);
            Applied {
                id: 1,
                hash,
                applied_at_ms: crate::metrics::unix_ms(),
                source: "start",
                took_us: took.as_micros() as u64,
                config,
            }
        };
        let gw = Arc::new(Gateway {
            health: Mutex::new(health::spawn_all(&shared.snapshot.load().upstreams)),
            shared,
            shutdown_tx,
            workers: Mutex::new(handles),
            admin_task: Mutex::new(None),
            admin_stop,
            listen_addrs,
            admin_addr,
            ready,
            reloads: AtomicUsize::new(0),
            config_path: opts.config_path.clone(),
            history: Mutex::new(std::collections::VecDeque::from([first])),
        });
        if let Some(l) = admin_listener {
            // The admin API has its own stop signal: it keeps answering (readiness 503) while
            // traffic drains, and stops when the drain is over. It holds the gateway weakly (the
            // gateway owns its task).
            let state = crate::admin::AdminState {
                shared: gw.shared.clone(),
                ready: gw.ready.clone(),
                gateway: Arc::downgrade(&(gw.clone() as Arc<dyn Control>)),
            };
            let rx = gw.admin_stop.subscribe();
            let task = tokio::spawn(crate::simple_http::serve(
                l,
                move |req| {
                    let state = state.clone();
                    async move { state.handle(req).await }
                },
                rx,
            ));
            *gw.admin_task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        }
        if opts.config_path.is_some() {
            crate::watch::spawn(Arc::downgrade(&(gw.clone() as Arc<dyn Control>)), gw.shared.shutdown.clone());
        }
        Ok(gw)
    }

    /// The running snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Applies an already validated config: compile, check listeners, swap, restart health checks.
    /// On error the running snapshot stays in place.
    pub fn reload(&self, config: Config) -> Result<Applied, ReloadError> {
        self.reload_from(config, "api")
    }

    /// Loads `text` (YAML or JSON, `${ENV}` from the process environment) and applies it.
    pub fn apply_text(&self, text: &str, source: &'static str) -> Result<Applied, ReloadError> {
        let started = std::time::Instant::now();
        match gatehouse_config::load_str_env(text) {
            Ok(config) => self.apply(config, source, started),
            Err(errors) => {
                self.shared.metrics.reload_failed();
                let e = ReloadError::Config(errors);
                tracing::error!(source, error = %e, "reload refused; keeping the running config");
                Err(e)
            }
        }
    }

    /// Re-reads the config file the gateway was started with and applies it.
    pub fn reload_file(&self, source: &'static str) -> Result<Applied, ReloadError> {
        let Some(path) = &self.config_path else { return Err(ReloadError::NoFile) };
        match std::fs::read_to_string(path) {
            Ok(text) => self.apply_text(&text, source),
            Err(e) => {
                self.shared.metrics.reload_failed();
                let msg = format!("cannot read {}: {e}", path.display());
                tracing::error!(source, error = %msg, "reload refused; keeping the running config");
                Err(ReloadError::Config(vec![gatehouse_config::ConfigError::new("", msg)]))
            }
        }
    }

    /// The config file the gateway re-reads, if any.
    pub fn config_path(&self) -> Option<&std::path::Path> {
        self.config_path.as_deref()
    }

    /// Applied configs, oldest first.
    pub fn history(&self) -> Vec<Applied> {
        self.history.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    /// Applies the config of history entry `id` again (as a new entry).
    pub fn rollback(&self, id: u64) -> Result<Applied, ReloadError> {
        let config = self
            .history()
            .into_iter()
            .find(|a| a.id == id)
            .map(|a| (*a.config).clone())
            .ok_or(ReloadError::UnknownVersion(id))?;
        self.reload_from(config, "rollback")
    }

    /// Applies a loaded config, recording the outcome under `source`.
    pub fn reload_from(&self, config: Config, source: &'static str) -> Result<Applied, ReloadError> {
        self.apply(config, source, std::time::Instant::now())
    }

    fn apply(&self, config: Config, source: &'static str, started: std::time::Instant) -> Result<Applied, ReloadError> {
        // One reload at a time: history ids and the swap order stay consistent.
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let r = self.swap(config);
        let took = started.elapsed();
        match r {
            Ok(config) => {
                let hash = config_hash(&config);
                self.shared.metrics.reload_succeeded(&hash, took, false);
                let applied = Applied {
                    id: history.back().map_or(1, |a| a.id + 1),
                    hash,
                    applied_at_ms: crate::metrics::unix_ms(),
                    source,
                    took_us: took.as_micros() as u64,
                    config,
                };
                let keep = applied
                    .config
                    .admin
                    .as_ref()
                    .map_or(gatehouse_config::types::defaults::admin_history(), |a| a.history);
                history.push_back(applied.clone());
                while history.len() > keep.max(1) {
                    history.pop_front();
                }
                tracing::info!(source, id = applied.id, hash = %applied.hash, took_ms = took.as_secs_f64() * 1e3, "config applied");
                Ok(applied)
            }
            Err(e) => {
                self.shared.metrics.reload_failed();
                tracing::error!(source, error = %e, "reload refused; keeping the running config");
                Err(e)
            }
        }
    }

    /// Compiles and swaps; returns the applied config.
    fn swap(&self, config: Config) -> Result<Arc<Config>, ReloadError> {
        let old = self.shared.snapshot.load_full();
        let old_l: Vec<_> = old.listeners.iter().map(|l| l.address).collect();
        let new_l: Vec<_> = config
            .listeners
            .iter()
            .map(|l| parse_listen_addr(&l.address))
            .collect::<Result<_, _>>()
            .map_err(|e| ReloadError::Invalid(e.to_string()))?;
        if old_l != new_l {
            let fmt = |v: &[SocketAddr]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ");
            return Err(ReloadError::ListenersChanged(format!("[{}] -> [{}]", fmt(&old_l), fmt(&new_l))));
        }
        let mut snap = compile(config, &self.shared.registry, &self.shared.limiters)
            .map_err(|e| ReloadError::Invalid(e.to_string()))?;
        snap.access_log = self.shared.access_logs.get(&snap.config.access_log);
        snap.metrics = bind_metrics(&self.shared.metrics, &snap);
        snap.tracer = tracer_for(&self.shared.tracer, &snap.config.tracing);
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health.drain(..).for_each(|h| h.abort());
        *health = health::spawn_all(&snap.upstreams);
        let config = snap.config.clone();
        self.shared.snapshot.store(Arc::new(snap));
        self.reloads.fetch_add(1, Ordering::Relaxed);
        Ok(config)
    }

    pub fn reload_count(&self) -> usize {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Stops accepting, drains in-flight requests (up to the config's drain timeout), stops workers.
    pub async fn shutdown(&self) {
        self.ready.store(false, Ordering::Relaxed);
        // Readiness fails first; traffic is served normally until load balancers notice.
        let delay = self.shared.snapshot.load().config.server.shutdown_delay.0;
        if !delay.is_zero() {
            tracing::info!(
                delay_ms = delay.as_millis() as u64,
                "readiness is 503; draining starts after the shutdown delay"
            );
            tokio::time::sleep(delay).await;
        }
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.stop.notify_waiters();
        let _ = self.shutdown_tx.send(true);
        let drain = self.shared.snapshot.load().drain_timeout;
        let deadline = tokio::time::Instant::now() + drain;
        while self.shared.connections.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for h in self.health.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            h.abort();
        }
        // Send the spans still queued (bounded), off the runtime: the exporter blocks.
        if let Some(t) = self.shared.snapshot.load().tracer.clone() {
            let _ = tokio::task::spawn_blocking(move || t.shutdown(Duration::from_secs(5))).await;
        }
        let _ = self.admin_stop.send(true);
        if let Some(t) = self.admin_task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
        let workers: Vec<_> = self.workers.lock().unwrap_or_else(|p| p.into_inner()).drain(..).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        })
        .await;
    }

    /// Reopens the access-log files (after `logrotate` renamed them).
    pub fn reopen_logs(&self) {
        self.shared.access_logs.reopen_all();
    }

    /// Open client connections right now.
    pub fn open_connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Requests refused by `ip_filter` so far: (listener filters, route policies).
    pub fn ip_denied(&self) -> (u64, u64) {
        let d = &self.shared.limiters.ip_denied;
        (d.listener.load(Ordering::Relaxed), d.route.load(Ordering::Relaxed))
    }
}

/// The tracer for a `tracing` section: the running one when the section did not change, else a
/// new one (the old one flushes in the background when its last snapshot goes). `None` when
/// tracing is off (in the file, or by `OTEL_SDK_DISABLED`) or the exporter cannot be built
/// (logged; the reload itself goes on).
type TracerSlot = Mutex<Option<(gatehouse_config::Tracing, Arc<crate::trace::Tracer>)>>;

fn tracer_for(slot: &TracerSlot, cfg: &gatehouse_config::Tracing) -> Option<Arc<crate::trace::Tracer>> {
    use crate::trace::{Sampler, Tracer, TracingConfig, TracingOverrides};
    let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
    if !cfg.enabled {
        *slot = None;
        return None;
    }
    if let Some((c, t)) = slot.as_ref() {
        if c == cfg {
            return Some(t.clone());
        }
    }
    let overrides = TracingOverrides {
        enabled: Some(true),
        endpoint: cfg.endpoint.clone(),
        service_name: cfg.service_name.clone(),
        sampler: cfg.sampler.as_deref().and_then(|n| Sampler::from_name(n, cfg.ratio)),
        max_export_batch_size: cfg.batch_size,
        max_queue_size: cfg.queue_size,
        schedule_delay: cfg.schedule_delay.map(|d| d.0),
        export_timeout: cfg.export_timeout.map(|d| d.0),
        headers: cfg.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    };
    match Tracer::new(&TracingConfig::resolve(&overrides)) {
        Ok(Some(t)) => {
            *slot = Some((cfg.clone(), t.clone()));
            Some(t)
        }
        Ok(None) => {
            *slot = None;
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "tracing stays off: the span exporter cannot be built");
            *slot = None;
            None
        }
    }
}

/// Resolves the snapshot's per-route metric cells (kept for routes that survive a reload).
fn bind_metrics(metrics: &crate::metrics::Metrics, snap: &Snapshot) -> crate::metrics::Bound {
    let mut bound = metrics.bind(snap.routes.iter().map(|r| (r.name.as_str(), r.upstream.name.as_str())));
    if snap.config.metrics.consumer_label {
        bound.consumers = metrics.bind_consumers(snap.config.consumers.iter().map(|c| c.name.as_str()));
    }
    bound
}

fn run_worker(index: usize, listeners: Vec<(usize, std::net::TcpListener)>, shared: Arc<Shared>) {
    crate::metrics::set_worker(index);
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot build worker runtime");
            return;
        }
    };
    rt.block_on(async move {
        let mut accepts = Vec::new();
        for (idx, std_l) in listeners {
            let l = match tokio::net::TcpListener::from_std(std_l) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "cannot register listener");
                    continue;
                }
            };
            let shared = shared.clone();
            accepts.push(tokio::spawn(accept_loop(l, idx, shared)));
        }
        let sweeper = tokio::spawn(async {
            let mut t = tokio::time::interval(Duration::from_secs(1));
            loop {
                t.tick().await;
                pool::sweep();
            }
        });
        for a in accepts {
            let _ = a.await;
        }
        // Listeners are closed now; let in-flight connections finish.
        let drain = shared.snapshot.load().drain_timeout;
        let deadline = tokio::time::Instant::now() + drain;
        while shared.connections.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sweeper.abort();
    });
}

/// Handshake (bounded by the listener's header timeout), then the HTTP connection.
async fn serve_tls(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    idx: usize,
    shared: Arc<Shared>,
    tls: Arc<crate::tls::ServerTls>,
) {
    let timeout = shared.snapshot.load().listeners.get(idx).map_or(Duration::from_secs(10), |l| l.header_timeout);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
    let stream = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            shared.metrics.tls_handshake_failed();
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            shared.metrics.tls_handshake_failed();
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let client_subject = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| crate::tls::x509::parse(c))
        .map(|f| bytes::Bytes::from(f.subject));
    let info = crate::tls::ConnTls { client_subject };
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    if h2 {
        crate::serve::h2::serve(crate::tls::Flushing(stream), peer, idx, shared, Some(info)).await;
    } else {
        crate::serve::h1::serve_connection_with(crate::tls::Flushing(stream), peer, idx, shared, Some(info)).await;
    }
}

async fn accept_loop(l: tokio::net::TcpListener, idx: usize, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            r = l.accept() => match r {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    // The TLS config of the snapshot current now; the handshake runs in the
                    // connection's task, never here (a slow client must not stall accepts).
                    let tls = shared.snapshot.load().listeners.get(idx).and_then(|l| l.tls.clone());
                    match tls {
                        None => { tokio::spawn(serve_connection(stream, peer, idx, shared.clone())); }
                        Some(tls) => { tokio::spawn(serve_tls(stream, peer, idx, shared.clone(), tls)); }
                    }
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    drop(l);
}

impl Control for Gateway {
    fn snapshot(&self) -> Arc<Snapshot> {
        Gateway::snapshot(self)
    }
    fn config_path(&self) -> Option<&std::path::Path> {
        Gateway::config_path(self)
    }
    fn apply_text(&self, text: &str, source: &'static str) -> Result<Applied, ReloadError> {
        Gateway::apply_text(self, text, source)
    }
    fn reload_file(&self, source: &'static str) -> Result<Applied, ReloadError> {
        Gateway::reload_file(self, source)
    }
    fn rollback(&self, id: u64) -> Result<Applied, ReloadError> {
        Gateway::rollback(self, id)
    }
    fn history(&self) -> Vec<Applied> {
        Gateway::history(self)
    }
}
