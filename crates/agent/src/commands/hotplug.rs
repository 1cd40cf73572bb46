//! guest-set-vcpus and guest-set-memory-blocks: CPU and memory hot(un)plug through
//! sysfs, reproducing qemu-ga's `transfer_vcpu` / `transfer_memory_block` (write
//! direction) down to which errno ends up in `error-code`. The sysfs directories are
//! fields of [`SysfsRoots`], so tests run against temporary trees.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use qga_proto::cmds::power::*;

use crate::agent::Agent;
use crate::error::{Error, Result};

/// Where the CPU and memory-block directories are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysfsRoots {
    /// `/sys/devices/system/cpu`
    pub cpu: String,
    /// `/sys/devices/system/memory`
    pub memory: String,
}

impl Default for SysfsRoots {
    fn default() -> Self {
        SysfsRoots {
            cpu: "/sys/devices/system/cpu".into(),
            memory: "/sys/devices/system/memory".into(),
        }
    }
}

fn open_dir(path: &str) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(path)
}

fn errno_of(e: &std::io::Error) -> i64 {
    i64::from(e.raw_os_error().unwrap_or(0))
}

impl SysfsRoots {
    /// Brings one CPU to the wanted state (`transfer_vcpu`, vcpu-to-system).
    pub fn set_vcpu(&self, vcpu: &GuestLogicalProcessor) -> Result<()> {
        let dirpath = format!("{}/cpu{}/", self.cpu, vcpu.logical_id);
        let _dir =
            open_dir(&dirpath).map_err(|e| Error::errno(format!("open(\"{dirpath}\")"), &e))?;
        // qemu-ga joins "<dir>/" and "online" with another '/'.
        let online = format!("{dirpath}/online");
        let f = match OpenOptions::new().read(true).write(true).open(&online) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if !vcpu.online {
                    return Err(Error::new(format!(
                        "logical processor #{} can't be offlined",
                        vcpu.logical_id
                    )));
                }
                return Ok(()); // no "online" file (cpu0): pretend it was re-onlined
            }
            Err(e) => return Err(Error::errno(format!("open(\"{online}\")"), &e)),
        };
        let mut status = [0u8; 1];
        match f.read_at(&mut status, 0) {
            Err(e) => Err(Error::errno(format!("pread(\"{online}\")"), &e)),
            Ok(0) => Err(Error::new(format!("pread(\"{online}\"): unexpected EOF"))),
            Ok(_) if vcpu.online != (status[0] != b'0') => {
                let byte = if vcpu.online { b"1" } else { b"0" };
                f.write_at(byte, 0)
                    .map(drop)
                    .map_err(|e| Error::errno(format!("pwrite(\"{online}\")"), &e))
            }
            Ok(_) => Ok(()),
        }
    }

    /// Processes the list in order and stops at the first failure; returns how many
    /// entries succeeded. The error is reported only when the very first one failed.
    pub fn set_vcpus(&self, vcpus: &[GuestLogicalProcessor]) -> Result<i64> {
        let mut processed = 0;
        for vcpu in vcpus {
            if let Err(e) = self.set_vcpu(vcpu) {
                if processed == 0 {
                    return Err(e);
                }
                break;
            }
            processed += 1;
        }
        Ok(processed)
    }

    /// Brings one memory block to the wanted state (`transfer_memory_block`,
    /// memblk-to-system). Never an error: the outcome is in the response.
    pub fn set_memory_block(&self, blk: &GuestMemoryBlock) -> GuestMemoryBlockResponse {
        let (response, error_code) = self.transfer_memory_block(blk);
        GuestMemoryBlockResponse {
            phys_index: blk.phys_index,
            response,
            error_code,
        }
    }

    fn transfer_memory_block(
        &self,
        blk: &GuestMemoryBlock,
    ) -> (GuestMemoryBlockResponseType, Option<i64>) {
        use GuestMemoryBlockResponseType as R;
        // "No memory directory" means the guest cannot hotplug memory; any other
        // failure leaves the response at its default, success, with the errno.
        if let Err(e) = std::fs::read_dir(format!("{}/", self.memory)) {
            let r = if e.kind() == ErrorKind::NotFound {
                R::OperationNotSupported
            } else {
                R::Success
            };
            return (r, Some(errno_of(&e)));
        }
        // qemu-ga prints the uint64 index with PRId64.
        let dirpath = format!("{}/memory{}/", self.memory, blk.phys_index as i64);
        if let Err(e) = open_dir(&dirpath) {
            let r = if e.kind() == ErrorKind::NotFound {
                R::NotFound
            } else {
                R::OperationFailed
            };
            return (r, Some(errno_of(&e)));
        }
        let state = format!("{dirpath}state");
        let mut status = [0u8; 10];
        let read = File::open(&state).and_then(|f| f.read_at(&mut status, 0));
        let is_online = match read {
            Ok(n) if n > 0 => status.starts_with(b"online"),
            // pread returning 0 is an error with errno 0 in qemu-ga.
            other => {
                let errno = other.err().map_or(0, |e| errno_of(&e));
                // A missing state file (old kernels) only matters when offlining;
                // onlining "succeeds", and still reports the errno (qemu-ga quirk).
                let r = if errno == i64::from(libc::ENOENT) {
                    if blk.online {
                        R::Success
                    } else {
                        R::OperationNotSupported
                    }
                } else {
                    R::OperationFailed
                };
                return (r, Some(errno));
            }
        };
        if blk.online != is_online {
            let new_state: &[u8] = if blk.online { b"online" } else { b"offline" };
            let write = OpenOptions::new()
                .write(true)
                .open(&state)
                .and_then(|f| f.write_at(new_state, 0));
            if let Err(e) = write {
                return (R::OperationFailed, Some(errno_of(&e)));
            }
        }
        (R::Success, None)
    }
}

/// guest-set-vcpus.
pub fn set_vcpus(agent: &Agent, args: GuestSetVcpusArgs) -> Result<i64> {
    agent.hotplug.set_vcpus(&args.vcpus)
}

/// guest-set-memory-blocks.
pub fn set_memory_blocks(
    agent: &Agent,
    args: GuestSetMemoryBlocksArgs,
) -> Result<Vec<GuestMemoryBlockResponse>> {
    Ok(args
        .mem_blks
        .iter()
        .map(|b| agent.hotplug.set_memory_block(b))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::spawn_sync::testutil::tempdir;
    use GuestMemoryBlockResponseType as R;

    fn cpu(id: i64, online: bool) -> GuestLogicalProcessor {
        GuestLogicalProcessor {
            logical_id: id,
            online,
            can_offline: None,
        }
    }

    fn blk(i: u64, online: bool) -> GuestMemoryBlock {
        GuestMemoryBlock {
            phys_index: i,
            online,
            can_offline: None,
        }
    }

    fn roots(d: &std::path::Path) -> SysfsRoots {
        SysfsRoots {
            cpu: format!("{}/cpu", d.display()),
            memory: format!("{}/memory", d.display()),
        }
    }

    /// cpu0 without an `online` file (like the boot CPU), cpu1 online, cpu2 offline.
    fn cpu_tree(d: &std::path::Path) {
        for c in ["cpu0", "cpu1", "cpu2"] {
            std::fs::create_dir_all(d.join("cpu").join(c)).unwrap();
        }
        std::fs::write(d.join("cpu/cpu1/online"), "1\n").unwrap();
        std::fs::write(d.join("cpu/cpu2/online"), "0\n").unwrap();
    }

    #[test]
    fn set_vcpus_counts_writes_and_errors() {
        let d = tempdir("vcpus");
        cpu_tree(&d);
        let r = roots(&d);
        let online =
            |c: &str| std::fs::read_to_string(d.join("cpu").join(c).join("online")).unwrap();

        assert_eq!(r.set_vcpus(&[]), Ok(0));
        // Already in the wanted state: nothing is written.
        assert_eq!(
            r.set_vcpus(&[cpu(1, true), cpu(2, false), cpu(0, true)]),
            Ok(3)
        );
        assert_eq!(
            (online("cpu1"), online("cpu2")),
            ("1\n".into(), "0\n".into())
        );
        // Changes write one byte at offset 0.
        assert_eq!(r.set_vcpus(&[cpu(1, false), cpu(2, true)]), Ok(2));
        assert_eq!(
            (online("cpu1"), online("cpu2")),
            ("0\n".into(), "1\n".into())
        );

        // The error is reported only when the first entry fails.
        let dir = format!("{}/cpu/cpu99/", d.display());
        assert_eq!(
            r.set_vcpus(&[cpu(99, true), cpu(1, true)])
                .unwrap_err()
                .desc(),
            format!("open(\"{dir}\"): No such file or directory")
        );
        assert_eq!(
            r.set_vcpus(&[cpu(1, true), cpu(99, true), cpu(2, false)]),
            Ok(1)
        );
        assert_eq!(online("cpu1"), "1\n");
        assert_eq!(online("cpu2"), "1\n", "processing stopped at cpu99");

        assert_eq!(
            r.set_vcpus(&[cpu(0, false)]).unwrap_err().desc(),
            "logical processor #0 can't be offlined"
        );
        assert_eq!(
            r.set_vcpus(&[cpu(-1, false)]).unwrap_err().desc(),
            format!(
                "open(\"{}/cpu/cpu-1/\"): No such file or directory",
                d.display()
            )
        );

        std::fs::write(d.join("cpu/cpu2/online"), "").unwrap();
        let online2 = format!("{}/cpu/cpu2//online", d.display());
        assert_eq!(
            r.set_vcpus(&[cpu(2, true)]).unwrap_err().desc(),
            format!("pread(\"{online2}\"): unexpected EOF")
        );
        std::fs::remove_file(d.join("cpu/cpu2/online")).unwrap();
        std::fs::create_dir(d.join("cpu/cpu2/online")).unwrap();
        assert_eq!(
            r.set_vcpus(&[cpu(2, true)]).unwrap_err().desc(),
            format!("open(\"{online2}\"): Is a directory")
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn set_vcpus_write_error() {
        // /dev/full reads as NUL bytes (online) and fails every write with ENOSPC.
        let d = tempdir("vcpus-full");
        cpu_tree(&d);
        let p = d.join("cpu/cpu1/online");
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink("/dev/full", &p).unwrap();
        let r = roots(&d);
        assert_eq!(r.set_vcpus(&[cpu(1, true)]), Ok(1));
        assert_eq!(
            r.set_vcpus(&[cpu(1, false)]).unwrap_err().desc(),
            format!(
                "pwrite(\"{}/cpu/cpu1//online\"): No space left on device",
                d.display()
            )
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    fn mem_tree(d: &std::path::Path) {
        for m in ["memory0", "memory1", "memory2", "memory3"] {
            std::fs::create_dir_all(d.join("memory").join(m)).unwrap();
        }
        std::fs::write(d.join("memory/memory0/state"), "online\n").unwrap();
        std::fs::write(d.join("memory/memory1/state"), "offline\n").unwrap();
        // memory2: no state file (old kernels). memory3: empty state file.
        std::fs::write(d.join("memory/memory3/state"), "").unwrap();
    }

    fn rsp(i: u64, response: R, error_code: Option<i64>) -> GuestMemoryBlockResponse {
        GuestMemoryBlockResponse {
            phys_index: i,
            response,
            error_code,
        }
    }

    #[test]
    fn set_memory_blocks_every_response() {
        let d = tempdir("mem");
        mem_tree(&d);
        let r = roots(&d);
        let state =
            |m: &str| std::fs::read_to_string(d.join("memory").join(m).join("state")).unwrap();
        let set = |b: GuestMemoryBlock| r.set_memory_block(&b);

        // Already as requested.
        assert_eq!(set(blk(0, true)), rsp(0, R::Success, None));
        assert_eq!(state("memory0"), "online\n");
        // Changes write the word, without a newline, at offset 0.
        assert_eq!(set(blk(1, true)), rsp(1, R::Success, None));
        // (sysfs takes the word; a plain file keeps the old tail)
        assert_eq!(state("memory1"), "onlinee\n");
        assert_eq!(set(blk(0, false)), rsp(0, R::Success, None));
        assert_eq!(state("memory0"), "offline");
        // Missing block.
        assert_eq!(set(blk(999999, true)), rsp(999999, R::NotFound, Some(2)));
        // uint64 printed as int64: -1 is "memory-1".
        assert_eq!(
            set(blk(u64::MAX, true)),
            rsp(u64::MAX, R::NotFound, Some(2))
        );
        // No state file: offlining is unsupported; onlining succeeds but keeps the errno.
        assert_eq!(
            set(blk(2, false)),
            rsp(2, R::OperationNotSupported, Some(2))
        );
        assert_eq!(set(blk(2, true)), rsp(2, R::Success, Some(2)));
        // An empty state file is a read error with errno 0.
        assert_eq!(set(blk(3, true)), rsp(3, R::OperationFailed, Some(0)));
        // A block that is not a directory.
        std::fs::write(d.join("memory/memory5"), "").unwrap();
        assert_eq!(set(blk(5, true)), rsp(5, R::OperationFailed, Some(20)));
        // A state that cannot be read (a directory): EISDIR.
        std::fs::create_dir_all(d.join("memory/memory6/state")).unwrap();
        assert_eq!(set(blk(6, true)), rsp(6, R::OperationFailed, Some(21)));

        // A write that fails: operation-failed with its errno (ENOSPC).
        std::fs::create_dir_all(d.join("memory/memory7")).unwrap();
        std::os::unix::fs::symlink("/dev/full", d.join("memory/memory7/state")).unwrap();
        assert_eq!(set(blk(7, true)), rsp(7, R::OperationFailed, Some(28)));

        // The memory directory itself missing, or not a directory.
        let none = SysfsRoots {
            cpu: String::new(),
            memory: format!("{}/nomem", d.display()),
        };
        assert_eq!(
            none.set_memory_block(&blk(0, true)),
            rsp(0, R::OperationNotSupported, Some(2))
        );
        let file = SysfsRoots {
            cpu: String::new(),
            memory: format!("{}/memory/memory5", d.display()),
        };
        assert_eq!(
            file.set_memory_block(&blk(0, true)),
            rsp(0, R::Success, Some(20))
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
