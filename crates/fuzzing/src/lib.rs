//! What each fuzz target does with an input, and the properties it checks.
//!
//! The bodies live here, in an ordinary crate, so that two drivers share
//! them: `cargo fuzz` (the `fuzz/` directory, libFuzzer on nightly) explores
//! new inputs, and `tests/corpus.rs` replays the committed corpora and every
//! crash ever found on stable, in seconds, in CI. A property that fails
//! panics; libFuzzer reports a panic as a crash.
//!
//! Targets: [`frame`] (the socket's framing), [`envelope`] (request
//! envelopes and the zero-copy record views), [`txlog`] (the transaction
//! log reader and its recovery), [`json`] (W&B's JSON dialect),
//! [`settings`] (run settings), and [`session`] (a whole service fed a
//! client's byte stream).

mod session;

use std::io::Cursor;

use bytes::{Bytes, BytesMut};
use prost::Message;
use tokio_util::codec::Decoder;
use wandb_proto::frame::FrameCodec;
use wandb_proto::json::Value;
use wandb_proto::pb;
use wandb_proto::view::{HistoryView, PartialHistoryView, stream_id};
use wandb_store::txlog::{LogReader, ReadError};

pub use session::session;

/// A target's body: panics when a property fails.
pub type Target = fn(&[u8]);

/// Every target, by name (the corpus and regression directories' names).
pub const TARGETS: &[(&str, Target)] = &[
    ("frame", frame),
    ("envelope", envelope),
    ("txlog", txlog),
    ("json", json),
    ("settings", settings),
    ("session", session),
];

/// Frames decode the same whether the bytes arrive at once or byte by
/// byte, and a declared length beyond the limit is refused before memory
/// is reserved for it.
pub fn frame(data: &[u8]) {
    const MAX: usize = 4096;
    let whole = decode_all(data, std::iter::once(data.len()));
    let trickled = decode_all(data, std::iter::repeat_n(1, data.len()));
    assert_eq!(whole, trickled, "framing depends on how bytes arrive");
    fn decode_all(data: &[u8], pieces: impl Iterator<Item = usize>) -> (Vec<Bytes>, bool) {
        let mut codec = FrameCodec::new(MAX);
        let (mut buf, mut frames, mut at) = (BytesMut::new(), Vec::new(), 0);
        for n in pieces {
            buf.extend_from_slice(&data[at..at + n]);
            at += n;
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(f)) => {
                        assert!(f.len() <= MAX);
                        frames.push(f)
                    }
                    Ok(None) => break,
                    Err(_) => return (frames, true),
                }
            }
            assert!(
                buf.capacity() <= data.len() + (2 << 20),
                "reserved {} bytes for {} of input",
                buf.capacity(),
                data.len()
            );
        }
        (frames, false)
    }
}

/// A connection's envelope parsing agrees with a full decode of every
/// request the full decode accepts, and so do the zero-copy views of the
/// record inside.
pub fn envelope(data: &[u8]) {
    let payload = Bytes::copy_from_slice(data);
    let ours = wandb_service::fuzzing::envelope(payload.clone());
    let Ok(full) = pb::ServerRequest::decode(payload) else {
        if let Ok(Some((_, raw))) = &ours {
            views(raw);
        }
        return;
    };
    use pb::server_request::ServerRequestType as T;
    match full.server_request_type {
        Some(T::RecordPublish(record) | T::RecordCommunicate(record)) => {
            let (request_id, raw) = ours
                .expect("a request the full decode reads is not refused")
                .expect("a record is routed as a record");
            assert_eq!(request_id, full.request_id);
            assert_eq!(pb::Record::decode(raw.clone()).as_ref(), Ok(&record));
            assert_eq!(
                stream_id(&raw),
                record.info.as_ref().map(|i| i.stream_id.as_str()),
                "stream id"
            );
            views(&raw);
        }
        _ => assert!(matches!(ours, Ok(None)), "{ours:?}"),
    }
}

/// The history views read what a full decode reads, or step aside (an
/// error) so that the caller decodes fully.
fn views(raw: &[u8]) {
    let full = pb::Record::decode(raw);
    if let (Ok(Some(view)), Ok(record)) = (HistoryView::from_record(raw), &full) {
        let Some(pb::record::RecordType::History(h)) = &record.record_type else {
            panic!("the view found a row in a record that is not one");
        };
        assert_eq!(
            keys(&view.items),
            h.item.iter().map(item_key).collect::<Vec<_>>()
        );
    }
    if let (Ok(Some(view)), Ok(record)) = (PartialHistoryView::from_record(raw), &full) {
        let Some(pb::record::RecordType::Request(pb::Request {
            request_type: Some(pb::request::RequestType::PartialHistory(p)),
        })) = &record.record_type
        else {
            panic!("the view found a partial row in a record that is not one");
        };
        assert_eq!(
            keys(&view.items),
            p.item.iter().map(item_key).collect::<Vec<_>>()
        );
        assert_eq!(view.step, p.step.as_ref().map(|s| s.num));
        assert_eq!(view.flush, p.action.as_ref().map(|a| a.flush));
    }
}

fn keys(items: &[wandb_proto::view::ItemView<'_>]) -> Vec<(String, Vec<String>, String)> {
    items
        .iter()
        .map(|i| {
            (
                i.key.to_string(),
                i.nested_key.iter().map(|k| k.to_string()).collect(),
                i.value_json.to_string(),
            )
        })
        .collect()
}

fn item_key(i: &pb::HistoryItem) -> (String, Vec<String>, String) {
    (i.key.clone(), i.nested_key.clone(), i.value_json.clone())
}

/// The log reader never panics or loops on any bytes: it yields records
/// inside the input, reports corruption, and after `recover` (what
/// `inspect --recover` and sync do) always moves forward.
pub fn txlog(data: &[u8]) {
    let Ok(mut reader) = LogReader::new(Cursor::new(data)) else {
        return;
    };
    let (mut total, mut last_end, mut steps) = (0usize, 0u64, 0usize);
    loop {
        steps += 1;
        assert!(steps <= data.len() + 2, "the reader does not move forward");
        match reader.next_record() {
            Ok(Some((pos, record))) => {
                assert!(pos.end <= data.len() as u64 && pos.offset < pos.end);
                assert!(pos.end > last_end, "records go forward");
                last_end = pos.end;
                total += record.len();
                assert!(total <= data.len(), "more record bytes than input");
            }
            Ok(None) | Err(ReadError::Truncated { .. }) => break,
            Err(ReadError::Corrupt { .. }) => reader.recover(),
            Err(e) => panic!("reading from memory failed: {e}"),
        }
    }
    assert!(reader.valid_len() <= data.len() as u64);
}

/// Whatever parses writes back as text that parses to the same value
/// (compared as text: NaN is not equal to itself).
pub fn json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(value) = Value::parse(text) else {
        return;
    };
    let written = value.to_json();
    let again = Value::parse(&written)
        .unwrap_or_else(|e| panic!("our own output {written:?} does not parse: {e}"));
    assert_eq!(again.to_json(), written, "writing is not stable");
}

/// Settings from the wire are read or refused, never a panic.
pub fn settings(data: &[u8]) {
    if let Ok(raw) = pb::Settings::decode(data) {
        let _ = wandb_service::fuzzing::settings(raw);
    }
}
