//! `wandb leet` end to end: the real wandb CLI (0.31.0) with our binary
//! installed starts the terminal UI in a pseudo-terminal; the test reads
//! the screen through a terminal emulator (vt100), sends keys, and checks
//! what a user would see. Every process runs in a session of its own and
//! is killed with it past the deadline.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::pty::Tty;

use wandb_leet::synthetic::{self, Spec};

/// Longest any step waits (the CLI's Python start included).
const LIMIT: Duration = Duration::from_secs(60);

/// `wandb leet ARGS…` through the real CLI of `.venv-ours`, which runs our
/// binary (installed there), isolated from the user's settings.
fn wandb_leet(work: &Path, args: &[&str]) -> Command {
    let python = common::install_ours();
    let mut cmd = Command::new(python);
    cmd.args(["-m", "wandb", "leet"])
        .args(args)
        .current_dir(work)
        .env("TERM", "xterm-256color")
        .env("HOME", work)
        .env("WANDB_CONFIG_DIR", work.join(".config"))
        .env("WANDB_MODE", "offline")
        .env("WANDB_ERROR_REPORTING", "false")
        .env_remove("WANDB_SERVICE")
        .env_remove("NO_COLOR");
    cmd
}

#[test]
fn wandb_leet_browses_runs_and_opens_one() {
    let work = testkit::scratch_dir("leet-tui-browse");
    let wandb = work.join("wandb");
    for (id, metrics) in [("alpha", 3), ("beta", 4)] {
        let mut spec = Spec::new(id, 500);
        spec.metrics = metrics;
        synthetic::write_run(&wandb, spec).unwrap();
    }
    let mut tty = Tty::spawn(160, 45, LIMIT, wandb_leet(&work, &["wandb"]));
    tty.wait_for("2 runs");
    tty.wait_for("Metrics (4)"); // beta, the newest (by name), under the cursor
    tty.wait_for(" m3 ");
    // Help, then close it.
    tty.send("?");
    tty.wait_for("pin the run");
    tty.send("x");
    // Pin beta, move to alpha: both charted.
    tty.send(" j");
    tty.wait_for("1 pinned");
    // Filter metrics.
    tty.send("fm0\r");
    tty.wait_for("Metrics (1)");
    // Open alpha.
    tty.send("\r");
    tty.wait_for("run-alpha (alpha) finished");
    tty.wait_for("lr: 0.001");
    tty.send("q");
    let status = tty.exit_status();
    assert!(status.success(), "{status}:\n{}", tty.contents());
}

#[test]
fn wandb_leet_follows_a_run_being_written() {
    let work = testkit::scratch_dir("leet-tui-live");
    let wandb = work.join("wandb");
    let spec = Spec::new("live", 0);
    let mut writer = synthetic::Writer::create(&wandb, spec).unwrap();
    writer.rows(10).unwrap();
    writer.flush().unwrap();
    let log = writer.path();
    let mut tty = Tty::spawn(160, 45, LIMIT, wandb_leet(&work, &[log.to_str().unwrap()]));
    tty.wait_for("run-live (live) running");
    tty.wait_for("10 rows");
    writer.rows(7).unwrap();
    writer.flush().unwrap();
    let shown = tty.wait_for("17 rows");
    assert!(
        shown < Duration::from_secs(2),
        "a new row showed after {shown:?} (the bar is 1 s; the slack is the test's polling)"
    );
    writer.finish(Some(0)).unwrap();
    tty.wait_for("finished");
    tty.send("q");
    let status = tty.exit_status();
    assert!(status.success(), "{status}:\n{}", tty.contents());
}

#[test]
fn wandb_leet_symon_and_config_run_in_a_terminal() {
    let work = testkit::scratch_dir("leet-tui-symon");
    let mut tty = Tty::spawn(
        160,
        45,
        LIMIT,
        wandb_leet(&work, &["symon", "--interval", "200ms"]),
    );
    tty.wait_for("LEET symon");
    tty.wait_for(" 2 samples");
    tty.send("fmemory_p\r");
    tty.wait_for("memory_percent");
    tty.send("q");
    assert!(tty.exit_status().success(), "{}", tty.contents());

    let mut tty = Tty::spawn(160, 45, LIMIT, wandb_leet(&work, &["config"]));
    tty.wait_for("Metrics grid rows");
    // Rows 2 → 3, saved to the shared settings file.
    tty.send("\x1b[Cs");
    tty.wait_for("saved to");
    tty.send("q");
    assert!(tty.exit_status().success(), "{}", tty.contents());
    let saved = std::fs::read_to_string(work.join(".config/wandb-leet.json")).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(saved["metrics_grid"]["rows"], 3, "{saved}");
}

#[test]
fn leet_help_and_errors_are_clear() {
    use testkit::CommandExt as _;
    for args in [
        &["leet", "--help"][..],
        &["leet", "run", "--help"],
        &["leet", "inspect", "--help"],
        &["leet", "symon", "--help"],
        &["leet", "config", "--help"],
    ] {
        let out = Command::new(common::ours())
            .args(args)
            .output_limited()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", common::text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
    // Not a terminal: a clear error, not a garbled screen.
    let work = testkit::scratch_dir("leet-tui-errors");
    let out = Command::new(common::ours())
        .args(["leet", "run"])
        .arg(&work)
        .stdin(Stdio::null())
        .output_limited()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        common::text(&out).contains("needs a terminal"),
        "{}",
        common::text(&out)
    );
    // A remote run is refused with what to do instead.
    let mut tty = Tty::spawn(160, 45, LIMIT, {
        let mut c = Command::new(common::ours());
        c.args([
            "leet",
            "run",
            "--remote-url",
            "https://wandb.example/e/p/runs/r",
        ]);
        c
    });
    tty.wait_for("not supported");
    let status = tty.exit_status();
    assert!(!status.success());
    let text = tty.contents();
    assert!(text.contains("remote runs"), "{text}");
}
