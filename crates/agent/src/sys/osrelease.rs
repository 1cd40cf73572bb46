//! os-release for guest-get-osinfo, read as qemu-ga does: the file must be valid UTF-8
//! (up to a NUL), is parsed as a GLib key file with `[os-release]` prepended (so any
//! line GLib rejects makes the whole file count as missing), values are taken raw
//! (`g_key_file_get_value`) and then cleaned by qemu-ga's `ga_osrelease_replace_special`.

use std::ffi::OsStr;
use std::path::Path;

use super::cscan::is_glib_space as is_space;

/// The fields of os-release that guest-get-osinfo reports, in qemu-ga's lookup order.
pub const KEYS: [&str; 7] = [
    "ID",
    "NAME",
    "PRETTY_NAME",
    "VERSION",
    "VERSION_ID",
    "VARIANT",
    "VARIANT_ID",
];

/// The group qemu-ga prepends and looks keys up in.
const GROUP: &[u8] = b"os-release";

/// Why a file gave no fields (qemu-ga logs this and carries on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The file could not be read.
    Read(String),
    /// Not valid UTF-8.
    NotUtf8,
    /// GLib's key-file parser rejected a line.
    Parse(String),
}

/// The values of [`KEYS`] (cleaned), or why there are none. `QGA_OS_RELEASE` when set
/// (`env_override`) is the only file tried; otherwise `/etc/os-release`, then
/// `/usr/lib/os-release`. Failures are reported to `log` with qemu-ga's wording.
pub fn os_release(
    env_override: Option<&OsStr>,
    mut log: impl FnMut(&str),
) -> Option<[Option<String>; 7]> {
    let mut try_file = |path: &Path| match parse_file(path) {
        Ok(v) => Some(v),
        Err(f) => {
            log(&match f {
                Failure::Read(msg) => format!("failed to read '{}', error: {msg}", path.display()),
                Failure::NotUtf8 => format!("file is not utf-8 encoded: {}", path.display()),
                Failure::Parse(msg) => {
                    format!("failed to parse file '{}', error: {msg}", path.display())
                }
            });
            None
        }
    };
    match env_override {
        Some(p) => try_file(Path::new(p)),
        None => try_file(Path::new("/etc/os-release"))
            .or_else(|| try_file(Path::new("/usr/lib/os-release"))),
    }
}

/// Reads and parses one os-release file.
pub fn parse_file(path: &Path) -> Result<[Option<String>; 7], Failure> {
    let data = std::fs::read(path).map_err(|e| Failure::Read(glib_read_error(path, &e)))?;
    parse(&data)
}

/// GLib's `g_file_get_contents` error text.
fn glib_read_error(path: &Path, e: &std::io::Error) -> String {
    let why = crate::error::strerror(e.raw_os_error().unwrap_or(0));
    format!(
        "Failed to open file \u{201c}{}\u{201d}: {why}",
        path.display()
    )
}

/// Parses os-release bytes: C-string semantics (stop at NUL), UTF-8 check, key file
/// parse, then the cleanup of each of [`KEYS`].
pub fn parse(data: &[u8]) -> Result<[Option<String>; 7], Failure> {
    let data = &data[..data.iter().position(|&b| b == 0).unwrap_or(data.len())];
    std::str::from_utf8(data).map_err(|_| Failure::NotUtf8)?;
    let pairs = keyfile_group(data)?;
    Ok(KEYS.map(|k| {
        // The last assignment wins, as in GLib's lookup table.
        pairs
            .iter()
            .rev()
            .find(|(key, _)| *key == k.as_bytes())
            .map(|(_, v)| {
                let v = replace_special(v);
                String::from_utf8_lossy(&v).into_owned()
            })
    }))
}

/// A key and its raw value.
type Pair<'a> = (&'a [u8], &'a [u8]);

/// The key/value pairs of group `os-release` of `"[os-release]\n" + data`, parsed with
/// the rules of GLib's `g_key_file_load_from_data` (2.74): lines split at `\n` with one
/// `\r` before it dropped, leading whitespace ignored, `#` and blank lines are comments,
/// `[name]` (trailing blanks allowed) switches group, `key=value` with the key's
/// trailing whitespace and the value's leading whitespace removed; anything else, an
/// invalid group or key name, or an `Encoding` other than UTF-8 fails the whole parse.
fn keyfile_group(data: &[u8]) -> Result<Vec<Pair<'_>>, Failure> {
    let mut pairs = Vec::new();
    let mut in_group = true;
    let mut lines = data.split(|&b| b == b'\n').peekable();
    while let Some(mut line) = lines.next() {
        let last = lines.peek().is_none();
        if !last {
            line = line.strip_suffix(b"\r").unwrap_or(line);
        }
        let start = line
            .iter()
            .position(|&b| !is_space(b))
            .unwrap_or(line.len());
        let l = &line[start..];
        if l.is_empty() || l[0] == b'#' {
            continue;
        }
        if is_group_line(l) {
            let end = l.iter().rposition(|&b| b == b']').unwrap_or(0);
            let name = &l[1..end];
            if name.is_empty()
                || name
                    .iter()
                    .any(|&b| b == b'[' || b == b']' || b.is_ascii_control())
            {
                return Err(Failure::Parse(format!(
                    "Invalid group name: {}",
                    String::from_utf8_lossy(name)
                )));
            }
            in_group = name == GROUP;
            continue;
        }
        let Some(eq) = l.iter().position(|&b| b == b'=').filter(|&i| i > 0) else {
            return Err(Failure::Parse(format!(
                "Key file contains line \u{201c}{}\u{201d} which is not a key-value pair, group, or comment",
                String::from_utf8_lossy(line)
            )));
        };
        let key_end = l[..eq]
            .iter()
            .rposition(|&b| !is_space(b))
            .map_or(0, |i| i + 1);
        let key = &l[..key_end];
        if !is_key_name(key) {
            return Err(Failure::Parse(format!(
                "Invalid key name: {}",
                String::from_utf8_lossy(key)
            )));
        }
        let rest = &l[eq + 1..];
        let value = &rest[rest
            .iter()
            .position(|&b| !is_space(b))
            .unwrap_or(rest.len())..];
        if in_group && key == b"Encoding" && !value.eq_ignore_ascii_case(b"UTF-8") {
            return Err(Failure::Parse(format!(
                "Key file contains unsupported encoding \u{201c}{}\u{201d}",
                String::from_utf8_lossy(value)
            )));
        }
        if in_group {
            pairs.push((key, value));
        }
    }
    Ok(pairs)
}

/// `g_key_file_line_is_group`: `[`, anything up to the first `]`, then only blanks.
fn is_group_line(l: &[u8]) -> bool {
    if l.first() != Some(&b'[') {
        return false;
    }
    match l.iter().position(|&b| b == b']') {
        Some(close) => l[close + 1..].iter().all(|&b| b == b' ' || b == b'\t'),
        None => false,
    }
}

/// `g_key_file_is_key_name`: a non-empty name without `=`, `[`, `]` and without a
/// leading or trailing space, optionally followed by `[locale]` of alphanumerics and
/// `-_.@`.
fn is_key_name(key: &[u8]) -> bool {
    let q = key
        .iter()
        .position(|&b| b == b'=' || b == b'[' || b == b']')
        .unwrap_or(key.len());
    if q == 0 || key[0] == b' ' || key[q - 1] == b' ' {
        return false;
    }
    let rest = &key[q..];
    if rest.is_empty() {
        return true;
    }
    if rest[0] != b'[' {
        return false;
    }
    let Ok(locale) = std::str::from_utf8(&rest[1..]) else {
        return false;
    };
    let n = locale
        .char_indices()
        .find(|&(_, c)| !(c.is_alphanumeric() || "-_.@".contains(c)))
        .map_or(locale.len(), |(i, _)| i);
    &locale[n..] == "]"
}

/// qemu-ga's `ga_osrelease_replace_special`, in place on a copy:
/// - not starting with `"`: cut at the first space or `;` (single quotes are kept);
/// - starting with `"`: everything up to the next unescaped `"`, with `\$ \' \" \\`
///   and backtick unescaped and any other backslash kept. Without a closing quote the
///   C code never writes a terminator, so the unshifted tail of the original stays
///   (`"abc` becomes `abcc`); that is reproduced.
pub fn replace_special(value: &[u8]) -> Vec<u8> {
    let mut v = value.to_vec();
    if v.first() != Some(&b'"') {
        if let Some(cut) = v.iter().position(|&b| b == b' ' || b == b';') {
            v.truncate(cut);
        }
        return v;
    }
    let (mut p2, mut p) = (0, 1);
    while p < v.len() {
        if v[p] == b'\\' {
            p += 1;
            if !matches!(v.get(p), Some(b'$' | b'\'' | b'"' | b'\\' | b'`')) {
                p -= 1;
            }
        } else if v[p] == b'"' {
            v.truncate(p2);
            return v;
        }
        v[p2] = v[p];
        p2 += 1;
        p += 1;
    }
    v
}
