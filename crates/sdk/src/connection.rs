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

use bytes::Bytes;
use prost::Message;
use wandb_proto::frame::{HEADER_LEN, MAGIC};
use wandb_proto::pb;
use wandb_proto::token::ServiceAddr;
use wandb_service::Incoming;

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

/// How frames reach the service.
pub(crate) enum Link {
    /// A socket (any service, ours or W&B's).
    Socket(ServiceAddr),
    /// A channel into our service running in this process.
    Local(wandb_service::LocalConnection),
}

/// Where `log()` puts what it sends.
#[derive(Clone)]
enum Queue {
    /// The writer thread's queue, in front of a socket.
    Writer(flume::Sender<Outgoing>),
    /// The in-process service's own channel: no thread in between.
    Local(flume::Sender<Incoming>),
}

/// What a queue carries, for both kinds.
trait Item: Sized {
    fn frame(bytes: Vec<u8>, record: bool) -> Self;
    fn file(path: PathBuf, bytes: Arc<Vec<u8>>) -> Self;
}

impl Item for Outgoing {
    fn frame(bytes: Vec<u8>, record: bool) -> Self {
        Outgoing::Frame { bytes, record }
    }
    fn file(path: PathBuf, bytes: Arc<Vec<u8>>) -> Self {
        Outgoing::File { path, bytes }
    }
}

impl Item for Incoming {
    /// The service takes payloads: the header stays behind.
    fn frame(bytes: Vec<u8>, _record: bool) -> Self {
        Incoming::Frame(Bytes::from(bytes).slice(HEADER_LEN..))
    }
    fn file(path: PathBuf, bytes: Arc<Vec<u8>>) -> Self {
        Incoming::File { path, bytes }
    }
}

/// Sends under the queue policy; false if dropped (`Drop`, queue full).
fn send_with<T>(tx: &flume::Sender<T>, item: T, policy: QueuePolicy) -> SendOutcome {
    match policy {
        QueuePolicy::Drop => match tx.try_send(item) {
            Ok(()) => SendOutcome::Sent,
            Err(flume::TrySendError::Full(_)) => SendOutcome::Dropped,
            Err(flume::TrySendError::Disconnected(_)) => SendOutcome::Gone,
        },
        QueuePolicy::Block(limit) => match tx.send_timeout(item, limit) {
            Ok(()) => SendOutcome::Sent,
            Err(flume::SendTimeoutError::Timeout(_)) => SendOutcome::Full(limit),
            Err(flume::SendTimeoutError::Disconnected(_)) => SendOutcome::Gone,
        },
    }
}

enum SendOutcome {
    Sent,
    Dropped,
    Full(Duration),
    Gone,
}

/// What ends the connection's threads when it is closed or dropped.
enum Ends {
    Socket(Socket),
    /// Dropping it stops the answer reader.
    Local(Mutex<Option<flume::Sender<()>>>),
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
    queue: Mutex<Option<Queue>>,
    policy: QueuePolicy,
    shared: Arc<Shared>,
    ends: Ends,
    /// The socket's writer thread (none in-process).
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Connection {
    pub fn connect(link: Link, capacity: usize, policy: QueuePolicy) -> Result<Self> {
        let shared = Arc::new(Shared {
            waiters: Mutex::default(),
            closed: Mutex::default(),
            counters: Counters::default(),
        });
        let spawn_err = |e: std::io::Error| Error::Service(format!("cannot start a thread: {e}"));
        let spawn = |name: &str, f: Box<dyn FnOnce(&Shared) + Send>| {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || f(&shared))
                .map_err(spawn_err)
        };
        let (queue, ends, writer) = match link {
            Link::Socket(addr) => {
                let socket = Socket::connect(&addr)
                    .map_err(|e| Error::Service(format!("cannot connect to {addr:?}: {e}")))?;
                let clone = |s: &Socket| {
                    s.try_clone()
                        .map_err(|e| Error::Service(format!("socket: {e}")))
                };
                let (write_half, read_half) = (clone(&socket)?, clone(&socket)?);
                let (tx, rx) = flume::bounded(capacity);
                let writer = spawn(
                    "wandb-writer",
                    Box::new(move |shared| write_loop(write_half, rx, shared)),
                )?;
                spawn(
                    "wandb-reader",
                    Box::new(move |shared| read_loop(read_half, shared)),
                )?;
                (Queue::Writer(tx), Ends::Socket(socket), Some(writer))
            }
            Link::Local(local) => {
                let (stop_tx, stop_rx) = flume::bounded::<()>(1);
                let answers = local.answers;
                spawn(
                    "wandb-reader",
                    Box::new(move |shared| receive_loop(answers, stop_rx, shared)),
                )?;
                (
                    Queue::Local(local.frames),
                    Ends::Local(Mutex::new(Some(stop_tx))),
                    None,
                )
            }
        };
        Ok(Self {
            queue: Mutex::new(Some(queue)),
            policy,
            shared,
            ends,
            writer: Mutex::new(writer),
        })
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    fn queue(&self) -> Result<Queue> {
        if let Some(why) = self.shared.closed() {
            return Err(Error::Disconnected(why));
        }
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(Error::Finished)
    }

    /// Queues a framed record under the queue policy (the hot path of
    /// `log`).
    pub fn publish_frame(&self, bytes: Vec<u8>) -> Result<()> {
        let outcome = match self.queue()? {
            Queue::Writer(tx) => send_with(&tx, Outgoing::frame(bytes, true), self.policy),
            Queue::Local(tx) => send_with(&tx, Incoming::frame(bytes, true), self.policy),
        };
        self.settle(outcome, true)
    }

    /// Queues a record that must not be dropped (control messages, files),
    /// waiting for room as long as the connection lives.
    pub fn publish_reliably(&self, request: &pb::ServerRequest, record: bool) -> Result<()> {
        let bytes = encode(request);
        let outcome = match self.queue()? {
            Queue::Writer(tx) => tx.send(Outgoing::frame(bytes, record)).is_ok(),
            Queue::Local(tx) => tx.send(Incoming::frame(bytes, record)).is_ok(),
        };
        let outcome = if outcome {
            SendOutcome::Sent
        } else {
            SendOutcome::Gone
        };
        self.settle(outcome, record)
    }

    /// Queues a media file to write before the records queued after it.
    pub fn write_file(&self, path: PathBuf, bytes: Arc<Vec<u8>>) -> Result<()> {
        let sent = match self.queue()? {
            Queue::Writer(tx) => tx.send(Outgoing::file(path, bytes)).is_ok(),
            Queue::Local(tx) => tx.send(Incoming::file(path, bytes)).is_ok(),
        };
        if sent { Ok(()) } else { Err(self.gone()) }
    }

    /// Counts what happened to a record. The writer thread counts what it
    /// writes to a socket; in-process, handing it over is delivery.
    fn settle(&self, outcome: SendOutcome, record: bool) -> Result<()> {
        let counters = &self.shared.counters;
        match outcome {
            SendOutcome::Sent => {
                if record && matches!(self.ends, Ends::Local(_)) {
                    counters.sent.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
            SendOutcome::Dropped => {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            SendOutcome::Full(limit) => Err(Error::QueueFull(limit)),
            SendOutcome::Gone => Err(self.gone()),
        }
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
        // In-process, dropping the sender is the end of the stream.
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = w.join();
        }
        if let Ends::Socket(socket) = &self.ends {
            socket.shutdown(Shutdown::Write);
        }
    }

    /// Why the connection closed, if it did.
    pub fn closed_reason(&self) -> Option<String> {
        self.shared.closed()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
        match &self.ends {
            Ends::Socket(socket) => socket.shutdown(Shutdown::Both),
            Ends::Local(stop) => drop(stop.lock().unwrap_or_else(|e| e.into_inner()).take()),
        }
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
        if let Err(why) = deliver(&payload, shared) {
            break why;
        }
    };
    shared.close(why);
}

/// The answer reader of an in-process connection: until the service is
/// done with it or the connection is dropped (`stop`).
fn receive_loop(answers: flume::Receiver<Bytes>, stop: flume::Receiver<()>, shared: &Shared) {
    let why = loop {
        let answer = flume::Selector::new()
            .recv(&answers, Some)
            .recv(&stop, |_| None)
            .wait();
        match answer {
            Some(Ok(payload)) => {
                if let Err(why) = deliver(&payload, shared) {
                    break why;
                }
            }
            Some(Err(_)) => break "the service closed the connection".to_string(),
            None => break "the connection is closed".to_string(),
        }
    };
    shared.close(why);
}

/// Hands an answer to whoever waits for it.
fn deliver(payload: &[u8], shared: &Shared) -> std::result::Result<(), String> {
    let answer = pb::ServerResponse::decode(payload)
        .map_err(|e| format!("undecodable answer from the service: {e}"))?;
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
    Ok(())
}
