//! `WANDB_SERVICE` tokens and port files: how a client finds a service.
//!
//! A service writes a port file (`unix=<socket path>` and/or `sock=<tcp
//! port>` lines, then `EOF`) that its launcher polls; a launcher that shares
//! the service with child processes exports a token
//! `3-<launcher pid>-unix-<path>` or `3-<launcher pid>-tcp-localhost-<port>`
//! in `WANDB_SERVICE`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The token format version the wandb SDK writes and accepts.
const TOKEN_VERSION: &str = "3";

/// Where a service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceAddr {
    Unix(PathBuf),
    /// A TCP port on localhost.
    Tcp(u16),
}

/// A parsed `WANDB_SERVICE` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceToken {
    /// The pid of the process that launched (or shares) the service.
    pub parent_pid: u32,
    pub addr: ServiceAddr,
}

/// A `WANDB_SERVICE` value or port file that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid service {what} {value:?}: {reason}")]
pub struct ParseError {
    what: &'static str,
    value: String,
    reason: &'static str,
}

impl fmt::Display for ServiceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.addr {
            ServiceAddr::Unix(path) => write!(
                f,
                "{TOKEN_VERSION}-{}-unix-{}",
                self.parent_pid,
                path.display()
            ),
            ServiceAddr::Tcp(port) => write!(
                f,
                "{TOKEN_VERSION}-{}-tcp-localhost-{port}",
                self.parent_pid
            ),
        }
    }
}

impl FromStr for ServiceToken {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let err = |reason| ParseError {
            what: "token",
            value: s.to_string(),
            reason,
        };
        let mut parts = s.splitn(4, '-');
        let (Some(version), Some(pid), Some(kind), Some(rest)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(err("expected <version>-<pid>-<transport>-<address>"));
        };
        if version != TOKEN_VERSION {
            return Err(err("unsupported token version (expected 3)"));
        }
        let parent_pid = pid.parse().map_err(|_| err("pid is not a number"))?;
        let addr = match kind {
            "unix" if !rest.is_empty() => ServiceAddr::Unix(PathBuf::from(rest)),
            "tcp" => {
                let port = rest
                    .strip_prefix("localhost-")
                    .ok_or(err("tcp address must be localhost-<port>"))?;
                ServiceAddr::Tcp(port.parse().map_err(|_| err("port is not a number"))?)
            }
            _ => return Err(err("transport must be unix or tcp")),
        };
        Ok(Self { parent_pid, addr })
    }
}

/// What a port file announces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortFile {
    pub unix: Option<PathBuf>,
    pub tcp: Option<u16>,
}

impl PortFile {
    /// The file's content: one line per listener, then `EOF` (no newline).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(path) = &self.unix {
            out.push_str(&format!("unix={}\n", path.display()));
        }
        if let Some(port) = self.tcp {
            out.push_str(&format!("sock={port}\n"));
        }
        out.push_str("EOF");
        out
    }

    /// Parses a complete port file; `None` while it is still incomplete (the
    /// last line is not `EOF`).
    pub fn parse(content: &str) -> Result<Option<Self>, ParseError> {
        let lines: Vec<&str> = content.lines().collect();
        if lines.last() != Some(&"EOF") {
            return Ok(None);
        }
        let mut file = PortFile::default();
        for line in &lines[..lines.len() - 1] {
            let err = |reason| ParseError {
                what: "port file",
                value: content.to_string(),
                reason,
            };
            if let Some(path) = line.strip_prefix("unix=") {
                file.unix.get_or_insert_with(|| PathBuf::from(path));
            } else if let Some(port) = line.strip_prefix("sock=") {
                let port = port
                    .parse()
                    .map_err(|_| err("sock= is not a port number"))?;
                file.tcp.get_or_insert(port);
            } else {
                return Err(err("unknown line"));
            }
        }
        Ok(Some(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for text in [
            "3-12602-unix-/tmp/wandb-1-2-3/socket",
            "3-7-tcp-localhost-40123",
        ] {
            let token: ServiceToken = text.parse().unwrap();
            assert_eq!(token.to_string(), text);
        }
        let t: ServiceToken = "3-5-unix-/a-b/c".parse().unwrap();
        assert_eq!(t.addr, ServiceAddr::Unix("/a-b/c".into()));
        for bad in [
            "",
            "2-1-unix-/x",
            "3-x-unix-/x",
            "3-1-pipe-x",
            "3-1-tcp-host-1",
            "3-1-tcp-localhost-99999",
        ] {
            assert!(bad.parse::<ServiceToken>().is_err(), "{bad}");
        }
    }

    #[test]
    fn port_files_round_trip_and_wait_for_eof() {
        let file = PortFile {
            unix: Some("/tmp/s/socket".into()),
            tcp: Some(8080),
        };
        assert_eq!(file.render(), "unix=/tmp/s/socket\nsock=8080\nEOF");
        assert_eq!(PortFile::parse(&file.render()).unwrap(), Some(file));
        assert_eq!(PortFile::parse("unix=/tmp/s/socket\n").unwrap(), None);
        assert!(PortFile::parse("bogus\nEOF").is_err());
    }
}
