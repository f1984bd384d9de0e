//! The stand-in proven by W&B's own service: the real SDK with the
//! reference wandb-core completes runs against it, and what the stand-in
//! stored is the run.

use std::process::{Command, Output};

use serde_json::json;
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
        .output()
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
