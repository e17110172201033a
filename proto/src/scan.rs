//! A validating JSON scanner for frame envelopes: one pass over the bytes,
//! no allocation, no tree.
//!
//! It accepts exactly what `serde_json::from_str::<IgnoredAny>` accepts (the
//! grammar of RFC 8259 with JSON whitespace, no nesting limit, escapes
//! checked for form but not for surrogate pairing, no trailing characters),
//! and hands out every top-level key and the raw text of its value. The
//! strings of keys the rules compare are unescaped by serde_json itself, so
//! a key serde_json would refuse (a lone surrogate) is refused here too.
//! `proto/tests/scan.rs` checks the agreement on generated and mutated text.
//!
//! Skipping is where the time goes: strings are scanned eight bytes at a
//! time (the word-at-a-time test serde_json uses), containers without
//! recursion, with their kinds kept one bit per level.

use std::borrow::Cow;

/// A cursor over a frame's text.
#[derive(Clone)]
pub(crate) struct Scanner<'a> {
    text: &'a str,
    pos: usize,
    /// Whether the last string scanned had escapes.
    escaped: bool,
}

/// A member's value: its raw JSON text, and its text between the quotes
/// when it is a string without escapes (what most strings are: no second
/// look needed).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Raw<'a> {
    pub(crate) json: &'a str,
    pub(crate) plain: Option<&'a str>,
}

const ONES: u64 = u64::MAX / 255;
const HIGH: u64 = ONES << 7;

/// Whether `b` ends the plain run of a string: a quote, a backslash or a
/// control character.
fn special(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

/// The high bit of each byte of `chars` that is a quote, a backslash or a
/// control character (the word-at-a-time test serde_json uses; bits above
/// the first found byte may be false positives, so only the lowest is
/// read).
#[inline]
fn specials(chars: u64) -> u64 {
    let ctrl = chars.wrapping_sub(ONES * 0x20) & !chars;
    let quote = chars ^ (ONES * u64::from(b'"'));
    let quote = quote.wrapping_sub(ONES) & !quote;
    let slash = chars ^ (ONES * u64::from(b'\\'));
    let slash = slash.wrapping_sub(ONES) & !slash;
    (ctrl | quote | slash) & HIGH
}

/// Where the run of bytes from `pos` that need no escaping in a JSON
/// string ends: at the first quote, backslash or control character, or the
/// end. Eight bytes at a time while eight are left, then one at a time.
#[inline]
pub(crate) fn plain_end(bytes: &[u8], mut pos: usize) -> usize {
    while let Some(word) = bytes.get(pos..pos + 8) {
        let mut w = [0; 8];
        w.copy_from_slice(word);
        let found = specials(u64::from_le_bytes(w));
        if found != 0 {
            return pos + found.trailing_zeros() as usize / 8;
        }
        pos += 8;
    }
    while bytes.get(pos).is_some_and(|&b| !special(b)) {
        pos += 1;
    }
    pos
}

/// Which containers are open, one bit each (1 = object): the first 64
/// levels in a word, deeper ones spilled to the heap.
struct Nesting {
    depth: usize,
    low: u64,
    high: Vec<u64>,
}

impl Nesting {
    fn new() -> Self {
        Self {
            depth: 0,
            low: 0,
            high: Vec::new(),
        }
    }

    #[inline]
    fn push(&mut self, object: bool) {
        let d = self.depth;
        if d < 64 {
            self.low = (self.low & !(1 << d)) | (u64::from(object) << d);
            self.depth += 1;
        } else {
            self.push_deep(object);
        }
    }

    #[cold]
    fn push_deep(&mut self, object: bool) {
        let deep = self.depth - 64;
        if self.high.len() <= deep / 64 {
            self.high.push(0);
        }
        if let Some(word) = self.high.get_mut(deep / 64) {
            let bit = deep % 64;
            *word = (*word & !(1 << bit)) | (u64::from(object) << bit);
            self.depth += 1;
        }
    }

    /// The innermost open container: `Some(true)` for an object.
    #[inline]
    fn top(&self) -> Option<bool> {
        let d = self.depth.checked_sub(1)?;
        let word = if d < 64 {
            self.low
        } else {
            *self.high.get((d - 64) / 64)?
        };
        Some(word >> (d % 64) & 1 == 1)
    }

    fn pop(&mut self) {
        self.depth -= 1;
    }
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self {
            text,
            pos: 0,
            escaped: false,
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    /// Skips JSON whitespace and returns the next byte, if any.
    #[inline]
    fn ws(&mut self) -> Option<u8> {
        let bytes = self.bytes();
        while let Some(&b) = bytes.get(self.pos) {
            // Every whitespace byte is at most a space: compact JSON leaves
            // after one comparison.
            if b > b' ' || !matches!(b, b' ' | b'\n' | b'\t' | b'\r') {
                return Some(b);
            }
            self.pos += 1;
        }
        None
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.ws()? == b).then(|| self.pos += 1)
    }

    /// Whether only whitespace is left.
    pub(crate) fn at_end(&mut self) -> bool {
        self.ws().is_none()
    }

    /// Scans a string whose opening quote is next; returns where its text
    /// between the quotes starts (it ends before the closing quote, just
    /// before `self.pos`) and whether it has escapes.
    #[inline]
    fn string(&mut self) -> Option<(usize, bool)> {
        let bytes = self.bytes();
        let start = self.pos + 1;
        // Kept in a register: `self.pos` is written once, at the end.
        let mut pos = start;
        let mut escaped = false;
        loop {
            pos = plain_end(bytes, pos);
            match *bytes.get(pos)? {
                b'"' => {
                    self.pos = pos + 1;
                    self.escaped = escaped;
                    return Some((start, escaped));
                }
                b'\\' => {
                    escaped = true;
                    match *bytes.get(pos + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => pos += 2,
                        b'u' => {
                            let hex = bytes.get(pos + 2..pos + 6)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            pos += 6;
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }

    fn digits(&mut self) -> usize {
        let bytes = self.bytes();
        let start = self.pos;
        while bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => {
                self.pos += 1;
                if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    return None;
                }
            }
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let bytes = self.bytes();
        (bytes.get(self.pos..self.pos + word.len())? == word).then(|| self.pos += word.len())
    }

    /// Scans an object key and its colon.
    fn key(&mut self) -> Option<()> {
        if self.ws()? != b'"' {
            return None;
        }
        self.string()?;
        self.eat(b':')
    }

    /// Skips one value (after any whitespace) and returns its raw text.
    pub(crate) fn value(&mut self) -> Option<&'a str> {
        let mut next = self.ws()?;
        let start = self.pos;
        let mut open = Nesting::new();
        loop {
            match next {
                b'"' => {
                    self.string()?;
                }
                b'{' => {
                    self.pos += 1;
                    if self.ws()? == b'}' {
                        self.pos += 1;
                    } else {
                        open.push(true);
                        self.key()?;
                        next = self.ws()?;
                        continue;
                    }
                }
                b'[' => {
                    self.pos += 1;
                    let first = self.ws()?;
                    if first == b']' {
                        self.pos += 1;
                    } else {
                        open.push(false);
                        next = first;
                        continue;
                    }
                }
                b'-' | b'0'..=b'9' => self.number()?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => return None,
            }
            // A value ended: close what it ends, or go on after a comma.
            loop {
                let Some(object) = open.top() else {
                    return self.text.get(start..self.pos);
                };
                match (self.ws()?, object) {
                    (b',', true) => {
                        self.pos += 1;
                        self.key()?;
                        next = self.ws()?;
                        break;
                    }
                    (b',', false) => {
                        self.pos += 1;
                        next = self.ws()?;
                        break;
                    }
                    (b'}', true) | (b']', false) => {
                        self.pos += 1;
                        open.pop();
                    }
                    _ => return None,
                }
            }
        }
    }

    /// Scans the next member of an object whose `{` (or previous member)
    /// was read: `Ok(Some((key, value)))`, `Ok(None)` at its `}`, `Err` if
    /// the text is not JSON or a key does not unescape.
    pub(crate) fn member(&mut self, first: bool) -> Result<Option<(Cow<'a, str>, Raw<'a>)>, ()> {
        let next = self.ws().ok_or(())?;
        let next = match (first, next) {
            (_, b'}') => {
                self.pos += 1;
                return Ok(None);
            }
            (true, b) => b,
            (false, b',') => {
                self.pos += 1;
                self.ws().ok_or(())?
            }
            (false, _) => return Err(()),
        };
        if next != b'"' {
            return Err(());
        }
        let key = self.key_text()?;
        self.eat(b':').ok_or(())?;
        let json = self.value().ok_or(())?;
        let plain = match json.as_bytes() {
            [b'"', .., b'"'] if !self.escaped => json.get(1..json.len() - 1),
            _ => None,
        };
        Ok(Some((key, Raw { json, plain })))
    }

    /// An object key, unescaped as serde_json would (refusing what it
    /// refuses).
    fn key_text(&mut self) -> Result<Cow<'a, str>, ()> {
        let quote = self.pos;
        let (start, escaped) = self.string().ok_or(())?;
        if !escaped {
            return self
                .text
                .get(start..self.pos - 1)
                .map(Cow::Borrowed)
                .ok_or(());
        }
        let quoted = self.text.get(quote..self.pos).ok_or(())?;
        serde_json::from_str::<String>(quoted)
            .map(Cow::Owned)
            .map_err(drop)
    }

    /// Opens an object: `true` if the next value is one (its `{` read).
    pub(crate) fn open_object(&mut self) -> bool {
        self.eat(b'{').is_some()
    }
}

/// Whether `text` is one JSON value and nothing else, as
/// `serde_json::from_str::<IgnoredAny>` judges it.
#[cfg(test)]
pub(crate) fn is_json(text: &str) -> bool {
    let mut s = Scanner::new(text);
    s.value().is_some() && s.at_end()
}

/// The members of an object's raw text, already validated by the scanner:
/// its keys unescaped, its values raw. Stops (yields nothing more) at
/// anything unexpected.
pub(crate) fn members(object: &str) -> Members<'_> {
    let mut scanner = Scanner::new(object);
    let first = scanner.open_object().then_some(true);
    Members { scanner, first }
}

/// The iterator of [`members`].
#[derive(Clone)]
pub(crate) struct Members<'a> {
    scanner: Scanner<'a>,
    /// `Some(true)` before the first member, `None` once done.
    first: Option<bool>,
}

impl<'a> Iterator for Members<'a> {
    type Item = (Cow<'a, str>, Raw<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let member = self.scanner.member(self.first?).ok().flatten();
        self.first = member.as_ref().map(|_| false);
        member
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::de::IgnoredAny;

    use super::{is_json, members};

    fn serde_says(text: &str) -> bool {
        serde_json::from_str::<IgnoredAny>(text).is_ok()
    }

    #[track_caller]
    fn agrees(text: &str) {
        assert_eq!(is_json(text), serde_says(text), "{text:?}");
    }

    #[test]
    fn scanner_agrees_with_serde_json_on_the_edges_of_the_grammar() {
        let deep_array = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        let deep_object = format!("{}1{}", r#"{"a":"#.repeat(300), "}".repeat(300));
        let unbalanced = format!("{}{}", "[{".repeat(100), "}]".repeat(99));
        for text in [
            "",
            " ",
            "{",
            "}",
            "{}",
            " {} ",
            "{}x",
            "{} {}",
            "[]",
            "[ ]",
            "[,]",
            "[1,]",
            "[1 2]",
            "{,}",
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{1:2}"#,
            r#"{"a":1 "b":2}"#,
            "0",
            "-0",
            "00",
            "01",
            "-",
            "-a",
            "1.",
            "1.5",
            ".5",
            "1e",
            "1e+",
            "1e-5",
            "1E5",
            "1.5e3",
            "-0.0e-0",
            "1e999",
            "123456789012345678901234567890",
            "true",
            "tru",
            "truex",
            "false",
            "null",
            "nul",
            "NaN",
            "Infinity",
            r#""""#,
            r#"""#,
            r#""\""#,
            r#""\"#,
            r#""\u""#,
            r#""\u12""#,
            r#""\u123g""#,
            r#""\u00e9""#,
            r#""\ud800""#,
            r#""\udc00\ud800""#,
            r#""\x""#,
            r#""\/""#,
            "\"\u{1}\"",
            "\"tab\there\"",
            "\"\u{7f}\"",
            "\"é\"",
            "\u{a0}{}",
            "\u{feff}{}",
            "{}\u{a0}",
            "\t\r\n {}\n",
            "\u{b}{}",
            "[\"a\",{\"b\":[null,true,{}]}]",
            r#"{"a":[1,2,{"b":"c\"d"}],"e":{}}"#,
            &deep_array,
            &deep_object,
            &unbalanced,
        ] {
            agrees(text);
        }
    }

    #[test]
    fn plain_runs_stop_at_every_special_byte_in_every_lane() {
        // Each special byte at each offset of a word, and in the tail.
        for special in ["\"", "\\n", "\u{1f}", "\u{0}"] {
            for at in 0..20 {
                let text = format!("\"{}{special}{}\"", "x".repeat(at), "y".repeat(20 - at));
                agrees(&text);
            }
        }
    }

    #[test]
    fn members_unescape_keys_and_hand_out_raw_values() {
        let pairs: Vec<_> = members(r#"{"a" : [1, 2] ,"\u0062":"x\n", "c":{}}"#).collect();
        assert_eq!(pairs.len(), 3);
        let pair = |n: usize| (&*pairs[n].0, pairs[n].1.json, pairs[n].1.plain);
        assert_eq!(pair(0), ("a", "[1, 2]", None));
        assert_eq!(pair(1), ("b", r#""x\n""#, None));
        assert_eq!(pair(2), ("c", "{}", None));
        let plain: Vec<_> = members(r#"{"k":"v","e":""}"#)
            .map(|(_, v)| v.plain)
            .collect();
        assert_eq!(plain, [Some("v"), Some("")]);
        assert_eq!(members("[]").count(), 0);
        assert_eq!(members("{}").count(), 0);
    }

    /// Text made of JSON's own tokens, well or badly arranged.
    fn tokens() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            Just("{".to_owned()),
            Just("}".to_owned()),
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just(",".to_owned()),
            Just(":".to_owned()),
            Just(" ".to_owned()),
            Just("\n".to_owned()),
            Just("true".to_owned()),
            Just("null".to_owned()),
            Just("fals".to_owned()),
            "-?(0|[1-9][0-9]{0,3})(\\.[0-9]{0,2})?([eE][+-]?[0-9]{0,2})?",
            "\"([a-z\\\\\"\u{1}\u{1f}é]|\\\\u[0-9a-fA-Fg]{0,4}){0,12}\"?",
        ];
        prop::collection::vec(token, 0..24).prop_map(|t| t.concat())
    }

    /// Valid JSON of any shape, then cut or spliced at one place.
    fn damaged() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            ".{0,8}".prop_map(serde_json::Value::from),
        ];
        let value = leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::btree_map(".{0,6}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        });
        (value, any::<prop::sample::Index>(), 0..3u8, ".{0,2}").prop_map(|(v, at, how, junk)| {
            let text = v.to_string();
            let mut cut = at.index(text.len() + 1);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            match how {
                0 => text,
                1 => text[..cut].to_owned(),
                _ => format!("{}{junk}{}", &text[..cut], &text[cut..]),
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn scanner_agrees_with_serde_json_on_token_soup(text in tokens()) {
            prop_assert_eq!(is_json(&text), serde_says(&text), "{:?}", text);
        }

        #[test]
        fn scanner_agrees_with_serde_json_on_damaged_json(text in damaged()) {
            prop_assert_eq!(is_json(&text), serde_says(&text), "{:?}", text);
        }
    }
}
