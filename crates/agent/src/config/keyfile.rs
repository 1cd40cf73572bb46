//! GLib key files (`GKeyFile`) as qemu-ga reads and writes its configuration: the same
//! line grammar, the same value escapes and the same error texts (GLib 2.74), so a file
//! qemu-ga accepts means the same here and a file it rejects fails with its message.
//!
//! Reading: `#` comments and blank lines, `[group]` headers (repeated groups merge),
//! `key = value` with whitespace around `=` ignored, the last duplicate key wins, values
//! keep trailing whitespace, a `\r` before `\n` is dropped. Writing: what
//! `g_key_file_set_string` stores, used by `--dump-conf`.

/// One group: its name and its `(key, raw value)` pairs in file order.
type Group = (Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

/// A parsed key file: groups in file order (a repeated header continues its group).
#[derive(Debug, Default)]
pub(crate) struct KeyFile {
    groups: Vec<Group>,
}

impl KeyFile {
    /// `g_key_file_load_from_data`: parses the whole file or returns GLib's message.
    pub fn parse(data: &[u8]) -> Result<Self, String> {
        let mut kf = KeyFile::default();
        let mut current: Option<usize> = None;
        let mut lines = data.split(|&b| b == b'\n').peekable();
        while let Some(mut line) = lines.next() {
            let last = lines.peek().is_none();
            if last && line.is_empty() {
                break;
            }
            // GLib drops one '\r' before each '\n' (not at the end of an unterminated line).
            if !last {
                if let Some(stripped) = line.strip_suffix(b"\r") {
                    line = stripped;
                }
            }
            kf.parse_line(line, &mut current)?;
        }
        Ok(kf)
    }

    fn parse_line(&mut self, line: &[u8], current: &mut Option<usize>) -> Result<(), String> {
        let start = line
            .iter()
            .position(|b| !is_space(*b))
            .unwrap_or(line.len());
        let text = &line[start..];
        if text.is_empty() || text[0] == b'#' {
            return Ok(());
        }
        if let Some(name) = group_header(text) {
            if name.is_empty() || name.iter().any(|&b| b == b'[' || b.is_ascii_control()) {
                return Err(format!("Invalid group name: {}", make_valid(name)));
            }
            let idx = match self.groups.iter().position(|(g, _)| g == name) {
                Some(i) => i,
                None => {
                    self.groups.push((name.to_vec(), Vec::new()));
                    self.groups.len() - 1
                }
            };
            *current = Some(idx);
            return Ok(());
        }
        let Some(eq) = text.iter().position(|&b| b == b'=').filter(|&i| i > 0) else {
            return Err(format!(
                "Key file contains line “{}” which is not a key-value pair, group, or comment",
                make_valid(line)
            ));
        };
        let Some(group) = *current else {
            return Err("Key file does not start with a group".into());
        };
        let key_end = text[..eq]
            .iter()
            .rposition(|b| !is_space(*b))
            .map_or(0, |i| i + 1);
        let key = &text[..key_end];
        if !is_key_name(key) {
            return Err(format!("Invalid key name: {}", make_valid(key)));
        }
        let value = &text[eq + 1..];
        let vstart = value
            .iter()
            .position(|b| !is_space(*b))
            .unwrap_or(value.len());
        let value = &value[vstart..];
        if group == 0 && key == b"Encoding" && !value.eq_ignore_ascii_case(b"UTF-8") {
            return Err(format!(
                "Key file contains unsupported encoding “{}”",
                make_valid(value)
            ));
        }
        self.groups[group].1.push((key.to_vec(), value.to_vec()));
        Ok(())
    }

    /// The raw value of `key` in `group` (`g_key_file_has_key` when `Some`).
    pub fn raw(&self, group: &str, key: &str) -> Option<&[u8]> {
        let (_, pairs) = self.groups.iter().find(|(g, _)| g == group.as_bytes())?;
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// `g_key_file_get_string` of a key that exists: UTF-8 check, then the escapes
    /// `\s \n \t \r \\`.
    pub fn get_string(&self, group: &str, key: &str) -> Option<Result<String, String>> {
        let raw = self.raw(group, key)?;
        let Ok(text) = std::str::from_utf8(raw) else {
            return Some(Err(format!(
                "Key file contains key “{key}” with value “{}” which is not UTF-8",
                make_valid(raw)
            )));
        };
        Some(unescape(text).ok_or_else(|| uninterpretable(key)))
    }

    /// `g_key_file_get_boolean` of a key that exists: `true`/`false`/`1`/`0`, trailing
    /// whitespace allowed.
    pub fn get_boolean(&self, group: &str, key: &str) -> Option<Result<bool, String>> {
        let raw = self.raw(group, key)?;
        let end = raw.iter().rposition(|b| !is_space(*b)).map_or(0, |i| i + 1);
        Some(match &raw[..end] {
            b"true" | b"1" => Ok(true),
            b"false" | b"0" => Ok(false),
            _ => Err(uninterpretable(key)),
        })
    }
}

/// `g_ascii_isspace`: Rust's `is_ascii_whitespace` plus vertical tab.
fn is_space(b: u8) -> bool {
    b.is_ascii_whitespace() || b == 0x0b
}

/// GLib's message for a value `get_string`/`get_boolean` cannot use.
pub(crate) fn uninterpretable(key: &str) -> String {
    format!("Key file contains key “{key}” which has a value that cannot be interpreted.")
}

/// `[name]` followed only by spaces and tabs: the name (up to the first `]`).
fn group_header(text: &[u8]) -> Option<&[u8]> {
    let rest = text.strip_prefix(b"[")?;
    let close = rest.iter().position(|&b| b == b']')?;
    rest[close + 1..]
        .iter()
        .all(|&b| b == b' ' || b == b'\t')
        .then_some(&rest[..close])
}

/// `g_key_file_is_key_name`: no `[`/`]` except a trailing `[locale]`, no space at
/// either end.
fn is_key_name(key: &[u8]) -> bool {
    let q = key
        .iter()
        .position(|&b| b == b'[' || b == b']')
        .unwrap_or(key.len());
    if q == 0 || key[0] == b' ' || key[q - 1] == b' ' {
        return false;
    }
    if q == key.len() {
        return true;
    }
    if key[q] != b'[' {
        return false;
    }
    let locale = String::from_utf8_lossy(&key[q + 1..]);
    let body_len = locale
        .chars()
        .take_while(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        .map(char::len_utf8)
        .sum::<usize>();
    &locale[body_len..] == "]"
}

/// GLib's value unescaping; `None` on an invalid escape or a trailing backslash.
fn unescape(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            's' => ' ',
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            '\\' => '\\',
            _ => return None,
        });
    }
    Some(out)
}

/// What `g_key_file_set_string` stores: leading blanks as `\s`/`\t`, newlines, carriage
/// returns and backslashes escaped everywhere.
pub(crate) fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut leading = true;
    for c in value.chars() {
        match c {
            ' ' if leading => out.push_str("\\s"),
            '\t' if leading => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\\' => {
                out.push_str("\\\\");
                leading = false;
            }
            c => {
                out.push(c);
                leading = false;
            }
        }
    }
    out
}

/// `g_utf8_make_valid`: every invalid byte becomes U+FFFD.
pub(crate) fn make_valid(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                out.push('\u{FFFD}');
                rest = &bad[1..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(text: &str, key: &str) -> Option<Result<String, String>> {
        KeyFile::parse(text.as_bytes())
            .unwrap()
            .get_string("general", key)
    }

    #[test]
    fn grammar() {
        let kf = KeyFile::parse(
            b"# c\n  \n\t[general]  \n  path   =  x  \n[other]\nstatedir=y\n[general]\nstatedir=z\r\nstatedir=w\r",
        )
        .unwrap();
        assert_eq!(kf.raw("general", "path"), Some(&b"x  "[..]));
        assert_eq!(kf.raw("general", "statedir"), Some(&b"w\r"[..]));
        assert_eq!(kf.raw("other", "statedir"), Some(&b"y"[..]));
        assert_eq!(kf.raw("general", "nope"), None);
        // Locale-suffixed and space-containing keys are valid but never what we look up.
        let kf = KeyFile::parse(b"[general]\npath[de]=x\na b = c\n").unwrap();
        assert_eq!(kf.raw("general", "path"), None);
        assert_eq!(kf.raw("general", "a b"), Some(&b"c"[..]));
        assert!(KeyFile::parse(b"").is_ok());
    }

    #[test]
    fn parse_errors_match_glib() {
        let err = |t: &[u8]| KeyFile::parse(t).unwrap_err();
        assert_eq!(
            err(b"[general]\nfoo\n"),
            "Key file contains line “foo” which is not a key-value pair, group, or comment"
        );
        assert_eq!(
            err(b"[general]\n=x\n"),
            "Key file contains line “=x” which is not a key-value pair, group, or comment"
        );
        assert_eq!(
            err(b"[general] x\n"),
            "Key file contains line “[general] x” which is not a key-value pair, group, or comment"
        );
        assert_eq!(
            err(b"\xff\n"),
            "Key file contains line “\u{FFFD}” which is not a key-value pair, group, or comment"
        );
        assert_eq!(err(b"[]\n"), "Invalid group name: ");
        assert_eq!(err(b"[a[b]\n"), "Invalid group name: a[b");
        assert_eq!(err(b"path=x\n"), "Key file does not start with a group");
        assert_eq!(err(b"[general]\npath[de=x\n"), "Invalid key name: path[de");
        assert_eq!(err(b"[general]\na [de]=x\n"), "Invalid key name: a [de]");
        assert_eq!(
            err(b"[general]\nEncoding=latin1\n"),
            "Key file contains unsupported encoding “latin1”"
        );
        assert!(KeyFile::parse(b"[general]\nEncoding=utf-8\n").is_ok());
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(
            get("[general]\np=\\s\\ta\\tb\\n\\r\\\\", "p"),
            Some(Ok(" \ta\tb\n\r\\".into()))
        );
        let bad =
            Err("Key file contains key “p” which has a value that cannot be interpreted.".into());
        assert_eq!(get("[general]\np=a\\q", "p"), Some(bad.clone()));
        assert_eq!(get("[general]\np=a\\", "p"), Some(bad.clone()));
        assert_eq!(get("[general]\np=a\\;b", "p"), Some(bad));
        let kf = KeyFile::parse(b"[general]\np=\xff\xfeab\n").unwrap();
        assert_eq!(
            kf.get_string("general", "p"),
            Some(Err(
                "Key file contains key “p” with value “\u{FFFD}\u{FFFD}ab” which is not UTF-8"
                    .into()
            ))
        );
    }

    #[test]
    fn booleans() {
        let kf =
            KeyFile::parse(b"[general]\na=true  \nb= 1\nc=0 x\nd=\ne=TRUE\nf=false\n").unwrap();
        assert_eq!(kf.get_boolean("general", "a"), Some(Ok(true)));
        assert_eq!(kf.get_boolean("general", "b"), Some(Ok(true)));
        assert_eq!(kf.get_boolean("general", "f"), Some(Ok(false)));
        for k in ["c", "d", "e"] {
            assert!(kf.get_boolean("general", k).unwrap().is_err(), "{k}");
        }
        assert_eq!(kf.get_boolean("general", "zz"), None);
    }

    #[test]
    fn escape_like_set_string() {
        assert_eq!(escape(" a\\b\tc "), "\\sa\\\\b\tc ");
        assert_eq!(escape("x\ny\rz"), "x\\ny\\rz");
        assert_eq!(escape("\tq"), "\\tq");
        assert_eq!(escape(" \t x"), "\\s\\t\\sx");
        assert_eq!(escape("\\ a"), "\\\\ a");
        assert_eq!(escape("\n a"), "\\n\\sa");
    }
}
