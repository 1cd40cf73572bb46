//! guest-get-disks' walk of `/sys/block`, as qemu-ga's `qmp_guest_get_disks`:
//!
//! - every symlink entry of `/sys/block` (readdir order) whose `size` is not `"0\n"`
//!   and that has a udev device node;
//! - `alias` is udev's `DM_NAME` when non-empty; `address` is filled for devices not
//!   under `/devices/virtual/block/`, with fsinfo's sysfs parsing (errors ignored);
//! - `dependencies` is present whenever `<disk>/slaves` can be listed (so it may be
//!   `[]`) and holds the slaves' device nodes;
//! - `smart` only for NVMe disks (the caller's `smart` function does the ioctl);
//! - partitions are the subdirectories named `<disk><digit>...` or `<disk>p<digit>...`
//!   with a device node; each depends on its disk.
//!
//! Every item is prepended, so the result is the reverse of discovery order.

use qga_proto::cmds::storage::{GuestDiskAddress, GuestDiskBusType, GuestDiskInfo, GuestDiskSmart};

use super::blockdev::{device_disks, is_virtual, DeviceDisks, SysRoot};
use super::udev;
use crate::error::{Error, Result};

/// Lists disks and partitions below `root`. `smart` reads the SMART log of an NVMe
/// disk given its device node.
pub fn list(
    root: &SysRoot,
    smart: &dyn Fn(&str) -> Option<GuestDiskSmart>,
) -> Result<Vec<GuestDiskInfo>> {
    let entries = std::fs::read_dir(root.path("/sys/block"))
        .map_err(|e| Error::errno("Can't open directory \"/sys/block\"", &e))?;
    let mut ret: Vec<GuestDiskInfo> = Vec::new();
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_symlink()) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let disk_dir = format!("/sys/block/{name}");
        match std::fs::read(root.path(&format!("{disk_dir}/size"))) {
            Ok(size) if size != b"0\n" => {}
            _ => continue,
        }
        let Some(dev) = udev::device(root, &disk_dir) else {
            continue;
        };
        let Some(dev_name) = dev.devnode.clone() else {
            continue;
        };
        let mut disk = GuestDiskInfo {
            name: dev_name.clone(),
            partition: false,
            alias: dev
                .property("DM_NAME")
                .filter(|a| !a.is_empty())
                .map(str::to_string),
            ..Default::default()
        };
        // A path that cannot be resolved counts as virtual: no address.
        if !is_virtual(root, &disk_dir).unwrap_or(true) {
            disk.address = disk_address(root, &disk_dir);
        }
        disk.dependencies = dependencies(root, &disk_dir);
        if disk
            .address
            .as_ref()
            .is_some_and(|a| a.bus_type == GuestDiskBusType::Nvme)
        {
            disk.smart = smart(&disk.name);
        }
        ret.insert(0, disk);
        for part in partitions(root, &name, &disk_dir, &dev_name) {
            ret.insert(0, part);
        }
    }
    Ok(ret)
}

/// The first disk fsinfo would report for the device, errors ignored.
fn disk_address(root: &SysRoot, disk_dir: &str) -> Option<GuestDiskAddress> {
    let mut acc = DeviceDisks::default();
    let _ = device_disks(root, disk_dir, &mut acc);
    acc.disks.into_iter().next()
}

fn dependencies(root: &SysRoot, disk_dir: &str) -> Option<Vec<String>> {
    let deps_dir = format!("{disk_dir}/slaves");
    let entries = std::fs::read_dir(root.path(&deps_dir)).ok()?;
    let mut deps = Vec::new();
    for entry in entries.flatten() {
        let path = format!("{deps_dir}/{}", entry.file_name().to_string_lossy());
        if let Some(node) = udev::device(root, &path).and_then(|d| d.devnode) {
            deps.insert(0, node);
        }
    }
    Some(deps)
}

/// Whether a directory entry of disk `disk` names one of its partitions.
pub fn is_partition_name(disk: &str, entry: &str) -> bool {
    let Some(rest) = entry.strip_prefix(disk) else {
        return false;
    };
    let b = rest.as_bytes();
    match b.first() {
        Some(b'p') => b.get(1).is_some_and(u8::is_ascii_digit),
        Some(c) => c.is_ascii_digit(),
        None => false,
    }
}

/// The partitions of one disk, in the order they are prepended.
fn partitions(
    root: &SysRoot,
    disk_name: &str,
    disk_dir: &str,
    disk_dev: &str,
) -> Vec<GuestDiskInfo> {
    let Ok(entries) = std::fs::read_dir(root.path(disk_dir)) else {
        return Vec::new();
    };
    let mut parts = Vec::new();
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_partition_name(disk_name, &name) {
            continue;
        }
        let path = format!("{disk_dir}/{name}");
        let Some(node) = udev::device(root, &path).and_then(|d| d.devnode) else {
            continue;
        };
        parts.push(GuestDiskInfo {
            name: node,
            partition: true,
            dependencies: Some(vec![disk_dev.to_string()]),
            ..Default::default()
        });
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names() {
        assert!(is_partition_name("sda", "sda1"));
        assert!(is_partition_name("nvme0n1", "nvme0n1p12"));
        assert!(is_partition_name("loop0", "loop0p1"));
        assert!(!is_partition_name("sda", "sdaa"));
        assert!(!is_partition_name("sda", "sda"));
        assert!(!is_partition_name("sda", "sdap"));
        assert!(!is_partition_name("vda", "holders"));
    }
}
