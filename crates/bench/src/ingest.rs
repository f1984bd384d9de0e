//! Raw-protocol ingest: a pre-encoded stream of framed requests for a
//! realistic offline run, replayed as fast as the socket takes it.
//!
//! The stream is what the SDK sends for `wandb.init()`, N × `run.log` of
//! ten scalars, a config and a summary update every 10k rows, and
//! `finish()`. The clock runs from the first byte sent to the answer to the
//! exit record (which, for either service, comes once everything before it
//! is handled). Afterwards the log must hold every row, in order.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail, ensure};
use prost::Message;
use wandb_proto::frame::encode_frame;
use wandb_proto::pb;
use wandb_proto::pb::record::RecordType;
use wandb_proto::pb::request::RequestType;
use wandb_proto::pb::server_request::ServerRequestType;
use wandb_store::txlog::LogReader;

use crate::process::{Service, Usage, wait_answer};

pub const RUN_ID: &str = "benchrun1";

/// One ingest measurement.
#[derive(Debug, Clone)]
pub struct Ingest {
    pub rows: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub usage: Usage,
    /// From the teardown frame to the process's exit.
    pub exit_after_last_frame: Duration,
    pub log_bytes: u64,
}

impl Ingest {
    pub fn rows_per_s(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }

    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }

    pub fn cpu_per_100k(&self) -> f64 {
        self.usage.cpu_s * 100_000.0 / self.rows as f64
    }
}

fn frame(req: pb::ServerRequest, out: &mut Vec<u8>) {
    encode_frame(&req.encode_to_vec(), out);
}

fn record(request_id: &str, local: bool, record_type: RecordType) -> pb::ServerRequest {
    pb::ServerRequest {
        request_id: request_id.to_string(),
        server_request_type: Some(ServerRequestType::RecordPublish(pb::Record {
            record_type: Some(record_type),
            control: (local || !request_id.is_empty()).then(|| pb::Control {
                local,
                mailbox_slot: request_id.to_string(),
                ..Default::default()
            }),
            info: Some(pb::RecordInfo {
                stream_id: RUN_ID.into(),
                ..Default::default()
            }),
            ..Default::default()
        })),
    }
}

fn request(request_id: &str, local: bool, kind: RequestType) -> pb::ServerRequest {
    record(
        request_id,
        local,
        RecordType::Request(pb::Request {
            request_type: Some(kind),
        }),
    )
}

fn item(key: &str, value_json: String) -> pb::HistoryItem {
    pb::HistoryItem {
        key: key.to_string(),
        value_json,
        ..Default::default()
    }
}

/// What a raw-protocol run looks like beyond its rows.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    /// Online against this backend (base URL, API key); offline if `None`.
    pub online: Option<(String, String)>,
    /// System metrics sampled by the service, as the SDK has them on by
    /// default.
    pub stats: bool,
    /// A console line every this many rows.
    pub console_every: Option<u64>,
}

/// Settings like the SDK's for a run in `dir`.
fn settings(dir: &Path, shape: &Shape) -> pb::Settings {
    let s = |p: &Path| Some(p.display().to_string());
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let online = shape.online.is_some();
    pb::Settings {
        run_id: Some(RUN_ID.into()),
        project: Some("bench".into()),
        mode: Some(if online { "online" } else { "offline" }.into()),
        offline: Some(!online),
        base_url: shape.online.as_ref().map(|(url, _)| url.clone()),
        api_key: shape.online.as_ref().map(|(_, key)| key.clone()),
        sync_file: s(&dir.join(format!("run-{RUN_ID}.wandb"))),
        sync_dir: s(dir),
        log_dir: s(&dir.join("logs")),
        log_internal: s(&dir.join("logs/debug-internal.log")),
        root_dir: s(dir),
        x_start_time: Some(now),
        x_disable_stats: Some(!shape.stats),
        x_save_requirements: Some(false),
        console: Some(
            if shape.console_every.is_some() {
                "wrap_raw"
            } else {
                "off"
            }
            .into(),
        ),
        x_primary: Some(true),
        silent: Some(true),
        ..Default::default()
    }
}

/// The frames of a whole offline run with `rows` history rows.
pub fn encode_run(dir: &Path, rows: u64) -> Vec<u8> {
    encode_shaped(dir, rows, &Shape::default())
}

/// The frames of a whole run with `rows` history rows, shaped so.
pub fn encode_shaped(dir: &Path, rows: u64, shape: &Shape) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows as usize * 360 + 4096);
    frame(
        pb::ServerRequest {
            request_id: "init".into(),
            server_request_type: Some(ServerRequestType::InformInit(pb::ServerInformInitRequest {
                settings: Some(settings(dir, shape)),
                info: Some(pb::RecordInfo {
                    stream_id: RUN_ID.into(),
                    ..Default::default()
                }),
            })),
        },
        &mut out,
    );
    frame(
        record("", false, RecordType::Header(Default::default())),
        &mut out,
    );
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    let run = pb::RunRecord {
        run_id: RUN_ID.into(),
        project: "bench".into(),
        config: Some(pb::ConfigRecord {
            update: vec![
                pb::ConfigItem {
                    key: "lr".into(),
                    value_json: "0.001".into(),
                    ..Default::default()
                },
                pb::ConfigItem {
                    key: "model".into(),
                    value_json: r#"{"layers": 4, "width": 256}"#.into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }),
        start_time: Some(prost_types::Timestamp {
            seconds: now.as_secs() as i64,
            nanos: now.subsec_nanos() as i32,
        }),
        ..Default::default()
    };
    frame(record("run", false, RecordType::Run(run.clone())), &mut out);
    frame(
        request(
            "start",
            true,
            RequestType::RunStart(pb::RunStartRequest {
                run: Some(run),
                ..Default::default()
            }),
        ),
        &mut out,
    );
    let t0 = now.as_secs_f64();
    for i in 0..rows {
        let mut items: Vec<pb::HistoryItem> = (0..10)
            .map(|k| {
                item(
                    &format!("metric_{k}"),
                    format!("{:?}", i as f64 * 0.001 + k as f64 / 7.0),
                )
            })
            .collect();
        items.push(item("_timestamp", format!("{:?}", t0 + i as f64 * 1e-4)));
        frame(
            request(
                "",
                true,
                RequestType::PartialHistory(pb::PartialHistoryRequest {
                    item: items,
                    ..Default::default()
                }),
            ),
            &mut out,
        );
        if let Some(every) = shape.console_every
            && i % every == 0
        {
            frame(
                record(
                    "",
                    false,
                    RecordType::OutputRaw(pb::OutputRawRecord {
                        line: format!("step {i} loss {:.5}\n", 1.0 / (i + 1) as f64),
                        ..Default::default()
                    }),
                ),
                &mut out,
            );
        }
        if i % 10_000 == 9_999 {
            frame(
                record(
                    "",
                    false,
                    RecordType::Config(pb::ConfigRecord {
                        update: vec![pb::ConfigItem {
                            key: "rows_so_far".into(),
                            value_json: (i + 1).to_string(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                ),
                &mut out,
            );
            frame(
                record(
                    "",
                    false,
                    RecordType::Summary(pb::SummaryRecord {
                        update: vec![pb::SummaryItem {
                            key: "checkpoint".into(),
                            value_json: (i + 1).to_string(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                ),
                &mut out,
            );
        }
    }
    frame(
        record("exit", false, RecordType::Exit(Default::default())),
        &mut out,
    );
    out
}

/// One replay of a run's frames into a fresh service.
pub struct Replay {
    /// From the first byte sent to the exit answered.
    pub elapsed: Duration,
    /// From the first byte sent to the last one taken by the socket.
    pub sending: Duration,
    pub usage: Usage,
    /// From the teardown frame to the process's exit.
    pub exit_after_last_frame: Duration,
}

/// Writes `frames` (a whole run, ending with its exit record) into a fresh
/// service as fast as it takes them, waits for the exit's answer, then
/// finishes the run and tears the service down.
pub fn replay(binary: &Path, dir: &Path, frames: &[u8]) -> anyhow::Result<Replay> {
    let cache = dir.join("cache");
    let service = Service::start(binary, dir, &[], &[("WANDB_CACHE_DIR", &cache)], None)?;
    let conn = service.connect()?;
    let mut reader = conn.try_clone()?;
    let answers =
        std::thread::spawn(move || wait_answer(&mut reader, "exit").map(|_| Instant::now()));
    let t0 = Instant::now();
    let mut writer = conn;
    for chunk in frames.chunks(256 * 1024) {
        writer.write_all(chunk).context("send frames")?;
    }
    let sending = t0.elapsed();
    let exit_answered = answers
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))??;
    // inform_finish, then teardown; the process exit ends the measurement.
    let mut finish = Vec::new();
    frame(
        pb::ServerRequest {
            server_request_type: Some(ServerRequestType::InformFinish(
                pb::ServerInformFinishRequest {
                    info: Some(pb::RecordInfo {
                        stream_id: RUN_ID.into(),
                        ..Default::default()
                    }),
                },
            )),
            ..Default::default()
        },
        &mut finish,
    );
    writer.write_all(&finish)?;
    let (usage, exit_after_last_frame) = service.teardown()?;
    Ok(Replay {
        elapsed: exit_answered - t0,
        sending,
        usage,
        exit_after_last_frame,
    })
}

/// Replays `frames` into a fresh service and measures it.
pub fn run(binary: &Path, dir: &Path, frames: &[u8], rows: u64) -> anyhow::Result<Ingest> {
    std::fs::create_dir_all(dir.join("logs"))?;
    std::fs::create_dir_all(dir.join("files"))?;
    let _ = std::fs::remove_file(dir.join(format!("run-{RUN_ID}.wandb")));
    let r = replay(binary, dir, frames)?;
    let log = dir.join(format!("run-{RUN_ID}.wandb"));
    let log_bytes = verify(&log, rows)?;
    Ok(Ingest {
        rows,
        bytes: frames.len() as u64,
        elapsed: r.elapsed,
        usage: r.usage,
        exit_after_last_frame: r.exit_after_last_frame,
        log_bytes,
    })
}

/// The log must hold every row, steps 0..rows in order, and the exit.
pub fn verify(log: &PathBuf, rows: u64) -> anyhow::Result<u64> {
    let reader = LogReader::open(log).with_context(|| format!("open {}", log.display()))?;
    let mut next_step = 0i64;
    let mut exit = false;
    for rec in reader {
        let (_, bytes) = rec.with_context(|| format!("read {}", log.display()))?;
        match pb::Record::decode(&bytes[..])?.record_type {
            Some(RecordType::History(h)) => {
                let step = h.step.map_or(0, |s| s.num);
                ensure!(
                    step == next_step,
                    "{}: history step {step} where {next_step} was due",
                    log.display()
                );
                ensure!(
                    h.item.len() >= 12,
                    "{}: row {step} has {} items",
                    log.display(),
                    h.item.len()
                );
                next_step += 1;
            }
            Some(RecordType::Exit(_)) => exit = true,
            _ => {}
        }
    }
    if next_step as u64 != rows || !exit {
        bail!(
            "{}: {next_step} of {rows} rows, exit record {exit}: data was lost",
            log.display()
        );
    }
    Ok(std::fs::metadata(log)?.len())
}
