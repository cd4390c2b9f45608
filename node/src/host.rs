//! Host readings (cpu count, memory, disk and pid usage) from sysinfo, and the
//! pure rules that turn them into node pressure conditions.

use std::path::Path;

/// One reading of the host's resources.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostReading {
    /// Logical cpus.
    pub cpus: u32,
    /// Total memory in bytes.
    pub memory_total: u64,
    /// Available memory in bytes.
    pub memory_available: u64,
    /// Total bytes of the filesystem holding the data directory.
    pub disk_total: u64,
    /// Available bytes there.
    pub disk_available: u64,
    /// Processes running on the host.
    pub pids: u64,
    /// The host's pid limit (Linux `kernel.pid_max`; a large default elsewhere).
    pub pid_max: u64,
    /// Kernel version, OS image, boot id and machine id for `nodeInfo`.
    pub kernel_version: String,
    pub os_image: String,
    pub boot_id: String,
    pub machine_id: String,
}

/// Memory pressure below this many available bytes (kubelet's `memory.available<100Mi`).
pub const MEMORY_PRESSURE_BYTES: u64 = 100 * 1024 * 1024;

impl HostReading {
    /// Reads the host now; `data_dir` picks the filesystem for disk readings.
    pub fn read(data_dir: &Path) -> HostReading {
        use sysinfo::{Disks, MemoryRefreshKind, ProcessRefreshKind, ProcessesToUpdate, System};
        let Ok(mut sys) = System::new() else {
            return HostReading {
                cpus: 1,
                ..Default::default()
            };
        };
        sys.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        sys.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing(),
        );
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let disks = Disks::new_with_refreshed_list().ok();
        let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        let disk = disks
            .iter()
            .flat_map(|d| d.iter())
            .filter(|d| dir.starts_with(d.mount_point()))
            .max_by_key(|d| d.mount_point().as_os_str().len());
        let (disk_total, disk_available) = disk
            .map(|d| (d.total_space(), d.available_space()))
            .unwrap_or((0, 0));
        HostReading {
            cpus,
            memory_total: sys.total_memory(),
            memory_available: sys.available_memory(),
            disk_total,
            disk_available,
            pids: sys.processes().len() as u64,
            pid_max: read_trimmed("/proc/sys/kernel/pid_max")
                .and_then(|s| s.parse().ok())
                .unwrap_or(4_194_304),
            kernel_version: System::kernel_version().unwrap_or_default(),
            os_image: System::long_os_version().unwrap_or_default(),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
            machine_id: read_trimmed("/etc/machine-id").unwrap_or_default(),
        }
    }

    /// Memory pressure: less than 100 MiB available.
    pub fn memory_pressure(&self) -> bool {
        self.memory_total > 0 && self.memory_available < MEMORY_PRESSURE_BYTES
    }

    /// Disk pressure: less than 10 % of the data directory's filesystem available.
    pub fn disk_pressure(&self) -> bool {
        self.disk_total > 0 && self.disk_available.saturating_mul(10) < self.disk_total
    }

    /// PID pressure: more than 90 % of the pid limit in use.
    pub fn pid_pressure(&self) -> bool {
        self.pid_max > 0 && self.pids.saturating_mul(10) > self.pid_max.saturating_mul(9)
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_rules_follow_kubelet_thresholds() {
        let mut r = HostReading {
            memory_total: 8 << 30,
            memory_available: 4 << 30,
            disk_total: 1000,
            disk_available: 500,
            pids: 100,
            pid_max: 1000,
            ..Default::default()
        };
        assert!(!r.memory_pressure() && !r.disk_pressure() && !r.pid_pressure());
        r.memory_available = 50 << 20;
        r.disk_available = 99;
        r.pids = 901;
        assert!(r.memory_pressure() && r.disk_pressure() && r.pid_pressure());
    }

    #[test]
    fn reads_this_host() {
        let dir = tempfile::tempdir().unwrap();
        let r = HostReading::read(dir.path());
        assert!(r.cpus >= 1);
        assert!(r.memory_total > 0);
        assert!(r.memory_available <= r.memory_total);
        assert!(r.pids > 0);
    }
}
