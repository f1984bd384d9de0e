//! One socket connection to a service, with the I/O on threads of its own.
//!
//! Why threads, not the caller: `Run::log` must never wait for the socket.
//! Callers encode a frame and put it on a bounded queue; a writer thread
//! drains the queue in batches (one `write` for many frames) and writes
//! media files before the records that name them; a reader thread routes
//! answers to whoever waits on their `request_id`. When the socket breaks,
//! both threads stop, every waiter gets [`Error::Disconnected`], and what
//! was not written is counted, never silently lost.

use std::collections::HashMap;
use std::io::{BufWriter, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use prost::Message;
use wandb_proto::frame::{HEADER_LEN, MAGIC};
use wandb_proto::pb;
use wandb_proto::token::ServiceAddr;

use crate::error::{Error, Result};
use crate::settings::QueuePolicy;

/// Largest answer accepted from a service.
const MAX_ANSWER: usize = 256 << 20;

/// The socket, Unix or loopback TCP.
enum Socket {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Socket {
    fn connect(addr: &ServiceAddr) -> std::io::Result<Self> {
        Ok(match addr {
            ServiceAddr::Unix(path) => Socket::Unix(UnixStream::connect(path)?),
            ServiceAddr::Tcp(port) => {
                let s = TcpStream::connect(("127.0.0.1", *port))?;
                s.set_nodelay(true)?;
                Socket::Tcp(s)
            }
        })
    }

    fn try_clone(&self) -> std::io::Result<Self> {
        Ok(match self {
            Socket::Unix(s) => Socket::Unix(s.try_clone()?),
            Socket::Tcp(s) => Socket::Tcp(s.try_clone()?),
        })
    }

    fn shutdown(&self, how: Shutdown) {
        let _ = match self {
            Socket::Unix(s) => s.shutdown(how),
            Socket::Tcp(s) => s.shutdown(how),
        };
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Socket::Unix(s) => s.read(buf),
            Socket::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Socket::Unix(s) => s.write(buf),
            Socket::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the writer thread does, in queue order.
enum Outgoing {
    /// An encoded frame; `record` says whether it counts as a record.
    Frame { bytes: Vec<u8>, record: bool },
    /// A media file the next frames refer to.
    File { path: PathBuf, bytes: Arc<Vec<u8>> },
}

type Waiter = flume::Sender<Result<pb::ServerResponse>>;

/// Counters of what happened to records.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub sent: AtomicU64,
    pub dropped: AtomicU64,
    pub undelivered: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> crate::RunStats {
        crate::RunStats {
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            undelivered: self.undelivered.load(Ordering::Relaxed),
        }
    }
}

struct Shared {
    waiters: Mutex<HashMap<String, Waiter>>,
    /// Why the connection is closed, once it is.
    closed: Mutex<Option<String>>,
    counters: Counters,
}

impl Shared {
    fn close(&self, why: String) {
        let mut closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        if closed.is_none() {
            tracing::debug!("wandb: connection closed: {why}");
            *closed = Some(why.clone());
        }
        drop(closed);
        let waiters: Vec<Waiter> = self
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, w)| w)
            .collect();
        for w in waiters {
            let _ = w.send(Err(Error::Disconnected(why.clone())));
        }
    }

    fn closed(&self) -> Option<String> {
        self.closed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A connection to a service.
pub(crate) struct Connection {
    queue: Mutex<Option<flume::Sender<Outgoing>>>,
    policy: QueuePolicy,
    shared: Arc<Shared>,
    socket: Socket,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Connection {
    pub fn connect(addr: &ServiceAddr, capacity: usize, policy: QueuePolicy) -> Result<Self> {
        let socket = Socket::connect(addr)
            .map_err(|e| Error::Service(format!("cannot connect to {addr:?}: {e}")))?;
        let (tx, rx) = flume::bounded(capacity);
        let shared = Arc::new(Shared {
            waiters: Mutex::default(),
            closed: Mutex::default(),
            counters: Counters::default(),
        });
        let spawn_err = |e: std::io::Error| Error::Service(format!("cannot start a thread: {e}"));
        let write_half = socket
            .try_clone()
            .map_err(|e| Error::Service(format!("socket: {e}")))?;
        let read_half = socket
            .try_clone()
            .map_err(|e| Error::Service(format!("socket: {e}")))?;
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("wandb-writer".into())
                .spawn(move || write_loop(write_half, rx, &shared))
                .map_err(spawn_err)?
        };
        {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("wandb-reader".into())
                .spawn(move || read_loop(read_half, &shared))
                .map_err(spawn_err)?;
        }
        Ok(Self {
            queue: Mutex::new(Some(tx)),
            policy,
            shared,
            socket,
            writer: Mutex::new(Some(writer)),
        })
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    fn sender(&self) -> Result<flume::Sender<Outgoing>> {
        if let Some(why) = self.shared.closed() {
            return Err(Error::Disconnected(why));
        }
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(Error::Finished)
    }

    /// Queues a record under the queue policy (the hot path of `log`).
    pub fn publish(&self, request: &pb::ServerRequest) -> Result<()> {
        let bytes = encode(request);
        let tx = self.sender()?;
        let item = Outgoing::Frame {
            bytes,
            record: true,
        };
        match self.policy {
            QueuePolicy::Drop => match tx.try_send(item) {
                Ok(()) => Ok(()),
                Err(flume::TrySendError::Full(_)) => {
                    self.shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Err(flume::TrySendError::Disconnected(_)) => Err(self.gone()),
            },
            QueuePolicy::Block(limit) => match tx.send_timeout(item, limit) {
                Ok(()) => Ok(()),
                Err(flume::SendTimeoutError::Timeout(_)) => Err(Error::QueueFull(limit)),
                Err(flume::SendTimeoutError::Disconnected(_)) => Err(self.gone()),
            },
        }
    }

    /// Queues a record that must not be dropped (control messages, files),
    /// waiting for room as long as the connection lives.
    pub fn publish_reliably(&self, request: &pb::ServerRequest, record: bool) -> Result<()> {
        let bytes = encode(request);
        self.sender()?
            .send(Outgoing::Frame { bytes, record })
            .map_err(|_| self.gone())
    }

    /// Queues a media file to write before the records queued after it.
    pub fn write_file(&self, path: PathBuf, bytes: Arc<Vec<u8>>) -> Result<()> {
        self.sender()?
            .send(Outgoing::File { path, bytes })
            .map_err(|_| self.gone())
    }

    /// Sends a request and waits for its answer.
    pub fn request(
        &self,
        mut request: pb::ServerRequest,
        what: &'static str,
        timeout: Duration,
    ) -> Result<pb::ServerResponse> {
        let id = crate::settings::random_id(12);
        request.request_id = id.clone();
        if let Some(pb::server_request::ServerRequestType::RecordPublish(r)) =
            &mut request.server_request_type
        {
            r.control.get_or_insert_with(Default::default).mailbox_slot = id.clone();
        }
        let (tx, rx) = flume::bounded(1);
        self.shared
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), tx);
        if let Err(e) = self.publish_reliably(&request, false) {
            self.forget(&id);
            return Err(e);
        }
        match rx.recv_timeout(timeout) {
            Ok(answer) => {
                let answer = answer?;
                if let Some(pb::server_response::ServerResponseType::ErrorResponse(e)) =
                    &answer.server_response_type
                {
                    return Err(Error::Refused(e.message.clone()));
                }
                Ok(answer)
            }
            Err(flume::RecvTimeoutError::Timeout) => {
                self.forget(&id);
                let cancel = pb::ServerRequest {
                    server_request_type: Some(pb::server_request::ServerRequestType::Cancel(
                        pb::ServerCancelRequest { request_id: id },
                    )),
                    ..Default::default()
                };
                let _ = self.publish_reliably(&cancel, false);
                Err(Error::Timeout {
                    what,
                    after: timeout,
                })
            }
            Err(flume::RecvTimeoutError::Disconnected) => Err(self.gone()),
        }
    }

    fn forget(&self, id: &str) {
        self.shared
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    fn gone(&self) -> Error {
        Error::Disconnected(
            self.shared
                .closed()
                .unwrap_or_else(|| "the connection is closed".into()),
        )
    }

    /// Writes everything queued, then closes the sending side (the service
    /// sees the end of the stream). Returns once the writer is done.
    pub fn close(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = w.join();
        }
        self.socket.shutdown(Shutdown::Write);
    }

    /// Why the connection closed, if it did.
    pub fn closed_reason(&self) -> Option<String> {
        self.shared.closed()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
        self.socket.shutdown(Shutdown::Both);
    }
}

/// Frames a request: `W`, u32 LE length, the message.
fn encode(request: &pb::ServerRequest) -> Vec<u8> {
    let len = request.encoded_len();
    let mut out = Vec::with_capacity(HEADER_LEN + len);
    out.push(MAGIC);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    request
        .encode(&mut out)
        .expect("a Vec grows to fit the message");
    out
}

fn write_loop(socket: Socket, rx: flume::Receiver<Outgoing>, shared: &Shared) {
    let mut out = BufWriter::with_capacity(64 << 10, socket);
    let mut failed: Option<String> = None;
    let mut pending_records = 0u64;
    while let Ok(item) = rx.recv() {
        let mut next = Some(item);
        // Drain what is queued now, then flush once.
        while let Some(item) = next.take() {
            match item {
                Outgoing::Frame { bytes, record } => {
                    if failed.is_some() {
                        shared
                            .counters
                            .undelivered
                            .fetch_add(record as u64, Ordering::Relaxed);
                    } else if let Err(e) = out.write_all(&bytes) {
                        failed = Some(format!("write failed: {e}"));
                        shared
                            .counters
                            .undelivered
                            .fetch_add(pending_records + record as u64, Ordering::Relaxed);
                        pending_records = 0;
                    } else {
                        pending_records += record as u64;
                    }
                }
                Outgoing::File { path, bytes } => {
                    if let Err(e) = write_media(&path, &bytes) {
                        tracing::warn!("wandb: cannot write {}: {e}", path.display());
                    }
                }
            }
            next = rx.try_recv().ok();
        }
        if failed.is_none() {
            match out.flush() {
                Ok(()) => {
                    shared
                        .counters
                        .sent
                        .fetch_add(pending_records, Ordering::Relaxed);
                }
                Err(e) => {
                    failed = Some(format!("write failed: {e}"));
                    shared
                        .counters
                        .undelivered
                        .fetch_add(pending_records, Ordering::Relaxed);
                }
            }
            pending_records = 0;
        }
        if let Some(why) = &failed {
            shared.close(why.clone());
        }
    }
}

fn write_media(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, bytes)
}

fn read_loop(mut socket: Socket, shared: &Shared) {
    let why = loop {
        let mut header = [0u8; HEADER_LEN];
        if let Err(e) = socket.read_exact(&mut header) {
            break if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "the service closed the connection".to_string()
            } else {
                format!("read failed: {e}")
            };
        }
        if header[0] != MAGIC {
            break format!("bad frame from the service (first byte {:#04x})", header[0]);
        }
        let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if len > MAX_ANSWER {
            break format!("answer of {len} bytes is too large");
        }
        let mut payload = vec![0u8; len];
        if let Err(e) = socket.read_exact(&mut payload) {
            break format!("read failed: {e}");
        }
        let answer = match pb::ServerResponse::decode(payload.as_slice()) {
            Ok(a) => a,
            Err(e) => break format!("undecodable answer from the service: {e}"),
        };
        let waiter = shared
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&answer.request_id);
        match waiter {
            Some(w) => {
                let _ = w.send(Ok(answer));
            }
            None => tracing::trace!(
                "wandb: answer to an unknown request {:?}",
                answer.request_id
            ),
        }
    };
    shared.close(why);
}
