//! Whole-file read and atomic replace with GLib's semantics and error messages
//! (`g_file_get_contents`, `g_file_set_contents`), which qemu-ga's ssh key commands
//! put into their replies, e.g. `Failed to open file “<path>”: No such file or directory`.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::strerror;

fn errno(e: &std::io::Error) -> String {
    strerror(e.raw_os_error().unwrap_or(0))
}

/// The path as GLib displays it (`g_filename_display_name`: lossy UTF-8).
pub fn display(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Reads the whole file, as `g_file_get_contents`; the error is GLib's message.
pub fn get_contents(path: &Path) -> Result<Vec<u8>, String> {
    let name = display(path);
    let mut f = File::open(path)
        .map_err(|e| format!("Failed to open file \u{201C}{name}\u{201D}: {}", errno(&e)))?;
    let meta = f.metadata().map_err(|e| {
        format!(
            "Failed to get attributes of file \u{201C}{name}\u{201D}: fstat() failed: {}",
            errno(&e)
        )
    })?;
    // Regular files with a size are read in one go; anything else through stdio.
    let what = if meta.is_file() && meta.len() > 0 {
        "Failed to read from file"
    } else {
        "Error reading file"
    };
    let mut out = Vec::new();
    f.read_to_end(&mut out)
        .map_err(|e| format!("{what} \u{201C}{name}\u{201D}: {}", errno(&e)))?;
    Ok(out)
}

/// Replaces the file's contents atomically, as `g_file_set_contents`: a new file
/// `<path>.XXXXXX` (mode 0666 before umask) is written, synced and renamed over `path`.
pub fn set_contents(path: &Path, data: &[u8]) -> Result<(), String> {
    let (tmp, mut f) = create_temp(path)?;
    let tmp_name = display(&tmp);
    let result = (|| {
        f.write_all(data).map_err(|e| {
            format!(
                "Failed to write file \u{201C}{tmp_name}\u{201D}: write() failed: {}",
                errno(&e)
            )
        })?;
        f.sync_all().map_err(|e| {
            format!(
                "Failed to write file \u{201C}{tmp_name}\u{201D}: fsync() failed: {}",
                errno(&e)
            )
        })?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| {
            format!(
                "Failed to rename file \u{201C}{tmp_name}\u{201D} to \u{201C}{}\u{201D}: g_rename() failed: {}",
                display(path),
                errno(&e)
            )
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn create_temp(path: &Path) -> Result<(PathBuf, File), String> {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ (u64::from(std::process::id()) << 32);
    let mut last = None;
    for _ in 0..100 {
        let mut suffix = String::with_capacity(6);
        for _ in 0..6 {
            // xorshift: unpredictable enough for a temporary name opened with O_EXCL.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            suffix.push(CHARS[(seed % CHARS.len() as u64) as usize] as char);
        }
        let mut name = path.as_os_str().to_owned();
        name.push(".");
        name.push(&suffix);
        let tmp = PathBuf::from(name);
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some((tmp, e)),
            Err(e) => return Err(create_failed(&tmp, &e)),
        }
    }
    let (tmp, e) = last.expect("at least one attempt");
    Err(create_failed(&tmp, &e))
}

fn create_failed(tmp: &Path, e: &std::io::Error) -> String {
    format!(
        "Failed to create file \u{201C}{}\u{201D}: {}",
        display(tmp),
        errno(e)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::spawn_sync::testutil::tempdir;

    #[test]
    fn read_write_and_messages() {
        let d = tempdir("gfile");
        let p = d.join("f");
        assert_eq!(
            get_contents(&p),
            Err(format!(
                "Failed to open file \u{201C}{}\u{201D}: No such file or directory",
                p.display()
            ))
        );
        set_contents(&p, b"a\nb").unwrap();
        assert_eq!(get_contents(&p).unwrap(), b"a\nb");
        set_contents(&p, b"").unwrap();
        assert_eq!(get_contents(&p).unwrap(), b"");
        // Only the file itself is left: the temporary was renamed over it.
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        assert_eq!(
            get_contents(&d),
            Err(format!(
                "Error reading file \u{201C}{}\u{201D}: Is a directory",
                d.display()
            ))
        );
        let missing = d.join("no/f");
        let e = set_contents(&missing, b"x").unwrap_err();
        assert!(
            e.starts_with(&format!(
                "Failed to create file \u{201C}{}.",
                missing.display()
            )) && e.ends_with("\u{201D}: No such file or directory"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
