//! Output building blocks: an insertion-ordered JSON writer for `--json`, lookups
//! into reply values, aligned tables, and dates.

use qga_proto::{Dict, Value};

/// Writes `v` as compact JSON, members in the order they were received or inserted
/// (the agent's own order for replies), ASCII only.
pub fn to_json(v: &Value) -> String {
    let mut out = Vec::new();
    write(v, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn write(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        Value::Dict(d) => {
            out.push(b'{');
            for (i, (k, item)) in d.iter_inserted().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                qga_proto::value::write_json_string(k, out);
                out.push(b':');
                write(item, out);
            }
            out.push(b'}');
        }
        Value::Double(d) if !d.is_finite() => out.extend_from_slice(b"null"),
        scalar => scalar.write_json(out),
    }
}

/// Builds an object from pairs, in order.
pub fn obj(pairs: Vec<(&str, Value)>) -> Value {
    let mut d = Dict::new();
    for (k, v) in pairs {
        d.insert(k, v);
    }
    Value::Dict(d)
}

/// A string member.
pub fn s(v: &Value, k: &str) -> Option<String> {
    v.as_dict()?
        .get(k)?
        .as_bytes()
        .map(qga_proto::qapi::string_from_bytes)
}

/// An integer member (int64 or uint64).
pub fn int(v: &Value, k: &str) -> Option<i128> {
    match v.as_dict()?.get(k)? {
        Value::Int(i) => Some(i128::from(*i)),
        Value::UInt(u) => Some(i128::from(*u)),
        _ => None,
    }
}

/// A number member.
pub fn num(v: &Value, k: &str) -> Option<f64> {
    match v.as_dict()?.get(k)? {
        Value::Int(i) => Some(*i as f64),
        Value::UInt(u) => Some(*u as f64),
        Value::Double(d) => Some(*d),
        _ => None,
    }
}

/// A boolean member.
pub fn boolean(v: &Value, k: &str) -> Option<bool> {
    match v.as_dict()?.get(k)? {
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

/// An array member (empty when absent).
pub fn list<'v>(v: &'v Value, k: &str) -> &'v [Value] {
    match v.as_dict().and_then(|d| d.get(k)) {
        Some(Value::List(l)) => l,
        _ => &[],
    }
}

/// The elements of an array value.
pub fn items(v: &Value) -> &[Value] {
    match v {
        Value::List(l) => l,
        _ => &[],
    }
}

/// An aligned table: columns separated by two spaces, the last one unpadded. A cell
/// holding several lines continues on the following rows.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with a header row.
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        let height = cells
            .iter()
            .map(|c| c.lines().count().max(1))
            .max()
            .unwrap_or(1);
        for line in 0..height {
            self.rows.push(
                cells
                    .iter()
                    .map(|c| c.lines().nth(line).unwrap_or("").to_string())
                    .collect(),
            );
        }
    }

    /// The text, one line per row.
    pub fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut width = vec![0; cols];
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in &self.rows {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate() {
                if i + 1 < r.len() {
                    line.push_str(&format!("{c:<w$}  ", w = width[i]));
                } else {
                    line.push_str(c);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Words laid out in columns that fit `width` characters.
pub fn columns(words: &[String], width: usize, indent: usize) -> String {
    let w = words.iter().map(String::len).max().unwrap_or(0) + 2;
    let per_line = ((width - indent) / w).max(1);
    let mut out = String::new();
    for chunk in words.chunks(per_line) {
        let line: String = chunk.iter().map(|s| format!("{s:<w$}")).collect();
        out.push_str(&" ".repeat(indent));
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// UTC date and time of a Unix timestamp: `2024-05-01 12:34:56`.
pub fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_order_and_is_ascii() {
        let v = obj(vec![
            ("guest", Value::str("vm1")),
            ("ok", Value::Bool(true)),
            ("text", Value::str("é\n")),
            ("n", Value::List(vec![Value::Int(1), Value::Double(0.5)])),
        ]);
        assert_eq!(
            to_json(&v),
            r#"{"guest":"vm1","ok":true,"text":"\u00E9\n","n":[1,0.5]}"#
        );
    }

    #[test]
    fn tables_align_and_continue_cells() {
        let mut t = Table::new(&["IF", "MAC", "ADDRESSES"]);
        t.row(vec![
            "lo".into(),
            "00:00".into(),
            "127.0.0.1/8\n::1/128".into(),
        ]);
        t.row(vec!["eth0".into(), "".into(), "10.0.0.2/24".into()]);
        assert_eq!(
            t.render(),
            "IF    MAC    ADDRESSES\nlo    00:00  127.0.0.1/8\n             ::1/128\neth0         10.0.0.2/24\n"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
    }
}
