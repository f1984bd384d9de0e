//! Answers travel back to the connection that asked.
//!
//! A request is answered by whichever stage owns the state it asks about, so
//! a [`Reply`] (the request's id plus a handle on its connection's outgoing
//! queue) travels with the work. Routing is by `request_id` alone, as the SDK
//! expects.

use bytes::Bytes;
use prost::Message;
use wandb_proto::pb;
use wandb_proto::pb::server_response::ServerResponseType;

/// The outgoing queue of one connection (encoded `ServerResponse`s).
#[derive(Debug, Clone)]
pub struct Responder {
    tx: flume::Sender<Bytes>,
    conn_id: u64,
}

impl Responder {
    pub fn new(tx: flume::Sender<Bytes>, conn_id: u64) -> Self {
        Self { tx, conn_id }
    }

    /// The connection's number in the service's log.
    pub fn conn_id(&self) -> u64 {
        self.conn_id
    }

    /// Queues a response without waiting. A connection that stopped reading
    /// its answers until its queue is full is dropped (its queue closes), so
    /// a stuck client can never stall a run that other clients share.
    pub fn send(&self, response: pb::ServerResponse) {
        match self.tx.try_send(Bytes::from(response.encode_to_vec())) {
            Ok(()) => {}
            Err(flume::TrySendError::Disconnected(_)) => {
                tracing::debug!(
                    conn = self.conn_id,
                    "answer for a closed connection dropped"
                );
            }
            Err(flume::TrySendError::Full(_)) => {
                tracing::warn!(
                    conn = self.conn_id,
                    "connection does not read its answers; answer dropped"
                );
            }
        }
    }
}

/// Where the answer to one request goes.
#[derive(Debug, Clone)]
pub struct Reply {
    pub request_id: String,
    pub to: Responder,
}

impl Reply {
    fn send(&self, kind: Option<ServerResponseType>) {
        self.to.send(pb::ServerResponse {
            request_id: self.request_id.clone(),
            server_response_type: kind,
        });
    }

    /// A `ServerResponse` with this id and no payload (what `inform_init`
    /// gets).
    pub fn empty(&self) {
        self.send(None);
    }

    pub fn server(&self, kind: ServerResponseType) {
        self.send(Some(kind));
    }

    /// `error_response`: the SDK raises it in the waiting call.
    pub fn error(&self, message: impl Into<String>) {
        self.send(Some(ServerResponseType::ErrorResponse(
            pb::ServerErrorResponse {
                message: message.into(),
            },
        )));
    }

    /// `result_communicate` with the given result.
    pub fn result(&self, result: pb::result::ResultType) {
        self.send(Some(ServerResponseType::ResultCommunicate(pb::Result {
            result_type: Some(result),
            ..Default::default()
        })));
    }

    /// `result_communicate.response`; `None` sends an empty `Response`, which
    /// is what wandb-core answers to `run_start` and `shutdown`.
    pub fn response(&self, response: Option<pb::response::ResponseType>) {
        self.result(pb::result::ResultType::Response(pb::Response {
            response_type: response,
        }));
    }
}
