//! Small libc queries about the host: host name, local time zone, uname, load average.

use std::io;

/// `gethostname()` into a buffer of `sysconf(_SC_HOST_NAME_MAX)` bytes (255 when
/// unknown), as qemu-ga calls it: a name that does not fit fails with ENAMETOOLONG.
pub fn host_name() -> io::Result<Vec<u8>> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let max = unsafe { libc::sysconf(libc::_SC_HOST_NAME_MAX) };
    let len = usize::try_from(max).unwrap_or(255);
    let mut buf = vec![0u8; len + 1];
    // SAFETY: `buf` has room for `len` bytes plus a terminating NUL that stays 0.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = buf.iter().position(|&b| b == 0).unwrap_or(len);
    buf.truncate(n);
    Ok(buf)
}

/// `uname()`: (release, version, machine).
pub fn uname() -> io::Result<(String, String, String)> {
    // SAFETY: utsname is plain old data; all-zero is a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid out-parameter.
    if unsafe { libc::uname(&mut u) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Ok((field(&u.release), field(&u.version), field(&u.machine)))
}

/// `getloadavg()`: the 1, 5 and 15 minute load averages.
pub fn load_average() -> io::Result<[f64; 3]> {
    let mut avg = [0f64; 3];
    // SAFETY: `avg` has room for the 3 values asked for.
    if unsafe { libc::getloadavg(avg.as_mut_ptr(), 3) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(avg)
}
