//! Pointer ids: `<ODS code>-<local id>`, at most 64 characters.

use std::fmt;

use crate::OdsCode;

/// A pointer id whose shape is valid. The ODS prefix names the custodian.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PointerId(String);

impl PointerId {
    /// Accepts `^[A-Za-z0-9.]+-[A-Za-z0-9]+[A-Za-z0-9_-]*$` of at most 64 characters,
    /// the NRL v3 rule.
    pub fn parse(text: &str) -> Option<Self> {
        if text.is_empty() || text.len() > 64 {
            return None;
        }
        let (prefix, local) = text.split_once('-')?;
        let prefix_ok = !prefix.is_empty()
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.');
        let mut local_bytes = local.bytes();
        let local_ok = local_bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
            && local_bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        (prefix_ok && local_ok).then(|| PointerId(text.to_owned()))
    }

    /// A fresh id for a pointer created by `custodian`.
    pub fn generate(custodian: &OdsCode, local: &str) -> Option<Self> {
        Self::parse(&format!("{custodian}-{local}"))
    }

    /// The ODS code prefix (upper-cased), which names the pointer's custodian.
    pub fn custodian_prefix(&self) -> Option<OdsCode> {
        self.0.split_once('-').and_then(|(p, _)| OdsCode::parse(p))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PointerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shapes() {
        assert!(PointerId::parse("Y05868-1234567892").is_some());
        assert!(PointerId::parse("Y05868-abc_def-9").is_some());
        assert!(PointerId::parse("Y05868-").is_none());
        assert!(PointerId::parse("-abc").is_none());
        assert!(PointerId::parse("Y05868-_abc").is_none());
        assert!(PointerId::parse("Y05868").is_none());
        assert!(PointerId::parse(&format!("Y-{}", "a".repeat(63))).is_none());
        assert!(PointerId::parse(&format!("Y-{}", "a".repeat(62))).is_some());
        assert_eq!(
            PointerId::parse("y05868-1")
                .unwrap()
                .custodian_prefix()
                .unwrap()
                .as_str(),
            "Y05868"
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_respects_length(s in "\\PC{0,80}") {
            if let Some(id) = PointerId::parse(&s) {
                prop_assert!(id.as_str().len() <= 64);
                prop_assert!(id.as_str().contains('-'));
            }
        }
    }
}
