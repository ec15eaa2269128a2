//! ODS organisation codes.

use std::fmt;

/// An ODS organisation code: 1 to 32 letters, digits or dots, kept in upper case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OdsCode(String);

impl OdsCode {
    pub fn parse(text: &str) -> Option<Self> {
        let ok = !text.is_empty()
            && text.len() <= 32
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
            && !text.starts_with('.');
        ok.then(|| OdsCode(text.to_ascii_uppercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OdsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        assert_eq!(OdsCode::parse("y05868").unwrap().as_str(), "Y05868");
        assert!(OdsCode::parse("RX1.ABC").is_some());
        assert!(OdsCode::parse("").is_none());
        assert!(OdsCode::parse("A B").is_none());
        assert!(OdsCode::parse("A-B").is_none());
    }
}
