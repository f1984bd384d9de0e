//! Launching a service binary the way the Python SDK does: our
//! `wandb-core`, or W&B's from a pip install.
//!
//! `<binary> --no-observability --port-filename <tmp>/port-<pid>.txt --pid
//! <pid>` in a new session; the port file is polled until its last line is
//! `EOF` (30 s at most, failing early if the process exits). The service
//! watches `--pid`, which must be its real parent: us.
//!
//! Like the Python SDK's service connection, one connection stays open
//! for the service's whole life (runs open their own beside it): a
//! launched service ends once every client is gone, and runs come and go.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wandb_proto::token::{PortFile, ServiceAddr};

use crate::error::{Error, Result};

/// How long the port file may take (the SDK's `x_service_wait`).
const SERVICE_WAIT: Duration = Duration::from_secs(30);

pub(crate) struct Launched {
    child: Child,
    _port_dir: TempDir,
    /// Held open, unused: the launcher's connection.
    _control: Control,
}

#[expect(dead_code, reason = "held open, never read or written")]
enum Control {
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
}

impl Control {
    fn connect(addr: &ServiceAddr) -> std::io::Result<Self> {
        Ok(match addr {
            ServiceAddr::Unix(path) => {
                Control::Unix(std::os::unix::net::UnixStream::connect(path)?)
            }
            ServiceAddr::Tcp(port) => {
                Control::Tcp(std::net::TcpStream::connect(("127.0.0.1", *port))?)
            }
        })
    }
}

impl Launched {
    pub fn start(binary: &Path) -> Result<(Self, ServiceAddr)> {
        let port_dir = TempDir::new()?;
        let port_file = port_dir.0.join(format!("port-{}.txt", std::process::id()));
        let mut child = Command::new(binary)
            .arg("--no-observability")
            .arg("--port-filename")
            .arg(&port_file)
            .arg("--pid")
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| Error::Service(format!("cannot launch {}: {e}", binary.display())))?;
        let deadline = Instant::now() + SERVICE_WAIT;
        let addr = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let Ok(Some(pf)) = PortFile::parse(&text)
            {
                match (pf.unix, pf.tcp) {
                    (Some(path), _) => break ServiceAddr::Unix(path),
                    (None, Some(port)) => break ServiceAddr::Tcp(port),
                    (None, None) => {}
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Error::Service(format!(
                    "{} exited ({status}) before writing its port file",
                    binary.display()
                )));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Service(format!(
                    "{} wrote no port file within {SERVICE_WAIT:?}",
                    binary.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let control = match Control::connect(&addr) {
            Ok(c) => c,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Service(format!(
                    "cannot connect to {} at {addr:?}: {e}",
                    binary.display()
                )));
            }
        };
        Ok((
            Self {
                child,
                _port_dir: port_dir,
                _control: control,
            },
            addr,
        ))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (up to `limit`) for the service to exit after a teardown, then
    /// kills it.
    pub fn wait(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        tracing::warn!("wandb: the service did not exit after teardown; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private temporary directory for the port file, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "wandb-rs-{}-{}",
            std::process::id(),
            crate::settings::random_id(8)
        ));
        std::fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
