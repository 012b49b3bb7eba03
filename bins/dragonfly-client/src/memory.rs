//! `DRAGONFLY_MEMORY_LIMIT`: the most memory the node may use, from the
//! setting, else the container's limit (cgroup v2 `memory.max`, v1
//! `memory.limit_in_bytes`) minus headroom for the process itself, else a
//! share of physical memory.

use std::fmt;
use std::path::Path;

use anyhow::{Result, bail};

/// Left to the process itself (code, allocator, buffers) under a
/// container's limit.
const HEADROOM: u64 = 64 << 20;
/// Without a container limit, the share of physical memory the node takes.
const PHYSICAL_SHARE: u64 = 2;
/// cgroup v1 reports "no limit" as a number near `i64::MAX`; anything above
/// this is no limit.
const UNLIMITED: u64 = 1 << 60;

/// Where the effective limit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `DRAGONFLY_MEMORY_LIMIT` (or `memory_limit` in Config.toml).
    Setting,
    /// The process's cgroup v2 `memory.max` (the smallest up its tree),
    /// minus headroom.
    CgroupV2,
    /// The container's cgroup v1 `memory.limit_in_bytes`, minus headroom.
    CgroupV1,
    /// Half the machine's physical memory (no container limit).
    Physical,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Setting => "DRAGONFLY_MEMORY_LIMIT",
            Source::CgroupV2 => "the container's cgroup v2 memory.max, minus 64 MiB headroom",
            Source::CgroupV1 => "the container's cgroup v1 memory.limit_in_bytes, minus 64 MiB headroom",
            Source::Physical => "half the physical memory (no container limit found)",
        })
    }
}

/// The effective memory limit and its source; `None` when nothing could be
/// read (no setting, no cgroup, no `/proc/meminfo`).
pub fn effective(setting: Option<&str>) -> Result<Option<(u64, Source)>> {
    if let Some(text) = setting {
        return Ok(Some((parse_size(text)?, Source::Setting)));
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    Ok(container_limit(Path::new("/sys/fs/cgroup"), &own)
        .map(|(bytes, source)| (without_headroom(bytes), source))
        .or_else(|| {
            physical_memory(Path::new("/proc/meminfo")).map(|b| (b / PHYSICAL_SHARE, Source::Physical))
        }))
}

/// A container limit less the process's own headroom (half of a limit too
/// small to spare it).
fn without_headroom(bytes: u64) -> u64 {
    if bytes > 2 * HEADROOM { bytes - HEADROOM } else { (bytes / 2).max(1) }
}

/// Bytes, with an optional suffix: `KiB`/`MiB`/`GiB`/`TiB` (also `K`, `Ki`
/// and so on, binary multiples) or `kB`/`MB`/`GB`/`TB` (decimal); case and
/// spaces do not matter.
pub fn parse_size(text: &str) -> Result<u64> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let multiple: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => 1 << 10,
        "m" | "mi" | "mib" => 1 << 20,
        "g" | "gi" | "gib" => 1 << 30,
        "t" | "ti" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => bail!("`{text}`: unknown size unit `{other}` (use bytes, KiB, MiB, GiB or TiB)"),
    };
    let number: u64 = number.parse().map_err(|_| anyhow::anyhow!("`{text}` is not a size such as 512MiB"))?;
    match number.checked_mul(multiple) {
        Some(0) | None => bail!("`{text}` is not a usable size"),
        Some(bytes) => Ok(bytes),
    }
}

/// The memory limit of the cgroup the process runs in, under the cgroup
/// mount `root`, `own` being its `/proc/self/cgroup`: the smallest limit of
/// that cgroup and its ancestors, v2 (`memory.max`) first, then v1.
fn container_limit(root: &Path, own: &str) -> Option<(u64, Source)> {
    let v2_path = own.lines().find_map(|line| line.strip_prefix("0::")).unwrap_or("/");
    // v1 lines are `id:controllers:path`.
    let v1_path = own
        .lines()
        .filter_map(|line| line.split_once(':').and_then(|(_, rest)| rest.split_once(':')))
        .find(|(controllers, _)| controllers.split(',').any(|c| c == "memory"))
        .map_or("/", |(_, path)| path);
    if root.join("memory.max").exists() {
        return smallest_limit(root, v2_path, "memory.max").map(|b| (b, Source::CgroupV2));
    }
    smallest_limit(&root.join("memory"), v1_path, "memory.limit_in_bytes").map(|b| (b, Source::CgroupV1))
}

/// The smallest limit in `file` from `base/path` up to `base`.
fn smallest_limit(base: &Path, path: &str, file: &str) -> Option<u64> {
    let mut dir = base.to_path_buf();
    let mut dirs = vec![dir.clone()];
    for part in path.split('/').filter(|p| !p.is_empty() && *p != "..") {
        dir.push(part);
        dirs.push(dir.clone());
    }
    dirs.iter()
        .filter_map(|d| std::fs::read_to_string(d.join(file)).ok())
        .filter_map(|text| text.trim().parse::<u64>().ok())
        .filter(|&bytes| bytes < UNLIMITED)
        .min()
}

/// `MemTotal` of a `/proc/meminfo`.
fn physical_memory(meminfo: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(meminfo).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size(" 1 GiB ").unwrap(), 1 << 30);
        assert_eq!(parse_size("2g").unwrap(), 2 << 30);
        assert_eq!(parse_size("512Mi").unwrap(), 512 << 20);
        assert_eq!(parse_size("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("1000000").unwrap(), 1_000_000);
        for bad in ["", "MiB", "0", "12 parsecs", "-1MiB", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn container_limits_of_both_cgroup_versions() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(container_limit(root, ""), None);
        std::fs::create_dir(root.join("memory")).unwrap();
        std::fs::write(root.join("memory/memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        assert_eq!(container_limit(root, ""), None, "v1 without a limit");
        std::fs::write(root.join("memory/memory.limit_in_bytes"), "536870912\n").unwrap();
        assert_eq!(container_limit(root, "9:memory:/\n"), Some((512 << 20, Source::CgroupV1)));
        // A nested cgroup of the process with a smaller limit of its own.
        std::fs::create_dir_all(root.join("memory/docker/abc")).unwrap();
        std::fs::write(root.join("memory/docker/abc/memory.limit_in_bytes"), "268435456\n").unwrap();
        let v1 = "10:cpu,cpuacct:/docker/abc\n9:memory:/docker/abc\n";
        assert_eq!(container_limit(root, v1), Some((256 << 20, Source::CgroupV1)));
        std::fs::write(root.join("memory.max"), "max\n").unwrap();
        assert_eq!(container_limit(root, "0::/\n"), None, "v2 without a limit wins over v1");
        std::fs::create_dir_all(root.join("system.slice/node.service")).unwrap();
        std::fs::write(root.join("system.slice/node.service/memory.max"), "134217728\n").unwrap();
        let v2 = "0::/system.slice/node.service\n";
        assert_eq!(container_limit(root, v2), Some((128 << 20, Source::CgroupV2)));
        assert_eq!(without_headroom(512 << 20), 448 << 20);
        assert_eq!(without_headroom(96 << 20), 48 << 20, "never above the container's limit");
        std::fs::write(dir.path().join("meminfo"), "MemTotal:       24683584 kB\nMemFree: 1 kB\n").unwrap();
        assert_eq!(physical_memory(&dir.path().join("meminfo")), Some(24_683_584 * 1024));
        assert_eq!(effective(Some("1GiB")).unwrap(), Some((1 << 30, Source::Setting)));
    }
}
