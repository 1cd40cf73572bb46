//! guest-file-read replies decoded as they arrive. Both agents send
//! `{"return": {"count": N, "buf-b64": "...", "eof": B}}` and a newline; in that layout
//! the base64 is decoded and checked against the expected file content group by group
//! while the rest of the reply is still in the socket, the way the "limit" measurement
//! overlaps the two sides. Any other reply (another layout, an error) is collected
//! whole and goes through the JSON parser.

use qga_proto::Value;

use crate::b64;
use crate::client;

const HEAD: &[u8] = br#"{"return": {"count": "#;
const MID: &[u8] = br#", "buf-b64": ""#;

/// Where in the current reply the bytes received so far end.
enum State {
    /// Before the base64: the bytes so far are in `line`.
    Head,
    /// Inside the base64 of a reply announcing `count` bytes.
    Body { count: usize },
    /// After the closing quote: the rest of the line is in `line`.
    Tail { count: usize },
    /// Not the expected layout: the whole line is collected in `line`.
    Other,
}

/// Checks a stream of guest-file-read replies against `data`, in order.
pub struct ReadReplies<'d> {
    data: &'d [u8],
    /// Bytes of `data` checked so far.
    pub off: usize,
    state: State,
    line: Vec<u8>,
    /// Base64 characters received but not yet a whole group of four.
    carry: Vec<u8>,
    /// Bytes of the current reply decoded so far.
    got: usize,
    out: Vec<u8>,
    /// Replies completed so far.
    completed: usize,
}

impl<'d> ReadReplies<'d> {
    /// Expecting the replies to read `data` from its start.
    pub fn new(data: &'d [u8]) -> Self {
        ReadReplies {
            data,
            off: 0,
            state: State::Head,
            line: Vec::new(),
            carry: Vec::new(),
            got: 0,
            out: Vec::new(),
            completed: 0,
        }
    }

    /// Takes the next received bytes; returns how many replies they completed.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<usize, String> {
        let before = self.completed;
        while !bytes.is_empty() {
            match self.state {
                State::Head | State::Other => {
                    let nl = client::find_byte(bytes, b'\n');
                    let take = nl.map_or(bytes.len(), |i| i + 1);
                    self.line.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if matches!(self.state, State::Head) {
                        if let Some(rest) = self.enter_body()? {
                            // The start of the base64 came with the head.
                            self.body(&rest)?;
                            continue;
                        }
                    }
                    if nl.is_some() {
                        self.whole_line()?;
                    }
                }
                State::Body { .. } => {
                    let quote = client::find_byte(bytes, b'"');
                    let take = quote.unwrap_or(bytes.len());
                    self.body(&bytes[..take])?;
                    if let (Some(q), State::Body { count }) = (quote, &self.state) {
                        self.state = State::Tail { count: *count };
                        self.line.clear();
                        bytes = &bytes[q..];
                    } else {
                        bytes = &[];
                    }
                }
                State::Tail { count } => {
                    let nl = client::find_byte(bytes, b'\n');
                    let take = nl.map_or(bytes.len(), |i| i + 1);
                    self.line.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if nl.is_some() {
                        self.finish_tail(count)?;
                    }
                }
            }
        }
        Ok(self.completed - before)
    }

    /// In `Head`: once the line holds the part before the base64, moves to `Body`
    /// and returns the base64 characters that came after it.
    fn enter_body(&mut self) -> Result<Option<Vec<u8>>, String> {
        let n = self.line.len().min(HEAD.len());
        if self.line[..n] != HEAD[..n] {
            self.state = State::Other;
            return Ok(None);
        }
        let rest = &self.line[n..];
        let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        let after = &rest[digits..];
        if after.len() < MID.len() {
            if after != &MID[..after.len()] {
                self.state = State::Other;
            }
            return Ok(None);
        }
        if &after[..MID.len()] != MID || digits == 0 {
            self.state = State::Other;
            return Ok(None);
        }
        let count = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or("bad count in guest-file-read reply")?;
        let body = after[MID.len()..].to_vec();
        self.state = State::Body { count };
        self.got = 0;
        self.carry.clear();
        self.line.clear();
        // The closing quote may be in what came already.
        Ok(Some(body))
    }

    /// Base64 characters of the current reply (no quote among them, except that
    /// `rest` handed over by `enter_body` may hold the quote and the tail).
    fn body(&mut self, text: &[u8]) -> Result<(), String> {
        if let Some(q) = client::find_byte(text, b'"') {
            // From enter_body: the whole base64 and more came with the head.
            let (b, tail) = text.split_at(q);
            self.decode(b)?;
            let State::Body { count } = self.state else {
                return Ok(());
            };
            self.state = State::Tail { count };
            self.line.clear();
            return match client::find_byte(tail, b'\n') {
                Some(nl) => {
                    self.line.extend_from_slice(&tail[..=nl]);
                    if nl + 1 != tail.len() {
                        return Err("data after a guest-file-read reply in its own read".into());
                    }
                    self.finish_tail(count)
                }
                None => {
                    self.line.extend_from_slice(tail);
                    Ok(())
                }
            };
        }
        self.decode(text)
    }

    /// Decodes whole groups of four (keeping a partial group for later) and checks
    /// them against the expected data.
    fn decode(&mut self, mut text: &[u8]) -> Result<(), String> {
        if !self.carry.is_empty() {
            let need = (4 - self.carry.len()).min(text.len());
            self.carry.extend_from_slice(&text[..need]);
            text = &text[need..];
            if self.carry.len() < 4 {
                return Ok(());
            }
            let group = std::mem::take(&mut self.carry);
            self.check(&group)?;
        }
        let whole = text.len() / 4 * 4;
        self.check(&text[..whole])?;
        self.carry.extend_from_slice(&text[whole..]);
        Ok(())
    }

    fn check(&mut self, groups: &[u8]) -> Result<(), String> {
        b64::decode_into(groups, &mut self.out)?;
        let at = self.off + self.got;
        if self.data.get(at..at + self.out.len()) != Some(&self.out[..]) {
            return Err(format!(
                "guest-file-read returned wrong data at offset {at}"
            ));
        }
        self.got += self.out.len();
        Ok(())
    }

    /// The end of a reply read in place: `line` holds `", "eof": B}}` and a newline.
    fn finish_tail(&mut self, count: usize) -> Result<(), String> {
        let ok = self.line == b"\", \"eof\": true}}\n" || self.line == b"\", \"eof\": false}}\n";
        if !ok || !self.carry.is_empty() {
            return Err(format!(
                "unexpected end of a guest-file-read reply: {}",
                String::from_utf8_lossy(&self.line)
            ));
        }
        self.complete(count)
    }

    /// The current reply is over: it must have carried `count` bytes.
    fn complete(&mut self, count: usize) -> Result<(), String> {
        if self.got != count {
            return Err(format!(
                "guest-file-read said {count} bytes, sent {}",
                self.got
            ));
        }
        self.off += count;
        self.state = State::Head;
        self.line.clear();
        self.completed += 1;
        Ok(())
    }

    /// A reply in another layout, collected whole in `line`.
    fn whole_line(&mut self) -> Result<(), String> {
        let mut s = qga_proto::json::Streamer::with_token_limit(1 << 40);
        let mut msg = None;
        s.feed(&self.line, &mut |m| {
            msg.get_or_insert(m);
        });
        let reply = msg
            .ok_or("incomplete guest-file-read reply")?
            .map_err(|e| format!("bad JSON from agent: {}", String::from_utf8_lossy(&e)))?;
        let ret = client::returned(reply)?;
        let d = client::dict(&ret)?;
        let count = client::int(d, "count")? as usize;
        let text = d
            .get("buf-b64")
            .and_then(Value::as_bytes)
            .ok_or("no buf-b64 in guest-file-read reply")?;
        self.got = 0;
        self.check(text)?;
        self.complete(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(data: &[u8], eof: bool) -> Vec<u8> {
        let mut r = format!(r#"{{"return": {{"count": {}, "buf-b64": ""#, data.len()).into_bytes();
        b64::encode_into(data, &mut r);
        r.extend_from_slice(format!(r#"", "eof": {eof}}}}}"#).as_bytes());
        r.push(b'\n');
        r
    }

    #[test]
    fn replies_split_anywhere_are_checked() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 5) as u8).collect();
        let mut stream = Vec::new();
        for c in data.chunks(301) {
            stream.extend(reply(c, false));
        }
        // Another layout in the middle (member order), through the parser.
        let mut all = stream.clone();
        all.extend_from_slice(b"{\"return\":{\"eof\":true,\"buf-b64\":\"\",\"count\":0}}\n");
        for cut in [1, 2, 3, 5, 7, 64, 333, all.len()] {
            let mut r = ReadReplies::new(&data);
            let mut done = 0;
            for piece in all.chunks(cut) {
                done += r.feed(piece).unwrap();
            }
            assert_eq!((done, r.off), (5, data.len()), "cut {cut}");
        }
        // Wrong content is caught.
        let mut bad = reply(&data[..300], false);
        bad[40] = if bad[40] == b'A' { b'B' } else { b'A' };
        assert!(ReadReplies::new(&data).feed(&bad).is_err());
        // An error reply is an error.
        let err = b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"handle '1' has not been found\"}}\n";
        let e = ReadReplies::new(&data).feed(err).unwrap_err();
        assert!(e.contains("has not been found"), "{e}");
    }
}
