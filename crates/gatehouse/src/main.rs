//! The `gatehouse` binary: CLI, logging, signals, reload, and the built-in quickstart.
//!
//! `gatehouse run --config FILE` serves; `gatehouse validate FILE` checks a config without binding
//! or contacting anything; `gatehouse` alone runs the quickstart. SIGTERM/SIGINT drain then exit;
//! SIGHUP re-reads the config file through the same validate → compile → swap path; SIGUSR1
//! reopens the access-log files (log rotation).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod quickstart;
mod tooling;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use gatehouse_core::{Gateway, Options};

/// mimalloc instead of glibc malloc: fewer instructions per request and memory given back after
/// bursts (measured in docs/performance.md, "Allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "gatehouse", version, about = "Gatehouse API gateway. Run without a command for the quickstart.")]
struct Cli {
    /// Log level or filter (e.g. `info`, `debug`, `gatehouse_core=trace`).
    #[arg(long, global = true, env = "GATEHOUSE_LOG", default_value = "info")]
    log_level: String,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve traffic with a config file.
    Run {
        /// The YAML config file.
        #[arg(short, long, env = "GATEHOUSE_CONFIG")]
        config: PathBuf,
        /// Worker threads (overrides `server.workers`; default one per CPU).
        #[arg(long, env = "GATEHOUSE_WORKERS", default_value_t = 0)]
        workers: usize,
    },
    /// Check a config file: prints `OK`, or every problem with its path and line:column (exit 1).
    Validate {
        /// The YAML config file.
        file: PathBuf,
    },
    /// Show which route a request would take, why the other routes do not match, the route's
    /// policies in order, and its upstream and balancer. Binds and contacts nothing.
    Explain {
        /// The YAML config file.
        #[arg(short, long, env = "GATEHOUSE_CONFIG")]
        config: PathBuf,
        /// The request method, e.g. GET.
        method: String,
        /// `http://host[:port]/path?query`, or `/path?query` (host from `-H 'Host: ...'`).
        url: String,
        /// A request header, `Name: value` (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
    },
    /// Print the SHA-256 of an API key, as `consumers[].credentials.api_keys[].sha256` wants it.
    /// Reads the key from standard input when it is not given (keeps it out of shell history).
    HashKey {
        /// The API key.
        key: Option<String>,
    },
    /// Print an argon2id hash of a password for `consumers[].credentials.basic[].password_hash`.
    /// Reads the password from standard input when it is not given.
    HashPassword {
        /// The password.
        password: Option<String>,
    },
    /// Show what changes from one config to another: listeners, upstreams (targets), routes
    /// (policies) added, removed and changed.
    Diff {
        /// The current config.
        old: PathBuf,
        /// The new config.
        new: PathBuf,
    },
}

fn init_logging(level: &str, format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// mimalloc gives a freed page back to the OS `MIMALLOC_PURGE_DELAY` ms after it became free; at
/// its default (1000) the pages of a burst of connections could stay resident for good, at 0
/// they come back at once with no throughput cost we could measure (docs/performance.md,
/// "Memory after a burst of connections"). mimalloc reads its options when the process starts,
/// before `main`, and this one has no compile-time default: so the process executes itself
/// again, once, with the variable set. The pid, arguments and the rest of the environment stay;
/// an operator's own value wins; if the re-exec fails, the gateway runs with mimalloc's default.
fn with_allocator_defaults() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    // Returns only if the exec failed.
    let _ = std::process::Command::new(&exe).arg0(arg0).args(args).env("MIMALLOC_PURGE_DELAY", "0").exec();
}

fn main() -> ExitCode {
    with_allocator_defaults();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Validate { file }) => validate(&file),
        Some(Command::Explain { config, method, url, headers }) => explain(&config, method, url, headers),
        Some(Command::Diff { old, new }) => diff(&old, &new),
        Some(Command::HashKey { key }) => hash_secret(key, |k| Ok(gatehouse_core::auth::keys::hash_key(k))),
        Some(Command::HashPassword { password }) => hash_secret(password, |p| {
            let mut salt = [0u8; 16];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut salt))
                .map_err(|e| format!("cannot read random bytes: {e}"))?;
            gatehouse_core::auth::basic::hash_password(p, &salt)
        }),
        other => {
            init_logging(&cli.log_level, cli.log_format);
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = rt.block_on(async move {
                match other {
                    Some(Command::Run { config, workers }) => run(config, workers).await,
                    _ => quickstart::run().await,
                }
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Prints `f(secret)`, the secret taken from the argument or the first line of standard input.
fn hash_secret(arg: Option<String>, f: impl Fn(&str) -> Result<String, String>) -> ExitCode {
    let secret = match arg {
        Some(s) => s,
        None => {
            let mut line = String::new();
            if let Err(e) = std::io::stdin().read_line(&mut line) {
                eprintln!("error: cannot read standard input: {e}");
                return ExitCode::FAILURE;
            }
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    if secret.is_empty() {
        eprintln!("error: empty secret");
        return ExitCode::FAILURE;
    }
    match f(&secret) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn validate(file: &Path) -> ExitCode {
    // Key material (PEM, JWK, key files) needs the data plane's crypto: checked here as well.
    let loaded = gatehouse_config::load_file(file).and_then(|c| {
        let mut keys = gatehouse_core::auth::check_keys(&c);
        // Certificates, keys and CA bundles: readable, matching, not expired.
        keys.extend(gatehouse_core::tls::check_files(&c).into_iter().map(|e| (e.path, e.message)));
        if keys.is_empty() {
            Ok(c)
        } else {
            Err(keys.into_iter().map(|(p, m)| gatehouse_config::ConfigError::new(p, m)).collect())
        }
    });
    match loaded {
        Ok(_) => {
            println!("OK");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                println!("{}: {e}", file.display());
            }
            eprintln!("{} problem(s) found", errors.len());
            ExitCode::FAILURE
        }
    }
}

fn explain(file: &Path, method: String, url: String, headers: Vec<String>) -> ExitCode {
    let config = match load(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    let snapshot = match gatehouse_core::snapshot::compile(
        config,
        &gatehouse_core::upstream::Registry::new(),
        &gatehouse_core::policy::Limiters::new(),
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match tooling::explain(&snapshot, &tooling::ExplainRequest { method: method.to_ascii_uppercase(), url, headers }) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn diff(old: &Path, new: &Path) -> ExitCode {
    match (load(old), load(new)) {
        (Ok(a), Ok(b)) => {
            print!("{}", tooling::diff(&a, &b));
            ExitCode::SUCCESS
        }
        (a, b) => {
            for e in [a.err(), b.err()].into_iter().flatten() {
                eprintln!("{e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn load(file: &Path) -> anyhow::Result<gatehouse_config::Config> {
    gatehouse_config::load_file(file).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        anyhow::anyhow!("invalid config {}:\n{}", file.display(), lines.join("\n"))
    })
}

async fn run(config_path: PathBuf, workers: usize) -> anyhow::Result<()> {
    let config = load(&config_path)?;
    let opts = Options { workers, admin: true, config_path: Some(config_path.clone()) };
    let gw = Gateway::start(config, opts).await.context("cannot start")?;
    for a in &gw.listen_addrs {
        tracing::info!(address = %a, "listening");
    }
    if let Some(a) = gw.admin_addr {
        tracing::info!(address = %a, "admin listening");
    }
    serve_until_signal(gw).await
}

/// Waits for signals: SIGHUP re-reads the config file (if the gateway has one), SIGTERM/SIGINT
/// drain and return.
pub(crate) async fn serve_until_signal(gw: Arc<Gateway>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = usr1.recv() => {
                // Log rotation: the writers reopen their files after what is queued.
                gw.reopen_logs();
                tracing::info!("access logs reopened");
            }
            _ = hup.recv() => {
                if gw.config_path().is_none() {
                    tracing::info!("SIGHUP ignored: no config file (quickstart)");
                    continue;
                }
                // Outcome (applied, or refused with every problem) is logged by the gateway;
                // compiling runs off this runtime.
                let g = gw.clone();
                let _ = tokio::task::spawn_blocking(move || g.reload_file("signal")).await;
            }
        }
    }
    tracing::info!(open_connections = gw.open_connections(), "draining");
    gw.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
