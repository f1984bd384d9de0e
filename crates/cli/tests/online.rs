//! Online runs: the real SDK with W&B's wandb-core, and with ours, each
//! against a fresh backend stand-in; what the two stand-ins stored must be
//! the same run (run fields, config, every history row, summary, console
//! lines, uploaded files and their bytes, completion and exit code).
//!
//! System metrics (`wandb-events.jsonl`, the hardware in
//! `wandb-metadata.json`) are left out: they are the system-monitor issue.

mod common;

use std::collections::BTreeSet;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{install_ours, stable, standin};
use serde_json::{Value, json};
use testkit::CommandExt as _;
use testkit::{reference_python, scratch_dir};
use wandb_standin::{Config, RunKey, StandIn, Store};

const KEY: &str = "onlinekeyonlinekeyonlinekeyonlinekey0123";

/// One run of a script: its output and working directory.
struct Ran {
    out: Output,
    work: PathBuf,
}

impl Ran {
    fn text(&self) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&self.out.stdout),
            String::from_utf8_lossy(&self.out.stderr)
        )
    }
}

fn run_script(python: &Path, standin: &StandIn, script: &str, key: &str, what: &str) -> Ran {
    let work = scratch_dir(what);
    let out = common::online_script(python, script, &[], &work, &standin.base_url, key)
        .output_limited()
        .unwrap();
    Ran { out, work }
}

/// `wandb sync` (of the Python environment `python`: its service does the
/// work) against `standin`, within a deadline.
fn wandb_sync(python: &Path, standin: &StandIn, work: &Path, args: &[&std::ffi::OsStr]) -> Ran {
    let out = Command::new(python.parent().unwrap().join("wandb"))
        .arg("sync")
        .args(args)
        .current_dir(work)
        .env_remove("WANDB_SERVICE")
        .env("WANDB_BASE_URL", &standin.base_url)
        .env("WANDB_API_KEY", KEY)
        .env("WANDB_ERROR_REPORTING", "false")
        .env("HOME", work)
        .output_within(std::time::Duration::from_secs(300))
        .unwrap();
    Ran {
        out,
        work: work.to_path_buf(),
    }
}

/// The text of the `wandb sync` log under `<work>/wandb/logs/`
/// (`debug-sync.<date>.<time>.log`), if there is one.
fn debug_sync_log(work: &Path) -> Option<String> {
    std::fs::read_dir(work.join("wandb/logs"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("debug-sync.") && name.ends_with(".log")
        })
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
}

/// The same script through both services, each with its own stand-in.
struct Pair {
    reference: (StandIn, Ran),
    ours: (StandIn, Ran),
}

fn both(name: &str, script: &str, inject: &[&str], key: &str) -> Pair {
    let python = install_ours();
    let theirs = standin(KEY, inject);
    let ran_theirs = run_script(
        reference_python(),
        &theirs,
        script,
        key,
        &format!("online-{name}-ref"),
    );
    let mine = standin(KEY, inject);
    let ran_mine = run_script(python, &mine, script, key, &format!("online-{name}-ours"));
    eprintln!(
        "{name}: requests reference {} / ours {} ({})",
        theirs.store.requests().len(),
        mine.store.requests().len(),
        request_summary(&mine)
    );
    Pair {
        reference: (theirs, ran_theirs),
        ours: (mine, ran_mine),
    }
}

fn request_summary(s: &StandIn) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for r in s.store.requests() {
        *counts.entry(r.operation.unwrap_or(r.path)).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn volatile(key: &str) -> bool {
    key == "_runtime"
        || key == "_timestamp"
        || key.starts_with("_wandb")
        // A table's client-side artifact IDs are random.
        || key == "artifact_path"
        || key == "_latest_artifact_path"
}

/// Lines the SDK prints about itself (retries, progress) land in the
/// captured console too; when they appear depends on timing.
fn sdk_message(text: &str) -> bool {
    text.starts_with("wandb:") || text.contains("\u{1b}[34mwandb")
}

/// A console line without its time stamp (`[ERROR ]<time> <text>`).
fn console_text(line: &str) -> String {
    let (prefix, rest) = match line.strip_prefix("ERROR ") {
        Some(rest) => ("ERROR ", rest),
        None => ("", line),
    };
    let text = rest.split_once(' ').map_or("", |(_, t)| t);
    format!("{prefix}{text}")
}

/// Files whose bytes legitimately differ between the services (they hold
/// times, versions, the machine description).
fn bytes_may_differ(path: &str) -> bool {
    matches!(
        path,
        "wandb-metadata.json" | "config.yaml" | "wandb-summary.json" | "requirements.txt"
    )
}

/// Everything the reference's stand-in stored that ours did not store the
/// same way.
fn differences(pair: &Pair) -> Vec<String> {
    let (theirs, mine) = (&pair.reference.0.store, &pair.ours.0.store);
    let mut problems = Vec::new();
    let keys = |s: &Store| {
        let mut k: Vec<RunKey> = s
            .runs()
            .into_iter()
            .map(|r| RunKey::new(&r.entity, &r.project, &r.name))
            .collect();
        k.sort_by(|a, b| a.name.cmp(&b.name));
        k
    };
    let (their_keys, my_keys) = (keys(theirs), keys(mine));
    if their_keys != my_keys {
        problems.push(format!("runs: reference {their_keys:?}, ours {my_keys:?}"));
        return problems;
    }
    for key in &their_keys {
        let (t, m) = (theirs.run(key).unwrap(), mine.run(key).unwrap());
        let mut check = |what: &str, a: Value, b: Value| {
            if a != b {
                problems.push(format!(
                    "{}: {what} differs\n  reference: {a}\n  ours:      {b}",
                    key.name
                ));
            }
        };
        check("display name", json!(t.display_name), json!(m.display_name));
        check("notes", json!(t.notes), json!(m.notes));
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        check(
            "tags",
            json!(sorted(t.tags.clone())),
            json!(sorted(m.tags.clone())),
        );
        check("group", json!(t.group_name), json!(m.group_name));
        check("job type", json!(t.job_type), json!(m.job_type));
        check("complete", json!(t.complete), json!(m.complete));
        check("exit code", json!(t.exitcode), json!(m.exitcode));
        check("preempting", json!(t.preempting), json!(m.preempting));
        check(
            "config",
            stable(&t.config, &volatile),
            stable(&m.config, &volatile),
        );
        check(
            "summary",
            stable(&t.summary, &volatile),
            stable(&m.summary, &volatile),
        );
        let rows = |s: &Store| {
            Value::Array(
                s.history(key)
                    .iter()
                    .map(|v| stable(v, &volatile))
                    .collect(),
            )
        };
        check("history", rows(theirs), rows(mine));
        let console = |s: &Store| {
            Value::from(
                s.console(key)
                    .iter()
                    .map(|l| console_text(l))
                    .filter(|l| !sdk_message(l.trim_start_matches("ERROR ")))
                    .collect::<Vec<_>>(),
            )
        };
        check("console lines", console(theirs), console(mine));
        // The form they were sent in: structured (the JSON keys, in order)
        // when the server offers STRUCTURED_CONSOLE_LOGS, plain otherwise.
        let forms = |s: &Store| {
            let raw = s.console_raw(key);
            let plain = s.console(key);
            Value::from(
                raw.iter()
                    .zip(&plain)
                    .filter(|(_, p)| !sdk_message(console_text(p).trim_start_matches("ERROR ")))
                    .map(
                        |(r, _)| match serde_json::from_str::<serde_json::Map<String, Value>>(r) {
                            Ok(o) => o.keys().cloned().collect::<Vec<_>>().join(","),
                            Err(_) => "plain".to_string(),
                        },
                    )
                    .collect::<Vec<_>>(),
            )
        };
        check("console line forms", forms(theirs), forms(mine));
        let files = |s: &Store| {
            let mut f: Vec<(String, String)> = s
                .files(key)
                .into_iter()
                .map(|f| {
                    let sha = if bytes_may_differ(&f.path) {
                        String::new()
                    } else if f.path == "output.log" {
                        // Compared without the SDK's own messages.
                        let text = s.file_content(key, &f.path).unwrap_or_default();
                        String::from_utf8_lossy(&text)
                            .lines()
                            .filter(|l| !sdk_message(l))
                            .collect::<Vec<_>>()
                            .join("\n")
                    } else {
                        f.sha256
                    };
                    (f.path, sha)
                })
                .collect();
            f.sort();
            json!(f)
        };
        check("uploaded files (path, sha256)", files(theirs), files(mine));
        let uploaded = |s: &Store| {
            let mut u = s.uploaded(key);
            u.sort();
            json!(u)
        };
        check("`uploaded` notices", uploaded(theirs), uploaded(mine));
    }
    problems
}

fn assert_same(name: &str, pair: &Pair) {
    let problems = differences(pair);
    assert!(
        problems.is_empty(),
        "{name}: the stored runs differ:\n{}\n--- reference output:\n{}\n--- our output:\n{}",
        problems.join("\n"),
        pair.reference.1.text(),
        pair.ours.1.text()
    );
}

fn assert_succeeded(pair: &Pair) {
    for (who, ran) in [("reference", &pair.reference.1), ("ours", &pair.ours.1)] {
        assert!(ran.out.status.success(), "{who} failed:\n{}", ran.text());
    }
}

/// The API key must not appear in anything the run left on disk.
fn assert_key_not_on_disk(dir: &Path, key: &str) {
    fn walk(dir: &Path, key: &[u8], found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            // The SDK's own settings (`.config`) and netrc are the user's.
            let meta = std::fs::metadata(&path);
            if meta.as_ref().is_ok_and(|m| m.is_dir()) {
                walk(&path, key, found);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(key.len()).any(|w| w == key)
            {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&dir.join("wandb"), key.as_bytes(), &mut found);
    assert!(found.is_empty(), "the API key is in {found:?}");
}

const BASIC: &str = r#"
import wandb
run = wandb.init(project="online", id="basic1", config={"lr": 0.1, "opt": {"name": "adam"}}, notes="first", tags=["a"], group="g", job_type="train")
for i in range(50):
    run.log({"loss": 1 / (i + 1), "i": i, "nested": {"x": i * 2}})
print("hello console")
run.summary["best"] = 0.02
run.finish()
"#;

#[test]
fn basic_run() {
    let pair = both("basic", BASIC, &[], KEY);
    assert_succeeded(&pair);
    assert_same("basic", &pair);
    let key = RunKey::new("standin", "online", "basic1");
    assert_eq!(pair.ours.0.store.history(&key).len(), 50);
    for (_, ran) in [&pair.reference, &pair.ours] {
        assert_key_not_on_disk(&ran.work, KEY);
    }
    // Credentials go under the base URL only.
    for r in pair.ours.0.store.requests() {
        match r.operation.as_deref() {
            Some("upload") => assert_eq!(r.auth, None, "{r:?}"),
            _ => assert_eq!(r.auth.as_deref(), Some("Basic"), "{r:?}"),
        }
    }
}

#[test]
fn config_tags_and_name_changed_mid_run() {
    let script = r#"
import wandb
run = wandb.init(project="online", id="changes1", config={"a": 1})
run.log({"x": 1})
run.config.update({"b": {"c": 2}})
run.config.update({"a": 3}, allow_val_change=True)
run.tags = ("t1", "t2")
run.notes = "changed"
run.name = "renamed"
run.log({"x": 2})
run.finish()
"#;
    let pair = both("changes", script, &[], KEY);
    assert_succeeded(&pair);
    assert_same("changes", &pair);
    let run = pair
        .ours
        .0
        .store
        .run(&RunKey::new("standin", "online", "changes1"))
        .unwrap();
    assert_eq!(run.display_name.as_deref(), Some("renamed"));
    assert_eq!(run.config["b"], json!({"value": {"c": 2}}));
}

#[test]
fn saved_files_with_each_policy() {
    let script = r#"
import os, wandb
run = wandb.init(project="online", id="save1")
for name, policy in [("now.txt", "now"), ("live.txt", "live"), ("end.txt", "end")]:
    with open(name, "w") as f:
        f.write(policy + " v1\n")
    wandb.save(name, policy=policy)
os.makedirs("sub", exist_ok=True)
with open("sub/deep.txt", "w") as f:
    f.write("deep\n")
wandb.save("sub/deep.txt", policy="now")
run.log({"x": 1})
with open("live.txt", "w") as f:
    f.write("live v2\n")
with open("end.txt", "w") as f:
    f.write("end v2\n")
run.finish()
"#;
    let pair = both("save", script, &[], KEY);
    assert_succeeded(&pair);
    assert_same("save", &pair);
    let key = RunKey::new("standin", "online", "save1");
    let store = &pair.ours.0.store;
    assert_eq!(store.file_content(&key, "end.txt").unwrap(), b"end v2\n");
    assert_eq!(store.file_content(&key, "live.txt").unwrap(), b"live v2\n");
    assert!(store.file_content(&key, "sub/deep.txt").is_some());
}

/// `ignore_globs` apply to every run file, wandb's own included, matched
/// against the path under `files/` as Go's `filepath.Match` does.
#[test]
fn ignored_files_are_not_uploaded() {
    let script = r#"
import os, wandb
run = wandb.init(project="online", id="ignore1", settings=wandb.Settings(
    ignore_globs=("requirements.txt", "*.yaml", "sub/*.txt", "output.log")))
os.makedirs("sub/deep", exist_ok=True)
for name in ["keep.txt", "sub/skip.txt", "sub/deep/keep.txt"]:
    with open(name, "w") as f:
        f.write(name + "\n")
    wandb.save(name, policy="now")
print("a console line")
run.log({"x": 1})
run.finish()
"#;
    let pair = both("ignore", script, &[], KEY);
    assert_succeeded(&pair);
    assert_same("ignore", &pair);
    let key = RunKey::new("standin", "online", "ignore1");
    let mut stored: Vec<String> = pair.ours.0.store.file_paths(&key).into_iter().collect();
    stored.sort();
    for gone in [
        "requirements.txt",
        "config.yaml",
        "sub/skip.txt",
        "output.log",
    ] {
        assert!(
            !stored.iter().any(|p| p == gone),
            "{gone} uploaded: {stored:?}"
        );
    }
    for kept in [
        "keep.txt",
        "sub/deep/keep.txt",
        "wandb-summary.json",
        "wandb-metadata.json",
    ] {
        assert!(
            stored.iter().any(|p| p == kept),
            "{kept} missing: {stored:?}"
        );
    }
}

/// With `save_code`, the main script and the git state (uncommitted
/// changes against HEAD, and everything since the upstream commit) are
/// saved into the run and uploaded. The repository is made by the script,
/// with fixed commit dates so both services see the same SHAs, and is the
/// run's root (the scratch directory lies inside this project's own
/// repository, which the SDK would find otherwise).
#[test]
fn code_and_git_patches_are_saved() {
    let script = r##"
import os, subprocess, sys
env = dict(os.environ)
env.pop("WANDB_DISABLE_GIT", None)
env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
           GIT_COMMITTER_EMAIL="t@example.com", GIT_AUTHOR_DATE="2024-01-01T00:00:00Z",
           GIT_COMMITTER_DATE="2024-01-01T00:00:00Z", GIT_CONFIG_GLOBAL="/dev/null",
           WANDB_DIR=os.path.abspath("repo"))
def git(*args, cwd="repo"):
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)
train = """import wandb
run = wandb.init(project="online", id="code1", settings=wandb.Settings(save_code=True))
run.log({"x": 1})
run.finish()
"""
os.makedirs("repo/src")
git("init", "-q", "--bare", "-b", "main", "origin.git", cwd=".")
git("init", "-q", "-b", "main")
with open("repo/src/train.py", "w") as f:
    f.write("# one\n" + train)
git("add", ".")
git("commit", "-qm", "one")
git("remote", "add", "origin", "../origin.git")
git("push", "-q", "-u", "origin", "main")
with open("repo/src/train.py", "w") as f:
    f.write("# two\n" + train)
git("commit", "-qam", "two")
with open("repo/src/train.py", "w") as f:
    f.write("# three, not committed\n" + train)
# Started from src/: the local code path differs from the one in the repository.
sys.exit(subprocess.run([sys.executable, "train.py"], cwd="repo/src", env=env).returncode)
"##;
    let pair = both("code", script, &[], KEY);
    assert_succeeded(&pair);
    assert_same("code", &pair);
    let key = RunKey::new("standin", "online", "code1");
    let store = &pair.ours.0.store;
    let code = store
        .file_content(&key, "code/src/train.py")
        .expect("code saved");
    assert!(code.starts_with(b"# three"));
    let head = store.file_content(&key, "diff.patch").expect("diff.patch");
    assert!(String::from_utf8_lossy(&head).contains("+# three"));
    let upstream: Vec<String> = store
        .file_paths(&key)
        .into_iter()
        .filter(|p| p.starts_with("diff_") && p.ends_with(".patch"))
        .collect();
    assert_eq!(upstream.len(), 1, "{upstream:?}");
    // What the metadata says about the code.
    let code_facts = |s: &Store| {
        let bytes = s
            .file_content(&key, "wandb-metadata.json")
            .expect("metadata");
        let m: Value = serde_json::from_slice(&bytes).unwrap();
        json!([
            m["program"],
            m["codePath"],
            m["codePathLocal"],
            m["git"],
            m["root"]
        ])
    };
    let (theirs, ours) = (code_facts(&pair.reference.0.store), code_facts(store));
    let strip = |v: &Value, work: &Path| {
        Value::from(v.to_string().replace(&*work.to_string_lossy(), "<work>"))
    };
    assert_eq!(
        strip(&theirs, &pair.reference.1.work),
        strip(&ours, &pair.ours.1.work)
    );
}

#[test]
fn console_output() {
    let script = r#"
import sys, wandb
run = wandb.init(project="online", id="console1")
print("to stdout 1")
print("to stderr 1", file=sys.stderr)
for p in range(0, 101, 25):
    sys.stdout.write(f"\rprogress {p}%")
    sys.stdout.flush()
print()
sys.stdout.write("half a line, ")
run.write_logs("from write_logs\n  its second line")
print("the other half")
for i in range(200):
    print(f"line {i}")
run.finish()
"#;
    let pair = both("console", script, &[], KEY);
    assert_succeeded(&pair);
    assert_same("console", &pair);
    let key = RunKey::new("standin", "online", "console1");
    let lines = pair.ours.0.store.console(&key);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ERROR ") && l.ends_with("to stderr 1"))
    );
    assert!(lines.iter().any(|l| l.ends_with(" progress 100%")));
    let file = pair.ours.0.store.file_content(&key, "output.log").unwrap();
    let file = String::from_utf8_lossy(&file);
    assert!(file.contains("line 199"));
    // `run.write_logs()` lines follow what was written, whole; the half
    // line goes on where it was.
    assert!(
        file.contains("half a line, the other half\nfrom write_logs\n  its second line\nline 0\n"),
        "{file}"
    );
}

/// A YAML file as PyYAML reads it, in JSON (keys that are not strings and
/// values that are not JSON, such as dates, as their repr).
fn yaml_as_read(bytes: &[u8]) -> Value {
    let path = scratch_dir("yaml").join("config.yaml");
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new(reference_python())
        .args([
            "-c",
            "import json, sys, yaml\n\
             def read(v):\n\
             \x20   if isinstance(v, dict): return {k if isinstance(k, str) else repr(k): read(x) for k, x in v.items()}\n\
             \x20   if isinstance(v, list): return [read(x) for x in v]\n\
             \x20   if v is None or isinstance(v, (str, bool, int, float)): return v\n\
             \x20   return repr(v)\n\
             print(json.dumps(read(yaml.safe_load(open(sys.argv[1])))))",
        ])
        .arg(&path)
        .output_limited()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `config.yaml`'s leading `_wandb` block and the rest.
fn split_wandb_block(text: &str) -> (&str, &str) {
    assert!(text.starts_with("_wandb:\n"), "_wandb first:\n{text}");
    let mut at = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if i > 0 && !line.starts_with(' ') {
            break;
        }
        at += line.len();
    }
    text.split_at(at)
}

#[test]
fn values_that_are_easy_to_get_wrong() {
    let script = r#"
import wandb
run = wandb.init(project="online", id="values1", config={
    "True": 1, "NULL": 2, "Yes": "yes", "0x1F": 3, "1_000": 4, "2024-01-01": 5,
    "plain": "on", "date": "2024-01-01", "n": "null", "empty": "", "version": "0.31.0",
    "nested": {"no": "off", "list": [1, "2", None]},
})
run.define_metric("a.b", summary="min")
run.define_metric("m", summary="min,max")
for i in range(3):
    run.log({"a": {"b": 1.0 / (i + 1)}, "m": float("nan") if i == 1 else i})
run.summary["x"] = float("nan")
run.summary["y"] = float("-inf")
run.pin_config_keys(["True", "version"])
print("[32mgreen[0m and [1;31mbold red[m")
run.finish()
"#;
    let pair = both("values", script, &[], KEY);
    assert_succeeded(&pair);
    assert_same("values", &pair);
    let key = RunKey::new("standin", "online", "values1");
    let yaml = |s: &StandIn| {
        let mut v = yaml_as_read(&s.store.file_content(&key, "config.yaml").unwrap());
        let pinned = v["_wandb"]["value"]["pinned_keys"].take();
        v.as_object_mut().unwrap().remove("_wandb");
        (v, pinned)
    };
    let (theirs, mine) = (yaml(&pair.reference.0), yaml(&pair.ours.0));
    assert_eq!(theirs, mine, "config.yaml as PyYAML reads it");
    // The text too: `_wandb` first, then the user's keys in yaml.v3's order
    // and quoting; under `_wandb`, the same entries in the same order, the
    // environment (`e`) under one writer with the same fields.
    let text = |s: &StandIn| {
        let bytes = s.store.file_content(&key, "config.yaml").unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let (wandb, user) = split_wandb_block(&text);
        let entries = |indent: usize, within: &str| {
            wandb
                .lines()
                .skip_while(|l| l.trim_start() != within)
                .skip(1)
                .take_while(|l| l.len() - l.trim_start().len() >= indent)
                .filter(|l| l.len() - l.trim_start().len() == indent)
                .map(|l| l.trim().split(':').next().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        let writers = entries(12, "e:");
        let fields = {
            let mut f = entries(
                16,
                &format!("{}:", writers.first().cloned().unwrap_or_default()),
            );
            f.sort();
            f
        };
        (
            user.to_string(),
            entries(8, "value:"),
            writers.len(),
            fields,
        )
    };
    let (their_text, my_text) = (text(&pair.reference.0), text(&pair.ours.0));
    assert_eq!(their_text.0, my_text.0, "config.yaml's text after _wandb");
    assert_eq!(their_text.1, my_text.1, "config.yaml's _wandb entries");
    assert_eq!(
        (their_text.2, my_text.2),
        (1, 1),
        "one writer under _wandb.e"
    );
    assert_eq!(
        their_text.3, my_text.3,
        "the environment's fields under _wandb.e"
    );
    assert_eq!(mine.1, json!(["True", "version"]));
    assert_eq!(mine.0["0x1F"]["value"], json!(3), "{}", mine.0);
    // `_wandb` is left out of the comparison above (times, versions);
    // what the SDK put there must be in the config the server has.
    let pinned =
        |s: &StandIn| s.store.run(&key).unwrap().config["_wandb"]["value"]["pinned_keys"].clone();
    assert_eq!(pinned(&pair.reference.0), json!(["True", "version"]));
    assert_eq!(pinned(&pair.ours.0), pinned(&pair.reference.0));
}

#[test]
fn resume_an_existing_run() {
    let script = r#"
import numpy as np, wandb
run = wandb.init(project="online", id="resume1", config={"a": 1}, tags=["first", "t2"], notes="first notes")
for i in range(5):
    run.log({"x": i})
mask = np.zeros((8, 8), dtype=np.uint8)
mask[2:5, 2:5] = 1
run.log({"seg": wandb.Image(np.zeros((8, 8, 3), dtype=np.uint8),
                            masks={"pred": {"mask_data": mask, "class_labels": {0: "bg", 1: "cat"}}})})
table = wandb.Table(data=[[1, 2], [2, 4]], columns=["u", "v"])
run.log({"chart": wandb.plot.line(table, "u", "v", title="t")})
print("first session")
run.finish()
run = wandb.init(project="online", id="resume1", resume="must")
assert run.resumed, "not resumed"
print("resumed tags:", sorted(run.tags))
print("resumed notes:", run.notes)
for i in range(5, 8):
    run.log({"x": i})
print("second session")
run.finish()
try:
    wandb.init(project="online", id="resume1", resume="never")
    print("resume=never did not fail")
except Exception as e:
    print("never failed as it should:", type(e).__name__, e)
try:
    wandb.init(project="online", id="nosuchrun", resume="must")
    print("resume=must did not fail")
except Exception as e:
    print("must failed as it should:", type(e).__name__, e)
"#;
    let pair = both("resume", script, &[], KEY);
    assert_succeeded(&pair);
    assert_same("resume", &pair);
    let key = RunKey::new("standin", "online", "resume1");
    let rows = pair.ours.0.store.history(&key);
    let steps: Vec<i64> = rows.iter().map(|r| r["_step"].as_i64().unwrap()).collect();
    assert_eq!(steps, (0..10).collect::<Vec<_>>());
    // The media entries of `_wandb` (mask class labels, custom charts) are
    // kept across the resume.
    let media_config = |s: &Store| {
        let config = s.run(&key).unwrap().config;
        let w = &config["_wandb"]["value"];
        json!([w["mask/class_labels"], w["visualize"]])
    };
    let theirs = media_config(&pair.reference.0.store);
    assert!(theirs[0].is_object() && theirs[1].is_object(), "{theirs}");
    assert_eq!(media_config(&pair.ours.0.store), theirs);
    // Both refusals raise the same kind (UsageError), with the same words.
    let refusals = |text: String| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains("failed as it should"))
            .map(String::from)
            .collect()
    };
    let (theirs, ours) = (
        refusals(pair.reference.1.text()),
        refusals(pair.ours.1.text()),
    );
    assert_eq!(theirs.len(), 2, "{}", pair.reference.1.text());
    assert!(
        theirs.iter().all(|l| l.contains(": UsageError ")),
        "{theirs:?}"
    );
    assert_eq!(ours, theirs);
    // A resumed run keeps its tags when the session gives none.
    let tags = |text: String| {
        text.lines()
            .find(|l| l.starts_with("resumed tags:"))
            .map(String::from)
    };
    assert_eq!(
        tags(pair.reference.1.text()).as_deref(),
        Some("resumed tags: ['first', 't2']")
    );
    assert_eq!(tags(pair.ours.1.text()), tags(pair.reference.1.text()));
    let notes = |text: String| {
        text.lines()
            .find(|l| l.starts_with("resumed notes:"))
            .map(String::from)
    };
    assert_eq!(
        notes(pair.reference.1.text()).as_deref(),
        Some("resumed notes: first notes")
    );
    assert_eq!(notes(pair.ours.1.text()), notes(pair.reference.1.text()));
    // Each session's log has its sync state beside it: where its rows
    // start (the runtime is the server's, so only its presence is compared).
    let sync_states = |work: &Path| -> Vec<(String, Value)> {
        let mut states: Vec<(String, Value)> = std::fs::read_dir(work.join("wandb"))
            .unwrap()
            .flatten()
            .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".wandb.syncstate"))
            .map(|p| {
                let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                let name = p.file_name().unwrap().to_string_lossy();
                let id = name
                    .trim_start_matches("run-")
                    .trim_end_matches(".wandb.syncstate");
                let id = id.to_string();
                (
                    id,
                    json!([v["starting_step"], v["starting_runtime"].is_i64()]),
                )
            })
            .collect();
        states.sort_by_key(|s| s.1.to_string());
        states
    };
    let theirs = sync_states(&pair.reference.1.work);
    assert_eq!(
        theirs,
        [
            ("resume1".to_string(), json!([0, true])),
            ("resume1".to_string(), json!([7, true]))
        ],
        "reference"
    );
    assert_eq!(sync_states(&pair.ours.1.work), theirs);
}

#[test]
fn images() {
    let script = r#"
import numpy as np, wandb
run = wandb.init(project="online", id="media1")
for i in range(3):
    pixels = (np.arange(16 * 16 * 3).reshape(16, 16, 3) * (i + 1) % 256).astype(np.uint8)
    run.log({"img": wandb.Image(pixels, caption=f"step {i}")})
run.finish()
"#;
    let pair = both("media", script, &[], KEY);
    assert_succeeded(&pair);
    assert_same("media", &pair);
    let key = RunKey::new("standin", "online", "media1");
    let files = pair.ours.0.store.files(&key);
    assert_eq!(
        files
            .iter()
            .filter(|f| f.path.starts_with("media/images/"))
            .count(),
        3
    );
}

#[test]
fn uncaught_exception() {
    let script = r#"
import wandb
run = wandb.init(project="online", id="crash1")
run.log({"x": 1})
raise ValueError("boom")
"#;
    let pair = both("crash", script, &[], KEY);
    for ran in [&pair.reference.1, &pair.ours.1] {
        assert!(!ran.out.status.success());
    }
    assert_same("crash", &pair);
    let run = pair
        .ours
        .0
        .store
        .run(&RunKey::new("standin", "online", "crash1"))
        .unwrap();
    assert!(run.complete);
    assert_eq!(run.exitcode, Some(1));
}

#[test]
fn failures_that_the_backend_recovers_from() {
    let inject = [
        "UpsertBucket:500:1",
        "CreateRunFiles:502:1",
        "file_stream:429:1:1",
        "upload:500:1",
    ];
    // The SDK prints retried failures from a status thread that polls once
    // right after init, then every few seconds until `finish()`. A script
    // that finishes at once can end before that first poll is handled on
    // a loaded machine (seen once in a full run): give it two seconds.
    let script = BASIC.replace(
        "for i in range(50):",
        "import time\ntime.sleep(2)\nfor i in range(50):",
    );
    let pair = both("retried", &script, &inject, KEY);
    assert_succeeded(&pair);
    assert_same("retried", &pair);
    let statuses: Vec<(String, u16)> = pair
        .ours
        .0
        .store
        .requests()
        .into_iter()
        .map(|r| (r.operation.unwrap_or_default(), r.status))
        .collect();
    for failed in [
        ("UpsertBucket", 500),
        ("CreateRunFiles", 502),
        ("file_stream", 429),
        ("upload", 500),
    ] {
        assert!(
            statuses.contains(&(failed.0.to_string(), failed.1)),
            "{failed:?} served: {statuses:?}"
        );
    }
    // The SDK printed the retried failure (network status).
    assert!(pair.ours.1.text().contains("500"), "{}", pair.ours.1.text());
}

#[test]
fn a_fatal_file_stream_error_reaches_the_user() {
    let pair = both("fatal", BASIC, &["file_stream:400:1000"], KEY);
    assert_succeeded(&pair);
    for (who, (standin, ran)) in [("reference", &pair.reference), ("ours", &pair.ours)] {
        let run = standin
            .store
            .run(&RunKey::new("standin", "online", "basic1"))
            .unwrap();
        assert!(!run.complete, "{who}: completed despite the fatal error");
        let fs = standin
            .store
            .requests()
            .into_iter()
            .filter(|r| r.operation.as_deref() == Some("file_stream"))
            .count();
        assert_eq!(fs, 1, "{who}: file stream requests after a fatal error");
        let _ = ran;
    }
    let text = pair.ours.1.text();
    assert!(text.contains("Fatal error while uploading data"), "{text}");
}

#[test]
fn stop_on_fatal_error_stops_the_script() {
    let script = r#"
import time, wandb
# The first file stream request fails for good: the run stops, even while
# wandb.init() still waits.
try:
    run = wandb.init(project="online", id="fatalstop1", settings=wandb.Settings(
        stop_on_fatal_error=True, x_file_stream_transmit_interval=0.5))
    for i in range(600):
        run.log({"x": i})
        time.sleep(0.1)
    print("never stopped")
except KeyboardInterrupt:
    print("stopped after the fatal error")
"#;
    let pair = both("fatalstop", script, &["file_stream:400:1000"], KEY);
    for (who, (_, ran)) in [("reference", &pair.reference), ("ours", &pair.ours)] {
        let text = ran.text();
        assert!(
            text.contains("stopped after the fatal error"),
            "{who}: {text}"
        );
    }
}

#[test]
fn a_bad_api_key_fails_init_with_the_servers_message() {
    let pair = both(
        "badkey",
        BASIC,
        &[],
        "wrongkeywrongkeywrongkeywrongkeywrongkey",
    );
    for (who, ran) in [("reference", &pair.reference.1), ("ours", &pair.ours.1)] {
        assert!(!ran.out.status.success(), "{who} succeeded");
        assert!(ran.text().contains("unauthorized"), "{who}: {}", ran.text());
    }
    assert!(pair.ours.0.store.runs().is_empty());
}

/// `wandb.init` against a backend that keeps failing: the user reads the
/// last failure and the hint to raise `init_timeout`, in the same words.
#[test]
fn init_timeout_names_the_last_failure_and_the_setting() {
    let script = r#"
import wandb
try:
    wandb.init(project="online", id="slow1", settings=wandb.Settings(init_timeout=4))
    print("INIT OK")
except Exception as e:
    print("INIT FAILED", type(e).__name__, repr(str(e)))
"#;
    let pair = both("inittimeout", script, &["UpsertBucket:500:1000"], KEY);
    let failure = |ran: &Ran| {
        ran.text()
            .lines()
            .find(|l| l.starts_with("INIT "))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no INIT line: {}", ran.text()))
    };
    let reference = failure(&pair.reference.1);
    assert!(
        reference.contains("Timed out while retrying: HTTP 500"),
        "{reference}"
    );
    assert_eq!(failure(&pair.ours.1), reference);
}

/// A `run.log()` row over the file stream's line limit is left out, and the
/// user is told, in wandb-core's words; the rows around it go up.
#[test]
fn a_row_over_the_line_limit_is_left_out_and_the_user_told() {
    let script = r#"
import time, wandb
run = wandb.init(project="online", id="longline1", settings=wandb.Settings(x_file_stream_max_line_bytes=2000))
run.log({"x": 1})
run.log({"x": 2, "text": "y" * 5000})
run.log({"x": 3})
time.sleep(2)  # the warning is printed while the console is captured
run.finish()
"#;
    let pair = both("longline", script, &[], KEY);
    assert_succeeded(&pair);
    assert_same("longline", &pair);
    let key = RunKey::new("standin", "online", "longline1");
    assert_eq!(pair.ours.0.store.history(&key).len(), 2);
    for (who, ran) in [("reference", &pair.reference.1), ("ours", &pair.ours.1)] {
        assert!(
            ran.text()
                .contains("Skipped uploading run.log() data that exceeded size limit"),
            "{who}: {}",
            ran.text()
        );
    }
}

#[test]
fn alerts_metrics_and_preemption() {
    let script = r#"
import wandb
run = wandb.init(project="online", id="extras1")
run.define_metric("acc", summary="max")
run.define_metric("val/*", step_metric="epoch")
for i in range(5):
    run.log({"acc": i / 10, "epoch": i, "val/loss": 1 - i / 10})
run.alert(title="heads up", text="acc is rising", level=wandb.AlertLevel.WARN)
run.mark_preempting()
run.finish(exit_code=3)
"#;
    let pair = both("extras", script, &[], KEY);
    assert_same("extras", &pair);
    let key = RunKey::new("standin", "online", "extras1");
    for (who, (standin, _)) in [("reference", &pair.reference), ("ours", &pair.ours)] {
        let alerts = standin.store.alerts(&key);
        assert_eq!(
            alerts,
            vec![("heads up".into(), "acc is rising".into(), "WARN".into())],
            "{who}"
        );
    }
    let run = pair.ours.0.store.run(&key).unwrap();
    assert!(run.preempting && run.complete);
    assert_eq!(run.exitcode, Some(3));
}

#[test]
fn the_proxy_the_settings_name_carries_every_request() {
    // The base URL's host never resolves: only through the proxy (the
    // stand-in, which serves the absolute-form requests a client sends to
    // an HTTP proxy) does anything arrive. Uploads go through it too.
    let script = r#"
import os, wandb
run = wandb.init(project="online", id="proxied1", settings=wandb.Settings(
    base_url="http://wandb-backend.invalid", http_proxy=os.environ["WANDB_BASE_URL"]))
for i in range(3):
    run.log({"a": i})
print("through the proxy")
run.finish()
"#;
    let pair = both("proxy", script, &[], KEY);
    assert_succeeded(&pair);
    assert_same("proxy", &pair);
    let key = RunKey::new("standin", "online", "proxied1");
    assert_eq!(pair.ours.0.store.line_count(&key, "wandb-history.jsonl"), 3);
    assert!(
        pair.ours
            .0
            .store
            .file_content(&key, "config.yaml")
            .is_some()
    );
}

#[test]
fn extra_http_headers_go_on_every_request() {
    let script = r#"
import wandb
run = wandb.init(project="online", id="headers1",
                 settings=wandb.Settings(x_extra_http_headers={"X-Team": "vision"}))
run.log({"a": 1})
run.finish()
"#;
    let pair = both("headers", script, &[], KEY);
    assert_succeeded(&pair);
    let carried = |s: &StandIn| {
        let (mut with, mut without) = (BTreeSet::new(), BTreeSet::new());
        for r in s.store.requests() {
            let op = r.operation.unwrap_or(r.path);
            // Asked when needed (wandb-core asks for features lazily, ours
            // at once; CoreWeave metadata is not ours to ask).
            if op == "ServerFeaturesQuery" || op == "OrganizationCoreWeaveOrganizationID" {
                continue;
            }
            if r.x_headers.get("x-team").map(String::as_str) == Some("vision") {
                with.insert(op);
            } else {
                without.insert(op);
            }
        }
        (with, without)
    };
    let (theirs, mine) = (carried(&pair.reference.0), carried(&pair.ours.0));
    assert_eq!(theirs, mine, "requests with the header and without");
    for op in ["UpsertBucket", "file_stream", "upload"] {
        assert!(mine.0.contains(op), "{op}: {:?}", mine.0);
    }
}

#[test]
fn the_sdk_shows_what_is_being_uploaded_while_it_waits() {
    // A slow backend (every answer 700 ms late): wandb.init() and
    // run.finish() wait long enough for the SDK to poll `operations` and
    // print what the service is doing (one line per change, as in a log
    // file), with either service.
    let script = r#"
import wandb
run = wandb.init(project="online", id="ops1")
for i in range(3):
    run.log({"a": i})
print("hello")
run.finish()
"#;
    let slow = || {
        let config = Config {
            latency: std::time::Duration::from_millis(700),
            ..common::standin_config(KEY, &[])
        };
        StandIn::spawn(config, 0, Store::open(None).unwrap()).unwrap()
    };
    for (who, python) in [("reference", reference_python()), ("ours", install_ours())] {
        let s = slow();
        let ran = run_script(python, &s, script, KEY, &format!("online-ops-{who}"));
        let text = common::text(&ran.out);
        assert!(ran.out.status.success(), "{who}: {text}");
        let progress: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("wandb: "))
            .filter(|l| {
                l.contains("uploading ") || l.contains("updating ") || l.contains("setting up ")
            })
            .collect();
        assert!(
            progress.contains(&"setting up run ops1"),
            "{who}: {progress:?}"
        );
        assert!(
            progress.iter().any(|l| l.contains("uploading config.yaml")),
            "{who}: {progress:?}"
        );
        // Rows 0-2, in one request or several (the first file stream
        // request goes at once, maybe before the last row is logged).
        let mut steps = Vec::new();
        for l in &progress {
            for part in l.split("history steps ").skip(1) {
                let range = part.split([',', ';']).next().unwrap_or_default().trim();
                if let Some((a, b)) = range.split_once('-')
                    && let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>())
                {
                    steps.extend(a..=b);
                }
            }
        }
        assert_eq!(steps, [0, 1, 2], "{who}: {progress:?}");
    }
}

#[test]
fn the_server_derives_the_summary_when_asked() {
    let script = r#"
import wandb
run = wandb.init(project="online", id="derived1",
                 settings=wandb.Settings(x_server_side_derived_summary=True))
run.define_metric("loss", summary="min")
for i in range(3):
    run.log({"loss": 1.0 / (i + 1)})
run.summary["best"] = 7
run.finish()
"#;
    let pair = both("derived", script, &[], KEY);
    assert_succeeded(&pair);
    assert_same("derived", &pair);
    // The header goes with the same requests (the file stream's among them).
    let flagged = |s: &StandIn| {
        s.store
            .requests()
            .into_iter()
            .filter(|r| {
                r.x_headers
                    .get("x-wandb-server-side-derived-summary")
                    .is_some_and(|v| v == "true")
            })
            .map(|r| r.operation.unwrap_or(r.path))
            .filter(|op| op != "ServerFeaturesQuery" && op != "OrganizationCoreWeaveOrganizationID")
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(flagged(&pair.ours.0), flagged(&pair.reference.0));
    assert!(flagged(&pair.ours.0).contains("file_stream"));
}

#[test]
fn a_labelled_writer_names_its_console() {
    let script = r#"
import sys, wandb
run = wandb.init(project="online", id="label1", settings=wandb.Settings(x_label="node-1"))
print("hello from node 1")
print("trouble on node 1", file=sys.stderr)
run.log({"a": 1})
run.finish()
"#;
    let pair = both("label", script, &[], KEY);
    assert_succeeded(&pair);
    assert_same("label", &pair);
    let key = RunKey::new("standin", "online", "label1");
    let lines = pair.ours.0.store.console(&key);
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with(" [node-1] hello from node 1")),
        "{lines:?}"
    );
    let files: Vec<String> = pair.ours.0.store.file_paths(&key).into_iter().collect();
    assert!(
        files.contains(&"output_node-1.log".to_string()),
        "{files:?}"
    );
}

#[test]
fn a_forked_run_starts_past_its_branch_point() {
    let script = r#"
import wandb
run = wandb.init(project="online", id="forked1", fork_from="parent1?_step=10")
for i in range(3):
    run.log({"a": i})
run.finish()
"#;
    let pair = both("fork", script, &[], KEY);
    assert_succeeded(&pair);
    assert_same("fork", &pair);
    let key = RunKey::new("standin", "online", "forked1");
    let steps: Vec<Value> = pair
        .ours
        .0
        .store
        .lines(&key, "wandb-history.jsonl")
        .iter()
        .map(|(_, l)| serde_json::from_str::<Value>(l).unwrap()["_step"].clone())
        .collect();
    assert_eq!(steps, [json!(11), json!(12), json!(13)]);
}

#[test]
fn a_writer_that_does_not_own_the_end_leaves_the_run_unfinished() {
    let script = r#"
import wandb
run = wandb.init(project="online", id="worker1",
                 settings=wandb.Settings(x_update_finish_state=False))
for i in range(3):
    run.log({"a": i})
run.finish()
"#;
    let pair = both("nofinish", script, &[], KEY);
    assert_succeeded(&pair);
    assert_same("nofinish", &pair);
    let key = RunKey::new("standin", "online", "worker1");
    for (who, s) in [("reference", &pair.reference.0), ("ours", &pair.ours.0)] {
        let run = s.store.run(&key).expect("the run");
        assert!(!run.complete, "{who}: marked finished");
        assert_eq!(s.store.line_count(&key, "wandb-history.jsonl"), 3, "{who}");
    }
}

#[test]
fn a_run_left_open_at_teardown_gets_the_services_footer() {
    // wandb.teardown() with the run still open: the service finishes it and
    // prints its own footer (colours, relative log path), unless silent.
    let footer = |ran: &Ran, base_url: &str| -> Vec<String> {
        // Run directories differ in their work directory and time stamps.
        ran.text()
            .lines()
            .filter(|l| l.starts_with("\x1b[1;34mwandb\x1b[0m: "))
            .map(|l| {
                l.replace(base_url, "URL")
                    .replace(&ran.work.display().to_string(), "WORK")
                    .chars()
                    .map(|c| if c.is_ascii_digit() { '#' } else { c })
                    .collect()
            })
            .collect()
    };
    for (case, settings) in [
        ("online", "name='my-run'"),
        ("offline", "name='my-run', mode='offline'"),
        (
            "silent",
            "name='my-run', settings=wandb.Settings(silent=True)",
        ),
    ] {
        let script = format!(
            "import wandb\nrun = wandb.init(project='online', id='open1', {settings})\n\
             run.log({{'a': 1}})\nwandb.teardown()\nprint('after teardown')\n"
        );
        let pair = both(&format!("footer-{case}"), &script, &[], KEY);
        assert_succeeded(&pair);
        let theirs = footer(&pair.reference.1, &pair.reference.0.base_url);
        let mine = footer(&pair.ours.1, &pair.ours.0.base_url);
        assert_eq!(mine, theirs, "{case}");
        assert_eq!(mine.is_empty(), case == "silent", "{case}: {mine:?}");
    }
}

#[test]
fn console_chunks_with_console_multipart() {
    // Three groups of lines 6 s apart (both services write the console file
    // at most every few seconds), 300 bytes a chunk: several chunks under
    // files/logs/, no output.log, together the whole console.
    let script = r#"
import time, wandb
run = wandb.init(project="online", id="chunks1", settings=wandb.Settings(
    console_multipart=True, console_chunk_max_bytes=300))
for group in range(3):
    for i in range(10):
        print(f"group {group} line {i:02d}")
    time.sleep(6)
run.finish()
"#;
    let pair = both("chunks", script, &[], KEY);
    assert_succeeded(&pair);
    let key = RunKey::new("standin", "online", "chunks1");
    let chunks = |s: &StandIn| {
        let mut names: Vec<String> = s
            .store
            .file_paths(&key)
            .into_iter()
            .filter(|p| p.starts_with("logs/output_"))
            .collect();
        names.sort();
        let text: String = names
            .iter()
            .map(|n| String::from_utf8(s.store.file_content(&key, n).unwrap()).unwrap())
            .collect();
        let has_output_log = s.store.file_paths(&key).iter().any(|p| p == "output.log");
        (names, text, has_output_log)
    };
    let (theirs, mine) = (chunks(&pair.reference.0), chunks(&pair.ours.0));
    let expected: String = (0..3)
        .flat_map(|g| (0..10).map(move |i| format!("group {g} line {i:02}\n")))
        .collect();
    for (who, (names, text, has_output_log)) in [("reference", &theirs), ("ours", &mine)] {
        assert!(names.len() >= 2, "{who}: {names:?}");
        assert!(
            names.iter().all(|n| {
                let stamp = &n["logs/output_".len()..n.len() - ".log".len()];
                stamp.len() == 25 && stamp.chars().all(|c| c.is_ascii_digit() || c == '_')
            }),
            "{who}: {names:?}"
        );
        assert_eq!(*text, expected, "{who}: the chunks together");
        assert!(!has_output_log, "{who}: output.log uploaded too");
    }
}

#[test]
fn gzip_file_stream_when_the_server_offers_it() {
    let script = r#"
import wandb
run = wandb.init(project="online", id="gzip1", settings=wandb.Settings(x_file_stream_no_gzip=False))
for i in range(20):
    run.log({"x": i})
run.finish()
"#;
    let python = install_ours();
    let mut config = Config {
        api_key: Some(KEY.into()),
        ..Default::default()
    };
    for (name, on) in &mut config.features {
        if name == "FILESTREAM_GZIP" {
            *on = true;
        }
    }
    let s = StandIn::spawn(config, 0, Store::open(None).unwrap()).unwrap();
    let ran = run_script(python, &s, script, KEY, "online-gzip-ours");
    assert!(ran.out.status.success(), "{}", ran.text());
    let key = RunKey::new("standin", "online", "gzip1");
    assert_eq!(s.store.history(&key).len(), 20);
    assert!(s.store.run(&key).unwrap().complete);
    let fs: Vec<_> = s
        .store
        .requests()
        .into_iter()
        .filter(|r| r.operation.as_deref() == Some("file_stream"))
        .collect();
    assert!(!fs.is_empty() && fs.iter().all(|r| r.gzip), "{fs:?}");
}

#[test]
fn the_public_api_goes_through_the_service() {
    let script = r#"
import wandb
api = wandb.Api()
print("viewer:", api.viewer.username)
run = wandb.init(project="online", id="api1")
run.log({"x": 1})
run.finish()
"#;
    let pair = both("api", script, &[], KEY);
    assert_succeeded(&pair);
    assert_same("api", &pair);
    for (who, (standin, ran)) in [("reference", &pair.reference), ("ours", &pair.ours)] {
        assert!(
            ran.text().contains("viewer: standin"),
            "{who}: {}",
            ran.text()
        );
        assert!(
            standin.store.requests().iter().any(|r| r
                .user_agent
                .as_deref()
                .is_some_and(|u| u.starts_with("W&B Public Client"))),
            "{who}: no request with the public client's user agent"
        );
    }
}

/// The check the offline issue deferred: W&B's own `wandb sync` (through
/// W&B's wandb-core) uploads an offline run that our service wrote.
#[test]
fn wandb_sync_uploads_an_offline_run_written_by_our_service() {
    let python = install_ours();
    let work = scratch_dir("online-sync");
    let script = r#"
import wandb
run = wandb.init(project="synced", id="offline1", mode="offline", config={"lr": 0.5})
for i in range(300):
    run.log({"loss": 1 / (i + 1), "i": i})
print("offline console line")
run.summary["final"] = "yes"
run.finish()
"#;
    let out = common::python_script(python, script, &work)
        .env("WANDB_MODE", "offline")
        .output_limited()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run_dir = std::fs::read_dir(work.join("wandb"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("offline-run-")
        })
        .expect("the offline run directory");

    let s = standin(KEY, &[]);
    let synced = wandb_sync(reference_python(), &s, &work, &[run_dir.as_os_str()]);
    let text = synced.text();
    let out = synced.out;
    assert!(out.status.success(), "{text}");
    assert!(
        debug_sync_log(&work).is_some(),
        "wandb-core's debug-sync log"
    );
    let key = RunKey::new("standin", "synced", "offline1");
    let run = s
        .store
        .run(&key)
        .unwrap_or_else(|| panic!("no synced run: {text}"));
    assert!(run.complete, "{text}");
    assert_eq!(run.exitcode, Some(0));
    assert_eq!(run.config["lr"], json!({"value": 0.5}));
    assert_eq!(run.summary["final"], json!("yes"));
    let history = s.store.history(&key);
    assert_eq!(history.len(), 300);
    for (i, row) in history.iter().enumerate() {
        assert_eq!(row["_step"], json!(i));
        assert_eq!(row["i"], json!(i));
    }
    assert!(
        s.store
            .console(&key)
            .iter()
            .any(|l| l.ends_with("offline console line"))
    );
}

/// `finish_timeout` with a backend that does not take the file stream: the
/// SDK hears `timed_out` from both services (it raises `TimeoutError`, as
/// asked) and the user reads wandb-core's words. Beyond wandb-core: ours
/// says where the rest is, and `wandb sync` later sends it, every row once.
#[test]
fn finish_timeout_stops_waiting_and_sync_sends_the_rest() {
    let script = r#"
import wandb
run = wandb.init(project="online", id="slowfinish1",
                 settings=wandb.Settings(finish_timeout=3, finish_timeout_raises=True))
for i in range(50):
    run.log({"x": i})
try:
    run.finish()
    print("FINISHED")
except TimeoutError as e:
    print("TIMEOUT", e)
"#;
    let key = RunKey::new("standin", "online", "slowfinish1");
    let ran = |python: &Path, what: &str| {
        let s = standin(KEY, &[]);
        s.hold("file_stream");
        let ran = run_script(python, &s, script, KEY, what);
        (s, ran)
    };
    let ours_python = install_ours();
    for (who, (s, ran)) in [
        (
            "reference",
            ran(reference_python(), "online-finishtimeout-ref"),
        ),
        ("ours", ran(ours_python, "online-finishtimeout-ours")),
    ] {
        let text = ran.text();
        assert!(
            text.contains("TIMEOUT Timed out finishing run."),
            "{who}: {text}"
        );
        assert!(text.contains("Timed out finishing run."), "{who}: {text}");
        assert!(!s.store.run(&key).is_some_and(|r| r.complete), "{who}");
        if who == "ours" {
            assert!(text.contains("wandb sync"), "{text}");
            s.release("file_stream");
            let run_dir = std::fs::read_dir(ran.work.join("wandb"))
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with("-slowfinish1"))
                .expect("the run directory");
            let ran_sync = wandb_sync(
                ours_python,
                &s,
                &ran.work,
                &["--no-skip-online".as_ref(), run_dir.as_os_str()],
            );
            let (out, synced) = (&ran_sync.out, ran_sync.text());
            assert!(out.status.success(), "{synced}");
            // The sync's log, where wandb-core keeps it, with the run's lines.
            let log = debug_sync_log(&ran.work).expect("a debug-sync log");
            assert!(log.contains("slowfinish1"), "{log}");
            let run = s.store.run(&key).expect("the run");
            assert!(run.complete, "{synced}");
            let steps: Vec<Value> = s
                .store
                .history(&key)
                .iter()
                .map(|r| r["x"].clone())
                .collect();
            assert_eq!(
                steps,
                (0..50).map(|i| json!(i)).collect::<Vec<_>>(),
                "{synced}"
            );
        }
    }
}

/// A run stopped from the UI: the file stream's answer says `stopped`, the
/// SDK learns it from `stop_status` and interrupts the script.
#[test]
fn a_run_stopped_on_the_server_stops_the_script() {
    let script = r#"
import time, wandb
run = wandb.init(project="online", id="stopme1", settings=wandb.Settings(x_file_stream_transmit_interval=0.5))
try:
    for i in range(900):
        run.log({"x": i})
        time.sleep(0.1)
    print("never stopped")
except KeyboardInterrupt:
    print("stopped by the server")
run.finish()
"#;
    let python = install_ours().to_path_buf();
    let s = standin(KEY, &[]);
    let key = RunKey::new("standin", "online", "stopme1");
    std::thread::scope(|scope| {
        let ran = scope.spawn(|| run_script(&python, &s, script, KEY, "online-stop-ours"));
        // Stop once rows arrive: the script is then in its loop. Stopped as
        // soon as the run exists, a slow `wandb.init` (a busy machine) got
        // the interrupt before the `try`.
        let started = std::time::Instant::now();
        while s.store.line_count(&key, "wandb-history.jsonl") == 0
            && started.elapsed().as_secs() < 60
        {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        s.stop_run(&key);
        // The script runs under its own limit; this one only adds room
        // for the output to be collected.
        testkit::finished_within(
            || ran.is_finished(),
            testkit::process::LIMIT + std::time::Duration::from_secs(60),
            "the stopped script",
        );
        let ran = ran.join().unwrap();
        assert!(
            ran.text().contains("stopped by the server"),
            "{}",
            ran.text()
        );
    });
    assert!(s.store.run(&key).unwrap().complete);
}

/// A final upload failure is not silent (wandb-core only logs it).
#[test]
fn a_refused_upload_is_reported_to_the_user() {
    let python = install_ours();
    let s = standin(KEY, &["upload:403:1"]);
    let ran = run_script(python, &s, BASIC, KEY, "online-upload403-ours");
    assert!(ran.out.status.success(), "{}", ran.text());
    let key = RunKey::new("standin", "online", "basic1");
    assert!(s.store.run(&key).unwrap().complete);
    assert_eq!(s.store.files(&key).len(), 4, "one of five files refused");
    let text = ran.text();
    assert!(
        text.contains("file not uploaded") && text.contains("403"),
        "{text}"
    );
}

/// `x_skip_transaction_log` online: the run is sent all the same. The
/// log is still the sender's queue (bounded memory), but under a hidden
/// name while the run lasts, and gone afterwards.
#[test]
fn skipping_the_transaction_log_online() {
    let script = r#"
import os, wandb
run = wandb.init(project="online", id="nolog1", settings=wandb.Settings(x_skip_transaction_log=True))
for i in range(100):
    run.log({"x": i})
run_dir = os.path.dirname(run.dir)
print("DURING", sorted(f for f in os.listdir(run_dir) if not f.startswith(".")))
run.finish()
"#;
    let python = install_ours();
    let s = standin(KEY, &[]);
    let ran = run_script(python, &s, script, KEY, "online-nolog-ours");
    assert!(ran.out.status.success(), "{}", ran.text());
    let text = ran.text();
    let during = text
        .lines()
        .find(|l| l.starts_with("DURING"))
        .expect("listing");
    assert!(!during.contains(".wandb"), "{during}");
    let key = RunKey::new("standin", "online", "nolog1");
    assert_eq!(s.store.history(&key).len(), 100);
    assert!(s.store.run(&key).unwrap().complete);
    let left: Vec<PathBuf> = std::fs::read_dir(ran.work.join("wandb"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(".wandb"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
