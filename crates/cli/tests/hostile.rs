//! Hostile input from a client, through the socket of a service process:
//! huge records, huge rows, a million metric names, deep nesting, invalid
//! UTF-8 and NUL bytes, file names that try to leave the run directory,
//! and the API key kept out of every file. Each gets an answer or an
//! error for its own request, the run goes on, and the service's peak
//! memory stays bounded (figures in docs/reliability.md).

mod common;

use std::path::Path;
use std::time::Duration;

use common::raw::*;
use common::{install_ours, python_script, standin, text};
use prost::Message;
use testkit::CommandExt as _;
use testkit::scratch_dir;
use wandb_proto::pb;
use wandb_proto::pb::record::RecordType;
use wandb_proto::pb::request::RequestType;
use wandb_proto::pb::server_request::ServerRequestType;
use wandb_proto::pb::server_response::ServerResponseType;
use wandb_standin::RunKey;
use wandb_store::txlog::LogReader;

const KEY: &str = "hostilehostilehostilehostilehostilehostile";

/// The service's peak resident memory so far, in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    testkit::process::memory_kib(pid).0 / 1024
}

fn is_error(a: &Option<ServerResponseType>) -> bool {
    matches!(a, Some(ServerResponseType::ErrorResponse(_)))
}

#[test]
fn huge_and_malformed_input_is_answered_within_bounded_memory() {
    let (mut child, socket, dir) = start(&["--pid", &std::process::id().to_string()]);
    let pid = child.id();
    let mut c = Client::connect(&socket);
    c.0.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    c.send(&inform_init("hostile", &dir));
    assert_eq!(c.recv().unwrap().request_id, "init-hostile");
    c.send(&run_record("hostile", "run"));
    assert!(!is_error(&c.answer("run")));
    let base = peak_rss_mib(pid);
    let mut figures = vec![format!("baseline {base} MiB")];

    // A 100 MB record: one value of 100 MB.
    let huge = format!("\"{}\"", "a".repeat(100 << 20));
    c.send(&row("hostile", "huge", vec![item("big", &huge)]));
    assert!(!is_error(&c.answer("huge")), "a 100 MB row is taken");
    drop(huge);
    let after_huge = peak_rss_mib(pid);
    figures.push(format!("100 MB record: peak {after_huge} MiB"));
    assert!(after_huge < base + 1200, "{figures:?}");

    // 100k keys in one row.
    let items = (0..100_000).map(|i| item(&format!("k{i}"), "1")).collect();
    c.send(&row("hostile", "wide", items));
    assert!(!is_error(&c.answer("wide")));
    figures.push(format!("100k keys: peak {} MiB", peak_rss_mib(pid)));

    // Config nested 10,000 deep: refused or kept, never a stack overflow.
    let deep = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    c.send(&record(
        "hostile",
        "deep",
        RecordType::Config(pb::ConfigRecord {
            update: vec![pb::ConfigItem {
                key: "deep".into(),
                value_json: deep.clone(),
                ..Default::default()
            }],
            ..Default::default()
        }),
    ));
    c.answer("deep");
    c.send(&row("hostile", "deeprow", vec![item("deep", &deep)]));
    c.answer("deeprow");

    // Invalid UTF-8 in a key: that record is refused, with an error.
    let good = row("hostile", "badutf8", vec![item("KEY", "1")]).encode_to_vec();
    let pos = good.windows(3).position(|w| w == b"KEY").unwrap();
    let mut bad = good.clone();
    bad[pos..pos + 3].copy_from_slice(&[0xff, 0xfe, 0xfd]);
    let mut frame = Vec::new();
    wandb_proto::frame::encode_frame(&bad, &mut frame);
    c.send_raw(&frame);
    assert!(is_error(&c.answer("badutf8")), "invalid UTF-8 is an error");

    // NUL bytes and control characters in keys and values are kept.
    c.send(&row(
        "hostile",
        "nul",
        vec![item("n\0ul", "\"v\\u0000\\u0001\"")],
    ));
    assert!(!is_error(&c.answer("nul")));

    // A million distinct metric names over the run: 1,000 rows of 1,000.
    for r in 0..1000 {
        let items = (0..1000)
            .map(|i| item(&format!("m{r}_{i}"), "0.5"))
            .collect();
        c.send(&row("hostile", "", items));
    }
    c.send(&request(
        "hostile",
        "step",
        RequestType::HistoryStep(Default::default()),
    ));
    assert!(!is_error(&c.answer("step")));
    let after_million = peak_rss_mib(pid);
    figures.push(format!("1M metric names: peak {after_million} MiB"));
    assert!(after_million < base + 2000, "{figures:?}");

    // The run still ends normally, with every accepted row in its log.
    c.send(&record(
        "hostile",
        "exit",
        RecordType::Exit(Default::default()),
    ));
    assert!(!is_error(&c.answer("exit")));
    c.send(&teardown());
    assert!(wait_exit(&mut child, Duration::from_secs(60)).success());
    let rows = LogReader::open(dir.join("run-hostile.wandb"))
        .unwrap()
        .map(|r| pb::Record::decode(&r.unwrap().1[..]).unwrap())
        .filter(|r| matches!(r.record_type, Some(RecordType::History(_))))
        .count();
    // huge, wide, nul and the million-name rows. Not the refused record,
    // and not the 10,000-deep value: JSON nested deeper than 256 is
    // dropped with a warning in the run's log (a row of nothing else
    // leaves no row).
    assert_eq!(rows, 3 + 1000, "{figures:?}");
    eprintln!("{}", figures.join("; "));
}

/// `inform_init` for an online run against `base_url`.
fn online_init(run_id: &str, dir: &Path, base_url: &str) -> pb::ServerRequest {
    let mut req = inform_init(run_id, dir);
    if let Some(ServerRequestType::InformInit(init)) = &mut req.server_request_type {
        let s = init.settings.as_mut().unwrap();
        s.mode = Some("online".into());
        s.base_url = Some(base_url.into());
        s.api_key = Some(KEY.into());
        s.entity = Some("standin".into());
        s.project = Some("hostile".into());
        s.x_disable_stats = Some(true);
        s.disable_git = Some(true);
    }
    req
}

#[test]
fn client_file_names_never_leave_the_run_directory() {
    let s = standin(KEY, &[]);
    let (mut child, socket, dir) = start(&["--pid", &std::process::id().to_string()]);
    let secret = "top secret, outside the run";
    std::fs::write(dir.join("secret.txt"), secret).unwrap();
    let files = dir.join("files");
    std::fs::create_dir_all(files.join("sub")).unwrap();
    std::fs::write(files.join("ok.txt"), "fine").unwrap();
    let mut c = Client::connect(&socket);
    c.0.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    c.send(&online_init("escape", &dir, &s.base_url));
    assert!(!is_error(&c.answer("init-escape")));
    c.send(&record(
        "escape",
        "run",
        RecordType::Run(pb::RunRecord {
            run_id: "escape".into(),
            project: "hostile".into(),
            entity: "standin".into(),
            ..Default::default()
        }),
    ));
    assert!(!is_error(&c.answer("run")));
    let outside = dir.join("secret.txt").display().to_string();
    let names = [
        "../secret.txt",
        "sub/../../secret.txt",
        outside.as_str(),
        "/etc/hostname",
        "",
        "ok.txt",
    ];
    c.send(&record(
        "escape",
        "",
        RecordType::Files(pb::FilesRecord {
            files: names
                .iter()
                .map(|p| pb::FilesItem {
                    path: p.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
    ));
    c.send(&record(
        "escape",
        "exit",
        RecordType::Exit(Default::default()),
    ));
    assert!(!is_error(&c.answer("exit")));
    c.send(&teardown());
    assert!(wait_exit(&mut child, Duration::from_secs(60)).success());
    let key = RunKey::new("standin", "hostile", "escape");
    let stored = s.store.file_paths(&key);
    assert!(stored.iter().any(|p| p == "ok.txt"), "{stored:?}");
    for name in &names[..4] {
        assert!(
            !stored.iter().any(|p| p == name),
            "{name} uploaded: {stored:?}"
        );
    }
    assert!(
        !stored
            .iter()
            .any(|p| p.contains("secret") || p.contains("hostname")),
        "{stored:?}"
    );
}

#[test]
fn the_api_key_is_in_no_file_or_log_the_service_writes() {
    // Online, with debug logging (every request and record logged): no
    // file under the run directory or the service's log directory holds
    // the key.
    let python = install_ours();
    let s = standin(KEY, &[]);
    let work = scratch_dir("apikey");
    let script = r#"
import wandb
run = wandb.init(project="secrets", config={"lr": 1})
for i in range(10):
    run.log({"x": i})
run.finish()
"#;
    let out = python_script(python, script, &work)
        .env("WANDB_BASE_URL", &s.base_url)
        .env("WANDB_API_KEY", KEY)
        .env("WANDB_DEBUG", "true")
        .env("WANDB_CACHE_DIR", work.join("cache"))
        .env("WANDB_DISABLE_GIT", "true")
        .output_within(Duration::from_secs(180))
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let mut checked = 0;
    let mut leaks = Vec::new();
    let mut stack = vec![work.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                // The SDK's own log (Python) is not ours to keep clean.
                if path.file_name().is_some_and(|n| n == "debug.log") {
                    continue;
                }
                checked += 1;
                let bytes = std::fs::read(&path).unwrap();
                if bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()) {
                    leaks.push(path.display().to_string());
                }
            }
        }
    }
    assert!(checked > 5, "only {checked} files looked at");
    assert!(leaks.is_empty(), "the API key is in {leaks:?}");
}
