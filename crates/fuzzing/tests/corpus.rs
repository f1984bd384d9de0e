//! The fuzz smoke: every committed corpus input and every crash the
//! fuzzers ever found (`fuzz/regressions/<target>/`) replayed through its
//! target on the stable toolchain. Seconds, in CI; `cargo fuzz run` (see
//! docs/reliability.md) is where new inputs are found.

use std::path::PathBuf;

fn inputs(dir: &str, target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(dir)
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn every_target_has_a_committed_corpus() {
    for (target, _) in wandb_fuzzing::TARGETS {
        assert!(
            !inputs("corpus", target).is_empty(),
            "no corpus for {target}"
        );
    }
}

fn replay(target: &str) {
    let (_, body) = wandb_fuzzing::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a known target");
    let files: Vec<PathBuf> = inputs("corpus", target)
        .into_iter()
        .chain(inputs("regressions", target))
        .collect();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(outcome.is_ok(), "{target} fails on {}", file.display());
    }
}

#[test]
fn frame() {
    replay("frame");
}

#[test]
fn envelope() {
    replay("envelope");
}

#[test]
fn txlog() {
    replay("txlog");
}

#[test]
fn json() {
    replay("json");
}

#[test]
fn settings() {
    replay("settings");
}

#[test]
fn session() {
    replay("session");
}
