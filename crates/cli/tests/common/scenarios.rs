//! Comparing two `scenarios.py` manifests (testkit): our runs of every
//! scenario against the reference's, under the rules every SDK-facing
//! suite shares (sdk_dropin.rs for wandb 0.31.0, python_wheel.rs for older
//! releases).

use serde_json::Value;

use super::stable;

/// Keys whose values differ between any two runs of the same script.
pub fn volatile(key: &str) -> bool {
    key == "_runtime"
        || key == "_timestamp"
        || key.starts_with("_wandb")
        || key.ends_with("artifact_path")
}

pub fn runs_of<'a>(manifest: &'a Value, scenario: &str) -> Vec<&'a Value> {
    manifest["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["scenario"] == scenario)
        .collect()
}

/// Compares our runs of every scenario with the reference's; returns the
/// differences found.
pub fn compare(reference: &Value, ours: &Value, exit_codes_from_teardown: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    let scenarios: Vec<String> = {
        let mut s: Vec<String> = reference["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["scenario"].as_str().unwrap().to_string())
            .collect();
        s.dedup();
        s
    };
    for scenario in &scenarios {
        let (theirs, mine) = (runs_of(reference, scenario), runs_of(ours, scenario));
        if theirs.len() != mine.len() {
            problems.push(format!(
                "{scenario}: {} runs, reference {}",
                mine.len(),
                theirs.len()
            ));
            continue;
        }
        for (i, (t, m)) in theirs.iter().zip(&mine).enumerate() {
            let at = format!("{scenario}[{i}]");
            let mut check = |what: &str, a: Value, b: Value| {
                if a != b {
                    problems.push(format!(
                        "{at}: {what} differs\n  reference: {a}\n  ours:      {b}"
                    ));
                }
            };
            // Whether a short run gets a stats sample depends on timing (the
            // monitor is compared in tests/system_metrics.rs).
            let kinds = |r: &Value| {
                let mut k: Vec<String> = r["counts"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| *k != "stats")
                    .cloned()
                    .collect();
                k.sort();
                Value::from(k)
            };
            check("record kinds", kinds(t), kinds(m));
            let rows = |r: &Value| {
                Value::from(
                    r["history"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| stable(v, &volatile))
                        .collect::<Vec<_>>(),
                )
            };
            check("history rows", rows(t), rows(m));
            check(
                "final summary",
                stable(&t["summary"], &volatile),
                stable(&m["summary"], &volatile),
            );
            check(
                "config",
                stable(&t["config"], &volatile),
                stable(&m["config"], &volatile),
            );
            check(
                "output.log",
                t["output_log"].clone(),
                m["output_log"].clone(),
            );
            check(
                "requirements.txt",
                t["requirements"].clone(),
                m["requirements"].clone(),
            );
            check("script exit code", t["rc"].clone(), m["rc"].clone());
            // W&B's service writes no config.yaml offline; ours does, and
            // PyYAML must read back exactly the config.
            if let Some(yaml) = m["config_yaml"].as_object() {
                for (key, value) in m["config"].as_object().unwrap() {
                    let read = match key.strip_prefix("_wandb.") {
                        Some(inner) => &yaml["_wandb"]["value"][inner],
                        None if volatile(key) => continue,
                        None => &yaml[key.as_str()]["value"],
                    };
                    check(
                        &format!("config.yaml read back, {key}"),
                        value.clone(),
                        read.clone(),
                    );
                }
            }
            if exit_codes_from_teardown.contains(&scenario.as_str()) {
                check(
                    "exit records",
                    Value::from(1),
                    Value::from(m["exit_codes"].as_array().unwrap().len()),
                );
            } else {
                check(
                    "exit codes",
                    t["exit_codes"].clone(),
                    m["exit_codes"].clone(),
                );
            }
            check(
                "nums 1..N",
                Value::from(true),
                m["nums_consecutive"].clone(),
            );
            if !m["header_producer"]
                .as_str()
                .unwrap()
                .contains("wandb-core-rs")
            {
                problems.push(format!("{at}: the log was not written by wandb-core-rs"));
            }
        }
    }
    problems
}
