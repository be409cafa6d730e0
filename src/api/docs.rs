//! `/docs`: the interactive API page, Swagger UI (vendored in `assets/swagger-ui/`, embedded
//! in the binary, so it works with no network) on Herald's own `/openapi.json`.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("../../assets/docs.html");
const INIT: &str = include_str!("../../assets/docs.js");
const BUNDLE: &str = include_str!("../../assets/swagger-ui/swagger-ui-bundle.js");
const STYLE: &str = include_str!("../../assets/swagger-ui/swagger-ui.css");

/// Scripts only from Herald itself (the page has no inline script); Swagger UI sets inline
/// styles and shows data: images; requests go to this Herald alone.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}

pub(crate) async fn page() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        PAGE,
    )
        .into_response()
}

pub(crate) async fn init_script() -> Response {
    asset("text/javascript; charset=utf-8", INIT)
}

pub(crate) async fn bundle() -> Response {
    asset("text/javascript; charset=utf-8", BUNDLE)
}

pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}
