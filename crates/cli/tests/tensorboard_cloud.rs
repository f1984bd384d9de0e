//! TensorBoard logs in an S3 bucket: `wandb-core sync --tensorboard
//! s3://…` against a local S3-compatible server (moto, installed by
//! `scripts/setup-reference` into `.venv-tools`), loopback only. GCS
//! (`gs://`) goes through the same code with another builder; no local
//! GCS server installs from the package registries, so it is untested.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use testkit::process::CommandExt;
use testkit::scratch_dir;
use wandb_standin::RunKey;
use wandb_tensorboard::proto::{Event, Kind, Summary, SummaryValue};

const KEY: &str = "tbcloudkeytbcloudkeytbcloudkeytbcloud012";

/// The moto server (killed when the test ends) and its port.
struct Moto {
    _server: common::raw::ServiceChild,
    port: u16,
}

fn moto() -> Moto {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-tools/bin/moto_server");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/setup-reference",
        bin.display()
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let work = scratch_dir("moto");
    let child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .current_dir(&work)
        .stdin(Stdio::null())
        .stdout(Stdio::from(
            std::fs::File::create(work.join("moto.out")).unwrap(),
        ))
        .stderr(Stdio::from(
            std::fs::File::create(work.join("moto.err")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let moto = Moto {
        _server: common::raw::ServiceChild(child),
        port,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    moto
}

/// An unsigned PUT (moto takes them); the status code.
fn put(port: u16, path: &str, body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn events(steps: std::ops::Range<i64>) -> Vec<u8> {
    let mut out = Vec::new();
    for step in steps {
        let event = Event {
            wall_time: 1.7e9 + step as f64,
            step,
            summary: Some(Summary {
                value: vec![SummaryValue {
                    tag: "loss".into(),
                    metadata: None,
                    kind: Some(Kind::SimpleValue(1.0 / (step + 1) as f32)),
                }],
            }),
        };
        out.extend(wandb_tensorboard::record::frame(&event.encode_to_vec()));
    }
    out
}

#[test]
fn tensorboard_logs_in_an_s3_bucket_are_imported() {
    let moto = moto();
    assert_eq!(put(moto.port, "/tblogs", b""), 200, "the bucket");
    let object = "/tblogs/logs/train/events.out.tfevents.1700000000.node1";
    assert_eq!(put(moto.port, object, &events(0..20)), 200, "the log");
    let s = common::standin(KEY, &[]);
    let work = scratch_dir("tb-s3");
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    let sync = || {
        let out = Command::new(common::ours())
            .args([
                "sync",
                "--tensorboard",
                "s3://tblogs/logs/train",
                "--project",
                "tbcloud",
            ])
            .current_dir(&work)
            .env_remove("WANDB_SERVICE")
            .env("WANDB_BASE_URL", &s.base_url)
            .env("WANDB_API_KEY", KEY)
            .env("HOME", &work)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ENDPOINT", &endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .output_limited()
            .unwrap();
        let text = common::text(&out);
        assert!(out.status.success(), "{text}");
        text
    };
    let said = sync();
    let runs: Vec<_> = s
        .store
        .runs()
        .into_iter()
        .filter(|r| r.project == "tbcloud")
        .collect();
    assert_eq!(runs.len(), 1, "{said}");
    let key = RunKey::new(&runs[0].entity, "tbcloud", &runs[0].name);
    let steps = |s: &wandb_standin::StandIn| {
        s.store
            .history(&key)
            .iter()
            .map(|r| r["global_step"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(steps(&s), (0..20).collect::<Vec<_>>(), "{said}");
    // Training went on in a new writer session (a new file): imported
    // again, only the new rows are sent.
    let later = "/tblogs/logs/train/events.out.tfevents.1700000100.node1";
    assert_eq!(put(moto.port, later, &events(20..30)), 200);
    let said = sync();
    assert_eq!(steps(&s), (0..30).collect::<Vec<_>>(), "{said}");
}
