//! Which disks a block device lies on, from sysfs, as qemu-ga's
//! `build_guest_fsinfo_for_device` finds them (qga/commands-linux.c):
//!
//! - `realpath(/sys/dev/block/M:m)`; its basename names the filesystem (`vda1`, `dm-0`).
//!   If the link does not exist (containers), the name is literally `M:m` and there
//!   are no disks.
//! - A device under `/devices/virtual/block/` (device-mapper, md, loop) is followed
//!   through the symlinks in its `slaves/` directory, recursively.
//! - Any other device gives one [`GuestDiskAddress`], prepended to the list: the
//!   udev node and serial, plus what its sysfs path tells: the PCI function of the
//!   first controller with a known driver and the bus type and units for that driver
//!   (`ata_piix`, `sym53c8xx`, `virtio-pci`, `ahci`, `nvme`, `xhci_hcd`, `ehci-pci`), an
//!   s390 CCW address, or a non-PCI virtio device. A device with none of these and no
//!   udev node or serial is left out.
//!
//! Paths are handled as the absolute sysfs strings qemu-ga parses (`/sys/devices/...`)
//! and turned into real paths below a [`SysRoot`] only to touch the filesystem, so the
//! same code runs on the live system and on fixture trees.

use std::cell::RefCell;
use std::io;
use std::path::PathBuf;

use qga_proto::cmds::storage::{
    GuestCCWAddress, GuestDiskAddress, GuestDiskBusType, GuestPCIAddress,
};

use super::cscan::Scanner;
use super::udev;
use crate::error::{Error, Result};

/// The directory that stands for `/` when reading `/sys`, `/run/udev` and `/proc`.
#[derive(Debug, Clone)]
pub struct SysRoot {
    root: PathBuf,
    canonical: PathBuf,
    /// Results of [`SysRoot::realpath`] so far: qemu-ga resolves a device's real path
    /// again in several places, each a readlink per path component, and a real path
    /// resolves to itself.
    resolved: RefCell<Vec<String>>,
}

impl SysRoot {
    /// The live system.
    pub fn live() -> Self {
        Self::new("/")
    }

    /// A fixture tree standing for `/`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let canonical = std::fs::canonicalize(&root).unwrap_or_else(|_| root.clone());
        SysRoot {
            root,
            canonical,
            resolved: RefCell::default(),
        }
    }

    /// The real path of an absolute path inside the root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// `realpath(3)` inside the root, as an absolute path inside the root.
    pub fn realpath(&self, abs: &str) -> io::Result<String> {
        if self.resolved.borrow().iter().any(|r| r == abs) {
            return Ok(abs.to_string());
        }
        let real = resolve(&self.path(abs))?;
        let inside = match real.strip_prefix(&self.canonical) {
            Ok(rel) => format!("/{}", rel.to_string_lossy()),
            Err(_) => real.to_string_lossy().into_owned(),
        };
        self.resolved.borrow_mut().push(inside.clone());
        Ok(inside)
    }
}

/// `realpath(3)` as musl does it: open the path (`O_PATH`, following every link) and
/// ask the kernel for the descriptor's path, three calls where resolving it a
/// component at a time is one readlink per component. Falls back to the latter where
/// `/proc` is not mounted.
fn resolve(path: &std::path::Path) -> io::Result<PathBuf> {
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    use std::os::unix::io::AsRawFd as _;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)?;
    match std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())) {
        // A path the kernel cannot name from here (deleted, or outside our root) is
        // left to the slow way.
        Ok(p) if p.is_absolute() && !p.as_os_str().as_bytes().ends_with(b" (deleted)") => Ok(p),
        _ => std::fs::canonicalize(path),
    }
}

/// The last component of a path (`g_path_get_basename`).
pub fn basename(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(i) => &trimmed[i + 1..],
        None if trimmed.is_empty() && path.starts_with('/') => "/",
        None => trimmed,
    }
}

/// What guest-get-fsinfo learns about one filesystem's device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceDisks {
    /// The device name, set by the first path resolved.
    pub name: Option<String>,
    /// The disks, in qemu-ga's (prepended) order.
    pub disks: Vec<GuestDiskAddress>,
}

/// Fills `acc` from the device at `devpath` (`/sys/dev/block/M:m` or a `slaves/`
/// entry). Errors are qemu-ga's; `acc` keeps whatever was found before the error
/// (guest-get-disks uses it, guest-get-fsinfo fails).
pub fn device_disks(root: &SysRoot, devpath: &str, acc: &mut DeviceDisks) -> Result<()> {
    let syspath = match root.realpath(devpath) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // The device may not exist because of container config.
            acc.name
                .get_or_insert_with(|| basename(devpath).to_string());
            return Ok(());
        }
        Err(e) => return Err(Error::errno(format!("realpath(\"{devpath}\")"), &e)),
    };
    acc.name
        .get_or_insert_with(|| basename(&syspath).to_string());
    if is_virtual(root, &syspath)? {
        virtual_device(root, &syspath, acc)
    } else {
        real_device(root, &syspath, acc)
    }
}

/// Whether the device's real path is under `/devices/virtual/block/`.
pub fn is_virtual(root: &SysRoot, devpath: &str) -> Result<bool> {
    let syspath = root
        .realpath(devpath)
        .map_err(|e| Error::errno(format!("realpath(\"{devpath}\")"), &e))?;
    Ok(syspath.contains("/devices/virtual/block/"))
}

fn virtual_device(root: &SysRoot, syspath: &str, acc: &mut DeviceDisks) -> Result<()> {
    let dirpath = format!("{syspath}/slaves");
    let entries = match std::fs::read_dir(root.path(&dirpath)) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::errno(format!("opendir(\"{dirpath}\")"), &e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::errno(format!("readdir(\"{dirpath}\")"), &e))?;
        if entry.file_type().is_ok_and(|t| t.is_symlink()) {
            let name = entry.file_name();
            let path = format!("{dirpath}/{}", name.to_string_lossy());
            device_disks(root, &path, acc)?;
        }
    }
    Ok(())
}

fn real_device(root: &SysRoot, syspath: &str, acc: &mut DeviceDisks) -> Result<()> {
    let mut disk = GuestDiskAddress {
        pci_controller: GuestPCIAddress::UNKNOWN,
        bus_type: GuestDiskBusType::Unknown,
        ..Default::default()
    };
    if let Some(dev) = udev::device(root, syspath) {
        disk.serial = dev
            .property("ID_SERIAL")
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        disk.dev = dev.devnode;
    }
    let (has_hwinf, err) = if syspath.contains("/devices/pci") {
        pci_dev(root, syspath, &mut disk)
    } else if syspath.contains("/devices/css") {
        (ccw_dev(syspath, &mut disk), None)
    } else if syspath.contains("/virtio") {
        (nonpci_virtio(syspath, &mut disk), None)
    } else {
        (false, None)
    };
    if has_hwinf || disk.dev.is_some() || disk.serial.is_some() {
        acc.disks.insert(0, disk);
    }
    err.map_or(Ok(()), Err)
}

/// Controller drivers qemu-ga knows; the walk stops at the first PCI function with one.
const KNOWN_DRIVERS: &[&str] = &[
    "ata_piix",
    "sym53c8xx",
    "virtio-pci",
    "ahci",
    "nvme",
    "xhci_hcd",
    "ehci-pci",
];

/// Most host/ata numbers qemu-ga collects from one directory.
const MAX_HOSTS: usize = 8;

fn pci_driver(root: &SysRoot, prefix: &str) -> Option<String> {
    let target = std::fs::read_link(root.path(&format!("{prefix}/driver"))).ok()?;
    Some(basename(&target.to_string_lossy()).to_string())
}

/// `%*u:%*u:%*u/%*u:%u:%u:%u` after `/target`: the SCSI address (channel, id, lun).
fn scsi_target(syspath: &str) -> Option<[u32; 3]> {
    let i = syspath.find("/target")?;
    let mut s = Scanner::new(&syspath.as_bytes()[i + 7..]);
    s.uint()?;
    s.lit(b':').then_some(())?;
    s.uint()?;
    s.lit(b':').then_some(())?;
    s.uint()?;
    s.lit(b'/').then_some(())?;
    s.uint()?;
    s.lit(b':').then_some(())?;
    let a = s.uint()?;
    s.lit(b':').then_some(())?;
    let b = s.uint()?;
    s.lit(b':').then_some(())?;
    let c = s.uint()?;
    Some([a, b, c])
}

/// `/%x:%x:%x.%x%n`-style PCI function at the cursor.
fn pci_function(s: &mut Scanner<'_>) -> Option<[u32; 4]> {
    let d = s.hex32()?;
    s.lit(b':').then_some(())?;
    let b = s.hex32()?;
    s.lit(b':').then_some(())?;
    let sl = s.hex32()?;
    s.lit(b'.').then_some(())?;
    let f = s.hex32()?;
    Some([d, b, sl, f])
}

/// The sorted numbers of the `ataN` (or `hostN`) entries of `dir`, at most eight, in
/// the order readdir finds them before sorting.
fn hosts(root: &SysRoot, dir: &str, ata: bool) -> Result<Vec<u32>> {
    let entries = std::fs::read_dir(root.path(dir))
        .map_err(|e| Error::errno(format!("opendir(\"{dir}\")"), &e))?;
    let prefix = if ata { "ata" } else { "host" };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        if found.len() >= MAX_HOSTS {
            break;
        }
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(rest) = name.strip_prefix(prefix) {
            // `%d` stored into an unsigned array.
            if let Some(n) = Scanner::new(rest.as_bytes()).ulong(10) {
                found.push(n as i32 as u32);
            }
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// Disks on the PCI bus. Returns whether the address was filled, and an error that
/// qemu-ga reports after the disk was (maybe) recorded anyway.
fn pci_dev(root: &SysRoot, syspath: &str, disk: &mut GuestDiskAddress) -> (bool, Option<Error>) {
    let Some(start) = syspath.find("/devices/pci") else {
        return (false, None);
    };
    // `%*x:%*x/%x:%x:%x.%x%n` after "/devices/pci": the root bus, then the first function.
    let bytes = syspath.as_bytes();
    let mut s = Scanner::new(&bytes[start + 12..]);
    let first = (|| {
        s.hex32()?;
        s.lit(b':').then_some(())?;
        s.hex32()?;
        s.lit(b'/').then_some(())?;
        pci_function(&mut s)
    })();
    let Some(mut pci) = first else {
        return (false, None);
    };
    let mut p = start + 12 + s.pos();
    let driver = loop {
        if let Some(driver) = pci_driver(root, &syspath[..p]) {
            if KNOWN_DRIVERS.contains(&driver.as_str()) {
                break driver;
            }
        }
        let mut s = Scanner::new(&bytes[p..]);
        match s.lit(b'/').then(|| pci_function(&mut s)).flatten() {
            Some(next) => {
                pci = next;
                p += s.pos();
            }
            None => return (false, None),
        }
    };

    let tgt = scsi_target(syspath);
    let (host_at, ata) = match syspath.find("/ata") {
        Some(i) => (Some((i, i + 4)), true),
        None => (syspath.find("/host").map(|i| (i, i + 5)), false),
    };
    let mut host = None;
    let mut hostlist = Vec::new();
    if let Some((at, q)) = host_at {
        if let Some(h) = Scanner::new(&bytes[q..]).uint() {
            host = Some(h);
            match hosts(root, &syspath[..at], ata) {
                Ok(list) => hostlist = list,
                Err(e) => return (false, Some(e)),
            }
        }
    }

    disk.pci_controller = GuestPCIAddress {
        domain: i64::from(pci[0]),
        bus: i64::from(pci[1]),
        slot: i64::from(pci[2]),
        function: i64::from(pci[3]),
    };
    let host_index = || {
        host.and_then(|h| hostlist.iter().position(|&x| x == h))
            .map(|i| i as i64)
    };
    let ok = match driver.as_str() {
        // A host per IDE bus; target*:0:<unit>:0.
        "ata_piix" => match (tgt, host_index()) {
            (Some(t), Some(i)) => {
                disk.bus_type = GuestDiskBusType::Ide;
                disk.bus = i;
                disk.unit = i64::from(t[1]);
                true
            }
            _ => false,
        },
        // SCSI (LSI Logic): target*:0:<unit>:0.
        "sym53c8xx" => match tgt {
            Some(t) => {
                disk.bus_type = GuestDiskBusType::Scsi;
                disk.unit = i64::from(t[1]);
                true
            }
            None => false,
        },
        "virtio-pci" => {
            match tgt {
                // virtio-scsi: target*:0:0:<unit>
                Some(t) => {
                    disk.bus_type = GuestDiskBusType::Scsi;
                    disk.unit = i64::from(t[2]);
                }
                // virtio-blk: one disk per device
                None => disk.bus_type = GuestDiskBusType::Virtio,
            }
            true
        }
        // One host per unit.
        "ahci" => match (tgt, host_index()) {
            (Some(_), Some(i)) => {
                disk.unit = i;
                disk.bus_type = GuestDiskBusType::Sata;
                true
            }
            _ => false,
        },
        "nvme" => {
            disk.bus_type = GuestDiskBusType::Nvme;
            true
        }
        _ => {
            // xhci_hcd, ehci-pci
            disk.bus_type = GuestDiskBusType::Usb;
            true
        }
    };
    (ok, None)
}

/// Non-PCI virtio devices (s390x channel I/O and virtio-mmio).
fn nonpci_virtio(syspath: &str, disk: &mut GuestDiskAddress) -> bool {
    if !syspath.contains("/virtio") || !syspath.contains("/block") {
        return false;
    }
    match scsi_target(syspath) {
        // virtio-scsi: target*:0:<target>:<unit>
        Some(t) => {
            disk.bus_type = GuestDiskBusType::Scsi;
            disk.bus = i64::from(t[0]);
            disk.target = i64::from(t[1]);
            disk.unit = i64::from(t[2]);
        }
        None => disk.bus_type = GuestDiskBusType::Virtio,
    }
    true
}

/// s390x CCW devices: `/devices/css%*x/%x.%x.%x/%*x.%*x.%x/`.
fn ccw_dev(syspath: &str, disk: &mut GuestDiskAddress) -> bool {
    let Some(start) = syspath.find("/devices/css") else {
        return false;
    };
    let tail = &syspath[start..];
    let mut s = Scanner::new(&tail.as_bytes()[12..]);
    let parsed = (|| {
        s.hex32()?;
        s.lit(b'/').then_some(())?;
        let cssid = s.hex32()?;
        s.lit(b'.').then_some(())?;
        let ssid = s.hex32()?;
        s.lit(b'.').then_some(())?;
        let subchno = s.hex32()?;
        s.lit(b'/').then_some(())?;
        s.hex32()?;
        s.lit(b'.').then_some(())?;
        s.hex32()?;
        s.lit(b'.').then_some(())?;
        let devno = s.hex32()?;
        Some([cssid, ssid, subchno, devno])
    })();
    let Some([cssid, ssid, subchno, devno]) = parsed else {
        return false;
    };
    disk.ccw_address = Some(GuestCCWAddress {
        cssid: i64::from(cssid),
        ssid: i64::from(ssid),
        subchno: i64::from(subchno),
        devno: i64::from(devno),
    });
    if tail.contains("/virtio") {
        nonpci_virtio(syspath, disk);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parsers() {
        assert_eq!(
            scsi_target(
                "/sys/devices/pci0000:00/0000:00:05.0/virtio2/host0/target0:0:3/0:0:3:7/block/sdb"
            ),
            Some([0, 3, 7])
        );
        assert_eq!(
            scsi_target("/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda"),
            None
        );
        let mut d = GuestDiskAddress::default();
        assert!(ccw_dev(
            "/sys/devices/css0/0.0.0002/0.0.0a0b/virtio1/block/vda",
            &mut d
        ));
        let ccw = d.ccw_address.clone().unwrap();
        assert_eq!(
            (ccw.cssid, ccw.ssid, ccw.subchno, ccw.devno),
            (0, 0, 2, 0xa0b)
        );
        assert_eq!(d.bus_type, GuestDiskBusType::Virtio);
        assert_eq!(basename("/sys/dev/block/8:0"), "8:0");
        assert_eq!(basename("../../devices/x/vda/"), "vda");
    }
}
