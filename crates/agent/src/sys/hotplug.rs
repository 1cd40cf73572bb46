//! CPU and memory hotplug state in sysfs (guest-get-vcpus, guest-get-memory-blocks,
//! guest-get-memory-block-info), read as qemu-ga does: directory entries in readdir
//! order, one directory descriptor per item and `pread` of its files, with qemu-ga's
//! error texts. Every function takes the sysfs directory, so tests run it on fixtures.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};

use qga_proto::cmds::system::{GuestLogicalProcessor, GuestMemoryBlock};

use super::cscan::Scanner;
use crate::error::{Error, Result};

/// Where the CPUs are.
pub const CPU_DIR: &str = "/sys/devices/system/cpu";
/// Where the memory blocks are (qemu-ga spells it with the trailing slash).
pub const MEMORY_DIR: &str = "/sys/devices/system/memory/";

/// `open(path, O_RDONLY | O_DIRECTORY)`.
fn open_dir(path: &str) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(path)
}

/// `openat(dir, name, O_RDONLY)`.
fn open_at(dir: &File, name: &std::ffi::CStr) -> io::Result<File> {
    // SAFETY: `dir` is an open descriptor and `name` a NUL-terminated string.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by the returned File.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// `sscanf(name, "cpu%ld", &id)`: the id of a `cpu<N>` entry (`cpu+3` and `cpu7x`
/// count too, as they do for sscanf).
fn cpu_id(name: &[u8]) -> Option<i64> {
    Scanner::new(name.strip_prefix(b"cpu")?).long(10)
}

/// The logical processors under `cpu_dir` (normally [`CPU_DIR`]), in readdir order:
/// `online` is the first byte of `cpuN/online` != '0' with `can-offline` true, or
/// online and not offlinable when that file does not exist. The first failure ends the
/// listing and becomes the reply.
pub fn get_vcpus(cpu_dir: &str) -> Result<Vec<GuestLogicalProcessor>> {
    let entries = std::fs::read_dir(cpu_dir)
        .map_err(|e| Error::errno(format!("failed to list entries: {cpu_dir}"), &e))?;
    let mut out = Vec::new();
    for entry in entries {
        let Ok(entry) = entry else { break };
        let Some(id) = cpu_id(entry.file_name().as_bytes()) else {
            continue;
        };
        let path = format!("{cpu_dir}/cpu{id}/");
        let dir = open_dir(&path).map_err(|e| Error::errno(format!("open(\"{path}\")"), &e))?;
        let (online, can_offline) = match open_at(&dir, c"online") {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => (true, false),
            Err(e) => return Err(Error::errno(format!("open(\"{path}/online\")"), &e)),
            Ok(f) => {
                let mut status = [0u8; 1];
                match f.read_at(&mut status, 0) {
                    Err(e) => return Err(Error::errno(format!("pread(\"{path}/online\")"), &e)),
                    Ok(0) => {
                        return Err(Error::new(format!(
                            "pread(\"{path}/online\"): unexpected EOF"
                        )))
                    }
                    Ok(_) => (status[0] != b'0', true),
                }
            }
        };
        out.push(GuestLogicalProcessor {
            logical_id: id,
            online,
            can_offline: Some(can_offline),
        });
    }
    Ok(out)
}

/// qemu-ga's `ga_read_sysfs_file`: up to `buf.len()` bytes of `dir/name`. The error
/// says whether opening failed with ENOENT (callers treat a missing file specially).
fn read_sysfs_file(dir: &File, name: &std::ffi::CStr, buf: &mut [u8]) -> Result<(), (bool, Error)> {
    let shown = name.to_string_lossy();
    let f = open_at(dir, name).map_err(|e| {
        let missing = e.raw_os_error() == Some(libc::ENOENT);
        (
            missing,
            Error::errno(format!("open sysfs file \"{shown}\""), &e),
        )
    })?;
    match f.read_at(buf, 0) {
        Err(e) => Err((
            false,
            Error::errno(format!("pread sysfs file \"{shown}\""), &e),
        )),
        Ok(0) => Err((
            false,
            Error::new(format!("pread sysfs file \"{shown}\": unexpected EOF")),
        )),
        Ok(_) => Ok(()),
    }
}

/// The memory blocks under `mem_dir` (normally [`MEMORY_DIR`], with its trailing
/// slash), in readdir order. Entries are the directories named `memory*`, the index
/// read with `strtoul`. `online` = `state` starts with "online" (a missing `state`
/// means online and not offlinable); `can-offline` = first byte of `removable` != '0'
/// (false when missing). A missing `mem_dir` gives `[]`; an empty one an error.
pub fn get_memory_blocks(mem_dir: &str) -> Result<Vec<GuestMemoryBlock>> {
    let entries = match std::fs::read_dir(mem_dir) {
        Ok(it) => it,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::errno(
                format!("Can't open directory\"{mem_dir}\""),
                &e,
            ));
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let Ok(entry) = entry else { break };
        let name = entry.file_name();
        let Some(index) = name.as_bytes().strip_prefix(b"memory") else {
            continue;
        };
        // readdir's `d_type & DT_DIR`: true for directories, block devices and sockets.
        let Ok(ft) = entry.file_type() else { continue };
        if !(ft.is_dir() || ft.is_block_device() || ft.is_socket()) {
            continue;
        }
        let phys_index = Scanner::new(index).ulong(10).unwrap_or(0);
        out.push(memory_block(mem_dir, phys_index)?);
    }
    if out.is_empty() {
        return Err(Error::new("guest reported zero memory blocks!"));
    }
    Ok(out)
}

fn memory_block(mem_dir: &str, phys_index: u64) -> Result<GuestMemoryBlock> {
    // qemu-ga formats the uint64 index with PRId64.
    let path = format!("{mem_dir}memory{}/", phys_index as i64);
    let dir = open_dir(&path).map_err(|e| Error::errno(format!("open(\"{path}\")"), &e))?;
    let mut state = [0u8; 10];
    match read_sysfs_file(&dir, c"state", &mut state) {
        Err((true, _)) => {
            return Ok(GuestMemoryBlock {
                phys_index,
                online: true,
                can_offline: Some(false),
            })
        }
        Err((false, e)) => return Err(e),
        Ok(()) => {}
    }
    let mut removable = [b'0'; 1];
    let can_offline = match read_sysfs_file(&dir, c"removable", &mut removable) {
        Err((true, _)) => false,
        Err((false, e)) => return Err(e),
        Ok(()) => removable[0] != b'0',
    };
    Ok(GuestMemoryBlock {
        phys_index,
        online: state.starts_with(b"online"),
        can_offline: Some(can_offline),
    })
}

/// `block_size_bytes` under `mem_dir` (normally [`MEMORY_DIR`]): up to 20 bytes read
/// with `strtol(buf, NULL, 16)`.
pub fn memory_block_size(mem_dir: &str) -> Result<u64> {
    let dir = open_dir(mem_dir).map_err(|e| Error::errno(format!("open(\"{mem_dir}\")"), &e))?;
    let mut buf = [0u8; 20];
    read_sysfs_file(&dir, c"block_size_bytes", &mut buf).map_err(|(_, e)| e)?;
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(Scanner::new(&buf[..len]).long(16).unwrap_or(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("qga-hotplug-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn vcpus_errors_carry_qemu_ga_texts() {
        let d = scratch("cpu-eof");
        std::fs::create_dir(d.join("cpu3")).unwrap();
        std::fs::write(d.join("cpu3/online"), "").unwrap();
        let root = d.to_string_lossy();
        let e = get_vcpus(&root).unwrap_err();
        assert_eq!(
            e.desc(),
            format!("pread(\"{root}/cpu3//online\"): unexpected EOF")
        );

        let d = scratch("cpu-notdir");
        std::fs::write(d.join("cpu4"), "").unwrap();
        let root = d.to_string_lossy();
        let e = get_vcpus(&root).unwrap_err();
        assert_eq!(e.desc(), format!("open(\"{root}/cpu4/\"): Not a directory"));

        let e = get_vcpus("/nonexistent/cpu").unwrap_err();
        assert_eq!(
            e.desc(),
            "failed to list entries: /nonexistent/cpu: No such file or directory"
        );
        // Entries named cpu<N> by sscanf("cpu%ld") only; the path uses the parsed number.
        let d = scratch("cpu-names");
        for n in ["cpu07", "cpufreq", "cpux1", "cpu+5"] {
            std::fs::create_dir(d.join(n)).unwrap();
        }
        std::fs::create_dir(d.join("cpu7")).unwrap();
        std::fs::create_dir(d.join("cpu5")).unwrap();
        let mut ids: Vec<i64> = get_vcpus(&d.to_string_lossy())
            .unwrap()
            .iter()
            .map(|c| c.logical_id)
            .collect();
        ids.sort();
        assert_eq!(ids, [5, 5, 7, 7]);
    }

    #[test]
    fn memory_block_errors_and_missing_directory() {
        assert_eq!(get_memory_blocks("/nonexistent/memory/").unwrap(), []);
        let d = scratch("mem-empty");
        let root = format!("{}/", d.display());
        let e = get_memory_blocks(&root).unwrap_err();
        assert_eq!(e.desc(), "guest reported zero memory blocks!");
        let e = memory_block_size(&root).unwrap_err();
        assert_eq!(
            e.desc(),
            "open sysfs file \"block_size_bytes\": No such file or directory"
        );
        let e = memory_block_size("/nonexistent/memory/").unwrap_err();
        assert_eq!(
            e.desc(),
            "open(\"/nonexistent/memory/\"): No such file or directory"
        );

        std::fs::create_dir(d.join("memory5")).unwrap();
        std::fs::write(d.join("memory5/state"), "").unwrap();
        let e = get_memory_blocks(&root).unwrap_err();
        assert_eq!(e.desc(), "pread sysfs file \"state\": unexpected EOF");
        std::fs::write(d.join("memory5/state"), "online\n").unwrap();
        std::fs::write(d.join("memory5/removable"), "").unwrap();
        let e = get_memory_blocks(&root).unwrap_err();
        assert_eq!(e.desc(), "pread sysfs file \"removable\": unexpected EOF");

        // The directory opened is memory<strtoul(suffix)>, so memory007 looks for memory7.
        let d = scratch("mem-index");
        std::fs::create_dir(d.join("memory007")).unwrap();
        let root = format!("{}/", d.display());
        let e = get_memory_blocks(&root).unwrap_err();
        assert_eq!(
            e.desc(),
            format!("open(\"{root}memory7/\"): No such file or directory")
        );
        std::fs::write(d.join("block_size_bytes"), "0x10\n").unwrap();
        assert_eq!(memory_block_size(&root).unwrap(), 16);
    }
}
