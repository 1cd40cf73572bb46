//! guest-get-host-name, -timezone, -osinfo, -users, -vcpus, -memory-blocks,
//! -memory-block-info, -cpustats, -load. All read-only; the OS access is in
//! `crate::sys` (host, osrelease, utmp, hotplug, procfs).

use std::path::Path;

use qga_proto::cmds::system::*;

use crate::agent::Agent;
use crate::error::{Error, Result};
use crate::sys::{host, hotplug, osrelease, procfs, tz, utmp};

/// guest-get-host-name: `gethostname()`; failure is `cannot get hostname: <strerror>`.
pub fn get_host_name(_: &Agent, _: GuestGetHostNameArgs) -> Result<GuestHostName> {
    let name = host::host_name().map_err(|e| Error::errno("cannot get hostname", &e))?;
    Ok(GuestHostName {
        host_name: String::from_utf8_lossy(&name).into_owned(),
    })
}

/// guest-get-timezone: offset and abbreviation of the local zone now.
pub fn get_timezone(_: &Agent, _: GuestGetTimezoneArgs) -> Result<GuestTimezone> {
    let (offset, zone) =
        tz::local_timezone().ok_or_else(|| Error::new("Couldn't retrieve local timezone"))?;
    Ok(GuestTimezone { zone, offset })
}

/// guest-get-osinfo: uname, plus os-release (`QGA_OS_RELEASE`, else `/etc/os-release`,
/// else `/usr/lib/os-release`); an unusable file only leaves its fields out.
pub fn get_osinfo(agent: &Agent, _: GuestGetOsinfoArgs) -> Result<GuestOSInfo> {
    let (release, version, machine) =
        host::uname().map_err(|e| Error::errno("uname failed", &e))?;
    let env = std::env::var_os("QGA_OS_RELEASE");
    let fields = osrelease::os_release(env.as_deref(), |msg| agent.log.audit(msg));
    let [id, name, pretty_name, version_os, version_id, variant, variant_id] =
        fields.unwrap_or_default();
    Ok(GuestOSInfo {
        kernel_release: Some(release),
        kernel_version: Some(version),
        machine: Some(machine),
        id,
        name,
        pretty_name,
        version: version_os,
        version_id,
        variant,
        variant_id,
    })
}

/// guest-get-users: USER_PROCESS records of utmp, one per user.
pub fn get_users(_: &Agent, _: GuestGetUsersArgs) -> Result<Vec<GuestUser>> {
    Ok(utmp::read_users(Path::new(utmp::UTMP_PATH)))
}

/// guest-get-vcpus: `/sys/devices/system/cpu/cpu<N>` in readdir order.
pub fn get_vcpus(_: &Agent, _: GuestGetVcpusArgs) -> Result<Vec<GuestLogicalProcessor>> {
    hotplug::get_vcpus(hotplug::CPU_DIR)
}

/// guest-get-memory-blocks: `/sys/devices/system/memory/memory<N>` in readdir order.
pub fn get_memory_blocks(_: &Agent, _: GuestGetMemoryBlocksArgs) -> Result<Vec<GuestMemoryBlock>> {
    hotplug::get_memory_blocks(hotplug::MEMORY_DIR)
}

/// guest-get-memory-block-info: `block_size_bytes`.
pub fn get_memory_block_info(
    _: &Agent,
    _: GuestGetMemoryBlockInfoArgs,
) -> Result<GuestMemoryBlockInfo> {
    Ok(GuestMemoryBlockInfo {
        size: hotplug::memory_block_size(hotplug::MEMORY_DIR)?,
    })
}

/// guest-get-cpustats: the `cpu<N>` lines of `/proc/stat` in milliseconds.
pub fn get_cpustats(agent: &Agent, _: GuestGetCpustatsArgs) -> Result<Vec<GuestCpuStats>> {
    const STAT: &str = "/proc/stat";
    let text = std::fs::read(STAT).map_err(|e| Error::errno(format!("open(\"{STAT}\")"), &e))?;
    let (stats, short) = procfs::parse_cpu_stats(&text, procfs::clk_tck());
    if short {
        agent.log.audit(&format!(
            "Parsing cpu stat from {STAT} failed, see \"man proc\""
        ));
    }
    Ok(stats.into_iter().map(GuestCpuStats::Linux).collect())
}

/// guest-get-load: `getloadavg()`.
pub fn get_load(_: &Agent, _: GuestGetLoadArgs) -> Result<GuestLoadAverage> {
    let [load1m, load5m, load15m] =
        host::load_average().map_err(|e| Error::errno("cannot query load average", &e))?;
    Ok(GuestLoadAverage {
        load1m,
        load5m,
        load15m,
    })
}
