//! The system clock behind a trait, so guest-set-time's validation and the exact
//! `settimeofday` arguments can be tested with a fake: setting the real clock is only
//! ever done inside a throwaway VM.

use std::io;

/// Something that can set the wall clock.
pub trait Clock: Send + Sync {
    /// `settimeofday(sec, usec)`, the arguments passed through unchanged (qemu-ga
    /// passes a negative `usec` for negative times, and the kernel rejects it).
    fn set_time(&self, sec: i64, usec: i64) -> io::Result<()>;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn set_time(&self, sec: i64, usec: i64) -> io::Result<()> {
        let tv = libc::timeval {
            tv_sec: sec as crate::sys::TimeT,
            tv_usec: usec as crate::sys::SusecondsT,
        };
        // SAFETY: `tv` is a valid timeval for the duration of the call; a null
        // timezone pointer is allowed.
        if unsafe { libc::settimeofday(&tv, std::ptr::null()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Whether `sec` fits `time_t` (qemu-ga's "year-2038" check; always true where
/// `time_t` has 64 bits).
pub fn fits_time_t(sec: i64) -> bool {
    std::mem::size_of::<crate::sys::TimeT>() >= 8 || i32::try_from(sec).is_ok()
}

/// The calendar year of `sec` in local time, as GLib's `g_date_set_time_t` computes it
/// (`localtime_r`, year truncated to GDate's 16 bits; 0 when `localtime_r` fails, like
/// the cleared GDate qemu-ga then checks), and the errno left behind.
///
/// qemu-ga reports "Invalid time" with `error_setg_errno(errno)`. errno is 0 on entry
/// (its JSON parser zeroes errno when it converts the `time` integer), so the suffix
/// is whatever `localtime_r` itself left: the first call in a process reads the zone
/// file, and without `/etc/localtime` that is ENOENT ("Invalid time: No such file or
/// directory", as qemu-ga 10.0.2 answers in the test VM), later calls leave 0.
pub fn local_year(sec: i64) -> (u32, i32) {
    let t = sec as crate::sys::TimeT;
    // SAFETY: an all-zero `tm` is a valid value (plain integers and a null pointer).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: __errno_location returns this thread's errno slot, valid for writes.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: both pointers are valid for the call; localtime_r writes only into `tm`.
    let ok = !unsafe { libc::localtime_r(&t, &mut tm) }.is_null();
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    if !ok {
        return (0, errno);
    }
    ((i64::from(tm.tm_year) + 1900) as u32 & 0xffff, errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn years_in_local_time() {
        // Far enough from new year that any time zone agrees.
        let year = |s| local_year(s).0;
        assert_eq!(year(86400 * 2), 1970);
        assert_eq!(year(-86400 * 2), 1969);
        assert_eq!(year(1_700_000_000), 2023);
        assert_eq!(year(3_155_760_000 + 86400 * 2), 2070); // 2070-01-03
                                                           // After the zone is loaded, nothing is left in errno.
        assert_eq!(local_year(0).1, 0);
        assert!(fits_time_t(i64::MAX / 1_000_000_000));
    }
}
