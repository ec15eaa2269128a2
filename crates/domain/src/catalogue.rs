//! The pointer-type catalogue: every type NRL v3 accepts and the one category
//! each must carry. Loaded once from the fact table compiled into the binary.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

use crate::systems::SNOMED;

/// Position of a type in the catalogue; small enough to use as a bit index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TypeIndex(pub u8);

/// One pointer type and the category it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointerType {
    pub index: TypeIndex,
    pub system: String,
    pub code: String,
    pub display: String,
    /// SNOMED CT code of the category (system [`SNOMED`]).
    pub category_code: String,
    pub category_display: String,
}

impl PointerType {
    /// `system|code`, the token form used in searches and permissions.
    pub fn key(&self) -> String {
        format!("{}|{}", self.system, self.code)
    }
}

/// All pointer types, looked up by `system|code`.
#[derive(Debug)]
pub struct Catalogue {
    types: Vec<PointerType>,
    by_key: HashMap<String, TypeIndex>,
    categories: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct FactTable {
    categories: HashMap<String, String>,
    types: Vec<FactType>,
}

#[derive(Deserialize)]
struct FactType {
    system: String,
    code: String,
    display: String,
    category: String,
}

static NRL_V3: LazyLock<Catalogue> = LazyLock::new(|| {
    Catalogue::from_json(include_str!("pointer-types.json"))
        .unwrap_or_else(|e| panic!("compiled-in pointer-type catalogue is invalid: {e}"))
});

impl Catalogue {
    /// The NRL v3 (2026) catalogue compiled into nrls.
    pub fn nrl_v3() -> &'static Catalogue {
        &NRL_V3
    }

    fn from_json(text: &str) -> Result<Catalogue, String> {
        let table: FactTable = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if table.types.len() > 64 {
            return Err("at most 64 pointer types fit a type set".into());
        }
        let mut types = Vec::with_capacity(table.types.len());
        let mut by_key = HashMap::new();
        for (i, t) in table.types.into_iter().enumerate() {
            let category_display = table
                .categories
                .get(&t.category)
                .ok_or_else(|| format!("type {} names unknown category {}", t.code, t.category))?
                .clone();
            let index = TypeIndex(i as u8);
            let pointer_type = PointerType {
                index,
                system: t.system,
                code: t.code,
                display: t.display,
                category_code: t.category,
                category_display,
            };
            by_key.insert(pointer_type.key(), index);
            types.push(pointer_type);
        }
        let mut categories: Vec<(String, String)> = table.categories.into_iter().collect();
        categories.sort();
        Ok(Catalogue {
            types,
            by_key,
            categories,
        })
    }

    pub fn get(&self, index: TypeIndex) -> Option<&PointerType> {
        self.types.get(usize::from(index.0))
    }

    /// Looks a type up by its system and code.
    pub fn find(&self, system: &str, code: &str) -> Option<&PointerType> {
        self.find_key(&format!("{system}|{code}"))
    }

    /// Looks a type up by its `system|code` token.
    pub fn find_key(&self, key: &str) -> Option<&PointerType> {
        self.by_key.get(key).and_then(|i| self.get(*i))
    }

    /// True when `code` (in [`SNOMED`]) is a category of the catalogue.
    pub fn is_category(&self, system: &str, code: &str) -> bool {
        system == SNOMED && self.categories.iter().any(|(c, _)| c == code)
    }

    pub fn category_display(&self, code: &str) -> Option<&str> {
        self.categories
            .iter()
            .find(|(c, _)| c == code)
            .map(|(_, d)| d.as_str())
    }

    pub fn types(&self) -> &[PointerType] {
        &self.types
    }

    /// Category codes with their display text, sorted by code.
    pub fn categories(&self) -> &[(String, String)] {
        &self.categories
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_its_category() {
        let c = Catalogue::nrl_v3();
        assert_eq!(c.types().len(), 18);
        let crisis = c.find(SNOMED, "736253002").unwrap();
        assert_eq!(crisis.category_code, "734163000");
        assert_eq!(
            c.find_key("https://nicip.nhs.uk|MAXIB")
                .unwrap()
                .category_code,
            "103693007"
        );
        assert!(c.find(SNOMED, "736253001").is_none());
        assert!(c.is_category(SNOMED, "1102421000000108"));
        assert!(!c.is_category("urn:other", "1102421000000108"));
    }

    #[test]
    fn rejects_a_type_with_unknown_category() {
        let bad =
            r#"{"categories":{},"types":[{"system":"s","code":"c","display":"d","category":"x"}]}"#;
        assert!(Catalogue::from_json(bad).is_err());
    }
}
