//! Artifacts through our service, against the backend stand-in, beside W&B's
//! wandb-core running the same script: log and wait, the same content
//! again, one file changed, a table, use and download in a second run;
//! multipart uploads; a failing upload and a refused commit; offline
//! artifacts uploaded by sync.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{install_ours, ours, python_script, standin, text};
use testkit::CommandExt as _;
use testkit::{reference_python, scratch_dir};
use wandb_standin::StandIn;

const KEY: &str = "artifactstestkey012345678901234567890123456";

const SCRIPT: &str = testkit::ARTIFACTS_SCRIPT;

fn run(
    python: &Path,
    s: &StandIn,
    script: &str,
    what: &str,
    env: &[(&str, &str)],
) -> (Output, PathBuf) {
    let work = scratch_dir(what);
    let mut cmd = python_script(python, script, &work);
    cmd.env("WANDB_BASE_URL", &s.base_url)
        .env("WANDB_API_KEY", KEY)
        .env("WANDB_MODE", "online")
        .env("WANDB_SILENT", "true");
    for (k, v) in env {
        cmd.env(k, v);
    }
    (cmd.output_limited().unwrap(), work)
}

/// What the stand-in has of an artifact collection, comparable across
/// services (server IDs left out).
fn versions(s: &StandIn, name: &str) -> Vec<String> {
    s.store
        .artifact_versions("standin", "arts", name)
        .iter()
        .map(|v| {
            let mut aliases = v.aliases.clone();
            aliases.sort();
            let files: Vec<String> = s
                .store
                .artifact_files(v.id)
                .iter()
                .map(|(n, md5, _)| format!("{n}={md5}"))
                .collect();
            format!(
                "v{:?} {} {} aliases={aliases:?} tags={:?} files={files:?} size={} meta={:?} desc={:?}",
                v.version_index,
                v.type_name,
                v.digest,
                v.tags,
                v.size,
                v.metadata.as_deref().map(|m| serde_json::from_str::<serde_json::Value>(m).unwrap()),
                v.description
            )
        })
        .collect()
}

fn count(s: &StandIn, op: &str) -> usize {
    s.store
        .requests()
        .iter()
        .filter(|r| r.operation.as_deref() == Some(op))
        .count()
}

#[test]
fn log_use_and_download_match_wandb_core() {
    let py = install_ours();
    let (mine, theirs) = (standin(KEY, &[]), standin(KEY, &[]));
    let (out, _) = run(py, &mine, SCRIPT, "art-ours", &[]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let (ref_out, _) = run(reference_python(), &theirs, SCRIPT, "art-ref", &[]);
    assert!(ref_out.status.success(), "{}", text(&ref_out));
    for line in ["FIRST v0", "AGAIN v0", "CHANGED v1", "USED v1 changed 3072"] {
        assert!(t.contains(line), "ours: {line:?} in {t}");
    }
    // Staged copies are removed once saved (the SDK leaves one of its own
    // per table behind, with either service).
    let staged = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("STAGED"))
            .map(String::from)
    };
    assert_eq!(staged(&t), staged(&text(&ref_out)));
    assert_eq!(staged(&t).as_deref(), Some("STAGED 1"));
    assert_eq!(versions(&mine, "ds"), versions(&theirs, "ds"));
    assert_eq!(versions(&mine, "ds").len(), 2);
    assert_eq!(
        versions(&mine, "run-artrun1-tbl"),
        versions(&theirs, "run-artrun1-tbl")
    );
    // a.txt, b.bin, the table, the changed a.txt; three manifests.
    assert_eq!(count(&mine, "artifact_upload"), 4);
    assert_eq!(
        count(&mine, "artifact_upload"),
        count(&theirs, "artifact_upload")
    );
    assert_eq!(
        count(&mine, "artifact_manifest_upload"),
        count(&theirs, "artifact_manifest_upload")
    );
    // The download read the files from the local cache the service filled.
    assert_eq!(
        count(&mine, "artifact_download"),
        count(&theirs, "artifact_download")
    );
    assert!(t.contains("LINKED v0"), "{t}");
    assert!(t.contains("LINKREQ 0 ''"), "{t}");
    let linkreq = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("LINKREQ"))
            .map(String::from)
    };
    assert_eq!(linkreq(&t), linkreq(&text(&ref_out)));
    assert_eq!(
        mine.store
            .artifact_links("standin", "arts", "portfolio")
            .len(),
        1
    );
    assert_eq!(
        mine.store
            .artifact_links("standin", "arts", "portfolio")
            .len(),
        theirs
            .store
            .artifact_links("standin", "arts", "portfolio")
            .len()
    );
    let v1 = &mine.store.artifact_versions("standin", "arts", "ds")[1];
    assert!(!mine.store.artifact_uses(v1.id).is_empty());
    // The artifact's entity and project go with each use when the server
    // has USE_ARTIFACT_WITH_ENTITY_AND_PROJECT_INFORMATION (the stand-in
    // advertises it), as wandb-core sends them.
    let origins = |s: &StandIn| {
        let v = &s.store.artifact_versions("standin", "arts", "ds")[1];
        s.store.artifact_use_origins(v.id)
    };
    assert_eq!(origins(&mine), origins(&theirs));
    let advertised = common::standin_config(KEY, &[])
        .features
        .iter()
        .any(|(name, on)| *on && name == "USE_ARTIFACT_WITH_ENTITY_AND_PROJECT_INFORMATION");
    let expected = if advertised {
        (Some("standin".to_string()), Some("arts".to_string()))
    } else {
        (None, None)
    };
    assert!(
        origins(&mine).iter().all(|o| *o == expected),
        "{:?}",
        origins(&mine)
    );
    let manifest = mine.store.artifact_manifest(v1.id).unwrap();
    assert_eq!(manifest["storagePolicy"], "wandb-storage-policy-v1");
    assert!(manifest["contents"]["sub/b.bin"]["birthArtifactID"].is_string());
}

#[test]
fn multipart_uploads_and_failures() {
    let py = install_ours();
    // Parts of 512 KiB for files from 1 MiB on, and the first two file PUTs
    // failing (retried).
    let env = [
        ("WANDB_X_ARTIFACT_MULTIPART_THRESHOLD", "1048576"),
        ("WANDB_X_ARTIFACT_MULTIPART_PART_SIZE", "524288"),
    ];
    let s = standin(KEY, &["artifact_upload:500:2"]);
    let script = r#"
import wandb
open("big.bin", "wb").write(bytes(range(251)) * 12000)
open("small.txt", "w").write("small\n")
run = wandb.init(project="arts", id="bigrun")
art = wandb.Artifact("big", "model")
art.add_file("big.bin")
art.add_file("small.txt")
run.log_artifact(art)
art.wait()
print("SAVED", art.version)
run.finish()
"#;
    let (out, work) = run(py, &s, script, "art-multipart", &env);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("SAVED v0"), "{}", text(&out));
    let v = &s.store.artifact_versions("standin", "arts", "big")[0];
    let files = s.store.artifact_files(v.id);
    let big = files.iter().find(|f| f.0 == "big.bin").unwrap();
    let content = std::fs::read(work.join("big.bin")).unwrap();
    assert_eq!(s.store.artifact_blob(&big.1).unwrap(), content);
    assert_eq!(
        count(&s, "artifact_part_upload"),
        6,
        "3 000 000 bytes in 512 KiB parts"
    );

    // A commit the server refuses: the SDK's wait() gets the error, and
    // the run still finishes.
    let s = standin(KEY, &["CommitArtifact:400"]);
    let script = r#"
import wandb
open("f.txt", "w").write("f\n")
run = wandb.init(project="arts", id="refused")
art = wandb.Artifact("nope", "dataset")
art.add_file("f.txt")
run.log_artifact(art)
try:
    art.wait()
    print("NO ERROR")
except ValueError as e:
    print("ERROR", e)
run.finish()
"#;
    let (out, _) = run(py, &s, script, "art-refused", &[]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("ERROR ArtifactSaver.commitArtifact"), "{t}");
    assert!(
        s.store
            .artifact_versions("standin", "arts", "nope")
            .is_empty()
    );
}

#[test]
fn incremental_artifacts_match_wandb_core() {
    let py = install_ours();
    let script = r#"
import wandb
open("a.txt", "w").write("a\n")
open("c.txt", "w").write("c\n")
run = wandb.init(project="arts", id="incrun")
full = wandb.Artifact("inc", "dataset")
full.add_file("a.txt")
run.log_artifact(full)
full.wait()
more = wandb.Artifact("inc", "dataset", incremental=True)
more.add_file("c.txt")
run.log_artifact(more)
more.wait()
print("VERSIONS", full.version, more.version)
run.finish()
"#;
    let (mine, theirs) = (standin(KEY, &[]), standin(KEY, &[]));
    let (out, _) = run(py, &mine, script, "art-inc-ours", &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("VERSIONS v0 v1"), "{}", text(&out));
    let (out, _) = run(reference_python(), &theirs, script, "art-inc-ref", &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(versions(&mine, "inc"), versions(&theirs, "inc"));
    let ops = |s: &StandIn| {
        s.store
            .requests()
            .iter()
            .filter_map(|r| r.operation.clone())
            .filter(|o| o.contains("Manifest"))
            .collect::<Vec<_>>()
    };
    assert_eq!(ops(&mine), ops(&theirs));
    assert!(
        ops(&mine).iter().any(|o| o == "UpdateArtifactManifest"),
        "{:?}",
        ops(&mine)
    );
}

#[test]
fn xxh128_artifacts_are_sent_as_md5_like_wandb_core() {
    let py = install_ours();
    let script = r#"
import wandb
open("a.txt", "w").write("hello\n")
open("b.txt", "w").write("world\n")
run = wandb.init(project="arts", id="xxhrun")
art = wandb.Artifact("xx", "dataset", digest_algorithm="XXH128")
art.add_file("a.txt")
art.add_file("b.txt")
run.log_artifact(art)
art.wait()
print("SAVED", art.version)
run.finish()
"#;
    let (mine, theirs) = (standin(KEY, &[]), standin(KEY, &[]));
    let (out, _) = run(py, &mine, script, "art-xxh-ours", &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("SAVED v0"), "{}", text(&out));
    let (out, _) = run(reference_python(), &theirs, script, "art-xxh-ref", &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(versions(&mine, "xx"), versions(&theirs, "xx"));
    let v = &mine.store.artifact_versions("standin", "arts", "xx")[0];
    let manifest = mine.store.artifact_manifest(v.id).unwrap();
    // MD5 of "hello\n", and no XXH128 marker left.
    assert_eq!(
        manifest["contents"]["a.txt"]["digest"],
        "sZRqySSS0jR8YjW00mERhA=="
    );
    assert!(manifest["contents"]["a.txt"].get("extra").is_none());
}

#[test]
fn a_few_hundred_megabytes_go_up_in_parts() {
    let py = install_ours();
    let s = standin(KEY, &[]);
    // 300 MB from 100 MiB on: three parts of the default 100 MiB.
    let env = [("WANDB_X_ARTIFACT_MULTIPART_THRESHOLD", "104857600")];
    let script = r#"
import wandb
chunk = bytes(range(256)) * 4096
with open("ckpt.bin", "wb") as f:
    for i in range(286):
        f.write(bytes([i % 256]) + chunk[1:])
run = wandb.init(project="arts", id="ckptrun")
art = wandb.Artifact("ckpt", "model")
art.add_file("ckpt.bin")
run.log_artifact(art)
art.wait()
print("SAVED", art.version)
run.finish()
"#;
    let (out, work) = run(py, &s, script, "art-300mb", &env);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("SAVED v0"), "{}", text(&out));
    assert_eq!(count(&s, "artifact_part_upload"), 3);
    let v = &s.store.artifact_versions("standin", "arts", "ckpt")[0];
    let (_, md5, _) = &s.store.artifact_files(v.id)[0];
    let stored = s.store.artifact_blob(md5).unwrap();
    let local = std::fs::read(work.join("ckpt.bin")).unwrap();
    assert_eq!(stored.len(), local.len());
    assert!(stored == local, "the parts add up to the file");
}

#[test]
fn offline_artifacts_are_uploaded_by_sync() {
    let py = install_ours();
    let script = r#"
import wandb
open("f.txt", "w").write("offline file\n")
run = wandb.init(project="arts", id="offart")
art = wandb.Artifact("offds", "dataset")
art.add_file("f.txt")
run.log_artifact(art)
run.finish()
"#;
    let work = scratch_dir("art-offline");
    let out = python_script(py, script, &work)
        .env("WANDB_MODE", "offline")
        .output_limited()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let s = standin(KEY, &[]);
    let out = std::process::Command::new(ours())
        .arg("sync")
        .arg(work.join("wandb"))
        .env("WANDB_BASE_URL", &s.base_url)
        .env("WANDB_API_KEY", KEY)
        .output_limited()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let v = s.store.artifact_versions("standin", "arts", "offds");
    assert_eq!(v.len(), 1, "{}", text(&out));
    let files = s.store.artifact_files(v[0].id);
    assert_eq!(
        s.store.artifact_blob(&files[0].1).unwrap(),
        b"offline file\n"
    );
}
