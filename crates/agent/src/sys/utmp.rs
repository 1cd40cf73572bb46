//! Logged-in users for guest-get-users, read straight from the utmp file that glibc's
//! `getutxent()` reads (`/var/run/utmp`, 384-byte `struct utmp` records on 64-bit
//! Linux), without glibc's process-global utmp cursor.

use std::path::Path;

use qga_proto::cmds::system::GuestUser;

/// glibc's `_PATH_UTMP`.
pub const UTMP_PATH: &str = "/var/run/utmp";

/// `sizeof(struct utmp)` with glibc on 64-bit Linux (32-bit `ut_tv`, `ut_session`).
pub const RECORD_SIZE: usize = 384;
const UT_TYPE: usize = 0;
const UT_USER: usize = 44;
const UT_TV_SEC: usize = 340;
const UT_TV_USEC: usize = 344;
/// `ut_type` of a login session.
pub const USER_PROCESS: i16 = 7;

/// The users of the utmp file at `path`; a missing or unreadable file means nobody is
/// logged in, as for `getutxent()`.
pub fn read_users(path: &Path) -> Vec<GuestUser> {
    std::fs::read(path).map_or_else(|_| Vec::new(), |data| parse_users(&data))
}

fn i32_at(r: &[u8], off: usize) -> i32 {
    i32::from_ne_bytes([r[off], r[off + 1], r[off + 2], r[off + 3]])
}

/// qemu-ga's user list from utmp records: USER_PROCESS records only, one entry per user
/// name in order of first appearance, `login-time` the earliest `tv_sec + tv_usec / 1e6`.
/// A trailing partial record is ignored. The name is read as the C string at `ut_user`
/// (a full 32-byte name runs on into `ut_host`, as `g_strdup` would).
pub fn parse_users(data: &[u8]) -> Vec<GuestUser> {
    let mut out: Vec<GuestUser> = Vec::new();
    for r in data.chunks_exact(RECORD_SIZE) {
        if i16::from_ne_bytes([r[UT_TYPE], r[UT_TYPE + 1]]) != USER_PROCESS {
            continue;
        }
        let name = &r[UT_USER..];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        let login = f64::from(i32_at(r, UT_TV_SEC)) + f64::from(i32_at(r, UT_TV_USEC)) / 1e6;
        let name = String::from_utf8_lossy(name);
        match out.iter_mut().find(|u| u.user == name) {
            Some(u) => {
                if login < u.login_time {
                    u.login_time = login;
                }
            }
            None => out.push(GuestUser {
                user: name.into_owned(),
                login_time: login,
                domain: None,
            }),
        }
    }
    out
}

/// Encodes one record (for fixtures and tests).
pub fn record(ut_type: i16, user: &[u8], tv_sec: i32, tv_usec: i32) -> [u8; RECORD_SIZE] {
    let mut r = [0u8; RECORD_SIZE];
    r[UT_TYPE..UT_TYPE + 2].copy_from_slice(&ut_type.to_ne_bytes());
    let n = user.len().min(RECORD_SIZE - UT_USER);
    r[UT_USER..UT_USER + n].copy_from_slice(&user[..n]);
    r[UT_TV_SEC..UT_TV_SEC + 4].copy_from_slice(&tv_sec.to_ne_bytes());
    r[UT_TV_USEC..UT_TV_USEC + 4].copy_from_slice(&tv_usec.to_ne_bytes());
    r
}
