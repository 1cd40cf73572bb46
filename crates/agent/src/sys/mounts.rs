//! The mount list shared by guest-fsfreeze-*, guest-fstrim and guest-get-fsinfo, built
//! as qemu-ga's `build_fs_mount_list` does from `/proc/self/mountinfo`: file order,
//! octal escapes decoded, major 0 skipped except btrfs (whose numbers come from the
//! source device), and only the first mount of each major:minor kept (bind mounts).

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::procfs;

/// One block-device-backed mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Mount point.
    pub dir: OsString,
    /// Filesystem type, e.g. `ext4`.
    pub fstype: String,
    /// Source device as mountinfo names it, e.g. `/dev/vda1`.
    pub source: OsString,
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// Whether `statvfs` on it is answered from memory, so it needs no time bound:
    /// see [`statfs_in_memory`].
    pub statfs_in_memory: bool,
}

/// Filesystems whose `statfs` reads only in-memory counters (ext2/3/4, XFS), when no
/// quota option is on (project quota makes it read quota records from the device).
const STATFS_IN_MEMORY: &[&str] = &["ext2", "ext3", "ext4", "xfs"];

/// Filesystems whose path lookups never wait on a device or a server: mount points
/// and their ancestors stay in the dentry cache, and these have no revalidation.
const LOCAL_LOOKUP: &[&str] = &[
    "ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "tmpfs", "devtmpfs", "ramfs", "rootfs", "proc",
    "sysfs",
];

/// Whether `statvfs(dir)` cannot block: the filesystem answers from memory (its type
/// is in [`STATFS_IN_MEMORY`] and its options name no quota) and the path to it
/// crosses only filesystems in [`LOCAL_LOOKUP`] (`all` holds every mount's
/// directory and type, in mount order). Anything else (NFS, CIFS, FUSE, autofs,
/// btrfs, vfat, an unknown type) gets the time-bounded call.
pub fn statfs_in_memory(dir: &[u8], fstype: &str, options: &[u8], all: &[(&[u8], &str)]) -> bool {
    let has_quota = options.windows(5).any(|w| w == b"quota");
    STATFS_IN_MEMORY.contains(&fstype)
        && !has_quota
        && all
            .iter()
            .filter(|(d, _)| is_ancestor(d, dir))
            .all(|(_, t)| LOCAL_LOOKUP.contains(t))
}

/// Whether mount point `a` lies on the path to `b` (or is `b`).
fn is_ancestor(a: &[u8], b: &[u8]) -> bool {
    a == b"/" || (b.starts_with(a) && (b.len() == a.len() || b.get(a.len()) == Some(&b'/')))
}

/// Reads the live mount list.
pub fn mount_list() -> std::io::Result<Vec<Mount>> {
    let text = mountinfo_text()?;
    Ok(parse_mountinfo(&text, block_dev_numbers))
}

/// `/proc/self/mountinfo` and its text as last read. The file stays open between
/// calls: poll() reports POLLPRI on it once the mount table has changed since
/// (proc(5)), so an unchanged table (the normal case for a KubeVirt poll every 10 s)
/// is not generated and read again.
static MOUNTINFO: Mutex<Option<(File, Arc<Vec<u8>>)>> = Mutex::new(None);

/// The current text of `/proc/self/mountinfo`.
pub fn mountinfo_text() -> io::Result<Arc<Vec<u8>>> {
    let mut cached = MOUNTINFO.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((f, text)) = cached.as_mut() {
        match changed(f) {
            Ok(false) => return Ok(text.clone()),
            Ok(true) => {
                if let Ok(new) = f
                    .seek(SeekFrom::Start(0))
                    .and_then(|_| procfs::read_from(f))
                {
                    *text = Arc::new(new);
                    return Ok(text.clone());
                }
            }
            Err(_) => {}
        }
    }
    *cached = None;
    let mut f = File::open("/proc/self/mountinfo")?;
    let text = Arc::new(procfs::read_from(&mut f)?);
    *cached = Some((f, text.clone()));
    Ok(text)
}

/// Whether the mount table changed since `f` was last polled (or opened).
fn changed(f: &File) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: f.as_raw_fd(),
        events: libc::POLLPRI,
        revents: 0,
    };
    // SAFETY: one pollfd we own, for an open descriptor; no waiting.
    if unsafe { libc::poll(&mut pfd, 1, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pfd.revents & (libc::POLLPRI | libc::POLLERR) != 0)
}

/// major:minor of a block device node (`stat` + `S_ISBLK`).
pub fn block_dev_numbers(path: &Path) -> Option<(u32, u32)> {
    let md = std::fs::metadata(path).ok()?;
    if !md.file_type().is_block_device() {
        return None;
    }
    let rdev = md.rdev();
    Some((libc::major(rdev), libc::minor(rdev)))
}

/// Decodes mountinfo's escapes as qemu-ga's `decode_mntname`: `\ooo` with a first
/// digit 0-3 (`\040` for a space) becomes that byte, `\\` a backslash; any other
/// backslash stays as it is.
pub fn decode_octal(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let at = |k: usize| s.get(i + k).copied().unwrap_or(0);
        if s[i] != b'\\' {
            out.push(s[i]);
            i += 1;
        } else if at(1) == b'\\' {
            out.push(b'\\');
            i += 2;
        } else if (b'0'..=b'3').contains(&at(1))
            && (b'0'..=b'7').contains(&at(2))
            && (b'0'..=b'7').contains(&at(3))
        {
            out.push((at(1) - b'0') * 64 + (at(2) - b'0') * 8 + (at(3) - b'0'));
            i += 4;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// Parses mountinfo text. `dev_numbers` resolves a btrfs source device.
pub fn parse_mountinfo(
    text: &[u8],
    dev_numbers: impl Fn(&Path) -> Option<(u32, u32)>,
) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = Vec::new();
    // Every mount's directory and type (undecoded: only prefixes are compared), for
    // the path check of statfs_in_memory.
    let all: Vec<(&[u8], &str)> = text
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let fields: Vec<&[u8]> = line
                .split(|&b| b == b' ')
                .filter(|f| !f.is_empty())
                .collect();
            let dash = fields.iter().skip(5).position(|f| *f == b"-")? + 5;
            let fstype = std::str::from_utf8(fields.get(dash + 1)?).ok()?;
            Some((*fields.get(4)?, fstype))
        })
        .collect();
    for line in text.split(|&b| b == b'\n') {
        let fields: Vec<&[u8]> = line
            .split(|&b| b == b' ')
            .filter(|f| !f.is_empty())
            .collect();
        if fields.len() < 5 {
            continue;
        }
        let Some((major, minor)) = std::str::from_utf8(fields[2])
            .ok()
            .and_then(|mm| mm.split_once(':'))
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
        else {
            continue;
        };
        let Some(dash) = fields
            .iter()
            .skip(5)
            .position(|f| *f == b"-")
            .map(|p| p + 5)
        else {
            continue;
        };
        let Some(fstype) = fields.get(dash + 1) else {
            continue;
        };
        let fstype = String::from_utf8_lossy(fstype).into_owned();
        let source = OsString::from_vec(decode_octal(fields.get(dash + 2).copied().unwrap_or(b"")));
        let dir = OsString::from_vec(decode_octal(fields[4]));
        let (major, minor) = if major == 0 {
            // btrfs reports major 0; its real numbers come from the source device.
            match (fstype == "btrfs")
                .then(|| dev_numbers(Path::new(&source)))
                .flatten()
            {
                Some(mm) => mm,
                None => continue,
            }
        } else {
            (major, minor)
        };
        if mounts.iter().any(|m| m.major == major && m.minor == minor) {
            continue;
        }
        // Mount options and the filesystem's own (after the source).
        let mut options = fields[5].to_vec();
        options.extend_from_slice(fields.get(dash + 3).copied().unwrap_or(b""));
        let statfs_in_memory = statfs_in_memory(fields[4], &fstype, &options, &all);
        mounts.push(Mount {
            dir,
            fstype,
            source,
            major,
            minor,
            statfs_in_memory,
        });
    }
    mounts
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
25 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
30 25 0:26 / /run rw - tmpfs tmpfs rw
31 25 253:16 / /mnt/data\\040disk rw master:2 - ext4 /dev/vdb rw
32 25 253:16 /sub /srv/bind rw - ext4 /dev/vdb rw
33 25 0:45 / /home rw - btrfs /dev/sda2 rw
34 25 0:46 / /nfs rw - nfs4 server:/x rw
";

    #[test]
    fn mountinfo_rules() {
        let mounts = parse_mountinfo(FIXTURE.as_bytes(), |p| {
            (p == Path::new("/dev/sda2")).then_some((8, 2))
        });
        let dirs: Vec<_> = mounts
            .iter()
            .map(|m| m.dir.to_string_lossy().into_owned())
            .collect();
        assert_eq!(dirs, ["/", "/mnt/data disk", "/home"]);
        assert_eq!((mounts[2].major, mounts[2].minor), (8, 2));
        assert_eq!(mounts[1].fstype, "ext4");
    }

    #[test]
    fn only_local_filesystems_without_quota_are_measured_inline() {
        let inline =
            |m: &[Mount], dir: &str| m.iter().find(|m| m.dir == dir).unwrap().statfs_in_memory;
        let m = parse_mountinfo(FIXTURE.as_bytes(), |_| Some((8, 2)));
        assert!(inline(&m, "/"));
        assert!(inline(&m, "/mnt/data disk"));
        // btrfs statfs takes locks a stuck transaction can hold.
        assert!(!inline(&m, "/home"));
        let text = "\
25 1 253:1 / / rw,relatime - ext4 /dev/vda1 rw
26 25 253:2 / /q rw - xfs /dev/vda2 rw,prjquota
27 25 0:50 / /net rw - nfs4 server:/x rw
28 27 253:3 / /net/sub rw - ext4 /dev/vda3 rw
29 25 0:51 / /auto rw - autofs systemd-1 rw
30 29 253:4 / /auto/x rw - ext4 /dev/vda4 rw
31 25 253:5 / /netx rw - ext4 /dev/vda5 rw,usrjquota=aquota.user
32 25 253:6 / /ok/deep rw - xfs /dev/vda6 rw
";
        let m = parse_mountinfo(text.as_bytes(), |_| None);
        assert!(inline(&m, "/"));
        assert!(!inline(&m, "/q"), "project quota reads the device");
        assert!(!inline(&m, "/net/sub"), "the path crosses NFS");
        assert!(!inline(&m, "/auto/x"), "the path crosses autofs");
        assert!(!inline(&m, "/netx"), "quota; /net is not its ancestor");
        assert!(inline(&m, "/ok/deep"));
        assert!(is_ancestor(b"/net", b"/net/sub") && !is_ancestor(b"/net", b"/netx"));
    }

    #[test]
    fn escapes_as_decode_mntname() {
        assert_eq!(decode_octal(br"/a\040b\011c\012d\134e"), b"/a b\tc\nd\\e");
        assert_eq!(decode_octal(br"/x\\y"), br"/x\y");
        // Only \000-\377 are escapes; others and truncated ones stay literal.
        assert_eq!(decode_octal(br"/\400/\08/\04"), br"/\400/\08/\04");
    }

    #[test]
    fn a_mount_table_change_is_seen_and_an_unchanged_one_reused() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting needs root");
            return;
        }
        let dir = std::env::temp_dir().join(format!("qga-mounts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
        let shown = dir.to_str().unwrap().as_bytes().to_vec();
        let has = |t: &[u8]| t.windows(shown.len()).any(|w| w == shown.as_slice());
        let before = mountinfo_text().unwrap();
        assert!(!has(&before));
        // Nothing changed: the same text, not read again.
        assert!(Arc::ptr_eq(&before, &mountinfo_text().unwrap()));
        let tmpfs = c"tmpfs";
        // SAFETY: valid NUL-terminated strings; no mount data.
        let r = unsafe {
            libc::mount(
                tmpfs.as_ptr(),
                path.as_ptr(),
                tmpfs.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
        let mounted = mountinfo_text().unwrap();
        // SAFETY: a path we mounted on above.
        unsafe { libc::umount(path.as_ptr()) };
        let unmounted = mountinfo_text().unwrap();
        let _ = std::fs::remove_dir(&dir);
        assert!(has(&mounted), "{}", String::from_utf8_lossy(&mounted));
        assert!(!has(&unmounted));
    }
}
