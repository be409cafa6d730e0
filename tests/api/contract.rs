//! The API contract (issue 7): what the framework refuses before a handler runs answers in
//! the one error shape, and `/openapi.json` declares what schemathesis needs to hold Herald
//! to it (`.ci/contract` runs schemathesis itself).

use crate::helpers::{expect_error_shape, spawn_app};
use reqwest::Method;
use serde_json::Value;

#[tokio::test]
async fn rejections_before_a_handler_answer_in_the_error_shape() {
    // Arrange
    let app = spawn_app().await;
    // (case, method, path under /api/messaging or absolute, status, code)
    let cases: Vec<(&str, Method, String, u16, &str)> = vec![
        (
            "a path parameter that is not UTF-8",
            Method::GET,
            app.url("/message/%FF%FE/status/"),
            400,
            "invalid_field",
        ),
        (
            "a campaign id that is not UTF-8",
            Method::POST,
            app.url("/campaigns/%FF%FE/pause"),
            400,
            "invalid_field",
        ),
        (
            "an opt-out number that is not UTF-8",
            Method::DELETE,
            app.url("/opt-outs/%FF%FE"),
            400,
            "invalid_field",
        ),
        (
            "an unknown route",
            Method::GET,
            app.url("/no-such-endpoint/"),
            404,
            "not_found",
        ),
        (
            "an unknown route outside the API",
            Method::GET,
            format!("{}/%FF%FE", app.address),
            404,
            "not_found",
        ),
        (
            "a query string that does not parse (limit not a number)",
            Method::GET,
            app.url("/campaigns?limit=many"),
            400,
            "invalid_field",
        ),
        (
            "a query string that does not parse (days not a number)",
            Method::GET,
            app.url("/stats/?days=%FF"),
            400,
            "invalid_field",
        ),
        (
            "a query string that does not parse (after not a number)",
            Method::GET,
            app.url("/campaigns/cmp_01JDZ8K5Q6V0X3M2N4P7R9S1T2/rejections?after=x"),
            400,
            "invalid_field",
        ),
    ];

    for (case, method, url, status, code) in cases {
        // Act
        let response = app
            .client
            .request(method, &url)
            .bearer_auth(&app.api_key)
            .send()
            .await
            .expect("the request is sent");

        // Assert
        expect_error_shape(response, status, code, case).await;
    }
}

#[tokio::test]
async fn a_wrong_method_is_405_in_the_error_shape_with_allow() {
    // Arrange
    let app = spawn_app().await;
    // (case, method, path, a method Allow must list)
    let cases = [
        (
            "DELETE on send-message",
            Method::DELETE,
            "/send-message/",
            "POST",
        ),
        (
            "PUT on a campaign",
            Method::PUT,
            "/campaigns/cmp_01JDZ8K5Q6V0X3M2N4P7R9S1T2",
            "GET",
        ),
        (
            "POST on the balance",
            Method::POST,
            "/account/balance/",
            "GET",
        ),
    ];

    for (case, method, path, allowed) in cases {
        // Act
        let response = app
            .client
            .request(method, app.url(path))
            .bearer_auth(&app.api_key)
            .send()
            .await
            .expect("the request is sent");

        // Assert
        let allow = response
            .headers()
            .get(reqwest::header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(allow.contains(allowed), "{case}: Allow {allow:?}");
        expect_error_shape(response, 405, "method_not_allowed", case).await;
    }
}

async fn openapi(app: &crate::helpers::TestApp) -> Value {
    let response = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .expect("the request is sent");
    assert_eq!(response.status(), 200);
    response.json().await.expect("the document is JSON")
}

/// Every (path, method, operation) of the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                found.push((path.clone(), method.clone(), op.clone()));
            }
        }
    }
    found
}

#[tokio::test]
async fn openapi_declares_every_path_parameter_with_what_makes_it_valid() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;

    let ops = operations(&doc);
    assert!(ops.len() >= 20, "only {} operations", ops.len());
    let mut with_parameters = 0;
    for (path, method, op) in ops {
        let templated: Vec<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        let declared: Vec<&Value> = op["parameters"]
            .as_array()
            .map(|ps| ps.iter().filter(|p| p["in"] == "path").collect())
            .unwrap_or_default();
        for name in &templated {
            let parameter = declared
                .iter()
                .find(|p| p["name"] == *name)
                .unwrap_or_else(|| panic!("{method} {path}: `{name}` is not declared"));
            assert_eq!(parameter["required"], true, "{method} {path}: {name}");
            assert!(
                parameter["schema"]["pattern"].is_string(),
                "{method} {path}: `{name}` has no pattern: {parameter}"
            );
        }
        assert_eq!(
            declared.len(),
            templated.len(),
            "{method} {path}: stray path parameters"
        );
        with_parameters += usize::from(!templated.is_empty());
    }
    assert!(
        with_parameters >= 7,
        "only {with_parameters} operations with path parameters"
    );
}

#[tokio::test]
async fn openapi_documents_401_and_the_error_shape_on_every_authenticated_operation() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;

    let error = &doc["components"]["schemas"]["Error"];
    assert_eq!(error["properties"]["success"]["const"], false, "{error}");
    let mut authenticated = 0;
    for (path, method, op) in operations(&doc) {
        let responses = op["responses"].as_object().expect("responses");
        if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
            authenticated += 1;
            for status in ["401", "429", "500"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path}: no {status}"
                );
            }
            if method != "get" {
                assert!(responses.contains_key("503"), "{method} {path}: no 503");
            }
        }
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                let schema = response["content"]["application/json"]["schema"].to_string();
                assert!(
                    schema.contains("#/components/schemas/Error"),
                    "{method} {path} {status}: {schema}"
                );
            }
        }
        if op.get("requestBody").is_some() {
            for status in ["413", "415"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path}: no {status}"
                );
            }
        }
    }
    assert!(
        authenticated >= 20,
        "only {authenticated} authenticated operations"
    );
}

#[tokio::test]
async fn every_authenticated_operation_answers_401_without_a_key() {
    // What the document promises, the server does: no key is 401 in the error shape.
    let app = spawn_app().await;
    let doc = openapi(&app).await;

    for (path, method, op) in operations(&doc) {
        if op["security"].as_array().is_none_or(|s| s.is_empty()) {
            continue;
        }
        let concrete = path
            .replace("{message_id}", "msg_01JDZ8K5Q6V0X3M2N4P7R9S1T2")
            .replace("{campaign_id}", "cmp_01JDZ8K5Q6V0X3M2N4P7R9S1T2")
            .replace("{name}", "welcome")
            .replace("{phone_number}", "%2B14155550123");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
        let response = app
            .client
            .request(method.clone(), format!("{}{concrete}", app.address))
            .send()
            .await
            .expect("the request is sent");
        expect_error_shape(response, 401, "unauthorized", &format!("{method} {path}")).await;
    }
}
