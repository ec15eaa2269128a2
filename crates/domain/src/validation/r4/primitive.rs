//! The lexical rules of the R4 primitive types.
//!
//! Each matcher is the definition's regular expression (in `table::PATTERNS`,
//! cross-checked by a test that runs both) written out by hand, because a
//! regex engine in the hot path of every write costs more than these few loops.
//! On top of the regular expressions come the rules the spec states in prose:
//! JSON strings are never empty or whitespace only, dates are real calendar
//! dates, strings are at most 1 MiB, and (nrls, so that an XML client can
//! always read what a JSON client wrote) no control characters other than tab,
//! carriage return and line feed.

use super::model::Primitive;

/// Why a string is not a valid value of its primitive type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// An empty or whitespace-only string: absent elements are left out instead.
    Empty,
    /// A control character other than tab, CR and LF.
    Control,
    /// Over the 1 MiB limit of a FHIR string.
    TooLong,
    /// Does not match the type's pattern.
    Pattern,
    /// A well-formed date that is not on the calendar (e.g. 2023-02-30).
    Calendar,
}

const MAX_STRING: usize = 1024 * 1024;

/// Checks a JSON string against `primitive` (a string-valued primitive).
pub fn check_str(primitive: Primitive, text: &str) -> Result<(), Fault> {
    let bytes = text.as_bytes();
    // A string starting with a visible ASCII character cannot be blank, which
    // spares the common case the Unicode-aware trim.
    let maybe_blank = bytes.first().is_none_or(|b| !b.is_ascii_graphic());
    if maybe_blank && text.trim().is_empty() {
        return Err(Fault::Empty);
    }
    if text.len() > MAX_STRING && text.chars().count() > MAX_STRING {
        return Err(Fault::TooLong);
    }
    // One pass without early exit (so it compiles to a vector loop) finds the
    // control characters and the `\s` of the patterns together.
    let (control, space) = bytes.iter().fold((false, false), |(control, space), &b| {
        (
            control | (b < 0x20 && !matches!(b, b'\t' | b'\r' | b'\n')),
            space | (b == b' ' || (b'\t'..=b'\r').contains(&b)),
        )
    });
    if control {
        return Err(Fault::Control);
    }
    let pattern = match primitive {
        // `[ \r\n\t\S]+` refuses only vertical tab and form feed, which are
        // control characters, refused above.
        Primitive::String | Primitive::Markdown => true,
        // `\S*`
        Primitive::Uri | Primitive::Url | Primitive::Canonical => !space,
        _ => matches_pattern(primitive, text),
    };
    if !pattern {
        return Err(Fault::Pattern);
    }
    let calendar = match primitive {
        Primitive::Date | Primitive::DateTime | Primitive::Instant => real_date(text),
        _ => true,
    };
    if calendar {
        Ok(())
    } else {
        Err(Fault::Calendar)
    }
}

/// Whether the JSON form of `primitive` is a string (otherwise a bool or number).
pub fn is_string_valued(primitive: Primitive) -> bool {
    !matches!(
        primitive,
        Primitive::Boolean
            | Primitive::Decimal
            | Primitive::Integer
            | Primitive::PositiveInt
            | Primitive::UnsignedInt
    )
}

/// The inclusive range of an integer-valued primitive (32-bit, as R4 says).
pub fn integer_range(primitive: Primitive) -> Option<(i64, i64)> {
    let max = i64::from(i32::MAX);
    match primitive {
        Primitive::Integer => Some((i64::from(i32::MIN), max)),
        Primitive::UnsignedInt => Some((0, max)),
        Primitive::PositiveInt => Some((1, max)),
        _ => None,
    }
}

/// Exactly the regular expression of the definitions (anchored), for the
/// string-valued primitives. `xhtml` has none; nrls checks the narrative's shape.
pub fn matches_pattern(primitive: Primitive, s: &str) -> bool {
    use Primitive::*;
    match primitive {
        // [ \r\n\t\S]+ (bytes suffice: every \s is ASCII, and no byte of a
        // multi-byte UTF-8 character is)
        String | Markdown => !s.is_empty() && !s.bytes().any(|b| b == 0x0B || b == 0x0C),
        // \S*
        Uri | Url | Canonical => !s.bytes().any(|b| is_regex_space(char::from(b))),
        // [^\s]+(\s[^\s]+)*
        Code => {
            !s.is_empty()
                && !s.starts_with(is_regex_space)
                && !s.ends_with(is_regex_space)
                && !s
                    .as_bytes()
                    .windows(2)
                    .any(|w| is_regex_space(char::from(w[0])) && is_regex_space(char::from(w[1])))
        }
        // [A-Za-z0-9\-\.]{1,64}
        Id => {
            (1..=64).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        }
        Oid => oid(s),
        Uuid => uuid(s),
        Base64Binary => base64(s),
        Date => date_time(s, Need::DateOnly),
        DateTime => date_time(s, Need::Any),
        Instant => date_time(s, Need::Instant),
        Time => time(s.as_bytes()) == Some(s.len()),
        Xhtml => xhtml(s),
        Boolean => s == "true" || s == "false",
        Integer => {
            let digits = s.strip_prefix('-').unwrap_or(s);
            unsigned(digits)
        }
        UnsignedInt => unsigned(s),
        PositiveInt => {
            !s.is_empty() && !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit())
        }
        Decimal => decimal(s),
    }
}

/// `\s` of the definitions' (Java/XML Schema) regular expressions.
fn is_regex_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{0B}' | '\u{0C}')
}

/// `[0]|([1-9][0-9]*)`
fn unsigned(s: &str) -> bool {
    s == "0" || (!s.is_empty() && !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit()))
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
fn decimal(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let int_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if !unsigned(&s[..int_end]) {
        return false;
    }
    let mut rest = &s[int_end..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    if let Some(exp) = rest.strip_prefix(['e', 'E']) {
        let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
        return !exp.is_empty() && exp.bytes().all(|b| b.is_ascii_digit());
    }
    rest.is_empty()
}

/// `urn:oid:[0-2](\.(0|[1-9][0-9]*))+`
fn oid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("urn:oid:") else {
        return false;
    };
    let mut arcs = rest.split('.');
    let first_ok = matches!(arcs.next(), Some("0" | "1" | "2"));
    let mut count = 0;
    first_ok
        && arcs.all(|a| {
            count += 1;
            unsigned(a)
        })
        && count > 0
}

/// `urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`
fn uuid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("urn:uuid:") else {
        return false;
    };
    let groups = [8, 4, 4, 4, 12];
    let mut parts = rest.split('-');
    groups.iter().all(|&n| {
        parts.next().is_some_and(|p| {
            p.len() == n
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
    }) && parts.next().is_none()
}

/// `(\s*([0-9a-zA-Z\+/=]){4}\s*)+`: groups of four, whitespace only between groups.
fn base64(s: &str) -> bool {
    let mut count = 0usize;
    for c in s.chars() {
        if is_regex_space(c) {
            if !count.is_multiple_of(4) {
                return false;
            }
        } else if c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=' {
            count += 1;
        } else {
            return false;
        }
    }
    count > 0 && count.is_multiple_of(4)
}

#[derive(Clone, Copy, PartialEq)]
enum Need {
    DateOnly,
    Any,
    Instant,
}

/// The `date`, `dateTime` and `instant` patterns: a year, then optionally
/// month, day and (not for `date`; always for `instant`) a time with a zone.
fn date_time(s: &str, need: Need) -> bool {
    let b = s.as_bytes();
    // ([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000): four digits, not 0000.
    if b.len() < 4 || !b[..4].iter().all(u8::is_ascii_digit) || &b[..4] == b"0000" {
        return false;
    }
    let mut i = 4;
    let partial_ok = need != Need::Instant;
    // -(0[1-9]|1[0-2])
    if i == b.len() {
        return partial_ok;
    }
    if b.get(i) != Some(&b'-') || !two_digits_in(b, i + 1, 1, 12) {
        return false;
    }
    i += 3;
    if i == b.len() {
        return partial_ok;
    }
    // -(0[1-9]|[1-2][0-9]|3[0-1])
    if b.get(i) != Some(&b'-') || !two_digits_in(b, i + 1, 1, 31) {
        return false;
    }
    i += 3;
    if i == b.len() {
        return need != Need::Instant;
    }
    if need == Need::DateOnly || b.get(i) != Some(&b'T') {
        return false;
    }
    i += 1;
    let Some(n) = time(&b[i..]) else {
        return false;
    };
    i += n;
    // (Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))
    match &b[i..] {
        b"Z" => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            let hm = [*h1, *h2, b':', *m1, *m2];
            &hm == b"14:00" || (two_digits_in(&hm, 0, 0, 13) && two_digits_in(&hm, 3, 0, 59))
        }
        _ => false,
    }
}

/// `([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?` at the start of
/// `b`: the length matched.
fn time(b: &[u8]) -> Option<usize> {
    let ok = b.len() >= 8
        && two_digits_in(b, 0, 0, 23)
        && b[2] == b':'
        && two_digits_in(b, 3, 0, 59)
        && b[5] == b':'
        && two_digits_in(b, 6, 0, 60);
    if !ok {
        return None;
    }
    if b.get(8) != Some(&b'.') {
        return Some(8);
    }
    let n = b[9..].iter().take_while(|c| c.is_ascii_digit()).count();
    (n > 0).then_some(9 + n)
}

/// Two ASCII digits at `b[i..i+2]` whose value is within `lo..=hi`.
fn two_digits_in(b: &[u8], i: usize, lo: u8, hi: u8) -> bool {
    match b.get(i..i + 2) {
        Some([d1, d2]) if d1.is_ascii_digit() && d2.is_ascii_digit() => {
            (lo..=hi).contains(&((d1 - b'0') * 10 + (d2 - b'0')))
        }
        _ => false,
    }
}

/// "Dates SHALL be valid dates": the day exists in that month of that year.
/// Only called on text that matched the pattern.
pub(super) fn real_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 10 {
        return true;
    }
    let num = |r: std::ops::Range<usize>| {
        b[r].iter()
            .fold(0u32, |n, d| n * 10 + u32::from(d.wrapping_sub(b'0')))
    };
    let (year, month, day) = (num(0..4), num(5..7), num(8..10));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    day <= days
}

/// The narrative's `div`: XHTML in a `div` with the XHTML namespace. nrls
/// checks this shape, not the full XHTML rules of the narrative (txt-1).
fn xhtml(s: &str) -> bool {
    let s = s.trim();
    s.starts_with("<div")
        && s.ends_with("</div>")
        && s.split_once('>')
            .is_some_and(|(tag, _)| tag.contains("xmlns=\"http://www.w3.org/1999/xhtml\""))
}
