//! Where clients connect: a Unix socket in a fresh private directory
//! (`$TMPDIR/wandb-<parent pid>-<pid>-<random>/socket`, directory 0700 and
//! socket 0600, so no other user can connect), and a loopback-only TCP port
//! when asked.

use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

pub enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

pub struct Listeners {
    unix: Option<(UnixListener, PathBuf)>,
    tcp: Option<TcpListener>,
}

/// Longest socket path the kernel takes (`sun_path` holds 108 bytes).
const MAX_SOCKET_PATH: usize = 100;

fn private_dir(parent_pid: u32) -> std::io::Result<PathBuf> {
    let mut bases = vec![std::env::temp_dir()];
    bases.push(PathBuf::from("/tmp"));
    let mut last_err = None;
    for base in bases {
        let dir = base.join(format!(
            "wandb-{parent_pid}-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        if dir.join("socket").as_os_str().len() > MAX_SOCKET_PATH {
            continue;
        }
        match DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| {
        std::io::Error::other("no temporary directory short enough for a socket path")
    }))
}

impl Listeners {
    pub fn bind(parent_pid: u32, tcp: bool) -> std::io::Result<Self> {
        let unix = match Self::bind_unix(parent_pid) {
            Ok(u) => Some(u),
            Err(e) if tcp => {
                tracing::warn!("no Unix socket ({e}); TCP only");
                None
            }
            Err(e) => {
                // wandb-core falls back to TCP when Unix sockets fail.
                tracing::warn!("no Unix socket ({e}); falling back to TCP on localhost");
                return Ok(Self {
                    unix: None,
                    tcp: Some(Self::bind_tcp()?),
                });
            }
        };
        let tcp = if tcp { Some(Self::bind_tcp()?) } else { None };
        Ok(Self { unix, tcp })
    }

    fn bind_unix(parent_pid: u32) -> std::io::Result<(UnixListener, PathBuf)> {
        let dir = private_dir(parent_pid)?;
        let path = dir.join("socket");
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Ok((listener, path))
    }

    fn bind_tcp() -> std::io::Result<TcpListener> {
        let std = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        std.set_nonblocking(true)?;
        TcpListener::from_std(std)
    }

    pub fn unix_path(&self) -> Option<&Path> {
        self.unix.as_ref().map(|(_, p)| p.as_path())
    }

    pub fn tcp_port(&self) -> Option<u16> {
        self.tcp
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    }

    pub async fn accept(&mut self) -> std::io::Result<Conn> {
        match (&self.unix, &self.tcp) {
            (Some((u, _)), Some(t)) => tokio::select! {
                r = u.accept() => r.map(|(s, _)| Conn::Unix(s)),
                r = t.accept() => r.map(|(s, _)| { let _ = s.set_nodelay(true); Conn::Tcp(s) }),
            },
            (Some((u, _)), None) => u.accept().await.map(|(s, _)| Conn::Unix(s)),
            (None, Some(t)) => t.accept().await.map(|(s, _)| {
                let _ = s.set_nodelay(true);
                Conn::Tcp(s)
            }),
            (None, None) => std::future::pending().await,
        }
    }

    /// Stops listening and removes the socket and its directory.
    pub fn close(&mut self) {
        if let Some((listener, path)) = self.unix.take() {
            drop(listener);
            let _ = std::fs::remove_file(&path);
            if let Some(dir) = path.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
        self.tcp = None;
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.close();
    }
}
