//! The host: CPU, memory, disks, network and the monitored process tree.
//!
//! Everything is read from `/proc` and `/sys` (Linux). A general-purpose
//! crate (sysinfo) would refresh every process on the machine to find one;
//! reading the handful of files we need keeps a sample at a fraction of a
//! millisecond, which matters at short sampling intervals. On other
//! systems the files are missing and the metrics simply absent.
//!
//! Units follow W&B's charts: `MB` keys are MiB, `GB` keys GiB, network
//! counters bytes, percentages 0–100. Counters start at zero when the
//! sampler is created; `cpu` is the average over the time since the
//! previous sample, as a share of the CPUs the process may use.
//!
//! Long for one file, but one concept: the host sampler; most of it is
//! the parsing of each `/proc` file, with its tests.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

use wandb_proto::pb;

use crate::cgroup::Cgroup;
use crate::{Config, Metric};

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Samples the host. See the module docs.
pub struct Host {
    config: Config,
    cgroup: Option<Cgroup>,
    physical_cpus: usize,
    logical_cpus: usize,
    cpu_model: String,
    clock_ticks: f64,
    page_size: u64,
    /// Block devices behind the disk paths, for `disk.<dev>.in/out`.
    devices: Vec<String>,
    disk_base: HashMap<String, (u64, u64)>,
    net_base: Option<(u64, u64)>,
    retransmits_base: Option<u64>,
    oom_base: Option<u64>,
    /// CPU ticks per process at the previous sample.
    prev_cpu: Option<(Instant, HashMap<i32, u64>)>,
    prev_throttling: Option<(u64, u64)>,
}

impl Host {
    pub fn new(config: Config) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let logical_cpus = logical_cpu_count(&cpuinfo);
        let physical_cpus = physical_cpu_count(&cpuinfo).unwrap_or(logical_cpus);
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_string())
            })
            .unwrap_or_default();
        let cgroup = config
            .cgroup
            .then(|| Cgroup::detect(config.pid, logical_cpus))
            .flatten();
        // SAFETY: sysconf only reads configuration values.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let devices = disk_devices(&config.disk_paths);
        let stats = diskstats();
        let disk_base = devices
            .iter()
            .filter_map(|d| stats.get(d).map(|c| (d.clone(), *c)))
            .collect();
        let oom_base = cgroup.as_ref().and_then(Cgroup::oom_kills);
        let prev_throttling = cgroup
            .as_ref()
            .filter(|c| c.cpu_quota)
            .and_then(Cgroup::throttling);
        Self {
            config,
            physical_cpus,
            logical_cpus,
            cpu_model,
            clock_ticks: if ticks > 0 { ticks as f64 } else { 100.0 },
            page_size: if page > 0 { page as u64 } else { 4096 },
            devices,
            disk_base,
            net_base: network_bytes(),
            retransmits_base: tcp_retransmits(),
            oom_base,
            prev_cpu: None,
            prev_throttling,
            cgroup,
        }
    }

    /// CPUs the monitored process may use: the cgroup limit, else the
    /// physical cores (as W&B counts).
    fn cpu_capacity(&self) -> f64 {
        self.cgroup
            .as_ref()
            .and_then(|c| c.cpu_limit)
            .filter(|l| *l > 0.0)
            .unwrap_or(self.physical_cpus.max(1) as f64)
    }

    pub fn sample(&mut self, out: &mut Vec<Metric>) {
        self.sample_network(out);
        self.sample_disk_io(out);
        let denominator = self.sample_memory(out);
        self.sample_process(denominator, out);
        self.sample_cgroup(out);
        for path in &self.config.disk_paths {
            if let Some(u) = disk_usage(path) {
                out.push(Metric::float(
                    format!("disk.{path}.usagePercent"),
                    u.used_percent(),
                ));
                out.push(Metric::float(
                    format!("disk.{path}.usageGB"),
                    u.used as f64 / GIB,
                ));
            }
        }
    }

    fn sample_network(&mut self, out: &mut Vec<Metric>) {
        if let (Some((sent, recv)), Some((sent0, recv0))) = (network_bytes(), self.net_base) {
            out.push(Metric::float(
                "network.sent",
                sent.saturating_sub(sent0) as f64,
            ));
            out.push(Metric::float(
                "network.recv",
                recv.saturating_sub(recv0) as f64,
            ));
        }
        if let (Some(now), Some(base)) = (tcp_retransmits(), self.retransmits_base) {
            out.push(Metric::float(
                "network.tcpRetransmits",
                now.saturating_sub(base) as f64,
            ));
        }
    }

    fn sample_disk_io(&mut self, out: &mut Vec<Metric>) {
        if self.devices.is_empty() {
            return;
        }
        let stats = diskstats();
        for dev in &self.devices {
            let (Some(&(read, written)), Some(&(read0, written0))) =
                (stats.get(dev), self.disk_base.get(dev))
            else {
                continue;
            };
            out.push(Metric::float(
                format!("disk.{dev}.in"),
                read.saturating_sub(read0) as f64 / MIB,
            ));
            out.push(Metric::float(
                format!("disk.{dev}.out"),
                written.saturating_sub(written0) as f64 / MIB,
            ));
        }
    }

    /// System (or cgroup) memory; returns what `proc.memory.percent` is a
    /// share of.
    fn sample_memory(&mut self, out: &mut Vec<Metric>) -> Option<u64> {
        if let Some((current, limit)) = self.cgroup.as_ref().and_then(Cgroup::memory) {
            out.push(Metric::float(
                "memory_percent",
                current as f64 / limit as f64 * 100.0,
            ));
            out.push(Metric::float(
                "proc.memory.availableMB",
                limit.saturating_sub(current) as f64 / MIB,
            ));
            return Some(limit);
        }
        let m = meminfo()?;
        if m.total == 0 {
            return None;
        }
        out.push(Metric::float(
            "memory_percent",
            m.total.saturating_sub(m.available) as f64 / m.total as f64 * 100.0,
        ));
        out.push(Metric::float(
            "proc.memory.availableMB",
            m.available as f64 / MIB,
        ));
        Some(m.total)
    }

    fn sample_process(&mut self, denominator: Option<u64>, out: &mut Vec<Metric>) {
        if self.config.pid <= 0 {
            return;
        }
        let pids = self.process_set();
        if pids.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut rss_pages = 0u64;
        let mut threads = 0u64;
        let mut ticks = HashMap::with_capacity(pids.len());
        for pid in &pids {
            if let Some(stat) = proc_stat(*pid) {
                threads += stat.threads;
                ticks.insert(*pid, stat.ticks);
            }
            rss_pages += proc_rss_pages(*pid).unwrap_or(0);
        }
        if let Some((then, prev)) = &self.prev_cpu {
            let wall = now.duration_since(*then).as_secs_f64();
            if wall > 0.0 {
                let used: u64 = ticks
                    .iter()
                    .map(|(pid, t)| t.saturating_sub(prev.get(pid).copied().unwrap_or(0)))
                    .sum();
                let percent = used as f64 / self.clock_ticks / wall * 100.0;
                out.push(Metric::float("cpu", percent / self.cpu_capacity()));
            }
        }
        self.prev_cpu = Some((now, ticks));
        let rss = rss_pages * self.page_size;
        out.push(Metric::float("proc.memory.rssMB", rss as f64 / MIB));
        if let Some(d) = denominator.filter(|d| *d > 0) {
            out.push(Metric::float(
                "proc.memory.percent",
                rss as f64 / d as f64 * 100.0,
            ));
        }
        out.push(Metric::float("proc.cpu.threads", threads as f64));
    }

    fn sample_cgroup(&mut self, out: &mut Vec<Metric>) {
        let Some(cg) = &self.cgroup else { return };
        if cg.cpu_quota
            && let Some((periods, throttled)) = cg.throttling()
        {
            if let Some((p0, t0)) = self.prev_throttling
                && periods > p0
            {
                out.push(Metric::float(
                    "proc.cpu.throttledPercent",
                    throttled.saturating_sub(t0) as f64 / (periods - p0) as f64 * 100.0,
                ));
            }
            self.prev_throttling = Some((periods, throttled));
        }
        if let (Some(now), Some(base)) = (cg.oom_kills(), self.oom_base) {
            out.push(Metric::float(
                "proc.memory.oomKills",
                now.saturating_sub(base) as f64,
            ));
        }
    }

    /// The monitored process, with its descendants when asked.
    fn process_set(&self) -> Vec<i32> {
        let pid = self.config.pid;
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return Vec::new();
        }
        if self.config.track_process_tree {
            descendants_and_self(pid)
        } else {
            vec![pid]
        }
    }

    /// The monitored process and all its descendants (GPU use is looked
    /// for in the whole tree, as W&B does).
    pub fn process_tree_for_gpus(&self) -> Vec<i32> {
        if self.config.pid <= 0 {
            return Vec::new();
        }
        descendants_and_self(self.config.pid)
    }

    /// Hardware facts for the environment record.
    pub fn probe(&self) -> pb::EnvironmentRecord {
        let mut env = pb::EnvironmentRecord {
            cpu_count: self.physical_cpus as u32,
            cpu_count_logical: self.logical_cpus as u32,
            ..Default::default()
        };
        if let Some(m) = meminfo() {
            env.memory = Some(pb::MemoryInfo { total: m.total });
        }
        if !self.cpu_model.is_empty() {
            env.cpu = Some(pb::CpuInfo {
                model: self.cpu_model.clone(),
                ..Default::default()
            });
        }
        for path in &self.config.disk_paths {
            if let Some(u) = disk_usage(path) {
                env.disk.insert(
                    path.clone(),
                    pb::DiskInfo {
                        total: u.total,
                        used: u.used,
                    },
                );
            }
        }
        env
    }
}

/// `pid` and its descendants, through `/proc/<p>/task/*/children`.
fn descendants_and_self(pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    let mut seen: HashSet<i32> = HashSet::from([pid]);
    let mut i = 0;
    while i < out.len() && out.len() < 4096 {
        let p = out[i];
        i += 1;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                if seen.insert(child) {
                    out.push(child);
                }
            }
        }
    }
    out
}

struct ProcStat {
    ticks: u64,
    threads: u64,
}

fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_proc_stat(&text)
}

/// utime + stime and the thread count from `/proc/<pid>/stat` (fields 14,
/// 15 and 20; the command name before them may contain anything).
fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        ticks: f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
        threads: f.get(17)?.parse().ok()?,
    })
}

fn proc_rss_pages(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

struct MemInfo {
    total: u64,
    available: u64,
}

fn meminfo() -> Option<MemInfo> {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k == name).then(|| {
                v.split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .map(|kb| kb * 1024)
            })?
        })
    };
    let total = field("MemTotal")?;
    let available = field("MemAvailable").unwrap_or_else(|| {
        field("MemFree").unwrap_or(0)
            + field("Cached").unwrap_or(0)
            + field("SReclaimable").unwrap_or(0)
    });
    Some(MemInfo { total, available })
}

struct DiskUsage {
    total: u64,
    used: u64,
    available: u64,
}

impl DiskUsage {
    /// Used share of what is usable, as `df` computes it.
    fn used_percent(&self) -> f64 {
        let denominator = self.used + self.available;
        if denominator == 0 {
            0.0
        } else {
            self.used as f64 / denominator as f64 * 100.0
        }
    }
}

fn disk_usage(path: &str) -> Option<DiskUsage> {
    let c = std::ffi::CString::new(path).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is a
    // valid C string.
    let s = unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut s) != 0 {
            return None;
        }
        s
    };
    let frsize = s.f_frsize as u64;
    Some(DiskUsage {
        total: s.f_blocks as u64 * frsize,
        used: (s.f_blocks as u64).saturating_sub(s.f_bfree as u64) * frsize,
        available: s.f_bavail as u64 * frsize,
    })
}

/// Bytes read and written per block device, from `/proc/diskstats`
/// (devices that never did any I/O are left out).
fn diskstats() -> HashMap<String, (u64, u64)> {
    let text = std::fs::read_to_string("/proc/diskstats").unwrap_or_default();
    parse_diskstats(&text)
}

fn parse_diskstats(text: &str) -> HashMap<String, (u64, u64)> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        if f[3..].iter().all(|v| *v == "0") {
            continue;
        }
        let sectors = |i: usize| f[i].parse::<u64>().unwrap_or(0) * 512;
        out.insert(f[2].to_string(), (sectors(5), sectors(9)));
    }
    out
}

fn pseudo_device(name: &str) -> bool {
    name.starts_with("loop") || name.starts_with("ram") || name.starts_with("zram")
}

/// The block devices behind `paths` (W&B's rules: real file systems whose
/// mount point is a prefix of a path; an overlay root means every real
/// device; none found means every device with I/O).
fn disk_devices(paths: &[String]) -> Vec<String> {
    if paths.is_empty() {
        return Vec::new();
    }
    let real_fs: HashSet<String> = std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with("nodev"))
        .map(|l| l.trim().to_string())
        .chain(std::iter::once("zfs".to_string()))
        .collect();
    let mountinfo = std::fs::read_to_string("/proc/1/mountinfo")
        .or_else(|_| std::fs::read_to_string("/proc/self/mountinfo"))
        .unwrap_or_default();
    let mut mounts = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split_whitespace().collect();
        let r: Vec<&str> = right.split_whitespace().collect();
        let (Some(dev_id), Some(root), Some(point), Some(fstype)) =
            (l.get(2), l.get(3), l.get(4), r.first())
        else {
            continue;
        };
        if !real_fs.contains(*fstype) || *root != "/" {
            continue; // pseudo file systems and bind mounts
        }
        let name = std::fs::read_link(format!("/sys/dev/block/{dev_id}"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .or_else(|| r.get(1).map(|s| s.trim_start_matches("/dev/").to_string()));
        if let Some(name) = name {
            mounts.push((point.to_string(), name));
        }
    }
    let stats = diskstats();
    let mut devices: Vec<String> = Vec::new();
    let mut add = |d: &str| {
        if !devices.iter().any(|x| x == d) {
            devices.push(d.to_string());
        }
    };
    for (point, dev) in &mounts {
        if paths.iter().any(|p| p.starts_with(point.as_str())) {
            add(dev);
        }
    }
    if !mounts.iter().any(|(p, _)| p == "/") && paths == ["/"] {
        for (_, dev) in &mounts {
            if !pseudo_device(dev) {
                add(dev);
            }
        }
    }
    devices.retain(|d| stats.contains_key(d));
    if devices.is_empty() {
        let mut all: Vec<String> = stats
            .keys()
            .filter(|d| !pseudo_device(d))
            .cloned()
            .collect();
        all.sort();
        devices = all;
    }
    devices
}

/// Bytes sent and received on real interfaces (not loopback, not enslaved
/// to a bond or bridge, which would count twice).
fn network_bytes() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/net/dev").ok()?;
    let mut sent = 0;
    let mut recv = 0;
    for line in text.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" || !counted_interface(name) {
            continue;
        }
        let f: Vec<u64> = counters
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        if f.len() >= 9 {
            recv += f[0];
            sent += f[8];
        }
    }
    Some((sent, recv))
}

fn counted_interface(name: &str) -> bool {
    let dir = Path::new("/sys/class/net").join(name);
    if dir.join("master").exists() {
        return false;
    }
    let flags = std::fs::read_to_string(dir.join("flags"))
        .ok()
        .and_then(|f| u64::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
        .unwrap_or(0);
    flags & 0x8 == 0 // IFF_LOOPBACK
}

/// `RetransSegs` of `/proc/net/snmp`.
fn tcp_retransmits() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let names = tcp.next()?;
    let values = tcp.next()?;
    let i = names.split_whitespace().position(|n| n == "RetransSegs")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

fn logical_cpu_count(cpuinfo: &str) -> usize {
    let n = cpuinfo
        .lines()
        .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
        .count();
    if n > 0 {
        return n;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Physical cores: distinct core sibling lists in sysfs, else cpuinfo's
/// "cpu cores" per package.
fn physical_cpu_count(cpuinfo: &str) -> Option<usize> {
    let mut cores = HashSet::new();
    if let Ok(dir) = std::fs::read_dir("/sys/devices/system/cpu") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name
                .strip_prefix("cpu")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            {
                continue;
            }
            let topo = e.path().join("topology");
            if let Ok(list) = std::fs::read_to_string(topo.join("core_cpus_list"))
                .or_else(|_| std::fs::read_to_string(topo.join("thread_siblings_list")))
            {
                cores.insert(list.trim().to_string());
            }
        }
    }
    if !cores.is_empty() {
        return Some(cores.len());
    }
    let mut per_package: HashMap<String, usize> = HashMap::new();
    let mut package = String::new();
    for line in cpuinfo.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match k.trim() {
            "physical id" => package = v.trim().to_string(),
            "cpu cores" => {
                if let Ok(n) = v.trim().parse() {
                    per_package.insert(package.clone(), n);
                }
            }
            _ => {}
        }
    }
    let total: usize = per_package.values().sum();
    (total > 0).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_survives_odd_command_names() {
        let line = "1234 (my (weird) prog) S 1 1234 1234 0 -1 4194304 500 0 0 0 250 50 0 0 20 0 7 0 100 1000 200 18446744073709551615";
        let s = parse_proc_stat(line).unwrap();
        assert_eq!(s.ticks, 300);
        assert_eq!(s.threads, 7);
    }

    #[test]
    fn meminfo_and_diskstats() {
        let m =
            parse_meminfo("MemTotal:       1000 kB\nMemFree:   100 kB\nMemAvailable:    400 kB\n")
                .unwrap();
        assert_eq!((m.total, m.available), (1024000, 409600));
        let d = parse_diskstats(
            " 253 0 vda 100 0 2048 0 50 0 4096 0 0 0 0\n 7 0 loop0 0 0 0 0 0 0 0 0 0 0 0\n",
        );
        assert_eq!(d.get("vda"), Some(&(2048 * 512, 4096 * 512)));
        assert!(!d.contains_key("loop0"));
    }

    #[test]
    fn a_live_sample_is_sane() {
        let mut host = Host::new(Config::default());
        let mut first = Vec::new();
        host.sample(&mut first);
        let get = |v: &[Metric], k: &str| v.iter().find(|m| m.key == k).map(|m| m.value.as_f64());
        // Rates need two samples.
        assert_eq!(get(&first, "cpu"), None);
        let t = Instant::now();
        while t.elapsed().as_millis() < 50 {
            std::hint::black_box((0..1000).sum::<u64>());
        }
        let mut second = Vec::new();
        host.sample(&mut second);
        let cpu = get(&second, "cpu").expect("cpu on the second sample");
        assert!((0.0..=100.0 * 64.0).contains(&cpu), "{cpu}");
        let mem = get(&second, "memory_percent").unwrap();
        assert!((0.0..=100.0).contains(&mem), "{mem}");
        assert!(get(&second, "proc.memory.rssMB").unwrap() > 0.0);
        assert!(get(&second, "proc.cpu.threads").unwrap() >= 1.0);
        assert!(get(&second, "disk./.usagePercent").is_some());
        assert!(get(&second, "network.sent").unwrap() >= 0.0);
        let env = host.probe();
        assert!(env.cpu_count_logical >= 1 && env.memory.unwrap().total > 0);
        assert!(env.disk.contains_key("/"));
    }
}
