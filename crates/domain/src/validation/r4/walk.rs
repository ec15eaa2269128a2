//! One pass over the JSON text of a DocumentReference, driven by the rule
//! table: no tree is built, keys and strings are borrowed from the input, and
//! the path of the element being read is a chain of stack frames, so a valid
//! pointer is checked without allocating. Only an issue allocates (its
//! expression and sentence).

use std::fmt::{self, Write as _};

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::model::{Primitive, Type};
use super::primitive::{self, Fault};
use super::table::{DOCUMENT_REFERENCE, ELEMENT, EXTENSION, TYPES};
use crate::issue::{ErrorCode, Issue, IssueType};

/// A FHIRPath expression being built: the element, then its parents.
pub(super) struct Path<'p> {
    parent: Option<&'p Path<'p>>,
    step: Step,
}

#[derive(Clone, Copy)]
enum Step {
    Root,
    Name(&'static str),
    Index(usize),
}

impl<'p> Path<'p> {
    pub(super) const ROOT: Path<'static> = Path {
        parent: None,
        step: Step::Root,
    };

    fn child(&'p self, step: Step) -> Path<'p> {
        Path {
            parent: Some(self),
            step,
        }
    }

    /// The expression, with `key` (a JSON name not in the table) appended.
    fn with(&self, key: &str) -> String {
        let mut out = self.to_string();
        out.push('.');
        out.push_str(key);
        out
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent {
            parent.fmt(f)?;
        }
        match self.step {
            Step::Root => f.write_str("DocumentReference"),
            Step::Name(name) => write!(f, ".{name}"),
            Step::Index(i) => write!(f, "[{i}]"),
        }
    }
}

fn issue(issue_type: IssueType, expression: String, diagnostics: String) -> Issue {
    Issue::new(
        ErrorCode::InvalidResource,
        issue_type,
        expression,
        diagnostics,
    )
}

/// The value of one element: an array of items when `many`, else one item.
pub(super) struct Node<'s, 'p> {
    pub(super) issues: &'s mut Vec<Issue>,
    pub(super) path: &'p Path<'p>,
    pub(super) ty: Type,
    pub(super) many: bool,
}

impl Node<'_, '_> {
    fn push(&mut self, issue_type: IssueType, diagnostics: String) {
        self.issues
            .push(issue(issue_type, self.path.to_string(), diagnostics));
    }

    /// A JSON value of the wrong kind (`found`) for this element.
    fn wrong(&mut self, found: &str) {
        let expected = if self.many {
            "an array".to_owned()
        } else {
            expected(self.ty)
        };
        self.push(
            IssueType::Structure,
            format!("must be {expected}, not {found}"),
        );
    }

    /// Reports a value where an array belongs, or false when a single one does.
    fn not_array(&mut self, found: &str) -> bool {
        if self.many {
            self.push(
                IssueType::Structure,
                format!("the element repeats: it must be an array, not {found}"),
            );
        }
        self.many
    }

    fn contained(&mut self) {
        self.push(
            IssueType::NotSupported,
            "contained resources are refused: an NRL pointer refers to everything by identifier"
                .to_owned(),
        );
    }

    fn integer(&mut self, n: i128, found: &str) {
        if self.not_array(found) {
            return;
        }
        match self.ty {
            Type::Primitive(Primitive::Decimal) => {}
            Type::Primitive(p) => match primitive::integer_range(p) {
                Some((lo, hi)) if (i128::from(lo)..=i128::from(hi)).contains(&n) => {}
                Some((lo, hi)) => self.push(
                    IssueType::Value,
                    format!("{n} is not a FHIR {} ({lo} to {hi})", name(p)),
                ),
                None => self.wrong(found),
            },
            _ => self.wrong(found),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a FHIR element")
    }

    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.push(
            IssueType::Structure,
            "null is never a value in FHIR JSON: leave the element out".to_owned(),
        );
        Ok(())
    }

    fn visit_bool<E: de::Error>(mut self, _: bool) -> Result<(), E> {
        if !self.not_array("a boolean") && self.ty != Type::Primitive(Primitive::Boolean) {
            self.wrong("a boolean");
        }
        Ok(())
    }

    fn visit_u64<E: de::Error>(mut self, n: u64) -> Result<(), E> {
        self.integer(i128::from(n), "a number");
        Ok(())
    }

    fn visit_i64<E: de::Error>(mut self, n: i64) -> Result<(), E> {
        self.integer(i128::from(n), "a number");
        Ok(())
    }

    fn visit_f64<E: de::Error>(mut self, n: f64) -> Result<(), E> {
        if self.not_array("a number") {
            return Ok(());
        }
        match self.ty {
            Type::Primitive(Primitive::Decimal) => {}
            Type::Primitive(p) if primitive::integer_range(p).is_some() => self.push(
                IssueType::Value,
                format!("{n} is not a FHIR {}: it must be a whole number", name(p)),
            ),
            _ => self.wrong("a number"),
        }
        Ok(())
    }

    fn visit_str<E: de::Error>(mut self, text: &str) -> Result<(), E> {
        if self.not_array("a string") {
            return Ok(());
        }
        match self.ty {
            Type::Primitive(p) if primitive::is_string_valued(p) => {
                if let Err(fault) = primitive::check_str(p, text) {
                    self.push(IssueType::Value, describe(p, fault, text));
                }
            }
            Type::Resource => self.contained(),
            _ => self.wrong("a string"),
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        if !self.many {
            self.wrong("an array");
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(());
        }
        let mut count = 0;
        loop {
            let path = self.path.child(Step::Index(count));
            let item = Node {
                issues: &mut *self.issues,
                path: &path,
                ty: self.ty,
                many: false,
            };
            if seq.next_element_seed(item)?.is_none() {
                break;
            }
            count += 1;
        }
        if count == 0 {
            self.push(
                IssueType::Structure,
                "an empty array is not a value in FHIR JSON: leave the element out".to_owned(),
            );
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let ty = self.ty;
        match ty {
            _ if self.not_array("an object") => {}
            Type::Complex(index) => return object(self.issues, self.path, index, map),
            Type::Resource => self.contained(),
            Type::Primitive(_) => self.wrong("an object"),
        }
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

/// What an object's keys have named so far, one bit per element of its type.
#[derive(Default)]
struct Seen {
    elements: u64,
    companions: u64,
    keys: usize,
    not_id: usize,
    resource_type: bool,
}

/// The elements of an object of type `TYPES[index]`.
fn object<'de, A: MapAccess<'de>>(
    issues: &mut Vec<Issue>,
    path: &Path<'_>,
    index: u16,
    mut map: A,
) -> Result<(), A::Error> {
    let def = &TYPES[usize::from(index)];
    let root = index == DOCUMENT_REFERENCE;
    let mut seen = Seen::default();
    while let Some(fhir::JsonKey(key)) = map.next_key()? {
        seen.keys += 1;
        if key != "id" {
            seen.not_id += 1;
        }
        if let Some((i, element, variant)) = def.find(&key) {
            let child = path.child(Step::Name(variant.key));
            let bit = 1u64 << i;
            if seen.elements & bit != 0 {
                issues.push(issue(
                    IssueType::Structure,
                    child.to_string(),
                    if element.choice {
                        format!(
                            "{}[x] is a choice: give one of its types, not two",
                            element.name
                        )
                    } else {
                        format!("'{key}' appears twice")
                    },
                ));
            }
            seen.elements |= bit;
            let node = Node {
                issues: &mut *issues,
                path: &child,
                ty: variant.ty,
                many: element.many,
            };
            map.next_value_seed(node)?;
        } else if let Some((i, element, variant)) = key
            .strip_prefix('_')
            .and_then(|base| def.find(base))
            .filter(|(_, _, v)| matches!(v.ty, Type::Primitive(_)))
        {
            // `_status: {"extension": [...]}`: the id and extensions of a
            // primitive value, FHIR JSON's one two-key element.
            let child = path.child(Step::Name(variant.key));
            let bit = 1u64 << i;
            if element.many {
                issues.push(issue(
                    IssueType::NotSupported,
                    path.with(&key),
                    "nrls does not accept extensions on the items of a repeating primitive element"
                        .to_owned(),
                ));
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if seen.companions & bit != 0 {
                issues.push(issue(
                    IssueType::Structure,
                    path.with(&key),
                    format!("'{key}' appears twice"),
                ));
            }
            seen.companions |= bit;
            let node = Node {
                issues: &mut *issues,
                path: &child,
                ty: Type::Complex(ELEMENT),
                many: false,
            };
            map.next_value_seed(node)?;
        } else if root && key == "resourceType" {
            seen.resource_type = true;
            if !map.next_value_seed(ResourceType)? {
                issues.push(issue(
                    IssueType::Value,
                    path.with("resourceType"),
                    "resourceType must be 'DocumentReference'".to_owned(),
                ));
            }
        } else {
            issues.push(issue(
                IssueType::Structure,
                path.with(&key),
                format!("'{key}' is not an element of a FHIR R4 {}", def.name),
            ));
            map.next_value::<IgnoredAny>()?;
        }
    }
    finish(issues, path, index, &seen);
    Ok(())
}

/// The rules on an object as a whole, once all its keys are read.
fn finish(issues: &mut Vec<Issue>, path: &Path<'_>, index: u16, seen: &Seen) {
    let def = &TYPES[usize::from(index)];
    if seen.keys == 0 {
        issues.push(issue(
            IssueType::Structure,
            path.to_string(),
            "an empty object is not a value in FHIR JSON: leave the element out".to_owned(),
        ));
        return;
    }
    if seen.not_id == 0 {
        // ele-1: "All FHIR elements must have a @value or children".
        issues.push(issue(
            IssueType::Invariant,
            path.to_string(),
            "an element must have a value or children other than id (ele-1)".to_owned(),
        ));
    }
    if index == DOCUMENT_REFERENCE && !seen.resource_type {
        issues.push(Issue::required(path.with("resourceType")));
    }
    let present = seen.elements | seen.companions;
    for (i, element) in def.elements.iter().enumerate() {
        if element.min > 0 && present & (1u64 << i) == 0 {
            issues.push(Issue::required(path.with(element.name)));
        }
    }
    if index == EXTENSION {
        let bit = |name: &str| {
            def.elements
                .iter()
                .position(|e| e.name == name)
                .map_or(0, |i| seen.elements & (1u64 << i))
        };
        let (value, nested) = (bit("value") != 0, bit("extension") != 0);
        if value == nested {
            issues.push(issue(
                IssueType::Invariant,
                path.to_string(),
                if value {
                    "an extension has either value[x] or nested extensions, not both (ext-1)"
                } else {
                    "an extension needs a value[x] or nested extensions (ext-1)"
                }
                .to_owned(),
            ));
        }
    }
}

/// Whether `resourceType` is the string "DocumentReference".
struct ResourceType;

impl<'de> DeserializeSeed<'de> for ResourceType {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ResourceType {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a resource type")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == "DocumentReference")
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

/// The primitive's FHIR name, as the definitions spell it.
fn name(p: Primitive) -> &'static str {
    use Primitive::*;
    match p {
        Base64Binary => "base64Binary",
        Boolean => "boolean",
        Canonical => "canonical",
        Code => "code",
        Date => "date",
        DateTime => "dateTime",
        Decimal => "decimal",
        Id => "id",
        Instant => "instant",
        Integer => "integer",
        Markdown => "markdown",
        Oid => "oid",
        PositiveInt => "positiveInt",
        String => "string",
        Time => "time",
        UnsignedInt => "unsignedInt",
        Uri => "uri",
        Url => "url",
        Uuid => "uuid",
        Xhtml => "xhtml",
    }
}

/// What a value of `ty` looks like in JSON, for "must be ..." sentences.
fn expected(ty: Type) -> String {
    match ty {
        Type::Primitive(p @ Primitive::Boolean) => format!("a JSON boolean (FHIR {})", name(p)),
        Type::Primitive(p) if !primitive::is_string_valued(p) => {
            format!("a JSON number (FHIR {})", name(p))
        }
        Type::Primitive(p) => format!("a JSON string (FHIR {})", name(p)),
        Type::Complex(i) => format!("an object (FHIR {})", TYPES[usize::from(i)].name),
        Type::Resource => "absent".to_owned(),
    }
}

/// The sentence for a string that is not a valid `p`.
fn describe(p: Primitive, fault: Fault, text: &str) -> String {
    let shown: String = text.chars().take(40).collect();
    let ellipsis = if shown.len() < text.len() { "..." } else { "" };
    let mut out = String::new();
    let _ = match fault {
        Fault::Empty => write!(
            out,
            "an empty or blank string is not a value in FHIR JSON: leave the element out"
        ),
        Fault::Control => write!(
            out,
            "a FHIR {} must not contain control characters",
            name(p)
        ),
        Fault::TooLong => write!(out, "a FHIR {} is at most 1 MiB", name(p)),
        Fault::Calendar => write!(out, "'{shown}' is not a date on the calendar"),
        Fault::Pattern => write!(
            out,
            "'{shown}{ellipsis}' is not a FHIR {}{}",
            name(p),
            form(p)
        ),
    };
    out
}

/// A reminder of the lexical form, where one helps.
fn form(p: Primitive) -> &'static str {
    use Primitive::*;
    match p {
        Date => " (YYYY, YYYY-MM or YYYY-MM-DD)",
        DateTime => {
            " (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a zone, e.g. 2024-01-31T09:00:00Z)"
        }
        Instant => " (YYYY-MM-DDThh:mm:ss with a zone, e.g. 2024-01-31T09:00:00Z)",
        Time => " (hh:mm:ss)",
        Code => " (no leading, trailing or repeated whitespace)",
        Id => " (1 to 64 letters, digits, '-' and '.')",
        Uri | Url | Canonical => " (no whitespace)",
        Oid => " (urn:oid:...)",
        Uuid => " (urn:uuid: and a lower-case UUID)",
        Base64Binary => " (base64)",
        Xhtml => " (a <div> in the XHTML namespace)",
        _ => "",
    }
}
