//! Just enough JSON for `--json` output: one object per line.

use std::fmt::Write;

/// `s` as a JSON string literal, quotes included.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                // Control characters must be escaped; U+2028/9 too, so that
                // the output is also valid JavaScript.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Builds one JSON object, fields in the order added.
#[derive(Default)]
pub struct Object {
    body: String,
}

impl Object {
    pub fn new() -> Object {
        Object::default()
    }

    /// Adds `key` with an already-encoded JSON value.
    pub fn raw(mut self, key: &str, json: &str) -> Object {
        if !self.body.is_empty() {
            self.body.push(',');
        }
        self.body.push_str(&string(key));
        self.body.push(':');
        self.body.push_str(json);
        self
    }

    pub fn str(self, key: &str, value: &str) -> Object {
        self.raw(key, &string(value))
    }

    pub fn num(self, key: &str, value: impl Into<i128>) -> Object {
        self.raw(key, &value.into().to_string())
    }

    /// `key` with a number, or null for None.
    pub fn num_or_null<T: Into<i128>>(self, key: &str, value: Option<T>) -> Object {
        match value {
            Some(v) => self.num(key, v),
            None => self.raw(key, "null"),
        }
    }

    /// `key` with a string, or null for None.
    pub fn str_or_null(self, key: &str, value: Option<&str>) -> Object {
        match value {
            Some(v) => self.str(key, v),
            None => self.raw(key, "null"),
        }
    }

    pub fn bool(self, key: &str, value: bool) -> Object {
        self.raw(key, if value { "true" } else { "false" })
    }

    pub fn strs(self, key: &str, values: &[String]) -> Object {
        let items: Vec<String> = values.iter().map(|v| string(v)).collect();
        self.raw(key, &format!("[{}]", items.join(",")))
    }

    pub fn finish(self) -> String {
        format!("{{{}}}", self.body)
    }
}

/// Encoded JSON values as an array.
pub fn array(items: &[String]) -> String {
    format!("[{}]", items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(string("plain"), r#""plain""#);
        assert_eq!(string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(string("l1\nl2\tx\r"), r#""l1\nl2\tx\r""#);
        assert_eq!(string("\u{1}\u{1f}\u{7f}"), r#""\u0001\u001f\u007f""#);
        assert_eq!(string("é ☃ \u{2028}"), "\"é ☃ \\u2028\"");
        assert_eq!(string(""), r#""""#);
    }

    #[test]
    fn objects() {
        let o = Object::new()
            .str("id", "ab\"c")
            .num("n", 42u64)
            .num("neg", -1i32)
            .bool("ok", true)
            .strs("argv", &["ls".into(), "-l".into()])
            .raw("end", "null")
            .finish();
        assert_eq!(o, r#"{"id":"ab\"c","n":42,"neg":-1,"ok":true,"argv":["ls","-l"],"end":null}"#);
        assert_eq!(Object::new().finish(), "{}");
        assert_eq!(array(&["1".into(), "{}".into()]), "[1,{}]");
    }
}
