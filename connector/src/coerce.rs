//! Turning one raw JSON value into a typed column value, per Airbyte's typing rules.
//!
//! Every function takes the value's JSON text and either returns the typed value, `Null` for JSON
//! `null`, or a [`Rejection`] naming the Airbyte reason. The caller nulls a rejected value, records
//! the change in `_airbyte_meta.changes` and keeps the text in `_airbyte_rescued_data`: nothing is
//! ever dropped silently.

use std::borrow::Cow;

/// Why a value could not be stored in its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The value has the wrong JSON type or an unparseable format.
    Serialization,
    /// The value is of the right kind but out of the column's range (e.g. an integer above i64).
    FieldSize,
}

impl Rejection {
    /// Airbyte's `reason` for the change entry.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::Serialization => "DESTINATION_SERIALIZATION_ERROR",
            Rejection::FieldSize => "DESTINATION_FIELD_SIZE_LIMITATION",
        }
    }
}

/// What happened to a value on its way into its column, for `_airbyte_meta.changes` (the sent
/// value is then kept verbatim in `_airbyte_rescued_data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Altered {
    /// The column holds null instead.
    Nulled(Rejection),
    /// The column holds the closest value it can.
    Rounded,
}

impl Altered {
    /// Airbyte's `change` of the entry.
    pub fn kind(self) -> &'static str {
        match self {
            Altered::Nulled(_) => "NULLED",
            Altered::Rounded => "TRUNCATED",
        }
    }

    /// Airbyte's `reason` of the entry.
    pub fn reason(self) -> &'static str {
        match self {
            Altered::Nulled(rejection) => rejection.reason(),
            Altered::Rounded => Rejection::FieldSize.reason(),
        }
    }
}

/// A coerced value: present, JSON null, rounded, or rejected.
#[derive(Debug, PartialEq)]
pub enum Coerced<T> {
    /// The typed value.
    Value(T),
    /// JSON `null`.
    Null,
    /// The closest value the column can hold, which is not the value sent (a decimal with more
    /// digits than a double keeps): stored, and the exact text is rescued.
    Rounded(T),
    /// Could not be typed.
    Rejected(Rejection),
}

fn is_null(raw: &str) -> bool {
    raw == "null"
}

/// The content of a JSON string literal, without copying when it has no escapes.
pub fn json_string(raw: &str) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

/// `integer`: JSON integers, integral floats (`3.0`) and numeric strings (`"42"`). A string that
/// is not the integer's own text (`"007"`, `"+7"`, `" 7"`, `"7.0"`: a source column that became
/// text while the catalog still says integer) is stored as the integer and `Rounded`, so that its
/// text is rescued: bronze keeps what was sent, and silver can tell the column turned to text.
pub fn integer(raw: &str) -> Coerced<i64> {
    match (integer_value(raw), json_string(raw)) {
        (Coerced::Value(v), Some(text)) if text != v.to_string() => Coerced::Rounded(v),
        (coerced, _) => coerced,
    }
}

fn integer_value(raw: &str) -> Coerced<i64> {
    if is_null(raw) {
        return Coerced::Null;
    }
    let text: Cow<'_, str> = match json_string(raw) {
        Some(s) => s,
        None => Cow::Borrowed(raw),
    };
    let text = text.trim();
    if let Ok(v) = text.parse::<i64>() {
        return Coerced::Value(v);
    }
    // A boolean in an integer column (a TINYINT(1) column first seen from source-mysql 4.0+).
    match raw {
        "true" => return Coerced::Value(1),
        "false" => return Coerced::Value(0),
        _ => {}
    }
    // Any other decimal form (`42.000`, `1e3`, `4.2E1`), read exactly from its digits: an
    // integer beyond i64 is too large, a fraction is not an integer.
    let Some((digits, scale)) = significant(text) else { return Coerced::Rejected(Rejection::Serialization) };
    if digits.is_empty() {
        return Coerced::Value(0);
    }
    if scale < 0 {
        return Coerced::Rejected(Rejection::Serialization);
    }
    if (digits.len() as i64).saturating_add(scale) > 19 {
        return Coerced::Rejected(Rejection::FieldSize);
    }
    let sign = if text.starts_with('-') { "-" } else { "" };
    match format!("{sign}{digits}{}", "0".repeat(scale as usize)).parse::<i64>() {
        Ok(v) => Coerced::Value(v),
        Err(_) => Coerced::Rejected(Rejection::FieldSize),
    }
}

/// `number`: JSON numbers and numeric strings; NaN and infinities are refused (Airbyte forbids them).
pub fn number(raw: &str) -> Coerced<f64> {
    if is_null(raw) {
        return Coerced::Null;
    }
    let text: Cow<'_, str> = match json_string(raw) {
        Some(s) => s,
        None => Cow::Borrowed(raw),
    };
    let text = text.trim();
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() && holds_exactly(text, f) => Coerced::Value(f),
        Ok(f) if f.is_finite() => Coerced::Rounded(f),
        Ok(_) => Coerced::Rejected(Rejection::FieldSize),
        Err(_) => Coerced::Rejected(Rejection::Serialization),
    }
}

/// Whether the double `f`, read from the decimal `text`, gives that decimal back: true for any
/// text of at most 15 significant digits (every such decimal survives a round trip through a
/// double); otherwise the shortest text of `f` must have the same digits and scale.
fn holds_exactly(text: &str, f: f64) -> bool {
    // The common case without allocating: a normal double and at most 15 digits after the
    // leading zeros (trailing zeros counted too, which only sends a few exact texts the long way).
    if f.is_normal() {
        let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
        if mantissa.bytes().filter(u8::is_ascii_digit).skip_while(|&d| d == b'0').count() <= 15 {
            return true;
        }
    }
    match significant(text) {
        // (Subnormal doubles hold fewer digits; a non-zero text that gave 0 underflowed.)
        Some((digits, _)) if digits.is_empty() => f == 0.0,
        Some((digits, _)) if digits.len() <= 15 && f.is_normal() => true,
        Some(exact) => significant(&f.to_string()) == Some(exact),
        None => false,
    }
}

/// A decimal's significant digits (no leading or trailing zeros) and the power of ten of its last
/// digit; `None` if it is not a plain decimal (`[-+]digits[.digits][e[-+]digits]`).
fn significant(text: &str) -> Option<(String, i64)> {
    let text = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty() || !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let all: String = whole.chars().chain(fraction.chars()).collect();
    let trimmed = all.trim_start_matches('0');
    let digits = trimmed.trim_end_matches('0');
    if let Some(e) = exponent {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    if digits.is_empty() {
        // Zero, whatever its exponent (`0e99999999999999999999` too).
        return Some((String::new(), 0));
    }
    // An exponent beyond i64 saturates: such a number is far beyond any column's range, or
    // (negative) a fraction far below any double's.
    let exponent = exponent.map_or(0, |e| e.parse::<i64>().unwrap_or(if e.starts_with('-') { i64::MIN } else { i64::MAX }));
    let scale = exponent.saturating_sub(fraction.len() as i64).saturating_add((trimmed.len() - digits.len()) as i64);
    Some((digits.to_owned(), scale))
}

/// `boolean`: `true`/`false`, the strings `"true"`/`"false"`, and `1`/`0` (source-mysql 4.0 sends
/// `TINYINT(1)` as an integer where earlier versions sent a boolean: a table created before keeps
/// its values).
pub fn boolean(raw: &str) -> Coerced<bool> {
    match raw {
        "null" => Coerced::Null,
        "true" | "\"true\"" | "1" | "\"1\"" => Coerced::Value(true),
        "false" | "\"false\"" | "0" | "\"0\"" => Coerced::Value(false),
        _ => Coerced::Rejected(Rejection::Serialization),
    }
}

/// `string`: a JSON string's content; any other value is kept as its JSON text (lossless).
pub fn string(raw: &str) -> Coerced<Cow<'_, str>> {
    if is_null(raw) {
        return Coerced::Null;
    }
    match json_string(raw) {
        Some(s) => Coerced::Value(s),
        None => Coerced::Value(Cow::Borrowed(raw)),
    }
}

/// `date`: `YYYY-MM-DD` (a date-time's date part is refused: it would drop the time).
pub fn date(raw: &str) -> Coerced<i32> {
    if is_null(raw) {
        return Coerced::Null;
    }
    let Some(text) = json_string(raw) else { return Coerced::Rejected(Rejection::Serialization) };
    match parse_date(text.as_bytes()) {
        Some((days, 10)) if text.len() == 10 => match i32::try_from(days) {
            Ok(d) => Coerced::Value(d),
            Err(_) => Coerced::Rejected(Rejection::FieldSize),
        },
        _ => Coerced::Rejected(Rejection::Serialization),
    }
}

/// `timestamp` (with or without zone): RFC 3339 / ISO 8601 text to microseconds since the epoch
/// in UTC. A missing offset means UTC; a `T` or a space may separate date and time; a fraction
/// beyond microseconds is truncated, and marked rounded when a dropped digit is not zero.
pub fn timestamp(raw: &str) -> Coerced<i64> {
    if is_null(raw) {
        return Coerced::Null;
    }
    let Some(text) = json_string(raw) else { return Coerced::Rejected(Rejection::Serialization) };
    match parse_timestamp(text.trim().as_bytes()) {
        Some((v, true)) => Coerced::Value(v),
        Some((v, false)) => Coerced::Rounded(v),
        None => Coerced::Rejected(Rejection::Serialization),
    }
}

fn digits(b: &[u8], from: usize, n: usize) -> Option<i64> {
    let slice = b.get(from..from + n)?;
    let mut v = 0i64;
    for &c in slice {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

/// Parses `YYYY-MM-DD` at the start of `b`; returns (days since epoch, bytes used).
fn parse_date(b: &[u8]) -> Option<(i64, usize)> {
    let year = digits(b, 0, 4)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some((days_from_civil(year, month, day), 10))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

thread_local! {
    /// The last date a timestamp of this thread fell on, and its day number: the timestamps of a
    /// batch mostly share a few days, and the calendar arithmetic was half of a timestamp's cost.
    static LAST_DATE: std::cell::Cell<Option<([u8; 10], i64)>> = const { std::cell::Cell::new(None) };
}

/// [`parse_date`] of a timestamp's first 10 bytes, remembering the last date seen.
fn parse_day_of(b: &[u8]) -> Option<(i64, usize)> {
    let key: [u8; 10] = b.get(..10)?.try_into().ok()?;
    if let Some((last, days)) = LAST_DATE.get()
        && last == key
    {
        return Some((days, 10));
    }
    let (days, used) = parse_date(b)?;
    LAST_DATE.set(Some((key, days)));
    Some((days, used))
}

/// Microseconds since the epoch, and whether they hold the text exactly (no non-zero digit of the
/// fraction beyond microseconds was dropped).
fn parse_timestamp(b: &[u8]) -> Option<(i64, bool)> {
    let (days, mut i) = parse_day_of(b)?;
    let mut micros = days.checked_mul(86_400_000_000)?;
    let mut exact = true;
    if i == b.len() {
        return Some((micros, exact));
    }
    if b[i] != b'T' && b[i] != b't' && b[i] != b' ' {
        return None;
    }
    i += 1;
    let hour = digits(b, i, 2)?;
    if b.get(i + 2) != Some(&b':') {
        return None;
    }
    let minute = digits(b, i + 3, 2)?;
    i += 5;
    let mut second = 0;
    if b.get(i) == Some(&b':') {
        second = digits(b, i + 1, 2)?;
        i += 3;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    micros += ((hour * 60 + minute) * 60 + second) * 1_000_000;
    if matches!(b.get(i), Some(b'.') | Some(b',')) {
        i += 1;
        let start = i;
        let mut frac = 0i64;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            if i - start < 6 {
                frac = frac * 10 + i64::from(c - b'0');
            } else if *c != b'0' {
                exact = false;
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..6 {
            frac *= 10;
        }
        micros += frac;
    }
    match b.get(i) {
        None => Some((micros, exact)),
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => Some((micros, exact)),
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(b, i + 1, 2)?;
            let om = match b.get(i + 3) {
                Some(b':') => digits(b, i + 4, 2)?,
                None => 0,
                _ => digits(b, i + 3, 2)?,
            };
            let used = match b.get(i + 3) {
                Some(b':') => 6,
                None => 3,
                _ => 5,
            };
            if i + used != b.len() || oh > 23 || om > 59 {
                return None;
            }
            let offset = (oh * 60 + om) * 60_000_000;
            Some((if sign == b'+' { micros - offset } else { micros + offset }, exact))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_on_the_same_day_reuse_the_date_and_others_do_not() {
        let at = |t: &str| timestamp(&format!("\"{t}\""));
        assert_eq!(at("2025-01-01T00:00:01Z"), Coerced::Value(1_735_689_601_000_000));
        assert_eq!(at("2025-01-01T00:00:02Z"), Coerced::Value(1_735_689_602_000_000));
        assert_eq!(at("2025-01-02T00:00:00Z"), Coerced::Value(1_735_776_000_000_000));
        assert_eq!(at("2025-02-30T00:00:00Z"), Coerced::Rejected(Rejection::Serialization));
        assert_eq!(at("2025-01-02T00:00:00Z"), Coerced::Value(1_735_776_000_000_000));
    }

    #[test]
    fn integers() {
        assert_eq!(integer("42"), Coerced::Value(42));
        assert_eq!(integer("-7"), Coerced::Value(-7));
        assert_eq!(integer("3.0"), Coerced::Value(3));
        assert_eq!(integer("\"12\""), Coerced::Value(12));
        assert_eq!(integer("\"-12\""), Coerced::Value(-12));
        // A string that is not the integer's own text is kept (rescued) as sent.
        assert_eq!(integer("\"007\""), Coerced::Rounded(7));
        assert_eq!(integer("\"+7\""), Coerced::Rounded(7));
        assert_eq!(integer("\" 7\""), Coerced::Rounded(7));
        assert_eq!(integer("\"7.0\""), Coerced::Rounded(7));
        assert_eq!(integer("\"-0\""), Coerced::Rounded(0));
        assert_eq!(integer("007"), Coerced::Value(7));
        assert_eq!(integer("null"), Coerced::Null);
        assert_eq!(integer("3.5"), Coerced::Rejected(Rejection::Serialization));
        assert_eq!(integer("\"abc\""), Coerced::Rejected(Rejection::Serialization));
        assert_eq!(integer("{}"), Coerced::Rejected(Rejection::Serialization));
        assert_eq!(integer("99999999999999999999"), Coerced::Rejected(Rejection::FieldSize));
        assert_eq!(integer("1e30"), Coerced::Rejected(Rejection::FieldSize));
        assert_eq!(integer("-9.223372036854775808e18"), Coerced::Value(i64::MIN));
        assert_eq!(integer("9.223372036854775808e18"), Coerced::Rejected(Rejection::FieldSize));
        assert_eq!(integer("\"-\""), Coerced::Rejected(Rejection::Serialization));
        assert_eq!(integer("\"1-2\""), Coerced::Rejected(Rejection::Serialization));
        // Exact near the limits, where a double would round.
        assert_eq!(integer("9223372036854775807e0"), Coerced::Value(i64::MAX));
        assert_eq!(integer("92233720368547758.07e2"), Coerced::Value(i64::MAX));
        assert_eq!(integer("-9223372036854775809e0"), Coerced::Rejected(Rejection::FieldSize));
        assert_eq!(integer("1.5e1"), Coerced::Value(15));
        assert_eq!(integer("1.55e1"), Coerced::Rejected(Rejection::Serialization));
        assert_eq!(integer("0e400"), Coerced::Value(0));
        assert_eq!(integer("\"0eX\""), Coerced::Rejected(Rejection::Serialization));
        // An exponent near i64::MAX (found by the fuzzer: the sum overflowed, and the digits
        // asked for an allocation of 2^63 bytes).
        assert_eq!(integer("1e9223372036854775807"), Coerced::Rejected(Rejection::FieldSize));
        assert_eq!(integer("492.e1184418446507370951616"), Coerced::Rejected(Rejection::FieldSize));
        assert_eq!(integer("5e-1184418446507370951616"), Coerced::Rejected(Rejection::Serialization));
        assert_eq!(number("5e-1184418446507370951616"), Coerced::Rounded(0.0));
        assert_eq!(integer("1e3"), Coerced::Value(1000));
        assert_eq!(integer("9007199254740993.000"), Coerced::Value(9_007_199_254_740_993));
        assert_eq!(integer("99999999999999999999.0"), Coerced::Rejected(Rejection::FieldSize));
        assert_eq!(integer("1.0000000000000001"), Coerced::Rejected(Rejection::Serialization));
        // Read from its digits, not through a double (which would give ...992).
        assert_eq!(integer("9007199254740993e0"), Coerced::Value(9_007_199_254_740_993));
    }

    #[test]
    fn numbers_a_double_cannot_hold_are_rounded_not_silently_altered() {
        assert_eq!(number("12.50"), Coerced::Value(12.5));
        assert_eq!(number("\"0.1\""), Coerced::Value(0.1));
        assert_eq!(number("123456789012345.6"), Coerced::Value(123_456_789_012_345.6));
        assert_eq!(number("1e300"), Coerced::Value(1e300));
        assert_eq!(number("9007199254740993"), Coerced::Rounded(9_007_199_254_740_992.0));
        assert_eq!(number("12345678901234567.89"), Coerced::Rounded(12_345_678_901_234_568.0));
        assert_eq!(number("\"99999999999999999999999999.99\""), Coerced::Rounded(1e26));
        assert_eq!(number("1234567890123456789e-3"), Coerced::Rounded(1_234_567_890_123_456.8));
        // More than 15 digits but exactly a double's shortest text.
        assert_eq!(number("0.30000000000000004"), Coerced::Value(0.300_000_000_000_000_04));
        assert_eq!(number("-4.9e-324"), Coerced::Rounded(-5e-324));
        assert_eq!(number("5e-324"), Coerced::Value(5e-324));
        assert_eq!(number("1e-400"), Coerced::Rounded(0.0));
        assert_eq!(number("0.000"), Coerced::Value(0.0));
        assert_eq!(significant("-00120.0500e2"), Some(("12005".into(), 0)));
        assert_eq!(significant("0.012"), Some(("12".into(), -3)));
        assert_eq!(significant("0.000"), Some((String::new(), 0)));
        assert_eq!(significant("0e99999999999999999999"), Some((String::new(), 0)));
        assert_eq!(number("0e99999999999999999999"), Coerced::Value(0.0));
    }

    #[test]
    fn booleans_and_0_1_integers_flip_without_loss() {
        for (raw, b) in [("1", true), ("0", false), ("\"1\"", true), ("true", true)] {
            assert_eq!(boolean(raw), Coerced::Value(b));
        }
        assert_eq!(boolean("2"), Coerced::Rejected(Rejection::Serialization));
        assert_eq!(integer("true"), Coerced::Value(1));
        assert_eq!(integer("false"), Coerced::Value(0));
    }

    #[test]
    fn numbers_booleans_strings() {
        assert_eq!(number("1.25"), Coerced::Value(1.25));
        assert_eq!(number("\"2.5\""), Coerced::Value(2.5));
        assert_eq!(number("\"NaN\""), Coerced::Rejected(Rejection::FieldSize));
        assert_eq!(number("true"), Coerced::Rejected(Rejection::Serialization));
        assert_eq!(boolean("true"), Coerced::Value(true));
        assert_eq!(string("\"a\\nb\""), Coerced::Value(Cow::Owned("a\nb".into())));
        assert_eq!(string("\"plain\""), Coerced::Value(Cow::Borrowed("plain")));
        assert_eq!(string("12"), Coerced::Value(Cow::Borrowed("12")));
        assert_eq!(string("{\"a\":1}"), Coerced::Value(Cow::Borrowed("{\"a\":1}")));
    }

    #[test]
    fn dates() {
        assert_eq!(date("\"1970-01-01\""), Coerced::Value(0));
        assert_eq!(date("\"2024-02-29\""), Coerced::Value(19_782));
        assert_eq!(date("\"2023-02-29\""), Coerced::Rejected(Rejection::Serialization));
        assert_eq!(date("\"2024-01-01T00:00:00Z\""), Coerced::Rejected(Rejection::Serialization));
        assert_eq!(date("20240101"), Coerced::Rejected(Rejection::Serialization));
    }

    #[test]
    fn timestamps() {
        let base = 1_735_689_600_000_000i64; // 2025-01-01T00:00:00Z
        assert_eq!(timestamp("\"2025-01-01T00:00:00Z\""), Coerced::Value(base));
        assert_eq!(timestamp("\"2025-01-01T00:00:00.000000Z\""), Coerced::Value(base));
        assert_eq!(timestamp("\"2025-01-01 00:00:01.5\""), Coerced::Value(base + 1_500_000));
        assert_eq!(timestamp("\"2025-01-01T01:00:00+01:00\""), Coerced::Value(base));
        assert_eq!(timestamp("\"2024-12-31T19:00:00-0500\""), Coerced::Value(base));
        // Nanoseconds are truncated to microseconds; a non-zero dropped digit marks the value rounded.
        assert_eq!(timestamp("\"2025-01-01T00:00:00.123456789Z\""), Coerced::Rounded(base + 123_456));
        assert_eq!(timestamp("\"2025-01-01T00:00:00.123456000Z\""), Coerced::Value(base + 123_456));
        assert_eq!(timestamp("\"2025-01-01\""), Coerced::Value(base));
        assert_eq!(timestamp("\"2025-01-01T00:00\""), Coerced::Value(base));
        assert_eq!(timestamp("\"yesterday\""), Coerced::Rejected(Rejection::Serialization));
        assert_eq!(timestamp("\"2025-13-01T00:00:00Z\""), Coerced::Rejected(Rejection::Serialization));
        assert_eq!(timestamp("1735689600"), Coerced::Rejected(Rejection::Serialization));
        assert_eq!(timestamp("\"2025-01-01T00:00:00Zjunk\""), Coerced::Rejected(Rejection::Serialization));
    }

    #[test]
    fn days_match_chrono() {
        for (y, m, d) in [(1970, 1, 1), (2000, 2, 29), (1969, 12, 31), (2100, 3, 1), (1, 1, 1)] {
            let ours = days_from_civil(y, m, d);
            let theirs = chrono::NaiveDate::from_ymd_opt(y as i32, m as u32, d as u32)
                .unwrap()
                .signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
                .num_days();
            assert_eq!(ours, theirs);
        }
    }
}
