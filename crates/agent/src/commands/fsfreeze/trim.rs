//! guest-fstrim: FITRIM on every mount, as qemu-ga does it.

use qga_proto::cmds::freeze::*;

use super::mount_list_error;
use crate::agent::Agent;
use crate::error::{strerror, Result};

/// guest-fstrim: FITRIM on every mount; per-mount failures are results, not errors.
pub fn fstrim(agent: &Agent, args: GuestFstrimArgs) -> Result<GuestFilesystemTrimResponse> {
    agent.log.audit("guest-fstrim called");
    let kernel = &agent.freeze.kernel;
    let mounts = kernel.mounts().map_err(|e| mount_list_error(&e))?;
    // C assigns the int64 to the u64 minlen, and the u64 results back to int64.
    let minlen = args.minimum.unwrap_or(0) as u64;
    let mut paths: Vec<GuestFilesystemTrimResult> = mounts
        .iter()
        .map(|m| {
            let mut r = GuestFilesystemTrimResult {
                path: m.dir.to_string_lossy().into_owned(),
                ..Default::default()
            };
            let trimmed = kernel
                .open_dir(&m.dir)
                .map_err(|e| format!("failed to open: {}", errno_text(&e)))
                .and_then(|dir| {
                    kernel
                        .trim(&dir, minlen)
                        .map_err(|e| match e.raw_os_error() {
                            Some(libc::ENOTTY | libc::EOPNOTSUPP) => "trim not supported".into(),
                            _ => format!("failed to trim: {}", errno_text(&e)),
                        })
                });
            match trimmed {
                Ok(t) => {
                    r.minimum = Some(t.minlen as i64);
                    r.trimmed = Some(t.len as i64);
                }
                Err(e) => r.error = Some(e),
            }
            r
        })
        .collect();
    // qemu-ga prepends each result.
    paths.reverse();
    Ok(GuestFilesystemTrimResponse { paths })
}

fn errno_text(e: &std::io::Error) -> String {
    strerror(e.raw_os_error().unwrap_or(0))
}
