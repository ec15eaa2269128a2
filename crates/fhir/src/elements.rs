//! Reading a FHIR object whose modelled elements are struct fields and whose
//! other elements go to its `extra` map.
//!
//! serde's derive would do this with `#[serde(flatten)]`, but a flattened
//! struct first buffers every key and value of the object into an
//! intermediate tree (an allocation per node) and then reads the fields back
//! out of it, at every level of nesting. For a pointer that made the typed
//! parse cost as much as the whole R4 walk of its text (`scripts/bench-micro
//! import-line`; docs/performance.md). [`elements!`] reads each value straight
//! into its field instead. Serialising keeps the derive: flattening costs
//! nothing on that side.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Visitor};

/// An object key, borrowed from the input unless it had escapes (also what
/// the R4 walk of a pointer's text reads keys with).
pub struct JsonKey<'de>(pub Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for JsonKey<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        KeySeed.deserialize(d)
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = JsonKey<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<JsonKey<'de>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = JsonKey<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an element name")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<JsonKey<'de>, E> {
        Ok(JsonKey(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<JsonKey<'de>, E> {
        Ok(JsonKey(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<JsonKey<'de>, E> {
        Ok(JsonKey(Cow::Owned(v)))
    }
}

/// `impl Deserialize` for a `Default` struct with an `extra: Extra` field:
/// `elements!(Coding { system: "system", code: "code" })` reads the JSON key
/// `"system"` into `system`, and so on; every other key goes to `extra`.
/// A modelled element given twice is an error (as the derive makes it); an
/// unmodelled one given twice keeps its last value (as the derive did).
macro_rules! elements {
    ($ty:ident { $($field:ident: $key:literal),* $(,)? }) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct ObjectVisitor;

                impl<'de> serde::de::Visitor<'de> for ObjectVisitor {
                    type Value = $ty;

                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str(concat!("a FHIR ", stringify!($ty), " object"))
                    }

                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<$ty, A::Error> {
                        let mut out = $ty::default();
                        $(let mut $field = false;)*
                        while let Some($crate::elements::JsonKey(key)) = map.next_key()? {
                            match key.as_ref() {
                                $($key => {
                                    if std::mem::replace(&mut $field, true) {
                                        return Err(serde::de::Error::duplicate_field($key));
                                    }
                                    out.$field = map.next_value()?;
                                })*
                                _ => {
                                    let value: serde_json::Value = map.next_value()?;
                                    out.extra.insert(key.into_owned(), value);
                                }
                            }
                        }
                        Ok(out)
                    }
                }

                deserializer.deserialize_map(ObjectVisitor)
            }
        }
    };
}

pub(crate) use elements;

#[cfg(test)]
mod tests {
    use crate::{Coding, DocumentReference};

    #[test]
    fn a_modelled_element_given_twice_is_an_error() {
        let e = serde_json::from_str::<Coding>(r#"{"code":"a","code":"b"}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate field `code`"), "{e}");
    }

    #[test]
    fn null_reads_as_absent_and_escaped_keys_are_matched() {
        let c: Coding = serde_json::from_str(r#"{"co\u0064e":"a","system":null}"#).unwrap();
        assert_eq!(c.code.as_deref(), Some("a"));
        assert_eq!(c.system, None);
        assert!(c.extra.is_empty());
    }

    #[test]
    fn a_wrong_type_names_what_was_expected() {
        let e = serde_json::from_str::<DocumentReference>(r#"{"status":5}"#).unwrap_err();
        assert!(e.to_string().contains("expected a string"), "{e}");
        let e = serde_json::from_str::<DocumentReference>(r#"[1]"#).unwrap_err();
        assert!(
            e.to_string().contains("a FHIR DocumentReference object"),
            "{e}"
        );
    }
}
