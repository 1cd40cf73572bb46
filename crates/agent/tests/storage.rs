//! guest-get-fsinfo, guest-get-disks and guest-get-diskstats:
//!
//! - on a fixture guest (`fixtures/storage/vm.tree`, built at run time because sysfs
//!   is mostly symlinks): virtio-blk with partitions, virtio-scsi, SATA/AHCI, IDE,
//!   USB, NVMe behind a root port, NVMe under native multipath, LVM over a
//!   partition, btrfs, s390 CCW, loop, a bind mount, a mount point with a space, a
//!   missing sysfs node, and `/proc/diskstats` lines of every length; compared byte
//!   for byte with outputs worked out by hand from qemu-ga's code;
//! - against the real qemu-ga 10.0.2 on this machine (live differential tests: the
//!   machine as it is, a loop disk with a partition, a made-up udev database);
//! - against qemu-ga 10.0.2 in the test VM (virtio-blk, virtio-scsi, NVMe with
//!   SMART, IDE), where the drivers build the sysfs.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use common::{AgentProc, TempDir};
use qga_agent::commands::storage::{diskstats_at, fsinfo};
use qga_agent::sys::blockdev::SysRoot;
use qga_agent::sys::disks;
use qga_agent::sys::mounts::{parse_mountinfo, Mount};
use qga_agent::sys::nvme::{parse_smart_log, SMART_LOG_LEN};
use qga_agent::sys::statvfs::FsSizes;
use qga_proto::cmds::storage::GuestDiskSmart;
use qga_proto::ToQapi;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/storage")
        .join(name)
}

fn read_fixture(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).expect("fixture")
}

/// Builds the tree described by a `.tree` file (format in its header) below `root`.
fn build_tree(root: &Path, description: &str) {
    let mkparent = |p: &Path| std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let link = |path: &str, target: &str| {
        let p = root.join(path);
        mkparent(&p);
        std::os::unix::fs::symlink(target, &p).unwrap_or_else(|e| panic!("{path}: {e}"));
    };
    let file = |path: &str, text: &str| {
        let p = root.join(path);
        mkparent(&p);
        std::fs::write(&p, text).unwrap();
    };
    for line in description.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (kind, rest) = line.split_once(' ').unwrap();
        match kind {
            "dir" => std::fs::create_dir_all(root.join(rest)).unwrap(),
            "link" => {
                let (path, target) = rest.split_once(' ').unwrap();
                link(path, target);
            }
            "file" => {
                let (path, text) = rest.split_once(' ').unwrap();
                file(path, &text.replace("\\n", "\n"));
            }
            "udev" => {
                let mut words = rest.split(' ');
                let devno = words.next().unwrap();
                let mut text = String::from("I:1700000000\n");
                for prop in words {
                    text.push_str(&format!("E:{prop}\n"));
                }
                text.push_str("G:systemd\nQ:systemd\nV:1\n");
                file(&format!("run/udev/data/b{devno}"), &text);
            }
            "block" => {
                let w: Vec<&str> = rest.split(' ').collect();
                let (syspath, devno, devtype, size) = (w[0], w[1], w[2], w[3]);
                let name = syspath.rsplit('/').next().unwrap();
                let (major, minor) = devno.split_once(':').unwrap();
                file(
                    &format!("{syspath}/uevent"),
                    &format!("MAJOR={major}\nMINOR={minor}\nDEVNAME={name}\nDEVTYPE={devtype}\n"),
                );
                file(&format!("{syspath}/size"), &format!("{size}\n"));
                file(&format!("{syspath}/dev"), &format!("{devno}\n"));
                let under_sys = syspath.strip_prefix("sys/").unwrap();
                link(
                    &format!("sys/dev/block/{devno}"),
                    &format!("../../{under_sys}"),
                );
                if devtype == "disk" {
                    link(&format!("sys/block/{name}"), &format!("../{under_sys}"));
                }
            }
            other => panic!("bad tree line kind {other}"),
        }
    }
}

/// A fixture guest in a temporary directory.
fn vm() -> (TempDir, SysRoot) {
    let dir = TempDir::new();
    build_tree(&dir.0, &read_fixture("vm.tree"));
    let root = SysRoot::new(&dir.0);
    (dir, root)
}

/// The fixture's btrfs source devices (the live code stats `/dev/...`).
fn fixture_dev_numbers(p: &Path) -> Option<(u32, u32)> {
    (p == Path::new("/dev/nvme0n1p1")).then_some((259, 1))
}

fn fixture_mounts() -> Vec<Mount> {
    parse_mountinfo(read_fixture("mountinfo").as_bytes(), fixture_dev_numbers)
}

fn json(v: &impl ToQapi) -> String {
    String::from_utf8(v.to_qapi().to_json()).unwrap()
}

fn expected_list(name: &str) -> String {
    format!(
        "[{}]",
        read_fixture(name).lines().collect::<Vec<_>>().join(", ")
    )
}

#[test]
fn fsinfo_on_fixture_guest() {
    let (_dir, root) = vm();
    let mounts = fixture_mounts();
    // statvfs fails on /home (qemu-ga then leaves the sizes out), works elsewhere.
    let mut sizes = |m: &Mount| {
        (m.dir.as_bytes() != b"/home").then(|| FsSizes::from_counts(1000, 400, 300, 4096))
    };
    let got = fsinfo(&root, &mounts, &mut sizes).expect("fsinfo");
    let got = json(&got);
    let want = expected_list("fsinfo.expected");
    for (g, w) in got.split("}, {\"name\"").zip(want.split("}, {\"name\"")) {
        assert_eq!(g, w);
    }
    assert_eq!(got, want);
}

fn fake_smart(dev: &str) -> Option<GuestDiskSmart> {
    assert_eq!(dev, "/dev/nvme0n1", "SMART is only read for NVMe disks");
    let mut log = [0u8; SMART_LOG_LEN];
    log[1..3].copy_from_slice(&310u16.to_le_bytes());
    (log[3], log[4], log[5]) = (100, 10, 1);
    for (at, v) in [
        (32, 1000u64),
        (48, 2000),
        (64, 3000),
        (80, 4000),
        (96, 5),
        (112, 6),
        (128, 7),
        (144, 8),
        (176, 9),
        (184, 1),
    ] {
        log[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    Some(GuestDiskSmart::Nvme(parse_smart_log(&log)))
}

fn readdir_names(p: &Path) -> Vec<String> {
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn disks_on_fixture_guest() {
    let (dir, root) = vm();
    let got = disks::list(&root, &fake_smart).expect("get-disks");
    // Expected order: discovery order (readdir of /sys/block, each disk followed by
    // its partitions in readdir order of its directory), reversed.
    let table: Vec<(String, String)> = read_fixture("disks.expected")
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    let entry = |name: &str| {
        table
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut want = Vec::new();
    for disk in readdir_names(&dir.join("sys/block")) {
        let Some(e) = entry(&disk) else {
            continue; // size 0 (sr0, loop1) or not a symlink
        };
        want.push(e);
        for part in readdir_names(&dir.join("sys/block").join(&disk)) {
            if let Some(e) = entry(&part).filter(|_| part != disk) {
                want.push(e);
            }
        }
    }
    assert_eq!(want.len(), table.len(), "every expected entry placed");
    want.reverse();
    let want = format!("[{}]", want.join(", "));
    let got = json(&got);
    for (g, w) in got.split("}, {\"name\"").zip(want.split("}, {\"name\"")) {
        assert_eq!(g, w);
    }
    assert_eq!(got, want);
}

#[test]
fn diskstats_on_fixture_guest() {
    let (_dir, root) = vm();
    let got = json(&diskstats_at(&root).expect("diskstats"));
    assert_eq!(got, expected_list("diskstats.expected"));
}

#[test]
fn sysfs_errors_are_qemu_gas() {
    let (dir, root) = vm();
    // A /sys/dev/block link that cannot be resolved fails the whole command.
    std::os::unix::fs::symlink("9:9", dir.join("sys/dev/block/9:9")).unwrap();
    let mut mounts = fixture_mounts();
    mounts[1].major = 9;
    mounts[1].minor = 9;
    let err = fsinfo(&root, &mounts, &mut |_| None).unwrap_err();
    assert_eq!(
        err.desc(),
        "realpath(\"/sys/dev/block/9:9\"): Too many levels of symbolic links"
    );
    // No sysfs at all (a container): names are the device numbers, no disks.
    let empty = TempDir::new();
    let got = fsinfo(&SysRoot::new(&empty.0), &fixture_mounts()[..2], &mut |_| {
        None
    })
    .unwrap();
    assert_eq!(
        json(&got),
        r#"[{"name": "253:0", "mountpoint": "/srv", "disk": [], "type": "xfs"}, {"name": "252:1", "mountpoint": "/", "disk": [], "type": "ext4"}]"#
    );
    let err = disks::list(&SysRoot::new(&empty.0), &fake_smart).unwrap_err();
    assert_eq!(
        err.desc(),
        "Can't open directory \"/sys/block\": No such file or directory"
    );
    let err = diskstats_at(&SysRoot::new(&empty.0)).unwrap_err();
    assert_eq!(
        err.desc(),
        "open(\"/proc/diskstats\"): No such file or directory"
    );
}

// ---- live differential tests against qemu-ga 10.0.2 ----

/// Live tests change or depend on the machine's mounts: one at a time.
static LIVE: Mutex<()> = Mutex::new(());

/// Replaces the number after each `"<key>": ` by `#`.
fn mask(s: &str, keys: &[&str]) -> String {
    let mut out = s.to_string();
    for key in keys {
        let pat = format!("\"{key}\": ");
        let mut res = String::new();
        let mut rest = out.as_str();
        while let Some(i) = rest.find(&pat) {
            let after = &rest[i + pat.len()..];
            let n = after
                .find(|c: char| !(c.is_ascii_digit() || c == '-'))
                .unwrap_or(after.len());
            res.push_str(&rest[..i + pat.len()]);
            res.push_str(if n > 0 { "#" } else { "" });
            rest = &after[n..];
        }
        res.push_str(rest);
        out = res;
    }
    out
}

const SIZE_KEYS: &[&str] = &["used-bytes", "total-bytes"];
const COUNTER_KEYS: &[&str] = &[
    "read-sectors",
    "read-ios",
    "read-merges",
    "write-sectors",
    "write-ios",
    "write-merges",
    "discard-sectors",
    "discard-ios",
    "discard-merges",
    "flush-ios",
    "read-ticks",
    "write-ticks",
    "discard-ticks",
    "flush-ticks",
    "ios-pgr",
    "total-ticks",
    "weight-ticks",
];

/// Asks both agents the three commands; fsinfo and disks must be identical except
/// used/total bytes, diskstats identical in shape.
fn compare_live(expect_mountpoint: Option<&str>) {
    let reference = AgentProc::reference(&[]);
    let ours = AgentProc::ours(&[]);
    let (mut r, mut o) = (reference.connect(), ours.connect());
    for cmd in ["guest-get-fsinfo", "guest-get-disks", "guest-get-diskstats"] {
        let req = format!("{{\"execute\":\"{cmd}\"}}");
        let (rr, oo) = (r.cmd(&req), o.cmd(&req));
        assert!(rr.starts_with("{\"return\": ["), "{rr}");
        let (rr, oo) = if cmd == "guest-get-diskstats" {
            (mask(&rr, COUNTER_KEYS), mask(&oo, COUNTER_KEYS))
        } else {
            (mask(&rr, SIZE_KEYS), mask(&oo, SIZE_KEYS))
        };
        assert_eq!(oo, rr, "{cmd}: ours vs qemu-ga 10.0.2");
        if let (Some(mp), "guest-get-fsinfo") = (expect_mountpoint, cmd) {
            assert!(rr.contains(&format!("\"mountpoint\": \"{mp}\"")), "{rr}");
        }
    }
}

#[test]
fn live_machine_matches_reference() {
    let _g = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    compare_live(None);
}

fn run(argv: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .map_err(|e| format!("{}: {e}", argv[0]))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Undoes the loop-device scenario even when the test fails.
struct LoopScenario {
    mounts: Vec<PathBuf>,
    loopdev: Option<String>,
}

impl Drop for LoopScenario {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            let _ = run(&["umount", &m.to_string_lossy()]);
        }
        if let Some(l) = &self.loopdev {
            let _ = run(&["partx", "-d", l]);
            let _ = run(&["losetup", "-d", l]);
        }
    }
}

/// A 64 MiB image with one MBR partition (LBA 2048..end, type 0x83).
fn write_partitioned_image(path: &Path) {
    let mut img = vec![0u8; 64 << 20];
    let entry = &mut img[446..462];
    entry[4] = 0x83;
    entry[8..12].copy_from_slice(&2048u32.to_le_bytes());
    entry[12..16].copy_from_slice(&(131072u32 - 2048).to_le_bytes());
    img[510] = 0x55;
    img[511] = 0xaa;
    std::fs::write(path, img).unwrap();
}

/// A loop disk with a partition, mounted at a path with a space and bind-mounted
/// elsewhere: loop devices are virtual (no address), the partition gets
/// `dependencies`, the space comes back decoded and the bind mount is dropped.
#[test]
fn live_loop_partition_space_and_bind_mount_match_reference() {
    let _g = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 || run(&["losetup", "--version"]).is_err() {
        eprintln!("skipped: needs root and util-linux (losetup, partx, mkfs.ext4)");
        return;
    }
    let dir = TempDir::new();
    let mut sc = LoopScenario {
        mounts: Vec::new(),
        loopdev: None,
    };
    let img = dir.join("disk.img");
    write_partitioned_image(&img);
    let dev = run(&["losetup", "-f", "--show", &img.to_string_lossy()]).unwrap();
    sc.loopdev = Some(dev.clone());
    // partx asks the kernel for the partition (BLKPG), with or without its MBR parser.
    let part = format!("{dev}p1");
    run(&["partx", "-a", &dev]).unwrap();
    run(&["mkfs.ext4", "-q", "-F", &part]).unwrap();
    let spaced = dir.join("data disk");
    let bind = dir.join("bind");
    std::fs::create_dir_all(&spaced).unwrap();
    std::fs::create_dir_all(&bind).unwrap();
    run(&["mount", &part, &spaced.to_string_lossy()]).unwrap();
    sc.mounts.push(spaced.clone());
    run(&[
        "mount",
        "--bind",
        &spaced.to_string_lossy(),
        &bind.to_string_lossy(),
    ])
    .unwrap();
    sc.mounts.push(bind.clone());
    compare_live(Some(&spaced.to_string_lossy()));
    // The bind mount shares the partition's numbers: neither agent lists it.
    let ours = AgentProc::ours(&[]);
    let reply = ours.connect().cmd(r#"{"execute":"guest-get-fsinfo"}"#);
    assert!(
        !reply.contains(&format!("\"{}\"", bind.to_string_lossy())),
        "{reply}"
    );
    assert!(
        reply.contains(&format!(
            "\"mountpoint\": \"{}\", \"disk\": []",
            spaced.to_string_lossy()
        )),
        "{reply}"
    );
    drop(sc);
    drop(dir);
}

/// Removes the udev database the test made up.
struct FakeUdev;

impl Drop for FakeUdev {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all("/run/udev");
    }
}

/// Serial and alias from the udev database, as libudev reads it: where this machine
/// runs no udev, make up a database entry for the root disk and compare both agents.
#[test]
fn live_udev_database_matches_reference() {
    let _g = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: plain syscall.
    if Path::new("/run/udev").exists() || unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: a real udev database is present (the other live tests cover it)");
        return;
    }
    let mounts = qga_agent::sys::mounts::mount_list().unwrap();
    let root = mounts
        .iter()
        .find(|m| m.dir.as_bytes() == b"/")
        .expect("/ in mount list");
    let _cleanup = FakeUdev;
    std::fs::create_dir_all("/run/udev/data").unwrap();
    std::fs::write(
        format!("/run/udev/data/b{}:{}", root.major, root.minor),
        "S:disk/by-id/fake\nI:1700000000\nE:ID_SERIAL=fake_serial_0001\nE:DM_NAME=\n\
         E:DM_NAME=fake-alias\nE:ID_MODEL=x=y\nG:systemd\n",
    )
    .unwrap();
    compare_live(None);
    let ours = AgentProc::ours(&[]);
    let reply = ours.connect().cmd(r#"{"execute":"guest-get-fsinfo"}"#);
    assert!(
        reply.contains("\"serial\": \"fake_serial_0001\""),
        "{reply}"
    );
}

// ---- in a test VM: real sysfs from real drivers, against qemu-ga 10.0.2 ----

const SMART_COUNTERS: &[&str] = &[
    "data-units-read-lo",
    "data-units-read-hi",
    "data-units-written-lo",
    "data-units-written-hi",
    "host-read-commands-lo",
    "host-read-commands-hi",
    "host-write-commands-lo",
    "host-write-commands-hi",
    "controller-busy-time-lo",
    "controller-busy-time-hi",
    "power-on-hours-lo",
    "power-on-hours-hi",
];

/// Disk images for the VM: a virtio-scsi disk with an MBR partition holding ext4, an
/// NVMe namespace and an IDE disk, both ext4.
fn vm_disk_images(dir: &Path) {
    let mkfs = |img: &Path, extra: &[&str]| {
        let mut argv = vec!["mkfs.ext4", "-q", "-F"];
        argv.extend_from_slice(extra);
        let img = img.to_string_lossy().into_owned();
        argv.push(&img);
        run(&argv).unwrap();
    };
    write_partitioned_image(&dir.join("scsi.img"));
    mkfs(
        &dir.join("scsi.img"),
        &[
            "-E",
            "offset=1048576,lazy_itable_init=0,lazy_journal_init=0",
            "-b",
            "4096",
        ],
    );
    // mkfs with an offset sizes the filesystem to the file: cut it back to the partition.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("scsi.img"))
        .unwrap();
    f.set_len(64 << 20).unwrap();
    for name in ["nvme.img", "ide.img"] {
        std::fs::write(dir.join(name), vec![0u8; 64 << 20]).unwrap();
        mkfs(
            &dir.join(name),
            &["-E", "lazy_itable_init=0,lazy_journal_init=0"],
        );
    }
}

/// Boots `agent` in the test VM with the extra disks (fresh copies of `images`).
fn boot_storage_vm(agent: &Path, images: &Path) -> common::Vm {
    let dir = TempDir::new();
    for f in ["scsi.img", "nvme.img", "ide.img"] {
        std::fs::copy(images.join(f), dir.join(f)).unwrap();
    }
    let scripts = common::workspace_root().join("scripts/vm");
    let add = format!(
        "{}:/etc/qga-test/init.d/50-storage",
        fixture("vm-disks.sh").display()
    );
    let out = std::process::Command::new(scripts.join("build-initramfs.sh"))
        .args([
            "--module",
            "virtio_scsi",
            "--module",
            "sd_mod",
            "--module",
            "ata_piix",
        ])
        .args(["--add", &add])
        .arg(agent)
        .arg(&dir.0)
        .output()
        .expect("build-initramfs.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let qemu_args = [
        "-device".to_string(),
        "virtio-scsi-pci,id=scsi0".into(),
        "-drive".into(),
        format!("file={},if=none,id=s0,format=raw", img("scsi.img")),
        "-device".into(),
        "scsi-hd,drive=s0,bus=scsi0.0,channel=0,scsi-id=1,lun=3,serial=SCSISER1".into(),
        "-drive".into(),
        format!("file={},if=none,id=nv0,format=raw", img("nvme.img")),
        "-device".into(),
        "nvme,drive=nv0,serial=NVMESER1".into(),
        "-drive".into(),
        format!("file={},if=none,id=i0,format=raw", img("ide.img")),
        "-device".into(),
        "ide-hd,drive=i0,bus=ide.1,unit=1".into(),
    ];
    let status = std::process::Command::new(scripts.join("run-vm.sh"))
        .args(["--lifetime", "900", "--timeout", "180"])
        // Without native NVMe multipath the namespace sits below its PCI function;
        // with it (Debian's default) both agents report bus-type "unknown" and no
        // SMART (see the fixture's nvme1n1).
        .args(["--append", "nvme_core.multipath=N"])
        .arg(&dir.0)
        .arg("--")
        .args(&qemu_args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run-vm.sh");
    let vm = common::Vm { dir };
    if !status.success() {
        let console = std::fs::read_to_string(vm.dir.join("console.log")).unwrap_or_default();
        panic!("run-vm.sh failed; console:\n{console}");
    }
    vm
}

/// virtio-blk (with a udev serial), virtio-scsi with a partition mounted on a path with
/// a space, NVMe with SMART and a bind mount, IDE on PIIX: the guest's real sysfs.
/// fsinfo and disks must be identical (sizes and NVMe usage counters by shape),
/// diskstats identical in shape.
#[test]
fn vm_scsi_nvme_ide_match_reference() {
    let _g = common::vm_lock();
    let images = TempDir::new();
    vm_disk_images(&images.0);
    let mut replies: Vec<Vec<String>> = Vec::new();
    for agent in [common::reference_binary(), common::static_agent()] {
        let vm = boot_storage_vm(&agent, &images.0);
        let mut c = vm.connect();
        replies.push(
            ["guest-get-fsinfo", "guest-get-disks", "guest-get-diskstats"]
                .iter()
                .map(|cmd| c.cmd(&format!("{{\"execute\":\"{cmd}\"}}")))
                .collect(),
        );
    }
    let (reference, ours) = (&replies[0], &replies[1]);
    let fsinfo = &reference[0];
    for needle in [
        "\"mountpoint\": \"/mnt/scsi part\"",
        "\"bus-type\": \"scsi\", \"bus\": 0, \"unit\": 3",
        "\"bus-type\": \"ide\", \"bus\": 1, \"unit\": 1",
        "\"bus-type\": \"nvme\"",
        "\"serial\": \"QGADISK0\"",
        "\"serial\": \"0QEMU_QEMU_HARDDISK_SCSISER1\"",
    ] {
        assert!(
            fsinfo.contains(needle),
            "reference fsinfo lacks {needle}: {fsinfo}"
        );
    }
    assert!(!fsinfo.contains("/mnt/nvme-bind"), "{fsinfo}");
    assert!(
        reference[1].contains("\"type\": \"nvme\""),
        "no SMART: {}",
        reference[1]
    );
    for (i, cmd) in ["fsinfo", "disks", "diskstats"].iter().enumerate() {
        let keys: Vec<&str> = if i == 2 {
            COUNTER_KEYS.to_vec()
        } else {
            SIZE_KEYS.iter().chain(SMART_COUNTERS).copied().collect()
        };
        assert_eq!(
            mask(&ours[i], &keys),
            mask(&reference[i], &keys),
            "guest-get-{cmd}"
        );
    }
}
