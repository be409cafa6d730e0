//! The dashboard at `/`: served by Herald itself, small, locked down by its
//! Content-Security-Policy; and driven in headless Chromium (Debian's `chromium`, which
//! `.ci/run` installs) by `tests/dashboard/drive.py` with Playwright, installed into
//! `target/browser-venv` the first time (pinned; it drives the system Chromium, no browser
//! download). Screenshots of each step go to `target/test-output/dashboard/`.

use crate::helpers::{API_KEY, spawn_app_with};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Playwright version the script was written against.
const PLAYWRIGHT: &str = "1.65.3";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The budget for the first load: HTML, scripts and styles.
const FIRST_LOAD_MAX_BYTES: usize = 300 * 1024;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's python, with Playwright installed in it (once).
fn python() -> PathBuf {
    crate::helpers::python_with("browser-venv", "playwright", PLAYWRIGHT)
}

/// Same-origin files a text refers to: `src`/`href` attributes of the page, `from "./x.js"`
/// imports of a module.
fn references(text: &str, base: &str) -> Vec<String> {
    let mut found = Vec::new();
    for marker in ["src=\"", "href=\"", "from \"./"] {
        for part in text.split(marker).skip(1) {
            let target = part.split('"').next().unwrap_or_default();
            let path = if marker.starts_with("from") {
                format!("{base}{target}")
            } else {
                target.to_owned()
            };
            if path.starts_with("/dashboard/") {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test]
async fn the_dashboard_and_everything_it_loads_are_served_by_herald_itself_under_300_kb() {
    let app = spawn_app_with("").await;

    // The page: strict policy, no inline script or style allowed.
    let page = app
        .client
        .get(format!("{}/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let policy = headers["content-security-policy"].to_str().unwrap();
    for directive in [
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{directive} in {policy}");
    }
    assert!(!policy.contains("unsafe"), "{policy}");
    let html = page.text().await.unwrap();
    assert!(!html.contains("<script>"), "no inline script");

    // Everything the first load fetches, followed through the modules' imports.
    let mut total = html.len();
    let mut queue = references(&html, "/dashboard/");
    let mut seen: Vec<String> = Vec::new();
    while let Some(path) = queue.pop() {
        if seen.contains(&path) {
            continue;
        }
        let asset = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(asset.status(), 200, "{path}");
        assert_eq!(
            asset.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
        let kind = asset.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            kind.starts_with(crate::helpers::asset_type(&path)),
            "{path}: {kind}"
        );
        let body = asset.text().await.unwrap();
        assert!(
            !body.contains("innerHTML"),
            "{path}: data goes in as text only"
        );
        total += body.len();
        queue.extend(references(&body, "/dashboard/"));
        seen.push(path);
    }
    assert!(seen.len() >= 3, "a stylesheet and scripts: {seen:?}");
    assert!(
        total < FIRST_LOAD_MAX_BYTES,
        "the first load weighs {total} bytes"
    );
    println!(
        "dashboard first load: {total} bytes in {} files",
        seen.len() + 1
    );

    // An unknown file is a 404 in the one error shape.
    let missing = app
        .client
        .get(format!("{}/dashboard/nothing.js", app.address))
        .send()
        .await
        .unwrap();
    crate::helpers::expect_error_shape(missing, 404, "not_found", "unknown dashboard file").await;
    app.stop().await;
}

#[tokio::test]
async fn in_chromium_a_user_signs_in_launches_watches_pauses_searches_and_reads_replies() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)"
    );
    // Arrange: 10 messages/s per sender, so a 300-recipient campaign is still sending when
    // the script pauses it (a 5-recipient one takes half a second).
    let app = spawn_app_with("[providers.mock]\nsender_per_second = 10\n").await;
    let created = app
        .post_json(
            "/templates",
            &json!({"name": "welcome", "body": "Hi {{name}}, welcome to Herald!"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    let script = root().join("tests/dashboard/drive.py");
    let shots = root().join("target/test-output/dashboard");

    // Act and assert: the script asserts each step on what the page shows; its last line
    // counts them.
    let mut command = Command::new(python);
    command
        .arg(script)
        .arg(&app.address)
        .arg(API_KEY)
        .arg(&shots);
    crate::helpers::run_check_script(command, "dashboard: 11 checks passed").await;
    app.stop().await;
}
