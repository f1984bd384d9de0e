//! Hostile input from a client, through the socket of a service process:
//! huge records, huge rows, a million metric names, deep nesting, invalid
//! UTF-8 and NUL bytes, file names that try to leave the run directory,
//! and the API key kept out of every file. Each gets an answer or an
//! error for its own request, the run goes on, and the service's peak
//! memory stays bounded (figures in docs/reliability.md).

mod common;

use std::time::Duration;

use common::raw::*;
use common::{install_ours, python_script, standin, text};
use prost::Message;
use testkit::CommandExt as _;
use testkit::scratch_dir;
use wandb_proto::pb;
use wandb_proto::pb::record::RecordType;
use wandb_proto::pb::request::RequestType;
use wandb_proto::pb::server_response::ServerResponseType;
use wandb_standin::RunKey;

const KEY: &str = "hostilehostilehostilehostilehostilehostile";

/// The service's peak resident memory so far, in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    testkit::process::memory_kib(pid).0 / 1024
}

fn is_error(a: &Option<ServerResponseType>) -> bool {
    matches!(a, Some(ServerResponseType::ErrorResponse(_)))
}

/// What became of one hostile input: its own answer, if one came (ours
/// answers every record that carries a request id; W&B's wandb-core only
/// requests), and whether the service still answered a probe after it.
struct Outcome {
    answer: Option<Option<ServerResponseType>>,
    alive: bool,
}

impl Outcome {
    fn taken(&self) -> bool {
        self.alive && self.answer.as_ref().is_some_and(|a| !is_error(a))
    }

    fn refused(&self) -> bool {
        self.alive && self.answer.as_ref().is_some_and(is_error)
    }

    fn describe(&self) -> &'static str {
        match (self.alive, &self.answer) {
            (false, _) => "the service closed the connection or stopped answering",
            (true, Some(a)) if is_error(a) => "refused with an error, service fine",
            (true, Some(_)) => "taken and answered",
            (true, None) => "no answer of its own, service fine",
        }
    }
}

/// A service with one offline run, restarted if an input kills it (so
/// that W&B's binary, which may die, meets every input too).
struct Session {
    child: ServiceChild,
    c: Client,
    dir: std::path::PathBuf,
    base: u64,
}

impl Session {
    fn start() -> Self {
        let (child, socket, dir) = start(&["--pid", &std::process::id().to_string()]);
        let mut c = Client::connect(&socket);
        c.0.set_read_timeout(Some(Duration::from_secs(180)))
            .unwrap();
        c.send(&inform_init("hostile", &dir));
        assert_eq!(c.recv().unwrap().request_id, "init-hostile");
        // Both services answer a run record.
        c.send(&run_record("hostile", "run"));
        assert!(!is_error(&c.answer("run")));
        let base = peak_rss_mib(child.id());
        Self {
            child,
            c,
            dir,
            base,
        }
    }

    /// Ends the run and the service; returns the run's log. W&B's binary
    /// answers neither this exit record nor always the teardown: it gets
    /// a bounded wait and is killed after.
    fn finish(mut self, ours: bool) -> std::path::PathBuf {
        if ours {
            self.c.send(&record(
                "hostile",
                "exit",
                RecordType::Exit(Default::default()),
            ));
            assert!(!is_error(&self.c.answer("exit")));
        }
        self.c.send(&teardown());
        if ours {
            assert!(wait_exit(&mut self.child, Duration::from_secs(60)).success());
        } else {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while self.child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.dir.join("run-hostile.wandb")
    }

    fn peak(&self) -> u64 {
        peak_rss_mib(self.child.id())
    }

    /// Sends a `history_step` request (both services answer it) after the
    /// input `id`, and reads until its answer.
    fn outcome(&mut self, id: &str) -> Outcome {
        let probe = format!("probe-{id}");
        let mut frame = Vec::new();
        wandb_proto::frame::encode_frame(
            &request(
                "hostile",
                &probe,
                RequestType::HistoryStep(Default::default()),
            )
            .encode_to_vec(),
            &mut frame,
        );
        let mut answer = None;
        if std::io::Write::write_all(&mut self.c.0, &frame).is_err() {
            return Outcome {
                answer,
                alive: false,
            };
        }
        loop {
            match self.c.try_recv() {
                Some(r) if r.request_id == id => answer = Some(r.server_response_type),
                Some(r) if r.request_id == probe => {
                    return Outcome {
                        answer,
                        alive: true,
                    };
                }
                Some(_) => {}
                None => {
                    return Outcome {
                        answer,
                        alive: false,
                    };
                }
            }
        }
    }
}

#[test]
fn huge_and_malformed_input_is_answered_within_bounded_memory() {
    // `WANDB_TEST_SERVICE=<W&B's wandb-core>` runs the same inputs through
    // W&B's binary and prints what it did, asserting only ours.
    let ours = std::env::var_os("WANDB_TEST_SERVICE").is_none();
    let mut s = Session::start();
    let mut figures = vec![format!("baseline {} MiB", s.base)];
    let mut note = |s: &mut Session, what: &str, o: &Outcome| {
        let peak = s.peak();
        let mut outcome = o.describe().to_string();
        if !o.alive {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while s.child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if s.child.try_wait().unwrap().is_some() {
                outcome += " (the whole service exited)";
            }
            *s = Session::start();
        }
        figures.push(format!("{what}: {outcome}, peak {peak} MiB"));
        eprintln!("{}", figures.last().unwrap());
    };

    // A 100 MB record: one value of 100 MB.
    let huge = format!("\"{}\"", "a".repeat(100 << 20));
    s.c.send(&row("hostile", "huge", vec![item("big", &huge)]));
    drop(huge);
    let o = s.outcome("huge");
    let after_huge = s.peak();
    assert!(
        !ours || (o.taken() && after_huge < s.base + 1200),
        "{}",
        o.describe()
    );
    note(&mut s, "100 MB record", &o);

    // 100k keys in one row.
    let items = (0..100_000).map(|i| item(&format!("k{i}"), "1")).collect();
    s.c.send(&row("hostile", "wide", items));
    let o = s.outcome("wide");
    assert!(!ours || o.taken(), "{}", o.describe());
    note(&mut s, "100k keys", &o);

    // Config nested 10,000 deep: refused or kept, never a stack overflow.
    let deep = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    s.c.send(&record(
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
    let o = s.outcome("deep");
    assert!(!ours || o.alive, "{}", o.describe());
    note(&mut s, "config nested 10,000 deep", &o);
    s.c.send(&row("hostile", "deeprow", vec![item("deep", &deep)]));
    let o = s.outcome("deeprow");
    assert!(!ours || o.alive, "{}", o.describe());
    note(&mut s, "a row value nested 10,000 deep", &o);

    // Invalid UTF-8 in a key: that record is refused, with an error.
    let good = row("hostile", "badutf8", vec![item("KEY", "1")]).encode_to_vec();
    let pos = good.windows(3).position(|w| w == b"KEY").unwrap();
    let mut bad = good.clone();
    bad[pos..pos + 3].copy_from_slice(&[0xff, 0xfe, 0xfd]);
    let mut frame = Vec::new();
    wandb_proto::frame::encode_frame(&bad, &mut frame);
    s.c.send_raw(&frame);
    let o = s.outcome("badutf8");
    assert!(!ours || o.refused(), "invalid UTF-8: {}", o.describe());
    note(&mut s, "invalid UTF-8 in a key", &o);

    // NUL bytes and control characters in keys and values are kept.
    s.c.send(&row(
        "hostile",
        "nul",
        vec![item("n\0ul", "\"v\\u0000\\u0001\"")],
    ));
    let o = s.outcome("nul");
    assert!(!ours || o.taken(), "{}", o.describe());
    note(&mut s, "NUL and control bytes", &o);

    // A million distinct metric names over the run: 1,000 rows of 1,000,
    // in a fresh service, so that its peak is this input's alone.
    let first = std::mem::replace(&mut s, Session::start()).finish(ours);
    for r in 0..1000 {
        let items = (0..1000)
            .map(|i| item(&format!("m{r}_{i}"), "0.5"))
            .collect();
        s.c.send(&row("hostile", "", items));
    }
    let o = s.outcome("million");
    let after_million = s.peak();
    assert!(
        !ours || (o.alive && after_million < s.base + 2000),
        "{figures:?}"
    );
    note(&mut s, "1M metric names", &o);

    eprintln!("{}", figures.join("; "));
    let second = s.finish(ours);
    if !ours {
        return;
    }
    // huge, wide and nul; not the refused record, and not the 10,000-deep
    // value: JSON nested deeper than 256 is dropped with a warning in the
    // run's log (a row of nothing else leaves no row).
    assert_eq!(history_rows(&first), 3, "{figures:?}");
    assert_eq!(history_rows(&second), 1000, "{figures:?}");
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
    c.send(&online_init("escape", &dir, &s.base_url, KEY, "hostile"));
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
