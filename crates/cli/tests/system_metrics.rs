//! System metrics through the real SDK: our monitor samples at the
//! configured cadence, records the keys W&B's wandb-core records on the
//! same machine with sane values, answers `get_system_metrics`, describes
//! the machine in the second environment record, pauses and resumes, and
//! (online) sends samples as `wandb-events.jsonl` lines.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{install_ours, ours, python_script, text};
use serde_json::Value;
use testkit::CommandExt as _;
use testkit::{reference_python, scratch_dir};

const SCRIPT: &str = r#"
import json, time, wandb
run = wandb.init(project="sysmon", mode="offline", settings=wandb.Settings(
    x_stats_sampling_interval=0.5, x_stats_buffer_size=3))
t = time.time()
run.log({"before": 1})
while time.time() - t < 2.6:
    sum(range(20000))
print("BUFFER " + json.dumps({k: len(v) for k, v in run._system_metrics.items()}))
iface = run._interface
iface.publish_pause()
time.sleep(1.6)
iface.publish_resume()
time.sleep(0.3)
print("WALL", time.time() - t)
run.log({"after": 1})
run.finish()
"#;

struct Ran {
    out: Output,
    work: PathBuf,
}

impl Ran {
    fn text(&self) -> String {
        text(&self.out)
    }

    fn run_dir(&self) -> PathBuf {
        std::fs::read_dir(self.work.join("wandb"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("offline-run-")
            })
            .expect("a run directory")
    }

    /// The run's records of one type, as `wandb-core inspect` prints them.
    fn records(&self, kind: &str) -> Vec<Value> {
        let log = std::fs::read_dir(self.run_dir())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "wandb"))
            .unwrap();
        let out = Command::new(ours())
            .args(["inspect", "--type", kind])
            .arg(&log)
            .output_limited()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["record"][kind].clone())
            .collect()
    }
}

fn run(python: &Path, what: &str) -> Ran {
    let work = scratch_dir(what);
    let out = python_script(python, SCRIPT, &work)
        .env("WANDB_MODE", "offline")
        .output_limited()
        .unwrap();
    let ran = Ran { out, work };
    assert!(ran.out.status.success(), "{what}: {}", ran.text());
    ran
}

fn seconds(ts: &Value) -> f64 {
    let text = ts.as_str().unwrap();
    seconds_of_day(text).unwrap_or_else(|| panic!("timestamp {text}"))
}

/// `2026-11-26T11:34:15.351816066Z` → seconds of the day (enough for gaps).
fn seconds_of_day(s: &str) -> Option<f64> {
    let time = s.split('T').nth(1)?.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let sec: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + sec)
}

fn keys(stats: &[Value]) -> BTreeSet<String> {
    stats
        .iter()
        .flat_map(|s| s["item"].as_array().unwrap().iter())
        .map(|i| i["key"].as_str().unwrap().to_string())
        .collect()
}

fn values(stats: &[Value], key: &str) -> Vec<f64> {
    stats
        .iter()
        .filter_map(|s| {
            s["item"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["key"] == key)
                .map(|i| i["value_json"].as_str().unwrap().parse::<f64>().unwrap())
        })
        .collect()
}

#[test]
fn samples_keys_values_buffer_environment_and_pause() {
    let ours_run = run(install_ours(), "sysmon-ours");
    let theirs_run = run(reference_python(), "sysmon-ref");
    let (mine, theirs) = (ours_run.records("stats"), theirs_run.records("stats"));

    // The same keys as W&B's monitor on this machine (no NVML here means
    // no GPU keys for either; with a GPU both would have them).
    assert_eq!(
        keys(&mine),
        keys(&theirs),
        "stats keys differ from wandb-core's"
    );
    assert!(!keys(&mine).iter().any(|k| k.starts_with("gpu.")) || nvml_present());

    // Cadence: a sample at once, then every 0.5 s; none while paused, one
    // right after resuming.
    let times: Vec<f64> = mine.iter().map(|s| seconds(&s["timestamp"])).collect();
    assert!(times.len() >= 6, "{} samples: {times:?}", times.len());
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let pauses = gaps.iter().filter(|g| **g > 1.2).count();
    assert_eq!(pauses, 1, "one pause in {gaps:?}");
    for g in gaps.iter().filter(|g| **g <= 1.2) {
        assert!((0.35..=0.75).contains(g), "gap {g} in {gaps:?}");
    }

    // Sane values.
    for key in [
        "cpu",
        "memory_percent",
        "proc.memory.percent",
        "disk./.usagePercent",
    ] {
        let v = values(&mine, key);
        assert!(!v.is_empty(), "{key} missing");
        assert!(v.iter().all(|x| (0.0..=100.0).contains(x)), "{key}: {v:?}");
    }
    assert!(
        values(&mine, "cpu").iter().any(|x| *x > 5.0),
        "a busy loop shows"
    );
    let all_keys = keys(&mine);
    let counters: Vec<&String> = all_keys
        .iter()
        .filter(|k| k.starts_with("network.") || k.ends_with(".in") || k.ends_with(".out"))
        .collect();
    assert!(counters.len() >= 3, "{counters:?}");
    for key in counters {
        let v = values(&mine, key);
        // From the monitor's start, not since boot (what I/O happened
        // between its baseline and the first sample may show: the machine
        // is busy with other tests). Disk counters are in MB, network
        // counters in bytes.
        let bound = if key.starts_with("network.") {
            1e6
        } else {
            1.0
        };
        assert!(v[0] < bound, "{key} counts from the start: {v:?}");
        assert!(v.windows(2).all(|w| w[1] >= w[0]), "{key} decreases: {v:?}");
    }
    assert!(values(&mine, "proc.memory.rssMB")[0] > 1.0);
    assert!(values(&mine, "proc.cpu.threads")[0] >= 1.0);

    // get_system_metrics: the last 3 samples of each metric.
    let buffer = ours_run
        .text()
        .lines()
        .find_map(|l| l.strip_prefix("BUFFER "))
        .map(|j| serde_json::from_str::<serde_json::Map<String, Value>>(j).unwrap())
        .expect("buffer printed");
    assert!(buffer.len() >= 10, "{buffer:?}");
    assert!(buffer.values().all(|n| n.as_u64() == Some(3)), "{buffer:?}");

    // The machine, in the second environment record of the same writer.
    let envs = ours_run.records("environment");
    assert_eq!(envs.len(), 2, "{envs:?}");
    let hw = &envs[1];
    assert!(hw["cpu_count"].as_u64().unwrap() >= 1, "{hw}");
    assert!(hw["cpu_count_logical"].as_u64().unwrap() >= 1);
    assert!(
        hw["memory"]["total"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert!(
        hw["disk"]["/"]["total"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert_eq!(hw["writer_id"], envs[0]["writer_id"]);
    let their_envs = theirs_run.records("environment");
    let fields = |e: &Value| {
        e.as_object()
            .unwrap()
            .keys()
            .filter(|k| !k.starts_with('_') && *k != "num")
            .cloned()
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        fields(hw),
        fields(&their_envs[1]),
        "hardware facts differ in kind"
    );

    // The run clock stops while the run is paused, as wandb-core's: between
    // the row before and the row after the 1.6 s pause, `_runtime` grows by
    // the wall time between them less the pause, with both services.
    let clock = |r: &Ran| {
        let runtimes: Vec<f64> = r
            .records("history")
            .iter()
            .map(|row| {
                row["item"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|i| i["key"] == "_runtime" || i["nested_key"][0] == "_runtime")
                    .map(|i| i["value_json"].as_str().unwrap().parse::<f64>().unwrap())
                    .expect("_runtime in the row")
            })
            .collect();
        let wall = r
            .text()
            .lines()
            .find_map(|l| l.strip_prefix("WALL "))
            .map(|w| w.trim().parse::<f64>().unwrap())
            .expect("wall time printed");
        (runtimes[runtimes.len() - 1] - runtimes[0], wall)
    };
    for (who, r) in [("ours", &ours_run), ("reference", &theirs_run)] {
        let (counted, wall) = clock(r);
        assert!(
            counted < wall - 1.0 && counted > wall - 2.2,
            "{who}: _runtime grew {counted} s in {wall} s with a 1.6 s pause"
        );
    }

    // Without NVML: no error anywhere.
    let core_log =
        std::fs::read_to_string(ours_run.run_dir().join("logs/debug-core.log")).unwrap_or_default();
    assert!(
        !core_log.contains("\"ERROR\""),
        "errors in debug-core.log:\n{core_log}"
    );
}

fn nvml_present() -> bool {
    [
        "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
        "/usr/lib64/libnvidia-ml.so.1",
    ]
    .iter()
    .any(|p| Path::new(p).exists())
}

#[test]
fn samples_reach_the_file_stream_online() {
    use wandb_standin::{Config, RunKey, StandIn, Store};
    let key = "sysmonkeysysmonkeysysmonkeysysmonkey0123";
    let s = StandIn::spawn(
        Config {
            api_key: Some(key.into()),
            ..Default::default()
        },
        0,
        Store::open(None).unwrap(),
    )
    .unwrap();
    let work = scratch_dir("sysmon-online");
    let script = r#"
import time, wandb
run = wandb.init(project="sysmon", id="events1", settings=wandb.Settings(x_stats_sampling_interval=0.5))
time.sleep(2.2)
run.finish()
"#;
    let out = Command::new(install_ours())
        .args(["-c", script])
        .current_dir(&work)
        .env_remove("WANDB_SERVICE")
        .env("WANDB_BASE_URL", &s.base_url)
        .env("WANDB_API_KEY", key)
        .env("WANDB_MODE", "online")
        .env("WANDB_ERROR_REPORTING", "false")
        .env("HOME", &work)
        .env("WANDB_DIR", &work)
        .output_limited()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = RunKey::new("standin", "sysmon", "events1");
    let events = s.store.events(&run);
    assert!(events.len() >= 4, "{events:?}");
    for e in &events {
        assert_eq!(e["_wandb"], true);
        assert!(e["_timestamp"].as_f64().unwrap() > 1.7e9);
        assert!(e["_runtime"].as_f64().unwrap() >= 0.0);
        assert!(e["system.memory_percent"].as_f64().is_some(), "{e}");
    }
    let metadata = s
        .store
        .file_content(&run, "wandb-metadata.json")
        .expect("wandb-metadata.json uploaded");
    let meta: Value = serde_json::from_slice(&metadata).unwrap();
    assert!(meta["cpu_count"].as_u64().unwrap() >= 1, "{meta}");
    assert!(meta["memory"]["total"].is_string(), "{meta}");
    assert!(
        meta["startedAt"].is_string() && meta["host"].is_string(),
        "{meta}"
    );
}

#[test]
fn wandb_core_monitor_prints_samples() {
    let out = Command::new(ours())
        .args(["monitor", "-n", "2", "--interval", "0.2", "--json"])
        .output_limited()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("# "), "{text}");
    let samples: Vec<Value> = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(samples.len(), 2, "{text}");
    assert!(samples[0].get("cpu").is_none(), "a rate needs two samples");
    assert!(samples[1]["cpu"].as_f64().is_some(), "{text}");
    assert!(samples[1]["memory_percent"].as_f64().is_some());
}

/// One process, one offline run per settings combination, run ids naming
/// the combination.
const SETTINGS_SCRIPT: &str = r#"
import time, wandb
combos = {
    "nostats": dict(x_disable_stats=True),
    "nometa": dict(x_disable_meta=True),
    "nomachine": dict(x_disable_machine_info=True),
    "facts": dict(x_stats_cpu_count=3, x_stats_cpu_logical_count=5,
                  x_stats_gpu_count=2, x_stats_gpu_type="H200", x_label="node1"),
}
for rid, s in combos.items():
    run = wandb.init(project="sysmon", mode="offline", id=rid,
                     settings=wandb.Settings(x_stats_sampling_interval=0.2, **s))
    run.log({"a": 1})
    time.sleep(0.8)
    run.finish()
"#;

/// What the monitor wrote for one run: the fields of each environment
/// record, the stats keys, and the hardware facts that settings override.
#[derive(Debug, PartialEq)]
struct Monitored {
    environments: Vec<BTreeSet<String>>,
    stats_keys: BTreeSet<String>,
    facts: Vec<Value>,
}

fn monitored(work: &Path, run_id: &str) -> Monitored {
    let dir = std::fs::read_dir(work.join("wandb"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("offline-run-") && name.ends_with(&format!("-{run_id}"))
        })
        .unwrap_or_else(|| panic!("{run_id}: no run directory"));
    let log = dir.join(format!("run-{run_id}.wandb"));
    let records = |kind: &str| -> Vec<Value> {
        let out = Command::new(ours())
            .args(["inspect", "--type", kind])
            .arg(&log)
            .output_limited()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["record"][kind].clone())
            .collect()
    };
    let envs = records("environment");
    Monitored {
        environments: envs
            .iter()
            .map(|e| {
                e.as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| !k.starts_with('_') && *k != "num")
                    .cloned()
                    .collect()
            })
            .collect(),
        stats_keys: keys(&records("stats")),
        facts: envs
            .iter()
            .map(|e| {
                let pick = |k: &str| e.get(k).cloned().unwrap_or(Value::Null);
                serde_json::json!([
                    pick("cpu_count"),
                    pick("cpu_count_logical"),
                    pick("gpu_count"),
                    pick("gpu_type")
                ])
            })
            .collect(),
    }
}

#[test]
fn settings_that_shape_what_the_monitor_records() {
    let ran = |python: &Path, what: &str| {
        let work = scratch_dir(what);
        let out = python_script(python, SETTINGS_SCRIPT, &work)
            .output_limited()
            .unwrap();
        assert!(out.status.success(), "{what}: {}", text(&out));
        work
    };
    let (mine, theirs) = (
        ran(install_ours(), "monsettings-ours"),
        ran(reference_python(), "monsettings-ref"),
    );
    for run_id in ["nostats", "nometa", "nomachine", "facts"] {
        let (m, t) = (monitored(&mine, run_id), monitored(&theirs, run_id));
        assert_eq!(m, t, "{run_id}: ours, then the reference's");
        match run_id {
            "nostats" => assert!(m.stats_keys.is_empty() && !m.environments.is_empty()),
            "nomachine" => assert!(m.stats_keys.is_empty() && m.environments.is_empty()),
            "facts" => {
                assert!(
                    m.stats_keys.iter().any(|k| k.ends_with("/l:node1")),
                    "{m:?}"
                );
                assert!(
                    m.facts.contains(&serde_json::json!([3, 5, 2, "H200"])),
                    "{m:?}"
                );
            }
            _ => {}
        }
    }
}

#[test]
fn the_process_tree_counts_when_asked() {
    // A child process holding 200 MB: its memory is the run's process
    // memory only with x_stats_track_process_tree, with both services.
    let script = r#"
import subprocess, sys, time, wandb
child = subprocess.Popen([sys.executable, "-c",
    "import time; x = bytearray(200 * 1024 * 1024); x[::4096] = b'1' * len(x[::4096]); time.sleep(30)"])
try:
    time.sleep(1.0)
    for tree in (False, True):
        run = wandb.init(project="sysmon", mode="offline", id=f"tree{int(tree)}",
                         settings=wandb.Settings(x_stats_sampling_interval=0.2,
                                                 x_stats_track_process_tree=tree))
        time.sleep(1.0)
        run.finish()
finally:
    child.kill()
    child.wait(timeout=10)
"#;
    let rss = |work: &Path, run_id: &str| -> f64 {
        let dir = std::fs::read_dir(work.join("wandb"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(&format!("-{run_id}")))
            .unwrap_or_else(|| panic!("{run_id}: no run directory"));
        let out = Command::new(ours())
            .args(["inspect", "--type", "stats"])
            .arg(dir.join(format!("run-{run_id}.wandb")))
            .output_limited()
            .unwrap();
        let stats: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["record"]["stats"].clone())
            .collect();
        values(&stats, "proc.memory.rssMB")
            .into_iter()
            .fold(0.0, f64::max)
    };
    for (who, python) in [("ours", install_ours()), ("reference", reference_python())] {
        let work = scratch_dir(&format!("proctree-{who}"));
        let out = python_script(python, script, &work)
            .output_limited()
            .unwrap();
        assert!(out.status.success(), "{who}: {}", text(&out));
        let (alone, tree) = (rss(&work, "tree0"), rss(&work, "tree1"));
        assert!(alone > 1.0, "{who}: the process alone: {alone} MB");
        // The child's 200 MB count with the setting only.
        assert!(
            tree - alone > 150.0,
            "{who}: with its child {tree} MB, alone {alone} MB"
        );
    }
}
