//! What an organisation, through one app, may do: its roles and the pointer
//! types it may produce or consume. Types are matched on system *and* code.

use crate::catalogue::{Catalogue, TypeIndex};

/// The two ways an app acts for an organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Producer,
    Consumer,
}

/// A set of pointer types, one bit per catalogue entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TypeSet(u64);

impl TypeSet {
    pub const EMPTY: TypeSet = TypeSet(0);

    pub fn all(catalogue: &Catalogue) -> TypeSet {
        catalogue
            .types()
            .iter()
            .fold(TypeSet::EMPTY, |s, t| s.with(t.index))
    }

    pub fn with(self, index: TypeIndex) -> TypeSet {
        TypeSet(self.0 | (1u64 << index.0))
    }

    pub fn contains(self, index: TypeIndex) -> bool {
        self.0 & (1u64 << index.0) != 0
    }

    pub fn intersect(self, other: TypeSet) -> TypeSet {
        TypeSet(self.0 & other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn bits(self) -> u64 {
        self.0
    }
}

/// Types an organisation may use in one role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    pub producer: TypeSet,
    pub consumer: TypeSet,
}

/// A permission entry that names no catalogue type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a pointer type of the catalogue (expected system|code)")]
pub struct UnknownType(pub String);

impl Permissions {
    /// Builds a type set from `system|code` entries, as NRL writes permissions.
    pub fn type_set(catalogue: &Catalogue, entries: &[String]) -> Result<TypeSet, UnknownType> {
        entries.iter().try_fold(TypeSet::EMPTY, |set, entry| {
            catalogue
                .find_key(entry)
                .map(|t| set.with(t.index))
                .ok_or_else(|| UnknownType(entry.clone()))
        })
    }

    pub fn for_role(&self, role: Role) -> TypeSet {
        match role {
            Role::Producer => self.producer,
            Role::Consumer => self.consumer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_and_code_both_matter() {
        let c = Catalogue::nrl_v3();
        let set = Permissions::type_set(c, &["http://snomed.info/sct|736253002".into()]).unwrap();
        let crisis = c.find_key("http://snomed.info/sct|736253002").unwrap();
        let respect = c
            .find_key("http://snomed.info/sct|1382601000000107")
            .unwrap();
        assert!(set.contains(crisis.index));
        assert!(!set.contains(respect.index));
        assert!(Permissions::type_set(c, &["http://snomed.info/sct|736253001".into()]).is_err());
        assert_eq!(TypeSet::all(c).bits().count_ones(), 18);
    }
}
