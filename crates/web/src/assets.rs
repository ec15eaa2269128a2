//! Static assets compiled into the binary: the vendored NHS.UK frontend
//! (`assets/nhsuk-frontend/`, refreshed by `scripts/refresh-nhsuk-frontend`)
//! and the viewer's own enhancement script. They are served under
//! `/assets/<tag>/…`, where the tag is a hash of every embedded file: a new
//! build changes the URL, so browsers may cache them for a year.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// One embedded file: its path under `/assets/<tag>/` and its bytes.
pub struct Asset {
    pub path: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! vendored {
    ($($file:literal),* $(,)?) => {
        &[$(Asset {
            path: concat!("nhsuk-frontend/", $file),
            bytes: include_bytes!(concat!("../assets/nhsuk-frontend/", $file)),
        }),*]
    };
}

/// The vendored NHS.UK frontend files; MANIFEST.sha256 lists the same set.
pub static VENDORED: &[Asset] = vendored![
    "LICENSE",
    "VERSION",
    "nhsuk-frontend.min.css",
    "nhsuk-frontend.min.js",
    "images/favicon.ico",
    "images/favicon.svg",
    "images/nhsuk-icon-180.png",
    "images/nhsuk-icon-192.png",
    "images/nhsuk-icon-512.png",
    "images/nhsuk-icon-arrow-down-circle.svg",
    "images/nhsuk-icon-arrow-down.svg",
    "images/nhsuk-icon-arrow-left-circle.svg",
    "images/nhsuk-icon-arrow-left.svg",
    "images/nhsuk-icon-arrow-right-circle.svg",
    "images/nhsuk-icon-arrow-right.svg",
    "images/nhsuk-icon-arrow-up-circle.svg",
    "images/nhsuk-icon-arrow-up-down.svg",
    "images/nhsuk-icon-arrow-up.svg",
    "images/nhsuk-icon-chevron-down-circle.svg",
    "images/nhsuk-icon-chevron-left-circle.svg",
    "images/nhsuk-icon-chevron-right-circle.svg",
    "images/nhsuk-icon-chevron-up-circle.svg",
    "images/nhsuk-icon-cross.svg",
    "images/nhsuk-icon-mask.svg",
    "images/nhsuk-icon-minus.svg",
    "images/nhsuk-icon-plus.svg",
    "images/nhsuk-icon-search.svg",
    "images/nhsuk-icon-tick.svg",
    "images/nhsuk-icon-user.svg",
    "images/nhsuk-opengraph-image.png",
];

/// The viewer's own files.
pub static OWN: &[Asset] = &[Asset {
    path: "app.js",
    bytes: include_bytes!("../assets/app.js"),
}];

/// The hashes the refresh script wrote.
pub const MANIFEST: &str = include_str!("../assets/nhsuk-frontend/MANIFEST.sha256");

/// The vendored NHS.UK frontend version.
pub fn frontend_version() -> &'static str {
    std::str::from_utf8(find("nhsuk-frontend/VERSION").map_or(&[][..], |a| a.bytes))
        .unwrap_or("")
        .trim()
}

/// Changes whenever any embedded file does: the cache-busting path segment.
pub static TAG: LazyLock<String> = LazyLock::new(|| {
    let mut hash = Sha256::new();
    for asset in VENDORED.iter().chain(OWN) {
        hash.update(asset.path.as_bytes());
        hash.update(asset.bytes);
    }
    hash.finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
});

/// `/assets/<tag>`: what templates prefix asset paths with.
pub fn base() -> String {
    format!("/assets/{}", *TAG)
}

fn find(path: &str) -> Option<&'static Asset> {
    VENDORED.iter().chain(OWN).find(|a| a.path == path)
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "text/plain; charset=utf-8",
    }
}

/// `GET /assets/{tag}/{*path}`. An old tag still gets today's file (a page
/// cached across a deploy keeps its styles) but is not cached for long.
pub async fn serve(Path((tag, path)): Path<(String, String)>) -> Response {
    let Some(asset) = find(&path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let cache = if tag == *TAG {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(&path)),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        asset.bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn embedded_files_match_the_manifest_exactly() {
        let mut listed = Vec::new();
        for line in MANIFEST.lines().filter(|l| !l.trim().is_empty()) {
            let (hash, file) = line.split_once("  ").expect("sha256sum line");
            let path = format!("nhsuk-frontend/{file}");
            let asset = find(&path).unwrap_or_else(|| panic!("{path} is not embedded"));
            assert_eq!(
                hex(asset.bytes),
                hash,
                "{path} differs from MANIFEST.sha256"
            );
            listed.push(path);
        }
        for asset in VENDORED {
            assert!(
                listed.contains(&asset.path.to_owned()),
                "{} is not in the manifest",
                asset.path
            );
        }
        assert_eq!(frontend_version(), "10.6.1");
    }

    #[test]
    fn the_stylesheet_asks_nothing_from_other_origins() {
        let css = std::str::from_utf8(find("nhsuk-frontend/nhsuk-frontend.min.css").unwrap().bytes)
            .unwrap();
        assert!(!css.contains("@font-face"));
        assert!(
            !css.contains("https://"),
            "an off-site URL would break the CSP"
        );
    }
}
