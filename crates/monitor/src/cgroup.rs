//! cgroup v2 limits of the monitored process.
//!
//! In a container the host's numbers mislead: 2 GiB used of a 4 GiB limit
//! is 50 %, not 1 % of the host's 200 GiB, and a process allowed 2 CPUs at
//! full speed is at 100 %, not 3 % of 64 cores. So memory and CPU are
//! reported against the process's cgroup limits when it has any (cgroup v1
//! is not read).

use std::path::{Path, PathBuf};

/// The limits found for a process.
#[derive(Debug, Clone)]
pub struct Cgroup {
    /// The process's cgroup directory.
    dir: PathBuf,
    /// `memory.max` in bytes, if limited.
    pub memory_limit: Option<u64>,
    /// CPUs the process may use: the CPU quota (`cpu.max`) or the allowed
    /// CPU list, whichever is smaller.
    pub cpu_limit: Option<f64>,
    /// Whether `cpu.max` sets a quota (throttling is then reported).
    pub cpu_quota: bool,
}

impl Cgroup {
    /// The limits of process `pid` (the sampler's own when `pid` ≤ 0), or
    /// `None` if it has neither a memory nor a CPU limit.
    pub fn detect(pid: i32, logical_cpus: usize) -> Option<Self> {
        Self::detect_in(Path::new("/"), pid, logical_cpus)
    }

    /// [`detect`](Self::detect) with `/proc` and the cgroup mount under
    /// `root` (for tests).
    pub fn detect_in(root: &Path, pid: i32, logical_cpus: usize) -> Option<Self> {
        let proc_dir = if pid > 0 {
            root.join(format!("proc/{pid}"))
        } else {
            root.join("proc/self")
        };
        let cgroup = std::fs::read_to_string(proc_dir.join("cgroup")).ok()?;
        // cgroup v2: the line with an empty controller list, `0::/path`.
        let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
        let mountinfo = std::fs::read_to_string(proc_dir.join("mountinfo")).ok()?;
        let (mount_root, mount_point) = mountinfo.lines().find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            if right.split_whitespace().next()? != "cgroup2" {
                return None;
            }
            let f: Vec<&str> = left.split_whitespace().collect();
            Some((f.get(3)?.to_string(), f.get(4)?.to_string()))
        })?;
        let relative = path
            .strip_prefix(mount_root.as_str())
            .unwrap_or(path)
            .trim_start_matches('/');
        let dir = root
            .join(mount_point.trim_start_matches('/'))
            .join(relative);

        let memory_limit = read_trimmed(&dir.join("memory.max"))
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|v| *v > 0);
        let quota = read_trimmed(&dir.join("cpu.max")).and_then(|v| {
            let mut parts = v.split_whitespace();
            let quota: f64 = parts.next()?.parse().ok()?;
            let period: f64 = parts.next().unwrap_or("100000").parse().ok()?;
            (quota > 0.0 && period > 0.0).then_some(quota / period)
        });
        let allowed = std::fs::read_to_string(proc_dir.join("status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                    .map(|list| count_cpu_list(list.trim()))
            })
            .filter(|n| *n > 0 && *n < logical_cpus)
            .map(|n| n as f64);
        let cpu_limit = match (quota, allowed) {
            (Some(q), Some(a)) => Some(q.min(a)),
            (q, a) => q.or(a),
        };
        if memory_limit.is_none() && cpu_limit.is_none() {
            return None;
        }
        Some(Self {
            dir,
            memory_limit,
            cpu_limit,
            cpu_quota: quota.is_some(),
        })
    }

    /// Memory in use by the cgroup and its limit.
    pub fn memory(&self) -> Option<(u64, u64)> {
        let limit = self.memory_limit?;
        let current = read_trimmed(&self.dir.join("memory.current"))?
            .parse()
            .ok()?;
        Some((current, limit))
    }

    /// `nr_periods` and `nr_throttled` of `cpu.stat`.
    pub fn throttling(&self) -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string(self.dir.join("cpu.stat")).ok()?;
        let field = |name: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
        };
        Some((field("nr_periods ")?, field("nr_throttled ")?))
    }

    /// Processes killed for lack of memory in this cgroup so far.
    pub fn oom_kills(&self) -> Option<u64> {
        let events = std::fs::read_to_string(self.dir.join("memory.events")).ok()?;
        events
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Counts a CPU list like `0-3,8,10-11`.
fn count_cpu_list(list: &str) -> usize {
    list.split(',')
        .filter(|p| !p.is_empty())
        .map(|part| match part.split_once('-') {
            Some((a, b)) => match (a.parse::<usize>(), b.parse::<usize>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 0,
            },
            None => usize::from(part.parse::<usize>().is_ok()),
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, content: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    #[test]
    fn limits_of_a_container() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "proc/42/cgroup", "0::/kubepods/pod1/ctr\n");
        write(
            root,
            "proc/42/mountinfo",
            "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n",
        );
        write(
            root,
            "proc/42/status",
            "Name:\tpython\nCpus_allowed_list:\t0-7\n",
        );
        let cg = "sys/fs/cgroup/kubepods/pod1/ctr";
        write(root, &format!("{cg}/memory.max"), "4294967296\n");
        write(root, &format!("{cg}/memory.current"), "1073741824\n");
        write(root, &format!("{cg}/cpu.max"), "250000 100000\n");
        write(
            root,
            &format!("{cg}/cpu.stat"),
            "usage_usec 10\nnr_periods 40\nnr_throttled 10\n",
        );
        write(root, &format!("{cg}/memory.events"), "low 0\noom_kill 2\n");

        let c = Cgroup::detect_in(root, 42, 64).unwrap();
        assert_eq!(c.memory(), Some((1 << 30, 4 << 30)));
        assert_eq!(c.cpu_limit, Some(2.5));
        assert_eq!(c.throttling(), Some((40, 10)));
        assert_eq!(c.oom_kills(), Some(2));
    }

    #[test]
    fn no_limits_means_no_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "proc/7/cgroup", "0::/user.slice\n");
        write(
            root,
            "proc/7/mountinfo",
            "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
        );
        write(root, "proc/7/status", "Cpus_allowed_list:\t0-1\n");
        write(root, "sys/fs/cgroup/user.slice/memory.max", "max\n");
        write(root, "sys/fs/cgroup/user.slice/cpu.max", "max 100000\n");
        assert!(Cgroup::detect_in(root, 7, 2).is_none());
        assert_eq!(count_cpu_list("0-3,8,10-11"), 7);
    }
}
