//! The stand-in proven by W&B's own service: the real SDK with the
//! reference wandb-core completes runs against it, and what the stand-in
//! stored is the run.

use std::process::{Command, Output};

use serde_json::json;
use testkit::CommandExt as _;
use wandb_standin::{Config, Inject, RunKey, StandIn, Store};

const KEY: &str = "standinkeystandinkeystandinkeystandinkey";

fn standin(inject: Vec<Inject>) -> StandIn {
    let config = Config {
        api_key: Some(KEY.into()),
        inject,
        ..Default::default()
    };
    StandIn::spawn(config, 0, Store::open(None).unwrap()).unwrap()
}

/// Runs `script` with the reference SDK (and so W&B's wandb-core) online.
fn run_reference(standin: &StandIn, script: &str, key: &str) -> Output {
    let work = testkit::scratch_dir("standin-ref");
    Command::new(testkit::reference_python())
        .args(["-c", script])
        .current_dir(&work)
        .env_remove("WANDB_SERVICE")
        .env("WANDB_BASE_URL", &standin.base_url)
        .env("WANDB_API_KEY", key)
        .env("WANDB_MODE", "online")
        .env("WANDB_ERROR_REPORTING", "false")
        .env("WANDB_SILENT", "true")
        .env("HOME", &work)
        .env("WANDB_DIR", &work)
        .output_limited()
        .unwrap()
}

const BASIC: &str = r#"
import wandb
run = wandb.init(project="proof", id="proofrun1", config={"lr": 0.1, "opt": {"name": "adam"}})
for i in range(5):
    run.log({"loss": 1 / (i + 1), "i": i})
print("hello console")
run.summary["best"] = 0.2
run.finish()
"#;

#[test]
fn the_reference_completes_a_run_against_the_standin() {
    let s = standin(Vec::new());
    let out = run_reference(&s, BASIC, KEY);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let key = RunKey::new("standin", "proof", "proofrun1");
    let run = s.store.run(&key).expect("the run was created");
    assert!(
        run.complete,
        "the last file stream request completed the run"
    );
    assert_eq!(run.exitcode, Some(0));
    assert_eq!(run.config["lr"], json!({"value": 0.1}));
    assert_eq!(run.config["opt"], json!({"value": {"name": "adam"}}));
    assert!(run.config["_wandb"]["value"]["t"].is_object());
    assert_eq!(run.summary["best"], json!(0.2));

    let history = s.store.history(&key);
    assert_eq!(history.len(), 5);
    for (i, row) in history.iter().enumerate() {
        assert_eq!(row["_step"], json!(i));
        assert_eq!(row["i"], json!(i));
    }
    assert!(
        s.store
            .console(&key)
            .iter()
            .any(|l| l.ends_with("hello console"))
    );
    let files: Vec<String> = s.store.files(&key).into_iter().map(|f| f.path).collect();
    for f in [
        "config.yaml",
        "output.log",
        "requirements.txt",
        "wandb-metadata.json",
        "wandb-summary.json",
    ] {
        assert!(files.contains(&f.to_string()), "{f} uploaded: {files:?}");
    }
    assert_eq!(s.store.uploaded(&key).len(), files.len());

    // No upload carried credentials; everything else did.
    for r in s.store.requests() {
        match r.operation.as_deref() {
            Some("upload") => assert_eq!(r.auth, None),
            _ => assert_eq!(r.auth.as_deref(), Some("Basic"), "{r:?}"),
        }
    }
}

#[test]
fn injected_failures_are_retried_by_the_reference() {
    let s = standin(vec![
        "UpsertBucket:500:1".parse().unwrap(),
        "file_stream:429:1:1".parse().unwrap(),
        "upload:500:1".parse().unwrap(),
    ]);
    let out = run_reference(&s, BASIC, KEY);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = RunKey::new("standin", "proof", "proofrun1");
    let run = s.store.run(&key).unwrap();
    assert!(run.complete);
    assert_eq!(s.store.history(&key).len(), 5);
    let statuses: Vec<(String, u16)> = s
        .store
        .requests()
        .into_iter()
        .map(|r| (r.operation.unwrap_or_default(), r.status))
        .collect();
    for failed in [("UpsertBucket", 500), ("file_stream", 429), ("upload", 500)] {
        assert!(
            statuses.contains(&(failed.0.to_string(), failed.1)),
            "{failed:?} served: {statuses:?}"
        );
    }
}

#[test]
fn a_bad_key_fails_init_with_the_servers_message() {
    let s = standin(Vec::new());
    let out = run_reference(&s, BASIC, "wrongkeywrongkeywrongkeywrongkeywrongkey");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unauthorized"), "{err}");
    assert!(s.store.runs().is_empty());
}

/// What the stand-in stored for the artifacts scenario.
fn check_artifacts(s: &StandIn, output: &str) {
    assert!(output.contains("FIRST v0"), "{output}");
    assert!(
        output.contains("AGAIN v0"),
        "same content, same version: {output}"
    );
    assert!(output.contains("CHANGED v1"), "{output}");
    assert!(output.contains("USED v1 changed 3072"), "{output}");
    assert!(output.contains("LINKED v0"), "{output}");
    assert!(output.contains("LINKREQ 0 ''"), "{output}");
    assert_eq!(
        s.store.artifact_links("standin", "arts", "portfolio").len(),
        1
    );
    assert_eq!(
        s.store
            .artifact_links("standin", "arts", "portfolio2")
            .len(),
        1
    );
    let versions = s.store.artifact_versions("standin", "arts", "ds");
    assert_eq!(versions.len(), 2, "{versions:?}");
    let (v0, v1) = (&versions[0], &versions[1]);
    assert_eq!((v0.version_index, v1.version_index), (Some(0), Some(1)));
    assert_eq!(v0.tags, ["t1"]);
    let metadata: serde_json::Value =
        serde_json::from_str(v0.metadata.as_deref().unwrap_or("null")).unwrap();
    assert_eq!(metadata, json!({"k": 1}));
    assert!(v1.aliases.contains(&"latest".to_string()), "{v1:?}");
    assert!(v0.aliases.contains(&"best".to_string()), "{v0:?}");
    assert_eq!((v0.file_count, v1.file_count), (2, 2));
    // b.bin was stored once: v1's entry was born in v0.
    let files = s.store.artifact_files(v1.id);
    let b = files.iter().find(|f| f.0 == "sub/b.bin").unwrap();
    assert_eq!(b.2, v0.id, "{files:?}");
    let a = files.iter().find(|f| f.0 == "a.txt").unwrap();
    assert_eq!(s.store.artifact_blob(&a.1).unwrap(), b"changed\n");
    let uploads = s
        .store
        .requests()
        .iter()
        .filter(|r| r.operation.as_deref() == Some("artifact_upload"))
        .count();
    // a.txt, b.bin, the table, changed a.txt.
    assert_eq!(uploads, 4);
    let tables = s
        .store
        .artifact_versions("standin", "arts", "run-artrun1-tbl");
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0].type_name, "run_table");
    assert!(
        !s.store.artifact_uses(v1.id).is_empty(),
        "the second run used v1"
    );
}

#[test]
fn the_reference_logs_uses_and_downloads_artifacts_with_the_standin() {
    let s = standin(Vec::new());
    let out = run_reference(&s, testkit::ARTIFACTS_SCRIPT, KEY);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    check_artifacts(&s, &text);
}
