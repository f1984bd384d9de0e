//! An HTTP proxy on loopback that wants a user name and password (Basic
//! `Proxy-Authorization`), as corporate and cluster proxies do: absolute-form
//! requests (`GET http://host/path`, what clients send for http:// URLs)
//! and CONNECT tunnels (for https:// URLs) alike. Every host is sent to one
//! upstream address (the stand-in), so a base URL whose host never resolves
//! reaches the stand-in only through the proxy.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;

pub struct AuthProxy {
    pub addr: SocketAddr,
    /// Connections let through (with the right credentials).
    pub allowed: Arc<AtomicUsize>,
    /// Requests refused with 407 (no or wrong credentials).
    pub refused: Arc<AtomicUsize>,
    /// CONNECT tunnels among the allowed.
    pub tunnels: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl AuthProxy {
    /// A proxy for `user:password` that forwards to `upstream`.
    pub fn start(user: &str, password: &str, upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let proxy = Self {
            addr,
            allowed: Arc::default(),
            refused: Arc::default(),
            tunnels: Arc::default(),
            stop: Arc::default(),
        };
        let (allowed, refused, tunnels, stop) = (
            proxy.allowed.clone(),
            proxy.refused.clone(),
            proxy.tunnels.clone(),
            proxy.stop.clone(),
        );
        thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let (expected, allowed, refused, tunnels) = (
                    expected.clone(),
                    allowed.clone(),
                    refused.clone(),
                    tunnels.clone(),
                );
                thread::spawn(move || {
                    let _ = serve(client, upstream, &expected, &allowed, &refused, &tunnels);
                });
            }
        });
        proxy
    }

    /// `http://user:password@127.0.0.1:port`.
    pub fn url(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@{}", self.addr)
    }
}

impl Drop for AuthProxy {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    expected: &str,
    allowed: &AtomicUsize,
    refused: &AtomicUsize,
    tunnels: &AtomicUsize,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let end = line == "\r\n";
        head.push(line);
        if end {
            break;
        }
    }
    let authorized = head.iter().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("proxy-authorization") && v.trim() == expected
        })
    });
    let mut client_w = client.try_clone()?;
    if !authorized {
        refused.fetch_add(1, SeqCst);
        client_w.write_all(
            b"HTTP/1.1 407 Proxy Authentication Required\r\n\
              Proxy-Authenticate: Basic realm=\"cluster\"\r\n\
              Content-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    }
    allowed.fetch_add(1, SeqCst);
    let mut server = TcpStream::connect(upstream)?;
    if head[0].starts_with("CONNECT ") {
        tunnels.fetch_add(1, SeqCst);
        client_w.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    } else {
        // Forwarded as it came (the stand-in takes absolute-form requests),
        // minus the credentials, which are the proxy's.
        for line in &head {
            if !line
                .split_once(':')
                .is_some_and(|(k, _)| k.eq_ignore_ascii_case("proxy-authorization"))
            {
                server.write_all(line.as_bytes())?;
            }
        }
    }
    // Whatever the reader buffered past the head, then both ways until
    // either side closes. Later requests on a kept-alive connection follow
    // the first one's (authorized) path, as they would through a tunnel.
    server.write_all(reader.buffer())?;
    let mut server_r = server.try_clone()?;
    let mut client_r = reader.into_inner();
    let up = thread::spawn(move || {
        let _ = std::io::copy(&mut client_r, &mut server);
        let _ = server.shutdown(Shutdown::Write);
    });
    let mut buf = [0u8; 16 * 1024];
    loop {
        match server_r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if client_w.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    // Shutting the client down ends the other direction's copy; it gets a
    // while to see that, never a wait without end.
    let _ = client_w.shutdown(Shutdown::Both);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !up.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
