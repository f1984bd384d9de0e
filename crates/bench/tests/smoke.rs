//! The benchmark suite in miniature (N = 1000, both services, one run), so
//! it cannot rot. Timings are not asserted: CI machines vary. What is
//! asserted is that it runs to the end, every log held every row (the
//! suite fails otherwise), and the report has its sections.

use std::process::Command;
use testkit::CommandExt as _;

#[test]
fn quick_benchmark_runs_both_services_and_writes_a_report() {
    let ours = testkit::profile_dir().join("wandb-core");
    assert!(
        ours.exists(),
        "{} is built with the workspace",
        ours.display()
    );
    let out = testkit::scratch_dir("bench-smoke");
    let status = Command::new(env!("CARGO_BIN_EXE_wandb-bench"))
        .arg("--quick")
        .arg("--ours")
        .arg(&ours)
        .arg("--python")
        .arg(testkit::reference_python())
        .arg("--out")
        .arg(&out)
        .status_limited()
        .expect("run wandb-bench");
    assert!(status.success(), "wandb-bench --quick failed");
    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md written");
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
