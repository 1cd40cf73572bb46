//! The local time zone for guest-get-timezone, as GLib's `g_time_zone_new_local()`
//! (2.74, what qemu-ga links against) resolves it, evaluated with the C library:
//!
//! - `TZ` set: an ISO 8601 offset (`UTC`, `Z`, `+05:30`, `-8`, `5`) is a constant zone
//!   whose abbreviation is the `TZ` text itself; a POSIX rule string GLib accepts, or a
//!   TZif file (`:` stripped, relative to `TZDIR` or `/usr/share/zoneinfo`), is
//!   evaluated by `localtime_r`; anything else falls back to UTC (glibc would instead
//!   report the unparsable name, e.g. `Foo` for `Foo/Bar`).
//! - `TZ` unset: `/etc/localtime` via `localtime_r`, except that GLib ignores it when it
//!   is a regular file and neither `/var/db/zoneinfo` nor `/etc/timezone` exists (UTC).
//!
//! The decision is made once per `TZ` value, as GLib caches its local zone.

use std::ffi::{CStr, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How the zone is computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `localtime_r` (with `TZ` as it is).
    Libc,
    /// A constant offset with this abbreviation.
    Fixed(i64, String),
}

/// GLib's `parse_time`: `h`, `hh`, `hh[:]mm`, `hh[:]mm[:]ss`; hours up to 24, or in
/// RFC 8536 form (rule boundary times) up to 167 with an optional third digit.
fn parse_time(s: &[u8], rfc8536: bool) -> Option<i64> {
    let digit = |i: usize, max: u8| {
        s.get(i)
            .filter(|c| (b'0'..=max).contains(c))
            .map(|c| i64::from(c - b'0'))
    };
    let mut i = 0;
    let mut off = digit(i, b'9')? * 3600;
    i += 1;
    if i == s.len() {
        return Some(off);
    }
    if s[i] != b':' {
        off = off * 10 + digit(i, b'9')? * 3600;
        i += 1;
        if rfc8536 {
            if let Some(d) = digit(i, b'9') {
                off = off * 10 + d * 3600;
                i += 1;
            }
            if off > 167 * 3600 {
                return None;
            }
        } else if off > 24 * 3600 {
            return None;
        }
        if i == s.len() {
            return Some(off);
        }
    }
    if s.get(i) == Some(&b':') {
        i += 1;
    }
    off += digit(i, b'5')? * 600 + digit(i + 1, b'9')? * 60;
    i += 2;
    if i == s.len() {
        return Some(off);
    }
    if s.get(i) == Some(&b':') {
        i += 1;
    }
    off += digit(i, b'5')? * 10 + digit(i + 1, b'9')?;
    (i + 2 == s.len()).then_some(off)
}

/// GLib's `parse_constant_offset` for identifiers: seconds east of UTC.
pub fn constant_offset(s: &[u8]) -> Option<i64> {
    match s {
        b"UTC" | b"Z" => Some(0),
        [b'+', rest @ ..] => parse_time(rest, false),
        [b'-', rest @ ..] => parse_time(rest, false).map(|v| -v),
        [c, ..] if c.is_ascii_digit() => parse_time(s, false),
        _ => None,
    }
}

/// GLib's `set_tz_name`: 3+ letters, or `<...>` of 3+ alphanumerics, `+`, `-`.
fn tz_name(s: &[u8], i: &mut usize) -> bool {
    if s.get(*i) == Some(&b'<') {
        let start = *i + 1;
        let mut j = start;
        while s
            .get(j)
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'+')
        {
            j += 1;
        }
        if s.get(j) != Some(&b'>') || j - start < 3 {
            return false;
        }
        *i = j + 1;
    } else {
        let start = *i;
        while s.get(*i).is_some_and(u8::is_ascii_alphabetic) {
            *i += 1;
        }
        if *i - start < 3 {
            return false;
        }
    }
    true
}

/// GLib's `parse_offset`: the run of `+-:0-9` must be a constant offset.
fn tz_offset(s: &[u8], i: &mut usize) -> bool {
    let start = *i;
    while s
        .get(*i)
        .is_some_and(|&c| c == b'+' || c == b'-' || c == b':' || c.is_ascii_digit())
    {
        *i += 1;
    }
    constant_offset(&s[start..*i]).is_some()
}

/// GLib's `parse_tz_boundary`: `Mm.w.d`, `Jn` or `n`, then optionally `/time`.
fn tz_boundary(b: &[u8]) -> bool {
    let mut i;
    match b.first() {
        Some(b'M') => {
            let d = |i: usize, lo: u8, hi: u8| b.get(i).is_some_and(|c| (lo..=hi).contains(c));
            if !d(1, b'0', b'9') {
                return false;
            }
            let first = b[1];
            i = 2;
            if (first == b'1' && d(2, b'0', b'2')) || (first == b'0' && d(2, b'0', b'9')) {
                i = 3;
            }
            let month_zero = first == b'0' && (i == 2 || b[2] == b'0');
            if b.get(i) != Some(&b'.') || month_zero || !d(i + 1, b'1', b'5') {
                return false;
            }
            if b.get(i + 2) != Some(&b'.') || !d(i + 3, b'0', b'6') {
                return false;
            }
            i += 4;
        }
        Some(c) if *c == b'J' || c.is_ascii_digit() => {
            i = usize::from(*c == b'J');
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            let day: u32 = std::str::from_utf8(&b[start..i])
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(u32::MAX);
            let min = u32::from(*c == b'J');
            if !(min..=365).contains(&day) {
                return false;
            }
        }
        _ => return false,
    }
    match b.get(i) {
        Some(b'/') => parse_time(&b[i + 1..], true).is_some(),
        None => true,
        Some(_) => false,
    }
}

/// Whether GLib's `rules_from_identifier` accepts `s` on Unix: `std offset` alone, or
/// `std offset dst [offset],start[/time],end[/time]`.
pub fn posix_rules_valid(s: &[u8]) -> bool {
    let mut i = 0;
    if !tz_name(s, &mut i) || !tz_offset(s, &mut i) {
        return false;
    }
    if i == s.len() {
        return true;
    }
    if !tz_name(s, &mut i) {
        return false;
    }
    tz_offset(s, &mut i);
    if s.get(i) != Some(&b',') {
        return false;
    }
    let rest = &s[i + 1..];
    let mut parts = rest.splitn(3, |&c| c == b',');
    let (Some(start), Some(end)) = (parts.next(), parts.next()) else {
        return false;
    };
    tz_boundary(start) && tz_boundary(end)
}

/// Whether `path` starts with the TZif magic.
fn is_tzif(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| &magic == b"TZif")
}

/// Decides how GLib would compute the zone for this `TZ` value.
pub fn resolve(tz: Option<&OsStr>) -> Source {
    let utc = || Source::Fixed(0, "UTC".into());
    match tz {
        Some(tz) => {
            let s = tz.as_bytes();
            if let Some(off) = constant_offset(s) {
                return Source::Fixed(off, String::from_utf8_lossy(s).into_owned());
            }
            if posix_rules_valid(s) {
                return Source::Libc;
            }
            let id = Path::new(OsStr::from_bytes(s.strip_prefix(b":").unwrap_or(s)));
            let file = if id.is_absolute() {
                id.to_path_buf()
            } else {
                let dir = std::env::var_os("TZDIR").unwrap_or_else(|| "/usr/share/zoneinfo".into());
                PathBuf::from(dir).join(id)
            };
            if is_tzif(&file) {
                Source::Libc
            } else {
                utc()
            }
        }
        None => match std::fs::read_link("/etc/localtime") {
            Ok(_) => Source::Libc,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                if Path::new("/var/db/zoneinfo").is_file() || Path::new("/etc/timezone").is_file() {
                    Source::Libc
                } else {
                    utc()
                }
            }
            Err(_) => utc(),
        },
    }
}

/// (seconds east of UTC, abbreviation) now, from `localtime_r`.
fn libc_zone() -> Option<(i64, Option<String>)> {
    extern "C" {
        fn tzset();
    }
    // SAFETY: time(NULL) has no preconditions.
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    // SAFETY: tm is plain old data; all-zero is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: tzset only reads the environment; localtime_r writes into `tm`, which we
    // own, and leaves tm_zone pointing to static storage of the C library.
    unsafe {
        tzset();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return None;
        }
        let zone = (!tm.tm_zone.is_null())
            .then(|| CStr::from_ptr(tm.tm_zone).to_string_lossy().into_owned());
        Some((tm.tm_gmtoff, zone))
    }
}

/// The local zone now: (seconds east of UTC, abbreviation).
pub fn local_timezone() -> Option<(i64, Option<String>)> {
    static CACHE: Mutex<Option<(Option<OsString>, Source)>> = Mutex::new(None);
    let tz = std::env::var_os("TZ");
    let source = {
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        match &*cache {
            Some((key, src)) if *key == tz => src.clone(),
            _ => {
                let src = resolve(tz.as_deref());
                *cache = Some((tz, src.clone()));
                src
            }
        }
    };
    match source {
        Source::Fixed(off, abbrev) => Some((off, Some(abbrev))),
        Source::Libc => libc_zone(),
    }
}
