//! Search-set bundles are written as text around the stored pointer JSON, so a
//! search never parses or re-serialises a pointer.

use serde::Serialize;

/// One entry of a search-set: the resource's full URL and its JSON, verbatim.
pub struct BundleEntry<'a> {
    pub full_url: &'a str,
    pub resource_json: &'a str,
}

/// Writes a FHIR `Bundle` of type `searchset` into one pre-sized string.
pub struct SearchsetBuilder {
    out: String,
    entries: usize,
}

#[derive(Serialize)]
struct Link<'a> {
    relation: &'a str,
    url: &'a str,
}

impl SearchsetBuilder {
    /// Starts a bundle; `capacity` is a hint for the final size in bytes.
    pub fn new(total: u64, self_url: &str, next_url: Option<&str>, capacity: usize) -> Self {
        let mut out = String::with_capacity(capacity + 256);
        out.push_str(r#"{"resourceType":"Bundle","type":"searchset","total":"#);
        out.push_str(&total.to_string());
        out.push_str(r#","link":["#);
        push_json(
            &mut out,
            &Link {
                relation: "self",
                url: self_url,
            },
        );
        if let Some(next) = next_url {
            out.push(',');
            push_json(
                &mut out,
                &Link {
                    relation: "next",
                    url: next,
                },
            );
        }
        out.push(']');
        SearchsetBuilder { out, entries: 0 }
    }

    pub fn push(&mut self, entry: BundleEntry<'_>) {
        self.out.push_str(if self.entries == 0 {
            r#","entry":["#
        } else {
            ","
        });
        self.out.push_str(r#"{"fullUrl":"#);
        push_json(&mut self.out, entry.full_url);
        self.out.push_str(r#","resource":"#);
        self.out.push_str(entry.resource_json);
        self.out.push_str(r#","search":{"mode":"match"}}"#);
        self.entries += 1;
    }

    pub fn finish(mut self) -> String {
        if self.entries > 0 {
            self.out.push(']');
        }
        self.out.push('}');
        self.out
    }
}

fn push_json<T: Serialize + ?Sized>(out: &mut String, value: &T) {
    // Serialising a &str or a plain struct of &str into JSON cannot fail.
    if let Ok(text) = serde_json::to_string(value) {
        out.push_str(&text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn builds_valid_json_with_entries_and_links() {
        let mut b = SearchsetBuilder::new(2, "http://h/x?a=\"b\"", Some("http://h/n"), 64);
        b.push(BundleEntry {
            full_url: "http://h/1",
            resource_json: r#"{"id":"1"}"#,
        });
        b.push(BundleEntry {
            full_url: "http://h/2",
            resource_json: r#"{"id":"2"}"#,
        });
        let v: Value = serde_json::from_str(&b.finish()).unwrap();
        assert_eq!(v["total"], 2);
        assert_eq!(v["entry"][1]["resource"]["id"], "2");
        assert_eq!(v["link"][0]["url"], "http://h/x?a=\"b\"");
        assert_eq!(v["link"][1]["relation"], "next");
    }

    #[test]
    fn empty_bundle_has_no_entry_array() {
        let v: Value =
            serde_json::from_str(&SearchsetBuilder::new(0, "s", None, 0).finish()).unwrap();
        assert_eq!(v["total"], 0);
        assert!(v.get("entry").is_none());
    }
}
