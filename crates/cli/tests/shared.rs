//! Shared mode: many processes writing one run (`mode="shared"`), as
//! distributed training does. Each scenario runs the real SDK's writers
//! concurrently, through W&B's wandb-core and through ours (each writer with
//! its own service, as separate nodes run), against a stand-in that merges
//! a shared run's writers as W&B's backend does; both must leave the same
//! run there: every writer's rows, labelled console lines and system
//! metrics, run-level files from the primary only, and the run finished
//! once, by the primary, with its exit code.
//!
//! Beyond the reference: writers sharing one service (wandb-core refuses a
//! second writer of a run: "run ID is in use"), a secondary attaching late,
//! media and artifacts from every writer, and 32 writers at once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::raw::{Client, ServiceChild, item, record, row, run_record, start, wait_exit};
use common::{install_ours, standin, start_service, walk};
use serde_json::Value;
use testkit::{reference_python, scratch_dir};
use wandb_proto::pb;
use wandb_proto::pb::record::RecordType;
use wandb_proto::pb::server_request::ServerRequestType;
use wandb_proto::pb::server_response::ServerResponseType;
use wandb_standin::{RunKey, StandIn};

const KEY: &str = "sharedkeysharedkeysharedkeysharedkey0123";
const PROJECT: &str = "shared";
/// The longest any writer may take.
const WRITER_LIMIT: Duration = Duration::from_secs(240);

/// One writer of a shared run, configured through its environment:
/// `WRITER_LABEL`, `WRITER_PRIMARY` (also the writer that updates the
/// finish state), `WRITER_ROWS`, `WRITER_EXIT`; optional `WRITER_MEDIA`
/// (images and artifacts), `WRITER_CRASH` (SIGKILL itself before
/// finishing), and marker files: `MARK_HALF`/`MARK_DONE` are created when
/// half / all of the rows are logged, `WAIT_HALF`/`WAIT_END` are waited for
/// there.
const WRITER: &str = r#"
import os, sys, time, wandb
env = os.environ
label, primary, rows = env["WRITER_LABEL"], env["WRITER_PRIMARY"] == "1", int(env["WRITER_ROWS"])

def mark(name):
    if env.get(name):
        open(env[name], "w").close()

def wait_for(name):
    if env.get(name):
        deadline = time.time() + 200
        while not os.path.exists(env[name]):
            if time.time() > deadline:
                sys.exit(f"{label}: timed out waiting for {env[name]}")
            time.sleep(0.02)

run = wandb.init(project="shared", id=env["WRITER_RUN"], mode="shared",
                 config={f"cfg_{label}": 1},
                 settings=wandb.Settings(x_label=label, x_primary=primary,
                                         x_update_finish_state=primary,
                                         x_stats_sampling_interval=0.5,
                                         x_file_stream_transmit_interval=1.0))
try:
    run.step
    print("step: no error", flush=True)
except Exception as e:
    print(f"step: {type(e).__name__}: {e}", flush=True)
for i in range(rows):
    if i == rows // 2:
        mark("MARK_HALF")
        wait_for("WAIT_HALF")
    run.log({f"who_{label}": i, "loss": 1.0 / (i + 1)})
    if i % 10 == 0:
        print(f"line {i} from {label}", flush=True)
    time.sleep(0.01)
if env.get("WRITER_MEDIA"):
    import numpy as np
    shade = sum(map(ord, label)) % 200
    for i in range(3):
        run.log({"img": wandb.Image(np.full((8, 8, 3), shade + i, dtype=np.uint8))})
    path = f"data-{label}.txt"
    with open(path, "w") as f:
        f.write(f"from {label}\n")
    own = wandb.Artifact(f"data-{label}", type="dataset")
    own.add_file(path)
    run.log_artifact(own)
    common = wandb.Artifact("shared-data", type="dataset")
    common.add_file(path, name="part.txt")
    run.log_artifact(common)
time.sleep(1.2)  # the system monitor samples every 0.5 s
mark("MARK_DONE")
if env.get("WRITER_CRASH"):
    time.sleep(3)  # its rows reach the server (one file stream interval) before it dies
    os.kill(os.getpid(), 9)
wait_for("WAIT_END")
run.summary[f"s_{label}"] = 1
run.finish(exit_code=int(env.get("WRITER_EXIT", "0")))
"#;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Service {
    Reference,
    Ours,
}

impl Service {
    fn python(self) -> &'static Path {
        match self {
            Service::Reference => reference_python(),
            Service::Ours => install_ours(),
        }
    }
}

/// Writer processes a test started: killed when dropped, so a failing test
/// leaves nothing running (each writer's service follows its parent out).
struct Writers {
    who: Service,
    base_url: String,
    run_id: String,
    children: Vec<(String, ServiceChild, PathBuf)>,
}

impl Writers {
    /// Writers of shared run `run_id` through `who`'s service.
    fn new(who: Service, standin: &StandIn, run_id: &str) -> Self {
        Writers {
            who,
            base_url: standin.base_url.clone(),
            run_id: run_id.into(),
            children: Vec::new(),
        }
    }

    /// Starts writer `label` in `work` (its output in `<work>/<label>.out`).
    /// `service`: a shared service's `WANDB_SERVICE` token; otherwise the
    /// SDK starts its own, as on a node of its own.
    fn spawn(
        &mut self,
        label: &str,
        primary: bool,
        work: &Path,
        service: Option<&str>,
        env: &[(&str, String)],
    ) {
        std::fs::create_dir_all(work).unwrap();
        let out_path = work.join(format!("{label}.out"));
        let out = std::fs::File::create(&out_path).unwrap();
        let mut cmd = Command::new(self.who.python());
        cmd.args(["-c", WRITER])
            .current_dir(work)
            .env_remove("WANDB_SERVICE")
            .env("WANDB_BASE_URL", &self.base_url)
            .env("WANDB_API_KEY", KEY)
            .env("WANDB_ERROR_REPORTING", "false")
            .env("WANDB_DISABLE_GIT", "true")
            .env("HOME", work)
            .env("WANDB_DIR", work)
            .env("WANDB_CONFIG_DIR", work.join(".config"))
            .env("WRITER_RUN", &self.run_id)
            .env("WRITER_LABEL", label)
            .env("WRITER_PRIMARY", if primary { "1" } else { "0" })
            .env("WRITER_EXIT", if primary { "3" } else { "0" })
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        if let Some(token) = service {
            cmd.env("WANDB_SERVICE", token);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.children.push((
            label.to_string(),
            ServiceChild(cmd.spawn().unwrap()),
            out_path,
        ));
    }

    /// Waits for writer `label` to exit (killed past the deadline); returns
    /// its exit status and output.
    fn wait(&mut self, label: &str) -> (std::process::ExitStatus, String) {
        let (_, child, out) = self
            .children
            .iter_mut()
            .find(|(l, _, _)| l == label)
            .expect("a writer of that label");
        let status = wait_exit(child, WRITER_LIMIT);
        (status, std::fs::read_to_string(out).unwrap_or_default())
    }

    /// Waits for every writer; each must have exited cleanly (the
    /// primary's `finish(exit_code=3)` is the run's, not its process's).
    fn wait_all(&mut self, who: Service) -> BTreeMap<String, String> {
        let labels: Vec<String> = self.children.iter().map(|(l, _, _)| l.clone()).collect();
        labels
            .into_iter()
            .map(|label| {
                let (status, out) = self.wait(&label);
                assert!(status.success(), "{who:?} writer {label}: {status}\n{out}");
                (label, out)
            })
            .collect()
    }
}

fn wait_for_file(path: &Path, what: &str) {
    wait_until(what, Duration::from_secs(120), || path.exists());
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_key(run_id: &str) -> RunKey {
    RunKey::new(wandb_standin::DEFAULT_ENTITY, PROJECT, run_id)
}

/// The values of `who_<label>` in the stored history, in stored order.
fn rows_of(standin: &StandIn, key: &RunKey, label: &str) -> Vec<i64> {
    let field = format!("who_{label}");
    standin
        .store
        .history(key)
        .iter()
        .filter_map(|r| r.get(&field).and_then(Value::as_i64))
        .collect()
}

/// What must hold of a shared run once all its writers are done: every
/// writer's rows (numbered by the server), labelled console lines and
/// system metrics, summary and config keys; the primary's run-level files,
/// once; the run finished once, with the primary's exit code.
fn check_shared_run(who: Service, standin: &StandIn, run_id: &str, rows: &BTreeMap<&str, i64>) {
    let key = run_key(run_id);
    let store = &standin.store;
    let history = store.history(&key);
    let total: i64 = rows.values().sum();
    assert_eq!(history.len() as i64, total, "{who:?}: every writer's rows");
    let steps: Vec<i64> = history
        .iter()
        .map(|r| r["_step"].as_i64().unwrap())
        .collect();
    assert_eq!(
        steps,
        (0..total).collect::<Vec<_>>(),
        "{who:?}: server steps"
    );
    for (label, n) in rows {
        assert_eq!(
            rows_of(standin, &key, label),
            (0..*n).collect::<Vec<_>>(),
            "{who:?}: {label}'s rows, in its order"
        );
    }
    let per_writer: Vec<i64> = store
        .lines_by_client(&key, "wandb-history.jsonl")
        .into_values()
        .collect();
    assert_eq!(
        per_writer.iter().collect::<BTreeSet<_>>(),
        rows.values().collect::<BTreeSet<_>>(),
        "{who:?}: rows per writer (client ID)"
    );

    let console = store.console(&key);
    let events = store.events(&key);
    for label in rows.keys() {
        assert!(
            console
                .iter()
                .any(|l| l.ends_with(&format!(" [{label}] line 0 from {label}"))),
            "{who:?}: {label}'s labelled console lines: {console:?}"
        );
        let suffix = format!("/l:{label}");
        assert!(
            events
                .iter()
                .any(|e| e.as_object().unwrap().keys().any(|k| k.ends_with(&suffix))),
            "{who:?}: {label}'s labelled system metrics"
        );
    }

    let run = store.run(&key).expect("the run");
    assert_eq!(
        (run.complete, run.finishes, run.exitcode),
        (true, 1, Some(3)),
        "{who:?}: finished once, by the primary, with its exit code"
    );
    for label in rows.keys() {
        assert_eq!(run.summary[format!("s_{label}")], 1, "{who:?}: summary");
        assert!(
            run.config.get(format!("cfg_{label}")).is_some(),
            "{who:?}: config {}",
            run.config
        );
    }

    let files: BTreeMap<String, u64> = store
        .files(&key)
        .into_iter()
        .map(|f| (f.path, f.puts))
        .collect();
    for f in [
        "config.yaml",
        "wandb-summary.json",
        "wandb-metadata.json",
        "requirements.txt",
    ] {
        assert_eq!(files.get(f), Some(&1), "{who:?}: {f} once: {files:?}");
    }
    for label in rows.keys() {
        assert!(
            files.contains_key(&format!("output_{label}.log")),
            "{who:?}: {label}'s console file: {files:?}"
        );
    }

    // Every request says the run is shared, naming its writer.
    let requests = store.requests();
    let mut writers = BTreeSet::new();
    for r in &requests {
        let op = r.operation.clone().unwrap_or_default();
        let (id_header, expected) = match op.as_str() {
            "file_stream" => ("x-wandb-async-client-id", true),
            "UpsertBucket" | "CreateRunFiles" => ("x-wandb-client-id", true),
            _ => ("", false),
        };
        if !expected {
            continue;
        }
        assert_eq!(
            r.x_headers
                .get("x-wandb-use-async-filestream")
                .map(String::as_str),
            Some("true"),
            "{who:?}: {op}"
        );
        let id = r.x_headers.get(id_header).cloned();
        assert!(id.is_some(), "{who:?}: {op} without {id_header}");
        writers.insert(id.unwrap());
    }
    assert_eq!(
        writers.len(),
        rows.len(),
        "{who:?}: one client ID per writer"
    );
}

/// A primary and two workers, each on its own "node" (its own service),
/// logging at once.
fn three_nodes(who: Service) -> (StandIn, BTreeMap<String, String>) {
    let standin = standin(KEY, &[]);
    let root = scratch_dir(&format!("shared-nodes-{who:?}"));
    let mut writers = Writers::new(who, &standin, "nodes1");
    for (label, primary) in [("primary", true), ("w1", false), ("w2", false)] {
        writers.spawn(
            label,
            primary,
            &root.join(label),
            None,
            &[("WRITER_ROWS", "40".into())],
        );
    }
    let out = writers.wait_all(who);
    (standin, out)
}

#[test]
fn writers_on_separate_nodes_make_one_run_as_with_wandb_core() {
    let rows: BTreeMap<&str, i64> = [("primary", 40), ("w1", 40), ("w2", 40)].into();
    let mut seen = Vec::new();
    for who in [Service::Reference, Service::Ours] {
        let (standin, out) = three_nodes(who);
        check_shared_run(who, &standin, "nodes1", &rows);
        // `run.step` raises in every writer, with wandb-core's words.
        for (label, text) in &out {
            assert!(
                text.contains(
                    "step: ServerResponseError: Cannot read the W&B step in shared mode."
                ),
                "{who:?} {label}: {text}"
            );
        }
        let key = run_key("nodes1");
        let mut files: Vec<String> = standin
            .store
            .files(&key)
            .into_iter()
            .map(|f| f.path)
            .collect();
        files.sort();
        let event_keys: BTreeSet<String> = standin
            .store
            .events(&key)
            .iter()
            .flat_map(|e| e.as_object().unwrap().keys().cloned().collect::<Vec<_>>())
            .filter(|k| k.starts_with("system.memory_percent"))
            .collect();
        seen.push((files, event_keys));
    }
    assert_eq!(seen[1], seen[0], "ours (right) and wandb-core's (left)");
}

#[test]
fn writers_of_one_node_share_one_service() {
    // wandb-core refuses this ("run ID ... is in use"): one service per
    // writer. Ours takes every writer on one service, all started in one
    // directory at once, as torchrun's ranks are.
    let standin = standin(KEY, &[]);
    let work = scratch_dir("shared-one-service");
    let service = start_service(&work);
    let labels = ["primary", "r1", "r2", "r3"];
    let mut writers = Writers::new(Service::Ours, &standin, "node1");
    for label in labels {
        writers.spawn(
            label,
            label == "primary",
            &work,
            Some(&service.token),
            &[("WRITER_ROWS", "30".into())],
        );
    }
    writers.wait_all(Service::Ours);
    let rows: BTreeMap<&str, i64> = labels.iter().map(|l| (*l, 30)).collect();
    check_shared_run(Service::Ours, &standin, "node1", &rows);
    // Each writer kept its own log, however their run directories fell.
    let logs: Vec<PathBuf> = walk(&work.join("wandb"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wandb"))
        .collect();
    assert_eq!(logs.len(), labels.len(), "{logs:?}");
    let logged: usize = logs.iter().map(|l| common::raw::history_rows(l)).sum();
    assert_eq!(logged, 4 * 30, "{logs:?}");
}

#[test]
fn a_crashed_worker_does_not_finish_the_run() {
    for who in [Service::Reference, Service::Ours] {
        let standin = standin(KEY, &[]);
        let root = scratch_dir(&format!("shared-crash-{who:?}"));
        let end = root.join("end");
        let crashed = root.join("crashed");
        let mut writers = Writers::new(who, &standin, "crash1");
        writers.spawn(
            "primary",
            true,
            &root.join("primary"),
            None,
            &[("WRITER_ROWS", "20".into()), ("WAIT_END", path(&end))],
        );
        writers.spawn(
            "w1",
            false,
            &root.join("w1"),
            None,
            &[
                ("WRITER_ROWS", "20".into()),
                ("WRITER_CRASH", "1".into()),
                ("MARK_DONE", path(&crashed)),
            ],
        );
        let (status, out) = writers.wait("w1");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "{who:?}: {out}"
        );
        let key = run_key("crash1");
        // What the worker logged before it died reaches the run...
        wait_until(
            &format!("{who:?}: the crashed worker's rows"),
            Duration::from_secs(60),
            || rows_of(&standin, &key, "w1").len() == 20,
        );
        // ...and does not end it: its service stops without finishing.
        std::thread::sleep(Duration::from_secs(2));
        let run = standin.store.run(&key).unwrap();
        assert_eq!((run.complete, run.finishes), (false, 0), "{who:?}");

        std::fs::write(&end, "").unwrap();
        let (status, out) = writers.wait("primary");
        assert!(status.success(), "{who:?}: {out}");
        let run = standin.store.run(&key).unwrap();
        assert_eq!(
            (run.complete, run.finishes, run.exitcode),
            (true, 1, Some(3)),
            "{who:?}"
        );
        assert_eq!(
            rows_of(&standin, &key, "primary"),
            (0..20).collect::<Vec<_>>()
        );
        assert_eq!(rows_of(&standin, &key, "w1"), (0..20).collect::<Vec<_>>());
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn a_late_secondary_leaves_the_primarys_first_rows_alone() {
    // W&B's issue tracker reports a primary's earliest rows overwritten
    // once a secondary attaches; here the secondary starts only after the
    // primary logged half its rows, and both go on logging.
    for who in [Service::Reference, Service::Ours] {
        let standin = standin(KEY, &[]);
        let root = scratch_dir(&format!("shared-late-{who:?}"));
        let half = root.join("half");
        let end = root.join("end");
        let mut writers = Writers::new(who, &standin, "late1");
        writers.spawn(
            "primary",
            true,
            &root.join("primary"),
            None,
            &[
                ("WRITER_ROWS", "60".into()),
                ("MARK_HALF", path(&half)),
                ("WAIT_END", path(&end)),
            ],
        );
        wait_for_file(&half, "the primary's first half");
        let key = run_key("late1");
        wait_until(
            &format!("{who:?}: the primary's first rows on the server"),
            Duration::from_secs(60),
            || rows_of(&standin, &key, "primary").len() >= 30,
        );
        writers.spawn(
            "late",
            false,
            &root.join("late"),
            None,
            &[("WRITER_ROWS", "30".into())],
        );
        let (status, out) = writers.wait("late");
        assert!(status.success(), "{who:?}: {out}");
        std::fs::write(&end, "").unwrap();
        let (status, out) = writers.wait("primary");
        assert!(status.success(), "{who:?}: {out}");

        let history = standin.store.history(&key);
        let first: Vec<i64> = history[..30]
            .iter()
            .map(|r| r["who_primary"].as_i64().unwrap_or(-1))
            .collect();
        assert_eq!(
            first,
            (0..30).collect::<Vec<_>>(),
            "{who:?}: the first rows"
        );
        assert_eq!(history.len(), 90, "{who:?}");
        assert_eq!(
            rows_of(&standin, &key, "primary"),
            (0..60).collect::<Vec<_>>()
        );
        assert_eq!(rows_of(&standin, &key, "late"), (0..30).collect::<Vec<_>>());
    }
}

/// Media and artifacts of one writer, as the stand-in stored them: image
/// files uploaded, and the versions of `data-<label>` and `shared-data`.
fn media_and_artifacts(standin: &StandIn, key: &RunKey) -> (usize, BTreeMap<String, usize>) {
    let images = standin
        .store
        .file_paths(key)
        .into_iter()
        .filter(|p| p.starts_with("media/images/"))
        .count();
    let mut versions = BTreeMap::new();
    for name in ["data-primary", "data-w1", "data-w2", "shared-data"] {
        let v = standin
            .store
            .artifact_versions(wandb_standin::DEFAULT_ENTITY, PROJECT, name);
        for version in &v {
            assert_eq!(
                standin.store.artifact_files(version.id).len(),
                1,
                "{name}: its file"
            );
        }
        versions.insert(name.to_string(), v.len());
    }
    (images, versions)
}

#[test]
fn every_writer_logs_media_and_artifacts() {
    let mut seen = Vec::new();
    for who in [Service::Reference, Service::Ours] {
        let standin = standin(KEY, &[]);
        let root = scratch_dir(&format!("shared-media-{who:?}"));
        let mut writers = Writers::new(who, &standin, "media1");
        for (label, primary) in [("primary", true), ("w1", false), ("w2", false)] {
            writers.spawn(
                label,
                primary,
                &root.join(label),
                None,
                &[("WRITER_ROWS", "10".into()), ("WRITER_MEDIA", "1".into())],
            );
        }
        writers.wait_all(who);
        let key = run_key("media1");
        let found = media_and_artifacts(&standin, &key);
        eprintln!("{who:?}: {found:?}");
        // Each image row names a file the server has.
        let files: BTreeSet<String> = standin.store.file_paths(&key).into_iter().collect();
        for r in standin.store.history(&key) {
            if let Some(p) = r
                .get("img")
                .and_then(|i| i.get("path"))
                .and_then(Value::as_str)
            {
                assert!(files.contains(p), "{who:?}: {p} not uploaded");
            }
        }
        seen.push(found);
    }
    let expected = (
        9,
        [
            ("data-primary", 1),
            ("data-w1", 1),
            ("data-w2", 1),
            ("shared-data", 3),
        ]
        .map(|(k, v)| (k.to_string(), v))
        .into(),
    );
    assert_eq!(seen[1], expected, "ours");
    assert_eq!(seen[0], expected, "wandb-core");
}

/// A raw-protocol writer of shared run `run_id`: `rows` rows of ten
/// scalars; the primary finishes the run with exit code 3 after `others`
/// tells it the other writers are done.
/// Where raw writers write: the service's socket, the runs' directory and
/// the backend.
struct RawPlace<'a> {
    socket: &'a Path,
    dir: &'a Path,
    base_url: &'a str,
}

fn raw_writer(
    at: &RawPlace,
    run_id: &str,
    label: &str,
    primary: bool,
    rows: u64,
    others: Option<std::sync::mpsc::Receiver<()>>,
) {
    let mut c = Client::connect(at.socket);
    c.0.set_read_timeout(Some(Duration::from_secs(300)))
        .unwrap();
    let mut init = common::raw::online_init(run_id, at.dir, at.base_url, KEY, PROJECT);
    if let Some(ServerRequestType::InformInit(i)) = &mut init.server_request_type {
        let s = i.settings.as_mut().unwrap();
        s.shared = Some(true);
        s.x_label = Some(label.into());
        s.x_primary = Some(primary);
        s.x_update_finish_state = Some(primary);
    }
    c.send(&init);
    assert!(
        c.recv().is_some_and(|r| r.server_response_type.is_none()),
        "{label}: inform_init"
    );
    c.send(&run_record(run_id, "run"));
    assert!(
        !matches!(c.answer("run"), Some(ServerResponseType::ErrorResponse(_))),
        "{label}: the run"
    );
    for i in 0..rows {
        let mut items = vec![item(&format!("who_{label}"), &i.to_string())];
        items.extend((0..9).map(|k| item(&format!("m{k}"), &format!("{}.5", i + k))));
        c.send(&row(run_id, "", items));
    }
    if let Some(others) = others {
        others
            .recv_timeout(WRITER_LIMIT)
            .expect("the other writers end");
    }
    c.send(&record(
        run_id,
        "exit",
        RecordType::Exit(pb::RunExitRecord {
            exit_code: if primary { 3 } else { 0 },
            ..Default::default()
        }),
    ));
    assert!(c.answer("exit").is_some(), "{label}: the exit answered");
}

#[test]
fn thirty_two_writers_into_one_run() {
    // The scale figure: writers × rows per writer that one run received
    // intact, through one of our services (each writer its own connection
    // and stream, all with their logs in one directory).
    let writers: usize = env_or("WANDB_SHARED_WRITERS", 32);
    let rows: u64 = env_or("WANDB_SHARED_ROWS", 2_000);
    let standin = standin(KEY, &[]);
    let (mut service, socket, dir): (ServiceChild, PathBuf, PathBuf) =
        start(&["--pid", &std::process::id().to_string()]);
    let started = Instant::now();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let at = RawPlace {
        socket: &socket,
        dir: &dir,
        base_url: &standin.base_url,
    };
    std::thread::scope(|s| {
        let mut primary_rx = Some(done_rx);
        let mut handles = Vec::new();
        for w in 0..writers {
            let label = if w == 0 {
                "primary".to_string()
            } else {
                format!("w{w}")
            };
            let others = if w == 0 { primary_rx.take() } else { None };
            let at = &at;
            handles.push(s.spawn(move || {
                raw_writer(at, "scale1", &label, w == 0, rows, others);
            }));
        }
        // Each writer's socket reads time out (20 s): a stuck service
        // fails them; this bounds the whole round too.
        let limit = Duration::from_secs(600);
        let primary = handles.remove(0);
        for h in handles {
            testkit::finished_within(|| h.is_finished(), limit, "a writer");
            h.join().expect("a writer");
        }
        done_tx.send(()).unwrap();
        testkit::finished_within(|| primary.is_finished(), limit, "the primary");
        primary.join().expect("the primary");
    });
    let key = run_key("scale1");
    let per_writer = standin.store.lines_by_client(&key, "wandb-history.jsonl");
    let elapsed = started.elapsed();
    eprintln!(
        "{writers} writers × {rows} rows: {} rows stored in {:.1} s; per writer (client ID): {:?}",
        standin.store.line_count(&key, "wandb-history.jsonl"),
        elapsed.as_secs_f64(),
        per_writer.values().collect::<BTreeSet<_>>()
    );
    assert_eq!(per_writer.len(), writers);
    assert!(
        per_writer.values().all(|n| *n == rows as i64),
        "{per_writer:?}"
    );
    let history = standin.store.history(&key);
    for w in [0, writers / 2, writers - 1] {
        let label = if w == 0 {
            "primary".to_string()
        } else {
            format!("w{w}")
        };
        let field = format!("who_{label}");
        let mine: Vec<i64> = history
            .iter()
            .filter_map(|r| r.get(&field).and_then(Value::as_i64))
            .collect();
        assert_eq!(mine, (0..rows as i64).collect::<Vec<_>>(), "{label}");
    }
    let run = standin.store.run(&key).unwrap();
    assert_eq!(
        (run.complete, run.finishes, run.exitcode),
        (true, 1, Some(3))
    );
    let logs = walk(&dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wandb"))
        .count();
    assert_eq!(logs, writers, "one log per writer in the one directory");
    let _ = service.kill();
    wait_exit(&mut service, Duration::from_secs(10));
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
