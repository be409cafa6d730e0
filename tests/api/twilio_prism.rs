//! Herald against Twilio's own OpenAPI description, served by Stoplight Prism
//! (`../shared/specs/`, FAKES.md): every request Herald sends must validate against the
//! official file (Prism refuses an invalid one with 422), and each error Twilio documents,
//! answered from the derived file, must lead to the right retry or failure. Prism is
//! installed and started by `prism.rs`.

use crate::helpers::{number, spawn_app_with};
use crate::prism::{Chooser, start_prism};
use crate::twilio_stub::twilio_toml;
use herald::domain::{Channel, MessageId, Timestamp};
use herald::providers::twilio::TwilioProvider;
use herald::providers::{Lookup, Provider, ProviderError, SendRequest};
use serde_json::json;
use std::time::Duration;

/// The form Herald sent, Prism's status and body.
type Exchange = (Vec<(String, String)>, u16, String);

/// Every exchange through `chooser`, in order.
fn forms(chooser: &Chooser) -> Vec<Exchange> {
    chooser
        .seen()
        .into_iter()
        .map(|e| {
            let form = serde_urlencoded::from_bytes(&e.sent).unwrap_or_default();
            (form, e.status, e.answer)
        })
        .collect()
}

fn provider_at(base_url: &str) -> TwilioProvider {
    let settings =
        herald::config::Settings::load_with(None, &[&twilio_toml(base_url, "")]).expect("settings");
    TwilioProvider::from_settings(&settings).expect("the adapter builds")
}

#[tokio::test]
async fn every_request_herald_sends_validates_against_twilios_official_description() {
    // Arrange
    let prism = start_prism("twilio_api_v2010.json").await;
    let recorder = Chooser::start(&prism).await;
    let app = spawn_app_with(&twilio_toml(&recorder.url, "")).await;

    // Act: a plain SMS, a non-ASCII text, an MMS, through the whole engine.
    let mut ids = Vec::new();
    for (i, body) in [
        json!({"phone_number": number("1234"), "message": "Hello"}),
        json!({"phone_number": number("1236"), "message": "Grüße 👋 & more=1"}),
        json!({"phone_number": number("1235"), "message": "Pic", "attachment_url": "https://cdn.example.com/a.png"}),
    ]
    .iter()
    .enumerate()
    {
        let response = app.send_message(body).await;
        assert_eq!(response.status(), 202, "case {i}");
        let body: serde_json::Value = response.json().await.unwrap();
        ids.push(body["message_id"].as_str().unwrap().to_owned());
    }
    let mut views = Vec::new();
    for id in &ids {
        views.push(
            app.wait_for(id, |s| !matches!(s, "queued" | "sending"))
                .await,
        );
    }

    // Assert: Prism answers 422 to a request its description does not allow (which fails
    // the message); the texts were accepted with a Twilio message sid.
    for view in &views[..2] {
        assert_eq!(
            view["status"], "sent",
            "Prism refused Herald's request: {view}"
        );
        assert!(
            view["provider_message_id"]
                .as_str()
                .unwrap()
                .starts_with("SM"),
            "{view}"
        );
    }
    // Prism 5.14.2 cannot read a form-encoded array: it refuses `MediaUrl=…` (Twilio's own
    // form, what its libraries send) as "must be array", one value or several. So for the
    // MMS the proof is that this is the only complaint about the request.
    let seen = forms(&recorder);
    let sends: Vec<_> = seen
        .iter()
        .filter(|(form, _, _)| !form.is_empty())
        .collect();
    assert_eq!(sends.len(), 3, "{seen:?}");
    for (form, status, body) in sends {
        if form.iter().any(|(k, _)| k == "MediaUrl") {
            assert_eq!(*status, 422, "{body}");
            let answer: serde_json::Value = serde_json::from_str(body).unwrap();
            let complaints = answer["validation"].as_array().unwrap();
            assert_eq!(complaints.len(), 1, "{answer}");
            assert_eq!(
                complaints[0]["location"],
                json!(["body", "MediaUrl"]),
                "{answer}"
            );
            assert_eq!(complaints[0]["code"], "type", "{answer}");
        } else {
            assert_eq!(*status, 201, "{form:?}: {body}");
        }
    }

    // The lookup reconciliation makes validates too (an invalid one would be a 4xx).
    let provider = provider_at(&prism.url);
    let sid = "SM0123456789abcdef0123456789abcdef";
    let answer = provider.lookup(sid).await;
    assert!(
        matches!(answer, Lookup::Status(_) | Lookup::NoNews),
        "the lookup was refused: {answer:?}"
    );
}

#[tokio::test]
async fn each_documented_twilio_error_leads_to_the_right_retry_or_failure() {
    let prism = start_prism("twilio_api_v2010.messages.derived.json").await;
    let chooser = Chooser::start(&prism).await;
    let provider = provider_at(&chooser.url);
    let message_id = MessageId::generate();
    let to = number("1234");
    let request = SendRequest {
        message_id: &message_id,
        channel: Channel::Sms,
        to: &to,
        from: "+15017122661",
        body: "hello",
        media_url: None,
        template: None,
        expires_at: Timestamp::now().plus(Duration::from_secs(3600)),
    };
    // (what Prism is asked to answer, Herald's error code, whether it is worth a retry)
    let cases: [(&str, &str, bool); 10] = [
        ("code=400, example=invalid_to", "21211", false),
        (
            "code=400, example=unsubscribed",
            "recipient_opted_out",
            false,
        ),
        ("code=400, example=not_mobile", "21614", false),
        ("code=400, example=unverified_to", "21608", false),
        ("code=400, example=from_not_capable", "21606", false),
        ("code=404", "http_404", false),
        ("code=429", "20429", true),
        ("code=500", "20500", true),
        ("code=503", "20503", true),
        ("code=401", "20003", true),
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
    chooser.prefer("code=201");
    let accepted = provider.send(request).await;
    assert!(accepted.is_ok(), "{accepted:?}");
}

#[tokio::test]
async fn through_the_engine_a_refusal_fails_the_message_and_throttling_retries_it() {
    let prism = start_prism("twilio_api_v2010.messages.derived.json").await;
    let chooser = Chooser::start(&prism).await;
    let app = spawn_app_with(&twilio_toml(&chooser.url, "[workers]\nmax_attempts = 3\n")).await;

    chooser.prefer("code=400, example=invalid_to");
    let refused = app.send_ok(&number("1234"), "one").await;
    let view = app.wait_for_status(&refused, "failed").await;
    assert_eq!(view["error_code"], "21211", "{view}");

    chooser.prefer("code=429");
    let throttled = app.send_ok(&number("1235"), "two").await;
    let view = app.wait_for_status(&throttled, "failed").await;
    assert_eq!(view["error_code"], "20429", "{view}");
    let message = view["error_message"].as_str().unwrap_or_default();
    assert!(message.contains("gave up after 3 attempts"), "{message}");
}
