//! User lookup behind a trait (GLib's `g_unix_get_passwd_entry`, i.e. `getpwnam_r`),
//! so the ssh key commands can be tested on a temporary home for the current user,
//! as qemu-ga's own unit test does, without touching any real user's files.

use std::ffi::{CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::error::strerror;

/// The parts of a passwd entry the agent uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwd {
    /// Home directory.
    pub dir: PathBuf,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

/// Looks users up by name.
pub trait UserDb: Send + Sync {
    /// The entry for `name` (bytes as the OS sees them), or GLib's error message.
    fn lookup(&self, name: &[u8]) -> Result<Passwd, String>;
}

/// The system's user database.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemUsers;

impl UserDb for SystemUsers {
    fn lookup(&self, name: &[u8]) -> Result<Passwd, String> {
        // A name with a NUL cannot exist; getpwnam would see the part before it.
        let name =
            CString::new(name.split(|&b| b == 0).next().unwrap_or_default()).unwrap_or_default();
        let mut buf = vec![0u8; 1024];
        loop {
            // SAFETY: an all-zero passwd is a valid value (integers and null pointers).
            let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            // SAFETY: every pointer is valid for the call and `buf.len()` is its size;
            // the strings in `pwd` point into `buf`, which outlives their use below.
            let rc = unsafe {
                libc::getpwnam_r(
                    name.as_ptr(),
                    &mut pwd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut result,
                )
            };
            if rc == libc::ERANGE && buf.len() < (1 << 20) {
                buf.resize(buf.len() * 2, 0);
                continue;
            }
            if result.is_null() {
                // GLib reports "not found" (rc 0) as g_strerror(0): "Success".
                return Err(strerror(rc));
            }
            // SAFETY: on success pw_dir is a NUL-terminated string inside `buf`.
            let dir = unsafe { CStr::from_ptr(pwd.pw_dir) };
            return Ok(Passwd {
                dir: PathBuf::from(OsStr::from_bytes(dir.to_bytes())),
                uid: pwd.pw_uid,
                gid: pwd.pw_gid,
            });
        }
    }
}

/// The name of the user with id `uid`, if any.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 16384];
    // SAFETY: an all-zero passwd is a valid value (integers and null pointers).
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and `buf.len()` is its size.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success pw_name is a NUL-terminated string inside `buf`.
    let name = unsafe { CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// The bytes qemu-ga hands to the OS for a QAPI string: its JSON parser stores U+0000
/// as `C0 80` (modified UTF-8), so a "NUL" inside a name or key does not end it.
pub fn os_bytes(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len());
    for part in s.split('\0').enumerate() {
        if part.0 > 0 {
            v.extend_from_slice(&[0xC0, 0x80]);
        }
        v.extend_from_slice(part.1.as_bytes());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let root = SystemUsers.lookup(b"root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(
            SystemUsers.lookup(b"qga-no-such-user-xyz"),
            Err("Success".to_string())
        );
        assert_eq!(SystemUsers.lookup(b""), Err("Success".to_string()));
        assert_eq!(user_name(0).as_deref(), Some("root"));
    }

    #[test]
    fn nul_is_modified_utf8() {
        assert_eq!(os_bytes("a\0b"), b"a\xC0\x80b");
        assert_eq!(os_bytes("\0"), b"\xC0\x80");
        assert_eq!(os_bytes("plain"), b"plain");
    }
}
