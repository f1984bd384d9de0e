//! The handler on its own: records in, work for the writer and answers out,
//! no socket, no threads.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use wandb_proto::pb;
use wandb_proto::pb::record::RecordType;
use wandb_proto::pb::request::RequestType;
use wandb_proto::pb::response::ResponseType;
use wandb_proto::pb::server_response::ServerResponseType;

use super::{Ending, Handler};
use crate::respond::{Reply, Responder};
use crate::runlog::RunLog;
use crate::settings::RunSettings;
use crate::stream::history::partial_history_record;
use crate::stream::runfiles::FilesMsg;
use crate::stream::writer::WriterMsg;

/// An offline run's handler, and where its answers arrive.
fn handler() -> (Handler, flume::Receiver<Bytes>, Responder) {
    let settings = RunSettings::from_proto(
        pb::Settings {
            run_id: Some("unit".into()),
            sync_file: Some("/nonexistent/run-unit.wandb".into()),
            sync_dir: Some("/nonexistent".into()),
            mode: Some("offline".into()),
            ..Default::default()
        },
        "unit",
    )
    .unwrap();
    let (tx, rx) = flume::unbounded();
    (
        Handler::new(Arc::new(settings), RunLog::open("unit", None)),
        rx,
        Responder::new(tx, 0),
    )
}

fn reply(to: &Responder, id: &str) -> Option<Reply> {
    Some(Reply {
        request_id: id.into(),
        to: to.clone(),
    })
}

fn raw(record_type: RecordType) -> Bytes {
    Bytes::from(
        pb::Record {
            record_type: Some(record_type),
            ..Default::default()
        }
        .encode_to_vec(),
    )
}

fn ask(h: &mut Handler, to: &Responder, id: &str, kind: RequestType) {
    h.record(
        raw(RecordType::Request(pb::Request {
            request_type: Some(kind),
        })),
        reply(to, id),
    );
}

fn log_row(h: &mut Handler, items: &[(&str, &str)], step: Option<i64>) {
    h.record(partial_history_record(items, step, None), None);
}

/// Every answer so far.
fn answers(rx: &flume::Receiver<Bytes>) -> Vec<pb::ServerResponse> {
    rx.try_iter()
        .map(|b| pb::ServerResponse::decode(b).unwrap())
        .collect()
}

fn response_of(answer: &pb::ServerResponse) -> Option<&ResponseType> {
    match &answer.server_response_type {
        Some(ServerResponseType::ResultCommunicate(pb::Result {
            result_type: Some(pb::result::ResultType::Response(r)),
            ..
        })) => r.response_type.as_ref(),
        _ => None,
    }
}

/// The records the handler queued for the log, decoded.
fn written(h: &mut Handler) -> Vec<pb::Record> {
    h.take_output()
        .into_iter()
        .filter_map(|m| match m {
            WriterMsg::Append(raw) => Some(pb::Record::decode(raw).unwrap()),
            _ => None,
        })
        .collect()
}

fn value<'a>(h: &'a pb::HistoryRecord, key: &str) -> Option<&'a str> {
    h.item
        .iter()
        .find(|i| i.key == key || i.nested_key.first().is_some_and(|k| k == key))
        .map(|i| i.value_json.as_str())
}

#[test]
fn an_offline_run_record_is_answered_at_once_with_the_wrapped_config() {
    let (mut h, rx, to) = handler();
    h.record(
        raw(RecordType::Run(pb::RunRecord {
            run_id: "unit".into(),
            config: Some(pb::ConfigRecord {
                update: vec![pb::ConfigItem {
                    key: "lr".into(),
                    value_json: "0.1".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        })),
        reply(&to, "run"),
    );
    let answers = answers(&rx);
    assert_eq!(answers.len(), 1);
    let Some(ServerResponseType::ResultCommunicate(pb::Result {
        result_type: Some(pb::result::ResultType::RunResult(result)),
        ..
    })) = &answers[0].server_response_type
    else {
        panic!("{answers:?}");
    };
    assert!(result.error.is_none());
    let config = result.run.as_ref().unwrap().config.as_ref().unwrap();
    let lr = config.update.iter().find(|i| i.key == "lr").unwrap();
    assert_eq!(lr.value_json, r#"{"value":0.1}"#);
    assert!(config.update.iter().any(|i| i.key == "_wandb"));
    // The run record goes to the log as sent, and config.yaml is updated.
    let out = h.take_output();
    assert!(out.iter().any(|m| matches!(m, WriterMsg::Append(_))));
    assert!(
        out.iter()
            .any(|m| matches!(m, WriterMsg::Forward(FilesMsg::Config(_))))
    );
}

#[test]
fn a_run_without_a_log_is_refused_with_wandb_cores_words() {
    let (mut h, rx, to) = handler();
    h.refuse_without_log("cannot create the transaction log: denied");
    h.record(
        raw(RecordType::Run(pb::RunRecord::default())),
        reply(&to, "run"),
    );
    let answers = answers(&rx);
    let Some(ServerResponseType::ResultCommunicate(pb::Result {
        result_type: Some(pb::result::ResultType::RunResult(result)),
        ..
    })) = &answers[0].server_response_type
    else {
        panic!("{answers:?}");
    };
    let error = result.error.as_ref().expect("refused");
    assert_eq!(
        error.message,
        "Error initializing run: cannot create the transaction log: denied"
    );
}

#[test]
fn rows_get_steps_and_the_summary_follows_them() {
    let (mut h, rx, to) = handler();
    log_row(&mut h, &[("loss", "0.5")], None);
    log_row(&mut h, &[("loss", "0.25"), ("acc", "1")], None);
    let rows: Vec<_> = written(&mut h)
        .into_iter()
        .filter_map(|r| match r.record_type {
            Some(RecordType::History(h)) => Some(h),
            _ => None,
        })
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(value(&rows[0], "_step"), Some("0"));
    assert_eq!(value(&rows[1], "_step"), Some("1"));
    assert_eq!(value(&rows[1], "acc"), Some("1"));

    ask(
        &mut h,
        &to,
        "summary",
        RequestType::GetSummary(Default::default()),
    );
    ask(
        &mut h,
        &to,
        "step",
        RequestType::HistoryStep(Default::default()),
    );
    let answers = answers(&rx);
    let Some(ResponseType::GetSummaryResponse(summary)) = response_of(&answers[0]) else {
        panic!("{answers:?}");
    };
    let loss = summary.item.iter().find(|i| i.key == "loss").unwrap();
    assert_eq!(loss.value_json, "0.25");
    assert_eq!(
        response_of(&answers[1]),
        Some(&ResponseType::HistoryStepResponse(
            pb::HistoryStepResponse { step: 2 }
        ))
    );
}

#[test]
fn a_step_backwards_is_dropped_and_the_user_told() {
    let (mut h, rx, to) = handler();
    log_row(&mut h, &[("x", "1")], Some(10));
    log_row(&mut h, &[("x", "2")], Some(11));
    log_row(&mut h, &[("x", "3")], Some(5));
    ask(
        &mut h,
        &to,
        "msgs",
        RequestType::InternalMessages(Default::default()),
    );
    let answers = answers(&rx);
    let Some(ResponseType::InternalMessagesResponse(m)) = response_of(&answers[0]) else {
        panic!("{answers:?}");
    };
    let warnings = &m.messages.as_ref().unwrap().warning;
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].starts_with("Tried to log to step 5 that is less than the current step 11"),
        "{warnings:?}"
    );
}

#[test]
fn the_message_loop_waits_for_a_warning_then_gets_it() {
    let (mut h, rx, to) = handler();
    ask(
        &mut h,
        &to,
        "msgs",
        RequestType::InternalMessages(Default::default()),
    );
    assert!(
        answers(&rx).is_empty(),
        "held while there is nothing to say"
    );
    h.warn_user("the backend said no".into());
    let answers = answers(&rx);
    let Some(ResponseType::InternalMessagesResponse(m)) = response_of(&answers[0]) else {
        panic!("{answers:?}");
    };
    assert_eq!(
        m.messages.as_ref().unwrap().warning,
        vec!["the backend said no"]
    );
}

#[test]
fn finishing_writes_the_pending_row_the_summary_and_one_exit() {
    let (mut h, _rx, to) = handler();
    log_row(&mut h, &[("x", "1")], Some(3));
    let _ = h.take_output();
    h.finish(Ending::Synthesized(3));
    let records = written(&mut h);
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| match &r.record_type {
            Some(RecordType::History(_)) => "history",
            Some(RecordType::Summary(_)) => "summary",
            Some(RecordType::Exit(_)) => "exit",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["history", "summary", "exit"]);
    let Some(RecordType::Exit(exit)) = &records[2].record_type else {
        unreachable!()
    };
    assert_eq!(exit.exit_code, 3);
    assert!(h.exited());
    // A second exit is answered but writes nothing.
    h.record(
        raw(RecordType::Exit(pb::RunExitRecord::default())),
        reply(&to, "exit2"),
    );
    assert!(written(&mut h).is_empty());
}

#[test]
fn malformed_and_empty_records_get_errors() {
    let (mut h, rx, to) = handler();
    h.record(Bytes::from_static(&[0xff, 0xff, 0xff]), reply(&to, "bad"));
    h.record(
        raw(RecordType::Request(pb::Request::default())),
        reply(&to, "empty"),
    );
    for answer in answers(&rx) {
        assert!(
            matches!(
                answer.server_response_type,
                Some(ServerResponseType::ErrorResponse(_))
            ),
            "{answer:?}"
        );
    }
    assert!(written(&mut h).is_empty());
}

#[test]
fn artifacts_offline_are_refused_with_a_reason() {
    let (mut h, rx, to) = handler();
    ask(
        &mut h,
        &to,
        "art",
        RequestType::LogArtifact(pb::LogArtifactRequest::default()),
    );
    let answers = answers(&rx);
    let Some(ResponseType::LogArtifactResponse(r)) = response_of(&answers[0]) else {
        panic!("{answers:?}");
    };
    assert!(r.error_message.contains("online run"), "{r:?}");
}
