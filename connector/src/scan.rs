//! A single-pass reader for the line nearly every sync is made of: a RECORD whose `data` is a flat
//! object of scalars.
//!
//! serde_json reads such a line twice: once to cut the envelope (skipping `data` as a raw value,
//! which validates every string byte by byte), and again to walk `data`'s fields. That was about
//! 40% of a sync's CPU. [`scan_record`] reads the envelope and `data`'s members in one pass, with
//! an eight-bytes-at-a-time search for the end of each string.
//!
//! It is a fast path, not a second JSON parser: it accepts only a strict subset of what serde_json
//! accepts, and reads it the same way, so the two never disagree. Anything else (another message
//! type, escapes in a key or a name, nested values in `data`, unknown envelope fields that are not
//! scalars, repeated envelope fields, an `emitted_at` that is not a plain integer, `meta` with
//! changes, invalid JSON) returns `None`, and the caller reads the line with serde_json as before,
//! which also words the errors. The fuzz target `messages` and the tests below check the subset
//! against serde_json.
//!
//! Accepted values are validated as JSON: strings have no raw control characters and only valid
//! escapes (`\uXXXX` with four hex digits; lone surrogates are valid raw text, as for serde_json),
//! numbers follow JSON's grammar, literals are `true`, `false`, `null`.

/// A RECORD line read by [`scan_record`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScannedRecord<'a> {
    /// `record.namespace` (absent and `null` are both `None`).
    pub namespace: Option<&'a str>,
    /// `record.stream`.
    pub stream: &'a str,
    /// `record.emitted_at`, epoch milliseconds.
    pub emitted_at: f64,
    /// `record.data`'s JSON text, exactly as sent.
    pub data: &'a str,
}

/// One member of `data`: the key (it has no escapes) and the value's raw JSON text.
pub type Member<'a> = (&'a str, &'a str);

/// Reads `line` (one JSON text, without its newline) if it is a RECORD of the shape described in
/// the module documentation, and puts `data`'s members into `members` (cleared first), in order,
/// repeated keys included. `None`: read the line with serde_json instead; `members` is then
/// meaningless.
pub fn scan_record<'a>(line: &'a str, members: &mut Vec<Member<'a>>) -> Option<ScannedRecord<'a>> {
    members.clear();
    let mut cursor = Cursor { text: line, bytes: line.as_bytes(), at: 0 };
    let mut is_record = false;
    let mut record = None;
    cursor.eat(b'{')?;
    loop {
        let key = cursor.plain_string()?;
        cursor.eat(b':')?;
        match key {
            "type" if !is_record => {
                if cursor.plain_string()? != "RECORD" {
                    return None;
                }
                is_record = true;
            }
            "record" if record.is_none() => record = Some(cursor.record(members)?),
            // serde_json refuses a repeated known field, and reads `state` even here.
            "type" | "record" | "state" => return None,
            // Unknown fields are ignored, as serde_json ignores them.
            _ => {
                cursor.scalar()?;
            }
        }
        if cursor.end_of_object()? {
            break;
        }
    }
    cursor.skip_whitespace();
    (is_record && cursor.at == line.len()).then_some(record).flatten()
}

struct Cursor<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// After a member: `,` (more follow: false) or `}` (the object ended: true).
    fn end_of_object(&mut self) -> Option<bool> {
        let ended = match self.peek()? {
            b',' => false,
            b'}' => true,
            _ => return None,
        };
        self.at += 1;
        Some(ended)
    }

    /// The text from `start` to the cursor.
    fn since(&self, start: usize) -> Option<&'a str> {
        self.text.get(start..self.at)
    }

    /// A string without escapes (a key, a name): its content.
    fn plain_string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let end = find_special(self.bytes, start)?;
        if self.bytes[end] != b'"' {
            return None;
        }
        self.at = end + 1;
        self.text.get(start..end)
    }

    /// Any string (the cursor is at its opening quote): its raw text, quotes included.
    fn string(&mut self) -> Option<&'a str> {
        let start = self.at;
        let mut from = start + 1;
        loop {
            let stop = find_special(self.bytes, from)?;
            from = stop + match self.bytes[stop] {
                b'"' => {
                    self.at = stop + 1;
                    return self.since(start);
                }
                b'\\' => match self.bytes.get(stop + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 2,
                    b'u' if self.bytes.get(stop + 2..stop + 6)?.iter().all(u8::is_ascii_hexdigit) => 6,
                    _ => return None,
                },
                _ => return None, // a raw control character
            };
        }
    }

    /// Consecutive ASCII digits: how many.
    fn digits(&mut self) -> usize {
        let start = self.at;
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        self.at - start
    }

    /// A number in JSON's grammar (the cursor is at its first byte): its text.
    fn number(&mut self) -> Option<&'a str> {
        let start = self.at;
        if self.bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        match self.bytes.get(self.at)? {
            b'0' => self.at += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.at) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        self.since(start)
    }

    /// `true`, `false` or `null` (the cursor is at its first byte).
    fn literal(&mut self) -> Option<&'a str> {
        let rest = self.bytes.get(self.at..)?;
        let len = [&b"true"[..], b"false", b"null"].into_iter().find(|word| rest.starts_with(word))?.len();
        self.at += len;
        self.text.get(self.at - len..self.at)
    }

    /// Whether the next value is `null` (then read past it); `None` if it starts like one but is
    /// not.
    fn null(&mut self) -> Option<bool> {
        if self.peek()? != b'n' {
            return Some(false);
        }
        (self.literal()? == "null").then_some(true)
    }

    /// A scalar value: its raw text. Objects and arrays are not read (`None`).
    fn scalar(&mut self) -> Option<&'a str> {
        match self.peek()? {
            b'"' => self.string(),
            b'-' | b'0'..=b'9' => self.number(),
            b't' | b'f' | b'n' => self.literal(),
            _ => None,
        }
    }

    /// `emitted_at`: a non-negative integer of at most 15 digits (exact as a double, read as
    /// serde_json reads it); other forms (`-0`, which serde_json reads as -0.0, fractions,
    /// exponents) go to serde_json.
    fn millis(&mut self) -> Option<f64> {
        self.skip_whitespace();
        let text = self.number()?;
        if text.len() > 15 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse::<u64>().ok().map(|ms| ms as f64)
    }

    /// `record.meta` without changes: `null`, `{}` or `{"changes":[]}`.
    fn empty_meta(&mut self) -> Option<()> {
        if self.null()? {
            return Some(());
        }
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        if self.plain_string()? != "changes" {
            return None;
        }
        self.eat(b':')?;
        self.eat(b'[')?;
        self.eat(b']')?;
        self.eat(b'}')
    }

    /// `record.data`: a flat object; its text, and its members into `members`.
    fn data(&mut self, members: &mut Vec<Member<'a>>) -> Option<&'a str> {
        self.skip_whitespace();
        let start = self.at;
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
            return self.since(start);
        }
        loop {
            let key = self.plain_string()?;
            self.eat(b':')?;
            members.push((key, self.scalar()?));
            if self.end_of_object()? {
                return self.since(start);
            }
        }
    }

    /// The `record` object.
    fn record(&mut self, members: &mut Vec<Member<'a>>) -> Option<ScannedRecord<'a>> {
        let (mut namespace, mut stream, mut emitted_at, mut data, mut meta) = (None, None, None, None, false);
        self.eat(b'{')?;
        loop {
            let key = self.plain_string()?;
            self.eat(b':')?;
            match key {
                "namespace" if namespace.is_none() => {
                    namespace = Some(if self.null()? { None } else { Some(self.plain_string()?) });
                }
                "stream" if stream.is_none() => stream = Some(self.plain_string()?),
                "emitted_at" if emitted_at.is_none() => emitted_at = Some(self.millis()?),
                "data" if data.is_none() => data = Some(self.data(members)?),
                "meta" if !meta => {
                    self.empty_meta()?;
                    meta = true;
                }
                "namespace" | "stream" | "emitted_at" | "data" | "meta" => return None,
                // Unknown fields (`file_reference: null`, …) are ignored, as serde_json ignores them.
                _ => {
                    self.scalar()?;
                }
            }
            if self.end_of_object()? {
                break;
            }
        }
        Some(ScannedRecord { namespace: namespace.flatten(), stream: stream?, emitted_at: emitted_at?, data: data? })
    }
}

/// The first byte at or after `from` that ends a run of plain string content: a quote, a
/// backslash or a raw control character (not allowed in a JSON string). Eight bytes at a time
/// (strings here are short: a call to memchr cost more than the scan); a bit set in [`special`]'s
/// mask may be spurious only above a real one, so the lowest is exact.
fn find_special(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(word) = bytes.get(at..at + 8) {
        let mask = special(u64::from_le_bytes(word.try_into().ok()?));
        if mask != 0 {
            return Some(at + (mask.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes.get(at..)?.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).map(|i| at + i)
}

/// Per byte of `word`: the high bit set where the byte is `"`, `\` or below 0x20.
fn special(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    zero_bytes(word ^ (ONES * u64::from(b'"'))) | zero_bytes(word ^ (ONES * u64::from(b'\\'))) | below_space
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Incoming;
    use serde_json::value::RawValue;

    /// A line's namespace, stream, emitted_at (its bits: -0.0 is not 0.0), data text and data's
    /// members.
    type Reading = (Option<String>, String, u64, String, Vec<(String, String)>);

    /// serde_json's reading of a line, or None.
    fn reference(line: &str) -> Option<Reading> {
        let message: Incoming = serde_json::from_str(line).ok()?;
        let record = message.record?;
        let changes = record.meta.map(|m| m.changes.len()).unwrap_or(0);
        if message.kind != "RECORD" || changes > 0 {
            return None;
        }
        let members: Vec<(String, &RawValue)> = serde_json::from_str::<crate::fuzzing::Members>(record.data.get()).ok()?.0;
        let members = members.into_iter().map(|(k, v)| (k, v.get().to_owned())).collect();
        Some((record.namespace.map(|n| n.into_owned()), record.stream.into_owned(), record.emitted_at.to_bits(), record.data.get().to_owned(), members))
    }

    /// The scanner's reading of a line, or None.
    fn scanned(line: &str) -> Option<Reading> {
        let mut members = Vec::new();
        let r = scan_record(line, &mut members)?;
        let members = members.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Some((r.namespace.map(str::to_owned), r.stream.to_owned(), r.emitted_at.to_bits(), r.data.to_owned(), members))
    }

    /// The scanner accepts a line only if serde_json does, and reads it the same way.
    fn agrees(line: &str) -> bool {
        match scanned(line) {
            Some(fast) => {
                assert_eq!(Some(&fast), reference(line).as_ref(), "the scanner read {line:?} differently");
                true
            }
            None => false,
        }
    }

    const LINE: &str = r#"{"type":"RECORD","record":{"namespace":"ridehail","stream":"rides","emitted_at":1735689600000,"data":{"id":7,"fare":12.5,"status":"completed","note":null,"paid":true,"city":"S\u00e3o Paulo \"Centro\"","at":"2025-01-01T10:00:00Z"}}}"#;

    #[test]
    fn reads_a_record_in_one_pass() {
        let mut members = Vec::new();
        let record = scan_record(LINE, &mut members).expect("the scanner reads a plain record");
        assert_eq!(record.namespace, Some("ridehail"));
        assert_eq!(record.stream, "rides");
        assert_eq!(record.emitted_at, 1_735_689_600_000.0);
        assert!(record.data.starts_with(r#"{"id":7"#) && record.data.ends_with(r#""2025-01-01T10:00:00Z"}"#));
        assert_eq!(members[0], ("id", "7"));
        assert_eq!(members[5], ("city", r#""S\u00e3o Paulo \"Centro\"""#));
        assert!(agrees(LINE));
    }

    #[test]
    fn reads_the_shapes_airbyte_sends() {
        for line in [
            // source-mysql (bulk CDK): data before emitted_at, meta without changes.
            r#"{"type":"RECORD","record":{"namespace":"app","stream":"users","data":{"id":1,"_ab_cdc_log_pos":4920.0},"emitted_at":1735689600000,"meta":{"changes":[]}}}"#,
            r#"{"type": "RECORD", "record": {"stream": "users", "data": {}, "emitted_at": 5, "namespace": null, "meta": {}}}"#,
            "{ \"record\" : { \"stream\" : \"u\" , \"emitted_at\" : 0 , \"data\" : { \"a\" : 1e-3 , \"a\" : \"\" } } , \"type\" : \"RECORD\" }\t",
            r#"{"type":"RECORD","record":{"stream":"u","emitted_at":1,"data":{"a":"\ud800","b":-0.5E+10,"c":false}}}"#,
            // unknown scalar fields, as a newer protocol may add
            r#"{"type":"RECORD","record":{"stream":"u","emitted_at":1,"data":{"a":1},"file_reference":null,"x":"y"},"id":7}"#,
        ] {
            assert!(agrees(line), "not read: {line}");
        }
    }

    #[test]
    fn leaves_everything_else_to_serde_json() {
        for line in [
            r#"{"type":"STATE","state":{"type":"GLOBAL"}}"#,
            r#"{"type":"RECORD","record":{"stream":"u","emitted_at":1,"data":{"a":{"nested":1}}}}"#,
            r#"{"type":"RECORD","record":{"stream":"u","emitted_at":1,"data":{"a":[1]}}}"#,
            r#"{"type":"RECORD","record":{"stream":"u","emitted_at":1.5,"data":{}}}"#,
            r#"{"type":"RECORD","record":{"stream":"u","emitted_at":-0,"data":{}}}"#,
            r#"{"type":"RECORD","record":{"stream":"u","emitted_at":1,"data":{},"meta":{"changes":[{"field":"a","change":"NULLED","reason":"x"}]}}}"#,
            r#"{"type":"RECORD","record":{"stream":"u","emitted_at":1,"data":{"k\u0061":1}}}"#,
            r#"{"type":"RECORD","record":{"stream":"u","emitted_at":1,"data":{}},"extra":{}}"#,
            r#"{"type":"RECORD","record":{"stream":"u","emitted_at":1,"data":{}},"state":1}"#,
            r#"{"type":"RECORD","record":{"stream":"u","emitted_at":1,"data":{},"file_reference":{"a":1}}}"#,
            r#"{"type":"RECORD","type":"RECORD","record":{"stream":"u","emitted_at":1,"data":{}}}"#,
            r#"{"type":"RECORD","record":{"stream":"u","stream":"v","emitted_at":1,"data":{}}}"#,
            r#"{"type":"RECORD","record":{"stream":"u","emitted_at":1,"data":5}}"#,
            r#"{"type":"RECORD","record":{"stream":"u","data":{}}}"#,
            // invalid JSON
            r#"{"type":"RECORD","record":{"stream":"u","emitted_at":1,"data":{"a":01}}}"#,
            r#"{"type":"RECORD","record":{"stream":"u","emitted_at":1,"data":{"a":1.}}}"#,
            r#"{"type":"RECORD","record":{"stream":"u","emitted_at":1,"data":{"a":"\x"}}}"#,
            r#"{"type":"RECORD","record":{"stream":"u","emitted_at":1,"data":{"a":"\u12"}}}"#,
            "{\"type\":\"RECORD\",\"record\":{\"stream\":\"u\",\"emitted_at\":1,\"data\":{\"a\":\"tab\there\"}}}",
            r#"{"type":"RECORD","record":{"stream":"u","emitted_at":1,"data":{"a":tru}}}"#,
            r#"{"type":"RECORD","record":{"stream":"u","emitted_at":1,"data":{"a":1,}}}"#,
            r#"{"type":"RECORD","record":{"stream":"u","emitted_at":1,"data":{"a":1}}} x"#,
            r#"{"type":"RECORD","record":{"stream":"u","emitted_at":1,"data":{"a":1}}"#,
            r#"{"type":"RECORD","record":{"stream":"u","emitted_at":1,"data":{"a":"open}}}"#,
        ] {
            assert!(scanned(line).is_none(), "the scanner read {line}");
        }
    }

    #[test]
    fn finds_the_first_special_byte_as_a_plain_scan_does() {
        let alphabet = [0x00, 0x1f, 0x20, 0x21, b'"', b'\\', b'a', 0x7f, 0x80, 0x9f, 0xa0, 0xdc, 0xff];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 40) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| alphabet[((state >> (i % 60)) as usize + i * 7) % alphabet.len()]).collect();
            for from in 0..=len {
                let plain = bytes[from..].iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).map(|i| from + i);
                assert_eq!(find_special(&bytes, from), plain, "in {bytes:?} from {from}");
            }
        }
    }

    /// Random mutations of real lines: whatever the scanner accepts, serde_json reads the same.
    #[test]
    fn agrees_with_serde_json_on_mutated_lines() {
        let alphabet = br#"{}[]":,\ -+.eE0123456789abcdefnrtu\/x	"#;
        let seeds = [
            LINE,
            r#"{"type":"RECORD","record":{"namespace":null,"stream":"users","data":{"id":1,"v":"a\nb","w":-1.25e3},"emitted_at":1,"meta":{"changes":[]}}}"#,
            r#"{"type":"RECORD","id":null,"record":{"stream":"u","file_reference":null,"data":{"a":"b"},"emitted_at":2,"meta":null},"x":1}"#,
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        let (mut accepted, mut tried) = (0, 0);
        for _ in 0..200_000 {
            let mut bytes = seeds[next(seeds.len())].as_bytes().to_vec();
            for _ in 0..1 + next(3) {
                let at = next(bytes.len());
                match next(3) {
                    0 => bytes[at] = alphabet[next(alphabet.len())],
                    1 => bytes.insert(at, alphabet[next(alphabet.len())]),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            let Ok(line) = std::str::from_utf8(&bytes) else { continue };
            tried += 1;
            if agrees(line) {
                accepted += 1;
            }
        }
        // Most single-byte changes break a line; enough still parse to make the check count.
        assert!(accepted > tried / 50, "only {accepted} of {tried} mutated lines were read");
    }
}
