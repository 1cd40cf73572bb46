//! guest-get-host-name, -timezone, -osinfo, -users, -vcpus, -memory-blocks,
//! -memory-block-info, -cpustats, -load.

use crate::qapi::{expect_dict, ArgError, FromQapi, FromQapiDict, Path, ToQapi};
use crate::value::{Dict, Value};
use crate::{qapi_command, qapi_enum, qapi_struct};

// Shared with guest-set-vcpus / guest-set-memory-blocks.
pub use super::power::{GuestLogicalProcessor, GuestMemoryBlock};

qapi_struct! {
    /// guest-get-host-name: the guest's host name.
    pub struct GuestGetHostNameArgs {}
}
qapi_command!(GuestGetHostNameArgs, "guest-get-host-name", GuestHostName);

qapi_struct! {
    /// The reply of guest-get-host-name.
    pub struct GuestHostName {
        /// `gethostname()`.
        pub host_name: String = "host-name",
    }
}

qapi_struct! {
    /// guest-get-timezone: the local time zone now.
    pub struct GuestGetTimezoneArgs {}
}
qapi_command!(GuestGetTimezoneArgs, "guest-get-timezone", GuestTimezone);

qapi_struct! {
    /// The reply of guest-get-timezone.
    pub struct GuestTimezone {
        /// Abbreviation (`UTC`, `CET`), when known.
        pub zone: Option<String> = "zone",
        /// Seconds east of UTC, now.
        pub offset: i64 = "offset",
    }
}

qapi_struct! {
    /// guest-get-osinfo: kernel (uname) and distribution (os-release) facts.
    pub struct GuestGetOsinfoArgs {}
}
qapi_command!(GuestGetOsinfoArgs, "guest-get-osinfo", GuestOSInfo);

qapi_struct! {
    /// The reply of guest-get-osinfo; every member is optional.
    pub struct GuestOSInfo {
        /// uname release.
        pub kernel_release: Option<String> = "kernel-release",
        /// uname version.
        pub kernel_version: Option<String> = "kernel-version",
        /// uname machine.
        pub machine: Option<String> = "machine",
        /// os-release `ID`.
        pub id: Option<String> = "id",
        /// os-release `NAME`.
        pub name: Option<String> = "name",
        /// os-release `PRETTY_NAME`.
        pub pretty_name: Option<String> = "pretty-name",
        /// os-release `VERSION`.
        pub version: Option<String> = "version",
        /// os-release `VERSION_ID`.
        pub version_id: Option<String> = "version-id",
        /// os-release `VARIANT`.
        pub variant: Option<String> = "variant",
        /// os-release `VARIANT_ID`.
        pub variant_id: Option<String> = "variant-id",
    }
}

qapi_struct! {
    /// guest-get-users: the logged-in users (utmp).
    pub struct GuestGetUsersArgs {}
}
qapi_command!(GuestGetUsersArgs, "guest-get-users", Vec<GuestUser>);

qapi_struct! {
    /// One logged-in user.
    pub struct GuestUser {
        /// Login name.
        pub user: String = "user",
        /// Earliest login, fractional seconds since the epoch.
        pub login_time: f64 = "login-time",
        /// Windows only.
        pub domain: Option<String> = "domain",
    }
}

qapi_struct! {
    /// guest-get-vcpus: the logical processors in sysfs.
    pub struct GuestGetVcpusArgs {}
}
qapi_command!(
    GuestGetVcpusArgs,
    "guest-get-vcpus",
    Vec<GuestLogicalProcessor>
);

qapi_struct! {
    /// guest-get-memory-blocks: the memory blocks in sysfs.
    pub struct GuestGetMemoryBlocksArgs {}
}
qapi_command!(
    GuestGetMemoryBlocksArgs,
    "guest-get-memory-blocks",
    Vec<GuestMemoryBlock>
);

qapi_struct! {
    /// guest-get-memory-block-info: the memory block size.
    pub struct GuestGetMemoryBlockInfoArgs {}
}
qapi_command!(
    GuestGetMemoryBlockInfoArgs,
    "guest-get-memory-block-info",
    GuestMemoryBlockInfo
);

qapi_struct! {
    /// The reply of guest-get-memory-block-info.
    pub struct GuestMemoryBlockInfo {
        /// Bytes per memory block.
        pub size: u64 = "size",
    }
}

qapi_struct! {
    /// guest-get-cpustats: per-CPU time counters.
    pub struct GuestGetCpustatsArgs {}
}
qapi_command!(
    GuestGetCpustatsArgs,
    "guest-get-cpustats",
    Vec<GuestCpuStats>
);

qapi_enum! {
    /// The discriminator of GuestCpuStats.
    pub enum GuestCpuStatsType {
        /// /proc/stat counters.
        Linux = "linux",
    }
}

qapi_struct! {
    /// Linux CPU counters of one CPU, in milliseconds.
    pub struct GuestLinuxCpuStats {
        /// `N` of `cpuN`.
        pub cpu: i64 = "cpu",
        /// user
        pub user: u64 = "user",
        /// nice
        pub nice: u64 = "nice",
        /// system
        pub system: u64 = "system",
        /// idle
        pub idle: u64 = "idle",
        /// iowait (more than 4 counters)
        pub iowait: Option<u64> = "iowait",
        /// irq (more than 5 counters)
        pub irq: Option<u64> = "irq",
        /// softirq (more than 5 counters)
        pub softirq: Option<u64> = "softirq",
        /// steal (more than 7 counters)
        pub steal: Option<u64> = "steal",
        /// guest (more than 8 counters)
        pub guest: Option<u64> = "guest",
        /// guest_nice (more than 9 counters)
        pub guestnice: Option<u64> = "guestnice",
    }
}

/// GuestCpuStats: a flat union on `type` whose only variant is `linux`. On the wire the
/// base member `type` is inserted first, then the variant's members.
#[derive(Debug, Clone, PartialEq)]
pub enum GuestCpuStats {
    /// `{"type": "linux", "cpu": ..., ...}`
    Linux(GuestLinuxCpuStats),
}

impl ToQapi for GuestCpuStats {
    fn to_qapi(&self) -> Value {
        let GuestCpuStats::Linux(stats) = self;
        let mut d = Dict::new();
        d.insert("type", GuestCpuStatsType::Linux.to_qapi());
        if let Value::Dict(members) = stats.to_qapi() {
            for (k, v) in members.iter_inserted() {
                d.insert(k.to_vec(), v.clone());
            }
        }
        Value::Dict(d)
    }
}

impl FromQapi for GuestCpuStats {
    fn from_qapi(v: Option<&Value>, path: Path<'_>) -> Result<Self, ArgError> {
        let d = expect_dict(v, &path)?;
        let ty = GuestCpuStatsType::from_qapi(d.get("type"), Path::Member(&path, "type"))?;
        match ty {
            GuestCpuStatsType::Linux => {
                // The variant's members are read from the same object; `type` is known.
                let mut rest = Dict::new();
                for (k, v) in d.iter_inserted().filter(|(k, _)| *k != b"type") {
                    rest.insert(k.to_vec(), v.clone());
                }
                Ok(GuestCpuStats::Linux(GuestLinuxCpuStats::from_qapi_dict(
                    &rest, path,
                )?))
            }
        }
    }
}

qapi_struct! {
    /// guest-get-load: the load averages.
    pub struct GuestGetLoadArgs {}
}
qapi_command!(GuestGetLoadArgs, "guest-get-load", GuestLoadAverage);

qapi_struct! {
    /// The reply of guest-get-load (`getloadavg`).
    pub struct GuestLoadAverage {
        /// 1-minute load average.
        pub load1m: f64 = "load1m",
        /// 5-minute load average.
        pub load5m: f64 = "load5m",
        /// 15-minute load average.
        pub load15m: f64 = "load15m",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::value::keys;

    fn s(x: &str) -> Option<String> {
        Some(x.to_string())
    }

    /// Appendix A of the protocol reference: the key orders qemu-ga emits.
    #[test]
    fn key_orders_match_appendix_a() {
        let v = GuestTimezone {
            zone: s("UTC"),
            offset: 0,
        }
        .to_qapi();
        assert_eq!(keys(&v), ["zone", "offset"]);
        let v = GuestHostName {
            host_name: "h".into(),
        }
        .to_qapi();
        assert_eq!(keys(&v), ["host-name"]);
        let v = GuestOSInfo {
            kernel_release: s("r"),
            kernel_version: s("v"),
            machine: s("m"),
            id: s("i"),
            name: s("n"),
            pretty_name: s("p"),
            version: s("v"),
            version_id: s("vi"),
            variant: s("va"),
            variant_id: s("vai"),
        }
        .to_qapi();
        assert_eq!(
            keys(&v),
            [
                "name",
                "kernel-release",
                "version",
                "variant",
                "pretty-name",
                "version-id",
                "variant-id",
                "kernel-version",
                "machine",
                "id"
            ]
        );
        let v = GuestUser {
            user: "u".into(),
            login_time: 1.5,
            domain: s("d"),
        }
        .to_qapi();
        assert_eq!(keys(&v), ["login-time", "domain", "user"]);
        let v = GuestLogicalProcessor {
            logical_id: 0,
            online: true,
            can_offline: Some(false),
        }
        .to_qapi();
        assert_eq!(keys(&v), ["online", "can-offline", "logical-id"]);
        let v = GuestMemoryBlock {
            phys_index: 1,
            online: true,
            can_offline: Some(true),
        }
        .to_qapi();
        assert_eq!(keys(&v), ["online", "can-offline", "phys-index"]);
        let v = GuestMemoryBlockInfo { size: 1 }.to_qapi();
        assert_eq!(keys(&v), ["size"]);
        let v = GuestLoadAverage {
            load1m: 1.0,
            load5m: 2.0,
            load15m: 3.0,
        }
        .to_qapi();
        assert_eq!(keys(&v), ["load15m", "load5m", "load1m"]);
        let v = GuestCpuStats::Linux(GuestLinuxCpuStats {
            cpu: 0,
            iowait: Some(1),
            irq: Some(1),
            softirq: Some(1),
            steal: Some(1),
            guest: Some(1),
            guestnice: Some(1),
            ..Default::default()
        })
        .to_qapi();
        assert_eq!(
            keys(&v),
            [
                "cpu",
                "guestnice",
                "idle",
                "steal",
                "iowait",
                "system",
                "guest",
                "nice",
                "irq",
                "type",
                "user",
                "softirq"
            ]
        );
    }

    #[test]
    fn cpu_stats_union_round_trips() {
        let stats = GuestCpuStats::Linux(GuestLinuxCpuStats {
            cpu: 3,
            user: 10,
            idle: 20,
            iowait: Some(5),
            ..Default::default()
        });
        let json = stats.to_qapi().to_json();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"cpu": 3, "idle": 20, "iowait": 5, "system": 0, "nice": 0, "type": "linux", "user": 10}"#
        );
        let back = GuestCpuStats::from_qapi(Some(&stats.to_qapi()), Path::REPLY).unwrap();
        assert_eq!(back, stats);
        let mut d = Dict::new();
        d.insert("type", Value::str("windows"));
        let e = GuestCpuStats::from_qapi(Some(&Value::Dict(d)), Path::REPLY).unwrap_err();
        assert_eq!(e.0, "Parameter 'type' does not accept value 'windows'");
    }
}
