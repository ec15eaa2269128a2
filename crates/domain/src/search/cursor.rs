//! Opaque page cursors: `v1.<sequence>.<query fingerprint>` in base64url.
//! Sequences only grow, so "entries below sequence N" stays the same set of
//! older entries however many pointers are created while a client pages.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Position after the last entry of a page, bound to the query that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub before_seq: i64,
    pub fingerprint: u64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("v1.{}.{:016x}", self.before_seq, self.fingerprint))
    }

    /// Decodes a cursor; `None` when the text is not one this server issued.
    pub fn decode(text: &str) -> Option<Cursor> {
        if text.len() > 128 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let plain = std::str::from_utf8(&bytes).ok()?;
        let mut parts = plain.split('.');
        if parts.next()? != "v1" {
            return None;
        }
        let before_seq: i64 = parts.next()?.parse().ok()?;
        let fp = parts.next()?;
        if fp.len() != 16 || parts.next().is_some() || before_seq < 0 {
            return None;
        }
        let fingerprint = u64::from_str_radix(fp, 16).ok()?;
        Some(Cursor {
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
