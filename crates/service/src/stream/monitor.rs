//! The run's system monitor: a thread that samples the machine every
//! `x_stats_sampling_interval` and hands the handler `stats` records, and
//! describes the machine (the second `environment` record) when asked.
//!
//! A thread, not a task: reading `/proc` and calling NVML block. It starts
//! at `run_start` (first sample at once), stops sampling on `pause` until
//! `resume` (which samples at once), and ends at the run's exit: nothing
//! is sampled after the exit record. The handler owns the records: it
//! writes them and keeps the buffer `get_system_metrics` answers from.

use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use wandb_monitor::{Config, Sampler};
use wandb_proto::pb;

use super::StreamInput;
use crate::settings::RunSettings;

const DEFAULT_INTERVAL: f64 = 15.0;

enum Ctl {
    Start,
    Pause,
    Resume,
    /// Describe the machine (environment record with this writer id).
    Probe(String),
}

/// What the monitor gives the handler.
#[derive(Debug)]
pub enum MonitorOutput {
    Stats(pb::StatsRecord),
    Environment(Box<pb::EnvironmentRecord>),
}

/// The handler's handle on the monitor thread; dropping it stops the
/// thread.
pub struct Monitor {
    tx: std_mpsc::Sender<Ctl>,
}

/// How the run's settings configure the monitor.
struct Plan {
    config: Config,
    interval: Duration,
    /// `x_disable_stats` (or `x_disable_machine_info`): no samples.
    sample: bool,
    label: Option<String>,
    overrides: Overrides,
}

#[derive(Default)]
struct Overrides {
    cpu_count: Option<u32>,
    cpu_logical: Option<u32>,
    gpu_count: Option<u32>,
    gpu_type: Option<String>,
}

fn plan(settings: &RunSettings) -> Plan {
    let s = &settings.raw;
    let interval = s
        .x_stats_sampling_interval
        .filter(|i| i.is_finite() && *i > 0.0)
        .unwrap_or(DEFAULT_INTERVAL);
    // wandb-core works on a 0.1 s grid.
    let interval = ((interval * 10.0).round() / 10.0).max(0.1);
    let positive = |v: Option<i32>| v.filter(|n| *n > 0).map(|n| n as u32);
    Plan {
        config: Config {
            pid: s.x_stats_pid.unwrap_or(0),
            disk_paths: s
                .x_stats_disk_paths
                .as_ref()
                .map_or_else(|| vec!["/".to_string()], |l| l.value.clone()),
            track_process_tree: s.x_stats_track_process_tree.unwrap_or(false),
            cgroup: !s.x_stats_no_cgroup.unwrap_or(false),
            gpu_device_ids: s.x_stats_gpu_device_ids.as_ref().map(|l| {
                l.value
                    .iter()
                    .filter_map(|i| u32::try_from(*i).ok())
                    .collect()
            }),
        },
        interval: Duration::from_secs_f64(interval),
        sample: !s.x_disable_stats.unwrap_or(false) && !s.x_disable_machine_info.unwrap_or(false),
        label: s.x_label.clone().filter(|l| !l.is_empty()),
        overrides: Overrides {
            cpu_count: positive(s.x_stats_cpu_count),
            cpu_logical: positive(s.x_stats_cpu_logical_count),
            gpu_count: positive(s.x_stats_gpu_count),
            gpu_type: s.x_stats_gpu_type.clone().filter(|t| !t.is_empty()),
        },
    }
}

impl Monitor {
    /// Starts the monitor thread (idle until [`start`](Self::start) or a
    /// probe).
    pub fn spawn(settings: &RunSettings, to_stream: mpsc::WeakSender<StreamInput>) -> Self {
        let plan = plan(settings);
        let (tx, rx) = std_mpsc::channel();
        let name = format!("monitor-{}", settings.run_id);
        let spawned = std::thread::Builder::new()
            .name(name)
            .spawn(move || run(plan, rx, to_stream));
        if let Err(e) = spawned {
            tracing::error!("system monitor not started: {e}");
        }
        Self { tx }
    }

    pub fn start(&self) {
        let _ = self.tx.send(Ctl::Start);
    }

    pub fn pause(&self) {
        let _ = self.tx.send(Ctl::Pause);
    }

    pub fn resume(&self) {
        let _ = self.tx.send(Ctl::Resume);
    }

    /// Asks for the machine's description (an environment record).
    pub fn probe(&self, writer_id: String) {
        let _ = self.tx.send(Ctl::Probe(writer_id));
    }
}

fn send(to: &mpsc::WeakSender<StreamInput>, out: MonitorOutput) -> bool {
    match to.upgrade() {
        // A plain thread may block: the handler drains its input.
        Some(tx) => tx.blocking_send(StreamInput::Monitor(out)).is_ok(),
        None => false,
    }
}

/// The sampler, created on first use (loading NVML can take a while).
fn sampler_of<'a>(sampler: &'a mut Option<Sampler>, config: &Config) -> &'a mut Sampler {
    sampler.get_or_insert_with(|| Sampler::new(config.clone()))
}

fn run(plan: Plan, rx: std_mpsc::Receiver<Ctl>, to: mpsc::WeakSender<StreamInput>) {
    enum State {
        Stopped,
        Running,
        Paused,
    }
    let mut state = State::Stopped;
    let mut sampler: Option<Sampler> = None;
    let mut next: Option<Instant> = None;
    let mut sample_cost = Duration::ZERO;
    let mut samples = 0u32;
    loop {
        let msg = match next {
            Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(m) => Some(m),
                Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => break,
            },
        };
        let sample_now = match msg {
            None => true,
            Some(Ctl::Start) if matches!(state, State::Stopped) && plan.sample => {
                state = State::Running;
                true
            }
            Some(Ctl::Resume) if matches!(state, State::Paused) => {
                state = State::Running;
                true
            }
            Some(Ctl::Pause) if matches!(state, State::Running) => {
                state = State::Paused;
                next = None;
                false
            }
            Some(Ctl::Probe(writer_id)) => {
                let mut env = if plan.sample {
                    sampler_of(&mut sampler, &plan.config).probe()
                } else {
                    pb::EnvironmentRecord::default()
                };
                let o = &plan.overrides;
                if let Some(n) = o.cpu_count {
                    env.cpu_count = n;
                }
                if let Some(n) = o.cpu_logical {
                    env.cpu_count_logical = n;
                }
                if let Some(n) = o.gpu_count {
                    env.gpu_count = n;
                }
                if let Some(t) = &o.gpu_type {
                    env.gpu_type = t.clone();
                }
                env.writer_id = writer_id;
                if !send(&to, MonitorOutput::Environment(Box::new(env))) {
                    break;
                }
                false
            }
            Some(_) => false,
        };
        if !sample_now || !matches!(state, State::Running) {
            continue;
        }
        let began = Instant::now();
        let metrics = sampler_of(&mut sampler, &plan.config).sample();
        sample_cost += began.elapsed();
        samples += 1;
        let suffix = plan
            .label
            .as_ref()
            .map(|l| format!("/l:{l}"))
            .unwrap_or_default();
        let record = pb::StatsRecord {
            stats_type: pb::stats_record::StatsType::System as i32,
            timestamp: Some(wandb_proto::time::now()),
            item: metrics
                .into_iter()
                .map(|m| pb::StatsItem {
                    key: format!("{}{suffix}", m.key),
                    value_json: m.value.to_json(),
                })
                .collect(),
            ..Default::default()
        };
        if !send(&to, MonitorOutput::Stats(record)) {
            break;
        }
        // A fixed grid from the first sample; missed ticks are skipped.
        let now = Instant::now();
        let mut at = next.unwrap_or(began) + plan.interval;
        while at <= now {
            at += plan.interval;
        }
        next = Some(at);
    }
    if samples > 0 {
        tracing::debug!(
            "system monitor: {samples} samples, {:.3} ms each on average",
            sample_cost.as_secs_f64() * 1000.0 / f64::from(samples)
        );
    }
}
