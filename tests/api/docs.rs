//! `/docs`: the interactive API page, served from the binary with no network.

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_api_page_and_everything_it_loads_are_served_by_herald_itself() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The page: only same-origin scripts, each of which Herald serves.
    let page = client
        .get(format!("{}/docs", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    let html = page.text().await.unwrap();
    let mut loaded = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for part in html.split(attribute).skip(1) {
            loaded.push(part.split('"').next().unwrap().to_owned());
        }
    }
    assert_eq!(loaded.len(), 3, "a stylesheet and two scripts: {loaded:?}");
    for path in &loaded {
        assert!(path.starts_with("/docs/"), "{path} is Herald's own");
        let asset = client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(asset.status(), 200, "{path}");
        let kind = asset.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            kind.starts_with(crate::helpers::asset_type(path)),
            "{path}: {kind}"
        );
        assert!(
            asset.bytes().await.unwrap().len() > 100,
            "{path} has content"
        );
    }

    // The page describes this Herald: its script loads /openapi.json, which answers.
    let init = client
        .get(format!("{}/docs/docs.js", app.address))
        .send()
        .await
        .unwrap();
    assert!(
        init.text()
            .await
            .unwrap()
            .contains("url: \"/openapi.json\"")
    );
    let doc = client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(doc.status(), 200);
    app.stop().await;
}
