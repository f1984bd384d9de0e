//! The benchmark suite in miniature (N = 1000, both services, one run), so
//! it cannot rot. Timings are not asserted: CI machines vary. What is
//! asserted is that it runs to the end, every log held every row (the
//! suite fails otherwise), and the report has its sections.

use std::process::Command;
use testkit::CommandExt as _;

#[test]
fn quick_benchmark_runs_both_services_and_writes_a_report() {
    let report = quick(&[], "report.md");
    for section in [
        "## Raw-protocol ingest",
        "## Through the Python SDK",
        "## Start-up and idle",
        "## The machine's limits",
        "## Against the bar",
    ] {
        assert!(
            report.contains(section),
            "report lacks {section}:\n{report}"
        );
    }
    assert!(report.contains("| rows/s |"), "{report}");
}

/// `wandb-bench FLAGS --quick` with our debug build beside W&B's; returns
/// the report it wrote (`name`).
fn quick(flags: &[&str], name: &str) -> String {
    let ours = testkit::profile_dir().join("wandb-core");
    assert!(
        ours.exists(),
        "{} is built with the workspace",
        ours.display()
    );
    let out = testkit::scratch_dir(&format!("bench-smoke{}", flags.concat()));
    let status = Command::new(env!("CARGO_BIN_EXE_wandb-bench"))
        .args(flags)
        .arg("--quick")
        .arg("--ours")
        .arg(&ours)
        .arg("--python")
        .arg(testkit::reference_python())
        .arg("--out")
        .arg(&out)
        .status_limited()
        .expect("run wandb-bench");
    assert!(status.success(), "wandb-bench {flags:?} --quick failed");
    std::fs::read_to_string(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn quick_online_suite_checks_the_backend_and_reports_every_figure() {
    // The suite fails unless the backend stored every row, console line,
    // system metrics and the finish of each run.
    let report = quick(&["--online-suite"], "online-suite.md");
    for figure in [
        "## SDK, 2000 rows, backend latency 100 ms",
        "## raw, 2000 rows, backend latency 100 ms",
        "| service CPU per 100k rows (s) |",
        "| requests: file_stream |",
        "| bytes sent, MiB (decompressed) |",
        "`run.log` → row on the backend, median (s)",
        "## Against the bars",
    ] {
        assert!(report.contains(figure), "lacks {figure}:\n{report}");
    }
}

#[test]
fn quick_scaling_runs_several_clients_and_plots() {
    let report = quick(&["--scaling"], "scaling.md");
    for n in ["| 1 |", "| 2 |", "| 4 |"] {
        assert!(report.contains(n), "lacks the row {n}:\n{report}");
    }
    assert!(report.contains("scaling-throughput.svg"), "{report}");
}
