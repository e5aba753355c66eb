//! The admin web page: plain HTML, CSS and JavaScript built into the binary, served at `/` and
//! `/assets/...` with a strict Content-Security-Policy.
//!
//! There is no build step and nothing is fetched from elsewhere: operators' networks often have
//! no internet. Every response is revalidated (`Cache-Control: no-cache` with a strong `ETag`
//! computed at compile time), so an upgraded binary never serves a stale script.

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::ApiError;
use crate::state::AppState;

/// What the page may load: only its own files and its own API. No inline script or style, no
/// framing, no plugins, no form posts elsewhere.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self'; font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// One file of the page.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    etag: u64,
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {{
        const BYTES: &[u8] = include_bytes!(concat!("../assets/", $name));
        Asset {
            name: $name,
            content_type: $content_type,
            bytes: BYTES,
            etag: fnv1a(BYTES),
        }
    }};
}

const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");

/// Everything under `/assets/`. The script is a set of ES modules that `app.js` imports.
const ASSETS: &[Asset] = &[
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("checklist.js", "text/javascript; charset=utf-8"),
    asset!("deliveries.js", "text/javascript; charset=utf-8"),
    asset!("dom.js", "text/javascript; charset=utf-8"),
    asset!("modal.js", "text/javascript; charset=utf-8"),
    asset!("route.js", "text/javascript; charset=utf-8"),
    asset!("state.js", "text/javascript; charset=utf-8"),
    asset!("webhook-form.js", "text/javascript; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// FNV-1a, 64 bits: enough to tell two versions of a file apart for caching.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// The routes of the page: `/` and `/assets/{name}`. Merge them into the API router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX, &headers)
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match find(&name) {
        Some(asset) => serve(asset, &headers),
        None => ApiError::not_found("asset").into_response(),
    }
}

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// The file, or `304 Not Modified` when the client's copy is current.
fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let etag = format!("\"{:016x}\"", asset.etag);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.bytes.into_response()
    };
    let headers = response.headers_mut();
    if !fresh {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
    }
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(asset: &Asset) -> &'static str {
        std::str::from_utf8(asset.bytes).expect("assets are UTF-8")
    }

    fn get(name: &str, if_none_match: Option<&str>) -> Response {
        let mut headers = HeaderMap::new();
        if let Some(tag) = if_none_match {
            headers.insert(
                header::IF_NONE_MATCH,
                HeaderValue::from_str(tag).expect("header"),
            );
        }
        match name {
            "/" => serve(&INDEX, &headers),
            other => find(other.trim_start_matches("/assets/")).map_or_else(
                || ApiError::not_found("asset").into_response(),
                |a| serve(a, &headers),
            ),
        }
    }

    fn header(response: &Response, name: HeaderName) -> &str {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[test]
    fn every_file_has_its_content_type_and_the_security_headers() {
        for (path, content_type) in [
            ("/", "text/html; charset=utf-8"),
            ("/assets/app.js", "text/javascript; charset=utf-8"),
            ("/assets/webhook-form.js", "text/javascript; charset=utf-8"),
            ("/assets/app.css", "text/css; charset=utf-8"),
            ("/assets/favicon.svg", "image/svg+xml"),
        ] {
            let response = get(path, None);
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(
                header(&response, header::CONTENT_TYPE),
                content_type,
                "{path}"
            );
            assert_eq!(
                header(&response, header::CACHE_CONTROL),
                "no-cache",
                "{path}"
            );
            assert_eq!(
                header(&response, header::X_CONTENT_TYPE_OPTIONS),
                "nosniff",
                "{path}"
            );
            let csp = header(&response, header::CONTENT_SECURITY_POLICY);
            assert!(csp.starts_with("default-src 'self';"), "{path}: {csp}");
            assert!(
                !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
                "{csp}"
            );
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        }
    }

    #[test]
    fn a_current_copy_is_not_sent_again() {
        let first = get("/assets/app.js", None);
        let etag = header(&first, header::ETAG).to_owned();
        assert!(etag.starts_with('"') && etag.len() == 18, "{etag}");
        let again = get(
            "/assets/app.js",
            Some(&format!("\"0000000000000000\", {etag}")),
        );
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header(&again, header::ETAG), etag);
        let stale = get("/assets/app.js", Some("\"0000000000000000\""));
        assert_eq!(stale.status(), StatusCode::OK);
    }

    #[test]
    fn files_have_distinct_etags() {
        let mut tags: Vec<u64> = ASSETS.iter().map(|a| a.etag).chain([INDEX.etag]).collect();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), ASSETS.len() + 1);
    }

    #[test]
    fn unknown_assets_are_not_found() {
        for name in [
            "/assets/nope.js",
            "/assets/..%2Fsrc%2Flib.rs",
            "/assets/index.html",
        ] {
            assert_eq!(get(name, None).status(), StatusCode::NOT_FOUND, "{name}");
        }
    }

    /// The CSP forbids inline script and style: the HTML must not need them.
    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let html = text(&INDEX);
        let lower = html.to_ascii_lowercase();
        let mut rest = lower.as_str();
        while let Some(at) = rest.find("<script") {
            let tag_end = rest[at..].find('>').map_or(rest.len(), |e| at + e);
            assert!(
                rest[at..tag_end].contains("src=\"/assets/"),
                "inline script: {}",
                &rest[at..tag_end]
            );
            assert!(
                rest[tag_end..].starts_with("></script>"),
                "a script element with content"
            );
            rest = &rest[tag_end..];
        }
        assert!(!lower.contains("<style"), "a <style> element");
        assert!(!lower.contains(" style=\""), "a style attribute");
        for handler in [
            " onclick=",
            " onload=",
            " onsubmit=",
            " onchange=",
            " oninput=",
            " onerror=",
            "javascript:",
        ] {
            assert!(!lower.contains(handler), "inline handler {handler}");
        }
    }

    /// Every `/assets/...` the page references is served, and nothing comes from elsewhere.
    #[test]
    fn the_page_references_only_served_assets() {
        let html = text(&INDEX);
        let mut found = 0;
        for piece in html.split("\"/assets/").skip(1) {
            let name = piece.split('"').next().unwrap_or_default();
            assert!(find(name).is_some(), "{name} is referenced but not served");
            found += 1;
        }
        assert!(found >= 3, "the page references its script, style and icon");
        for remote in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
            assert!(
                !html.contains(remote),
                "the page loads something from elsewhere: {remote}"
            );
        }
        let css = text(find("app.css").expect("css"));
        assert!(
            !css.contains("@import") && !css.contains("url("),
            "the stylesheet loads nothing"
        );
    }

    fn scripts() -> impl Iterator<Item = &'static Asset> {
        ASSETS.iter().filter(|a| a.name.ends_with(".js"))
    }

    /// The script never turns API data into HTML: no innerHTML, outerHTML or document.write.
    #[test]
    fn the_script_builds_the_page_with_dom_methods() {
        for script in scripts() {
            let js = text(script);
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
            ] {
                assert!(!js.contains(sink), "{} uses {sink}", script.name);
            }
            assert!(
                !js.contains("localStorage"),
                "{}: the token stays in the session",
                script.name
            );
        }
        assert!(text(find("app.js").expect("app.js")).contains("sessionStorage"));
    }

    /// Every module the scripts import is served (a new module must be listed in `ASSETS`).
    #[test]
    fn every_imported_module_is_served() {
        let mut imports = 0;
        for script in scripts() {
            for piece in text(script).split(" from './").skip(1) {
                let name = piece.split('\'').next().unwrap_or_default();
                assert!(
                    find(name).is_some(),
                    "{} imports {name}, which is not served",
                    script.name
                );
                imports += 1;
            }
        }
        assert!(
            imports >= 7,
            "app.js and its modules import each other ({imports} imports)"
        );
    }
}
