//! The bare exec agent behind the exec limit: `qga-bench bare-agent -p SOCK` serves
//! guest-exec and guest-exec-status on a unix socket and does nothing else a real
//! agent must: one thread blocking in `read`, requests split at their closing brace
//! and searched for a command name (no JSON parser), the program started with
//! `posix_spawn` (std's `Command`, as the spawn-and-wait floor does) with stdio on
//! /dev/null, and a status answered with one `waitpid(WNOHANG)`. No state files, no
//! output capture, no checks.
//!
//! Run with the same client, in turns with both agents, its exec latency is what this
//! machine allows an agent that answers requests one at a time and sleeps between
//! them: the spawn, the child's run and its exit, plus the guest-exec request's trip in
//! and the trips of the polls that find the exit. It is a reference, not a bound: an
//! agent that spun on its socket instead of sleeping could answer polls sooner.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Serves one client connection after another on `sock`, until killed.
pub fn serve(sock: &Path) -> Result<(), String> {
    let listener =
        UnixListener::bind(sock).map_err(|e| format!("bare agent: {}: {e}", sock.display()))?;
    let mut children: HashMap<u32, Child> = HashMap::new();
    for stream in listener.incoming() {
        let stream = stream.map_err(|e| format!("bare agent: accept: {e}"))?;
        // A client that goes away ends its connection only.
        let _ = connection(stream, &mut children);
    }
    Ok(())
}

fn connection(mut s: UnixStream, children: &mut HashMap<u32, Child>) -> std::io::Result<()> {
    let mut buf = [0u8; 4096];
    let mut request = Vec::with_capacity(512);
    let mut split = Splitter::default();
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        for &b in &buf[..n] {
            request.push(b);
            if split.push(b) {
                let reply = answer(&request, children);
                s.write_all(reply.as_bytes())?;
                request.clear();
            }
        }
    }
}

/// Finds where a JSON object ends: a closing brace at depth 0, outside strings.
#[derive(Default)]
struct Splitter {
    depth: u32,
    in_string: bool,
    escaped: bool,
}

impl Splitter {
    /// Takes the next byte; true when it closes the object.
    fn push(&mut self, b: u8) -> bool {
        if self.in_string {
            match (self.escaped, b) {
                (true, _) => self.escaped = false,
                (false, b'\\') => self.escaped = true,
                (false, b'"') => self.in_string = false,
                _ => {}
            }
            return false;
        }
        match b {
            b'"' => self.in_string = true,
            b'{' => self.depth += 1,
            b'}' if self.depth > 0 => {
                self.depth -= 1;
                return self.depth == 0;
            }
            _ => {}
        }
        false
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The string value of `"key":"…"` (no escapes), or the digits of `"key":N`.
fn value<'a>(req: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let at = find(req, key)? + key.len();
    let rest = &req[at..];
    let rest = &rest[rest.iter().position(|&b| b == b':')? + 1..];
    let rest = &rest[rest.iter().position(|b| !b.is_ascii_whitespace())?..];
    if let Some(s) = rest.strip_prefix(b"\"") {
        return Some(&s[..s.iter().position(|&b| b == b'"')?]);
    }
    Some(&rest[..rest.iter().position(|b| !b.is_ascii_digit())?])
}

fn error(desc: &str) -> String {
    format!("{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"{desc}\"}}}}\n")
}

fn answer(req: &[u8], children: &mut HashMap<u32, Child>) -> String {
    if find(req, b"\"guest-exec-status\"").is_some() {
        let pid = value(req, b"\"pid\"")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<u32>().ok());
        let Some(child) = pid.and_then(|p| children.get_mut(&p)) else {
            return error("Invalid parameter 'pid'");
        };
        return match child.try_wait() {
            Ok(None) => "{\"return\": {\"exited\": false}}\n".into(),
            Ok(Some(status)) => {
                children.remove(&pid.unwrap_or_default());
                match (
                    status.code(),
                    std::os::unix::process::ExitStatusExt::signal(&status),
                ) {
                    (Some(code), _) => {
                        format!("{{\"return\": {{\"exitcode\": {code}, \"exited\": true}}}}\n")
                    }
                    (None, Some(sig)) => {
                        format!("{{\"return\": {{\"exited\": true, \"signal\": {sig}}}}}\n")
                    }
                    (None, None) => "{\"return\": {\"exited\": true}}\n".into(),
                }
            }
            Err(e) => error(&format!("waitpid: {e}")),
        };
    }
    if find(req, b"\"guest-exec\"").is_some() {
        let Some(path) = value(req, b"\"path\"").and_then(|v| std::str::from_utf8(v).ok()) else {
            return error("Parameter 'path' missing");
        };
        return match Command::new(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => {
                let pid = child.id();
                children.insert(pid, child);
                format!("{{\"return\": {{\"pid\": {pid}}}}}\n")
            }
            Err(e) => error(&format!("spawn: {e}")),
        };
    }
    if find(req, b"\"guest-ping\"").is_some() {
        return "{\"return\": {}}\n".into();
    }
    error("the bare agent knows guest-ping, guest-exec and guest-exec-status only")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_end_at_their_closing_brace_outside_strings() {
        let mut s = Splitter::default();
        let req = br#"{"execute":"x","arguments":{"path":"/a}\"}"}}"#;
        let ends: Vec<usize> = req
            .iter()
            .enumerate()
            .filter_map(|(i, &b)| s.push(b).then_some(i))
            .collect();
        assert_eq!(ends, vec![req.len() - 1]);
    }

    #[test]
    fn values_are_found() {
        let req = br#"{"execute":"guest-exec-status","arguments":{"pid": 123}}"#;
        assert_eq!(value(req, b"\"pid\""), Some(&b"123"[..]));
        let req = br#"{"execute":"guest-exec","arguments":{"path":"/bin/true"}}"#;
        assert_eq!(value(req, b"\"path\""), Some(&b"/bin/true"[..]));
    }

    #[test]
    fn a_child_is_started_polled_and_forgotten() {
        let mut children = HashMap::new();
        let r = answer(
            br#"{"execute":"guest-exec","arguments":{"path":"/bin/false"}}"#,
            &mut children,
        );
        let pid: u32 = r
            .trim_start_matches("{\"return\": {\"pid\": ")
            .trim_end_matches("}}\n")
            .parse()
            .unwrap();
        let status = format!(r#"{{"execute":"guest-exec-status","arguments":{{"pid":{pid}}}}}"#);
        let done = loop {
            let r = answer(status.as_bytes(), &mut children);
            if r.contains("true") {
                break r;
            }
            assert_eq!(r, "{\"return\": {\"exited\": false}}\n");
        };
        assert_eq!(done, "{\"return\": {\"exitcode\": 1, \"exited\": true}}\n");
        assert!(answer(status.as_bytes(), &mut children).contains("Invalid parameter"));
    }
}
