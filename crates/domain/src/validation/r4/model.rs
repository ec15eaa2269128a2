//! The shape of the generated rule table (`table.rs`).

/// A FHIR R4 primitive type: its JSON form and lexical rules are in `primitive.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Primitive {
    Base64Binary,
    Boolean,
    Canonical,
    Code,
    Date,
    DateTime,
    Decimal,
    Id,
    Instant,
    Integer,
    Markdown,
    Oid,
    PositiveInt,
    String,
    Time,
    UnsignedInt,
    Uri,
    Url,
    Uuid,
    Xhtml,
}

/// The type of one element (or of one variant of a choice element).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Primitive(Primitive),
    /// A complex type or backbone element: an index into `table::TYPES`.
    Complex(u16),
    /// A whole resource (`contained`): nrls refuses these.
    Resource,
}

/// One JSON name an element can appear under, and the type it then has.
#[derive(Debug)]
pub struct Variant {
    pub key: &'static str,
    pub ty: Type,
}

/// One element of a type, with its R4 cardinality.
#[derive(Debug)]
pub struct Element {
    /// The element's name (a choice element without its `[x]`).
    pub name: &'static str,
    /// 0 or 1: whether the element is required.
    pub min: u8,
    /// Whether the element repeats (`max = *`), i.e. is a JSON array.
    pub many: bool,
    /// Whether this is a choice element (`value[x]`): one variant at most.
    pub choice: bool,
    pub variants: &'static [Variant],
}

/// A complex type, backbone element or resource: its elements in definition order.
#[derive(Debug)]
pub struct TypeDef {
    pub name: &'static str,
    pub elements: &'static [Element],
}

impl TypeDef {
    /// The element a JSON key names, with its index and the variant.
    pub fn find(&self, key: &str) -> Option<(usize, &'static Element, &'static Variant)> {
        self.elements.iter().enumerate().find_map(|(i, e)| {
            if !key.starts_with(e.name) {
                return None;
            }
            e.variants.iter().find(|v| v.key == key).map(|v| (i, e, v))
        })
    }
}
