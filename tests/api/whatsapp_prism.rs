//! Herald against Meta's own OpenAPI description of the WhatsApp Business Platform, served by
//! Stoplight Prism (`../shared/specs/`, FAKES.md): every request Herald sends must validate
//! against the official file (Prism refuses an invalid one with 422, which fails the send),
//! and each error the derived file documents must lead to the right retry or failure.
//! Prism is installed and started by `prism.rs`.
//!
//! One known gap in Meta's file: its text and media message schemas forbid properties they
//! do not list (`additionalProperties: false`) and do not list `biz_opaque_callback_data`,
//! which the Cloud API takes on every message (and Herald sends, with its message id). The
//! pass-through removes that one field from text and media messages before Prism sees them,
//! after the test has recorded that Herald sent it; templates go to Prism byte for byte.

use crate::helpers::{number, spawn_app_with};
use crate::prism::{Chooser, start_prism};
use crate::whatsapp_stub::{open_window, whatsapp_toml};
use herald::domain::{Channel, MessageId, Timestamp, WhatsappTemplate};
use herald::providers::whatsapp::WhatsappProvider;
use herald::providers::{Provider, ProviderError, SendRequest};
use serde_json::{Value, json};
use std::time::Duration;

/// Removes `biz_opaque_callback_data` from messages whose schema in Meta's file forbids it.
fn drop_unlisted_field(body: &[u8]) -> Vec<u8> {
    let Ok(mut message) = serde_json::from_slice::<Value>(body) else {
        return body.to_vec();
    };
    if message["type"] == "template" {
        return body.to_vec();
    }
    if let Some(object) = message.as_object_mut() {
        object.remove("biz_opaque_callback_data");
    }
    serde_json::to_vec(&message).unwrap_or_default()
}

fn provider_at(base_url: &str) -> WhatsappProvider {
    let settings = herald::config::Settings::load_with(None, &[&whatsapp_toml(base_url, "")])
        .expect("settings");
    WhatsappProvider::from_settings(&settings).expect("the adapter builds")
}

#[tokio::test]
async fn every_request_herald_sends_validates_against_metas_official_description() {
    // Arrange
    let prism = start_prism("business-messaging-api_v23.0.yaml").await;
    let recorder = Chooser::start_rewriting(&prism, drop_unlisted_field).await;
    let app = spawn_app_with(&whatsapp_toml(&recorder.url, "")).await;

    // Act: text, media of each kind, templates with and without variables, through the
    // whole engine.
    let cases = [
        json!({"message": "Hello"}),
        json!({"message": "Grüße 👋 & <b>more</b>\nline two"}),
        json!({"message": "Pic", "attachment_url": "https://cdn.example.com/a.png"}),
        json!({"message": "Clip", "attachment_url": "https://cdn.example.com/a.mp4"}),
        json!({"message": "Voice", "attachment_url": "https://cdn.example.com/a.ogg"}),
        json!({"message": "Invoice", "attachment_url": "https://cdn.example.com/d/invoice.pdf?x=1"}),
        json!({"message": "Hi Ann", "whatsapp_template": {"name": "order_update", "language": "en_US", "variables": ["Ann", "#42"]}}),
        json!({"message": "Hello", "whatsapp_template": {"name": "hello_world", "language": "en"}}),
    ];
    let mut ids = Vec::new();
    for (i, fields) in cases.iter().enumerate() {
        let phone = number(&format!("12{i:02}"));
        let mut body = json!({"phone_number": phone, "channel": "whatsapp"});
        body.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        if fields.get("whatsapp_template").is_none() {
            open_window(&app, &phone).await;
        }
        let response = app.send_message(&body).await;
        assert_eq!(response.status(), 202, "case {i}");
        let answer: Value = response.json().await.unwrap();
        ids.push(answer["message_id"].as_str().unwrap().to_owned());
    }
    let mut views = Vec::new();
    for id in &ids {
        views.push(
            app.wait_for(id, |s| !matches!(s, "queued" | "sending"))
                .await,
        );
    }

    // Assert: Prism answered each request 200 with a wamid (a 422 would have failed it).
    let seen = recorder.seen();
    assert_eq!(seen.len(), cases.len(), "{seen:?}");
    for exchange in &seen {
        assert_eq!(exchange.status, 200, "{}", exchange.answer);
    }
    for (i, view) in views.iter().enumerate() {
        assert_eq!(view["status"], "sent", "case {i}: Prism refused: {view}");
        assert!(
            view["provider_message_id"]
                .as_str()
                .unwrap()
                .starts_with("wamid."),
            "{view}"
        );
    }
    // Herald did send its message id with every message (removed above only for Prism).
    for id in &ids {
        assert!(
            seen.iter().any(|e| {
                serde_json::from_slice::<Value>(&e.sent).unwrap()["biz_opaque_callback_data"] == *id
            }),
            "{id}"
        );
    }
}

#[tokio::test]
async fn each_documented_whatsapp_error_leads_to_the_right_retry_or_failure() {
    let prism = start_prism("business-messaging-api_v23.0.messages.derived.json").await;
    let chooser = Chooser::start_rewriting(&prism, drop_unlisted_field).await;
    let provider = provider_at(&chooser.url);
    let message_id = MessageId::generate();
    let to = number("1234");
    let request = SendRequest {
        message_id: &message_id,
        channel: Channel::Whatsapp,
        to: &to,
        from: "",
        body: "hello",
        media_url: None,
        template: None,
        expires_at: Timestamp::now().plus(Duration::from_secs(3600)),
    };
    // (what Prism is asked to answer, Herald's error code, whether it is worth a retry)
    let cases: [(&str, &str, bool); 9] = [
        ("code=400, example=invalid_parameter", "100", false),
        (
            "code=400, example=required_parameter_missing",
            "131008",
            false,
        ),
        ("code=400, example=parameter_value_invalid", "131009", false),
        ("code=400, example=recipient_not_allowed", "131030", false),
        ("code=400, example=template_not_found", "132001", false),
        ("code=401, example=token_expired", "190", false),
        // Throttling comes as a 400: the code decides.
        ("code=400, example=rate_limit_hit", "130429", true),
        ("code=400, example=pair_rate_limit_hit", "131056", true),
        ("code=500, example=something_went_wrong", "131000", true),
    ];
    for (prefer, code, transient) in cases {
        chooser.prefer(prefer);
        let result = provider.send(request).await;
        match (&result, transient) {
            (Err(ProviderError::Transient { code: c, .. }), true)
            | (Err(ProviderError::Permanent { code: c, .. }), false) => {
                assert_eq!(c, code, "{prefer}: {result:?}");
            }
            _ => panic!("{prefer}: expected transient={transient} {code}, got {result:?}"),
        }
    }
    chooser.prefer("code=200");
    let accepted = provider.send(request).await;
    assert!(
        accepted
            .as_ref()
            .is_ok_and(|a| a.provider_message_id.starts_with("wamid.")),
        "{accepted:?}"
    );
    // A template goes through the derived file too.
    let template =
        WhatsappTemplate::parse("order_update".into(), "en_US".into(), vec!["Ann".into()]).unwrap();
    let accepted = provider
        .send(SendRequest {
            template: Some(&template),
            ..request
        })
        .await;
    assert!(accepted.is_ok(), "{accepted:?}");
}

#[tokio::test]
async fn through_the_engine_a_refusal_fails_the_message_and_throttling_retries_it() {
    let prism = start_prism("business-messaging-api_v23.0.messages.derived.json").await;
    let chooser = Chooser::start_rewriting(&prism, drop_unlisted_field).await;
    let app = spawn_app_with(&whatsapp_toml(
        &chooser.url,
        "[workers]\nmax_attempts = 3\n",
    ))
    .await;
    let send = |suffix: &'static str| {
        let body = json!({"phone_number": number(suffix), "message": "hi", "channel": "whatsapp"});
        let app = &app;
        async move {
            open_window(app, &number(suffix)).await;
            let answer: Value = app.send_message(&body).await.json().await.unwrap();
            answer["message_id"].as_str().unwrap().to_owned()
        }
    };

    chooser.prefer("code=400, example=template_not_found");
    let refused = send("1234").await;
    let view = app.wait_for_status(&refused, "failed").await;
    assert_eq!(view["error_code"], "132001", "{view}");

    chooser.prefer("code=400, example=rate_limit_hit");
    let throttled = send("1235").await;
    let view = app.wait_for_status(&throttled, "failed").await;
    assert_eq!(view["error_code"], "130429", "{view}");
    let message = view["error_message"].as_str().unwrap_or_default();
    assert!(message.contains("gave up after 3 attempts"), "{message}");
}
