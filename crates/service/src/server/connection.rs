//! One client connection: frames in, requests routed, answers out.
//!
//! Records are routed by looking only at the envelope (request id, the
//! record's bytes and its stream id); the record itself is decoded by its
//! run's handler. A broken frame or a payload that is not a `ServerRequest`
//! closes this connection only, after an error answer; everyone else keeps
//! being served.
//!
//! Each connection is read and answered by two threads of its own rather
//! than by tasks on the async runtime. Measured need: the SDK writes every
//! `run.log()` as two small writes, and an edge-triggered epoll (tokio's)
//! wakes the runtime for each of them even while the connection waits to
//! gather a batch — about 9k wake-ups a second, most of the service's CPU
//! under a steadily logging client. A thread that polls, reads everything
//! there is, and then sleeps a few milliseconds wakes a few hundred times a
//! second instead. The routing itself stays async (`Handle::block_on`).
//!
//! Long for one file, but one concept: a connection's two threads, what
//! each does with a frame, and how they stop together.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prost::Message;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use wandb_proto::frame::{FrameCodec, encode_frame};
use wandb_proto::pb;
use wandb_proto::pb::server_request::ServerRequestType;
use wandb_proto::pb::server_response::ServerResponseType;
use wandb_proto::wire;

use super::{Ctx, ShutdownReason};
use crate::respond::{Reply, Responder};
use crate::stream::{StreamHandle, StreamInput};

/// Answers queued for a connection that is slow to read them.
pub(super) const RESPONSE_QUEUE: usize = 4096;
/// Bytes read per system call.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes read before the frames in them are handled (bounds memory).
const READ_ROUND: usize = 128 * 1024;
/// How often blocked threads look at the stop and closing flags.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Records handed to a run in one go.
const MAX_BATCH: usize = 256;
/// Frames per wake-up below which reading pauses for [`READ_COALESCE`].
const SMALL_BATCH: usize = 32;
/// Measured need (wandb-bench --online-suite, 2-core VM, SDK at ~2k
/// `run.log`/s): every wake-up of the reader costs a chain of hand-offs
/// (handler task, writer thread, the sender following the log), and each
/// costs tens of µs of scheduler time here. 4 ms gave 3.0-3.4 CPU s per
/// 100k rows, 16 ms 1.6-2.0, 32 ms 1.4. Only fire-and-forget records wait
/// this long: a batch holding a request that expects an answer is read on
/// at once, and a request arriving during the pause waits at most this.
const READ_COALESCE: std::time::Duration = std::time::Duration::from_millis(16);
/// Open connections per step of [`READ_COALESCE`]: with many clients
/// logging at once, each connection's reader pauses longer (up to
/// [`MAX_COALESCE_STEPS`] times), so the wake-ups of the whole service,
/// not of each connection, stay bounded. Measured need (wandb-bench
/// --scaling, 2-core VM): at 16 and 32 SDK processes sharing a service,
/// CPU per row was 2.5 and 4.5 times that of one process, nearly all of it
/// hand-offs after small batches.
const CONNECTIONS_PER_STEP: usize = 4;
const MAX_COALESCE_STEPS: u32 = 8;

/// Consecutive records for one run, not yet handed to it.
#[derive(Default)]
pub(super) struct Pending {
    stream: Option<(String, StreamHandle)>,
    records: Vec<(Bytes, Option<Reply>)>,
    /// Whether a request in the current read batch awaits an answer.
    awaited: bool,
}

impl Pending {
    /// Hands the records to their run, and forgets the run's handle: a
    /// handle kept here would keep the run open after `inform_finish`.
    async fn flush(&mut self) {
        let stream = self.stream.take();
        if self.records.is_empty() {
            return;
        }
        let records = std::mem::replace(&mut self.records, Vec::with_capacity(MAX_BATCH));
        let Some((id, stream)) = &stream else { return };
        let replies: Vec<Reply> = records.iter().filter_map(|(_, r)| r.clone()).collect();
        if !stream.send(StreamInput::Records(records)).await {
            for reply in replies {
                reply.error(format!("run {id} has finished"));
            }
        }
    }
}

/// Field numbers of the `ServerRequest` envelope.
const RECORD_PUBLISH: u32 = 1;
const RECORD_COMMUNICATE: u32 = 2;
const REQUEST_ID: u32 = 10;

/// Why a connection is closed.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("payload is not a ServerRequest: {0}")]
    NotARequest(String),
}

/// What the envelope holds.
enum Envelope {
    Record { request_id: String, raw: Bytes },
    Other(Box<pb::ServerRequest>),
}

fn parse_envelope(payload: Bytes) -> Result<Envelope, ConnError> {
    let mut request_id = String::new();
    let mut record = None;
    let mut records = 0;
    let mut others = false;
    for field in wire::fields(&payload) {
        let field = field.map_err(|e| ConnError::NotARequest(e.to_string()))?;
        match field.number {
            REQUEST_ID => {
                let range = field
                    .payload(&payload)
                    .ok_or_else(|| ConnError::NotARequest("request_id is not a string".into()))?;
                request_id = std::str::from_utf8(&payload[range])
                    .map_err(|_| ConnError::NotARequest("request_id is not UTF-8".into()))?
                    .to_string();
            }
            RECORD_PUBLISH | RECORD_COMMUNICATE => {
                let range = field
                    .payload(&payload)
                    .ok_or_else(|| ConnError::NotARequest("record is not a message".into()))?;
                record = Some(payload.slice(range));
                records += 1;
            }
            _ => others = true,
        }
    }
    if records > 1 || (records == 1 && others) {
        // Repeated records merge in a full decode, and another request
        // type after the record replaces it (a oneof keeps its last
        // member): slicing the record out would disagree with the
        // protobuf rules. Never sent by the SDK; decoded the slow, exact
        // way.
        let req = pb::ServerRequest::decode(payload)
            .map_err(|e| ConnError::NotARequest(e.to_string()))?;
        return match req.server_request_type {
            Some(ServerRequestType::RecordPublish(r) | ServerRequestType::RecordCommunicate(r)) => {
                Ok(Envelope::Record {
                    request_id: req.request_id,
                    raw: Bytes::from(r.encode_to_vec()),
                })
            }
            other => Ok(Envelope::Other(Box::new(pb::ServerRequest {
                request_id: req.request_id,
                server_request_type: other,
            }))),
        };
    }
    match record {
        Some(raw) => Ok(Envelope::Record { request_id, raw }),
        None => pb::ServerRequest::decode(payload)
            .map(|r| Envelope::Other(Box::new(r)))
            .map_err(|e| ConnError::NotARequest(e.to_string())),
    }
}

/// A client's socket (Unix or TCP), in non-blocking mode.
pub enum Socket {
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
}

impl Socket {
    fn try_clone(&self) -> io::Result<Socket> {
        Ok(match self {
            Socket::Unix(s) => Socket::Unix(s.try_clone()?),
            Socket::Tcp(s) => Socket::Tcp(s.try_clone()?),
        })
    }

    fn shutdown(&self) {
        let _ = match self {
            Socket::Unix(s) => s.shutdown(Shutdown::Both),
            Socket::Tcp(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Socket::Unix(s) => s.as_raw_fd(),
            Socket::Tcp(s) => s.as_raw_fd(),
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Unix(s) => s.read(buf),
            Socket::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Unix(s) => s.write(buf),
            Socket::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Wakes the connection threads blocked in `poll` when the service stops
/// them, instead of leaving them to notice within [`POLL_INTERVAL`] (which
/// every client waiting for the service to exit would feel): a pipe whose
/// read end every wait also watches. The byte written is never read, so the
/// pipe stays readable for all of them.
pub struct Wakeup {
    read: std::os::fd::OwnedFd,
    write: std::os::fd::OwnedFd,
}

impl Wakeup {
    pub fn new() -> io::Result<Self> {
        use std::os::fd::FromRawFd;
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills the two descriptors on success.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned here.
        Ok(unsafe {
            Wakeup {
                read: std::os::fd::OwnedFd::from_raw_fd(fds[0]),
                write: std::os::fd::OwnedFd::from_raw_fd(fds[1]),
            }
        })
    }

    /// Wakes every wait, now and later (call it once stopping).
    pub fn wake(&self) {
        // SAFETY: writing one byte from a valid buffer to our own pipe.
        let _ = unsafe { libc::write(self.write.as_raw_fd(), b"!".as_ptr().cast(), 1) };
    }

    fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }
}

/// Waits until `fd` is readable (or writable), checking `give_up` when
/// `wakeup` fires and at least every [`POLL_INTERVAL`]. Returns false if
/// it gave up.
fn wait_fd(fd: RawFd, writable: bool, wakeup: Option<&Wakeup>, give_up: impl Fn() -> bool) -> bool {
    let events = if writable {
        libc::POLLOUT
    } else {
        libc::POLLIN | libc::POLLRDHUP
    };
    let mut watch_wakeup = wakeup.is_some();
    loop {
        if give_up() {
            return false;
        }
        let mut pfds = [
            libc::pollfd {
                fd,
                events,
                revents: 0,
            },
            libc::pollfd {
                fd: wakeup.map_or(-1, Wakeup::fd),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let count = if watch_wakeup { 2 } else { 1 };
        // SAFETY: `count` valid pollfds for the duration of the call.
        let n = unsafe {
            libc::poll(
                pfds.as_mut_ptr(),
                count,
                POLL_INTERVAL.as_millis() as libc::c_int,
            )
        };
        if n > 0 && pfds[0].revents == 0 {
            // Only the wakeup: `give_up` says at the top; if it does not
            // give up (it always does once woken), stop watching the pipe.
            if !give_up() {
                watch_wakeup = false;
            }
            continue;
        }
        if n > 0 {
            return true;
        }
        if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return true; // let the read or write report the problem
        }
    }
}

/// What one read round found besides the bytes it appended.
struct ReadEnd {
    /// The peer closed its end (or reset it; see below).
    eof: bool,
    /// A read error other than the peer's reset.
    error: Option<io::Error>,
}

/// Reads what is available (up to [`READ_ROUND`]). The bytes read before an
/// error or EOF stay in `buf`, to be handled like any others: the SDK's
/// teardown publishes `inform_teardown` and closes its socket at once, and
/// when answers it never read are still queued for it, that close is a
/// reset. Dropping the round's bytes with the reset lost the teardown, and
/// the SDK then waited for our exit forever.
fn read_available(sock: &mut Socket, buf: &mut BytesMut, chunk: &mut [u8]) -> ReadEnd {
    let mut total = 0;
    while total < READ_ROUND {
        match sock.read(chunk) {
            Ok(0) => {
                return ReadEnd {
                    eof: true,
                    error: None,
                };
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                total += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A client closing with answers unread: an ordinary hang-up.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return ReadEnd {
                    eof: true,
                    error: None,
                };
            }
            Err(e) => {
                return ReadEnd {
                    eof: true,
                    error: Some(e),
                };
            }
        }
    }
    ReadEnd {
        eof: false,
        error: None,
    }
}

/// Serves one connection on threads of its own until it closes, fails, or
/// the service stops; returns when both threads are done.
pub fn serve(
    mut sock: Socket,
    conn_id: u64,
    ctx: Arc<Ctx>,
    rt: tokio::runtime::Handle,
    stop: CancellationToken,
) {
    let (tx, rx) = flume::bounded::<Bytes>(RESPONSE_QUEUE);
    let closing = Arc::new(AtomicBool::new(false));
    let writer = match sock.try_clone() {
        Ok(out) => {
            let (closing, stop) = (closing.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("answers-{conn_id}"))
                .spawn(move || write_answers(out, rx, &closing, &stop))
                .ok()
        }
        Err(e) => {
            tracing::warn!(conn = conn_id, "cannot clone the socket: {e}");
            None
        }
    };
    let wake_writer = tx.clone();
    let responder = Responder::new(tx, conn_id);
    let mut codec = FrameCodec::new(ctx.max_frame_len);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut pending = Pending::default();
    let fd = sock.as_raw_fd();
    tracing::debug!(conn = conn_id, "connection opened");
    loop {
        if !wait_fd(fd, false, ctx.wakeup.as_ref(), || stop.is_cancelled()) {
            break;
        }
        let ReadEnd { eof, error } = read_available(&mut sock, &mut buf, &mut chunk);
        // The frames read before a failed read are still the client's.
        let mut frames = Vec::new();
        let mut problem = None;
        while problem.is_none() {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => problem = Some(e.to_string()),
            }
        }
        if let Some(e) = error {
            problem.get_or_insert(format!("read failed: {e}"));
        } else if eof && problem.is_none() && !buf.is_empty() {
            problem = Some(format!(
                "connection closed inside a frame ({} bytes of it received)",
                buf.len()
            ));
        }
        let batch = frames.len();
        if !route_or_close(
            frames,
            problem,
            conn_id,
            &responder,
            &ctx,
            &rt,
            &mut pending,
        ) || eof
        {
            break;
        }
        pause_after(batch, &pending, &ctx);
    }
    closing.store(true, Ordering::SeqCst);
    // An empty message wakes the answer writer to look at `closing` now.
    let _ = wake_writer.try_send(Bytes::new());
    drop(wake_writer);
    drop(responder);
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    sock.shutdown();
    tracing::debug!(conn = conn_id, "connection closed");
}

/// Hands a batch of frames to their runs and the service, in order.
/// Returns why the connection must close, if it must.
fn route(
    frames: Vec<Bytes>,
    responder: &Responder,
    ctx: &Ctx,
    rt: &tokio::runtime::Handle,
    pending: &mut Pending,
) -> Option<String> {
    pending.awaited = false;
    rt.block_on(async {
        for frame in frames {
            dispatch(frame, responder, ctx, pending).await?;
            if pending.records.len() >= MAX_BATCH {
                pending.flush().await;
            }
        }
        pending.flush().await;
        Ok::<(), ConnError>(())
    })
    .err()
    .map(|e| e.to_string())
}

/// A client logging steadily sends frames one by one (the SDK even writes
/// header and body separately). After a small batch of publishes, let a few
/// milliseconds of frames gather before reading again. A busy connection
/// reads without pause, and so does one whose client awaits an answer.
pub(super) fn pause_after(batch: usize, pending: &Pending, ctx: &Ctx) {
    if batch < SMALL_BATCH && !pending.awaited {
        let open = ctx.connections.load(Ordering::Relaxed);
        let steps = (open / CONNECTIONS_PER_STEP).clamp(1, MAX_COALESCE_STEPS as usize);
        std::thread::sleep(READ_COALESCE * steps as u32);
    }
}

/// Routes a batch (also one whose read ended in `problem`), then, if
/// there was a problem, tells the client. Returns whether the connection
/// goes on.
pub(super) fn route_or_close(
    frames: Vec<Bytes>,
    mut problem: Option<String>,
    conn_id: u64,
    responder: &Responder,
    ctx: &Ctx,
    rt: &tokio::runtime::Handle,
    pending: &mut Pending,
) -> bool {
    if let Some(e) = route(frames, responder, ctx, rt, pending) {
        problem = Some(e);
    }
    let Some(problem) = problem else {
        return true;
    };
    tracing::warn!(conn = conn_id, "closing connection: {problem}");
    send_error(
        responder,
        "",
        format!("wandb-core-rs: closing connection: {problem}"),
    );
    false
}

/// Writes queued answers, several per system call when they queue up. After
/// the reader stops (`closing`), what is already queued is still written;
/// answers runs still hold for this connection are dropped.
fn write_answers(
    mut sock: Socket,
    rx: flume::Receiver<Bytes>,
    closing: &AtomicBool,
    stop: &CancellationToken,
) {
    let fd = sock.as_raw_fd();
    let mut out = Vec::new();
    loop {
        match rx.recv_timeout(POLL_INTERVAL) {
            Ok(msg) => {
                // Empty: the reader stopped (see `serve`), not an answer.
                if !msg.is_empty() {
                    encode_frame(&msg, &mut out);
                }
                while let Ok(more) = rx.try_recv() {
                    if !more.is_empty() {
                        encode_frame(&more, &mut out);
                    }
                }
                if out.is_empty() {
                    if closing.load(Ordering::SeqCst) && rx.is_empty() {
                        return;
                    }
                    continue;
                }
                let mut written = 0;
                while written < out.len() {
                    match sock.write(&out[written..]) {
                        Ok(0) => return,
                        Ok(n) => written += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            if !wait_fd(fd, true, None, || stop.is_cancelled()) {
                                return;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return,
                    }
                }
                out.clear();
            }
            Err(flume::RecvTimeoutError::Timeout) => {
                if closing.load(Ordering::SeqCst) && rx.is_empty() {
                    return;
                }
            }
            Err(flume::RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn send_error(to: &Responder, request_id: &str, message: String) {
    Reply {
        request_id: request_id.to_string(),
        to: to.clone(),
    }
    .error(message);
}

async fn dispatch(
    payload: Bytes,
    responder: &Responder,
    ctx: &Ctx,
    pending: &mut Pending,
) -> Result<(), ConnError> {
    let reply_for = |request_id: &str| {
        (!request_id.is_empty()).then(|| Reply {
            request_id: request_id.to_string(),
            to: responder.clone(),
        })
    };
    let envelope = parse_envelope(payload)?;
    pending.awaited |= match &envelope {
        Envelope::Record { request_id, .. } => !request_id.is_empty(),
        Envelope::Other(req) => !req.request_id.is_empty(),
    };
    if let Envelope::Record { request_id, raw } = envelope {
        let reply = reply_for(&request_id);
        let Some(stream_id) = wandb_proto::view::stream_id(&raw) else {
            if let Some(reply) = reply {
                reply.error("record has no _info.stream_id: which run is it for?");
            }
            return Ok(());
        };
        if pending
            .stream
            .as_ref()
            .is_none_or(|(id, _)| id != stream_id)
        {
            pending.flush().await;
            pending.stream = ctx
                .mux
                .get(stream_id, responder.conn_id())
                .map(|h| (stream_id.to_string(), h));
        }
        if pending.stream.is_some() {
            pending.records.push((raw, reply));
        } else {
            tracing::debug!(run = %stream_id, "record for a run this service does not have");
            if let Some(reply) = reply {
                reply.error(format!(
                    "no run with ID {stream_id:?} in this wandb-core service"
                ));
            }
        }
        return Ok(());
    }
    // Requests to the service act in order with the records before them.
    pending.flush().await;
    match envelope {
        Envelope::Record { .. } => unreachable!("handled above"),
        Envelope::Other(req) => {
            let reply = reply_for(&req.request_id);
            let req = *req;
            let Some(kind) = req.server_request_type else {
                if let Some(reply) = reply {
                    reply.error(format!(
                        "unknown or empty request type (wandb-core-rs speaks the protocol of {})",
                        crate::supported_wandb_range()
                    ));
                }
                return Ok(());
            };
            tracing::debug!(
                conn = responder.conn_id(),
                request_id = %req.request_id,
                "processing request: {}",
                request_name(&kind)
            );
            match kind {
                ServerRequestType::InformInit(init) => {
                    let id = init.info.map(|i| i.stream_id).unwrap_or_default();
                    ctx.mux
                        .inform_init(&id, responder.conn_id(), init.settings, reply);
                }
                ServerRequestType::InformAttach(attach) => {
                    let id = attach.info.map(|i| i.stream_id).unwrap_or_default();
                    ctx.mux.inform_attach(&id, responder.conn_id(), reply);
                }
                ServerRequestType::InformDetach(_) => {
                    if let Some(reply) = reply {
                        reply.server(ServerResponseType::InformDetachResponse(Default::default()));
                    }
                }
                ServerRequestType::InformFinish(finish) => {
                    let id = finish.info.map(|i| i.stream_id).unwrap_or_default();
                    ctx.mux.inform_finish(&id, responder.conn_id());
                    if let Some(reply) = reply {
                        reply.server(ServerResponseType::InformFinishResponse(Default::default()));
                    }
                }
                ServerRequestType::InformTeardown(teardown) => {
                    // No answer: the SDK waits for the process to exit.
                    ctx.shutdown(ShutdownReason::Teardown(teardown.exit_code));
                }
                ServerRequestType::Cancel(_) => {} // answers to cancelled ids are harmless
                ServerRequestType::RecordPublish(_) | ServerRequestType::RecordCommunicate(_) => {
                    unreachable!("records are routed from the envelope")
                }
                ServerRequestType::ApiInitRequest(init) => {
                    let answer = ctx.api.open(init.settings);
                    if let Some(reply) = reply {
                        reply.server(ServerResponseType::ApiInitResponse(answer));
                    }
                }
                ServerRequestType::ApiRequest(request) => {
                    // On the runtime: the backend may be slow, and this
                    // connection's thread must go on reading.
                    let backend = ctx.api.get(&request.api_id);
                    tokio::spawn(async move {
                        let answer = super::api::execute(backend, request.request).await;
                        if let Some(reply) = reply {
                            reply.server(ServerResponseType::ApiResponse(answer));
                        }
                    });
                }
                ServerRequestType::Authenticate(request) => {
                    tokio::spawn(async move {
                        let answer = super::api::authenticate(request).await;
                        if let Some(reply) = reply {
                            reply.server(ServerResponseType::AuthenticateResponse(answer));
                        }
                    });
                }
                ServerRequestType::ApiCleanupRequest(cleanup) => {
                    ctx.api.close(&cleanup.api_id);
                    if let Some(reply) = reply {
                        reply.empty();
                    }
                }
                ServerRequestType::InitSync(init) => {
                    let id = ctx.syncs.init(init);
                    if let Some(reply) = reply {
                        reply.server(ServerResponseType::InitSyncResponse(
                            pb::ServerInitSyncResponse { id },
                        ));
                    }
                }
                ServerRequestType::Sync(sync) => {
                    // Answered when the sync is done; status polls go on
                    // meanwhile.
                    let syncs = ctx.syncs.clone();
                    tokio::spawn(async move {
                        let messages = syncs.sync(&sync.id, sync.parallelism).await;
                        if let Some(reply) = reply {
                            reply.server(ServerResponseType::SyncResponse(
                                pb::ServerSyncResponse { messages },
                            ));
                        }
                    });
                }
                ServerRequestType::SyncStatus(status) => {
                    if let Some(reply) = reply {
                        reply.server(ServerResponseType::SyncStatusResponse(
                            ctx.syncs.status(&status.id),
                        ));
                    }
                }
                other => {
                    if let Some(reply) = reply {
                        reply.error(format!(
                            "{} is not supported by wandb-core-rs yet",
                            request_name(&other)
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The fuzz targets' way into envelope parsing: the record's bytes and
/// request id when the payload is a record, `Ok(None)` for another request.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_envelope(payload: Bytes) -> Result<Option<(String, Bytes)>, String> {
    match parse_envelope(payload) {
        Ok(Envelope::Record { request_id, raw }) => Ok(Some((request_id, raw))),
        Ok(Envelope::Other(_)) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

fn request_name(kind: &ServerRequestType) -> &'static str {
    match kind {
        ServerRequestType::RecordPublish(_) => "record_publish",
        ServerRequestType::RecordCommunicate(_) => "record_communicate",
        ServerRequestType::InformInit(_) => "inform_init",
        ServerRequestType::InformFinish(_) => "inform_finish",
        ServerRequestType::InformAttach(_) => "inform_attach",
        ServerRequestType::InformDetach(_) => "inform_detach",
        ServerRequestType::InformTeardown(_) => "inform_teardown",
        ServerRequestType::Cancel(_) => "cancel",
        ServerRequestType::Authenticate(_) => "authenticate",
        ServerRequestType::InitSync(_) => "init_sync",
        ServerRequestType::Sync(_) => "sync",
        ServerRequestType::SyncStatus(_) => "sync_status",
        ServerRequestType::ApiInitRequest(_) => "api_init_request",
        ServerRequestType::ApiCleanupRequest(_) => "api_cleanup_request",
        ServerRequestType::ApiRequest(_) => "api_request",
        ServerRequestType::SweepSchedulerInit(_) => "sweep_scheduler_init",
        ServerRequestType::SweepSchedulerNextTask(_) => "sweep_scheduler_next_task",
        ServerRequestType::SweepSchedulerStop(_) => "sweep_scheduler_stop",
        #[allow(unreachable_patterns)] // request types a newer schema may add
        _ => "this request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_slices_the_record_without_decoding_it() {
        let record = pb::Record {
            info: Some(pb::RecordInfo {
                stream_id: "run1".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let req = pb::ServerRequest {
            request_id: "abc".into(),
            server_request_type: Some(ServerRequestType::RecordPublish(record.clone())),
        };
        match parse_envelope(Bytes::from(req.encode_to_vec())).unwrap() {
            Envelope::Record { request_id, raw } => {
                assert_eq!(request_id, "abc");
                assert_eq!(raw, record.encode_to_vec());
                assert_eq!(wandb_proto::view::stream_id(&raw), Some("run1"));
            }
            Envelope::Other(_) => panic!("expected a record"),
        }
        assert!(parse_envelope(Bytes::from_static(&[0xff, 0xff, 0xff])).is_err());
    }
}
