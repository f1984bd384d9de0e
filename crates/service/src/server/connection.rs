//! One client connection: frames in, requests routed, answers out.
//!
//! Records are routed by looking only at the envelope (request id, the
//! record's bytes and its stream id); the record itself is decoded by its
//! run's handler. A broken frame or a payload that is not a `ServerRequest`
//! closes this connection only, after an error answer; everyone else keeps
//! being served.

use std::sync::Arc;

use bytes::Bytes;
use futures::{FutureExt, SinkExt, StreamExt};
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use wandb_proto::frame::FrameCodec;
use wandb_proto::pb;
use wandb_proto::pb::server_request::ServerRequestType;
use wandb_proto::pb::server_response::ServerResponseType;
use wandb_proto::wire;

use super::{Ctx, ShutdownReason};
use crate::respond::{Reply, Responder};
use crate::stream::{StreamHandle, StreamInput};

/// Answers queued for a connection that is slow to read them.
const RESPONSE_QUEUE: usize = 4096;
/// Initial read buffer of a connection.
const READ_BUFFER: usize = 256 * 1024;
/// Records handed to a run in one go.
const MAX_BATCH: usize = 256;
/// Frames per wake-up below which reading pauses for [`READ_COALESCE`].
const SMALL_BATCH: usize = 32;
const READ_COALESCE: std::time::Duration = std::time::Duration::from_millis(1);

/// Consecutive records for one run, not yet handed to it.
#[derive(Default)]
struct Pending {
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
            }
            _ => {}
        }
    }
    match record {
        Some(raw) => Ok(Envelope::Record { request_id, raw }),
        None => pb::ServerRequest::decode(payload)
            .map(|r| Envelope::Other(Box::new(r)))
            .map_err(|e| ConnError::NotARequest(e.to_string())),
    }
}

/// Serves one connection until it closes, fails, or the service stops.
pub async fn serve<S>(io: S, conn_id: u64, ctx: Arc<Ctx>, stop: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(RESPONSE_QUEUE);
    let closing = CancellationToken::new();
    let writer = tokio::spawn(write_answers(
        wr,
        out_rx,
        closing.clone(),
        ctx.max_frame_len,
    ));
    let responder = Responder::new(out_tx, conn_id);

    // Large reads: a client streaming rows fills many frames per syscall.
    let mut frames = FramedRead::with_capacity(rd, FrameCodec::new(ctx.max_frame_len), READ_BUFFER);
    let mut pending = Pending::default();
    'conn: loop {
        let mut frame = tokio::select! {
            _ = stop.cancelled() => break,
            frame = frames.next() => frame,
        };
        // Take every frame already received before handing records on, so
        // a run's handler wakes once per batch.
        let mut batch = 0;
        pending.awaited = false;
        loop {
            let problem = match frame {
                None => {
                    pending.flush().await;
                    break 'conn;
                }
                Some(Err(e)) => Some(e.to_string()),
                Some(Ok(payload)) => dispatch(payload, &responder, &ctx, &mut pending)
                    .await
                    .err()
                    .map(|e| e.to_string()),
            };
            if let Some(problem) = problem {
                pending.flush().await;
                tracing::warn!(conn = conn_id, "closing connection: {problem}");
                send_error(
                    &responder,
                    "",
                    format!("wandb-core-rs: closing connection: {problem}"),
                );
                break 'conn;
            }
            if pending.records.len() >= MAX_BATCH {
                pending.flush().await;
            }
            batch += 1;
            match frames.next().now_or_never() {
                Some(next) => frame = next,
                None => break,
            }
        }
        pending.flush().await;
        // A client logging steadily sends frames one by one; waking for
        // each steals CPU from it (and the SDK sends header and body in two
        // writes). After a small batch of publishes, let a millisecond of
        // frames gather before reading again. A busy connection reads
        // without pause, and so does one whose client awaits an answer.
        if batch < SMALL_BATCH && !pending.awaited {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(READ_COALESCE) => {}
            }
        }
    }
    closing.cancel();
    drop(responder);
    let _ = writer.await;
    tracing::debug!(conn = conn_id, "connection closed");
}

fn send_error(to: &Responder, request_id: &str, message: String) {
    Reply {
        request_id: request_id.to_string(),
        to: to.clone(),
    }
    .error(message);
}

/// Writes queued answers. After the reader stops (`closing`), what is
/// already queued is still written, then the socket is shut down; answers
/// still held by runs for this connection are dropped.
async fn write_answers<W>(
    wr: W,
    mut rx: mpsc::Receiver<Bytes>,
    closing: CancellationToken,
    max_frame_len: usize,
) where
    W: AsyncWrite + Send + Unpin + 'static,
{
    let mut sink = FramedWrite::new(wr, FrameCodec::new(max_frame_len));
    loop {
        let next = tokio::select! {
            biased;
            msg = rx.recv() => msg,
            _ = closing.cancelled() => {
                while let Ok(msg) = rx.try_recv() {
                    if sink.feed(msg).await.is_err() {
                        return;
                    }
                }
                let _ = SinkExt::<Bytes>::flush(&mut sink).await;
                let _ = SinkExt::<Bytes>::close(&mut sink).await;
                return;
            }
        };
        let Some(msg) = next else { return };
        if sink.feed(msg).await.is_err() {
            return;
        }
        // Batch what is ready into one write.
        while let Ok(more) = rx.try_recv() {
            if sink.feed(more).await.is_err() {
                return;
            }
        }
        if SinkExt::<Bytes>::flush(&mut sink).await.is_err() {
            return;
        }
    }
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
            pending.stream = ctx.mux.get(stream_id).map(|h| (stream_id.to_string(), h));
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
                    reply.error("unknown or empty request type");
                }
                return Ok(());
            };
            match kind {
                ServerRequestType::InformInit(init) => {
                    let id = init.info.map(|i| i.stream_id).unwrap_or_default();
                    ctx.mux.inform_init(&id, init.settings, reply);
                }
                ServerRequestType::InformAttach(attach) => {
                    let id = attach.info.map(|i| i.stream_id).unwrap_or_default();
                    ctx.mux.inform_attach(&id, reply);
                }
                ServerRequestType::InformDetach(_) => {
                    if let Some(reply) = reply {
                        reply.server(ServerResponseType::InformDetachResponse(Default::default()));
                    }
                }
                ServerRequestType::InformFinish(finish) => {
                    let id = finish.info.map(|i| i.stream_id).unwrap_or_default();
                    ctx.mux.inform_finish(&id);
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
                ServerRequestType::ApiInitRequest(_) => {
                    if let Some(reply) = reply {
                        reply.server(ServerResponseType::ApiInitResponse(pb::ServerApiInitResponse {
                            error_message: "the public API through the service is not supported by wandb-core-rs yet"
                                .into(),
                            ..Default::default()
                        }));
                    }
                }
                ServerRequestType::ApiCleanupRequest(_) => {
                    if let Some(reply) = reply {
                        reply.empty();
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

fn request_name(kind: &ServerRequestType) -> &'static str {
    match kind {
        ServerRequestType::Authenticate(_) => "authenticate",
        ServerRequestType::InitSync(_) => "init_sync",
        ServerRequestType::Sync(_) => "sync",
        ServerRequestType::SyncStatus(_) => "sync_status",
        ServerRequestType::ApiRequest(_) => "api_request",
        ServerRequestType::SweepSchedulerInit(_) => "sweep_scheduler_init",
        ServerRequestType::SweepSchedulerNextTask(_) => "sweep_scheduler_next_task",
        ServerRequestType::SweepSchedulerStop(_) => "sweep_scheduler_stop",
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
