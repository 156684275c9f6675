//! GraphiQL at `GET /graphql` (a browser without a query), served whole by the gateway: the
//! page, GraphiQL 3.9.0 and React 18.3.1's production builds from npm (pinned, with their
//! licenses, in `assets/graphiql/`, refreshed by `scripts/graphiql/update.sh`), and a small
//! script of ours that mounts it. Nothing comes from a CDN: the page works offline, and where
//! people paste access tokens only code the operator ships can run. The page's
//! Content-Security-Policy allows scripts from this origin only, no inline script, and no
//! framing.

use crate::ground::security_headers;
use axum::{
    extract::Path,
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};

/// Where the assets are served; the version in the path lets browsers keep them for good.
pub(crate) const ASSETS: &str = "/assets/graphiql/3.9.0";

/// The page's policy: scripts, styles and requests to this origin only. GraphiQL's editor sets
/// inline styles, so styles (not scripts) may be inline.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The embedded files: name, media type, bytes.
const FILES: [(&str, &str, &[u8]); 8] = [
    (
        "react.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql/react.production.min.js"),
    ),
    (
        "react-dom.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql/react-dom.production.min.js"),
    ),
    (
        "graphiql.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql/graphiql.min.js"),
    ),
    (
        "graphiql.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/graphiql/graphiql.min.css"),
    ),
    (
        "init.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql/init.js"),
    ),
    (
        "page.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/graphiql/page.css"),
    ),
    (
        "LICENSE.graphiql",
        "text/plain; charset=utf-8",
        include_bytes!("../assets/graphiql/LICENSE.graphiql"),
    ),
    (
        "LICENSE.react",
        "text/plain; charset=utf-8",
        include_bytes!("../assets/graphiql/LICENSE.react"),
    ),
];

/// The GraphiQL page's HTML: no inline script, every file from [`ASSETS`].
fn html() -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Taxbridge GraphiQL</title>
<link rel="stylesheet" href="{ASSETS}/graphiql.min.css">
<link rel="stylesheet" href="{ASSETS}/page.css">
</head>
<body>
<div id="graphiql"><p class="loading">Loading GraphiQL…</p></div>
<script src="{ASSETS}/react.production.min.js"></script>
<script src="{ASSETS}/react-dom.production.min.js"></script>
<script src="{ASSETS}/graphiql.min.js"></script>
<script src="{ASSETS}/init.js"></script>
</body>
</html>
"#
    )
}

/// The GraphiQL page.
pub(crate) fn page() -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        html(),
    )
        .into_response();
    security_headers(&mut response, CONTENT_SECURITY_POLICY);
    response
}

/// `GET /assets/graphiql/3.9.0/{name}`.
pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(file, _, _)| *file == name) {
        Some((_, media, bytes)) => {
            let mut response = (
                [
                    (header::CONTENT_TYPE, *media),
                    (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                ],
                *bytes,
            )
                .into_response();
            response.headers_mut().insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            response
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_embedded_files_from_this_origin() {
        let page = page();
        let csp = page.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("ascii");
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(!csp.contains("unsafe-eval"));
        assert_eq!(page.headers()[header::X_FRAME_OPTIONS], "DENY");
        let html = html();
        let referenced: Vec<&str> = html
            .split(&format!("\"{ASSETS}/"))
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        assert_eq!(referenced.len(), 6, "{html}");
        for name in referenced {
            assert!(FILES.iter().any(|(file, _, _)| *file == name), "{name}");
        }
        assert!(
            !html.contains("http://") && !html.contains("https://") && !html.contains("//unpkg")
        );
        assert!(!html.contains("<script>"), "no inline script");
    }

    #[test]
    fn the_vendored_builds_are_production_builds_that_call_nothing_outside() {
        for (name, _, bytes) in FILES {
            let text = String::from_utf8_lossy(bytes);
            assert!(!text.contains("react.development"), "{name}");
            assert!(
                !text.contains("//unpkg.com") && !text.contains("//cdn.jsdelivr.net"),
                "{name}"
            );
        }
    }
}
