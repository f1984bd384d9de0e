//! System metrics for W&B runs, sampled in-process.
//!
//! W&B's service samples the machine every `x_stats_sampling_interval`
//! (15 s by default) and records what it saw as `stats` records, with the
//! metric names the W&B UI charts: `cpu`, `memory_percent`,
//! `proc.memory.rssMB`, `disk./.usagePercent`, `network.sent`,
//! `gpu.0.powerWatts`, … (wandb-core runs a sidecar process for this; we do
//! it in the service, on the run's monitor thread).
//!
//! * [`host`]: CPU, memory, disk, network and the monitored process (tree),
//!   read from `/proc` and `/sys` on Linux.
//! * [`cgroup`]: cgroup v2 limits, so containers report against their
//!   limits rather than the host's.
//! * [`nvidia`]: NVIDIA GPUs through NVML, loaded at run time: without a
//!   driver there are simply no GPU metrics.
//!
//! [`Sampler::sample`] gives one reading of everything; [`Sampler::probe`]
//! describes the machine (for the run's environment record and
//! `wandb-metadata.json`).

pub mod cgroup;
pub mod host;
pub mod nvidia;

use wandb_proto::pb;

/// What to monitor (from the run's settings).
#[derive(Debug, Clone)]
pub struct Config {
    /// The process whose usage is reported (`x_stats_pid`); 0: none.
    pub pid: i32,
    /// Paths whose file systems are reported (`x_stats_disk_paths`).
    pub disk_paths: Vec<String>,
    /// Include the descendants of `pid` (`x_stats_track_process_tree`).
    pub track_process_tree: bool,
    /// Respect cgroup v2 limits (not `x_stats_no_cgroup`).
    pub cgroup: bool,
    /// Only these GPUs (`x_stats_gpu_device_ids`); `None`: all.
    pub gpu_device_ids: Option<Vec<u32>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            pid: std::process::id() as i32,
            disk_paths: vec!["/".into()],
            track_process_tree: false,
            cgroup: true,
            gpu_device_ids: None,
        }
    }
}

/// A metric's value: integers stay integers (`3201`), floats are written
/// with a fraction (`4.0`), as W&B's monitor writes them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
}

impl Value {
    /// The value as JSON (`value_json` of a stats item). Non-finite floats
    /// have no JSON spelling and are written as `null`.
    pub fn to_json(self) -> String {
        match self {
            Value::Int(i) => i.to_string(),
            Value::Float(f) if !f.is_finite() => "null".into(),
            // The shortest round-trip spelling, `.0` on whole numbers.
            Value::Float(f) => format!("{f:?}"),
        }
    }

    pub fn as_f64(self) -> f64 {
        match self {
            Value::Int(i) => i as f64,
            Value::Float(f) => f,
        }
    }
}

/// One metric of a sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub key: String,
    pub value: Value,
}

impl Metric {
    pub fn float(key: impl Into<String>, value: f64) -> Self {
        Self {
            key: key.into(),
            value: Value::Float(value),
        }
    }

    pub fn int(key: impl Into<String>, value: i64) -> Self {
        Self {
            key: key.into(),
            value: Value::Int(value),
        }
    }
}

/// Samples the host and the GPUs. Counters (network, disk I/O,
/// retransmits) count from the sampler's creation; rates (`cpu`, GPU
/// profiling metrics) are averages since the previous sample, so the first
/// sample has none of them.
pub struct Sampler {
    host: host::Host,
    gpus: Option<nvidia::Gpus>,
}

impl Sampler {
    pub fn new(config: Config) -> Self {
        let gpus = nvidia::Gpus::open(config.pid, config.gpu_device_ids.clone());
        Self {
            host: host::Host::new(config),
            gpus,
        }
    }

    /// One reading of everything available. Sources that fail are left out
    /// (their keys are missing), never fatal.
    pub fn sample(&mut self) -> Vec<Metric> {
        let mut out = Vec::with_capacity(64);
        self.host.sample(&mut out);
        if let Some(gpus) = &mut self.gpus {
            let pids = self.host.process_tree_for_gpus();
            gpus.sample(&pids, &mut out);
        }
        out
    }

    /// The machine: CPU counts and model, memory, disks, GPUs.
    pub fn probe(&self) -> pb::EnvironmentRecord {
        let mut env = self.host.probe();
        if let Some(gpus) = &self.gpus {
            gpus.probe(&mut env);
        }
        env
    }

    /// Whether NVML found GPUs.
    pub fn has_gpus(&self) -> bool {
        self.gpus.as_ref().is_some_and(|g| g.count() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_spelled_like_the_reference() {
        assert_eq!(Value::Float(0.0).to_json(), "0.0");
        assert_eq!(Value::Float(4.0).to_json(), "4.0");
        assert_eq!(Value::Float(48.0625).to_json(), "48.0625");
        assert_eq!(Value::Int(3201).to_json(), "3201");
        assert_eq!(Value::Float(f64::NAN).to_json(), "null");
        assert_eq!(Value::Float(1e300).to_json(), "1e300");
    }
}
