//! Opaque page cursors: `<tag>.<sequence>.<query fingerprint>` in base64url,
//! the one encoding of every paged search (pointers `v1`, the audit trail
//! `a1`). Sequences only grow, so "entries below sequence N" stays the same
//! set of older entries however many are written while a client pages.

use std::fmt::Display;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Encodes a position: `tag` names the kind of cursor (and its version).
pub fn encode_position(tag: &str, before_seq: impl Display, fingerprint: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{tag}.{before_seq}.{fingerprint:016x}"))
}

/// Decodes a position encoded with `tag`; `None` when the text is not one
/// this server issued.
pub fn decode_position<S: FromStr>(tag: &str, text: &str) -> Option<(S, u64)> {
    if text.len() > 128 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    let plain = std::str::from_utf8(&bytes).ok()?;
    let mut parts = plain.split('.');
    if parts.next()? != tag {
        return None;
    }
    let before_seq: S = parts.next()?.parse().ok()?;
    let fp = parts.next()?;
    if fp.len() != 16 || parts.next().is_some() {
        return None;
    }
    Some((before_seq, u64::from_str_radix(fp, 16).ok()?))
}

/// The tag of pointer-search cursors.
const TAG: &str = "v1";

/// Position after the last entry of a page, bound to the query that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub before_seq: i64,
    pub fingerprint: u64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        encode_position(TAG, self.before_seq, self.fingerprint)
    }

    /// Decodes a cursor; `None` when the text is not one this server issued.
    pub fn decode(text: &str) -> Option<Cursor> {
        let (before_seq, fingerprint) = decode_position::<i64>(TAG, text)?;
        (before_seq >= 0).then_some(Cursor {
            before_seq,
            fingerprint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let c = Cursor {
            before_seq: 42,
            fingerprint: 0xdead_beef,
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("not-a-cursor"), None);
        assert_eq!(Cursor::decode(""), None);
    }

    proptest! {
        #[test]
        fn decode_never_panics(s in "\\PC{0,200}") {
            let _ = Cursor::decode(&s);
        }

        #[test]
        fn any_cursor_round_trips(seq in 0i64..i64::MAX, fp in any::<u64>()) {
            let c = Cursor { before_seq: seq, fingerprint: fp };
            prop_assert_eq!(Cursor::decode(&c.encode()), Some(c));
        }
    }
}
