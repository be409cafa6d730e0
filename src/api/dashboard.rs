//! `/`: the dashboard, plain HTML, CSS and JavaScript modules in `assets/dashboard/`,
//! embedded in the binary (nothing to build, no network). The page signs in with an API key
//! and calls the API from the browser like any other client; serving it needs no key.

use super::ApiError;
use super::extract::PathParam;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("../../assets/dashboard/index.html");

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// What `/dashboard/{name}` serves: (name, content type, body).
const ASSETS: [(&str, &str, &str); 8] = [
    ("app.js", JS, include_str!("../../assets/dashboard/app.js")),
    ("api.js", JS, include_str!("../../assets/dashboard/api.js")),
    ("dom.js", JS, include_str!("../../assets/dashboard/dom.js")),
    (
        "chart.js",
        JS,
        include_str!("../../assets/dashboard/chart.js"),
    ),
    (
        "overview.js",
        JS,
        include_str!("../../assets/dashboard/overview.js"),
    ),
    (
        "campaigns.js",
        JS,
        include_str!("../../assets/dashboard/campaigns.js"),
    ),
    (
        "messages.js",
        JS,
        include_str!("../../assets/dashboard/messages.js"),
    ),
    (
        "inbox.js",
        JS,
        include_str!("../../assets/dashboard/inbox.js"),
    ),
];
const STYLE: (&str, &str, &str) = (
    "app.css",
    CSS,
    include_str!("../../assets/dashboard/app.css"),
);

/// Scripts and styles only from Herald itself, no inline ones (the page puts API data in the
/// DOM as text; this is the second line of defence), requests to this Herald alone, and the
/// page never framed by another site.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; \
     base-uri 'none'";

/// Headers every dashboard answer carries. `no-cache`: the browser asks again each load (a
/// few tens of kilobytes), so after an upgrade it never mixes old and new modules.
fn respond(
    content_type: &'static str,
    body: &'static str,
    extra: Option<&'static str>,
) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body,
    )
        .into_response();
    if let Some(policy) = extra {
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(policy),
        );
    }
    response
}

pub(crate) async fn page() -> Response {
    respond("text/html; charset=utf-8", PAGE, Some(POLICY))
}

/// One of the dashboard's scripts or its stylesheet.
pub(crate) async fn asset(PathParam(name): PathParam) -> Result<Response, ApiError> {
    ASSETS
        .iter()
        .chain(std::iter::once(&STYLE))
        .find(|(file, _, _)| *file == name)
        .map(|(_, kind, body)| respond(kind, body, None))
        .ok_or(ApiError::NotFound("dashboard file"))
}
