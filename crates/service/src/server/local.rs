//! Connections from inside this process: frames in over a channel, answers
//! out over another, no socket in between.
//!
//! Why: the Rust SDK runs our service in its own process, and there a
//! socket costs a writer thread and its wake-ups in the client, a system
//! call on each side per batch, a copy of every frame, and a thread that
//! waits on `poll`. The channel takes the client's frames as they are
//! encoded, straight from `log()`. Everything after the transport (routing,
//! the runs, answers, shutdown) is the socket connection's own code.
//!
//! The one thing a socket client does itself that this one cannot without
//! a thread of its own: write a media file before the records that name
//! it. So the file travels in the channel, in order, and this connection's
//! thread writes it on the client's behalf.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::Ctx;
use super::connection::{POLL_INTERVAL, Pending, pause_after, route_or_close};
use crate::respond::Responder;

/// What an in-process client sends, in order.
#[derive(Debug)]
pub enum Incoming {
    /// A frame's payload: a `ServerRequest`, no header.
    Frame(Bytes),
    /// A file to write before the frames after it are handled (a media
    /// file of a logged row).
    File { path: PathBuf, bytes: Arc<Vec<u8>> },
}

/// A client's ends of an in-process connection.
pub struct LocalConnection {
    /// Dropping it is the client's end of the stream.
    pub frames: flume::Sender<Incoming>,
    /// Encoded `ServerResponse`s. Disconnected once the service is done
    /// with the connection.
    pub answers: flume::Receiver<Bytes>,
}

/// The service's ends, handed to the accept loop.
pub(super) struct Accepted {
    frames: flume::Receiver<Incoming>,
    answers: flume::Sender<Bytes>,
}

/// Opens in-process connections to a service, while it runs.
#[derive(Clone)]
pub struct Connector {
    accept: flume::Sender<Accepted>,
}

impl Connector {
    pub(super) fn new() -> (Self, flume::Receiver<Accepted>) {
        let (accept, accepted) = flume::bounded(64);
        (Self { accept }, accepted)
    }

    /// A new connection; `capacity` frames may wait in its channel (a
    /// socket's buffer, in effect: the client waits beyond it). Fails once
    /// the service has stopped.
    pub fn connect(&self, capacity: usize) -> std::io::Result<LocalConnection> {
        let (frames_tx, frames_rx) = flume::bounded(capacity.max(1));
        let (answers_tx, answers_rx) = flume::bounded(super::connection::RESPONSE_QUEUE);
        self.accept
            .send(Accepted {
                frames: frames_rx,
                answers: answers_tx,
            })
            .map_err(|_| std::io::Error::other("the service has stopped"))?;
        Ok(LocalConnection {
            frames: frames_tx,
            answers: answers_rx,
        })
    }
}

/// Serves one in-process connection until the client drops its end or the
/// service stops it.
pub(super) fn serve(
    link: Accepted,
    conn_id: u64,
    ctx: Arc<Ctx>,
    rt: tokio::runtime::Handle,
    stop: CancellationToken,
) {
    let Accepted { frames, answers } = link;
    let responder = Responder::new(answers, conn_id);
    let mut pending = Pending::default();
    tracing::debug!(conn = conn_id, "in-process connection opened");
    loop {
        let first = match frames.recv_timeout(POLL_INTERVAL) {
            Ok(first) => first,
            Err(flume::RecvTimeoutError::Timeout) if stop.is_cancelled() => break,
            Err(flume::RecvTimeoutError::Timeout) => continue,
            Err(flume::RecvTimeoutError::Disconnected) => break,
        };
        // Everything queued, in one take: taking frames one by one would
        // free the client's slots one by one, and a client waiting on a
        // full queue would be woken for each.
        let mut batch = Vec::new();
        for item in std::iter::once(first).chain(frames.drain()) {
            match item {
                Incoming::Frame(frame) => batch.push(frame),
                // Frames before the file do not need it; the ones after
                // are not routed before it is written.
                Incoming::File { path, bytes } => {
                    if let Err(e) = wandb_store::write_atomically(&path, &bytes) {
                        tracing::warn!(conn = conn_id, "cannot write {}: {e}", path.display());
                    }
                }
            }
        }
        // Frames over the limit close the connection, as on a socket; the
        // ones before them are still the client's.
        let mut problem = None;
        if let Some(at) = batch.iter().position(|f| f.len() > ctx.max_frame_len) {
            problem = Some(format!(
                "frame of {} bytes is over the limit of {}",
                batch[at].len(),
                ctx.max_frame_len
            ));
            batch.truncate(at);
        }
        let count = batch.len();
        if !route_or_close(batch, problem, conn_id, &responder, &ctx, &rt, &mut pending) {
            break;
        }
        if stop.is_cancelled() {
            break;
        }
        pause_after(count, &pending, &ctx);
    }
    tracing::debug!(conn = conn_id, "in-process connection closed");
}
