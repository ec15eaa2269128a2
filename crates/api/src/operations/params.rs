/// Search parameters: name/value pairs in the order given, from a query
/// string, a `_search` body, or a web form. The operations parse and check
/// them; unknown, repeated or malformed parameters are issues.
#[derive(Debug, Clone, Default)]
pub struct SearchParams(pub Vec<(String, String)>);

impl SearchParams {
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The parameters as received, cursor aside, form-encoded: for paging
    /// links and the audit trail.
    pub fn canonical(&self) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.pairs().filter(|(k, _)| *k != "_cursor") {
            form.append_pair(k, v);
        }
        form.finish()
    }
}
