//! What qemu-ga asks libudev about a block device, read without libudev: the device
//! node and the udev properties `ID_SERIAL` and `DM_NAME`.
//!
//! libudev (systemd's sd-device) answers `udev_device_get_devnode` from the kernel's
//! `<syspath>/uevent` (`DEVNAME=vda` gives `/dev/vda`), so the node is known even where
//! udevd never ran; properties come from that file and from the udev database
//! `/run/udev/data/b<major>:<minor>` (`E:KEY=value` lines; the database wins).
//! Databases written by very old udev carry the node name as an `N:` line instead;
//! that is used only when the uevent file has no `DEVNAME`.
//!
//! `udev_device_new_from_syspath` accepts a path only if it resolves under `/sys`, to a
//! directory with a `uevent` file when under `/sys/devices`; [`device`] applies the
//! same test, so the "no such device" cases agree.

use super::blockdev::SysRoot;

/// The udev view of one device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UdevDevice {
    /// `/dev/<DEVNAME>`, when the device has a node.
    pub devnode: Option<String>,
    props: Vec<(String, String)>,
}

impl UdevDevice {
    /// A property's value (`udev_device_get_property_value`).
    pub fn property(&self, key: &str) -> Option<&str> {
        self.props
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The device at `syspath` (which may be a symlink such as `/sys/block/vda`), or
/// `None` where libudev would fail to create it.
pub fn device(root: &SysRoot, syspath: &str) -> Option<UdevDevice> {
    let real = root.realpath(syspath).ok()?;
    if !real.starts_with("/sys/") {
        return None;
    }
    let uevent = std::fs::read(root.path(&format!("{real}/uevent")));
    if real.starts_with("/sys/devices/") {
        // libudev stats `uevent` and gives up if that fails; one that exists but
        // cannot be read is taken as empty.
        if uevent
            .as_ref()
            .is_err_and(|e| e.kind() != std::io::ErrorKind::PermissionDenied)
        {
            return None;
        }
    } else if !root.path(&real).is_dir() {
        return None;
    }
    let mut dev = UdevDevice::default();
    let uevent = uevent.unwrap_or_default();
    let (mut major, mut minor) = (None, None);
    for line in String::from_utf8_lossy(&uevent).lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "DEVNAME" => dev.devnode = Some(absolute_node(v)),
            "MAJOR" => major = v.parse::<u32>().ok(),
            "MINOR" => minor = v.parse::<u32>().ok(),
            _ => {}
        }
        dev.props.push((k.to_string(), v.to_string()));
    }
    if let (Some(major), Some(minor)) = (major, minor) {
        // Only block devices are asked about, hence the `b` database prefix.
        let db = root.path(&format!("/run/udev/data/b{major}:{minor}"));
        if let Ok(text) = std::fs::read(db) {
            parse_db(&String::from_utf8_lossy(&text), &mut dev);
        }
    }
    Some(dev)
}

fn absolute_node(name: &str) -> String {
    if name.starts_with('/') {
        name.to_string()
    } else {
        format!("/dev/{name}")
    }
}

/// Adds a udev database's `E:` properties (and an old-style `N:` node) to `dev`.
pub fn parse_db(text: &str, dev: &mut UdevDevice) {
    for line in text.lines() {
        if let Some(prop) = line.strip_prefix("E:") {
            if let Some((k, v)) = prop.split_once('=') {
                dev.props.push((k.to_string(), v.to_string()));
            }
        } else if let Some(name) = line.strip_prefix("N:") {
            if dev.devnode.is_none() && !name.is_empty() {
                dev.devnode = Some(absolute_node(name));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_lines() {
        let mut dev = UdevDevice {
            devnode: None,
            props: vec![("DM_NAME".into(), "from-uevent".into())],
        };
        parse_db(
            "S:disk/by-id/x\nI:123\nN:sdz\nE:ID_SERIAL=QEMU_HARDDISK_QM00001\nE:DM_NAME=vg-lv\nG:systemd\n",
            &mut dev,
        );
        assert_eq!(dev.devnode.as_deref(), Some("/dev/sdz"));
        assert_eq!(dev.property("ID_SERIAL"), Some("QEMU_HARDDISK_QM00001"));
        assert_eq!(dev.property("DM_NAME"), Some("vg-lv"));
        assert_eq!(dev.property("ID_MODEL"), None);
    }
}
