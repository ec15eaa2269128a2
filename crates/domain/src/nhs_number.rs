//! NHS number: ten digits with a Modulus 11 check digit.

use std::fmt;

/// A syntactically valid NHS number. Holding one is proof the check digit passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NhsNumber(u64);

/// Why a string is not an NHS number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NhsNumberError {
    #[error("an NHS number is exactly 10 digits")]
    Format,
    #[error("the NHS number check digit is wrong")]
    CheckDigit,
}

impl NhsNumber {
    /// Parses ten ASCII digits and verifies the Modulus 11 check digit.
    pub fn parse(text: &str) -> Result<Self, NhsNumberError> {
        let bytes = text.as_bytes();
        if bytes.len() != 10 || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(NhsNumberError::Format);
        }
        let digits: [u32; 10] = std::array::from_fn(|i| u32::from(bytes[i] - b'0'));
        if check_digit(&digits[..9]) != Some(digits[9]) {
            return Err(NhsNumberError::CheckDigit);
        }
        Ok(NhsNumber(
            digits.iter().fold(0u64, |acc, d| acc * 10 + u64::from(*d)),
        ))
    }

    /// Builds a valid NHS number from its first nine digits, if one exists
    /// (a check value of 10 means those nine digits are never issued).
    pub fn from_stem(stem: u32) -> Option<Self> {
        if stem > 999_999_999 {
            return None;
        }
        let mut digits = [0u32; 9];
        let mut rest = stem;
        for slot in digits.iter_mut().rev() {
            *slot = rest % 10;
            rest /= 10;
        }
        let check = check_digit(&digits)?;
        Some(NhsNumber(u64::from(stem) * 10 + u64::from(check)))
    }

    /// The number as an integer (always below 10^10).
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// Rebuilds a number previously produced by [`NhsNumber::as_u64`].
    pub fn from_u64(n: u64) -> Result<Self, NhsNumberError> {
        if n >= 10_000_000_000 {
            return Err(NhsNumberError::Format);
        }
        // Arithmetic rather than format-and-parse: stores call this for every
        // row they decode, on the search hot path.
        let mut digits = [0u32; 10];
        let mut rest = n;
        for slot in digits.iter_mut().rev() {
            *slot = (rest % 10) as u32;
            rest /= 10;
        }
        match check_digit(&digits[..9]) {
            Some(check) if check == digits[9] => Ok(NhsNumber(n)),
            _ => Err(NhsNumberError::CheckDigit),
        }
    }

    /// Numbers starting 999 are never issued: the only ones test data may use.
    pub fn is_test_range(self) -> bool {
        self.0 / 10_000_000 == 999
    }

    /// The number with all but the last four digits hidden, for logs.
    pub fn masked(self) -> String {
        format!("******{:04}", self.0 % 10_000)
    }
}

fn check_digit(first_nine: &[u32]) -> Option<u32> {
    let sum: u32 = first_nine
        .iter()
        .zip((2..=10).rev())
        .map(|(d, w)| d * w)
        .sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        n => Some(n),
    }
}

impl fmt::Display for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:010}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_numbers() {
        assert!(NhsNumber::parse("9000000009").is_ok());
        assert!(NhsNumber::parse("9999999999").is_ok());
        assert_eq!(
            NhsNumber::parse("9000000001"),
            Err(NhsNumberError::CheckDigit)
        );
        assert_eq!(NhsNumber::parse("900000000"), Err(NhsNumberError::Format));
        assert_eq!(NhsNumber::parse("90000000a9"), Err(NhsNumberError::Format));
        assert_eq!(NhsNumber::parse("９000000009"), Err(NhsNumberError::Format));
        assert_eq!(
            NhsNumber::from_u64(9_999_999_998),
            Err(NhsNumberError::CheckDigit)
        );
        assert_eq!(
            NhsNumber::from_u64(10_000_000_000),
            Err(NhsNumberError::Format)
        );
        assert_eq!(
            NhsNumber::from_u64(9_000_000_009).map(|n| n.to_string()),
            Ok("9000000009".into())
        );
    }

    #[test]
    fn masks_all_but_last_four() {
        let n = NhsNumber::parse("9999999999").unwrap();
        assert_eq!(n.masked(), "******9999");
        assert!(n.is_test_range());
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,16}") {
            let _ = NhsNumber::parse(&s);
        }

        #[test]
        fn from_stem_round_trips(stem in 0u32..1_000_000_000) {
            if let Some(n) = NhsNumber::from_stem(stem) {
                prop_assert_eq!(NhsNumber::parse(&n.to_string()), Ok(n));
                prop_assert_eq!(NhsNumber::from_u64(n.as_u64()), Ok(n));
            }
        }

        #[test]
        fn one_changed_digit_is_detected(stem in 0u32..1_000_000_000, pos in 0usize..10, delta in 1u8..10) {
            if let Some(n) = NhsNumber::from_stem(stem) {
                let mut bytes = n.to_string().into_bytes();
                bytes[pos] = b'0' + (bytes[pos] - b'0' + delta) % 10;
                let changed = String::from_utf8(bytes).unwrap();
                prop_assert!(NhsNumber::parse(&changed).is_err());
            }
        }
    }
}
