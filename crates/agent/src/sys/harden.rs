//! `--harden`: applies a [`Hardening`] plan computed by [`crate::policy::hardening_plan`]
//! to this process, once, before any thread starts (capabilities are per thread and
//! inherited by new threads).
//!
//! 1. The ambient set is cleared and the inheritable set emptied.
//! 2. The effective and permitted sets keep only the plan's capabilities. Helper
//!    programs (shutdown, hwclock, chpasswd, the fsfreeze hook, guest-exec) are run as
//!    uid 0 and get the bounding set back at `execve`, exactly as they would from
//!    qemu-ga, so narrowing the agent's own sets never breaks them.
//! 3. When no enabled command runs a program (`lock_down`): the bounding set is narrowed
//!    too, `no_new_privs` is set, so nothing the agent could exec regains a capability,
//!    and a seccomp filter refuses (EPERM) the system calls no command of the agent
//!    needs: exec, ptrace and cross-process memory access, mounts and namespaces,
//!    modules, kexec, reboot, clock setting, uid/gid changes, keyrings, bpf and perf,
//!    io_uring, handle-based opens, and every call of another ABI (i386, x32). It is a
//!    deny list, not an allow list, on purpose: an allow list must track every system
//!    call glibc and the kernel interfaces may use on each distribution (NSS modules,
//!    vDSO fallbacks, new syscalls such as clone3 or statx), and a miss would break an
//!    allowed command, which hardening must never do.

use std::io;

use crate::policy::Hardening;

/// Capability bits (`1 << CAP_*`, linux/capability.h) used by the policy.
pub mod cap {
    /// `CAP_CHOWN`
    pub const CHOWN: u64 = 1 << 0;
    /// `CAP_DAC_OVERRIDE`
    pub const DAC_OVERRIDE: u64 = 1 << 1;
    /// `CAP_DAC_READ_SEARCH`
    pub const DAC_READ_SEARCH: u64 = 1 << 2;
    /// `CAP_FOWNER`
    pub const FOWNER: u64 = 1 << 3;
    /// `CAP_NET_BIND_SERVICE`
    pub const NET_BIND_SERVICE: u64 = 1 << 10;
    /// `CAP_SYS_ADMIN`
    pub const SYS_ADMIN: u64 = 1 << 21;
    /// `CAP_SYS_TIME`
    pub const SYS_TIME: u64 = 1 << 25;
}

/// Capability names by number, for log lines (linux/capability.h).
const CAP_NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// `cap_chown,cap_sys_admin` for a mask.
pub fn cap_names(mask: u64) -> String {
    let names: Vec<String> = (0..64)
        .filter(|b| mask & (1u64 << b) != 0)
        .map(|b| match CAP_NAMES.get(b) {
            Some(n) => format!("cap_{n}"),
            None => format!("cap_{b}"),
        })
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(",")
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;
/// `1 << CAP_SETPCAP`: needed to drop from the bounding set.
const CAP_SETPCAP: u64 = 1 << 8;

/// The calling thread's (effective, permitted, inheritable) sets.
fn capget() -> io::Result<(u64, u64, u64)> {
    let mut hdr = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: version 3 takes a header and an array of two data structs, both valid.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let join = |f: fn(&CapData) -> u32| u64::from(f(&data[0])) | (u64::from(f(&data[1])) << 32);
    Ok((
        join(|d| d.effective),
        join(|d| d.permitted),
        join(|d| d.inheritable),
    ))
}

fn capset(effective: u64, permitted: u64, inheritable: u64) -> io::Result<()> {
    let mut hdr = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let split = |m: u64| [m as u32, (m >> 32) as u32];
    let (e, p, i) = (split(effective), split(permitted), split(inheritable));
    let data = [0, 1].map(|k| CapData {
        effective: e[k],
        permitted: p[k],
        inheritable: i[k],
    });
    // SAFETY: version 3 takes a header and an array of two data structs, both valid.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn prctl(option: libc::c_int, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: the options used here take integer arguments only.
    if unsafe { libc::prctl(option, arg, 0 as libc::c_ulong, 0 as libc::c_ulong, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The highest capability number this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
        .min(63)
}

/// Applies `plan` to the calling thread (and so to every thread started later).
/// Returns a description for the log.
pub fn apply(plan: &Hardening) -> Result<String, String> {
    if plan.keep == u64::MAX {
        return Ok(
            "hardening: guest-file-* or guest-exec* is enabled (root-equivalent): \
                   capabilities kept"
                .into(),
        );
    }
    let err = |what: &str, e: io::Error| format!("{what}: {e}");
    let all = if last_cap() == 63 {
        u64::MAX
    } else {
        (1u64 << (last_cap() + 1)) - 1
    };
    let keep = plan.keep & all;
    let (effective, _, _) = capget().map_err(|e| err("capget", e))?;
    // Without CAP_SETPCAP (an agent not run as root) the bounding set cannot change;
    // no_new_privs then keeps anything it execs from gaining privileges.
    let narrow_bounding = plan.lock_down && effective & CAP_SETPCAP != 0;
    if narrow_bounding {
        for c in 0..=last_cap() {
            if keep & (1 << c) == 0 {
                prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(c))
                    .map_err(|e| err("narrowing the bounding set", e))?;
            }
        }
    }
    // EINVAL: a kernel without ambient capabilities (before 4.3) has none to clear.
    match prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
    ) {
        Err(e) if e.raw_os_error() != Some(libc::EINVAL) => {
            return Err(err("clearing the ambient set", e))
        }
        _ => {}
    }
    let (_, permitted, _) = capget().map_err(|e| err("capget", e))?;
    let keep = keep & permitted;
    capset(keep, keep, 0).map_err(|e| err("capset", e))?;
    let mut done = format!("hardening: capabilities kept: {}", cap_names(keep));
    if plan.lock_down {
        prctl(libc::PR_SET_NO_NEW_PRIVS, 1).map_err(|e| err("no_new_privs", e))?;
        match install_seccomp() {
            Ok(n) => done.push_str(&format!(
                "; bounding set {}, no_new_privs, seccomp filter denies {n} system calls",
                if narrow_bounding {
                    "narrowed"
                } else {
                    "unchanged (no cap_setpcap)"
                }
            )),
            Err(e) => return Err(err("seccomp", e)),
        }
    } else {
        done.push_str("; bounding set kept for helper programs");
    }
    let (effective, permitted, inheritable) = capget().map_err(|e| err("capget", e))?;
    if effective != keep || permitted != keep || inheritable != 0 {
        return Err(format!(
            "capabilities not as planned: effective {effective:#x}, permitted {permitted:#x}"
        ));
    }
    Ok(done)
}

/// System calls the agent never makes when no command runs a program.
pub fn denied_syscalls() -> Vec<libc::c_long> {
    use libc::*;
    #[allow(unused_mut)]
    let mut v = vec![
        SYS_execve,
        SYS_execveat,
        SYS_ptrace,
        SYS_process_vm_readv,
        SYS_process_vm_writev,
        SYS_pidfd_getfd,
        SYS_kexec_load,
        SYS_kexec_file_load,
        SYS_init_module,
        SYS_finit_module,
        SYS_delete_module,
        SYS_mount,
        SYS_umount2,
        SYS_pivot_root,
        SYS_chroot,
        SYS_open_tree,
        SYS_move_mount,
        SYS_fsopen,
        SYS_fsconfig,
        SYS_fsmount,
        SYS_fspick,
        SYS_mount_setattr,
        SYS_swapon,
        SYS_swapoff,
        SYS_reboot,
        SYS_settimeofday,
        SYS_clock_settime,
        SYS_clock_adjtime,
        SYS_adjtimex,
        SYS_sethostname,
        SYS_setdomainname,
        SYS_setuid,
        SYS_setgid,
        SYS_setreuid,
        SYS_setregid,
        SYS_setresuid,
        SYS_setresgid,
        SYS_setfsuid,
        SYS_setfsgid,
        SYS_setgroups,
        SYS_unshare,
        SYS_setns,
        SYS_bpf,
        SYS_perf_event_open,
        SYS_keyctl,
        SYS_add_key,
        SYS_request_key,
        SYS_open_by_handle_at,
        SYS_name_to_handle_at,
        SYS_userfaultfd,
        SYS_acct,
        SYS_quotactl,
        SYS_quotactl_fd,
        SYS_vhangup,
        SYS_io_uring_setup,
        SYS_io_uring_enter,
        SYS_io_uring_register,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([SYS_iopl, SYS_ioperm, SYS_uselib, SYS_modify_ldt]);
    v
}

/// `AUDIT_ARCH_*` of this build.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

#[repr(C)]
struct SockFprog {
    len: libc::c_ushort,
    filter: *const SockFilter,
}

/// `BPF_LD | BPF_W | BPF_ABS` (`BPF_LD` and `BPF_W` are 0).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
/// `offsetof(struct seccomp_data, nr)` and `arch`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

/// The filter: another ABI is denied, listed calls are denied, the rest allowed.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn program(denied: &[libc::c_long]) -> Vec<SockFilter> {
    let ins = |code, jt, jf, k| SockFilter { code, jt, jf, k };
    let deny = SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let mut p = vec![
        ins(BPF_LD_W_ABS, 0, 0, DATA_ARCH),
        ins(BPF_JMP_JEQ_K, 1, 0, AUDIT_ARCH),
        ins(BPF_RET_K, 0, 0, deny),
        ins(BPF_LD_W_ABS, 0, 0, DATA_NR),
    ];
    if cfg!(target_arch = "x86_64") {
        // x32 system calls carry __X32_SYSCALL_BIT.
        p.push(ins(BPF_JMP_JGE_K, 0, 1, 0x4000_0000));
        p.push(ins(BPF_RET_K, 0, 0, deny));
    }
    let n = denied.len();
    for (i, &nr) in denied.iter().enumerate() {
        // Jump over the remaining comparisons and the allow to the deny.
        let to_deny = u8::try_from(n - i).expect("short deny list");
        p.push(ins(BPF_JMP_JEQ_K, to_deny, 0, nr as u32));
    }
    p.push(ins(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW));
    p.push(ins(BPF_RET_K, 0, 0, deny));
    p
}

/// Installs the filter on every thread of the process; returns how many calls it denies.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn install_seccomp() -> io::Result<usize> {
    const SECCOMP_FILTER_FLAG_TSYNC: libc::c_ulong = 1;
    let denied = denied_syscalls();
    let prog = program(&denied);
    let fprog = SockFprog {
        len: libc::c_ushort::try_from(prog.len()).map_err(|_| io::ErrorKind::InvalidInput)?,
        filter: prog.as_ptr(),
    };
    // SAFETY: `fprog` points to `prog`, which outlives the call; the kernel copies it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
            SECCOMP_FILTER_FLAG_TSYNC,
            &fprog as *const SockFprog,
        )
    };
    match rc {
        0 => Ok(denied.len()),
        r if r > 0 => Err(io::Error::other(format!(
            "thread {r} could not take the filter"
        ))),
        _ => Err(io::Error::last_os_error()),
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn install_seccomp() -> io::Result<usize> {
    Err(io::Error::other("no seccomp filter for this architecture"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_names_follow_the_kernel_numbers() {
        assert_eq!(cap_names(0), "none");
        assert_eq!(
            cap_names(cap::SYS_ADMIN | cap::DAC_READ_SEARCH),
            "cap_dac_read_search,cap_sys_admin"
        );
        assert_eq!(cap_names(cap::SYS_TIME), "cap_sys_time");
        assert_eq!(cap_names(cap::NET_BIND_SERVICE), "cap_net_bind_service");
        assert_eq!(cap_names(cap::FOWNER | cap::CHOWN), "cap_chown,cap_fowner");
    }

    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[test]
    fn filter_program_jumps_land_on_deny() {
        let denied = denied_syscalls();
        let p = program(&denied);
        let deny = SECCOMP_RET_ERRNO | libc::EPERM as u32;
        assert_eq!(p.last().unwrap().k, deny);
        assert_eq!(p[p.len() - 2].k, SECCOMP_RET_ALLOW);
        // Interpret it for a few system calls.
        let run = |arch: u32, nr: u32| -> u32 {
            let mut pc = 0;
            let mut acc = 0;
            loop {
                let i = p[pc];
                match i.code {
                    BPF_LD_W_ABS => acc = if i.k == DATA_ARCH { arch } else { nr },
                    BPF_JMP_JEQ_K | BPF_JMP_JGE_K => {
                        let hit = if i.code == BPF_JMP_JEQ_K {
                            acc == i.k
                        } else {
                            acc >= i.k
                        };
                        pc += usize::from(if hit { i.jt } else { i.jf });
                    }
                    BPF_RET_K => return i.k,
                    _ => unreachable!(),
                }
                pc += 1;
            }
        };
        for &nr in &denied {
            assert_eq!(run(AUDIT_ARCH, nr as u32), deny, "{nr}");
        }
        for nr in [
            libc::SYS_read,
            libc::SYS_openat,
            libc::SYS_ioctl,
            libc::SYS_clone3,
        ] {
            assert_eq!(run(AUDIT_ARCH, nr as u32), SECCOMP_RET_ALLOW, "{nr}");
        }
        assert_eq!(run(0x4000_0003, libc::SYS_read as u32), deny, "i386");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(run(AUDIT_ARCH, 0x4000_0000), deny, "x32");
        }
    }
}
