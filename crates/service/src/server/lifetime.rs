//! When the service ends on its own: its launcher is gone, its clients all
//! hung up without a teardown, it has been idle too long (detached mode),
//! or it got SIGINT/SIGTERM.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};

use super::{Ctx, ServiceOptions, ShutdownReason};

/// How often the parent and the idle timer are checked.
const POLL: Duration = Duration::from_millis(100);

/// How long a launched service waits for a client to come back once the
/// last one hung up.
const CLIENTS_GRACE: Duration = Duration::from_secs(2);

pub fn watch(ctx: &Arc<Ctx>, options: &ServiceOptions) {
    let signals = ctx.clone();
    let signals_wanted = options.handle_signals;
    tokio::spawn(async move {
        if !signals_wanted {
            return;
        }
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::warn!("cannot install signal handlers");
            return;
        };
        let sig = tokio::select! {
            _ = int.recv() => libc::SIGINT,
            _ = term.recv() => libc::SIGTERM,
        };
        signals.shutdown(ShutdownReason::Signal(sig));
    });

    if let Some(pid) = options.parent_pid.filter(|p| *p != 0 && !options.detached) {
        if options.os_pid_shutdown {
            // Linux delivers this signal when the parent dies. SIGTERM rather
            // than wandb-core's SIGKILL: it lets us write what we accepted.
            #[cfg(target_os = "linux")]
            // SAFETY: prctl with PR_SET_PDEATHSIG only sets a process attribute.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            }
        }
        // The launcher keeps one connection for its whole life (the SDK's
        // service connection) and tears us down through it. Once every
        // client is gone without that, nobody can: a launcher that lost
        // its connection would wait for our exit forever. Runs are closed
        // as when the launcher dies.
        let clients = ctx.clone();
        tokio::spawn(async move {
            let mut seen = false;
            let mut empty_since: Option<Instant> = None;
            loop {
                if clients.connections.load(Ordering::SeqCst) > 0 {
                    seen = true;
                    empty_since = None;
                } else if seen {
                    let since = *empty_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= CLIENTS_GRACE {
                        clients.shutdown(ShutdownReason::ClientsGone);
                        return;
                    }
                }
                tokio::time::sleep(POLL).await;
            }
        });
        let parent = ctx.clone();
        tokio::spawn(async move {
            loop {
                // `--pid` must be our real parent, as with wandb-core: once
                // it differs (the launcher exited and we were re-parented),
                // nobody will tear us down.
                if std::os::unix::process::parent_id() != pid {
                    parent.shutdown(ShutdownReason::ParentGone);
                    return;
                }
                tokio::time::sleep(POLL).await;
            }
        });
    }

    if options.detached
        && let Some(timeout) = options.idle_timeout.filter(|t| !t.is_zero())
    {
        let idle = ctx.clone();
        tokio::spawn(async move {
            let mut idle_since: Option<Instant> = None;
            loop {
                if idle.connections.load(Ordering::SeqCst) == 0 {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= timeout {
                        idle.shutdown(ShutdownReason::IdleTimeout);
                        return;
                    }
                } else {
                    idle_since = None;
                }
                tokio::time::sleep(POLL.min(timeout)).await;
            }
        });
    }
}
