//! The Rust SDK (`wandb` crate) against real services: the same run
//! through each transport (our service in-process, our binary launched by
//! path, W&B's `wandb-core` from the pip package launched by path) gives
//! equal history rows, config, summary and exit record; eight threads share
//! one run; a run online against the stand-in; bad input and a service that
//! dies mid-run.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wandb::{
    Error, Histogram, Image, LogOptions, Metric, Mode, QueuePolicy, Run, Settings, Summary,
    Transport,
};
use wandb_proto::json::{Value as Json, write_float};
use wandb_proto::pb;
use wandb_proto::pb::record::RecordType;

fn our_core() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wandb-core"))
}

fn offline(dir: &Path, transport: Transport) -> Settings {
    Settings::new()
        .mode(Mode::Offline)
        .dir(dir)
        .project("rust-sdk")
        .transport(transport)
        .disable_stats(true)
}

/// What a transaction log says about a run, in a form two services'
/// logs can be compared in (numbers as floats, objects with sorted keys,
/// times left out).
#[derive(Debug, Default, PartialEq)]
struct RunView {
    rows: Vec<BTreeMap<String, String>>,
    summary: BTreeMap<String, String>,
    config: BTreeMap<String, String>,
    exit_code: Option<i32>,
    metrics: usize,
    files: Vec<String>,
    alerts: Vec<String>,
}

fn canonical(v: &Json, out: &mut String) {
    match v {
        Json::Int(i) => write_float(*i as f64, out),
        Json::Float(f) => write_float(*f, out),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        Json::Object(items) => {
            let mut sorted: Vec<_> = items.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (i, (k, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&format!("{k:?}:"));
                canonical(v, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_json()),
    }
}

fn norm(value_json: &str) -> String {
    let v = Json::parse(value_json).unwrap_or_else(|e| panic!("{value_json}: {e}"));
    let mut out = String::new();
    canonical(&v, &mut out);
    out
}

fn path_of(key: &str, nested: &[String]) -> String {
    if nested.is_empty() {
        key.to_string()
    } else {
        nested.join(".")
    }
}

fn view(log: &Path) -> RunView {
    let mut v = RunView::default();
    let timing = |k: &str| k == "_timestamp" || k == "_runtime" || k.starts_with("_wandb");
    for r in common::records(log) {
        match r.record_type {
            Some(RecordType::History(h)) => {
                v.rows.push(
                    h.item
                        .iter()
                        .map(|i| (path_of(&i.key, &i.nested_key), norm(&i.value_json)))
                        .filter(|(k, _)| !timing(k))
                        .collect(),
                );
            }
            Some(RecordType::Summary(s)) => {
                for i in s.update {
                    let k = path_of(&i.key, &i.nested_key);
                    if !timing(&k) {
                        v.summary.insert(k, norm(&i.value_json));
                    }
                }
                for i in s.remove {
                    v.summary.remove(&path_of(&i.key, &i.nested_key));
                }
            }
            Some(RecordType::Run(run)) => {
                for i in run.config.map(|c| c.update).unwrap_or_default() {
                    config_item(&mut v, &i);
                }
            }
            Some(RecordType::Config(c)) => {
                for i in c.update {
                    config_item(&mut v, &i);
                }
            }
            Some(RecordType::Exit(e)) => v.exit_code = Some(e.exit_code),
            Some(RecordType::Metric(_)) => v.metrics += 1,
            Some(RecordType::Files(f)) => v.files.extend(f.files.into_iter().map(|f| f.path)),
            Some(RecordType::Alert(a)) => {
                v.alerts.push(format!("{}|{}|{}", a.title, a.level, a.text))
            }
            _ => {}
        }
    }
    v
}

fn config_item(v: &mut RunView, i: &pb::ConfigItem) {
    let k = path_of(&i.key, &i.nested_key);
    if k == "_wandb" {
        return;
    }
    // W&B's service stores config values wrapped as {"value": …}.
    let mut value = Json::parse(&i.value_json).unwrap();
    if let Json::Object(items) = &value
        && items.len() == 1
        && items[0].0 == "value"
    {
        value = items[0].1.clone();
    }
    let mut out = String::new();
    canonical(&value, &mut out);
    v.config.insert(k, out);
}

fn log_of(dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "wandb").then_some(p)
        })
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    logs.pop().unwrap()
}

/// The example run: config, define_metric, steps and commits, media,
/// non-finite values, odd keys, summary, alert, a saved file.
fn scenario(run: &Run, scratch: &Path) {
    run.define_metric(Metric::new("loss").summary([Summary::Min, Summary::Last]))
        .unwrap();
    run.define_metric(Metric::new("val/*").step_metric("epoch"))
        .unwrap();
    for step in 0..40u32 {
        run.log(wandb::row! {
            "loss" => 1.0 / f64::from(step + 1),
            "acc" => f64::from(step) / 40.0,
            "epoch" => step / 10,
            "train/grad.norm" => 0.5,
            "nested" => wandb::Value::map([("inner", 1.into()), ("deep", wandb::Value::map([("v", 2.5.into())]))]),
        })
        .unwrap();
        if step % 10 == 9 {
            run.log(wandb::row! {"val/acc" => f64::from(step) / 50.0})
                .unwrap();
        }
    }
    run.log_with(
        wandb::row! {"a" => 1},
        LogOptions::new().step(100).commit(false),
    )
    .unwrap();
    run.log_with(wandb::row! {"b" => 2}, LogOptions::new().step(100))
        .unwrap();
    run.log_with(wandb::row! {"late" => 3}, LogOptions::new().step(5))
        .unwrap();
    run.log(wandb::row! {
        "nan" => f64::NAN,
        "inf" => f64::INFINITY,
        "ninf" => f64::NEG_INFINITY,
        "flag" => true,
        "text" => "hello \"world\"\n",
        "list" => vec![1.5, 2.5],
        "big" => u64::MAX,
        "f32" => 0.1f32,
    })
    .unwrap();
    run.log(wandb::row! {
        "hist" => Histogram::from_values([1.0, 2.0, 2.0, 3.0, 10.0], 3).unwrap(),
        "img" => Image::from_rgb8(4, 2, &[200; 24]).unwrap().with_caption("gray"),
    })
    .unwrap();
    run.config_update(&serde_json::json!({"added": {"x": [1, 2]}, "lr": 0.5}))
        .unwrap();
    run.config_set("optimizer", "adam").unwrap();
    run.summary_set("best", 0.125).unwrap();
    run.alert(
        "hi",
        "text",
        wandb::AlertLevel::Warn,
        Duration::from_secs(0),
    )
    .unwrap();
    let file = scratch.join("notes.txt");
    std::fs::write(&file, "saved\n").unwrap();
    assert_eq!(
        run.save(&file, wandb::SavePolicy::End).unwrap(),
        "notes.txt"
    );
}

fn run_scenario(transport: Transport, scratch: &Path) -> (RunView, PathBuf) {
    let settings = offline(scratch, transport)
        .run_id("rsdk0001")
        .config(&serde_json::json!({"lr": 0.01, "layers": 3, "model": {"act": "relu"}}))
        .unwrap();
    let run = wandb::init(settings).unwrap();
    scenario(&run, scratch);
    let report = run.finish(0).unwrap();
    assert_eq!(report.stats.dropped + report.stats.undelivered, 0);
    let dir = report.dir.unwrap();
    (view(&log_of(&dir)), dir)
}

#[test]
fn the_same_run_through_every_transport() {
    testkit::within(testkit::process::LIMIT, || {
        let base = testkit::scratch_dir("sdk-transports");
        let runs = [
            ("in-process", Transport::InProcess),
            ("our binary", Transport::Launch(our_core())),
            (
                "W&B's wandb-core",
                Transport::Launch(testkit::reference_core().to_path_buf()),
            ),
        ];
        let mut views = Vec::new();
        for (name, transport) in runs {
            let scratch = base.join(name.replace(' ', "-").replace('\'', ""));
            std::fs::create_dir_all(&scratch).unwrap();
            let (v, dir) = run_scenario(transport, &scratch);
            // Media and saved files are in the run's files/.
            let img = v
                .files
                .iter()
                .find(|f| f.starts_with("media/images/img_"))
                .unwrap_or_else(|| panic!("{name}: no image in {:?}", v.files));
            assert!(dir.join("files").join(img).is_file(), "{name}: {img}");
            assert!(dir.join("files/notes.txt").is_file());
            views.push((name, v));
        }
        let (_, first) = &views[0];
        // Sanity of the run itself, then equality across services.
        assert_eq!(first.exit_code, Some(0));
        assert_eq!(first.metrics, 2);
        // 40 rows, 4 val rows, the step-100 row (a, b and the next row's
        // values: a row without a step joins the open step), the media row.
        assert_eq!(first.rows.len(), 40 + 4 + 1 + 1, "{:#?}", first.rows);
        assert_eq!(first.rows[0]["_step"], "0");
        assert_eq!(first.rows[0]["nested.deep.v"], "2.5");
        assert_eq!(first.rows[0]["train/grad.norm"], "0.5");
        let special = first.rows.iter().find(|r| r.contains_key("nan")).unwrap();
        assert_eq!(special["nan"], "NaN");
        assert_eq!(special["inf"], "Infinity");
        assert_eq!(special["ninf"], "-Infinity");
        assert_eq!(special["f32"], "0.1");
        assert_eq!(special["big"], "1.8446744073709552e+19");
        let merged = first.rows.iter().find(|r| r.contains_key("a")).unwrap();
        assert_eq!(
            (merged["b"].as_str(), merged["_step"].as_str()),
            ("2", "100")
        );
        assert!(merged.contains_key("nan"));
        assert!(
            !first.rows.iter().any(|r| r.contains_key("late")),
            "step 5 < 100 is dropped"
        );
        let media = first
            .rows
            .iter()
            .find(|r| r.contains_key("hist._type"))
            .unwrap();
        assert_eq!(media["hist.values"], "[4,0,1]");
        assert_eq!(media["img._type"], "\"image-file\"");
        assert_eq!(first.config["lr"], "0.5");
        assert_eq!(first.config["layers"], "3");
        assert_eq!(first.config["optimizer"], "\"adam\"");
        assert_eq!(first.summary["best"], "0.125");
        assert_eq!(first.summary["loss"], r#"{"last":0.025,"min":0.025}"#);
        assert_eq!(first.alerts, ["hi|WARN|text"]);
        for (name, v) in &views[1..] {
            assert_eq!(v.rows, first.rows, "history rows: {name} vs in-process");
            assert_eq!(v.config, first.config, "config: {name} vs in-process");
            assert_eq!(v.summary, first.summary, "summary: {name} vs in-process");
            assert_eq!(v.exit_code, first.exit_code, "{name}");
            assert_eq!(v.metrics, first.metrics, "{name}");
            assert_eq!(v.files, first.files, "{name}");
            assert_eq!(v.alerts, first.alerts, "{name}");
        }
    });
}

#[test]
fn eight_threads_log_to_one_run() {
    testkit::within(testkit::process::LIMIT, || {
        const THREADS: u64 = 8;
        const ROWS: u64 = 100_000;
        let scratch = testkit::scratch_dir("sdk-threads");
        let run = wandb::init(offline(&scratch, Transport::InProcess)).unwrap();
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let run = run.clone();
                s.spawn(move || {
                    let key = format!("t{t}");
                    for i in 0..ROWS {
                        run.log([(key.as_str(), i)]).unwrap();
                    }
                });
            }
        });
        let report = run.finish(0).unwrap();
        assert_eq!(report.stats.dropped, 0);
        let rows = view(&log_of(&report.dir.unwrap())).rows;
        assert_eq!(rows.len() as u64, THREADS * ROWS);
        let mut next = vec![0u64; THREADS as usize];
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row["_step"], write(i as f64), "steps are 0, 1, 2, …");
            let (k, v) = row.iter().find(|(k, _)| k.starts_with('t')).unwrap();
            let t: usize = k[1..].parse().unwrap();
            assert_eq!(
                *v,
                write(next[t] as f64),
                "thread {t}'s rows arrive in order"
            );
            next[t] += 1;
        }
        assert!(next.iter().all(|n| *n == ROWS));
    });
}

fn write(f: f64) -> String {
    let mut s = String::new();
    write_float(f, &mut s);
    s
}

#[test]
fn bad_input_is_refused_with_a_typed_error() {
    testkit::within(testkit::process::LIMIT, || {
        let scratch = testkit::scratch_dir("sdk-bad-input");
        let run = wandb::init(offline(&scratch, Transport::InProcess)).unwrap();
        assert!(matches!(run.log([("", 1)]), Err(Error::InvalidKey { .. })));
        assert!(matches!(
            run.log([("_step", 1)]),
            Err(Error::InvalidKey { .. })
        ));
        assert!(matches!(
            run.config_update(&[1, 2]),
            Err(Error::InvalidValue { .. })
        ));
        assert!(matches!(
            run.config_set("", 1),
            Err(Error::InvalidKey { .. })
        ));
        assert!(matches!(
            run.define_metric(Metric::new("*")),
            Err(Error::InvalidKey { .. })
        ));
        assert!(matches!(
            run.save(scratch.join("missing.bin"), wandb::SavePolicy::Now),
            Err(Error::Io { .. })
        ));
        assert!(Image::from_rgb8(3, 3, &[0; 5]).is_err());
        // A refused call logs nothing; the run goes on.
        run.log([("ok", 1)]).unwrap();
        let report = run.finish(0).unwrap();
        assert!(matches!(run.log([("x", 1)]), Err(Error::Finished)));
        assert!(matches!(run.finish(0), Err(Error::Finished)));
        let v = view(&log_of(&report.dir.unwrap()));
        assert_eq!(v.rows.len(), 1);
        assert_eq!(v.rows[0]["ok"], "1");
        // A bad setting fails init with its name.
        let bad = wandb::init(Settings::new().mode(Mode::Offline).run_id("a b"));
        assert!(matches!(
            bad,
            Err(Error::InvalidSetting { name: "run_id", .. })
        ));
        let bad = wandb::init(
            Settings::new()
                .mode(Mode::Offline)
                .dir(&scratch)
                .transport(Transport::Launch("/nonexistent/wandb-core".into())),
        );
        assert!(matches!(bad, Err(Error::Service(_))), "{bad:?}");
        let bad = wandb::init(
            Settings::new()
                .mode(Mode::Offline)
                .dir(&scratch)
                .transport(Transport::Attach("garbage".into())),
        );
        assert!(matches!(bad, Err(Error::Service(_))), "{bad:?}");
    });
}

#[test]
fn a_dropped_run_is_finished_and_disabled_runs_do_nothing() {
    testkit::within(testkit::process::LIMIT, || {
        let scratch = testkit::scratch_dir("sdk-drop");
        let dir = {
            let run = wandb::init(offline(&scratch, Transport::InProcess)).unwrap();
            run.log([("x", 1)]).unwrap();
            run.dir().unwrap().to_path_buf()
        };
        let v = view(&log_of(&dir));
        assert_eq!(v.exit_code, Some(0));
        assert_eq!(v.rows.len(), 1);

        let panicked = std::thread::spawn({
            let scratch = scratch.clone();
            move || {
                let run = wandb::init(offline(&scratch, Transport::InProcess)).unwrap();
                let dir = run.dir().unwrap().to_path_buf();
                std::fs::write(scratch.join("panicked-dir"), dir.to_str().unwrap()).unwrap();
                run.log([("y", 1)]).unwrap();
                panic!("training failed");
            }
        })
        .join();
        assert!(panicked.is_err());
        let dir = std::fs::read_to_string(scratch.join("panicked-dir")).unwrap();
        assert_eq!(view(&log_of(Path::new(&dir))).exit_code, Some(1));

        let disabled = wandb::init(Settings::new().mode(Mode::Disabled).dir(&scratch)).unwrap();
        disabled.log([("x", 1)]).unwrap();
        assert!(disabled.dir().is_none());
        disabled.finish(0).unwrap();
    });
}

#[test]
fn a_service_that_dies_mid_run_is_reported() {
    testkit::within(testkit::process::LIMIT, || {
        let scratch = testkit::scratch_dir("sdk-dies");
        let mut service = common::start_service(&scratch);
        let run = wandb::init(
            offline(&scratch, Transport::Attach(service.token.clone()))
                .queue_capacity(1000usize)
                .queue_policy(QueuePolicy::Drop),
        )
        .unwrap();
        for i in 0..200 {
            run.log([("x", i)]).unwrap();
        }
        // Freeze the service: the socket and then the queue fill up, and the
        // rest is dropped (counted); then kill it.
        let pid = service.child.id() as i32;
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        let mut accepted = 200u64;
        for i in 0..50_000 {
            if run.log([("x", i)]).is_ok() {
                accepted += 1;
            }
        }
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        common::raw::wait_exit(&mut service.child, Duration::from_secs(10));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let err = loop {
            match run.log([("after", 1)]) {
                Err(e) => break e,
                Ok(()) => {
                    assert!(std::time::Instant::now() < deadline, "log keeps succeeding");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        assert!(matches!(err, Error::Disconnected(_)), "{err}");
        let Err(Error::Incomplete { report, reason }) = run.finish(0) else {
            panic!("finish must report the loss");
        };
        let s = report.stats;
        assert!(s.dropped > 0, "{s:?}");
        assert!(s.undelivered > 0, "{s:?} ({reason})");
        assert!(
            s.sent + s.dropped + s.undelivered >= accepted,
            "{s:?} vs {accepted}"
        );
    });
}

#[test]
fn attach_to_a_running_service_and_online_against_the_standin() {
    testkit::within(testkit::process::LIMIT, || {
        // Attach: a service started by someone else is not torn down by us.
        let scratch = testkit::scratch_dir("sdk-attach");
        let mut service = common::start_service(&scratch);
        let run = wandb::init(offline(&scratch, Transport::Attach(service.token.clone()))).unwrap();
        run.log([("x", 1)]).unwrap();
        let report = run.finish(0).unwrap();
        assert_eq!(view(&log_of(&report.dir.unwrap())).rows.len(), 1);
        assert!(service.child.try_wait().unwrap().is_none(), "still serving");
        drop(service);

        // Online, in-process, against the backend stand-in.
        const KEY: &str = "rustsdk-0123456789012345678901234567890123";
        let standin = wandb_standin::StandIn::spawn(
            wandb_standin::Config {
                api_key: Some(KEY.into()),
                ..Default::default()
            },
            0,
            wandb_standin::Store::open(None).unwrap(),
        )
        .unwrap();
        let run = wandb::init(
            Settings::new()
                .mode(Mode::Online)
                .api_key(KEY)
                .base_url(standin.base_url.clone())
                .project("rust-online")
                .run_id("rsonline1")
                .dir(&scratch)
                .transport(Transport::InProcess)
                .disable_stats(true)
                .config(&serde_json::json!({"lr": 0.1}))
                .unwrap(),
        )
        .unwrap();
        for i in 0..50 {
            run.log(wandb::row! {"loss" => 1.0 / f64::from(i + 1), "i" => i})
                .unwrap();
        }
        run.log(wandb::row! {"img" => Image::from_gray8(2, 2, &[0, 50, 100, 150]).unwrap()})
            .unwrap();
        run.summary_set("best", 1).unwrap();
        run.finish(0).unwrap();
        let key = wandb_standin::RunKey::new("standin", "rust-online", "rsonline1");
        let history = standin.store.history(&key);
        assert_eq!(history.len(), 51, "{history:?}");
        assert_eq!(history[49]["i"], 49);
        let row = standin
            .store
            .run(&key)
            .expect("the run exists on the backend");
        let _ = row;
        let files: Vec<String> = standin.store.file_paths(&key).into_iter().collect();
        assert!(
            files.iter().any(|f| f.starts_with("media/images/img_")),
            "{files:?}"
        );
        assert!(files.iter().any(|f| f == "wandb-summary.json"), "{files:?}");
        let summary = String::from_utf8(
            standin
                .store
                .file_content(&key, "wandb-summary.json")
                .unwrap(),
        )
        .unwrap();
        assert!(summary.contains("\"best\":1"), "{summary}");
    });
}

/// Shared mode from Rust: three writers of one run, each through another
/// service (ours in-process, our binary, W&B's wandb-core), logging at
/// once; the server holds every writer's rows, numbered by arrival, and
/// the primary's exit finishes the run, once.
#[test]
fn writers_of_a_shared_run_from_rust_on_every_service() {
    testkit::within(testkit::process::LIMIT, || {
        const KEY: &str = "rustshared-0123456789012345678901234567890";
        let standin = common::standin(KEY, &[]);
        let scratch = testkit::scratch_dir("sdk-shared");
        let writers = [
            ("rank-0", Transport::InProcess),
            ("rank-1", Transport::Launch(our_core())),
            (
                "rank-2",
                Transport::Launch(testkit::reference_core().to_path_buf()),
            ),
        ];
        let rows = 40;
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            let mut handles = Vec::new();
            let mut done_rx = Some(done_rx);
            for (rank, (label, transport)) in writers.iter().enumerate() {
                let primary = rank == 0;
                let others_done = if primary { done_rx.take() } else { None };
                let (standin, scratch) = (&standin, &scratch);
                handles.push(s.spawn(move || {
                    let run = wandb::init(
                        Settings::new()
                            .api_key(KEY)
                            .base_url(standin.base_url.clone())
                            .project("rust-shared")
                            .run_id("rsshared1")
                            .dir(scratch.join(label))
                            .transport(transport.clone())
                            .stats_sampling_interval(0.5)
                            .shared(*label, primary),
                    )
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                    let field = format!("who_{label}");
                    for i in 0..rows {
                        run.log(
                            wandb::row! {field.as_str() => i, "loss" => 1.0 / f64::from(i + 1)},
                        )
                        .unwrap();
                    }
                    run.summary_set(format!("s_{label}"), 1).unwrap();
                    std::thread::sleep(Duration::from_millis(1200));
                    if let Some(rx) = others_done {
                        rx.recv_timeout(Duration::from_secs(200))
                            .expect("the other writers finish");
                        run.finish(3).unwrap();
                    } else {
                        run.finish(0).unwrap();
                    }
                }));
            }
            let primary = handles.remove(0);
            for h in handles {
                h.join().expect("a worker");
            }
            done_tx.send(()).unwrap();
            primary.join().expect("the primary");
        });
        let key = wandb_standin::RunKey::new("standin", "rust-shared", "rsshared1");
        let history = standin.store.history(&key);
        assert_eq!(history.len(), 3 * rows as usize);
        let steps: Vec<i64> = history
            .iter()
            .map(|r| r["_step"].as_i64().unwrap())
            .collect();
        assert_eq!(steps, (0..3 * i64::from(rows)).collect::<Vec<_>>());
        for (label, _) in &writers {
            let field = format!("who_{label}");
            let mine: Vec<i64> = history
                .iter()
                .filter_map(|r| r.get(&field).and_then(serde_json::Value::as_i64))
                .collect();
            assert_eq!(mine, (0..i64::from(rows)).collect::<Vec<_>>(), "{label}");
        }
        let per_writer = standin.store.lines_by_client(&key, "wandb-history.jsonl");
        assert_eq!(
            per_writer.len(),
            3,
            "one client ID per writer: {per_writer:?}"
        );
        let run = standin.store.run(&key).expect("the run");
        assert_eq!(
            (run.complete, run.finishes, run.exitcode),
            (true, 1, Some(3))
        );
        for (label, _) in &writers {
            assert_eq!(run.summary[format!("s_{label}")], 1, "{}", run.summary);
            let suffix = format!("/l:{label}");
            assert!(
                standin.store.events(&key).iter().any(|e| e
                    .as_object()
                    .unwrap()
                    .keys()
                    .any(|k| k.ends_with(&suffix))),
                "{label}'s labelled system metrics"
            );
        }
        let files: BTreeMap<String, u64> = standin
            .store
            .files(&key)
            .into_iter()
            .map(|f| (f.path, f.puts))
            .collect();
        assert_eq!(files.get("wandb-metadata.json"), Some(&1), "{files:?}");
    });
}
