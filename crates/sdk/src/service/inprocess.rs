//! Our service on background threads of the user's process: zero setup
//! for `cargo add wandb` users, no binary to find.
//!
//! It is the same service library the `wandb-core` binary runs, on a tokio
//! runtime of its own (so it works whether or not the user has one, and
//! never blocks theirs), listening on a private Unix socket. It leaves the
//! process's signals alone.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wandb_proto::token::ServiceAddr;
use wandb_service::{Connector, Service, ServiceOptions};

use crate::error::{Error, Result};

pub(crate) struct InProcess {
    /// Connections from this process skip the socket.
    connector: Connector,
    thread: Option<JoinHandle<()>>,
    /// flume's receiver is `Sync`, so the handle can sit in a shared `Arc`.
    done: flume::Receiver<()>,
}

impl InProcess {
    pub fn start() -> Result<(Self, ServiceAddr)> {
        let (addr_tx, addr_rx) = flume::bounded(1);
        let (done_tx, done) = flume::bounded(1);
        let thread = std::thread::Builder::new()
            .name("wandb-service".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("wandb-service-rt")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = addr_tx.send(Err(format!("tokio runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    let options = ServiceOptions {
                        handle_signals: false,
                        ..Default::default()
                    };
                    let service = match Service::bind(options).await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = addr_tx.send(Err(format!("cannot listen: {e}")));
                            return;
                        }
                    };
                    let _ = addr_tx.send(Ok((service.token().addr, service.connector())));
                    service.run().await;
                });
                // Blocking work of finished runs (log writers) is joined by
                // the service; nothing else may outlive the runtime.
                rt.shutdown_timeout(Duration::from_secs(5));
                let _ = done_tx.send(());
            })
            .map_err(|e| Error::Service(format!("cannot start the in-process service: {e}")))?;
        let (addr, connector) = addr_rx
            .recv()
            .map_err(|_| Error::Service("the in-process service did not start".into()))?
            .map_err(Error::Service)?;
        Ok((
            Self {
                connector,
                thread: Some(thread),
                done,
            },
            addr,
        ))
    }

    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// Waits (up to `limit`) for the service to stop after a teardown.
    pub fn wait(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        if self
            .done
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
            && let Some(t) = self.thread.take()
        {
            let _ = t.join();
        }
    }
}
