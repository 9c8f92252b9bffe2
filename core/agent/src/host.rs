//! `/v1/agent/host`: the host an agent runs on, as Consul reports it (gopsutil's shapes):
//! memory, CPUs, the host and OS, and the disk holding the data dir. Linux only: read from
//! `/proc`, `/etc/os-release`, `uname` and `statvfs`; what cannot be read is listed in
//! `Errors`, the rest is still answered.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value as Json};

/// The host report.
pub fn report(data_dir: Option<&Path>) -> Json {
    let mut errors = Vec::new();
    let mut section = |name: &str, r: Result<Json, String>| match r {
        Ok(v) => v,
        Err(e) => {
            errors.push(format!("{name}: {e}"));
            Json::Null
        }
    };
    let memory = section("memory", memory());
    let cpu = section("cpu", cpus());
    let host = section("host", host());
    let disk = section("disk", disk(data_dir.unwrap_or(Path::new("/"))));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    json!({
        "Memory": memory,
        "CPU": cpu,
        "Host": host,
        "Disk": disk,
        "CollectionTime": now.as_nanos() as u64,
        "Errors": if errors.is_empty() { Json::Null } else { json!(errors) },
    })
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

/// `/proc/meminfo` values in bytes, by name.
fn meminfo() -> Result<BTreeMap<String, u64>, String> {
    let mut m = BTreeMap::new();
    for line in read("/proc/meminfo")?.lines() {
        let Some((k, rest)) = line.split_once(':') else { continue };
        let mut parts = rest.split_whitespace();
        let Some(v) = parts.next().and_then(|v| v.parse::<u64>().ok()) else { continue };
        let v = if parts.next() == Some("kB") { v * 1024 } else { v };
        m.insert(k.to_string(), v);
    }
    Ok(m)
}

fn memory() -> Result<Json, String> {
    let m = meminfo()?;
    let get = |k: &str| m.get(k).copied().unwrap_or(0);
    let total = get("MemTotal");
    let available = get("MemAvailable");
    let used = total.saturating_sub(available);
    Ok(json!({
        "total": total,
        "available": available,
        "used": used,
        "usedPercent": if total == 0 { 0.0 } else { used as f64 * 100.0 / total as f64 },
        "free": get("MemFree"),
        "buffers": get("Buffers"),
        "cached": get("Cached"),
        "shared": get("Shmem"),
        "swapTotal": get("SwapTotal"),
        "swapFree": get("SwapFree"),
    }))
}

fn cpus() -> Result<Json, String> {
    let mut out = Vec::new();
    for block in read("/proc/cpuinfo")?.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let field = |name: &str| {
            block.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == name).then(|| v.trim().to_string())
            })
        };
        let num = |name: &str| field(name).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        out.push(json!({
            "cpu": num("processor") as u64,
            "vendorId": field("vendor_id").unwrap_or_default(),
            "family": field("cpu family").unwrap_or_default(),
            "model": field("model").unwrap_or_default(),
            "stepping": num("stepping") as u64,
            "physicalId": field("physical id").unwrap_or_default(),
            "coreId": field("core id").unwrap_or_default(),
            "cores": num("cpu cores").max(1.0) as u64,
            "modelName": field("model name").unwrap_or_default(),
            "mhz": num("cpu MHz"),
            "cacheSize": field("cache size").and_then(|c| c.split_whitespace().next()?.parse::<u64>().ok()).unwrap_or(0),
            "flags": field("flags").map(|f| f.split_whitespace().map(str::to_string).collect::<Vec<_>>()).unwrap_or_default(),
            "microcode": field("microcode").unwrap_or_default(),
        }));
    }
    Ok(json!(out))
}

fn host() -> Result<Json, String> {
    // SAFETY: uname fills the zeroed struct it is given.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut uts) } != 0 {
        return Err(format!("uname: {}", std::io::Error::last_os_error()));
    }
    let text = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let uptime = read("/proc/uptime")?
        .split_whitespace()
        .next()
        .and_then(|s| s.parse::<f64>().ok())
        .ok_or("/proc/uptime: unreadable")? as u64;
    let boot_time =
        read("/proc/stat")?.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok()).unwrap_or(0);
    let procs = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
                .count()
        })
        .unwrap_or(0);
    let os_release: BTreeMap<String, String> = read("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect();
    let platform = os_release.get("ID").cloned().unwrap_or_default();
    Ok(json!({
        "hostname": text(&uts.nodename),
        "uptime": uptime,
        "bootTime": boot_time,
        "procs": procs,
        "os": "linux",
        "platform": platform,
        "platformFamily": os_release.get("ID_LIKE").cloned().unwrap_or_else(|| platform.clone()),
        "platformVersion": os_release.get("VERSION_ID").cloned().unwrap_or_default(),
        "kernelVersion": text(&uts.release),
        "kernelArch": text(&uts.machine),
        "virtualizationSystem": "",
        "virtualizationRole": "",
        "hostId": read("/etc/machine-id").map(|s| s.trim().to_string()).unwrap_or_default(),
    }))
}

fn disk(path: &Path) -> Result<Json, String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: statvfs fills the zeroed struct for a NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(format!("{}: {}", path.display(), std::io::Error::last_os_error()));
    }
    let block = st.f_frsize;
    let total = st.f_blocks * block;
    let free = st.f_bavail * block;
    let used = (st.f_blocks - st.f_bfree) * block;
    let percent = |used: u64, total: u64| if total == 0 { 0.0 } else { used as f64 * 100.0 / total as f64 };
    let inodes_used = st.f_files.saturating_sub(st.f_ffree);
    Ok(json!({
        "path": path.display().to_string(),
        "fstype": fstype(path).unwrap_or_default(),
        "total": total,
        "free": free,
        "used": used,
        "usedPercent": percent(used, used + free),
        "inodesTotal": st.f_files,
        "inodesUsed": inodes_used,
        "inodesFree": st.f_ffree,
        "inodesUsedPercent": percent(inodes_used, st.f_files),
    }))
}

/// The file system type of the longest mount point holding `path` (`/proc/mounts`).
fn fstype(path: &Path) -> Option<String> {
    let path = std::fs::canonicalize(path).ok()?;
    read("/proc/mounts")
        .ok()?
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, mount, fs) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(mount).then(|| (mount.len(), fs.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, fs)| fs)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_report_of_this_host() {
        let r = super::report(Some(std::path::Path::new("/")));
        assert!(r["Errors"].is_null(), "{r}");
        assert!(r["Memory"]["total"].as_u64().unwrap() > 0);
        assert!(!r["CPU"].as_array().unwrap().is_empty());
        assert_eq!(r["Host"]["os"], "linux");
        assert!(r["Disk"]["total"].as_u64().unwrap() > 0);
        assert!(!r["Disk"]["fstype"].as_str().unwrap().is_empty());
    }
}
