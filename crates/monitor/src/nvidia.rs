//! NVIDIA GPUs through NVML.
//!
//! The library (`libnvidia-ml.so.1`, part of the driver) is loaded at run
//! time, so the same binary runs on machines without a GPU or driver: there
//! it logs one debug line and reports no GPU metrics. Each metric a device
//! refuses (not supported, no permission) is dropped for that device after
//! the first failure instead of being asked again every sample.
//!
//! Keys, per GPU index `i` (W&B's names): utilisation, memory, temperature,
//! power, energy, clocks, ECC errors, PCIe (link and throughput), fan and
//! encoder; on Hopper and newer the GPM profiling metrics (`smActive`,
//! `smOccupancy`, `pipe*Active`, `dramActive`, NVLink and PCIe bytes/s),
//! averaged between two samples. When the monitored process (or one of its
//! descendants) runs on a GPU, its main metrics are repeated as
//! `gpu.process.i.*`, so the UI can show "the GPUs this run used".

use std::collections::HashSet;
use std::sync::OnceLock;

use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::{
    Clock, EccCounter, MemoryError, MemoryLocation, PcieUtilCounter, TemperatureSensor,
};
use nvml_wrapper::enums::gpm::GpmMetricId;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::gpm::{GpmSample, gpm_metrics_get};
use wandb_proto::pb;

use crate::Metric;

/// The library, loaded once per process and kept for its lifetime (GPM
/// samples borrow it).
fn nvml() -> Option<&'static Nvml> {
    static NVML: OnceLock<Option<Nvml>> = OnceLock::new();
    NVML.get_or_init(|| {
        let mut last = None;
        for lib in ["libnvidia-ml.so.1", "libnvidia-ml.so"] {
            match Nvml::builder().lib_path(lib.as_ref()).init() {
                Ok(n) => return Some(n),
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            tracing::debug!("no NVIDIA GPU metrics: NVML unavailable ({e})");
        }
        None
    })
    .as_ref()
}

/// GPM metrics and their keys (percentages, or MiB/s turned into bytes/s).
const GPM_METRICS: &[(GpmMetricId, &str, f64)] = &[
    (GpmMetricId::SmUtil, "smActive", 1.0),
    (GpmMetricId::SmOccupancy, "smOccupancy", 1.0),
    (GpmMetricId::AnyTensorUtil, "pipeTensorActive", 1.0),
    (GpmMetricId::HmmaTensorUtil, "pipeTensorHmmaActive", 1.0),
    (GpmMetricId::DramBwUtil, "dramActive", 1.0),
    (GpmMetricId::Fp64Util, "pipeFp64Active", 1.0),
    (GpmMetricId::Fp32Util, "pipeFp32Active", 1.0),
    (GpmMetricId::Fp16Util, "pipeFp16Active", 1.0),
    (GpmMetricId::NvlinkTotalTxPerSec, "nvlinkTxBytes", 1048576.0),
    (GpmMetricId::NvlinkTotalRxPerSec, "nvlinkRxBytes", 1048576.0),
    (GpmMetricId::PcieTxPerSec, "pcieTxBytes", 1048576.0),
    (GpmMetricId::PcieRxPerSec, "pcieRxBytes", 1048576.0),
];

/// Device-wide metrics repeated as `gpu.process.i.*` for GPUs the
/// monitored process uses.
const PROCESS_METRICS: &[&str] = &[
    "gpu",
    "memory",
    "memoryAllocated",
    "memoryAllocatedBytes",
    "temp",
    "powerWatts",
    "enforcedPowerLimitWatts",
    "powerPercent",
];

struct Gpu {
    index: u32,
    facts: pb::GpuNvidiaInfo,
    gpm: bool,
    prev_gpm: Option<GpmSample<'static>>,
    /// Metrics this device refused.
    refused: HashSet<&'static str>,
}

/// The GPUs of this machine.
pub struct Gpus {
    nvml: &'static Nvml,
    gpus: Vec<Gpu>,
    cuda_version: String,
}

impl Gpus {
    /// The GPUs NVML sees (only `device_ids` if given); `None` without
    /// NVML.
    pub fn open(_pid: i32, device_ids: Option<Vec<u32>>) -> Option<Self> {
        let nvml = nvml()?;
        let count = nvml.device_count().ok()?;
        let mut gpus = Vec::new();
        for index in 0..count {
            if device_ids.as_ref().is_some_and(|ids| !ids.contains(&index)) {
                continue;
            }
            let Ok(d) = nvml.device_by_index(index) else {
                continue;
            };
            let facts = pb::GpuNvidiaInfo {
                name: d.name().unwrap_or_default(),
                memory_total: d.memory_info().map(|m| m.total).unwrap_or(0),
                cuda_cores: d.num_cores().unwrap_or(0),
                architecture: d
                    .architecture()
                    .map(|a| format!("{a:?}"))
                    .unwrap_or_default(),
                uuid: d.uuid().unwrap_or_default(),
                pci_bus_id: d.pci_info().map(|p| p.bus_id).unwrap_or_default(),
                numa_node: numa_node(&d.pci_info().map(|p| p.bus_id).unwrap_or_default()),
            };
            gpus.push(Gpu {
                index,
                facts,
                gpm: d.gpm_support().unwrap_or(false),
                prev_gpm: None,
                refused: HashSet::new(),
            });
        }
        let cuda_version = nvml
            .sys_cuda_driver_version()
            .map(|v| format!("{}.{}", v / 1000, (v % 1000) / 10))
            .unwrap_or_default();
        tracing::debug!("NVML: {} GPU(s) monitored", gpus.len());
        Some(Self {
            nvml,
            gpus,
            cuda_version,
        })
    }

    pub fn count(&self) -> usize {
        self.gpus.len()
    }

    /// One reading of every GPU; `pids` is the monitored process tree.
    pub fn sample(&mut self, pids: &[i32], out: &mut Vec<Metric>) {
        for gpu in &mut self.gpus {
            sample_gpu(self.nvml, gpu, pids, out);
        }
    }

    /// GPU facts for the environment record.
    pub fn probe(&self, env: &mut pb::EnvironmentRecord) {
        if self.gpus.is_empty() {
            return;
        }
        env.gpu_count = self.gpus.len() as u32;
        env.gpu_type = self.gpus[0].facts.name.clone();
        env.cuda_version = self.cuda_version.clone();
        env.gpu_nvidia = self.gpus.iter().map(|g| g.facts.clone()).collect();
    }
}

/// The NUMA node of a PCI device, if the kernel knows it.
fn numa_node(bus_id: &str) -> Option<u32> {
    // NVML spells the domain with 8 digits, sysfs with 4.
    let id = bus_id.to_lowercase();
    let id = id
        .strip_prefix("0000")
        .filter(|r| r.len() == 8)
        .unwrap_or(&id);
    let path = format!("/sys/bus/pci/devices/{id}/numa_node");
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|n| u32::try_from(n).ok())
}

fn sample_gpu(nvml: &'static Nvml, gpu: &mut Gpu, pids: &[i32], out: &mut Vec<Metric>) {
    let Ok(d) = nvml.device_by_index(gpu.index) else {
        return;
    };
    let i = gpu.index;
    let start = out.len();
    let refused = &mut gpu.refused;
    // Asks NVML unless the device refused this metric before.
    let mut ask = |name: &'static str, f: &dyn Fn() -> Result<f64, NvmlError>| -> Option<f64> {
        if refused.contains(name) {
            return None;
        }
        match f() {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::debug!("GPU {i}: {name} unavailable ({e}); not asked again");
                refused.insert(name);
                None
            }
        }
    };
    let float = |out: &mut Vec<Metric>, name: &str, v: Option<f64>| {
        if let Some(v) = v {
            out.push(Metric::float(format!("gpu.{i}.{name}"), v));
        }
    };
    let int = |out: &mut Vec<Metric>, name: &str, v: Option<f64>| {
        if let Some(v) = v {
            out.push(Metric::int(format!("gpu.{i}.{name}"), v as i64));
        }
    };

    float(
        out,
        "gpu",
        ask("gpu", &|| d.utilization_rates().map(|u| f64::from(u.gpu))),
    );
    int(
        out,
        "memory",
        ask("memory", &|| {
            d.utilization_rates().map(|u| f64::from(u.memory))
        }),
    );
    let mem = ask("memoryInfo", &|| d.memory_info().map(|m| m.used as f64))
        .zip(ask("memoryTotal", &|| {
            d.memory_info().map(|m| m.total as f64)
        }));
    if let Some((used, total)) = mem {
        if total > 0.0 {
            float(out, "memoryAllocated", Some(used / total * 100.0));
        }
        int(out, "memoryAllocatedBytes", Some(used));
    }
    float(
        out,
        "temp",
        ask("temp", &|| {
            d.temperature(TemperatureSensor::Gpu).map(f64::from)
        }),
    );
    let power = ask("powerWatts", &|| {
        d.power_usage().map(|mw| f64::from(mw) / 1000.0)
    });
    let limit = ask("enforcedPowerLimitWatts", &|| {
        d.enforced_power_limit().map(|mw| f64::from(mw) / 1000.0)
    });
    float(out, "powerWatts", power);
    float(out, "enforcedPowerLimitWatts", limit);
    if let (Some(p), Some(l)) = (power, limit)
        && l > 0.0
    {
        float(out, "powerPercent", Some(p / l * 100.0));
    }
    float(
        out,
        "energyJoules",
        ask("energyJoules", &|| {
            d.total_energy_consumption().map(|mj| mj as f64 / 1000.0)
        }),
    );
    int(
        out,
        "smClock",
        ask("smClock", &|| d.clock_info(Clock::SM).map(f64::from)),
    );
    int(
        out,
        "memoryClock",
        ask("memoryClock", &|| {
            d.clock_info(Clock::Memory).map(f64::from)
        }),
    );
    int(
        out,
        "graphicsClock",
        ask("graphicsClock", &|| {
            d.clock_info(Clock::Graphics).map(f64::from)
        }),
    );
    for (name, kind) in [
        ("correctedMemoryErrors", MemoryError::Corrected),
        ("uncorrectedMemoryErrors", MemoryError::Uncorrected),
    ] {
        int(
            out,
            name,
            ask(name, &|| {
                d.memory_error_counter(kind, EccCounter::Volatile, MemoryLocation::Device)
                    .map(|n| n as f64)
            }),
        );
    }
    int(
        out,
        "fanSpeed",
        ask("fanSpeed", &|| d.fan_speed(0).map(f64::from)),
    );
    int(
        out,
        "encoderUtilization",
        ask("encoderUtilization", &|| {
            d.encoder_utilization().map(|u| f64::from(u.utilization))
        }),
    );
    int(
        out,
        "pcieLinkGen",
        ask("pcieLinkGen", &|| d.current_pcie_link_gen().map(f64::from)),
    );
    int(
        out,
        "pcieLinkWidth",
        ask("pcieLinkWidth", &|| {
            d.current_pcie_link_width().map(f64::from)
        }),
    );
    int(
        out,
        "pcieLinkSpeed",
        ask("pcieLinkSpeed", &|| d.pcie_link_speed().map(f64::from)),
    );

    if gpu.gpm {
        sample_gpm(nvml, gpu, &d, out);
    } else {
        // Without GPM: NVML's own PCIe throughput (KB/s over 20 ms).
        for (name, counter) in [
            ("pcieTxBytes", PcieUtilCounter::Send),
            ("pcieRxBytes", PcieUtilCounter::Receive),
        ] {
            float(
                out,
                name,
                ask(name, &|| {
                    d.pcie_throughput(counter).map(|kb| f64::from(kb) * 1024.0)
                }),
            );
        }
    }

    // The same numbers under gpu.process.i.* if our process tree is here.
    if uses_gpu(&d, pids) {
        let prefix = format!("gpu.{i}.");
        let mirrored: Vec<Metric> = out[start..]
            .iter()
            .filter(|m| {
                m.key
                    .strip_prefix(&prefix)
                    .is_some_and(|name| PROCESS_METRICS.contains(&name))
            })
            .map(|m| Metric {
                key: format!("gpu.process.{i}.{}", &m.key[prefix.len()..]),
                value: m.value,
            })
            .collect();
        out.extend(mirrored);
    }
}

/// GPM metrics between the previous sample and now (the first call only
/// takes the sample).
fn sample_gpm(
    nvml: &'static Nvml,
    gpu: &mut Gpu,
    d: &nvml_wrapper::Device<'static>,
    out: &mut Vec<Metric>,
) {
    let sample = match d.gpm_sample() {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("GPU {}: GPM sample failed ({e}); GPM off", gpu.index);
            gpu.gpm = false;
            return;
        }
    };
    if let Some(prev) = gpu.prev_gpm.take() {
        let ids: Vec<GpmMetricId> = GPM_METRICS.iter().map(|(id, _, _)| *id).collect();
        if let Ok(results) = gpm_metrics_get(nvml, &prev, &sample, &ids) {
            for ((_, name, scale), result) in GPM_METRICS.iter().zip(results) {
                if let Ok(r) = result
                    && r.value.is_finite()
                {
                    out.push(Metric::float(
                        format!("gpu.{}.{name}", gpu.index),
                        r.value * scale,
                    ));
                }
            }
        }
    }
    gpu.prev_gpm = Some(sample);
}

/// Whether any process of the tree has a context on the device.
fn uses_gpu(d: &nvml_wrapper::Device<'static>, pids: &[i32]) -> bool {
    if pids.is_empty() {
        return false;
    }
    let running = d
        .running_compute_processes()
        .unwrap_or_default()
        .into_iter()
        .chain(d.running_graphics_processes().unwrap_or_default());
    let pids: HashSet<i32> = pids.iter().copied().collect();
    running.into_iter().any(|p| pids.contains(&(p.pid as i32)))
}
