//! `sync_tensorboard=True` through the real SDK and tensorboardX, on W&B's
//! wandb-core and on ours: the same history rows (keys prefixed by log
//! directory, `global_step`, values, histograms rebinned to 512 bins,
//! images, PR curves as tables), the same tfevents files saved in the run;
//! online, the stand-in receives the rows and the files. Beyond W&B's
//! service: rows and tfevents files arrive while the run runs.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{install_ours, python_script, standin};
use serde_json::{Value, json};
use testkit::process::CommandExt;
use testkit::{reference_python, scratch_dir};
use wandb_proto::pb;
use wandb_proto::pb::record::RecordType;
use wandb_standin::RunKey;

const KEY: &str = "tensorboardkeytensorboardkeytensorboard01";

/// Two log directories (train/ and eval/: the root is guessed as logs/),
/// scalars, a histogram, images and a PR curve, written with tensorboardX.
const SCRIPT: &str = r#"
import os, sys, time
import numpy as np
import wandb
from tensorboardX import SummaryWriter
mode = os.environ.get("TB_MODE", "offline")
run = wandb.init(project="tb", id=os.environ["TB_RUN"], mode=mode, sync_tensorboard=True,
                 settings=wandb.Settings(x_file_stream_transmit_interval=0.5))
train = SummaryWriter("logs/train")
evals = SummaryWriter("logs/eval")
for step in range(10):
    train.add_scalar("loss", 1.0 / (step + 1), step)
    train.add_scalar("acc", step / 10, step)
for step in range(5):
    evals.add_scalar("loss", 2.0 - step * 0.2, step)
rng = np.random.RandomState(0)
weights = rng.randn(1000)
train.add_histogram("weights", weights, 0)
train.add_histogram("weights", weights * 2, 5)
img = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
train.add_image("img", img, 0, dataformats="HWC")
train.add_image("img", 255 - img, 9, dataformats="HWC")
labels = rng.randint(0, 2, 50)
preds = rng.rand(50)
train.add_pr_curve("pr", labels, preds, 9)
train.flush()
evals.flush()
if os.environ.get("TB_MARK"):
    # Live: the test looks at what arrived before the run ends.
    open(os.environ["TB_MARK"], "w").close()
    deadline = time.time() + 120
    while not os.path.exists(os.environ["TB_GO"]):
        if time.time() > deadline:
            sys.exit("timed out waiting for TB_GO")
        time.sleep(0.05)
train.close()
evals.close()
run.finish()
"#;

fn run_dir(work: &Path) -> PathBuf {
    let wandb = work.join("wandb");
    std::fs::read_dir(&wandb)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            (name.starts_with("offline-run-") || name.starts_with("run-")) && p.is_dir()
        })
        .expect("a run directory")
}

/// A history row as a JSON object of its leaves (nested keys joined by
/// `.`), without what differs from run to run.
fn row_of(h: &pb::HistoryRecord) -> BTreeMap<String, Value> {
    let mut row = BTreeMap::new();
    for item in &h.item {
        let key = if item.nested_key.is_empty() {
            item.key.clone()
        } else {
            item.nested_key.join(".")
        };
        if matches!(key.as_str(), "_runtime" | "_timestamp" | "_step") {
            continue;
        }
        let v: Value = serde_json::from_str(&item.value_json)
            .unwrap_or_else(|_| Value::String(item.value_json.clone()));
        row.insert(key, v);
    }
    row
}

/// The parts of a history value that must match: floats compared as f32
/// (wandb-core writes TensorBoard's float32 values with float32 digits),
/// random file names and hashes left out.
fn comparable(key: &str, v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64().map(|f| f as f32)),
        Value::Array(items) => Value::Array(items.iter().map(|x| comparable(key, x)).collect()),
        Value::String(s) if key.ends_with(".filenames") || key.ends_with(".path") => {
            json!(
                Path::new(s)
                    .parent()
                    .map(|p| p.to_string_lossy().into_owned())
            )
        }
        Value::String(_) if key.ends_with(".sha256") => json!("<hash>"),
        other => other.clone(),
    }
}

struct TbRun {
    rows: Vec<BTreeMap<String, Value>>,
    steps: Vec<i64>,
    /// Run paths of the tfevents files saved (`files` records).
    saved: Vec<String>,
    dir: PathBuf,
}

fn tb_run(log: &Path) -> TbRun {
    let mut rows = Vec::new();
    let mut steps = Vec::new();
    let mut saved = Vec::new();
    for r in common::records(log) {
        match r.record_type {
            Some(RecordType::History(h)) => {
                let step = h
                    .item
                    .iter()
                    .find(|i| i.key == "_step" || i.nested_key == ["_step"]);
                steps.push(step.map_or(-1, |i| i.value_json.parse().unwrap()));
                rows.push(
                    row_of(&h)
                        .into_iter()
                        .map(|(k, v)| {
                            let c = comparable(&k, &v);
                            (k, c)
                        })
                        .collect(),
                );
            }
            Some(RecordType::Files(f)) => {
                saved.extend(
                    f.files
                        .iter()
                        .filter(|i| i.path.contains("tfevents"))
                        .map(|i| i.path.clone()),
                );
            }
            _ => {}
        }
    }
    TbRun {
        rows,
        steps,
        saved,
        dir: log.parent().unwrap().to_path_buf(),
    }
}

/// Rows of one log directory (by key prefix), in order: the two
/// directories are read concurrently, so their rows interleave by timing.
fn rows_with(run: &TbRun, prefix: &str) -> Vec<BTreeMap<String, Value>> {
    run.rows
        .iter()
        .filter(|r| r.keys().any(|k| k.starts_with(prefix)))
        .cloned()
        .collect()
}

fn script(python: &Path, work: &Path, run_id: &str) -> Command {
    let mut cmd = python_script(python, SCRIPT, work);
    cmd.env("WANDB_DISABLE_GIT", "true").env("TB_RUN", run_id);
    cmd
}

#[test]
fn offline_tensorboard_logs_become_the_same_rows_as_with_wandb_core() {
    let mut seen = Vec::new();
    for (who, python) in [("wandb-core", reference_python()), ("ours", install_ours())] {
        let work = scratch_dir(&format!("tb-offline-{who}"));
        let out = script(python, &work, "tboff1").output_limited().unwrap();
        let text = common::text(&out);
        assert!(out.status.success(), "{who}: {text}");
        let dir = run_dir(&work);
        let run = tb_run(&common::log_in(&dir));
        // `_step` is the run's own, 0.. over both directories.
        assert_eq!(
            run.steps,
            (0..run.rows.len() as i64).collect::<Vec<_>>(),
            "{who}"
        );
        // The tfevents files are linked into the run, under their
        // directory relative to the guessed root.
        assert_eq!(run.saved.len(), 2, "{who}: {:?}", run.saved);
        for p in &run.saved {
            assert!(
                p.starts_with("train/events.out.tfevents.")
                    || p.starts_with("eval/events.out.tfevents."),
                "{who}: {p}"
            );
            let link = run.dir.join("files").join(p);
            assert!(
                std::fs::metadata(&link).is_ok_and(|m| m.len() > 0),
                "{who}: {link:?}"
            );
        }
        // Media files named by the rows exist.
        for r in &run.rows {
            if let Some(Value::String(t)) = r.get("train/img._type") {
                assert_eq!(t, "images/separated", "{who}");
            }
        }
        let images = std::fs::read_dir(run.dir.join("files/media/images"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(images, 2, "{who}: one PNG per logged image");
        let tables = std::fs::read_dir(run.dir.join("files/media/table"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(tables, 1, "{who}: the PR curve's table");
        seen.push((
            who,
            rows_with(&run, "train/"),
            rows_with(&run, "eval/"),
            run.rows.len(),
        ));
    }
    let (_, ref_train, ref_eval, ref_n) = &seen[0];
    let (_, our_train, our_eval, our_n) = &seen[1];
    assert_eq!(our_n, ref_n, "rows");
    assert_eq!(
        our_eval, ref_eval,
        "eval/ rows: ours (left), wandb-core's (right)"
    );
    assert_eq!(our_train.len(), ref_train.len(), "train/ rows");
    for (i, (o, r)) in our_train.iter().zip(ref_train).enumerate() {
        assert_eq!(o, r, "train/ row {i}: ours (left), wandb-core's (right)");
    }
    // What the rows hold, spelled out once.
    assert_eq!(ref_eval.len(), 5);
    assert_eq!(ref_eval[1]["eval/loss"], json!(1.8f32));
    assert_eq!(ref_eval[1]["global_step"], json!(1.0f32));
    let hist = ref_train
        .iter()
        .find(|r| r.contains_key("train/weights.bins"))
        .expect("a histogram row");
    assert_eq!(hist["train/weights.bins"].as_array().unwrap().len(), 513);
    assert_eq!(hist["train/weights.values"].as_array().unwrap().len(), 512);
    let pr = ref_train
        .iter()
        .find(|r| r.contains_key("train/pr._type"))
        .expect("a PR curve row");
    assert_eq!(pr["train/pr._type"], json!("table-file"));
    assert!(
        pr.contains_key("train/img._type"),
        "merged with the image of step 9"
    );
}

fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn online_tensorboard_rows_and_files_reach_the_backend_while_the_run_runs() {
    let mut counts = Vec::new();
    for (who, python) in [("wandb-core", reference_python()), ("ours", install_ours())] {
        let s = standin(KEY, &[]);
        let work = scratch_dir(&format!("tb-online-{who}"));
        let mark = work.join("mark");
        let go = work.join("go");
        let mut cmd = script(python, &work, "tbon1");
        cmd.env("TB_MODE", "online")
            .env("WANDB_BASE_URL", &s.base_url)
            .env("WANDB_API_KEY", KEY)
            .env("TB_MARK", &mark)
            .env("TB_GO", &go)
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                std::fs::File::create(work.join("out.txt")).unwrap(),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(work.join("err.txt")).unwrap(),
            ));
        // Killed if the test fails first.
        let mut child = common::raw::ServiceChild(cmd.spawn().unwrap());
        wait_for(
            &format!("{who}: the script's logs written"),
            Duration::from_secs(120),
            || mark.exists(),
        );
        let key = RunKey::new("standin", "tb", "tbon1");
        if who == "ours" {
            // Live: rows (all but each directory's last, still open) and
            // the tfevents files reach the backend before the run ends.
            wait_for("rows while the run runs", Duration::from_secs(30), || {
                s.store.history(&key).len() >= 10
            });
            wait_for(
                "tfevents files while the run runs",
                Duration::from_secs(30),
                || {
                    s.store
                        .file_paths(&key)
                        .into_iter()
                        .filter(|p| p.contains("tfevents"))
                        .count()
                        == 2
                },
            );
        }
        std::fs::write(&go, "").unwrap();
        let status = common::raw::wait_exit(&mut child.0, testkit::process::LIMIT);
        let said = |f: &str| std::fs::read_to_string(work.join(f)).unwrap_or_default();
        assert!(
            status.success(),
            "{who}: {status:?}\n{}{}",
            said("out.txt"),
            said("err.txt")
        );
        let history = s.store.history(&key);
        let files: Vec<String> = s.store.file_paths(&key).into_iter().collect();
        assert!(
            files.iter().filter(|p| p.contains("tfevents")).count() == 2,
            "{who}: {files:?}"
        );
        assert!(
            files.iter().any(|p| p.starts_with("media/images/")),
            "{who}: {files:?}"
        );
        let eval: Vec<f64> = history
            .iter()
            .filter_map(|r| r.get("eval/loss").and_then(Value::as_f64))
            .collect();
        assert_eq!(eval.len(), 5, "{who}");
        assert!((eval[4] - 1.2).abs() < 1e-6, "{who}: {eval:?}");
        assert!(s.store.run(&key).is_some_and(|r| r.complete), "{who}");
        counts.push(history.len());
    }
    assert_eq!(
        counts[1], counts[0],
        "rows on the backend: ours, wandb-core's"
    );
}

/// One log directory and no root: no key prefix, the tfevents file saved
/// under its path relative to the working directory (wandb-core waits
/// 10 s for a second directory first; ours stops waiting at the exit).
#[test]
fn a_single_log_directory_gets_no_prefix_as_with_wandb_core() {
    let script = r#"
import wandb
from tensorboardX import SummaryWriter
run = wandb.init(project="tb", mode="offline", sync_tensorboard=True)
w = SummaryWriter("runs/exp1")
for step in range(3):
    w.add_scalar("loss", 1.0 / (step + 1), step)
w.add_scalar("loss", 0.0, 3)
w.close()
run.finish()
"#;
    let mut seen = Vec::new();
    for (who, python) in [("wandb-core", reference_python()), ("ours", install_ours())] {
        let work = scratch_dir(&format!("tb-single-{who}"));
        let out = python_script(python, script, &work)
            .env("WANDB_DISABLE_GIT", "true")
            .output_limited()
            .unwrap();
        assert!(out.status.success(), "{who}: {}", common::text(&out));
        let run = tb_run(&common::log_in(&run_dir(&work)));
        assert_eq!(run.saved.len(), 1, "{who}: {:?}", run.saved);
        assert!(
            run.saved[0].starts_with("runs/exp1/events.out.tfevents."),
            "{who}: {:?}",
            run.saved
        );
        seen.push(run.rows);
    }
    assert_eq!(seen[1], seen[0], "ours (left), wandb-core's (right)");
    let losses: Vec<&Value> = seen[0].iter().map(|r| &r["loss"]).collect();
    assert_eq!(
        losses,
        [
            &json!(1.0f32),
            &json!(0.5f32),
            &json!(1.0f32 / 3.0),
            &json!(0.0f32)
        ]
    );
}

/// `wandb-core sync --tensorboard`: logs written without W&B imported as
/// runs (one per log directory, or one with prefixes) and sent; importing
/// again adds nothing twice.
#[test]
fn sync_tensorboard_imports_logs_without_python_and_resumes() {
    let writer = r#"
import numpy as np
from tensorboardX import SummaryWriter
train = SummaryWriter("logs/train")
evals = SummaryWriter("logs/eval")
for step in range(10):
    train.add_scalar("loss", 1.0 / (step + 1), step)
    train.add_scalar("acc", step / 10, step)
train.add_histogram("weights", np.random.RandomState(0).randn(500), 10)
for step in range(5):
    evals.add_scalar("loss", 2.0 - step * 0.2, step)
train.close()
evals.close()
"#;
    let work = scratch_dir("tb-import");
    let out = python_script(reference_python(), writer, &work)
        .output_limited()
        .unwrap();
    assert!(out.status.success(), "{}", common::text(&out));
    let s = standin(KEY, &[]);
    let sync = |args: &[&str]| {
        let out = Command::new(common::ours())
            .args(["sync", "--tensorboard", "--project", "tbimport"])
            .args(args)
            .current_dir(&work)
            .env_remove("WANDB_SERVICE")
            .env("WANDB_BASE_URL", &s.base_url)
            .env("WANDB_API_KEY", KEY)
            .env("HOME", &work)
            .output_limited()
            .unwrap();
        let text = common::text(&out);
        assert!(out.status.success(), "{text}");
        text
    };
    let runs_of = |s: &wandb_standin::StandIn| {
        s.store
            .runs()
            .into_iter()
            .filter(|r| r.project == "tbimport")
            .map(|r| RunKey::new(&r.entity, &r.project, &r.name))
            .collect::<Vec<_>>()
    };

    // One run per log directory: unprefixed keys.
    let said = sync(&["logs"]);
    let runs = runs_of(&s);
    assert_eq!(runs.len(), 2, "{said}");
    let mut by_rows: BTreeMap<usize, RunKey> = BTreeMap::new();
    for key in &runs {
        let history = s.store.history(key);
        assert!(s.store.run(key).is_some_and(|r| r.complete), "{said}");
        by_rows.insert(history.len(), key.clone());
    }
    let train = &by_rows[&11];
    let eval = &by_rows[&5];
    let history = s.store.history(train);
    let losses: Vec<f64> = history.iter().filter_map(|r| r["loss"].as_f64()).collect();
    assert_eq!(losses.len(), 10);
    assert_eq!(history[10]["global_step"], json!(10));
    assert_eq!(history[10]["weights"]["_type"], json!("histogram"));
    let eval_steps: Vec<i64> = s
        .store
        .history(eval)
        .iter()
        .map(|r| r["global_step"].as_i64().unwrap())
        .collect();
    assert_eq!(eval_steps, [0, 1, 2, 3, 4]);
    assert!(
        s.store
            .file_paths(train)
            .into_iter()
            .any(|p| p.starts_with("events.out.tfevents.")),
        "the tfevents file is in the run"
    );

    // Again: the same runs, nothing sent twice.
    let said = sync(&["logs"]);
    assert_eq!(runs_of(&s).len(), 2, "{said}");
    assert_eq!(s.store.history(train).len(), 11, "{said}");
    assert_eq!(s.store.history(eval).len(), 5, "{said}");

    // One run for both, keys prefixed by directory; twice, no duplicates.
    for _ in 0..2 {
        let said = sync(&["logs", "--one-run", "--id", "tbone"]);
        let key = RunKey::new(wandb_standin::DEFAULT_ENTITY, "tbimport", "tbone");
        let history = s.store.history(&key);
        assert_eq!(history.len(), 16, "{said}");
        let train_rows = history
            .iter()
            .filter(|r| r.get("train/loss").is_some())
            .count();
        let eval_rows = history
            .iter()
            .filter(|r| r.get("eval/loss").is_some())
            .count();
        assert_eq!((train_rows, eval_rows), (10, 5), "{said}");
    }
}
