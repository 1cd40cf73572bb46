//! json-lexer.c: the lexer's state machine, one byte at a time.

// Lexer states (json-lexer.c). 0 is the error state; token types are >= 100.
pub(super) const ERROR: u8 = 0;
pub(super) const IN_RECOVERY: u8 = 1;
const IN_DQ_STRING_ESCAPE: u8 = 2;
pub(super) const IN_DQ_STRING: u8 = 3;
const IN_SQ_STRING_ESCAPE: u8 = 4;
pub(super) const IN_SQ_STRING: u8 = 5;
const IN_ZERO: u8 = 6;
const IN_EXP_DIGITS: u8 = 7;
const IN_EXP_SIGN: u8 = 8;
const IN_EXP_E: u8 = 9;
const IN_MANTISSA_DIGITS: u8 = 10;
const IN_MANTISSA: u8 = 11;
const IN_DIGITS: u8 = 12;
const IN_SIGN: u8 = 13;
const IN_KEYWORD: u8 = 14;
const IN_WHITESPACE: u8 = 15;
pub(super) const IN_START: u8 = 16;

pub(super) const T_LCURLY: u8 = 100;
pub(super) const T_RCURLY: u8 = 101;
pub(super) const T_LSQUARE: u8 = 102;
pub(super) const T_RSQUARE: u8 = 103;
pub(super) const T_COLON: u8 = 104;
pub(super) const T_COMMA: u8 = 105;
pub(super) const T_INTEGER: u8 = 106;
pub(super) const T_FLOAT: u8 = 107;
pub(super) const T_KEYWORD: u8 = 108;
pub(super) const T_STRING: u8 = 109;
pub(super) const T_SKIP: u8 = 110;

/// The transition for `byte` in `state`: the new state and whether the byte is only
/// looked at (not consumed), as the table in json-lexer.c says.
pub(super) fn transition(state: u8, b: u8) -> (u8, bool) {
    // TERMINAL(x): any other byte ends the token and is looked at again.
    let terminal = |t: u8| (t, true);
    match state {
        IN_RECOVERY => match b {
            b'\t' => (IN_RECOVERY, false),
            0..=0x1F | 0xFE | 0xFF | b'[' | b']' | b'{' | b'}' | b':' | b',' => (IN_START, true),
            _ => (IN_RECOVERY, false),
        },
        IN_DQ_STRING_ESCAPE => match b {
            0x20..=0xFD => (IN_DQ_STRING, false),
            _ => (ERROR, false),
        },
        IN_DQ_STRING => match b {
            b'\\' => (IN_DQ_STRING_ESCAPE, false),
            b'"' => (T_STRING, false),
            0x20..=0xFD => (IN_DQ_STRING, false),
            _ => (ERROR, false),
        },
        IN_SQ_STRING_ESCAPE => match b {
            0x20..=0xFD => (IN_SQ_STRING, false),
            _ => (ERROR, false),
        },
        IN_SQ_STRING => match b {
            b'\\' => (IN_SQ_STRING_ESCAPE, false),
            b'\'' => (T_STRING, false),
            0x20..=0xFD => (IN_SQ_STRING, false),
            _ => (ERROR, false),
        },
        IN_ZERO => match b {
            b'0'..=b'9' => (ERROR, false),
            b'.' => (IN_MANTISSA, false),
            _ => terminal(T_INTEGER),
        },
        IN_EXP_DIGITS => match b {
            b'0'..=b'9' => (IN_EXP_DIGITS, false),
            _ => terminal(T_FLOAT),
        },
        IN_EXP_SIGN => match b {
            b'0'..=b'9' => (IN_EXP_DIGITS, false),
            _ => (ERROR, false),
        },
        IN_EXP_E => match b {
            b'-' | b'+' => (IN_EXP_SIGN, false),
            b'0'..=b'9' => (IN_EXP_DIGITS, false),
            _ => (ERROR, false),
        },
        IN_MANTISSA_DIGITS => match b {
            b'0'..=b'9' => (IN_MANTISSA_DIGITS, false),
            b'e' | b'E' => (IN_EXP_E, false),
            _ => terminal(T_FLOAT),
        },
        IN_MANTISSA => match b {
            b'0'..=b'9' => (IN_MANTISSA_DIGITS, false),
            _ => (ERROR, false),
        },
        IN_DIGITS => match b {
            b'0'..=b'9' => (IN_DIGITS, false),
            b'e' | b'E' => (IN_EXP_E, false),
            b'.' => (IN_MANTISSA, false),
            _ => terminal(T_INTEGER),
        },
        IN_SIGN => match b {
            b'0' => (IN_ZERO, false),
            b'1'..=b'9' => (IN_DIGITS, false),
            _ => (ERROR, false),
        },
        IN_KEYWORD => match b {
            b'a'..=b'z' => (IN_KEYWORD, false),
            _ => terminal(T_KEYWORD),
        },
        IN_WHITESPACE => match b {
            b' ' | b'\t' | b'\r' | b'\n' => (IN_WHITESPACE, false),
            _ => terminal(T_SKIP),
        },
        _ => match b {
            b'"' => (IN_DQ_STRING, false),
            b'\'' => (IN_SQ_STRING, false),
            b'0' => (IN_ZERO, false),
            b'1'..=b'9' => (IN_DIGITS, false),
            b'-' => (IN_SIGN, false),
            b'{' => (T_LCURLY, false),
            b'}' => (T_RCURLY, false),
            b'[' => (T_LSQUARE, false),
            b']' => (T_RSQUARE, false),
            b',' => (T_COMMA, false),
            b':' => (T_COLON, false),
            b'a'..=b'z' => (IN_KEYWORD, false),
            b' ' | b'\t' | b'\r' | b'\n' => (IN_WHITESPACE, false),
            _ => (ERROR, false),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::run;

    #[test]
    fn lexical_errors_and_recovery() {
        assert_eq!(
            run(b"@abc{}"),
            [r#"ERR "JSON parse error, stray '@'""#, "{}"]
        );
        assert_eq!(
            run(b"{\"execute\":\"guest-ping\", @}"),
            [
                r#"ERR "JSON parse error, stray '@'""#,
                r#"ERR "JSON parse error, expecting value""#
            ]
        );
        assert_eq!(run(b"\xff"), [r#"ERR "JSON parse error, stray '\uFFFD'""#]);
        assert_eq!(
            run(b"{\"a\xff{}"),
            [r#"ERR "JSON parse error, stray '\"a\uFFFD'""#, "{}"]
        );
        assert_eq!(run(b"\x01"), [r#"ERR "JSON parse error, stray '\u0001'""#]);
        assert_eq!(run(b"\x00"), [r#"ERR "JSON parse error, stray ''""#]);
        assert_eq!(run(b"\"a\n"), [r#"ERR "JSON parse error, stray '\"a\n'""#]);
        assert_eq!(run(b"01 "), [r#"ERR "JSON parse error, stray '01'""#]);
        // Any byte ends a number, even one that is then an error of its own.
        assert_eq!(
            run(b"1\xff"),
            [
                "1".to_string(),
                r#"ERR "JSON parse error, stray '\uFFFD'""#.to_string()
            ]
        );
    }
}
