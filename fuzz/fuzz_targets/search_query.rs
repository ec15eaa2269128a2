//! A search's query string (GET) or form body (POST `_search`), both
//! audiences. An accepted query must fingerprint, and its cursor round-trip.
#![no_main]

use domain::catalogue::Catalogue;
use domain::search::{Audience, Cursor, SearchLimits, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let audience = if first % 2 == 0 {
        Audience::Consumer
    } else {
        Audience::Producer
    };
    let pairs: Vec<(String, String)> = form_urlencoded::parse(rest)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let catalogue = Catalogue::nrl_v3();
    let borrowed = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    if let Ok(query) = parse(borrowed, audience, SearchLimits::default(), catalogue) {
        let fingerprint = query.fingerprint();
        let cursor = Cursor {
            before_seq: 1,
            fingerprint,
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
    }
});
