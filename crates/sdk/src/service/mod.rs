//! Finding a service: attach to `WANDB_SERVICE`, run ours in-process, or
//! launch a binary. All three end in a socket address that speaks the same
//! protocol.
//!
//! A service the SDK started (in-process or launched) is shared by the
//! runs of this process that asked for the same transport and is torn
//! down, as the Python SDK does at exit, when the last of them is done.

mod inprocess;
mod launch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use wandb_proto::pb;
use wandb_proto::token::{ServiceAddr, ServiceToken};

use crate::connection::{Connection, Link};
use crate::error::{Error, Result};
use crate::settings::{QueuePolicy, Transport};

/// How long a torn-down service gets to finish its runs and exit.
const TEARDOWN_WAIT: Duration = Duration::from_secs(60);

/// A service this process uses.
pub(crate) struct Service {
    addr: ServiceAddr,
    owned: Owned,
}

enum Owned {
    /// Someone else's (`WANDB_SERVICE`): never torn down by us.
    No,
    InProcess(inprocess::InProcess),
    Launched(launch::Launched),
}

impl Service {
    /// The service for `transport`, shared with other live runs of this
    /// process that use the same one.
    pub fn get(transport: &Transport) -> Result<Arc<Service>> {
        static SHARED: OnceLock<Mutex<HashMap<Transport, Weak<Service>>>> = OnceLock::new();
        let transport = match transport {
            Transport::Auto => match std::env::var("WANDB_SERVICE") {
                Ok(token) if !token.is_empty() => Transport::Attach(token),
                _ => Transport::InProcess,
            },
            other => other.clone(),
        };
        let mut shared = SHARED
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(service) = shared.get(&transport).and_then(Weak::upgrade) {
            return Ok(service);
        }
        let service = Arc::new(match &transport {
            Transport::Auto => unreachable!("resolved above"),
            Transport::Attach(token) => {
                let token: ServiceToken = token
                    .parse()
                    .map_err(|e| Error::Service(format!("WANDB_SERVICE: {e}")))?;
                Service {
                    addr: token.addr,
                    owned: Owned::No,
                }
            }
            Transport::InProcess => {
                let (service, addr) = inprocess::InProcess::start()?;
                Service {
                    addr,
                    owned: Owned::InProcess(service),
                }
            }
            Transport::Launch(path) => {
                let (service, addr) = launch::Launched::start(path)?;
                Service {
                    addr,
                    owned: Owned::Launched(service),
                }
            }
        });
        shared.retain(|_, w| w.strong_count() > 0);
        shared.insert(transport, Arc::downgrade(&service));
        Ok(service)
    }

    /// A connection: a channel into a service in this process, else the
    /// socket.
    pub fn connect(&self, capacity: usize, policy: QueuePolicy) -> Result<Connection> {
        let link = match &self.owned {
            Owned::InProcess(s) => Link::Local(
                s.connector()
                    .connect(capacity)
                    .map_err(|e| Error::Service(format!("in-process service: {e}")))?,
            ),
            _ => Link::Socket(self.addr.clone()),
        };
        Connection::connect(link, capacity, policy)
    }

    /// The `WANDB_SERVICE` token of this service (for child processes,
    /// Python ones included).
    pub fn token(&self) -> String {
        ServiceToken {
            parent_pid: std::process::id(),
            addr: self.addr.clone(),
        }
        .to_string()
    }

    /// The service's process ID when we launched it.
    pub fn pid(&self) -> Option<u32> {
        match &self.owned {
            Owned::Launched(l) => Some(l.pid()),
            _ => None,
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if matches!(self.owned, Owned::No) {
            return;
        }
        // The Python SDK's atexit teardown: the service finishes what is
        // open and exits.
        if let Ok(conn) = self.connect(4, QueuePolicy::Drop) {
            let teardown = pb::ServerRequest {
                server_request_type: Some(pb::server_request::ServerRequestType::InformTeardown(
                    pb::ServerInformTeardownRequest {
                        exit_code: 0,
                        info: None,
                    },
                )),
                ..Default::default()
            };
            let _ = conn.publish_reliably(&teardown, false);
            conn.close();
        }
        match &mut self.owned {
            Owned::No => {}
            Owned::InProcess(s) => s.wait(TEARDOWN_WAIT),
            Owned::Launched(s) => s.wait(TEARDOWN_WAIT),
        }
    }
}
