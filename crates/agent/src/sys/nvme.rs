//! The NVMe SMART / health information log for guest-get-disks: an admin Get Log Page
//! (log 0x02, all namespaces, RAE bit set) through `NVME_IOCTL_ADMIN_CMD` on the disk's
//! device node, as qemu-ga's `get_nvme_smart`.

use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;

use qga_proto::cmds::storage::GuestNVMeSmart;

/// Size of the SMART log page.
pub const SMART_LOG_LEN: usize = 512;

/// `struct nvme_passthru_cmd` (linux/nvme_ioctl.h), a.k.a. `nvme_admin_cmd`.
#[repr(C)]
#[derive(Default)]
struct NvmePassthruCmd {
    opcode: u8,
    flags: u8,
    rsvd1: u16,
    nsid: u32,
    cdw2: u32,
    cdw3: u32,
    metadata: u64,
    addr: u64,
    metadata_len: u32,
    data_len: u32,
    cdw10: u32,
    cdw11: u32,
    cdw12: u32,
    cdw13: u32,
    cdw14: u32,
    cdw15: u32,
    timeout_ms: u32,
    result: u32,
}

/// `_IOWR('N', 0x41, struct nvme_admin_cmd)`.
const NVME_IOCTL_ADMIN_CMD: u64 = (3 << 30)
    | ((std::mem::size_of::<NvmePassthruCmd>() as u64) << 16)
    | ((b'N' as u64) << 8)
    | 0x41;
const NVME_ADM_CMD_GET_LOG_PAGE: u8 = 0x02;
const NVME_NSID_BROADCAST: u32 = 0xffff_ffff;
const NVME_LOG_SMART_INFO: u32 = 0x02;
/// Retain Asynchronous Event: reading the log does not clear pending events.
const RAE: u32 = 1 << 15;

/// Reads the SMART log of the controller behind `dev` (e.g. `/dev/nvme0n1`); `None`
/// when the node cannot be opened or the command fails (qemu-ga leaves `smart` out).
pub fn read_smart_log(dev: &str) -> Option<[u8; SMART_LOG_LEN]> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(dev)
        .ok()?;
    let mut log = [0u8; SMART_LOG_LEN];
    let numd = (SMART_LOG_LEN as u32 >> 2) - 1;
    let mut cmd = NvmePassthruCmd {
        opcode: NVME_ADM_CMD_GET_LOG_PAGE,
        nsid: NVME_NSID_BROADCAST,
        addr: log.as_mut_ptr() as u64,
        data_len: SMART_LOG_LEN as u32,
        cdw10: NVME_LOG_SMART_INFO | RAE | (numd << 16),
        ..Default::default()
    };
    // SAFETY: the fd is open; `cmd` is a correctly laid out nvme_passthru_cmd whose
    // `addr` points at `log`, a writable buffer of `data_len` bytes that outlives the
    // call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), NVME_IOCTL_ADMIN_CMD as _, &mut cmd) };
    (rc == 0).then_some(log)
}

fn le_u64(log: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&log[at..at + 8]);
    u64::from_le_bytes(b)
}

/// The GuestNVMeSmart members from a raw log page (NVMe base spec, Figure "SMART /
/// Health Information Log"; little-endian 128-bit counters split into lo/hi).
pub fn parse_smart_log(log: &[u8; SMART_LOG_LEN]) -> GuestNVMeSmart {
    let pair = |at: usize| (le_u64(log, at), le_u64(log, at + 8));
    let (data_units_read_lo, data_units_read_hi) = pair(32);
    let (data_units_written_lo, data_units_written_hi) = pair(48);
    let (host_read_commands_lo, host_read_commands_hi) = pair(64);
    let (host_write_commands_lo, host_write_commands_hi) = pair(80);
    let (controller_busy_time_lo, controller_busy_time_hi) = pair(96);
    let (power_cycles_lo, power_cycles_hi) = pair(112);
    let (power_on_hours_lo, power_on_hours_hi) = pair(128);
    let (unsafe_shutdowns_lo, unsafe_shutdowns_hi) = pair(144);
    let (media_errors_lo, media_errors_hi) = pair(160);
    let (number_of_error_log_entries_lo, number_of_error_log_entries_hi) = pair(176);
    GuestNVMeSmart {
        critical_warning: i64::from(log[0]),
        temperature: i64::from(u16::from_le_bytes([log[1], log[2]])),
        available_spare: i64::from(log[3]),
        available_spare_threshold: i64::from(log[4]),
        percentage_used: i64::from(log[5]),
        data_units_read_lo,
        data_units_read_hi,
        data_units_written_lo,
        data_units_written_hi,
        host_read_commands_lo,
        host_read_commands_hi,
        host_write_commands_lo,
        host_write_commands_hi,
        controller_busy_time_lo,
        controller_busy_time_hi,
        power_cycles_lo,
        power_cycles_hi,
        power_on_hours_lo,
        power_on_hours_hi,
        unsafe_shutdowns_lo,
        unsafe_shutdowns_hi,
        media_errors_lo,
        media_errors_hi,
        number_of_error_log_entries_lo,
        number_of_error_log_entries_hi,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_number_and_layout() {
        assert_eq!(std::mem::size_of::<NvmePassthruCmd>(), 72);
        assert_eq!(NVME_IOCTL_ADMIN_CMD, 0xC048_4E41);
        assert_eq!(NVME_LOG_SMART_INFO | RAE | (127 << 16), 0x007F_8002);
    }

    #[test]
    fn log_fields() {
        let mut log = [0u8; SMART_LOG_LEN];
        log[0] = 0x04;
        log[1..3].copy_from_slice(&310u16.to_le_bytes());
        log[3] = 100;
        log[4] = 10;
        log[5] = 3;
        log[32..40].copy_from_slice(&12345u64.to_le_bytes());
        log[40..48].copy_from_slice(&1u64.to_le_bytes());
        log[112..120].copy_from_slice(&42u64.to_le_bytes());
        log[176..184].copy_from_slice(&7u64.to_le_bytes());
        log[184..192].copy_from_slice(&u64::MAX.to_le_bytes());
        let s = parse_smart_log(&log);
        assert_eq!(
            (s.critical_warning, s.temperature, s.available_spare),
            (4, 310, 100)
        );
        assert_eq!((s.available_spare_threshold, s.percentage_used), (10, 3));
        assert_eq!((s.data_units_read_lo, s.data_units_read_hi), (12345, 1));
        assert_eq!(s.power_cycles_lo, 42);
        assert_eq!(
            (
                s.number_of_error_log_entries_lo,
                s.number_of_error_log_entries_hi
            ),
            (7, u64::MAX)
        );
        assert_eq!(read_smart_log("/nonexistent/nvme"), None);
    }
}
