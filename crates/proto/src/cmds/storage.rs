//! guest-get-fsinfo, guest-get-disks and guest-get-diskstats, and the disk address
//! types they share.

use crate::qapi::{check_unexpected, expect_dict, ArgError, FromQapi, Path, ToQapi};
use crate::value::{Dict, Value};
use crate::{qapi_command, qapi_enum, qapi_struct};

/// A QAPI `str` kept as raw bytes: mount points are file names and need not be UTF-8;
/// qemu-ga passes their bytes through (its serializer writes each invalid byte as
/// `\uFFFD`), which a lossy Rust `String` would not reproduce.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ByteString(pub Vec<u8>);

impl ByteString {
    /// The bytes as text, invalid UTF-8 replaced.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl From<&str> for ByteString {
    fn from(s: &str) -> Self {
        ByteString(s.as_bytes().to_vec())
    }
}

impl FromQapi for ByteString {
    fn from_qapi(v: Option<&Value>, path: Path<'_>) -> Result<Self, ArgError> {
        match v {
            None => Err(path.missing()),
            Some(Value::Str(s)) => Ok(ByteString(s.clone())),
            Some(_) => Err(path.invalid_type("string")),
        }
    }
}

impl ToQapi for ByteString {
    fn to_qapi(&self) -> Value {
        Value::Str(self.0.clone())
    }
}

qapi_enum! {
    /// GuestDiskBusType: the bus a disk sits on (schema order).
    #[derive(Default)]
    pub enum GuestDiskBusType {
        /// IDE disks
        Ide = "ide",
        /// floppy disks
        Fdc = "fdc",
        /// SCSI disks
        Scsi = "scsi",
        /// virtio disks
        Virtio = "virtio",
        /// Xen disks
        Xen = "xen",
        /// USB disks
        Usb = "usb",
        /// UML disks
        Uml = "uml",
        /// SATA disks
        Sata = "sata",
        /// SD cards
        Sd = "sd",
        /// unknown bus type
        #[default]
        Unknown = "unknown",
        /// Win IEEE 1394 bus type
        Ieee1394 = "ieee1394",
        /// Win SSA bus type
        Ssa = "ssa",
        /// Win fiber channel bus type
        Fibre = "fibre",
        /// Win RAID bus type
        Raid = "raid",
        /// Win iScsi bus type
        Iscsi = "iscsi",
        /// Win serial-attaches SCSI bus type
        Sas = "sas",
        /// Win multimedia card (MMC) bus type
        Mmc = "mmc",
        /// Win virtual bus type
        Virtual = "virtual",
        /// Win file-backed bus type
        FileBackedVirtual = "file-backed-virtual",
        /// NVMe disks (since 7.1)
        Nvme = "nvme",
    }
}

qapi_struct! {
    /// GuestPCIAddress: the PCI function of a disk's controller; -1 when unknown.
    pub struct GuestPCIAddress {
        /// domain id
        pub domain: i64 = "domain",
        /// bus id
        pub bus: i64 = "bus",
        /// slot id
        pub slot: i64 = "slot",
        /// function id
        pub function: i64 = "function",
    }
}

impl GuestPCIAddress {
    /// All fields -1: qemu-ga's "no PCI address".
    pub const UNKNOWN: GuestPCIAddress = GuestPCIAddress {
        domain: -1,
        bus: -1,
        slot: -1,
        function: -1,
    };
}

qapi_struct! {
    /// GuestCCWAddress: an s390 channel I/O device (since 6.0).
    pub struct GuestCCWAddress {
        /// channel subsystem image id
        pub cssid: i64 = "cssid",
        /// subchannel set id
        pub ssid: i64 = "ssid",
        /// subchannel number
        pub subchno: i64 = "subchno",
        /// device number
        pub devno: i64 = "devno",
    }
}

qapi_struct! {
    /// GuestDiskAddress: where a disk is attached.
    pub struct GuestDiskAddress {
        /// the controller's PCI address (fields -1 when unknown)
        pub pci_controller: GuestPCIAddress = "pci-controller",
        /// bus type
        pub bus_type: GuestDiskBusType = "bus-type",
        /// bus id
        pub bus: i64 = "bus",
        /// target id
        pub target: i64 = "target",
        /// unit id
        pub unit: i64 = "unit",
        /// serial number (udev ID_SERIAL)
        pub serial: Option<String> = "serial",
        /// device node (e.g. /dev/sda)
        pub dev: Option<String> = "dev",
        /// CCW address on s390x
        pub ccw_address: Option<GuestCCWAddress> = "ccw-address",
    }
}

qapi_struct! {
    /// GuestNVMeSmart: the NVMe SMART / health log (since 7.1).
    pub struct GuestNVMeSmart {
        /// critical warning bits
        pub critical_warning: i64 = "critical-warning",
        /// composite temperature in kelvin
        pub temperature: i64 = "temperature",
        /// available spare, percent
        pub available_spare: i64 = "available-spare",
        /// available spare threshold, percent
        pub available_spare_threshold: i64 = "available-spare-threshold",
        /// percentage used
        pub percentage_used: i64 = "percentage-used",
        /// low 64 bits
        pub data_units_read_lo: u64 = "data-units-read-lo",
        /// high 64 bits
        pub data_units_read_hi: u64 = "data-units-read-hi",
        /// low 64 bits
        pub data_units_written_lo: u64 = "data-units-written-lo",
        /// high 64 bits
        pub data_units_written_hi: u64 = "data-units-written-hi",
        /// low 64 bits
        pub host_read_commands_lo: u64 = "host-read-commands-lo",
        /// high 64 bits
        pub host_read_commands_hi: u64 = "host-read-commands-hi",
        /// low 64 bits
        pub host_write_commands_lo: u64 = "host-write-commands-lo",
        /// high 64 bits
        pub host_write_commands_hi: u64 = "host-write-commands-hi",
        /// low 64 bits
        pub controller_busy_time_lo: u64 = "controller-busy-time-lo",
        /// high 64 bits
        pub controller_busy_time_hi: u64 = "controller-busy-time-hi",
        /// low 64 bits
        pub power_cycles_lo: u64 = "power-cycles-lo",
        /// high 64 bits
        pub power_cycles_hi: u64 = "power-cycles-hi",
        /// low 64 bits
        pub power_on_hours_lo: u64 = "power-on-hours-lo",
        /// high 64 bits
        pub power_on_hours_hi: u64 = "power-on-hours-hi",
        /// low 64 bits
        pub unsafe_shutdowns_lo: u64 = "unsafe-shutdowns-lo",
        /// high 64 bits
        pub unsafe_shutdowns_hi: u64 = "unsafe-shutdowns-hi",
        /// low 64 bits
        pub media_errors_lo: u64 = "media-errors-lo",
        /// high 64 bits
        pub media_errors_hi: u64 = "media-errors-hi",
        /// low 64 bits
        pub number_of_error_log_entries_lo: u64 = "number-of-error-log-entries-lo",
        /// high 64 bits
        pub number_of_error_log_entries_hi: u64 = "number-of-error-log-entries-hi",
    }
}

/// GuestDiskSmart: a flat union on `type` (GuestDiskBusType). Only `nvme` has
/// variant members; every other bus type is the bare `{"type": ...}`.
#[derive(Debug, Clone, PartialEq)]
pub enum GuestDiskSmart {
    /// `type: nvme` with the SMART log's members.
    Nvme(GuestNVMeSmart),
    /// Any other bus type (no members beyond `type`).
    Other(GuestDiskBusType),
}

impl GuestDiskSmart {
    /// The discriminator.
    pub fn bus_type(&self) -> GuestDiskBusType {
        match self {
            GuestDiskSmart::Nvme(_) => GuestDiskBusType::Nvme,
            GuestDiskSmart::Other(t) => *t,
        }
    }
}

impl ToQapi for GuestDiskSmart {
    fn to_qapi(&self) -> Value {
        // Base members first, then the variant's, as QAPI's output visitor does.
        let mut d = Dict::new();
        d.insert("type", self.bus_type().to_qapi());
        if let GuestDiskSmart::Nvme(smart) = self {
            if let Value::Dict(members) = smart.to_qapi() {
                for (k, v) in members.iter_inserted() {
                    d.insert(k.to_vec(), v.clone());
                }
            }
        }
        Value::Dict(d)
    }
}

impl FromQapi for GuestDiskSmart {
    fn from_qapi(v: Option<&Value>, path: Path<'_>) -> Result<Self, ArgError> {
        let d = expect_dict(v, &path)?;
        let t = GuestDiskBusType::from_qapi(d.get("type"), Path::Member(&path, "type"))?;
        if t == GuestDiskBusType::Nvme {
            let smart = <GuestNVMeSmart as crate::qapi::FromQapiDict>::from_qapi_dict(
                &without_type(d),
                path,
            )?;
            Ok(GuestDiskSmart::Nvme(smart))
        } else {
            check_unexpected(&without_type(d), &[], &path)?;
            Ok(GuestDiskSmart::Other(t))
        }
    }
}

fn without_type(d: &Dict) -> Dict {
    let mut out = Dict::new();
    for (k, v) in d.iter_inserted() {
        if k != b"type" {
            out.insert(k.to_vec(), v.clone());
        }
    }
    out
}

qapi_struct! {
    /// GuestDiskInfo: one disk or partition of guest-get-disks (since 5.2).
    pub struct GuestDiskInfo {
        /// device node (e.g. /dev/sda)
        pub name: String = "name",
        /// whether this is a partition
        pub partition: bool = "partition",
        /// devices it depends on (slaves, or a partition's disk)
        pub dependencies: Option<Vec<String>> = "dependencies",
        /// where the disk is attached
        pub address: Option<GuestDiskAddress> = "address",
        /// device-mapper name (udev DM_NAME)
        pub alias: Option<String> = "alias",
        /// SMART data (NVMe only)
        pub smart: Option<GuestDiskSmart> = "smart",
    }
}

qapi_struct! {
    /// GuestFilesystemInfo: one mounted filesystem of guest-get-fsinfo.
    pub struct GuestFilesystemInfo {
        /// block device name (sysfs basename, e.g. vda1 or dm-0)
        pub name: String = "name",
        /// mount point
        pub mountpoint: ByteString = "mountpoint",
        /// filesystem type
        pub fs_type: String = "type",
        /// bytes used (statvfs)
        pub used_bytes: Option<u64> = "used-bytes",
        /// bytes available to unprivileged users plus used bytes
        pub total_bytes: Option<u64> = "total-bytes",
        /// all bytes, including root-reserved blocks (since 9.1)
        pub total_bytes_privileged: Option<u64> = "total-bytes-privileged",
        /// the disks the filesystem lies on
        pub disk: Vec<GuestDiskAddress> = "disk",
    }
}

qapi_struct! {
    /// GuestDiskStats: the counters of one /proc/diskstats line (since 7.1).
    pub struct GuestDiskStats {
        /// sectors read
        pub read_sectors: Option<u64> = "read-sectors",
        /// reads completed
        pub read_ios: Option<u64> = "read-ios",
        /// reads merged
        pub read_merges: Option<u64> = "read-merges",
        /// sectors written
        pub write_sectors: Option<u64> = "write-sectors",
        /// writes completed
        pub write_ios: Option<u64> = "write-ios",
        /// writes merged
        pub write_merges: Option<u64> = "write-merges",
        /// sectors discarded
        pub discard_sectors: Option<u64> = "discard-sectors",
        /// discards completed
        pub discard_ios: Option<u64> = "discard-ios",
        /// discards merged
        pub discard_merges: Option<u64> = "discard-merges",
        /// flushes completed
        pub flush_ios: Option<u64> = "flush-ios",
        /// ms spent reading
        pub read_ticks: Option<u64> = "read-ticks",
        /// ms spent writing
        pub write_ticks: Option<u64> = "write-ticks",
        /// ms spent discarding
        pub discard_ticks: Option<u64> = "discard-ticks",
        /// ms spent flushing
        pub flush_ticks: Option<u64> = "flush-ticks",
        /// I/Os in progress
        pub ios_pgr: Option<u64> = "ios-pgr",
        /// ms spent doing I/Os
        pub total_ticks: Option<u64> = "total-ticks",
        /// weighted ms spent doing I/Os
        pub weight_ticks: Option<u64> = "weight-ticks",
    }
}

qapi_struct! {
    /// GuestDiskStatsInfo: one device of guest-get-diskstats.
    pub struct GuestDiskStatsInfo {
        /// device name as /proc/diskstats spells it
        pub name: String = "name",
        /// major number
        pub major: u64 = "major",
        /// minor number
        pub minor: u64 = "minor",
        /// the counters
        pub stats: GuestDiskStats = "stats",
    }
}

qapi_struct! {
    /// guest-get-fsinfo: the mounted block-device filesystems and their disks.
    pub struct GuestGetFsinfoArgs {}
}
qapi_command!(
    GuestGetFsinfoArgs,
    "guest-get-fsinfo",
    Vec<GuestFilesystemInfo>
);

qapi_struct! {
    /// guest-get-disks: every disk and partition of the guest.
    pub struct GuestGetDisksArgs {}
}
qapi_command!(GuestGetDisksArgs, "guest-get-disks", Vec<GuestDiskInfo>);

qapi_struct! {
    /// guest-get-diskstats: the I/O counters of every block device.
    pub struct GuestGetDiskstatsArgs {}
}
qapi_command!(
    GuestGetDiskstatsArgs,
    "guest-get-diskstats",
    Vec<GuestDiskStatsInfo>
);

#[cfg(test)]
mod tests {
    use super::*;

    use crate::value::keys;

    fn order(s: &str) -> Vec<String> {
        s.split(", ").map(str::to_owned).collect()
    }

    fn full_address() -> GuestDiskAddress {
        GuestDiskAddress {
            pci_controller: GuestPCIAddress::UNKNOWN,
            serial: Some("s".into()),
            dev: Some("/dev/x".into()),
            ccw_address: Some(GuestCCWAddress::default()),
            ..Default::default()
        }
    }

    /// Key orders from the spec's Appendix A (QDict hash order).
    #[test]
    fn key_orders_match_appendix_a() {
        assert_eq!(
            keys(&GuestPCIAddress::UNKNOWN.to_qapi()),
            order("bus, slot, domain, function")
        );
        assert_eq!(
            keys(&GuestCCWAddress::default().to_qapi()),
            order("cssid, ssid, subchno, devno")
        );
        assert_eq!(
            keys(&full_address().to_qapi()),
            order("ccw-address, serial, bus-type, bus, unit, pci-controller, dev, target")
        );
        let info = GuestDiskInfo {
            name: "n".into(),
            dependencies: Some(vec![]),
            address: Some(full_address()),
            alias: Some("a".into()),
            smart: Some(GuestDiskSmart::Other(GuestDiskBusType::Scsi)),
            ..Default::default()
        };
        assert_eq!(
            keys(&info.to_qapi()),
            order("name, smart, dependencies, partition, address, alias")
        );
        let smart = GuestDiskSmart::Nvme(GuestNVMeSmart::default());
        assert_eq!(
            keys(&smart.to_qapi()),
            order(
                "available-spare, host-write-commands-hi, temperature, power-on-hours-lo, \
                 host-read-commands-hi, host-read-commands-lo, number-of-error-log-entries-hi, \
                 unsafe-shutdowns-hi, unsafe-shutdowns-lo, host-write-commands-lo, \
                 available-spare-threshold, power-on-hours-hi, controller-busy-time-hi, \
                 controller-busy-time-lo, data-units-read-hi, data-units-read-lo, \
                 power-cycles-hi, power-cycles-lo, media-errors-hi, media-errors-lo, \
                 data-units-written-hi, data-units-written-lo, type, critical-warning, \
                 percentage-used, number-of-error-log-entries-lo"
            )
        );
        let fs = GuestFilesystemInfo {
            used_bytes: Some(1),
            total_bytes: Some(2),
            total_bytes_privileged: Some(3),
            ..Default::default()
        };
        assert_eq!(
            keys(&fs.to_qapi()),
            order("name, total-bytes, total-bytes-privileged, mountpoint, disk, used-bytes, type")
        );
        let all = GuestDiskStats {
            read_sectors: Some(0),
            read_ios: Some(0),
            read_merges: Some(0),
            write_sectors: Some(0),
            write_ios: Some(0),
            write_merges: Some(0),
            discard_sectors: Some(0),
            discard_ios: Some(0),
            discard_merges: Some(0),
            flush_ios: Some(0),
            read_ticks: Some(0),
            write_ticks: Some(0),
            discard_ticks: Some(0),
            flush_ticks: Some(0),
            ios_pgr: Some(0),
            total_ticks: Some(0),
            weight_ticks: Some(0),
        };
        assert_eq!(
            keys(&all.to_qapi()),
            order(
                "discard-sectors, write-ios, discard-ios, discard-ticks, weight-ticks, \
                 read-ios, flush-ios, write-sectors, write-merges, write-ticks, ios-pgr, \
                 read-sectors, read-merges, total-ticks, discard-merges, flush-ticks, read-ticks"
            )
        );
        assert_eq!(
            keys(&GuestDiskStatsInfo::default().to_qapi()),
            order("name, stats, minor, major")
        );
    }

    #[test]
    fn smart_union_round_trips() {
        let nvme = GuestDiskSmart::Nvme(GuestNVMeSmart {
            temperature: 310,
            power_cycles_lo: 7,
            ..Default::default()
        });
        let back = GuestDiskSmart::from_qapi(Some(&nvme.to_qapi()), Path::REPLY).unwrap();
        assert_eq!(back, nvme);
        let other = GuestDiskSmart::Other(GuestDiskBusType::Sata);
        assert_eq!(
            String::from_utf8(other.to_qapi().to_json()).unwrap(),
            r#"{"type": "sata"}"#
        );
        let back = GuestDiskSmart::from_qapi(Some(&other.to_qapi()), Path::REPLY).unwrap();
        assert_eq!(back, other);
    }

    #[test]
    fn mountpoint_bytes_pass_through() {
        let fs = GuestFilesystemInfo {
            mountpoint: ByteString(b"/mnt/\xff x".to_vec()),
            ..Default::default()
        };
        let json = String::from_utf8(fs.to_qapi().to_json()).unwrap();
        assert!(json.contains(r#""mountpoint": "/mnt/\uFFFD x""#), "{json}");
    }
}
