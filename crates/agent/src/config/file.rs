//! The config file side: qemu-ga's `config_load` (group `[general]` of a GLib key file,
//! read key by key in its order, with its error handling) and `config_dump` (`-D`).

use super::keyfile::{self, KeyFile};
use super::{parse_seconds, split_list, ConfigError, Diagnostic, Profile, Settings};

/// qemu-ga's `config_load`: read `[general]` from the key file at `path`. A missing file
/// is fine unless it was named with `-c`. Every key is read even after an error; GLib
/// keeps the first error and warns about each later one, as qemu-ga's shared `GError`
/// makes it do.
pub(super) fn load_config(
    s: &mut Settings,
    path: &str,
    required: bool,
    stderr: &mut Vec<Diagnostic>,
) -> Result<(), ConfigError> {
    let fail = |msg: &str| {
        ConfigError::critical(format!(
            "error loading configuration from path: {path}, {msg}"
        ))
    };
    let kf = match read_key_file(path) {
        Ok(kf) => kf,
        Err((true, _)) if !required => return Ok(()),
        Err((_, msg)) => return Err(fail(&msg)),
    };
    let mut first_error: Option<String> = None;
    let mut error = |msg: String| {
        if first_error.is_none() {
            first_error = Some(msg);
        } else {
            stderr.push(Diagnostic::GlibWarning(format!(
                "GError set over the top of a previous GError or uninitialized memory.\n\
                 This indicates a bug in someone's code. You must ensure an error is NULL \
                 before it's set.\nThe overwriting error message was: {msg}"
            )));
        }
    };
    const G: &str = "general";
    let boolean = |key: &str, error: &mut dyn FnMut(String)| match kf.get_boolean(G, key) {
        Some(Ok(b)) => Some(b),
        Some(Err(e)) => {
            error(e);
            Some(false)
        }
        None => None,
    };
    if let Some(b) = boolean("daemon", &mut error) {
        s.daemonize = b;
    }
    let string = |key: &str, error: &mut dyn FnMut(String)| match kf.get_string(G, key)? {
        Ok(v) => Some(v),
        Err(e) => {
            error(e);
            None
        }
    };
    s.method = string("method", &mut error).or(s.method.take());
    s.path = string("path", &mut error).or(s.path.take());
    s.logfile = string("logfile", &mut error).or(s.logfile.take());
    s.pidfile = string("pidfile", &mut error).or(s.pidfile.take());
    s.fsfreeze_hook = string("fsfreeze-hook", &mut error).or(s.fsfreeze_hook.take());
    s.statedir = string("statedir", &mut error).or(s.statedir.take());
    if boolean("verbose", &mut error) == Some(true) {
        s.verbose = true;
    }
    if let Some(b) = boolean("retry-path", &mut error) {
        s.retry_path = b;
    }
    if let Some(v) = string("block-rpcs", &mut error) {
        s.block_rpcs.extend(split_list(&v));
    }
    if let Some(v) = string("allow-rpcs", &mut error) {
        s.allow_rpcs.extend(split_list(&v));
    }
    // Extension keys come last, so qemu-ga's keys keep their error precedence.
    if let Some(v) = string("fsfreeze-timeout", &mut error) {
        match parse_seconds(&v) {
            Some(secs) => s.fsfreeze_timeout = Some(secs),
            None => error(keyfile::uninterpretable("fsfreeze-timeout")),
        }
    }
    if let Some(v) = string("profile", &mut error) {
        match Profile::from_name(&v) {
            Some(p) => s.profile = Some(p),
            None => error(keyfile::uninterpretable("profile")),
        }
    }
    if let Some(b) = boolean("harden", &mut error) {
        s.harden = b;
    }
    match first_error {
        Some(msg) => Err(fail(&msg)),
        None => Ok(()),
    }
}

/// `g_key_file_load_from_file`: the error is `(is ENOENT, GLib's message)`.
fn read_key_file(path: &str) -> Result<keyfile::KeyFile, (bool, String)> {
    use std::io::Read;
    let io = |e: std::io::Error| {
        let code = e.raw_os_error().unwrap_or(0);
        (code == libc::ENOENT, crate::error::strerror(code))
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    if !file.metadata().map_err(io)?.is_file() {
        return Err((false, "Not a regular file".into()));
    }
    let mut data = Vec::new();
    file.read_to_end(&mut data).map_err(io)?;
    KeyFile::parse(&data).map_err(|m| (false, m))
}

/// `--dump-conf`: qemu-ga's `config_dump` (a key file written by GLib); extension keys
/// follow, only when set, so the output is qemu-ga's byte for byte by default.
pub(super) fn dump(s: &Settings, method: &str, pidfile: &str, statedir: &str) -> String {
    let mut out = String::from("[general]\n");
    let mut put = |key: &str, value: &str| {
        out.push_str(&format!("{key}={}\n", keyfile::escape(value)));
    };
    put("daemon", if s.daemonize { "true" } else { "false" });
    put("method", method);
    if let Some(p) = &s.path {
        put("path", p);
    }
    if let Some(l) = &s.logfile {
        put("logfile", l);
    }
    put("pidfile", pidfile);
    if let Some(h) = &s.fsfreeze_hook {
        put("fsfreeze-hook", h);
    }
    put("statedir", statedir);
    put("verbose", if s.verbose { "true" } else { "false" });
    put("retry-path", if s.retry_path { "true" } else { "false" });
    put("block-rpcs", &s.block_rpcs.join(","));
    put("allow-rpcs", &s.allow_rpcs.join(","));
    if let Some(t) = s.fsfreeze_timeout.filter(|&t| t > 0) {
        put("fsfreeze-timeout", &t.to_string());
    }
    if let Some(p) = s.profile {
        put("profile", p.name());
    }
    if s.harden {
        put("harden", "true");
    }
    out
}
