//! The service process: listeners, connections and an orderly shutdown.
//!
//! Shutdown is designed, not bolted on: every way the service can end
//! (teardown from the SDK, idle timeout, the launching process gone, a
//! signal, `wandb-core stop`) goes through [`Ctx::shutdown`], after which the
//! server stops accepting, finishes every run (writing all it accepted),
//! closes connections and removes its socket.

mod api;
mod connection;
mod lifetime;
mod listener;
mod local;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use wandb_proto::frame::DEFAULT_MAX_FRAME_LEN;
use wandb_proto::token::{PortFile, ServiceAddr, ServiceToken};

pub use self::listener::Listeners;
pub use self::local::{Connector, Incoming, LocalConnection};
use crate::mux::Mux;
#[cfg(feature = "fuzzing")]
pub(crate) use connection::fuzz_envelope;

/// How the service was asked to run (the `wandb-core` flags).
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Where to write the port file.
    pub port_filename: Option<PathBuf>,
    /// The process-wide log, which each run's `logs/debug-core.log` links
    /// to (the binary opens it).
    pub core_log: Option<PathBuf>,
    /// The launching process; the service ends when it is gone (unless
    /// detached).
    pub parent_pid: Option<u32>,
    pub detached: bool,
    /// With `detached`: exit after this long without a connection.
    pub idle_timeout: Option<Duration>,
    /// Also listen on a loopback TCP port.
    pub listen_on_localhost: bool,
    /// Ask the kernel to signal us when the parent dies (Linux).
    pub os_pid_shutdown: bool,
    pub max_frame_len: usize,
    /// End on SIGINT/SIGTERM. Off for a service running inside a user's
    /// program (the Rust SDK's in-process service): those signals are the
    /// program's.
    pub handle_signals: bool,
    /// How far records go towards disk before a run takes more.
    pub durability: crate::settings::Durability,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            port_filename: None,
            core_log: None,
            parent_pid: None,
            detached: false,
            idle_timeout: None,
            listen_on_localhost: false,
            os_pid_shutdown: false,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            handle_signals: true,
            durability: Default::default(),
        }
    }
}

/// Why the service stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownReason {
    /// `inform_teardown` with the user process's exit code.
    Teardown(i32),
    IdleTimeout,
    ParentGone,
    /// Every client hung up without a teardown while the launcher lives
    /// on (a client that lost its connection cannot tear us down, and
    /// would wait for us forever).
    ClientsGone,
    Signal(i32),
}

impl ShutdownReason {
    /// The exit code for runs that did not exit, or `None` to close them
    /// without inventing an exit (the process died: the run crashed).
    fn run_exit_code(self) -> Option<i32> {
        match self {
            ShutdownReason::Teardown(code) => Some(code),
            ShutdownReason::IdleTimeout => Some(0),
            ShutdownReason::ParentGone
            | ShutdownReason::ClientsGone
            | ShutdownReason::Signal(_) => None,
        }
    }

    /// The service process's exit status.
    pub fn exit_status(self) -> i32 {
        match self {
            ShutdownReason::Signal(sig) => 128 + sig,
            _ => 0,
        }
    }
}

/// State shared by all connections.
pub struct Ctx {
    pub mux: Mux,
    /// Public-API sessions (`api_init_request`).
    pub api: api::ApiSessions,
    /// `wandb sync` operations.
    pub syncs: Arc<crate::sync::Registry>,
    pub max_frame_len: usize,
    shutdown: watch::Sender<Option<ShutdownReason>>,
    /// Open connections (the idle timer runs while there are none).
    connections: AtomicUsize,
    /// Wakes connections blocked waiting for their clients when the
    /// service stops them (without it they notice within 100 ms).
    wakeup: Option<connection::Wakeup>,
}

impl Ctx {
    /// Starts the shutdown; the first reason wins.
    pub fn shutdown(&self, reason: ShutdownReason) {
        self.shutdown.send_if_modified(|current| {
            if current.is_none() {
                tracing::info!(?reason, "shutting down");
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }
}

/// Before runs are finished: a client that wrote its last records and
/// exited just before the shutdown may still have them in its socket. Its
/// connection reads them and ends at the end of the stream, so wait until
/// the number of open connections has not changed for 30 ms (at most 2 s):
/// what was sent before the shutdown is kept. (Reading a socket's buffer
/// takes well under that.)
async fn settle_connections(ctx: &Ctx) {
    let start = tokio::time::Instant::now();
    let mut last = ctx.connections.load(Ordering::SeqCst);
    let mut stable_since = start;
    while start.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = ctx.connections.load(Ordering::SeqCst);
        if now != last {
            last = now;
            stable_since = tokio::time::Instant::now();
        } else if stable_since.elapsed() >= Duration::from_millis(30) {
            return;
        }
    }
}

/// Serves a connection on a thread of its own, counted in
/// `ctx.connections` while it is served (the idle timer and the shutdown
/// wait on open connections; readers pause longer when there are many).
fn serve_counted(
    ctx: &Arc<Ctx>,
    conn_id: u64,
    serve: impl FnOnce(Arc<Ctx>, tokio::runtime::Handle) + Send + 'static,
) -> std::io::Result<()> {
    let rt = tokio::runtime::Handle::current();
    ctx.connections.fetch_add(1, Ordering::SeqCst);
    let counted = ctx.clone();
    std::thread::Builder::new()
        .name(format!("conn-{conn_id}"))
        .spawn(move || {
            serve(counted.clone(), rt);
            counted.connections.fetch_sub(1, Ordering::SeqCst);
        })
        .map(drop)
        .inspect_err(|_| {
            ctx.connections.fetch_sub(1, Ordering::SeqCst);
        })
}

/// A running service.
pub struct Service {
    listeners: Listeners,
    options: ServiceOptions,
    connector: Connector,
    local: flume::Receiver<local::Accepted>,
}

impl Service {
    /// Binds the listeners (a Unix socket in a fresh private directory, and
    /// a loopback TCP port when asked) and writes the port file.
    pub async fn bind(options: ServiceOptions) -> std::io::Result<Self> {
        let listeners =
            Listeners::bind(options.parent_pid.unwrap_or(0), options.listen_on_localhost)?;
        if let Some(path) = &options.port_filename {
            let port_file = PortFile {
                unix: listeners.unix_path().map(PathBuf::from),
                tcp: listeners.tcp_port(),
            };
            wandb_store::write_atomically(path, port_file.render().as_bytes())?;
        }
        let (connector, local) = Connector::new();
        Ok(Self {
            listeners,
            options,
            connector,
            local,
        })
    }

    /// Opens connections from inside this process, without a socket (the
    /// Rust SDK's in-process service).
    pub fn connector(&self) -> Connector {
        self.connector.clone()
    }

    /// The `WANDB_SERVICE` token for this service.
    pub fn token(&self) -> ServiceToken {
        let addr = match (self.listeners.unix_path(), self.listeners.tcp_port()) {
            (Some(path), _) => ServiceAddr::Unix(path.to_path_buf()),
            (None, Some(port)) => ServiceAddr::Tcp(port),
            (None, None) => unreachable!("at least one listener is bound"),
        };
        ServiceToken {
            parent_pid: self.options.parent_pid.unwrap_or_else(std::process::id),
            addr,
        }
    }

    /// Serves until shutdown; returns why it stopped, after every run is
    /// finished and the socket removed.
    pub async fn run(self) -> ShutdownReason {
        let (shutdown_tx, mut shutdown_rx) = watch::channel(None);
        let ctx = Arc::new(Ctx {
            mux: Mux::new(self.options.core_log.clone(), self.options.durability),
            api: api::ApiSessions::default(),
            syncs: Arc::default(),
            max_frame_len: self.options.max_frame_len,
            shutdown: shutdown_tx,
            connections: AtomicUsize::new(0),
            wakeup: connection::Wakeup::new()
                .inspect_err(|e| tracing::warn!("no wake-up pipe for connections: {e}"))
                .ok(),
        });
        lifetime::watch(&ctx, &self.options);

        let stop_connections = CancellationToken::new();
        let conn_ids = AtomicU64::new(1);
        let Service {
            mut listeners,
            local,
            connector,
            ..
        } = self;
        // Connectors handed out keep working while this runs; the service's
        // own is not a client.
        drop(connector);
        let reason = loop {
            tokio::select! {
                changed = shutdown_rx.changed() => {
                    if changed.is_err() {
                        break ShutdownReason::Teardown(0);
                    }
                    if let Some(reason) = *shutdown_rx.borrow() {
                        break reason;
                    }
                }
                Ok(link) = local.recv_async() => {
                    let id = conn_ids.fetch_add(1, Ordering::Relaxed);
                    let stop = stop_connections.clone();
                    if let Err(e) = serve_counted(&ctx, id, move |ctx, rt| {
                        local::serve(link, id, ctx, rt, stop)
                    }) {
                        tracing::warn!(conn = id, "cannot serve an in-process connection: {e}");
                    }
                }
                accepted = listeners.accept() => match accepted {
                    Ok(io) => {
                        let id = conn_ids.fetch_add(1, Ordering::Relaxed);
                        let stop = stop_connections.clone();
                        let sock = match io {
                            listener::Conn::Unix(s) => s.into_std().map(connection::Socket::Unix),
                            listener::Conn::Tcp(s) => s.into_std().map(connection::Socket::Tcp),
                        };
                        let spawned = sock.and_then(|sock| {
                            serve_counted(&ctx, id, move |ctx, rt| {
                                connection::serve(sock, id, ctx, rt, stop)
                            })
                        });
                        if let Err(e) = spawned {
                            tracing::warn!(conn = id, "cannot serve a connection: {e}");
                        }
                    }
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
            }
        };
        // Stop accepting, finish runs (they may still answer their clients),
        // then close connections.
        listeners.close();
        drop(local);
        settle_connections(&ctx).await;
        ctx.mux.finish_all(reason.run_exit_code()).await;
        stop_connections.cancel();
        if let Some(w) = &ctx.wakeup {
            w.wake();
        }
        // Let connection tasks write their last answers.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while ctx.connections.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tracing::info!(?reason, "service stopped");
        reason
    }
}
